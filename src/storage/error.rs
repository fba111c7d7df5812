use std::path::PathBuf;
use std::time::Duration;

use super::header::HeaderError;

/// Everything that can stop a volume from being prepared. Each message names
/// the volume and the device and says what an operator can do about it.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("device {spec} did not appear within {waited:?} (looked for it {how}); check the VM has the disk attached and that the volume's `device` names it")]
    DeviceNotFound {
        spec: String,
        how: String,
        waited: Duration,
    },
    #[error("device {spec}: {problem}")]
    DeviceLookup { spec: String, problem: String },
    #[error("volume {volume}: cannot inspect device {}: {problem}; check the device is readable", device.display())]
    Probe {
        volume: String,
        device: PathBuf,
        problem: String,
    },
    #[error("volume {volume}: device {} is not blank ({found}); cvm-init formats only blank devices and never overwrites data. If this disk really is meant to be wiped, wipe it deliberately: `wipefs -a {dev}` and zero it (`blkdiscard -z {dev}`, or dd over its first 16 MiB and its last MiB), then boot again", device.display(), dev = device.display())]
    NotBlank {
        volume: String,
        device: PathBuf,
        found: String,
    },
    #[error("volume {volume}: device {} is blank but the config does not allow formatting it (format = false); set format = true for this volume if it should be provisioned on first boot", device.display())]
    FormatNotAllowed { volume: String, device: PathBuf },
    #[error("volume {volume}: device {} holds a LUKS2 header that cvm-init did not make ({why}); it is never formatted or unlocked. Use a blank disk, or wipe this one deliberately if its data is not needed", device.display())]
    ForeignLuks {
        volume: String,
        device: PathBuf,
        why: String,
    },
    #[error("volume {volume}: the LUKS2 header on {} carries cvm-init's subsystem label, but its state token {why}. The host altered the header, or the disk belongs to another volume or VM; it is neither formatted nor unlocked, and no key was used. If this disk really is to be discarded, wipe it deliberately (`wipefs -a {dev}` and zero its first 16 MiB: `dd if=/dev/zero of={dev} bs=1M count=16`), then boot again", device.display(), dev = device.display())]
    StateNotAuthentic {
        volume: String,
        device: PathBuf,
        why: String,
    },
    #[error("volume {volume}: the LUKS2 header on {} has UUID {found}, but the config pins luks_uuid = {expected:?}; this is not the disk the config names (the host may have swapped it). Nothing was formatted and no key was used", device.display())]
    UuidMismatch {
        volume: String,
        device: PathBuf,
        found: String,
        expected: String,
    },
    #[error("volume {volume}: the active mapping {} does not match what the config and the header say ({problem}); it was removed again. The host may have altered the dm-integrity superblock or the device; nothing was mounted", mapper.display())]
    MappingMismatch {
        volume: String,
        mapper: PathBuf,
        problem: String,
    },
    #[error("volume {volume}: cannot write {what} to {}: {source}", device.display())]
    Write {
        volume: String,
        device: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("volume {volume}: device {} holds an interrupted cvm-init first boot (state \"provisioning\") but format = false, so it is not re-provisioned; set format = true to finish provisioning", device.display())]
    ResumeNotAllowed { volume: String, device: PathBuf },
    #[error("volume {volume}: the LUKS2 header on {} is refused: {source}. The host may have forged or altered it; no key was used. Restore the disk from a trusted source or re-provision a blank disk", device.display())]
    Header {
        volume: String,
        device: PathBuf,
        #[source]
        source: HeaderError,
    },
    #[error("the workload's root {} is not verified: {found}. The host can write that disk and change what runs next to the keys, so no key is fetched. Mount the root through dm-verity (systemd-veritysetup with roothash= in a UKI, mkosi Verity=, veritysetup open), or, if the image protects its root another way, say so in the config: [root] integrity = \"image\" with a one-line reason", root.display())]
    RootUnverified { root: PathBuf, found: String },
    #[error("the root's dm-verity hash tree on {} is refused: {problem}. Nothing was mounted and no key was fetched; boot the image this config belongs to, or fix [boot.verity]", device.display())]
    VerityRoot { device: PathBuf, problem: String },
    #[error("volume {volume}: libcryptsetup failed to {op} on {}: {source}", device.display())]
    Crypt {
        volume: String,
        device: PathBuf,
        op: &'static str,
        #[source]
        source: libcryptsetup_rs::LibcryptErr,
    },
    #[error("volume {volume}: the key from the broker does not open the LUKS2 keyslot on {}; check that the broker serves the right resource for this disk. Nothing was formatted", device.display())]
    WrongKey { volume: String, device: PathBuf },
    #[error("volume {volume}: key material for {what} is {len} bytes; at least {min} uniformly random bytes are required. Store a longer key in the broker")]
    KeyTooShort {
        volume: String,
        what: &'static str,
        len: usize,
        min: usize,
    },
    #[error("volume {volume}: key derivation failed: {problem}")]
    Kdf { volume: String, problem: String },
    #[error("volume {volume}: cannot create the dm-crypt mapping {} on {}: {source}. Check that the initramfs loads dm_mod, dm_crypt, xts and an AES module, and that no mapping of that name exists already; nothing was written", mapper.display(), device.display())]
    DmCreate {
        volume: String,
        mapper: PathBuf,
        device: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("volume {volume}: activation reported success but {} is not active (status {status}); see the libcryptsetup messages above", mapper.display())]
    NotActive {
        volume: String,
        mapper: PathBuf,
        status: String,
    },
    #[error("volume {volume}: cannot prepare the private header directory {}: {source}; it must be a tmpfs directory writable by root", path.display())]
    RunDir {
        volume: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("volume {volume}: {program} not found in PATH or /usr/sbin, /sbin; install it in the initramfs")]
    ToolMissing {
        volume: String,
        program: &'static str,
    },
    #[error("volume {volume}: {program} on {} failed ({status}): {stderr}", mapper.display())]
    Mkfs {
        volume: String,
        program: &'static str,
        mapper: PathBuf,
        status: String,
        stderr: String,
    },
    #[error("volume {volume}: cannot create mountpoint {}: {source}{hint}", mountpoint.display())]
    Mountpoint {
        volume: String,
        mountpoint: PathBuf,
        #[source]
        source: std::io::Error,
        /// What to do, when the cause is known.
        hint: &'static str,
    },
    #[error("volume {volume}: mounting {} on {} as {fstype} with options {options:?} failed: {source}", mapper.display(), mountpoint.display())]
    Mount {
        volume: String,
        mapper: PathBuf,
        mountpoint: PathBuf,
        fstype: &'static str,
        options: String,
        #[source]
        source: nix::Error,
    },
}
