//! Encrypted volumes: find the device, decide what it holds, unlock it or
//! provision it on first boot, make the filesystem, mount it.
//!
//! The rules (DESIGN.md invariants 1-3):
//!
//! * **Never lose data.** A device is formatted only if `format = true` and
//!   it is blank: libblkid sees no signature or partition table *and* the
//!   first and last MiB are zero. The only LUKS device ever reformatted is
//!   one of ours whose first boot was interrupted (subsystem label
//!   `cvm-init`, state token "provisioning" or not yet written): no workload
//!   ever ran on it. A failed unlock never leads to formatting.
//! * **The host can forge any header.** Before a key touches a LUKS2
//!   device, its header is copied to private tmpfs, loaded by libcryptsetup
//!   from there, checked by [`validate_header`] and the mapping is activated
//!   from that same copy as a detached header.
//! * **Keys stay in memory**, in [`Secret`]s that wipe themselves.
//!
//! Layers: [`header`] (pure JSON policy), [`ondisk`] (binary header
//! decoding), [`probe`] (libblkid, read-only), `luks` (every libcryptsetup
//! call), `locate` (device lookup without udev), `fs` (mkfs, mount).
//! Activation, integrity initialisation, mkfs and mount need device-mapper
//! and are exercised by the VM tier; the rest by `tests/loop_storage.rs`.

mod error;
mod fs;
pub mod header;
mod kdf;
mod locate;
mod luks;
pub mod ondisk;
pub mod probe;
mod rootcheck;
mod verity;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::StorageError;
pub use header::{validate_header, Expected, HeaderError, TokenState};
pub use kdf::derive_key;
pub use locate::locate_device;
pub use luks::{open_header_copy, set_up_crypt_logging, HeaderCopy};
pub use rootcheck::{check_root, RootCheckEnv, RootProtection};
pub use verity::{activate_root, check_root_hash, read_through};

use crate::config::VolumeConfig;
use crate::secrets::Secret;

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
    /// Our header from an interrupted first boot, `format = true`: restart.
    Resume(FormatPermit),
    /// Our provisioned header, validated: unlock only.
    Unlock(Box<HeaderCopy>),
}

impl Disposition {
    pub fn describe(&self) -> &'static str {
        match self {
            Disposition::Format(_) => "blank: provision",
            Disposition::Resume(_) => "interrupted first boot: provision again",
            Disposition::Unlock(_) => "provisioned: unlock",
        }
    }
}

/// Decides what a device holds and what may be done with it. Reads only;
/// the one write is the header copy in `env.run_dir`.
pub fn assess(
    vol: &VolumeConfig,
    device: &Path,
    env: &StorageEnv,
) -> Result<Disposition, StorageError> {
    let name = &vol.name;
    let contents = probe::inspect(device).map_err(|problem| StorageError::Probe {
        volume: name.clone(),
        device: device.to_owned(),
        problem,
    })?;
    let permit = |resume| FormatPermit {
        device: device.to_owned(),
        resume,
    };
    match contents {
        probe::Contents::Blank if vol.format => Ok(Disposition::Format(permit(false))),
        probe::Contents::Blank => Err(StorageError::FormatNotAllowed {
            volume: name.clone(),
            device: device.to_owned(),
        }),
        probe::Contents::Signatures(found) => Err(StorageError::NotBlank {
            volume: name.clone(),
            device: device.to_owned(),
            found: format!("libblkid finds: {}", found.join(", ")),
        }),
        probe::Contents::Data { region } => Err(StorageError::NotBlank {
            volume: name.clone(),
            device: device.to_owned(),
            found: format!(
                "no known signature, but non-zero bytes in the {region}: plain dm-crypt, random fill or data of an unknown kind"
            ),
        }),
        probe::Contents::Luks2 => {
            let copy = open_header_copy(name, device, &env.run_dir)?;
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
            let header_err = |source| StorageError::Header {
                volume: name.clone(),
                device: device.to_owned(),
                source,
            };
            match header::header_token_state(copy.json()).map_err(header_err)? {
                None | Some(TokenState::Provisioning) if vol.format => {
                    Ok(Disposition::Resume(permit(true)))
                }
                None | Some(TokenState::Provisioning) => Err(StorageError::ResumeNotAllowed {
                    volume: name.clone(),
                    device: device.to_owned(),
                }),
                Some(TokenState::Ready) => {
                    validate_header(
                        copy.json(),
                        &Expected::for_volume(vol),
                    )
                    .map_err(header_err)?;
                    Ok(Disposition::Unlock(Box::new(copy)))
                }
            }
        }
    }
}

