//! The README's main job: two boots of a confidential-VM image with
//! cvm-init as PID 1 (simulated TEE, development broker on the host), then
//! the unlock benchmark. Prints each step; any failed check is an error.

use std::path::Path;
use std::time::Instant;

use anyhow::{ensure, Context, Result};

use crate::agent::{self, AgentBench};

/// Numbers the demo measured, for the closing notes and the README.
#[derive(Debug, Default)]
pub struct DemoReport {
    pub first: Option<agent::GoodBoot>,
    pub second: Option<agent::GoodBoot>,
    pub argon2_open_ms: Option<u64>,
    pub pbkdf2_open_ms: Option<u64>,
    pub initramfs_bytes: u64,
    pub agent_bytes: u64,
    /// The unlock boot of the same image with an unverified root (a debug
    /// image), for the cost of dm-verity.
    pub unverified: Option<agent::GoodBoot>,
    /// What cvm-init reported for activating the verity root and reading
    /// the init through it (boot 2).
    pub verity_root_ms: Option<u64>,
}

fn step(n: u32, text: &str) {
    println!("\n== {n}. {text}");
}

/// Runs the demo in `dir`.
pub fn run(dir: &Path, bench_unlock: bool) -> Result<DemoReport> {
    let t0 = Instant::now();
    let mut report = DemoReport::default();
    step(1, "build cvm-init and kbs-dev, fetch the Debian kernel, build the initramfs and the workload image");
    let bench = AgentBench::new(dir)?;
    report.initramfs_bytes = std::fs::metadata(&bench.initrd)?.len();
    report.agent_bytes = std::fs::metadata(&bench.bins.cvm_init)?.len();
    println!(
        "kernel {}; initramfs {} KiB (cvm-init {} KiB); broker https://127.0.0.1:{} (guest: 10.0.2.2)",
        bench.kernel.version,
        report.initramfs_bytes / 1024,
        report.agent_bytes / 1024,
        bench.broker_port
    );
    println!(
        "the broker holds: {} (64 random bytes), default/tls/cert, default/tls/key",
        agent::DISK_RESOURCE
    );
    println!(
        "agent config (in the initramfs):\n{}",
        indent(&bench.config())
    );

    let data = bench.blank_disk("data.img", 64)?;
    let (first, second) = provision_then_unlock(&bench, &data, 2)?;

    if bench_unlock {
        step(5, "unlock benchmark in the same VM: cryptsetup open of a default argon2id keyslot vs cvm-init's pbkdf2-1000 keyslot");
        let opens = agent::cryptsetup_opens(&bench, &data, "bench.log")?;
        report.argon2_open_ms = Some(opens.argon2id_ms);
        report.pbkdf2_open_ms = Some(opens.pbkdf2_1000_ms);
        println!(
            "cryptsetup open, argon2id default keyslot: {} ms; pbkdf2 1000 iterations (ours): {} ms",
            report.argon2_open_ms.map_or("?".into(), |v| v.to_string()),
            report.pbkdf2_open_ms.map_or("?".into(), |v| v.to_string())
        );
    }
    report.verity_root_ms = std::fs::read_to_string(bench.dir.join("boot2.log"))?
        .lines()
        .find(|l| l.contains("root hash matches"))
        .and_then(|l| agent::number_after(l, "verified in"));
    if bench_unlock {
        step(6, "the cost of the verity root: the same two boots with an unverified root (a debug image), same run");
        let plain = AgentBench::with_options(
            &dir.join("unverified"),
            agent::Options {
                unverified_root: true,
                ..agent::Options::default()
            },
        )?;
        let data = plain.blank_disk("data.img", 64)?;
        agent::good_boot(&plain, &data, "boot1.log")?;
        let unlock = agent::good_boot(&plain, &data, "boot2.log")?;
        ensure!(unlock.volume.contains("Unlocked"), "{}", unlock.volume);
        println!(
            "unlock boot, agent start -> handoff: verity root {} ms (of which the root's activation and the init's read {} ms), unverified root {} ms; QEMU start -> serving: {:.1?} vs {:.1?}",
            second.handoff_ms.map_or("?".into(), |v| v.to_string()),
            report.verity_root_ms.map_or("?".into(), |v| v.to_string()),
            unlock.handoff_ms.map_or("?".into(), |v| v.to_string()),
            second.to_serving,
            unlock.to_serving
        );
        report.unverified = Some(unlock);
    }
    if let Some(old) = std::env::var_os("VM_BENCH_BASELINE_CVM_INIT") {
        step(7, "unlock time before and after: the same two boots with the baseline cvm-init binary, same run");
        let base = AgentBench::with_options(
            &dir.join("baseline"),
            agent::Options {
                cvm_init: Some(old.into()),
                ..agent::Options::default()
            },
        )?;
        let base_data = base.blank_disk("data.img", 64)?;
        agent::good_boot(&base, &base_data, "boot1.log")?;
        let mut base_ms = Vec::new();
        let mut ours_ms = vec![second.volume_ms];
        for i in 0..3 {
            let b = agent::good_boot(&base, &base_data, &format!("unlock{i}.log"))?;
            ensure!(b.volume.contains("Unlocked"), "{}", b.volume);
            base_ms.push(b.volume_ms);
            if i > 0 {
                let o = agent::good_boot(&bench, &data, &format!("unlock{i}.log"))?;
                ours_ms.push(o.volume_ms);
            }
        }
        println!(
            "unlock (agent's volume step: assess, unlock, check, mount), ms: baseline {base_ms:?}, this build {ours_ms:?}"
        );
    }
    report.first = Some(first);
    report.second = Some(second);
    println!(
        "\ndemo passed in {:.1?}; logs in {}",
        t0.elapsed(),
        dir.display()
    );
    Ok(report)
}

