//! cvm-init as PID 1 in a real Debian kernel under QEMU (TCG), with real
//! dm-crypt and LUKS2, the development broker on the host and the
//! simulated TEE. Each test boots its own images; the VMs run one at a
//! time (two cores). Skipped loudly when host packages are missing, unless
//! VM_BENCH_REQUIRED=1.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use vm_bench::agent::{self, file_digest, AgentBench};
use vm_bench::luks2;

static ONE_VM_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_vm_at_a_time() -> Option<MutexGuard<'static, ()>> {
    vm_bench::tools_present("vm boot test")
        .then(|| ONE_VM_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner()))
}

fn bench() -> Option<(MutexGuard<'static, ()>, tempfile::TempDir, AgentBench)> {
    let guard = one_vm_at_a_time()?;
    let dir = tempfile::tempdir().unwrap();
    let bench = AgentBench::new(dir.path()).unwrap();
    Some((guard, dir, bench))
}

/// Provisions `data` with one good first boot.
fn provision(bench: &AgentBench, data: &Path) -> agent::GoodBoot {
    let first = agent::good_boot(bench, data, "provision.log").unwrap();
    assert!(first.volume.contains("Provisioned"), "{}", first.volume);
    assert_eq!(first.volume_status, "provisioned", "the workload is told");
    first
}

/// The demo is the test: provision, write, serve the broker's certificate,
/// unlock, read back, and no key or plaintext on the disk.
#[test]
fn vm_first_boot_provisions_second_boot_unlocks_nothing_leaks() {
    let Some(_g) = one_vm_at_a_time() else { return };
    let dir = tempfile::tempdir().unwrap();
    let report = vm_bench::demo::run(dir.path(), false).unwrap_or_else(|e| panic!("{e:#}"));
    let (first, second) = (report.first.unwrap(), report.second.unwrap());
    // The unlock makes the dm-crypt table itself with the derived volume
    // key: no keyslot opened, no libcryptsetup activation.
    let phases = phase_names(&second);
    assert!(phases.iter().any(|p| p == "dm create"), "{phases:?}");
    assert!(!phases.iter().any(|p| p == "keyslot"), "{phases:?}");
    assert!(!phases.iter().any(|p| p == "volume key"), "{phases:?}");
    eprintln!(
        "timings: boot 1 handoff {:?} ms (volume {:?} ms), boot 2 handoff {:?} ms (volume {:?} ms)",
        first.handoff_ms, first.volume_ms, second.handoff_ms, second.volume_ms
    );
}

#[test]
fn vm_broker_down_or_denying_never_touches_a_provisioned_disk() {
    let Some((_g, _dir, mut bench)) = bench() else {
        return;
    };
    let data = bench.blank_disk("data.img", 64).unwrap();
    provision(&bench, &data);
    let before = file_digest(&data).unwrap();

    bench.stop_broker();
    let line = agent::failed_boot(&bench, &[&data], "down.log").unwrap();
    assert!(line.contains("BOOT FAILED"), "{line}");
    assert_eq!(
        file_digest(&data).unwrap(),
        before,
        "disk written with the broker down"
    );

    bench.start_broker(&["deny"]).unwrap();
    let line = agent::failed_boot(&bench, &[&data], "deny.log").unwrap();
    assert!(line.contains("PolicyDeny"), "{line}");
    assert_eq!(
        file_digest(&data).unwrap(),
        before,
        "disk written after a denial"
    );
}

#[test]
fn vm_forged_headers_are_refused_before_the_key_is_used() {
    let Some((_g, _dir, bench)) = bench() else {
        return;
    };
    let data = bench.blank_disk("data.img", 64).unwrap();
    provision(&bench, &data);
    for (name, edit, words) in luks2::forgeries() {
        let forged = bench
            .dir
            .join(format!("forged-{}.img", name.replace(' ', "-")));
        std::fs::copy(&data, &forged).unwrap();
        luks2::forge(&forged, true, edit).unwrap();
        let before = file_digest(&forged).unwrap();
        let line = agent::failed_boot(&bench, &[&forged], &format!("{name}.log")).unwrap();
        assert!(
            line.to_lowercase().contains(words),
            "{name}: refusal does not name the problem ({words}): {line}"
        );
        assert_eq!(
            file_digest(&forged).unwrap(),
            before,
            "{name}: disk written"
        );
    }
}