/// Formats the permitted device (LUKS2, state "provisioning"), then copies,
/// loads and validates the new header exactly like any later boot does.
/// Runs on image files; the caller activates the returned copy.
pub fn format_volume(
    permit: FormatPermit,
    vol: &VolumeConfig,
    key_material: &Secret,
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
    let uuid = luks::format_header(&vol.name, &device, Expected::for_volume(vol), |uuid| {
        derive_key(vol.key_derivation, key_material, &vol.name, uuid)
    })?;
    let copy = open_header_copy(&vol.name, &device, &env.run_dir)?;
    let header_err = |problem: String| StorageError::Header {
        volume: vol.name.clone(),
        device: device.clone(),
        source: HeaderError::Malformed {
            at: "header".to_owned(),
            problem,
        },
    };
    if copy.luks_uuid() != uuid
        || header::header_token_state(copy.json()).ok().flatten() != Some(TokenState::Provisioning)
    {
        return Err(header_err(
            "the header read back is not the one just written".to_owned(),
        ));
    }
    validate_header(copy.json(), &Expected::for_volume(vol)).map_err(|source| {
        StorageError::Header {
            volume: vol.name.clone(),
            device: device.clone(),
            source,
        }
    })?;
    Ok(copy)
}

/// Marks a provisioned volume "ready": from now on it is only unlocked.
pub fn mark_ready(vol: &VolumeConfig, device: &Path) -> Result<(), StorageError> {
    luks::set_token_state(&vol.name, device, TokenState::Ready)
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

/// Finds the device, validates or provisions it, activates it, makes the
/// filesystem if new, and marks it ready. Does not mount.
pub fn prepare_volume(
    vol: &VolumeConfig,
    key_material: &Secret,
    env: &StorageEnv,
) -> Result<PreparedVolume, StorageError> {
    let device = locate_device(&vol.device, env)?;
    let mapper = env.dev.join("mapper").join(&vol.name);
    let disposition = assess(vol, &device, env)?;
    log::info!(
        "volume {}: {} is {}",
        vol.name,
        device.display(),
        disposition.describe()
    );
    let (mut copy, action) = match disposition {
        Disposition::Unlock(copy) => (*copy, VolumeAction::Unlocked),
        Disposition::Format(permit) => (
            format_volume(permit, vol, key_material, env)?,
            VolumeAction::Provisioned,
        ),
        Disposition::Resume(permit) => (
            format_volume(permit, vol, key_material, env)?,
            VolumeAction::ResumedProvisioning,
        ),
    };
    // VM tier from here: activation, integrity tags, mkfs, state "ready".
    let key = derive_key(
        vol.key_derivation,
        key_material,
        &vol.name,
        copy.luks_uuid(),
    )?;
    copy.activate(&key)?;
    drop(key);
    if action != VolumeAction::Unlocked {
        let rollback = ActiveMapping(Some(&vol.name));
        if vol.integrity {
            copy.wipe_mapping(&mapper)?;
        }
        fs::mkfs(&vol.name, vol.filesystem, &mapper)?;
        mark_ready(vol, &device)?;
        rollback.disarm();
    }
    Ok(PreparedVolume {
        name: vol.name.clone(),
        device,
        mapper,
        action,
        luks_uuid: copy.luks_uuid().to_owned(),
    })
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
