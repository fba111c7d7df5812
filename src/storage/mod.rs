//! Encrypted volumes: find the device, decide what it holds, unlock it or
//! provision it on first boot, make the filesystem, mount it.
//!
//! The rules (DESIGN.md invariants 1-3):
//!
//! * **Never lose data.** A device is formatted only if `format = true` and
//!   it is blank ([`probe`]: no libblkid signature, and the first 16 MiB,
//!   the last MiB and samples across the device are zero). The only LUKS
//!   device ever reformatted is one of ours whose first boot was
//!   interrupted, proven by a state token whose MAC verifies under the
//!   volume's key ([`state`]): no workload ever ran on it. A missing or
//!   forged token is refused, never formatted. A failed unlock never leads
//!   to formatting.
//! * **Assessment never writes the device.** The metadata area is read with
//!   plain reads into private tmpfs, and libcryptsetup only ever loads that
//!   copy ([`luks::open_header_copy`]).
//! * **The host can forge any header.** The copy is checked by
//!   [`validate_header`] and the mapping is activated from that same copy
//!   as a detached header; after activation the kernel's tables are
//!   checked too (`mapping`).
//! * **A power cut at any moment leaves a device the next boot can take
//!   up**: the first header is built on tmpfs and written in an order whose
//!   every prefix is either blank or a complete `provisioning` header.
//! * **Keys stay in memory**, in [`Secret`]s that wipe themselves.
//!
//! Layers: [`header`] (pure JSON policy), [`state`] (the MAC'd token),
//! [`ondisk`] (binary header decoding), [`probe`] (libblkid and the blank
//! rule, read-only), `luks` (libcryptsetup: copies, keys, activation), `commit` (the first format), `dmtable` and
//! `mapping` (the kernel's view), `locate` (device lookup without udev),
//! `fs` (mkfs, mount), `inspect` (the operator's report). Activation,
//! integrity initialisation, mkfs and mount need device-mapper and are
//! exercised by the VM tier; the rest by `tests/loop_storage.rs`.

mod commit;
mod direct;
mod dmcrypt;
mod dmtable;
mod error;
mod fs;
pub mod header;
mod inspect;
mod kdf;
mod locate;
mod luks;
mod mapping;
pub mod ondisk;
pub mod probe;
mod rootcheck;
pub mod state;
mod verity;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::StorageError;
pub use header::{header_problems, validate_header, Expected, HeaderError};
pub use inspect::{inspect_volume, Inspection};
pub use kdf::{derive_key, VolumeKeys};
pub use locate::locate_device;
pub use luks::{open_header_copy, set_up_crypt_logging, HeaderCopy};
pub use rootcheck::{check_root, RootCheckEnv, RootProtection};
pub use state::{StateToken, TokenState};
pub use verity::{activate_root, check_root_hash, read_through};

use crate::config::VolumeConfig;
use crate::timing;

/// Where storage finds devices and keeps its private files. All injectable
/// so tests run against a temporary directory.
#[derive(Debug, Clone)]
pub struct StorageEnv {
    /// `/dev`.
    pub dev: PathBuf,
    /// `/sys`.
    pub sys: PathBuf,
    /// Private tmpfs directory for header copies, e.g. `/run/cvm-init/luks`;
    /// created with mode 0700.
    pub run_dir: PathBuf,
    /// Where the workload learns what happened to each volume, e.g.
    /// `/run/cvm-init/volumes` (0755, files 0644, no secrets).
    pub status_dir: PathBuf,
    /// How long to wait for a device to appear.
    pub device_wait: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeAction {
    /// Provisioned earlier; unlocked with the validated header.
    Unlocked,
    /// Blank device formatted, filesystem made (first boot).
    Provisioned,
    /// An interrupted first boot was restarted from scratch.
    ResumedProvisioning,
}

impl VolumeAction {
    /// The word the status file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeAction::Unlocked => "unlocked",
            VolumeAction::Provisioned => "provisioned",
            VolumeAction::ResumedProvisioning => "resumed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PreparedVolume {
    pub name: String,
    pub device: PathBuf,
    /// `/dev/mapper/<name>`.
    pub mapper: PathBuf,
    pub action: VolumeAction,
    pub luks_uuid: String,
}

/// Proof that a device may be formatted: only [`assess`] makes one.
#[derive(Debug)]
pub struct FormatPermit {
    device: PathBuf,
    resume: bool,
}

/// What [`prepare_volume`] will do with a device, decided before any write
/// and before any key use.
#[derive(Debug)]
pub enum Disposition {
    /// Blank and `format = true`: first-boot provisioning.
    Format(FormatPermit),
    /// Our authenticated `provisioning` header, `format = true`: finish
    /// provisioning with it (see [`prepare_volume`]).
    Resume(FormatPermit, Box<HeaderCopy>),
    /// Our authenticated `ready` header, validated: unlock only.
    Unlock(Box<HeaderCopy>),
}

impl Disposition {
    pub fn describe(&self) -> &'static str {
        match self {
            Disposition::Format(_) => "blank: provision",
            Disposition::Resume(..) => "interrupted first boot: finish provisioning",
            Disposition::Unlock(_) => "provisioned: unlock",
        }
    }
}