/// The scenario every initrd goes through (steps `first_step` to
/// `first_step + 2`): the first boot provisions the blank `data`, the
/// workload writes a file and serves the broker's TLS certificate; the
/// second boot unlocks and the workload reads the file back; the disk
/// image then holds neither key nor plaintext. Any failed check is an
/// error. Console logs: `boot1.log`, `boot2.log` in the bench's directory.
pub fn provision_then_unlock(
    bench: &AgentBench,
    data: &Path,
    first_step: u32,
) -> Result<(agent::GoodBoot, agent::GoodBoot)> {
    step(
        first_step,
        "first boot: blank data disk -> attest, fetch keys, provision LUKS2 + ext4, hand over",
    );
    let first = agent::good_boot(bench, data, "boot1.log")?;
    show(&first);
    ensure!(
        first.volume.contains("Provisioned"),
        "boot 1 did not provision: {}",
        first.volume
    );
    ensure!(
        first.workload.starts_with("wrote "),
        "boot 1: workload {}",
        first.workload
    );
    ensure!(
        first.served_broker_cert,
        "boot 1: the workload did not serve the broker's certificate"
    );
    println!(
        "ok: provisioned; the workload wrote its file and serves the broker's TLS certificate"
    );

    step(
        first_step + 1,
        "second boot (after a power cut): unlock, the workload reads its file back",
    );
    let second = agent::good_boot(bench, data, "boot2.log")?;
    show(&second);
    ensure!(
        second.volume.contains("Unlocked"),
        "boot 2 did not unlock: {}",
        second.volume
    );
    let text = first.workload.trim_start_matches("wrote ");
    ensure!(
        second.workload == format!("read {text}"),
        "boot 2 read {:?}, boot 1 wrote {text:?}",
        second.workload
    );
    ensure!(
        second.served_broker_cert,
        "boot 2: wrong TLS certificate served"
    );
    println!("ok: unlocked; the file written in boot 1 was read back");

    step(
        first_step + 2,
        "the data disk image holds no key and no plaintext",
    );
    let leaked = bench.leaked_secrets(data)?;
    ensure!(
        leaked.is_empty(),
        "found on the data disk: {}",
        leaked.join(", ")
    );
    ensure!(
        !crate::scan::image_contains(data, text.as_bytes())?,
        "the workload's plaintext is on the data disk"
    );
    println!(
        "ok: neither the brokered disk secret, nor the TLS key, nor {text:?} is in {}",
        data.display()
    );

    Ok((first, second))
}

fn show(b: &agent::GoodBoot) {
    println!("  {}", b.volume.trim());
    println!("  workload: {}", b.workload);
    println!(
        "  agent start -> handoff: {} ms (volume {} ms); QEMU start -> workload serving: {:.1?}",
        b.handoff_ms.map_or("?".into(), |v| v.to_string()),
        b.volume_ms.map_or("?".into(), |v| v.to_string()),
        b.to_serving
    );
    if let Some(t) = &b.timeline {
        print!("{}", crate::bench::table::bars(t, "  "));
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// Runs the demo in `workdir`, or in `target/demo` of the repository
/// (emptied first); either is kept afterwards, with every console log.
pub fn run_in(workdir: Option<&Path>, bench_unlock: bool) -> Result<DemoReport> {
    match workdir {
        Some(d) => run(d, bench_unlock),
        None => {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/demo");
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("emptying {}", dir.display()))?;
            }
            std::fs::create_dir_all(&dir)?;
            run(&dir.canonicalize()?, bench_unlock)
        }
    }
}
