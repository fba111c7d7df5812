//! Every libcryptsetup call of the agent but the first format (`commit`):
//! copy and load a header privately, check a key, activate, deactivate,
//! record state.
//!
//! Test tiers: formatting, header backup/load, key checks (libcryptsetup
//! decrypts keyslots with the kernel crypto API, no device-mapper needed)
//! and token writes run on image files in `tests/loop_storage.rs`. Anything
//! that creates a device-mapper table (`activate`, `wipe_mapping`,
//! `deactivate`, and `format_header` with integrity, which has the kernel
//! write the dm-integrity superblock) runs only in the VM tier.

use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use libcryptsetup_rs::consts::flags::{CryptActivate, CryptDeactivate, CryptPbkdf, CryptWipe};
use libcryptsetup_rs::consts::vals::{
    CryptKdf, CryptLogLevel, CryptStatusInfo, CryptWipePattern, EncryptionFormat,
};
use libcryptsetup_rs::{CryptDevice, CryptInit, CryptPbkdfType, Either, LibcryptErr, TokenInput};
use serde_json::Value;

use super::commit::{write_ranges, PRIMARY_BINARY, PRIMARY_JSON, SECONDARY};
use super::header::{params::*, Expected};
use super::kdf::VolumeKeys;
use super::ondisk::{self, BinaryHeader};
use super::state::{header_token, Binding, StateKey, StateToken, TokenState};
use super::{dmcrypt, StorageError};
use crate::secrets::Secret;
use crate::timing;

/// Routes libcryptsetup's messages into `log`, so they reach the console
/// (and `/dev/kmsg`) with our other lines. Call once, early.
pub fn set_up_crypt_logging() {
    libcryptsetup_rs::set_log_callback::<()>(Some(crypt_log), None);
    // At trace (`cvm_init.log_level=trace loglevel=8`), libcryptsetup's own
    // debug lines too: with the console's timestamps they show where a
    // format or an activation spends its time. They name no key.
    if log::max_level() >= log::LevelFilter::Trace {
        libcryptsetup_rs::set_debug_level(libcryptsetup_rs::consts::vals::CryptDebugLevel::All);
    }
}

thread_local! {
    /// Set while a call whose failure we expect and handle runs: its
    /// error messages are logged at debug.
    static EXPECTED_FAILURE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with libcryptsetup's error messages on this thread at debug
/// (reset on return and on unwind).
fn quietly<T>(f: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            EXPECTED_FAILURE.with(|q| q.set(false));
        }
    }
    EXPECTED_FAILURE.with(|q| q.set(true));
    let _reset = Reset;
    f()
}

extern "C" fn crypt_log(level: c_int, msg: *const c_char, _usrptr: *mut c_void) {
    if msg.is_null() {
        return;
    }
    // SAFETY: libcryptsetup passes a NUL-terminated string that stays valid
    // for the duration of the callback; we copy it before returning.
    let msg = unsafe { CStr::from_ptr(msg) }.to_string_lossy();
    let msg = msg.trim_end();
    let quiet = EXPECTED_FAILURE.with(|q| q.get());
    match CryptLogLevel::try_from(level) {
        Ok(CryptLogLevel::Error) if quiet => log::debug!("libcryptsetup: {msg}"),
        Ok(CryptLogLevel::Error) => log::error!("libcryptsetup: {msg}"),
        Ok(CryptLogLevel::Normal) => log::info!("libcryptsetup: {msg}"),
        Ok(CryptLogLevel::Verbose) => log::debug!("libcryptsetup: {msg}"),
        Ok(CryptLogLevel::Debug) | Ok(CryptLogLevel::DebugJson) | Err(_) => {
            log::trace!("libcryptsetup: {msg}")
        }
    }
}

/// The keyslot KDF: PBKDF2-SHA256 at the minimum iteration count.
///
/// Why no key stretching: the keyslot passphrase is a 256/512-bit uniformly
/// random key from the broker (or derived from one with HKDF), never a
/// human password, so a brute-force search is already infeasible and a
/// slow KDF adds no security. It would only cost boot time and memory:
/// libcryptsetup's default argon2id takes about 2 s under emulation and up
/// to 1 GiB of RAM, a large share of a small confidential VM's boot.
pub(super) fn keyslot_pbkdf() -> CryptPbkdfType {
    CryptPbkdfType {
        type_: CryptKdf::Pbkdf2,
        hash: Some(PBKDF_HASH.to_owned()),
        time_ms: 0,
        iterations: PBKDF2_ITERATIONS,
        max_memory_kb: 0,
        parallel_threads: 0,
        flags: CryptPbkdf::NO_BENCHMARK,
    }
}