/// What a device holds, found before any key is involved ([`examine`]):
/// where it is, and either blank or a header of ours in a private copy
/// whose shape passed [`validate_header`]. Nothing in it counts until
/// [`decide`] has checked the state token's MAC.
#[derive(Debug)]
pub struct Examined {
    device: PathBuf,
    found: Found,
}

#[derive(Debug)]
enum Found {
    Blank,
    /// Our subsystem label, our shape, a token of our format (unverified).
    Ours {
        copy: Box<HeaderCopy>,
        token: StateToken,
    },
}

impl Examined {
    /// The device the volume's `device` spec named.
    pub fn device(&self) -> &Path {
        &self.device
    }
}

/// Finds the volume's device and examines it ([`examine_device`]). Needs
/// no key, so the boot runs it while the broker session is under way.
pub fn examine(vol: &VolumeConfig, env: &StorageEnv) -> Result<Examined, StorageError> {
    let device = timing::timed("locate", || locate_device(&vol.device, env))?;
    examine_device(vol, &device, env)
}

/// Probes the device and, for a LUKS2 header, copies and loads it and
/// checks everything about it that needs no key: our subsystem label, the
/// pinned UUID, the token's format and the header's exact shape. Reads
/// only; the one write is the header copy in `env.run_dir`.
pub fn examine_device(
    vol: &VolumeConfig,
    device: &Path,
    env: &StorageEnv,
) -> Result<Examined, StorageError> {
    let name = &vol.name;
    let contents =
        timing::timed("probe", || probe::inspect(device, vol.integrity)).map_err(|problem| {
            StorageError::Probe {
                volume: name.clone(),
                device: device.to_owned(),
                problem,
            }
        })?;
    let found = match contents {
        probe::Contents::Blank => Found::Blank,
        probe::Contents::Signatures(found) => {
            return Err(StorageError::NotBlank {
                volume: name.clone(),
                device: device.to_owned(),
                found: format!("libblkid finds: {}", found.join(", ")),
            })
        }
        probe::Contents::Data { region } => {
            return Err(StorageError::NotBlank {
                volume: name.clone(),
                device: device.to_owned(),
                found: format!(
                    "no known signature, but non-zero bytes in the {region}: plain dm-crypt, random fill or data of an unknown kind"
                ),
            })
        }
        probe::Contents::Luks2 => {
            let copy =
                timing::timed("header copy", || open_header_copy(name, device, &env.run_dir))?;
            if copy.subsystem() != header::params::SUBSYSTEM {
                return Err(StorageError::ForeignLuks {
                    volume: name.clone(),
                    device: device.to_owned(),
                    why: format!(
                        "subsystem label {:?}, not {:?}",
                        copy.subsystem(),
                        header::params::SUBSYSTEM
                    ),
                });
            }
            // The shape first: its errors name what a forger changed; the
            // MAC then catches every change the shape allows.
            let _validation = timing::phase("validate");
            let token = claimed_token(vol, &copy)?;
            validate_header(copy.json(), &Expected::for_volume(vol)).map_err(|source| {
                StorageError::Header {
                    volume: name.clone(),
                    device: device.to_owned(),
                    source,
                }
            })?;
            Found::Ours {
                copy: Box::new(copy),
                token,
            }
        }
    };
    Ok(Examined {
        device: device.to_owned(),
        found,
    })
}

/// Decides what may be done with an examined device. A header of ours
/// counts only with a state token whose MAC verifies under `keys`.
pub fn decide(
    vol: &VolumeConfig,
    examined: Examined,
    keys: &VolumeKeys<'_>,
) -> Result<Disposition, StorageError> {
    let device = examined.device;
    let (copy, token) = match examined.found {
        Found::Blank if vol.format => {
            return Ok(Disposition::Format(FormatPermit {
                device,
                resume: false,
            }))
        }
        Found::Blank => {
            return Err(StorageError::FormatNotAllowed {
                volume: vol.name.clone(),
                device,
            })
        }
        Found::Ours { copy, token } => (copy, token),
    };
    timing::timed("state token", || verify_token(vol, &copy, keys, &token))?;
    match token.state {
        TokenState::Provisioning if vol.format => Ok(Disposition::Resume(
            FormatPermit {
                device,
                resume: true,
            },
            copy,
        )),
        TokenState::Provisioning => Err(StorageError::ResumeNotAllowed {
            volume: vol.name.clone(),
            device,
        }),
        TokenState::Ready => Ok(Disposition::Unlock(copy)),
    }
}

