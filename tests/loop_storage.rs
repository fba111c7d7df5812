//! Loop tier: the storage module on plain image files. No device-mapper is
//! needed (this host has none): formatting, header copies, validation of
//! real and forged headers, key checks, token writes, blank detection and
//! device lookup all work on files. Activation, mkfs on the mapping and
//! mount are covered by the VM tier.
//!
//! Uses the `cryptsetup`, `mkfs.ext4` and `sfdisk` programs to make headers
//! and signatures we did not write; a case whose tool is missing says so
//! and is skipped.

#![allow(clippy::unwrap_used)]

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use cvm_init::config::{Filesystem, KeyDerivation, VolumeConfig};
use cvm_init::secrets::Secret;
use cvm_init::storage::{
    self, assess, derive_key, format_volume, locate_device, mark_ready, prepare_volume,
    probe::{inspect, Contents},
    validate_header, Disposition, Expected, HeaderError, StorageEnv, StorageError, TokenState,
};

const MIB: u64 = 1 << 20;

/// A temporary root with `dev/`, `sys/` and a private `run/` directory;
/// removed on drop.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        storage::set_up_crypt_logging();
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("dev")).unwrap();
        fs::create_dir_all(dir.path().join("sys/class/block")).unwrap();
        Self { dir }
    }

    fn env(&self) -> StorageEnv {
        StorageEnv {
            dev: self.dir.path().join("dev"),
            sys: self.dir.path().join("sys"),
            run_dir: self.dir.path().join("run/cvm-init/luks"),
            device_wait: Duration::from_millis(300),
        }
    }

    /// A sparse zero image at `dev/<name>`.
    fn image(&self, name: &str, size: u64) -> PathBuf {
        let p = self.dir.path().join("dev").join(name);
        File::create(&p).unwrap().set_len(size).unwrap();
        p
    }
}

fn volume(
    name: &str,
    device: &str,
    format: bool,
    integrity: bool,
    kdf: KeyDerivation,
) -> VolumeConfig {
    VolumeConfig {
        name: name.to_owned(),
        device: device.to_owned(),
        key: "default/disk/data".parse().unwrap(),
        key_derivation: kdf,
        format,
        filesystem: Filesystem::Ext4,
        mountpoint: PathBuf::from("/sysroot/data"),
        mount_options: vec![],
        integrity,
        discard: false,
    }
}

fn material() -> Secret {
    Secret::new(
        (0u8..64)
            .map(|b| b.wrapping_mul(37).wrapping_add(11))
            .collect(),
    )
}