/// Persistent activation flags: dm-crypt skips its workqueues, which only
/// add latency on virtual disks.
pub(super) fn persistent_flags(expect: Expected) -> CryptActivate {
    let flags = CryptActivate::NO_READ_WORKQUEUE | CryptActivate::NO_WRITE_WORKQUEUE;
    if expect.discard {
        flags | CryptActivate::ALLOW_DISCARDS
    } else {
        flags
    }
}

pub(super) fn crypt_err(
    volume: &str,
    device: &Path,
    op: &'static str,
) -> impl FnOnce(LibcryptErr) -> StorageError {
    let (volume, device) = (volume.to_owned(), device.to_owned());
    move |source| StorageError::Crypt {
        volume,
        device,
        op,
        source,
    }
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A private copy of a device's LUKS2 header on tmpfs, loaded by
/// libcryptsetup as the detached header of the data device. Everything we
/// check and everything we activate comes from this copy, so the host
/// cannot swap the header between our check and our use of it. The file is
/// removed on drop (an active mapping no longer needs it).
pub struct HeaderCopy {
    volume: String,
    device: PathBuf,
    path: PathBuf,
    json: Value,
    binary: BinaryHeader,
    pair: ondisk::HeaderPair,
    luks_uuid: String,
    cd: CryptDevice,
}

impl std::fmt::Debug for HeaderCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderCopy")
            .field("volume", &self.volume)
            .field("device", &self.device)
            .field("path", &self.path)
            .field("luks_uuid", &self.luks_uuid)
            .finish_non_exhaustive()
    }
}