#[test]
fn vm_a_disk_holding_data_is_never_formatted() {
    let Some((_g, _dir, bench)) = bench() else {
        return;
    };
    // A filesystem made on the host.
    let fs = bench.blank_disk("ext4.img", 64).unwrap();
    let status = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&fs)
        .status()
        .unwrap();
    assert!(status.success());
    // A DOS partition table and nothing else.
    let pt = bench.blank_disk("mbr.img", 64).unwrap();
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&pt).unwrap();
        let mut entry = [0u8; 16];
        entry[4] = 0x83; // Linux
        entry[8..12].copy_from_slice(&2048u32.to_le_bytes());
        entry[12..16].copy_from_slice(&4096u32.to_le_bytes());
        f.seek(SeekFrom::Start(446)).unwrap();
        f.write_all(&entry).unwrap();
        f.seek(SeekFrom::Start(510)).unwrap();
        f.write_all(&[0x55, 0xAA]).unwrap();
    }
    // Random bytes without any signature (say, plain dm-crypt).
    let random = bench.blank_disk("random.img", 64).unwrap();
    {
        use std::io::Write;
        let mut noise = vec![0u8; 1 << 20];
        std::io::Read::read_exact(
            &mut std::fs::File::open("/dev/urandom").unwrap(),
            &mut noise,
        )
        .unwrap();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&random)
            .unwrap();
        f.write_all(&noise).unwrap();
    }
    for disk in [&fs, &pt, &random] {
        let before = file_digest(disk).unwrap();
        let name = disk.file_name().unwrap().to_string_lossy().into_owned();
        let line = agent::failed_boot(&bench, &[disk], &format!("{name}.log")).unwrap();
        assert!(line.contains("BOOT FAILED"), "{name}: {line}");
        assert_eq!(file_digest(disk).unwrap(), before, "{name} was written");
    }
}

/// splitmix64: a seeded, replayable sequence without another dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Where first-boot provisioning starts and ends on the console.
const PROVISION_START: &str = "is blank: provision";
const PROVISION_END: &str = "marked ready";

/// How long provisioning takes on `bench` (one uncut first boot).
fn provisioning_window(bench: &AgentBench, name: &str) -> Duration {
    let data = bench
        .blank_disk(&format!("{name}-calibrate.img"), 64)
        .unwrap();
    let (mut vm, _) = bench.boot(&data, &format!("{name}-calibrate.log")).unwrap();
    agent::expect(&mut vm, PROVISION_START, Duration::from_secs(180)).unwrap();
    let t = Instant::now();
    agent::expect(&mut vm, PROVISION_END, Duration::from_secs(300)).unwrap();
    let window = t.elapsed();
    vm.kill().unwrap();
    window
}

