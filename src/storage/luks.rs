//! Every libcryptsetup call of the agent: format a blank device, copy and
//! load a header privately, check a key, activate, deactivate, record state.
//!
//! Test tiers: formatting, header backup/load, key checks (libcryptsetup
//! decrypts keyslots with the kernel crypto API, no device-mapper needed)
//! and token writes run on image files in `tests/loop_storage.rs`. Anything
//! that creates a device-mapper table (`activate`, `wipe_mapping`,
//! `deactivate`, and `format_header` with integrity, which has the kernel
//! write the dm-integrity superblock) runs only in the VM tier.

use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use libcryptsetup_rs::consts::flags::{
    CryptActivate, CryptDeactivate, CryptPbkdf, CryptVolumeKey, CryptWipe,
};
use libcryptsetup_rs::consts::vals::{
    CryptKdf, CryptLogLevel, CryptStatusInfo, CryptWipePattern, EncryptionFormat,
};
use libcryptsetup_rs::{
    CryptDevice, CryptInit, CryptParamsLuks2, CryptParamsLuks2Ref, CryptPbkdfType, Either,
    LibcryptErr, TokenInput,
};
use serde_json::Value;

use super::header::{params::*, Expected, TokenState};
use super::ondisk::{self, BinaryHeader};
use super::StorageError;
use crate::secrets::Secret;

/// Routes libcryptsetup's messages into `log`, so they reach the console
/// (and `/dev/kmsg`) with our other lines. Call once, early.
pub fn set_up_crypt_logging() {
    libcryptsetup_rs::set_log_callback::<()>(Some(crypt_log), None);
}