/// Creates `run_dir` if needed and makes it private (0700).
fn private_dir(volume: &str, run_dir: &Path) -> Result<(), StorageError> {
    let err = |source| StorageError::RunDir {
        volume: volume.to_owned(),
        path: run_dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(run_dir).map_err(err)?;
    std::fs::set_permissions(run_dir, std::fs::Permissions::from_mode(0o700)).map_err(err)
}

/// Copies the LUKS2 metadata of `device` (both header areas) into a sparse
/// [`DATA_OFFSET`]-byte file in `run_dir` with plain reads from an
/// `O_RDONLY` descriptor, loads that copy with libcryptsetup (LUKS2 only),
/// then copies in the keyslot areas the loaded metadata names; the device
/// itself is never opened for writing. The metadata returned by
/// [`HeaderCopy::json`] is what libcryptsetup loaded from the copy
/// (`crypt_dump_json`).
///
/// Only what is used is read: our 32 KiB of metadata and one 250 KiB
/// keyslot area instead of the whole 16 MiB (0.45 s under emulation). The
/// rest of the file is a hole that reads as zeros; nothing reads it (the
/// metadata is written back from this file, the keyslot area never).
/// Where the keyslots are comes from the metadata libcryptsetup loaded,
/// the same it then reads them by: a keyslot area the copy lacks cannot
/// come from a disagreement between two JSON parsers. One outside the
/// copy stays zeros, so that keyslot does not open (the validator refuses
/// such a header before any key is tried).
pub fn open_header_copy(
    volume: &str,
    device: &Path,
    run_dir: &Path,
) -> Result<HeaderCopy, StorageError> {
    let probe_err = |what: &str, e: std::io::Error| StorageError::Probe {
        volume: volume.to_owned(),
        device: device.to_owned(),
        problem: format!("cannot read its LUKS2 {what}: {e}"),
    };
    let image = ondisk::read_metadata(device, DATA_OFFSET).map_err(|e| probe_err("metadata", e))?;
    // From here on the file is ours; removed on any error below.
    let cleanup = private_file(volume, run_dir, "luks2-header", |f| {
        use std::os::unix::fs::FileExt;
        f.set_len(DATA_OFFSET)?;
        f.write_all_at(&image, 0)
    })?;
    let path = cleanup.path().to_owned();
    let mut cd = CryptInit::init_with_data_device(Either::Right((&path, device)))
        .map_err(crypt_err(volume, device, "open the header copy"))?;
    cd.context_handle()
        .load::<()>(Some(EncryptionFormat::Luks2), None)
        .map_err(crypt_err(volume, device, "load the header copy as LUKS2"))?;
    let json = cd.status_handle().dump_json().map_err(crypt_err(
        volume,
        device,
        "read the metadata of the header copy",
    ))?;
    for (offset, len) in keyslot_areas(&json, image.len() as u64) {
        use std::os::unix::fs::FileExt;
        let area =
            ondisk::read_range(device, offset, len).map_err(|e| probe_err("keyslot area", e))?;
        std::fs::OpenOptions::new()
            .write(true)
            .open(cleanup.path())
            .and_then(|f| f.write_all_at(&area, offset))
            .map_err(|source| StorageError::RunDir {
                volume: volume.to_owned(),
                path: cleanup.path().to_owned(),
                source,
            })?;
    }
    let luks_uuid = cd
        .status_handle()
        .get_uuid()
        .map_err(crypt_err(volume, device, "read the LUKS2 UUID"))?
        .to_string();
    let header_err = |problem: String| StorageError::Header {
        volume: volume.to_owned(),
        device: device.to_owned(),
        source: super::HeaderError::Malformed {
            at: "binary header".to_owned(),
            problem,
        },
    };
    let pair = ondisk::decode_pair(&image);
    let binary = pair
        .active()
        .cloned()
        .ok_or_else(|| header_err("no valid binary header in the copy".to_owned()))?;
    // Our decoder must have picked the copy libcryptsetup uses.
    if binary.uuid != luks_uuid {
        return Err(header_err(format!(
            "binary header UUID {:?} differs from the one libcryptsetup loaded ({luks_uuid})",
            binary.uuid
        )));
    }
    let path = cleanup.disarm();
    Ok(HeaderCopy {
        volume: volume.to_owned(),
        device: device.to_owned(),
        path,
        json,
        binary,
        pair,
        luks_uuid,
        cd,
    })
}

/// The keyslot areas of `json` (offset, size) that lie between the metadata
/// (`metadata_len` bytes) and [`DATA_OFFSET`].
fn keyslot_areas(json: &Value, metadata_len: u64) -> Vec<(u64, u64)> {
    let number = |v: &Value| v.as_str().and_then(|s| s.parse::<u64>().ok());
    json["keyslots"]
        .as_object()
        .into_iter()
        .flat_map(|slots| slots.values())
        .filter_map(|slot| {
            Some((
                number(&slot["area"]["offset"])?,
                number(&slot["area"]["size"])?,
            ))
        })
        .filter(|&(offset, len)| {
            offset >= metadata_len
                && offset
                    .checked_add(len)
                    .is_some_and(|end| end <= DATA_OFFSET)
        })
        .collect()
}

/// Creates `<run_dir>/<volume>.<suffix>` afresh (0600, in the 0700
/// `run_dir`) and fills it with `fill`; the file is removed when the
/// returned guard drops, unless disarmed.
pub(super) fn private_file(
    volume: &str,
    run_dir: &Path,
    suffix: &str,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<RemoveOnDrop, StorageError> {
    private_dir(volume, run_dir)?;
    let path = run_dir.join(format!("{volume}.{suffix}"));
    let err = |source| StorageError::RunDir {
        volume: volume.to_owned(),
        path: path.clone(),
        source,
    };
    remove_if_present(&path).map_err(err)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(err)?;
    let guard = RemoveOnDrop(Some(path.clone()));
    fill(&mut f).map_err(err)?;
    Ok(guard)
}

pub(super) struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    pub(super) fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    fn disarm(mut self) -> PathBuf {
        self.0.take().unwrap_or_default()
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl HeaderCopy {
    /// The LUKS2 metadata libcryptsetup loaded from the copy.
    pub fn json(&self) -> &Value {
        &self.json
    }

    /// The header's UUID as libcryptsetup reports it (lower-case text).
    pub fn luks_uuid(&self) -> &str {
        &self.luks_uuid
    }

    /// The subsystem label of the binary header libcryptsetup uses.
    pub fn subsystem(&self) -> &str {
        &self.binary.subsystem
    }

    /// Both binary header copies as read from the device.
    pub fn headers(&self) -> &ondisk::HeaderPair {
        &self.pair
    }

    /// The device this header was read from.
    pub fn device(&self) -> &Path {
        &self.device
    }

    /// Records `state` in the copy's token (MAC under `key`) and writes the
    /// copy's two header areas back to the device: the secondary first,
    /// then the primary JSON, then the primary binary header, each with
    /// `fsync`. Until the secondary has landed the old state is in force;
    /// from then on the new one (its seqid is higher) is, whatever a power
    /// cut leaves of the primary.
    pub fn set_state(
        &mut self,
        key: &StateKey,
        state: TokenState,
        data_sectors: Option<u64>,
    ) -> Result<(), StorageError> {
        let header_err = |source| StorageError::Header {
            volume: self.volume.clone(),
            device: self.device.clone(),
            source,
        };
        let current = header_token(&self.json)
            .map_err(header_err)?
            .ok_or_else(|| header_err(super::HeaderError::MissingStateToken))?;
        let id = current.id;
        let binding = Binding {
            volume: &self.volume,
            luks_uuid: &self.luks_uuid,
            state,
            data_sectors,
            derived_key: current.derived_key,
        };
        let body = key.token_json(&binding, &self.json).map_err(header_err)?;
        self.cd
            .token_handle()
            .json_set(TokenInput::ReplaceToken(id, &body))
            .map_err(crypt_err(
                &self.volume,
                &self.device,
                "update the cvm-init state token",
            ))?;
        self.json = self.cd.status_handle().dump_json().map_err(crypt_err(
            &self.volume,
            &self.device,
            "read the updated metadata",
        ))?;
        let write_err = |source| StorageError::Write {
            volume: self.volume.clone(),
            device: self.device.clone(),
            what: "the updated LUKS2 header",
            source,
        };
        // The two metadata areas, not the copy's whole (sparse) 16 MiB.
        let image = ondisk::read_metadata(&self.path, DATA_OFFSET).map_err(write_err)?;
        write_ranges(
            &self.device,
            &image,
            &[SECONDARY, PRIMARY_JSON, PRIMARY_BINARY],
        )
        .map_err(write_err)?;
        self.pair = ondisk::decode_pair(&image);
        log::info!(
            "volume {}: {} marked {}",
            self.volume,
            self.device.display(),
            state.as_str()
        );
        Ok(())
    }

    /// Where the private copy lives (tmpfs).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks that `key` opens the keyslot, without activating anything.
    /// libcryptsetup decrypts the keyslot through the kernel crypto API, so
    /// this runs without device-mapper.
    pub fn verify_key(&mut self, key: &Secret) -> Result<(), StorageError> {
        match self.cd.activate_handle().activate_by_passphrase(
            None,
            None,
            key.expose(),
            CryptActivate::empty(),
        ) {
            Ok(_) => Ok(()),
            Err(e) => Err(self.key_error(e, "check the key")),
        }
    }

    /// libcryptsetup returns -EPERM when no keyslot accepts the passphrase.
    fn key_error(&self, e: LibcryptErr, op: &'static str) -> StorageError {
        if is_eperm(&e) {
            StorageError::WrongKey {
                volume: self.volume.clone(),
                device: self.device.clone(),
            }
        } else {
            crypt_err(&self.volume, &self.device, op)(e)
        }
    }

    /// Whether the derived volume key ([`VolumeKeys::volume_key`]) of this
    /// header is its volume key; checks it against the digest, no
    /// device-mapper needed.
    pub fn has_derived_volume_key(&mut self, keys: &VolumeKeys<'_>) -> Result<bool, StorageError> {
        self.by_volume_key(None, keys)
    }

    /// Activation (`name`) or check (`None`) by the derived volume key;
    /// `Ok(false)` when it is not this header's key.
    fn by_volume_key(
        &mut self,
        name: Option<&str>,
        keys: &VolumeKeys<'_>,
    ) -> Result<bool, StorageError> {
        let Ok(len @ 1..) = usize::try_from(self.cd.status_handle().get_volume_key_size()) else {
            return Ok(false);
        };
        let vk = keys.volume_key(&self.luks_uuid, len)?;
        let mut activate = self.cd.activate_handle();
        match quietly(|| {
            activate.activate_by_volume_key(name, Some(vk.expose()), CryptActivate::empty())
        }) {
            Ok(()) => Ok(true),
            Err(e) if is_eperm(&e) => Ok(false),
            Err(e) => Err(crypt_err(
                &self.volume,
                &self.device,
                "activate the mapping",
            )(e)),
        }
    }

    /// Activates the mapping `<dev_dir>/mapper/<volume>` from this validated
    /// copy (detached header) and checks it is active; on any failure after
    /// the table was created, removes it again. `token` is this copy's
    /// state token, its MAC verified. VM tier only.
    ///
    /// A volume whose token says its volume key is derived (cvm-init
    /// formatted it under a random UUID) and that has no integrity: the
    /// dm-crypt table is made directly with that key (`dmcrypt`; the MAC
    /// stands in for libcryptsetup's digest check). With integrity, or a
    /// token from before the claim existed, libcryptsetup activates by the
    /// derived volume key, checking it against the digest. Any other
    /// volume (formatted before volume keys were derived, or with a
    /// configured `luks_uuid`) opens by its keyslot.
    pub fn activate(
        &mut self,
        keys: &VolumeKeys<'_>,
        token: &StateToken,
        dev_dir: &Path,
    ) -> Result<(), StorageError> {
        let name = self.volume.clone();
        let segment = self.json["segments"]
            .as_object()
            .and_then(|segments| segments.values().next());
        let integrity = segment.is_some_and(|s| !s["integrity"].is_null());
        let activated = if token.derived_key && !integrity {
            timing::timed("dm create", || self.create_directly(keys, dev_dir))?;
            true
        } else {
            timing::timed("volume key", || self.by_volume_key(Some(&name), keys))?
        };
        if !activated {
            log::debug!("volume {name}: volume key not derived; activating by keyslot");
            let key = keys.keyslot(&self.luks_uuid)?;
            timing::timed("keyslot", || {
                self.cd.activate_handle().activate_by_passphrase(
                    Some(&name),
                    None,
                    key.expose(),
                    CryptActivate::empty(),
                )
            })
            .map_err(|e| self.key_error(e, "activate the mapping"))?;
        }
        match libcryptsetup_rs::status(Some(&mut self.cd), &name) {
            Ok(CryptStatusInfo::Active) => {
                log::info!(
                    "volume {name}: {} unlocked as /dev/mapper/{name}",
                    self.device.display()
                );
                Ok(())
            }
            other => {
                let status = match other {
                    Ok(s) => format!("{s:?}"),
                    Err(e) => e.to_string(),
                };
                deactivate(&name);
                Err(StorageError::NotActive {
                    volume: name.clone(),
                    mapper: PathBuf::from("/dev/mapper").join(&name),
                    status,
                })
            }
        }
    }

    /// The plain dm-crypt table with the derived volume key, made directly.
    fn create_directly(
        &mut self,
        keys: &VolumeKeys<'_>,
        dev_dir: &Path,
    ) -> Result<(), StorageError> {
        let vk = keys.volume_key(&self.luks_uuid, VOLUME_KEY_BYTES)?;
        let flags: Vec<&str> = self.json["config"]["flags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str)
            .collect();
        dmcrypt::create(
            dev_dir,
            &self.volume,
            &self.luks_uuid,
            &self.device,
            &vk,
            &flags,
        )
        .map_err(|source| StorageError::DmCreate {
            volume: self.volume.clone(),
            mapper: dev_dir.join("mapper").join(&self.volume),
            device: self.device.clone(),
            source,
        })
    }

    /// Initialises dm-integrity tags by writing zeros through the mapping;
    /// until then reads of unwritten sectors fail. VM tier only.
    pub fn wipe_mapping(&mut self, mapper: &Path) -> Result<(), StorageError> {
        log::info!(
            "volume {}: initialising integrity tags on {} (writes the whole device once)",
            self.volume,
            mapper.display()
        );
        self.cd
            .wipe_handle()
            .wipe::<()>(
                mapper,
                CryptWipePattern::Zero,
                0,
                0,
                1 << 20,
                CryptWipe::empty(),
                None,
                None,
            )
            .map_err(crypt_err(
                &self.volume,
                &self.device,
                "initialise integrity tags",
            ))
    }
}

fn is_eperm(e: &LibcryptErr) -> bool {
    matches!(e, LibcryptErr::IOError(io) if io.raw_os_error() == Some(nix::errno::Errno::EPERM as i32))
}

impl Drop for HeaderCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Removes the mapping `name` if it exists; logs instead of failing, since
/// it runs on error paths. VM tier only.
pub(crate) fn deactivate(name: &str) {
    match CryptInit::init_by_name_and_header(name, None) {
        Ok(mut cd) => {
            if let Err(e) = cd
                .activate_handle()
                .deactivate(name, CryptDeactivate::empty())
            {
                log::error!("volume {name}: rollback: cannot remove /dev/mapper/{name}: {e}");
            } else {
                log::warn!("volume {name}: rollback: removed /dev/mapper/{name}");
            }
        }
        Err(e) => log::error!("volume {name}: rollback: cannot open /dev/mapper/{name}: {e}"),
    }
}