/// Decides what a device holds and what may be done with it: [`examine_device`]
/// then [`decide`]. Never writes the device.
pub fn assess(
    vol: &VolumeConfig,
    device: &Path,
    env: &StorageEnv,
    keys: &VolumeKeys<'_>,
) -> Result<Disposition, StorageError> {
    decide(vol, examine_device(vol, device, env)?, keys)
}

/// The copy's state token, if it is the one this volume's key made for
/// this header; else why not.
fn authenticate(
    vol: &VolumeConfig,
    copy: &HeaderCopy,
    keys: &VolumeKeys<'_>,
) -> Result<StateToken, StorageError> {
    let token = claimed_token(vol, copy)?;
    verify_token(vol, copy, keys, &token)?;
    Ok(token)
}

fn not_authentic(vol: &VolumeConfig, copy: &HeaderCopy, why: String) -> StorageError {
    StorageError::StateNotAuthentic {
        volume: vol.name.clone(),
        device: copy.device().to_owned(),
        why,
    }
}

/// The pinned UUID check and the token as the header states it, unverified.
fn claimed_token(vol: &VolumeConfig, copy: &HeaderCopy) -> Result<StateToken, StorageError> {
    let device = copy.device().to_owned();
    if let Some(pinned) = &vol.luks_uuid {
        if !pinned.eq_ignore_ascii_case(copy.luks_uuid()) {
            return Err(StorageError::UuidMismatch {
                volume: vol.name.clone(),
                device,
                found: copy.luks_uuid().to_owned(),
                expected: pinned.clone(),
            });
        }
    }
    match state::header_token(copy.json()) {
        Ok(Some(t)) => Ok(t),
        Ok(None) => Err(not_authentic(vol, copy, "is missing".to_owned())),
        Err(e) => Err(not_authentic(vol, copy, format!("is not valid ({e})"))),
    }
}

/// Checks the token's MAC under the volume's key.
fn verify_token(
    vol: &VolumeConfig,
    copy: &HeaderCopy,
    keys: &VolumeKeys<'_>,
    token: &StateToken,
) -> Result<(), StorageError> {
    let verified = keys
        .state_key()?
        .verify(&vol.name, copy.luks_uuid(), token, copy.json())
        .map_err(|e| not_authentic(vol, copy, format!("cannot be checked ({e})")))?;
    if !verified {
        return Err(not_authentic(
            vol,
            copy,
            format!(
                "(state {:?}) does not verify under this volume's key",
                token.state.as_str()
            ),
        ));
    }
    Ok(())
}