/// The whole image, to prove a refusal wrote nothing (a byte comparison:
/// hashing 32 MiB in an unoptimised test build takes seconds).
fn snapshot(p: &Path) -> Vec<u8> {
    fs::read(p).unwrap()
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Formats `dev/vdb` the way first boot does and returns its volume config
/// (no activation: that needs device-mapper).
fn provisioned(fx: &Fixture, kdf: KeyDerivation, ready: bool) -> (VolumeConfig, PathBuf) {
    let dev = fx.image("vdb", 32 * MIB);
    let vol = volume("data", "/dev/vdb", true, false, kdf);
    let permit = match assess(&vol, &dev, &fx.env()).unwrap() {
        Disposition::Format(p) => p,
        other => panic!("blank image assessed as {other:?}"),
    };
    drop(format_volume(permit, &vol, &material(), &fx.env()).unwrap());
    if ready {
        mark_ready(&vol, &dev).unwrap();
    }
    (vol, dev)
}

// ---------------------------------------------------------------- format

#[test]
fn first_boot_format_writes_exactly_our_header() {
    let fx = Fixture::new();
    let dev = fx.image("vdb", 32 * MIB);
    let vol = volume("data", "/dev/vdb", true, false, KeyDerivation::Hkdf);
    let env = fx.env();
    let permit = match assess(&vol, &dev, &env).unwrap() {
        Disposition::Format(p) => p,
        other => panic!("{other:?}"),
    };
    let mut copy = format_volume(permit, &vol, &material(), &env).unwrap();

    // The private copy lives in a 0700 directory and is what was validated.
    let mode = fs::metadata(&env.run_dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert!(copy.path().starts_with(&env.run_dir));
    assert_eq!(copy.subsystem(), "cvm-init");
    let json = copy.json().clone();
    validate_header(
        &json,
        &Expected {
            integrity: false,
            discard: false,
        },
    )
    .unwrap();
    assert_eq!(json["segments"]["0"]["encryption"], "aes-xts-plain64");
    assert_eq!(json["segments"]["0"]["sector_size"], 4096);
    assert_eq!(json["keyslots"]["0"]["kdf"]["type"], "pbkdf2");
    assert_eq!(json["keyslots"]["0"]["kdf"]["iterations"], 1000);
    assert_eq!(json["keyslots"]["0"]["key_size"], 64);
    let flags = json["config"]["flags"].as_array().unwrap();
    assert!(
        flags.contains(&json!("no-read-workqueue")) && flags.contains(&json!("no-write-workqueue"))
    );
    assert_eq!(
        json["tokens"]["0"],
        json!({"type": "cvm-init", "keyslots": [], "state": "provisioning", "version": 1})
    );

    // The HKDF key bound to this header's UUID opens the keyslot; the raw
    // material, or the key for another UUID, does not.
    let uuid = copy.luks_uuid().to_owned();
    uuid::Uuid::parse_str(&uuid).unwrap();
    let key = derive_key(KeyDerivation::Hkdf, &material(), "data", &uuid).unwrap();
    copy.verify_key(&key).unwrap();
    let wrong = derive_key(
        KeyDerivation::Hkdf,
        &material(),
        "data",
        "00000000-0000-4000-8000-000000000000",
    )
    .unwrap();
    assert!(matches!(
        copy.verify_key(&wrong),
        Err(StorageError::WrongKey { .. })
    ));
    assert!(matches!(
        copy.verify_key(&material()),
        Err(StorageError::WrongKey { .. })
    ));

    // The copy is removed with the handle.
    let path = copy.path().to_owned();
    drop(copy);
    assert!(!path.exists());
}

#[test]
fn raw_keys_open_the_keyslot_as_is() {
    let fx = Fixture::new();
    let (vol, dev) = provisioned(&fx, KeyDerivation::Raw, true);
    match assess(&vol, &dev, &fx.env()).unwrap() {
        Disposition::Unlock(mut copy) => copy.verify_key(&material()).unwrap(),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------- state token

#[test]
fn provisioning_state_resumes_and_ready_state_unlocks_only() {
    let fx = Fixture::new();
    let (vol, dev) = provisioned(&fx, KeyDerivation::Hkdf, false);
    // Interrupted first boot: provisioning again is allowed with format = true...
    assert!(matches!(
        assess(&vol, &dev, &fx.env()).unwrap(),
        Disposition::Resume(_)
    ));
    // ...and refused without it.
    let keep = volume("data", "/dev/vdb", false, false, KeyDerivation::Hkdf);
    assert!(matches!(
        assess(&keep, &dev, &fx.env()),
        Err(StorageError::ResumeNotAllowed { .. })
    ));
    // Resuming formats afresh: a new UUID.
    let before = match assess(&vol, &dev, &fx.env()).unwrap() {
        Disposition::Resume(p) => p,
        other => panic!("{other:?}"),
    };
    let old_uuid = Command::new("cryptsetup")
        .args(["luksUUID"])
        .arg(&dev)
        .output()
        .unwrap();
    let copy = format_volume(before, &vol, &material(), &fx.env()).unwrap();
    if old_uuid.status.success() {
        assert_ne!(
            String::from_utf8_lossy(&old_uuid.stdout).trim(),
            copy.luks_uuid()
        );
    }
    drop(copy);

    mark_ready(&vol, &dev).unwrap();
    let mut copy = match assess(&vol, &dev, &fx.env()).unwrap() {
        Disposition::Unlock(c) => c,
        other => panic!("ready header assessed as {other:?}"),
    };
    assert_eq!(
        storage::header::header_token_state(copy.json()).unwrap(),
        Some(TokenState::Ready)
    );
    let key = derive_key(KeyDerivation::Hkdf, &material(), "data", copy.luks_uuid()).unwrap();
    copy.verify_key(&key).unwrap();
    // Ready is unlock-only even with format = true: same answer.
    assert!(matches!(
        assess(&keep, &dev, &fx.env()).unwrap(),
        Disposition::Unlock(_)
    ));
}

#[test]
fn our_header_without_token_is_an_interrupted_format() {
    if !have("cryptsetup") {
        eprintln!("SKIP: cryptsetup not installed");
        return;
    }
    let fx = Fixture::new();
    let (vol, dev) = provisioned(&fx, KeyDerivation::Hkdf, false);
    // Simulate a crash between crypt_format and the token write.
    run(Command::new("cryptsetup")
        .args(["token", "remove", "--token-id", "0"])
        .arg(&dev));
    assert!(matches!(
        assess(&vol, &dev, &fx.env()).unwrap(),
        Disposition::Resume(_)
    ));
}

#[test]
fn luks2_we_did_not_make_is_refused_even_with_our_token() {
    if !have("cryptsetup") {
        eprintln!("SKIP: cryptsetup not installed");
        return;
    }
    let fx = Fixture::new();
    let dev = fx.image("vdb", 32 * MIB);
    let keyfile = fx.dir.path().join("keyfile");
    fs::write(&keyfile, [7u8; 64]).unwrap();
    run(Command::new("cryptsetup")
        .args([
            "luksFormat",
            "--batch-mode",
            "--type",
            "luks2",
            "--pbkdf",
            "pbkdf2",
        ])
        .args(["--pbkdf-force-iterations", "1000", "--key-file"])
        .arg(&keyfile)
        .arg(&dev));
    let vol = volume("data", "/dev/vdb", true, false, KeyDerivation::Raw);
    let before = snapshot(&dev);
    let err = prepare_volume(&vol, &material(), &fx.env()).unwrap_err();
    assert!(matches!(err, StorageError::ForeignLuks { .. }), "{err}");
    assert!(err.to_string().contains("did not make"), "{err}");
    assert_eq!(snapshot(&dev), before, "refusal must not write");

    // Adding a token that claims "ready" does not make it ours.
    let token = fx.dir.path().join("token.json");
    fs::write(&token, TokenState::Ready.token_json().to_string()).unwrap();
    run(Command::new("cryptsetup")
        .args(["token", "import", "--json-file"])
        .arg(&token)
        .arg(&dev));
    let before = snapshot(&dev);
    let err = prepare_volume(&vol, &material(), &fx.env()).unwrap_err();
    assert!(matches!(err, StorageError::ForeignLuks { .. }), "{err}");
    assert_eq!(snapshot(&dev), before);
}

// ------------------------------------------------------ forged headers

/// Rewrites the JSON area of both header copies in an image, as an
/// attacker with the disk would, optionally fixing the checksums so
/// libcryptsetup accepts the result. vm-bench's forger is written from the
/// LUKS2 specification, independently of `storage::ondisk`.
fn forge(dev: &Path, fix_checksum: bool, edit: impl FnOnce(&mut Value)) {
    vm_bench::luks2::forge(dev, fix_checksum, edit).unwrap();
}

/// Provisions a ready volume, forges its header, and returns the error.
fn forged_error(integrity_configured: bool, edit: impl FnOnce(&mut Value)) -> StorageError {
    let fx = Fixture::new();
    let (_, dev) = provisioned(&fx, KeyDerivation::Hkdf, true);
    forge(&dev, true, edit);
    let vol = volume(
        "data",
        "/dev/vdb",
        true,
        integrity_configured,
        KeyDerivation::Hkdf,
    );
    let before = snapshot(&dev);
    // The whole public path: it must stop before any key is used.
    let err = prepare_volume(&vol, &material(), &fx.env()).unwrap_err();
    assert_eq!(snapshot(&dev), before, "refusal must not write");
    assert!(err.to_string().contains("no key was used"), "{err}");
    err
}

fn header_error(e: StorageError) -> HeaderError {
    match e {
        StorageError::Header { source, .. } => source,
        other => panic!("expected a header refusal, got: {other}"),
    }
}

#[test]
fn forged_null_cipher_is_refused() {
    let e = header_error(forged_error(false, |j| {
        j["segments"]["0"]["encryption"] = json!("cipher_null-ecb");
    }));
    assert!(
        matches!(&e, HeaderError::Cipher { found, .. } if found == "cipher_null-ecb"),
        "{e}"
    );
    assert!(e.to_string().contains("cipher_null"));
}

#[test]
fn forged_second_keyslot_is_refused() {
    let e = header_error(forged_error(false, |j| {
        let mut slot = j["keyslots"]["0"].clone();
        // Give it its own (unused) area so the header stays valid LUKS2.
        let off: u64 = slot["area"]["offset"].as_str().unwrap().parse().unwrap();
        let size: u64 = slot["area"]["size"].as_str().unwrap().parse().unwrap();
        slot["area"]["offset"] = json!((off + size).to_string());
        j["keyslots"]["1"] = slot;
        j["digests"]["0"]["keyslots"] = json!(["0", "1"]);
    }));
    assert_eq!(e, HeaderError::KeyslotCount { found: 2 });
}

#[test]
fn forged_integrity_added_when_not_configured_is_refused() {
    let e = header_error(forged_error(false, |j| {
        j["segments"]["0"]["integrity"] = json!({
            "type": "hmac(sha256)", "journal_encryption": "none", "journal_integrity": "none"
        });
    }));
    assert!(matches!(e, HeaderError::IntegrityUnexpected { .. }), "{e}");
}

#[test]
fn header_without_integrity_when_configured_is_refused() {
    // The header has no integrity (stripped, from the volume's point of
    // view); the keyslot even claims the integrity key size.
    let e = header_error(forged_error(true, |j| {
        j["keyslots"]["0"]["key_size"] = json!(96);
    }));
    assert!(matches!(e, HeaderError::IntegrityMissing { .. }), "{e}");
}

#[test]
fn forged_foreign_token_is_refused() {
    let e = header_error(forged_error(false, |j| {
        j["tokens"]["1"] = json!({"type": "systemd-tpm2", "keyslots": ["0"]});
    }));
    assert!(
        matches!(&e, HeaderError::ForeignToken { found, .. } if found == "systemd-tpm2"),
        "{e}"
    );
}

#[test]
fn forged_requirements_are_refused() {
    // A known requirement (online-reencrypt-v2) without its reencryption
    // keyslot is already rejected by libcryptsetup; an unknown one loads,
    // and our validator must refuse it.
    let e = header_error(forged_error(false, |j| {
        j["config"]["requirements"] = json!({"mandatory": ["cvm-init-test-unknown"]});
    }));
    assert!(matches!(e, HeaderError::Requirements { .. }), "{e}");
}

#[test]
fn forged_unknown_flag_is_refused() {
    let e = header_error(forged_error(false, |j| {
        j["config"]["flags"] = json!(["no-read-workqueue", "no-journal"]);
    }));
    assert_eq!(
        e,
        HeaderError::UnknownFlag {
            found: "no-journal".into()
        }
    );
}

#[test]
fn forged_sector_size_is_refused() {
    let e = header_error(forged_error(false, |j| {
        j["segments"]["0"]["sector_size"] = json!(512);
    }));
    assert!(
        matches!(e, HeaderError::SectorSize { found: 512, .. }),
        "{e}"
    );
}

#[test]
fn forged_header_with_bad_checksum_is_refused_by_libcryptsetup() {
    let fx = Fixture::new();
    let (vol, dev) = provisioned(&fx, KeyDerivation::Hkdf, true);
    forge(&dev, false, |j| {
        j["segments"]["0"]["encryption"] = json!("cipher_null-ecb");
    });
    // blkid may or may not still call it LUKS; either way nothing is used.
    let before = snapshot(&dev);
    let err = prepare_volume(&vol, &material(), &fx.env()).unwrap_err();
    assert_eq!(snapshot(&dev), before);
    eprintln!("bad-checksum forgery refused with: {err}");
    assert!(
        matches!(
            err,
            StorageError::Crypt { .. } | StorageError::NotBlank { .. }
        ),
        "{err}"
    );
}

// ------------------------------------------------------ blank detection

/// Sets up `dev/vdb` with `make`, then checks `prepare_volume` with
/// `format = true` refuses it without writing a byte.
fn refused(make: impl FnOnce(&Fixture, &Path)) -> StorageError {
    let fx = Fixture::new();
    let dev = fx.image("vdb", 32 * MIB);
    make(&fx, &dev);
    let before = snapshot(&dev);
    let vol = volume("data", "/dev/vdb", true, false, KeyDerivation::Hkdf);
    let err = prepare_volume(&vol, &material(), &fx.env()).unwrap_err();
    assert_eq!(snapshot(&dev), before, "refusal must not write: {err}");
    let msg = err.to_string();
    assert!(msg.contains("volume data") && msg.contains("vdb"), "{msg}");
    err
}

fn write_at(dev: &Path, offset: u64, bytes: &[u8]) {
    let mut f = OpenOptions::new().write(true).open(dev).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

fn random(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut v)
        .unwrap();
    v
}

#[test]
fn zero_device_is_blank_and_formattable_only_when_allowed() {
    let fx = Fixture::new();
    let dev = fx.image("vdb", 32 * MIB);
    assert_eq!(inspect(&dev).unwrap(), Contents::Blank);
    let keep = volume("data", "/dev/vdb", false, false, KeyDerivation::Hkdf);
    let err = assess(&keep, &dev, &fx.env()).unwrap_err();
    assert!(
        matches!(err, StorageError::FormatNotAllowed { .. }),
        "{err}"
    );
    let vol = volume("data", "/dev/vdb", true, false, KeyDerivation::Hkdf);
    assert!(matches!(
        assess(&vol, &dev, &fx.env()).unwrap(),
        Disposition::Format(_)
    ));
}

#[test]
fn filesystem_is_refused() {
    if !have("mkfs.ext4") {
        eprintln!("SKIP: mkfs.ext4 not installed");
        return;
    }
    let err = refused(|_, dev| run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(dev)));
    match err {
        StorageError::NotBlank { found, .. } => assert!(found.contains("ext4"), "{found}"),
        other => panic!("{other}"),
    }
}

#[test]
fn mbr_partition_table_is_refused() {
    let err = refused(|_, dev| {
        // One Linux partition from sector 2048, 8192 sectors, disk id 0x12345678.
        let mut mbr = [0u8; 512];
        mbr[440..444].copy_from_slice(&0x1234_5678u32.to_le_bytes());
        let e = &mut mbr[446..462];
        e[4] = 0x83;
        e[8..12].copy_from_slice(&2048u32.to_le_bytes());
        e[12..16].copy_from_slice(&8192u32.to_le_bytes());
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        write_at(dev, 0, &mbr);
    });
    match err {
        StorageError::NotBlank { found, .. } => assert!(found.contains("dos"), "{found}"),
        other => panic!("{other}"),
    }
}

#[test]
fn gpt_partition_table_is_refused() {
    if !have("sfdisk") {
        eprintln!("SKIP: sfdisk not installed (apt-get install fdisk)");
        return;
    }
    let err = refused(|_, dev| sfdisk(dev, "label: gpt\nstart=2048, size=4096, name=x\n"));
    match err {
        StorageError::NotBlank { found, .. } => assert!(found.contains("gpt"), "{found}"),
        other => panic!("{other}"),
    }
}

#[test]
fn luks1_is_refused() {
    if !have("cryptsetup") {
        eprintln!("SKIP: cryptsetup not installed");
        return;
    }
    let err = refused(|fx, dev| {
        let keyfile = fx.dir.path().join("keyfile");
        fs::write(&keyfile, [7u8; 64]).unwrap();
        run(Command::new("cryptsetup")
            .args([
                "luksFormat",
                "--batch-mode",
                "--type",
                "luks1",
                "--pbkdf-force-iterations",
                "1000",
                "--key-file",
            ])
            .arg(&keyfile)
            .arg(dev));
    });
    match err {
        StorageError::NotBlank { found, .. } => assert!(found.contains("crypto_LUKS1"), "{found}"),
        other => panic!("{other}"),
    }
}

#[test]
fn random_data_in_the_first_mib_is_refused() {
    let err = refused(|_, dev| write_at(dev, 4096, &random(4096)));
    match err {
        StorageError::NotBlank { found, .. } => {
            assert!(
                found.contains("first MiB") && found.contains("plain dm-crypt"),
                "{found}"
            )
        }
        other => panic!("{other}"),
    }
    assert!(refused(|_, dev| write_at(dev, 0, &random(MIB as usize)))
        .to_string()
        .contains("wipefs"));
}

#[test]
fn random_data_only_in_the_last_mib_is_refused() {
    let err = refused(|_, dev| write_at(dev, 32 * MIB - 512, &random(512)));
    match err {
        StorageError::NotBlank { found, .. } => assert!(found.contains("last MiB"), "{found}"),
        other => panic!("{other}"),
    }
}

// ------------------------------------------------------- device lookup

fn sfdisk(dev: &Path, script: &str) {
    let mut child = Command::new("sfdisk")
        .args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(dev)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

/// Adds a block device to the fake sysfs: `devices/virtual/block/<disk>[/<part>]`
/// with `uevent` (and `partition`), linked from `class/block/<name>`.
fn sys_block(fx: &Fixture, disk: &str, part: Option<(&str, u32)>) {
    let sys = fx.dir.path().join("sys");
    let mut dir = sys.join("devices/virtual/block").join(disk);
    let mut name = disk.to_owned();
    if let Some((p, n)) = part {
        dir = dir.join(p);
        name = p.to_owned();
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("partition"), format!("{n}\n")).unwrap();
    }
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("uevent"),
        format!("MAJOR=254\nMINOR=0\nDEVNAME={name}\nDEVTYPE=disk\n"),
    )
    .unwrap();
    std::os::unix::fs::symlink(&dir, sys.join("class/block").join(&name)).unwrap();
}

#[test]
fn dev_paths_resolve_and_wait_until_the_deadline() {
    let fx = Fixture::new();
    let env = fx.env();
    let dev = fx.image("vdb", MIB);
    assert_eq!(locate_device("/dev/vdb", &env).unwrap(), dev);

    // A device that appears while we wait is found.
    let late = env.dev.join("vdc");
    let maker = {
        let late = late.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            File::create(late).unwrap();
        })
    };
    let env_long = StorageEnv {
        device_wait: Duration::from_secs(5),
        ..env.clone()
    };
    assert_eq!(locate_device("/dev/vdc", &env_long).unwrap(), late);
    maker.join().unwrap();

    // One that never appears: a deadline error naming what was looked for.
    let start = Instant::now();
    let err = locate_device("/dev/vdz", &env).unwrap_err();
    // The retry loop never sleeps past the deadline, so it gives up before
    // the next wait would cross it: after at least one retry.
    assert!(
        start.elapsed() >= Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
    assert!(start.elapsed() < Duration::from_secs(3));
    let msg = err.to_string();
    assert!(matches!(err, StorageError::DeviceNotFound { .. }), "{msg}");
    assert!(
        msg.contains("/dev/vdz") && msg.contains("vdz") && msg.contains("300ms"),
        "{msg}"
    );

    let err = locate_device("UUID=0b9e3b7c-0000-4000-8000-000000000000", &env).unwrap_err();
    assert!(
        err.to_string().contains("UUID=0b9e3b7c") && err.to_string().contains("class/block"),
        "{err}"
    );

    // Not a device, and escaping /dev: permanent errors, at once.
    fs::create_dir(env.dev.join("dir")).unwrap();
    assert!(matches!(
        locate_device("/dev/dir", &env),
        Err(StorageError::DeviceLookup { .. })
    ));
    assert!(matches!(
        locate_device("/dev/../etc", &env),
        Err(StorageError::DeviceLookup { .. })
    ));
}

#[test]
fn uuid_partuuid_and_partlabel_resolve_through_sysfs_and_blkid() {
    if !have("sfdisk") || !have("mkfs.ext4") {
        eprintln!("SKIP: sfdisk or mkfs.ext4 not installed");
        return;
    }
    let fx = Fixture::new();
    let env = fx.env();
    // vda: a GPT disk with two named partitions (the partition "nodes" are
    // separate image files, as the kernel would expose them).
    let vda = fx.image("vda", 8 * MIB);
    sfdisk(
        &vda,
        "label: gpt\n\
         start=2048, size=4096, name=data, uuid=6a0c1f3e-2b8d-4c55-9e7a-0d1f2e3c4b5a\n\
         start=6144, size=4096, name=logs, uuid=7b1d2a4f-3c9e-4d66-8f8b-1e2a3f4d5c6b\n",
    );
    let vda1 = fx.image("vda1", 2 * MIB);
    let vda2 = fx.image("vda2", 2 * MIB);
    sys_block(&fx, "vda", None);
    sys_block(&fx, "vda", Some(("vda1", 1)));
    sys_block(&fx, "vda", Some(("vda2", 2)));
    // vdb: an MBR disk, PARTUUID in the <disk id>-<nn> form.
    let vdb = fx.image("vdb", 8 * MIB);
    sfdisk(
        &vdb,
        "label: dos\nlabel-id: 0xcafe1234\nstart=2048, size=4096, type=83\n",
    );
    let vdb1 = fx.image("vdb1", 2 * MIB);
    sys_block(&fx, "vdb", None);
    sys_block(&fx, "vdb", Some(("vdb1", 1)));
    // vdc: a filesystem with a known UUID.
    let vdc = fx.image("vdc", 8 * MIB);
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-U", "5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a"])
        .arg(&vdc));
    sys_block(&fx, "vdc", None);

    assert_eq!(locate_device("PARTLABEL=logs", &env).unwrap(), vda2);
    assert_eq!(locate_device("PARTLABEL=data", &env).unwrap(), vda1);
    assert_eq!(
        locate_device("PARTUUID=6A0C1F3E-2B8D-4C55-9E7A-0D1F2E3C4B5A", &env).unwrap(),
        vda1
    );
    assert_eq!(locate_device("PARTUUID=cafe1234-01", &env).unwrap(), vdb1);
    assert_eq!(
        locate_device("UUID=5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a", &env).unwrap(),
        vdc
    );
    let err = locate_device("PARTLABEL=missing", &env).unwrap_err();
    assert!(matches!(err, StorageError::DeviceNotFound { .. }), "{err}");

    // A look-alike disk with the same filesystem UUID: refused, not guessed.
    let vdd = fx.image("vdd", 8 * MIB);
    fs::copy(&vdc, &vdd).unwrap();
    sys_block(&fx, "vdd", None);
    let err = locate_device("UUID=5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a", &env).unwrap_err();
    assert!(err.to_string().contains("several devices"), "{err}");
}