/// Power cuts at random moments of first-boot provisioning (QEMU killed at
/// a delay drawn uniformly over the measured window, plain and integrity
/// volumes in turn); after each, the next boot finishes provisioning, and
/// the data written after `ready` survives two more boots. `POWER_CUTS`
/// (default 4) and `POWER_CUT_SEED` (default: the clock) replay a run;
/// `scripts/power-cuts` runs 20.
#[test]
fn vm_power_cuts_at_random_moments_of_provisioning_lose_nothing() {
    let Some(_g) = one_vm_at_a_time() else { return };
    let count: usize = std::env::var("POWER_CUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let seed: u64 = std::env::var("POWER_CUT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!(
        "power cuts: {count}, seed {seed} (replay with POWER_CUT_SEED={seed} POWER_CUTS={count})"
    );
    let dir = tempfile::tempdir().unwrap();
    let benches = [
        (
            "plain",
            AgentBench::with_integrity(&dir.path().join("plain"), false).unwrap(),
        ),
        (
            "integrity",
            AgentBench::with_integrity(&dir.path().join("integrity"), true).unwrap(),
        ),
    ];
    // Only the kinds that get a cut (one cut: the plain volume only).
    let windows: Vec<Duration> = benches
        .iter()
        .take(count.min(benches.len()))
        .map(|(name, b)| provisioning_window(b, name))
        .collect();
    for ((name, _), w) in benches.iter().zip(&windows) {
        println!(
            "power cuts: {name} provisioning window {} ms",
            w.as_millis()
        );
    }
    let mut rng = Rng(seed);
    let mut outcomes = Vec::new();
    for i in 0..count {
        let (name, bench) = &benches[i % 2];
        let window = windows[i % 2];
        // A fraction of the window: a replay draws the same fractions.
        let permille = rng.below(1001);
        let delay = window * permille as u32 / 1000;
        let data = bench.blank_disk(&format!("cut{i}.img"), 64).unwrap();
        let (mut vm, _) = bench.boot(&data, &format!("cut{i}.log")).unwrap();
        agent::expect(&mut vm, PROVISION_START, Duration::from_secs(180)).unwrap();
        std::thread::sleep(delay);
        vm.kill().unwrap();
        let output = vm.output();
        drop(vm);
        let last = output
            .lines()
            .rev()
            .find(|l| l.contains("cvm-init") || l.contains("volume data"))
            .unwrap_or("")
            .to_owned();

        let after =
            agent::good_boot(bench, &data, &format!("cut{i}-next.log")).unwrap_or_else(|e| {
                panic!(
                    "cut {i} ({name}, +{} ms, seed {seed}): next boot failed: {e:#}",
                    delay.as_millis()
                )
            });
        let action = ["ResumedProvisioning", "Provisioned", "Unlocked"]
            .into_iter()
            .find(|a| after.volume.contains(&format!(": {a} ")))
            .unwrap_or_else(|| panic!("cut {i}: {}", after.volume));
        // A cut after the workload's first write (the window is measured on
        // another boot, so a late draw can land there) leaves its file.
        let text = match after.workload.split_once(' ') {
            Some(("wrote" | "read", text)) => text.to_owned(),
            _ => panic!("cut {i}: {}", after.workload),
        };
        let told = match action {
            "ResumedProvisioning" => "resumed",
            "Provisioned" => "provisioned",
            _ => "unlocked",
        };
        assert_eq!(after.volume_status, told, "cut {i}: the workload is told");
        for boot in 0..2 {
            let again = agent::good_boot(bench, &data, &format!("cut{i}-again{boot}.log")).unwrap();
            assert!(
                again.volume.contains("Unlocked"),
                "cut {i}: {}",
                again.volume
            );
            assert_eq!(again.volume_status, "unlocked");
            assert_eq!(
                again.workload,
                format!("read {text}"),
                "cut {i} (seed {seed}): data lost"
            );
        }
        println!(
            "power cut {i}: {name} volume, +{} ms ({permille}/1000) of {} ms; then {action}, data kept over two boots; last line before the cut: {last}",
            delay.as_millis(),
            window.as_millis()
        );
        outcomes.push(action);
    }
    println!(
        "power cuts: {count}/{count} recovered, nothing lost (seed {seed}; {} resumed, {} provisioned from blank, {} already ready)",
        outcomes.iter().filter(|a| **a == "ResumedProvisioning").count(),
        outcomes.iter().filter(|a| **a == "Provisioned").count(),
        outcomes.iter().filter(|a| **a == "Unlocked").count(),
    );
}

#[test]
fn vm_integrity_volume_provisions_and_unlocks() {
    let Some(_g) = one_vm_at_a_time() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bench = AgentBench::with_integrity(dir.path(), true).unwrap();
    let data = bench.blank_disk("data.img", 64).unwrap();
    let first = provision(&bench, &data);
    let text = first.workload.trim_start_matches("wrote ").to_owned();
    let second = agent::good_boot(&bench, &data, "boot2.log").unwrap();
    assert!(second.volume.contains("Unlocked"), "{}", second.volume);
    assert_eq!(second.workload, format!("read {text}"));
}

/// The names of a good boot's timeline phases.
fn phase_names(boot: &agent::GoodBoot) -> Vec<String> {
    let timeline = boot
        .timeline
        .as_ref()
        .expect("the workload printed the timeline");
    timeline["phases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect()
}

/// A pinned `luks_uuid` is the same at every format, so that volume keeps
/// a random volume key and unlocks by its keyslot.
#[test]
fn vm_pinned_uuid_volume_unlocks_by_keyslot() {
    let Some(_g) = one_vm_at_a_time() else { return };
    let dir = tempfile::tempdir().unwrap();
    let options = agent::Options {
        luks_uuid: Some("6f1c1f0e-1b7a-4c57-9d43-0c6a8f7e2b11".to_owned()),
        ..agent::Options::default()
    };
    let bench = AgentBench::with_options(dir.path(), options).unwrap();
    let data = bench.blank_disk("data.img", 64).unwrap();
    provision(&bench, &data);
    let second = agent::good_boot(&bench, &data, "boot2.log").unwrap();
    assert!(second.volume.contains("Unlocked"), "{}", second.volume);
    let phases = phase_names(&second);
    assert!(phases.iter().any(|p| p == "keyslot"), "{phases:?}");
}

/// Edits the dm-integrity superblock at the start of the data segment
/// (16 MiB) of a disk image: `edit(superblock)`.
fn edit_integrity_superblock(image: &Path, edit: impl FnOnce(&mut [u8])) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .unwrap();
    let mut sb = [0u8; 512];
    f.seek(SeekFrom::Start(16 << 20)).unwrap();
    f.read_exact(&mut sb).unwrap();
    assert_eq!(
        &sb[..8],
        b"integrt\0",
        "no dm-integrity superblock at 16 MiB"
    );
    edit(&mut sb);
    f.seek(SeekFrom::Start(16 << 20)).unwrap();
    f.write_all(&sb).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn vm_altered_integrity_superblock_is_refused_after_activation() {
    let Some(_g) = one_vm_at_a_time() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bench = AgentBench::with_integrity(dir.path(), true).unwrap();
    let data = bench.blank_disk("data.img", 64).unwrap();
    provision(&bench, &data);
    // struct superblock: magic[8], version u8, log2_interleave_sectors u8,
    // integrity_tag_size le16, journal_sections le32 @12,
    // provided_data_sectors le64 @16, flags le32 @24, ..., recalc_sector
    // le64 @32.
    type Edit = fn(&mut [u8]);
    let edits: [(&str, Edit); 2] = [
        ("provided_data_sectors shrunk", |sb| {
            let n = u64::from_le_bytes(sb[16..24].try_into().unwrap());
            sb[16..24].copy_from_slice(&(n - 8).to_le_bytes());
        }),
        ("recalculating flag set from sector 0", |sb| {
            let flags = u32::from_le_bytes(sb[24..28].try_into().unwrap()) | 0x2;
            sb[24..28].copy_from_slice(&flags.to_le_bytes());
            sb[32..40].copy_from_slice(&0u64.to_le_bytes());
        }),
    ];
    for (i, (what, edit)) in edits.into_iter().enumerate() {
        let disk = dir.path().join(format!("altered{i}.img"));
        std::fs::copy(&data, &disk).unwrap();
        edit_integrity_superblock(&disk, edit);
        let line = agent::failed_boot(&bench, &[&disk], &format!("altered{i}.log")).unwrap();
        println!("altered integrity superblock ({what}): {line}");
        assert!(line.contains("BOOT FAILED"), "{what}: {line}");
        assert!(line.contains("volume data"), "{what}: {line}");
    }
    // The untouched disk still unlocks.
    let ok = agent::good_boot(&bench, &data, "intact.log").unwrap();
    assert!(ok.volume.contains("Unlocked"), "{}", ok.volume);
}

/// An init-data document the host passes through fw_cfg, and its SHA-384.
fn init_data_doc(path: &Path, secret_path: &str) -> String {
    use sha2::Digest as _;
    let body = format!(
        "version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n\"cvm-init.toml\" = '''\n\
         [[secret]]\nresource = \"{}\"\npath = \"{secret_path}\"\n'''\n",
        agent::APP_RESOURCE
    );
    std::fs::write(path, &body).unwrap();
    sha2::Sha384::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Host-supplied config through QEMU fw_cfg, bound by the (simulated)
/// HOST_DATA the VM was launched with: the matching document adds a secret;
/// a document swapped by the host stops the boot before the broker or any
/// disk is touched.
#[test]
fn vm_init_data_from_fw_cfg_is_used_only_when_the_host_data_binds_it() {
    let Some(_g) = one_vm_at_a_time() else { return };
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("init-data.toml");
    let digest = init_data_doc(&doc, "/run/cvm-init/app/token");
    let options = agent::Options {
        host_data: Some(digest.clone()),
        ..agent::Options::default()
    };
    let mut bench = AgentBench::with_options(&dir.path().join("bench"), options).unwrap();
    bench.init_data = Some(doc);
    let data = bench.blank_disk("data.img", 64).unwrap();
    provision(&bench, &data);
    let console = std::fs::read_to_string(bench.dir.join("provision.log")).unwrap();
    assert!(
        console.contains(&format!("matches this VM's simulated host data {digest}")),
        "{console}"
    );
    assert!(
        console.contains("secret default/app/token -> /run/cvm-init/app/token"),
        "{console}"
    );
    assert!(
        bench.broker_log().contains("init-data (sha384) matches"),
        "{}",
        bench.broker_log()
    );

    // The host swaps the document (another secret path) but cannot change
    // the launch's HOST_DATA without changing what the broker sees.
    let swapped = bench.dir.join("swapped.toml");
    init_data_doc(&swapped, "/run/cvm-init/app/elsewhere");
    bench.init_data = Some(swapped);
    let before = file_digest(&data).unwrap();
    let auths = bench.broker_log().matches("/auth").count();
    let line = agent::failed_boot(&bench, &[&data], "swapped.log").unwrap();
    assert!(line.contains("Refusing to use any of it"), "{line}");
    assert!(line.contains("simulated host data"), "{line}");
    assert_eq!(file_digest(&data).unwrap(), before, "the disk was written");
    assert_eq!(
        bench.broker_log().matches("/auth").count(),
        auths,
        "the broker was contacted"
    );
}

/// Flips one byte of `image` inside the first occurrence of `needle`.
fn flip_byte_in(image: &Path, needle: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let bytes = std::fs::read(image).unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{:?} not in {}", needle, image.display()));
    let mut f = std::fs::OpenOptions::new().write(true).open(image).unwrap();
    f.seek(SeekFrom::Start(at as u64)).unwrap();
    f.write_all(&[bytes[at] ^ 0x20]).unwrap();
}

/// The root is dm-verity with its hash in the measured config: a byte the
/// host flips in the workload's init stops the VM before the broker is
/// asked for anything (cvm-init reads the init through dm-verity first),
/// and a root hash that is not the disk's fails the boot with a line that
/// names the root. The disks are never written.
#[test]
fn vm_verity_root_refuses_a_changed_init_and_a_wrong_root_hash() {
    let Some((_g, _dir, mut bench)) = bench() else {
        return;
    };
    let data = bench.blank_disk("data.img", 64).unwrap();
    let blank = file_digest(&data).unwrap();

    // One byte of /sbin/init (the workload's init.sh) changed on the disk.
    let good_root = bench.root_image.clone();
    let changed = bench.dir.join("changed-root.img");
    std::fs::copy(&good_root, &changed).unwrap();
    // In a comment of the script: an unverified root would run it as usual
    // and the wait below would see "WORKLOAD: started" at once.
    flip_byte_in(&changed, b"It expects what cvm-init hands over");
    bench.root_image = changed.clone();
    let (mut vm, _) = bench.boot(&data, "changed-init.log").unwrap();
    let (i, line) = vm
        .wait_for_any(
            &["Kernel panic", "WORKLOAD: started", "BOOT FAILED"],
            Duration::from_secs(180),
        )
        .unwrap();
    assert_eq!(
        i,
        0,
        "the changed init was not stopped by dm-verity: {line}\n{}",
        vm.output()
    );
    vm.wait_exit(Duration::from_secs(60)).unwrap();
    let console = vm.output();
    assert!(console.contains("verity"), "{console}");
    assert!(
        !console.contains("/auth") && !bench.broker_log().contains("/auth"),
        "the broker was asked"
    );
    assert!(
        !console.contains("WORKLOAD:"),
        "the workload ran: {console}"
    );
    assert_eq!(
        file_digest(&data).unwrap(),
        blank,
        "the data disk was written"
    );

    // The config's root hash is not the disk's.
    bench.root_image = good_root;
    let mut verity = bench.verity.clone().unwrap();
    verity.root_hash = format!("{:064x}", 0xdead_beef_u64);
    bench.verity = Some(verity);
    bench.rebuild_initramfs().unwrap();
    let line = agent::failed_boot(&bench, &[&data], "wrong-root-hash.log").unwrap();
    assert!(line.contains("BOOT FAILED"), "{line}");
    assert!(line.contains("verifying the root /dev/vda"), "{line}");
    assert!(line.contains("not to the root hash"), "{line}");
    assert!(
        !bench.broker_log().contains("/auth"),
        "the broker was asked"
    );
    assert_eq!(
        file_digest(&data).unwrap(),
        blank,
        "the data disk was written"
    );
}

/// The kernel turns `a=b` words on the command line into PID 1's
/// environment. cvm-init drops them before anything else: the broker
/// client ignores the proxy (the boot reaches the broker directly) and
/// mkfs and the workload's init inherit only PATH, HOME and TERM.
#[test]
fn vm_pid1_drops_the_environment_the_host_put_on_the_command_line() {
    let Some((_g, _dir, bench)) = bench() else {
        return;
    };
    let data = bench.blank_disk("data.img", 64).unwrap();
    let boot = agent::good_boot_with(
        &bench,
        &data,
        "HTTPS_PROXY=http://10.0.2.2:1 LD_PRELOAD=/nonexistent.so",
        "env.log",
    )
    .unwrap();
    assert!(boot.volume.contains("Provisioned"), "{}", boot.volume);
    let console = std::fs::read_to_string(bench.dir.join("env.log")).unwrap();
    let dropped = console
        .lines()
        .find(|l| l.contains("environment variable(s) set on the kernel command line"))
        .unwrap_or_else(|| panic!("no line about the dropped environment:\n{console}"));
    assert!(
        dropped.contains("HTTPS_PROXY") && dropped.contains("LD_PRELOAD"),
        "{dropped}"
    );
    let env = console
        .lines()
        .find(|l| l.contains("WORKLOAD: env "))
        .unwrap_or_else(|| panic!("the workload printed no environment:\n{console}"));
    assert!(
        !env.contains("HTTPS_PROXY") && !env.contains("LD_PRELOAD"),
        "{env}"
    );
    assert!(env.contains("PATH"), "{env}");
    // mkfs ran (the volume was provisioned) from the same cleaned
    // environment the workload's init inherited.
}

/// Azure's protocol on a real TPM 2.0: swtpm provisioned on the host like
/// the paravisor provisions its vTPM (AK at 0x81000003, a stand-in HCL
/// report binding it at NV 0x01400001), `kind = "auto"` finds it, the
/// guest quotes with it, kbs-dev checks the claims, the quote and its
/// nonce: the first boot provisions, the second unlocks.
#[test]
fn vm_azure_vtpm_attests_first_boot_provisions_second_unlocks() {
    let Some(_g) = one_vm_at_a_time() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bench = AgentBench::with_options(
        dir.path(),
        agent::Options {
            azure_vtpm: true,
            ..agent::Options::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let data = bench.blank_disk("data.img", 64).unwrap();
    let first = provision(&bench, &data);
    let text = first.workload.trim_start_matches("wrote ").to_owned();
    let second = agent::good_boot(&bench, &data, "unlock.log").unwrap();
    assert!(second.volume.contains("Unlocked"), "{}", second.volume);
    assert_eq!(second.workload, format!("read {text}"));
    let broker = bench.broker_log();
    assert_eq!(
        broker.matches("/attest ok").count(),
        2,
        "two attested boots:\n{broker}"
    );
    assert!(broker.contains("tee az-snp-vtpm"), "{broker}");
    assert!(!broker.contains("sample"), "no simulated TEE:\n{broker}");
    let guest = std::fs::read_to_string(dir.path().join("unlock.log")).unwrap();
    assert!(guest.contains("Azure vTPM at /dev/tpmrm0"), "{guest}");
    assert!(guest.contains("az-snp-vtpm: evidence v1"), "{guest}");
    assert!(!guest.contains("SIMULATED"), "{guest}");
}