/// Formats the permitted device: the complete header, state
/// "provisioning", is built on tmpfs and committed to the device in one
/// ordered write; then it is copied, loaded and checked exactly like any
/// later boot does. Runs on image files; the caller activates the copy.
pub fn format_volume(
    permit: FormatPermit,
    vol: &VolumeConfig,
    keys: &VolumeKeys<'_>,
    env: &StorageEnv,
) -> Result<HeaderCopy, StorageError> {
    let device = permit.device;
    if permit.resume {
        log::warn!(
            "volume {}: {} holds an interrupted first boot; provisioning it again from scratch",
            vol.name,
            device.display()
        );
    }
    let uuid = match &vol.luks_uuid {
        Some(u) => uuid::Uuid::parse_str(u).map_err(|e| StorageError::Kdf {
            volume: vol.name.clone(),
            problem: format!("luks_uuid {u:?} is not a UUID: {e}"),
        })?,
        None => uuid::Uuid::new_v4(),
    };
    let uuid_text = uuid.hyphenated().to_string();
    let expect = Expected::for_volume(vol);
    let keyslot_key = keys.keyslot(&uuid_text)?;
    // Derived only under a UUID drawn just now (fresh per format; see
    // `VolumeKeys::volume_key`); a configured UUID keeps a random key.
    let volume_key = match vol.luks_uuid {
        None => Some(keys.volume_key(&uuid_text, expect.keyslot_key_bytes() as usize)?),
        Some(_) => None,
    };
    let state_key = keys.state_key()?;
    let header_err = |source| StorageError::Header {
        volume: vol.name.clone(),
        device: device.clone(),
        source,
    };
    let building = timing::phase("build header");
    let image = commit::build_header(
        &vol.name,
        &device,
        &env.run_dir,
        expect,
        uuid,
        commit::NewKeys {
            keyslot: &keyslot_key,
            volume: volume_key.as_ref(),
        },
        |metadata| {
            let binding = state::Binding {
                volume: &vol.name,
                luks_uuid: &uuid_text,
                state: TokenState::Provisioning,
                data_sectors: None,
                derived_key: volume_key.is_some(),
            };
            state_key.token_json(&binding, metadata).map_err(header_err)
        },
    )?;
    drop((keyslot_key, volume_key));
    building.end();
    timing::timed("commit header", || {
        commit::commit_new_header(&vol.name, &device, &image)
    })?;
    let _read_back = timing::phase("read back");
    let copy = open_header_copy(&vol.name, &device, &env.run_dir)?;
    let token = authenticate(vol, &copy, keys)?;
    if copy.luks_uuid() != uuid_text || token.state != TokenState::Provisioning {
        return Err(header_err(HeaderError::Malformed {
            at: "header".to_owned(),
            problem: "the header read back is not the one just written".to_owned(),
        }));
    }
    validate_header(copy.json(), &expect).map_err(header_err)?;
    log::info!(
        "volume {}: formatted {} as LUKS2 {uuid_text} (state provisioning)",
        vol.name,
        device.display()
    );
    Ok(copy)
}

/// An interrupted first boot with an authenticated `provisioning` header:
/// if its keyslot opens, provisioning goes on with that header (same UUID,
/// same volume key; `prepare_volume` then keeps a finished filesystem);
/// if it does not (the power was cut before the keyslot area landed), the
/// volume key is not on the device, nothing can be read through it, and
/// the device is formatted again from scratch.
fn resume(
    permit: FormatPermit,
    mut copy: HeaderCopy,
    vol: &VolumeConfig,
    keys: &VolumeKeys<'_>,
    env: &StorageEnv,
) -> Result<HeaderCopy, StorageError> {
    let key = keys.keyslot(copy.luks_uuid())?;
    match copy.verify_key(&key) {
        Ok(()) => {
            log::warn!(
                "volume {}: {} holds an interrupted first boot; finishing its provisioning",
                vol.name,
                permit.device.display()
            );
            Ok(copy)
        }
        Err(StorageError::WrongKey { .. }) => {
            log::warn!(
                "volume {}: the keyslot of the interrupted first boot on {} does not open (cut before it was written); formatting again",
                vol.name,
                permit.device.display()
            );
            drop(copy);
            format_volume(permit, vol, keys, env)
        }
        Err(e) => Err(e),
    }
}

/// Removes the mapping on drop unless disarmed: the rollback when a step
/// after activation fails.
struct ActiveMapping<'a>(Option<&'a str>);

impl ActiveMapping<'_> {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for ActiveMapping<'_> {
    fn drop(&mut self) {
        if let Some(name) = self.0.take() {
            luks::deactivate(name);
        }
    }
}

/// Finds the device, validates or provisions it, activates it, checks the
/// mapping the kernel built, makes the filesystem if new, and marks it
/// ready. Does not mount.
pub fn prepare_volume(
    vol: &VolumeConfig,
    keys: &VolumeKeys<'_>,
    env: &StorageEnv,
) -> Result<PreparedVolume, StorageError> {
    let examined = timing::timed("examine", || examine(vol, env))?;
    prepare_examined(vol, examined, keys, env)
}