extern "C" fn crypt_log(level: c_int, msg: *const c_char, _usrptr: *mut c_void) {
    if msg.is_null() {
        return;
    }
    // SAFETY: libcryptsetup passes a NUL-terminated string that stays valid
    // for the duration of the callback; we copy it before returning.
    let msg = unsafe { CStr::from_ptr(msg) }.to_string_lossy();
    let msg = msg.trim_end();
    match CryptLogLevel::try_from(level) {
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
fn keyslot_pbkdf() -> CryptPbkdfType {
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
fn persistent_flags(expect: Expected) -> CryptActivate {
    let flags = CryptActivate::NO_READ_WORKQUEUE | CryptActivate::NO_WRITE_WORKQUEUE;
    if expect.discard {
        flags | CryptActivate::ALLOW_DISCARDS
    } else {
        flags
    }
}

fn crypt_err(
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

/// Writes a fresh LUKS2 header to `device` in state "provisioning" and
/// returns its UUID (chosen here, so HKDF can bind the key to it).
///
/// Write order, so that an interruption at any point is recognisable as
/// "our first boot, unfinished": `crypt_format` already stamps the
/// subsystem label `cvm-init`; then the state token; then the one keyslot;
/// then the persistent flags.
///
/// Callers must hold a [`super::FormatPermit`]: the device was found blank,
/// or holds our own unfinished provisioning.
pub(crate) fn format_header(
    volume: &str,
    device: &Path,
    expect: Expected,
    key_for_uuid: impl FnOnce(&str) -> Result<Secret, StorageError>,
) -> Result<String, StorageError> {
    let uuid = uuid::Uuid::new_v4();
    let uuid_text = uuid.to_string();
    let key = key_for_uuid(&uuid_text)?;
    let mut cd = CryptInit::init(device).map_err(crypt_err(volume, device, "open the device"))?;
    let pbkdf = keyslot_pbkdf();
    cd.settings_handle()
        .set_pbkdf_type(&pbkdf)
        .map_err(crypt_err(volume, device, "set the keyslot KDF"))?;
    let params = CryptParamsLuks2 {
        pbkdf: Some(keyslot_pbkdf()),
        integrity: expect.integrity.then(|| INTEGRITY.to_owned()),
        integrity_params: None,
        data_alignment: 0,
        data_device: None,
        sector_size: SECTOR_SIZE as u32,
        label: None,
        subsystem: Some(SUBSYSTEM.to_owned()),
    };
    let mut params_ref: CryptParamsLuks2Ref<'_> =
        (&params)
            .try_into()
            .map_err(crypt_err(volume, device, "prepare LUKS2 parameters"))?;
    let key_bytes = expect.keyslot_key_bytes() as usize;
    let formatted = cd.context_handle().format(
        EncryptionFormat::Luks2,
        (CIPHER_NAME, CIPHER_MODE),
        Some(uuid),
        Either::Right(key_bytes),
        Some(&mut params_ref),
    );
    if let Err(e) = formatted {
        drop(cd);
        scrub_failed_format(volume, device);
        return Err(crypt_err(volume, device, "format LUKS2")(e));
    }
    cd.token_handle()
        .json_set(TokenInput::AddToken(&TokenState::Provisioning.token_json()))
        .map_err(crypt_err(volume, device, "write the cvm-init state token"))?;
    // The volume key generated by crypt_format is still in the context;
    // the keyslot stores it encrypted under the derived key.
    cd.keyslot_handle()
        .add_by_key(None, None, key.expose(), CryptVolumeKey::empty())
        .map_err(crypt_err(volume, device, "add the keyslot"))?;
    cd.luks2_flag_handle::<CryptActivate>()
        .persistent_flags_set(persistent_flags(expect))
        .map_err(crypt_err(volume, device, "set persistent flags"))?;
    log::info!(
        "volume {volume}: formatted {} as LUKS2 {uuid_text} (state provisioning)",
        device.display()
    );
    Ok(uuid_text)
}

/// How much a failed `crypt_format` may have touched: the LUKS2 metadata
/// and keyslot area (16 MiB by default) and the first sectors of the data
/// segment (the dm-integrity superblock).
const FAILED_FORMAT_SCRUB_BYTES: u64 = 17 << 20;

/// After `crypt_format` failed: libcryptsetup has already zeroed the header
/// area and filled the keyslot area with random bytes, but wrote no header
/// (seen when dm-integrity is unavailable). Left like that, the next boot
/// would find "data without a signature" and refuse the device for good.
/// We hold a format permit for this device (it was blank, or our own
/// unfinished first boot), so zeroing what the format touched only returns
/// it to blank, and the next boot can try again.
fn scrub_failed_format(volume: &str, device: &Path) {
    use std::io::{Seek, SeekFrom, Write};
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).open(device)?;
        let size = f.seek(SeekFrom::End(0))?;
        f.seek(SeekFrom::Start(0))?;
        let zeros = vec![0u8; 1 << 20];
        let mut left = FAILED_FORMAT_SCRUB_BYTES.min(size);
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            f.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        f.sync_all()
    })();
    match result {
        Ok(()) => log::warn!(
            "volume {volume}: LUKS2 format of {} failed; its metadata area was zeroed so the next boot can retry",
            device.display()
        ),
        Err(e) => log::error!(
            "volume {volume}: LUKS2 format of {} failed and zeroing its metadata area failed too ({e}); the next boot will refuse it as not blank: wipe it deliberately",
            device.display()
        ),
    }
}

/// Sets our token's state in the device's header: replaces our token, or
/// adds it when an interrupted format never wrote one.
pub(crate) fn set_token_state(
    volume: &str,
    device: &Path,
    state: TokenState,
) -> Result<(), StorageError> {
    let mut cd = CryptInit::init(device).map_err(crypt_err(volume, device, "open the device"))?;
    cd.context_handle()
        .load::<()>(Some(EncryptionFormat::Luks2), None)
        .map_err(crypt_err(volume, device, "load the LUKS2 header"))?;
    let json = cd.status_handle().dump_json().map_err(crypt_err(
        volume,
        device,
        "read the LUKS2 metadata",
    ))?;
    let ours = json.get("tokens").and_then(Value::as_object).and_then(|t| {
        t.iter()
            .find(|(_, v)| v.get("type").and_then(Value::as_str) == Some(TOKEN_TYPE))
            .and_then(|(id, _)| id.parse::<u32>().ok())
    });
    let body = state.token_json();
    let input = match ours {
        Some(id) => TokenInput::ReplaceToken(id, &body),
        None => TokenInput::AddToken(&body),
    };
    cd.token_handle().json_set(input).map_err(crypt_err(
        volume,
        device,
        "update the cvm-init state token",
    ))?;
    log::info!(
        "volume {volume}: {} marked {}",
        device.display(),
        state.as_str()
    );
    Ok(())
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

/// Backs up the header of `device` into `run_dir` and loads that copy with
/// libcryptsetup (LUKS2 only). The metadata returned by [`HeaderCopy::json`]
/// is what libcryptsetup itself loaded from the copy (`crypt_dump_json`).
pub fn open_header_copy(
    volume: &str,
    device: &Path,
    run_dir: &Path,
) -> Result<HeaderCopy, StorageError> {
    private_dir(volume, run_dir)?;
    let path = run_dir.join(format!("{volume}.luks2-header"));
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(StorageError::RunDir {
                volume: volume.to_owned(),
                path,
                source,
            })
        }
    }
    {
        let mut cd =
            CryptInit::init(device).map_err(crypt_err(volume, device, "open the device"))?;
        cd.backup_handle()
            .header_backup(Some(EncryptionFormat::Luks2), &path)
            .map_err(crypt_err(volume, device, "back up the LUKS2 header"))?;
    }
    // From here on the file is ours; remove it on any error below.
    let cleanup = RemoveOnDrop(Some(path.clone()));
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
    let binary = ondisk::read_active_header(&path)
        .map_err(|e| header_err(format!("cannot read the copy {}: {e}", path.display())))?
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
        luks_uuid,
        cd,
    })
}

struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
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
        match &e {
            LibcryptErr::IOError(io)
                if io.raw_os_error() == Some(nix::errno::Errno::EPERM as i32) =>
            {
                StorageError::WrongKey {
                    volume: self.volume.clone(),
                    device: self.device.clone(),
                }
            }
            _ => crypt_err(&self.volume, &self.device, op)(e),
        }
    }

    /// Activates the mapping `/dev/mapper/<volume>` from this validated copy
    /// (detached header) and checks it is active; on any failure after the
    /// table was created, removes it again. VM tier only.
    pub fn activate(&mut self, key: &Secret) -> Result<(), StorageError> {
        let name = self.volume.clone();
        self.cd
            .activate_handle()
            .activate_by_passphrase(Some(&name), None, key.expose(), CryptActivate::empty())
            .map_err(|e| self.key_error(e, "activate the mapping"))?;
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