#[test]
fn integrity_format_without_device_mapper_fails_cleanly() {
    // Formatting with integrity has the kernel write the dm-integrity
    // superblock, so it needs device-mapper (covered in the VM tier). Here
    // we check that its failure leaves a device the next boot provisions
    // again: libcryptsetup has already filled the keyslot area with random
    // bytes by then, which alone would read as "not blank" forever.
    // The /dev/mapper/control node may exist without the kernel driver;
    // /proc/misc lists the driver only when it is there.
    let dm = fs::read_to_string("/proc/misc").unwrap_or_default();
    if dm.contains("device-mapper") {
        eprintln!("SKIP: device-mapper present; the VM tier covers integrity format");
        return;
    }
    let fx = Fixture::new();
    let dev = fx.image("vdb", 64 * MIB);
    let vol = volume("data", "/dev/vdb", true, true, KeyDerivation::Hkdf);
    let permit = match assess(&vol, &dev, &fx.env()).unwrap() {
        Disposition::Format(p) => p,
        other => panic!("{other:?}"),
    };
    let err = format_volume(permit, &vol, &material(), &fx.env()).unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Crypt {
                op: "format LUKS2",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(inspect(&dev).unwrap(), Contents::Blank);
    assert!(matches!(
        assess(&vol, &dev, &fx.env()).unwrap(),
        Disposition::Format(_)
    ));
}
