//! Boots the smoke guest: Debian kernel + busybox initramfs under QEMU
//! (TCG): modules in order, network to a host HTTP server through
//! 10.0.2.2, LUKS2 + ext4 on a blank virtio disk, plaintext absent from
//! the image. Skipped (loudly) when the host packages are missing, unless
//! VM_BENCH_REQUIRED=1; `scripts/setup` installs them.

#![allow(clippy::unwrap_used)]

use std::time::Instant;

#[test]
fn smoke_boot() {
    if !vm_bench::tools_present("vm smoke test") {
        return;
    }
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let report = match vm_bench::smoke::run(&vm_bench::cache_dir(), dir.path()) {
        Ok(r) => r,
        Err(e) => {
            let log =
                std::fs::read_to_string(dir.path().join("smoke-console.log")).unwrap_or_default();
            panic!("smoke boot failed: {e:#}\n--- console ---\n{log}");
        }
    };
    assert!(report.modules.iter().any(|m| m.ends_with("/dm-crypt.ko")));
    let pos = |name: &str| {
        report
            .modules
            .iter()
            .position(|m| m.ends_with(name))
            .unwrap_or_else(|| panic!("{name} not in {:?}", report.modules))
    };
    assert!(pos("/dm-mod.ko") < pos("/dm-crypt.ko"));
    assert!(pos("/ecb.ko") < pos("/dm-crypt.ko"));
    assert!(pos("/failover.ko") < pos("/virtio_net.ko"));
    assert!(pos("/virtio_ring.ko") < pos("/virtio_pci.ko"));
    eprintln!(
        "vm smoke: kernel {}, prepare {:.2?}, QEMU start -> /init {:.2?}, -> SMOKE: ok {:.2?}, -> exit {:.2?}, test wall time {:.2?}",
        report.kernel,
        report.prepare,
        report.to_init,
        report.to_ok,
        report.boot_total,
        t0.elapsed()
    );
}