/// [`prepare_volume`] of a device [`examine`] has looked at already.
pub fn prepare_examined(
    vol: &VolumeConfig,
    examined: Examined,
    keys: &VolumeKeys<'_>,
    env: &StorageEnv,
) -> Result<PreparedVolume, StorageError> {
    let device = examined.device.clone();
    let mapper = env.dev.join("mapper").join(&vol.name);
    let disposition = decide(vol, examined, keys)?;
    log::info!(
        "volume {}: {} is {}",
        vol.name,
        device.display(),
        disposition.describe()
    );
    let (mut copy, action) = match disposition {
        Disposition::Unlock(copy) => (*copy, VolumeAction::Unlocked),
        Disposition::Format(permit) => (
            timing::timed("format", || format_volume(permit, vol, keys, env))?,
            VolumeAction::Provisioned,
        ),
        Disposition::Resume(permit, copy) => (
            timing::timed("resume", || resume(permit, *copy, vol, keys, env))?,
            VolumeAction::ResumedProvisioning,
        ),
    };
    // VM tier from here: activation, the mapping check, integrity tags,
    // mkfs, state "ready".
    // This copy's token is authenticated (`decide` verified it, or
    // `format_volume` read back the one it wrote) and the copy is private,
    // so reading it again needs no second MAC check.
    let token = claimed_token(vol, &copy)?;
    let recorded = match action {
        VolumeAction::Unlocked => token.data_sectors,
        _ => None,
    };
    timing::timed("activate", || copy.activate(keys, &token, &env.dev))?;
    let rollback = ActiveMapping(Some(&vol.name));
    let checked = timing::timed("mapping check", || {
        mapping::check(vol, &device, &env.dev, recorded)
    })?;
    if vol.integrity && action == VolumeAction::Unlocked && recorded.is_none() {
        return Err(StorageError::MappingMismatch {
            volume: vol.name.clone(),
            mapper,
            problem: "the ready token records no dm-integrity size".to_owned(),
        });
    }
    if action != VolumeAction::Unlocked {
        // Resuming with the earlier header: if mkfs had finished, keep its
        // filesystem (a header rolled back to our own `provisioning` state
        // must not make us run mkfs over the workload's data).
        let made = action == VolumeAction::ResumedProvisioning
            && probe::signatures(&mapper)
                .is_ok_and(|found| found.iter().any(|f| f == fs::fstype(vol.filesystem)));
        if made {
            log::warn!(
                "volume {}: {} already holds a complete {} filesystem from the interrupted first boot; keeping it",
                vol.name,
                mapper.display(),
                fs::fstype(vol.filesystem)
            );
        } else {
            if vol.integrity {
                timing::timed("integrity wipe", || copy.wipe_mapping(&mapper))?;
            }
            timing::timed("mkfs", || fs::mkfs(&vol.name, vol.filesystem, &mapper))?;
        }
        let _ready = timing::phase("state ready");
        copy.set_state(
            &keys.state_key()?,
            TokenState::Ready,
            checked.integrity_sectors,
        )?;
    }
    rollback.disarm();
    Ok(PreparedVolume {
        name: vol.name.clone(),
        device,
        mapper,
        action,
        luks_uuid: copy.luks_uuid().to_owned(),
    })
}

/// Writes `<status_dir>/<name>.json` (0644, no secrets) so the workload can
/// tell a fresh disk from its old one: action, LUKS UUID, device, mapper,
/// mountpoint, integrity and the time (seconds since the epoch).
pub fn record_volume(
    p: &PreparedVolume,
    vol: &VolumeConfig,
    env: &StorageEnv,
) -> Result<PathBuf, StorageError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = env.status_dir.join(format!("{}.json", vol.name));
    let err = |source| StorageError::RunDir {
        volume: vol.name.clone(),
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&env.status_dir).map_err(err)?;
    std::fs::set_permissions(&env.status_dir, std::fs::Permissions::from_mode(0o755))
        .map_err(err)?;
    // A private parent (our /run/cvm-init, 0700) becomes traversable, not
    // listable, so a non-root workload reaches the file.
    if let Some(parent) = env.status_dir.parent() {
        if let Ok(md) = std::fs::metadata(parent) {
            use std::os::unix::fs::MetadataExt;
            if md.uid() == 0 && md.mode() & 0o777 == 0o700 {
                std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o711))
                    .map_err(err)?;
            }
        }
    }
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let body = serde_json::json!({
        "volume": vol.name,
        "action": p.action.as_str(),
        "luks_uuid": p.luks_uuid,
        "device": p.device,
        "mapper": p.mapper,
        "mountpoint": vol.mountpoint,
        "integrity": vol.integrity,
        "time": time,
    });
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .and_then(|mut f| f.write_all(format!("{body:#}\n").as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(err)?;
    Ok(path)
}

/// Creates the mountpoint and mounts the prepared mapping with the
/// configured filesystem type and options. VM tier.
pub fn mount_volume(p: &PreparedVolume, vol: &VolumeConfig) -> Result<(), StorageError> {
    fs::mount(
        &vol.name,
        vol.filesystem,
        &p.mapper,
        &vol.mountpoint,
        &vol.mount_options,
    )
}

/// Mounts a plain device, e.g. the real root on `/sysroot` in PID-1 mode
/// (its integrity is the image's business, e.g. dm-verity).
pub fn mount_device(
    label: &str,
    device: &Path,
    target: &Path,
    fs: crate::config::Filesystem,
    options: &[String],
) -> Result<(), StorageError> {
    fs::mount(label, fs, device, target, options)
}
