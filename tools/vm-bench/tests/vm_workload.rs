//! Boots the demo workload image twice behind a busybox stand-in for
//! cvm-init (image-build/fake-agent-init.sh): the first boot formats the
//! LUKS2 data disk and the workload writes /data/hello.txt and serves
//! HTTPS with the handed-over certificate through a host port forward;
//! QEMU is then killed (a power cut); the second boot reads the file back.
//! The plaintext and the TLS key are absent from the data disk image.
//! Skipped (loudly) when host packages are missing, unless
//! VM_BENCH_REQUIRED=1. VM_BENCH_TIMES=1 prints boot 2's console with the
//! time each line arrived.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use vm_bench::qemu::{free_port, Vm, VmSpec};
use vm_bench::{kernel, rootfs, scan, workload};

fn boot(
    k: &kernel::Kernel,
    initrd: &std::path::Path,
    disks: Vec<std::path::PathBuf>,
    port: u16,
    log: std::path::PathBuf,
) -> Vm {
    let mut spec = VmSpec::new(k.boot_image(), initrd);
    spec.disks = disks;
    spec.hostfwd = vec![(port, workload::HTTPS_PORT)];
    spec.log = Some(log);
    Vm::boot(spec).unwrap()
}

fn expect(vm: &mut Vm, pattern: &str) -> String {
    let (i, line) = vm
        .wait_for_any(
            &[pattern, "AGENT: FAIL", "WORKLOAD: FAIL", "Kernel panic"],
            Duration::from_secs(120),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(i, 0, "{line}\n--- console ---\n{}", vm.output());
    line
}

#[test]
fn workload_survives_power_cut_and_serves_tls() {
    let missing = vm_bench::missing_tools();
    if !missing.is_empty() {
        assert!(
            std::env::var_os("VM_BENCH_REQUIRED").is_none(),
            "missing host packages: {}",
            missing.join(" ")
        );
        eprintln!(
            "SKIPPED vm workload test: missing host packages {}",
            missing.join(" ")
        );
        return;
    }
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let k = kernel::fetch_kernel(&vm_bench::cache_dir()).unwrap();
    let tls = workload::make_tls(d).unwrap();
    let data_key = b"workload-test-data-key-0123456789";
    let initrd = d.join("agent.cpio");
    workload::build_fake_agent_initramfs(&k, data_key, &tls, &initrd).unwrap();
    let root = d.join("workload.img");
    rootfs::workload_image(&root).unwrap();
    let data = d.join("data.img");
    std::fs::File::create(&data)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let prepare = t0.elapsed();

    // Boot 1: format, write, serve.
    let port = free_port().unwrap();
    let mut vm = boot(
        &k,
        &initrd,
        vec![root.clone(), data.clone()],
        port,
        d.join("boot1.log"),
    );
    expect(&mut vm, "AGENT: formatted");
    expect(&mut vm, "WORKLOAD: started");
    let wrote = expect(&mut vm, "WORKLOAD: wrote ");
    let text = wrote
        .split("WORKLOAD: wrote ")
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    expect(&mut vm, "WORKLOAD: serving https on 8443");
    let boot1 = vm.elapsed();
    let served = workload::peer_certificate(port, Duration::from_secs(30)).unwrap();
    assert_eq!(served, std::fs::read_to_string(&tls.cert).unwrap());
    vm.kill().unwrap();

    // Boot 2 after the power cut: the file is back.
    let port = free_port().unwrap();
    let mut vm = boot(
        &k,
        &initrd,
        vec![root, data.clone()],
        port,
        d.join("boot2.log"),
    );
    let read = expect(&mut vm, "WORKLOAD: read ");
    assert!(read.ends_with(&text), "{read} vs {text}");
    expect(&mut vm, "WORKLOAD: serving https on 8443");
    let boot2 = vm.elapsed();
    vm.kill().unwrap();
    if std::env::var_os("VM_BENCH_TIMES").is_some() {
        for (t, l) in vm.timed_lines() {
            eprintln!("{t:>8.2?} {l}");
        }
    }

    assert!(
        !scan::image_contains(&data, text.as_bytes()).unwrap(),
        "plaintext on the data disk"
    );
    assert!(
        !scan::image_contains(&data, data_key).unwrap(),
        "key file bytes on the data disk"
    );
    let key_pem = std::fs::read_to_string(&tls.key).unwrap();
    let key_line = key_pem.lines().nth(1).unwrap();
    assert!(
        !scan::image_contains(&data, key_line.as_bytes()).unwrap(),
        "TLS key on the data disk"
    );
    eprintln!(
        "vm workload: prepare {prepare:.2?}, boot 1 -> serving {boot1:.2?}, boot 2 -> serving {boot2:.2?}, test wall time {:.2?}",
        t0.elapsed()
    );
}
