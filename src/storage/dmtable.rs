//! The kernel's view of an active mapping: its device-mapper table and
//! status, read with the `DM_TABLE_STATUS` ioctl on `/dev/mapper/control`.
//!
//! After activation the mapping is checked against what the config and the
//! validated header say (`check`): a header we validated does not prove
//! what the kernel built, and the dm-integrity superblock comes from the
//! host's disk (a host that sets its "recalculating" flag switches tag
//! checks off; one that shrinks `provided_data_sectors` moves the data).
//!
//! It also makes a mapping (`create`: `DM_DEV_CREATE`, `DM_TABLE_LOAD`,
//! `DM_DEV_SUSPEND` to resume) and removes one (`remove`), for
//! `dmcrypt`. The ioctls are the only unsafe code here; the parsers are
//! pure and tested on table lines taken from a real boot.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use zeroize::Zeroizing;

/// `struct dm_ioctl` from `<linux/dm-ioctl.h>` (312 bytes).
#[repr(C)]
struct DmIoctl {
    version: [u32; 3],
    data_size: u32,
    data_start: u32,
    target_count: u32,
    open_count: i32,
    flags: u32,
    event_nr: u32,
    padding: u32,
    dev: u64,
    name: [u8; 128],
    uuid: [u8; 129],
    data: [u8; 7],
}

const DM_IOCTL_BYTES: usize = std::mem::size_of::<DmIoctl>();
const _: () = assert!(DM_IOCTL_BYTES == 312);
/// `struct dm_target_spec`: sector_start u64, length u64, status i32,
/// next u32, target_type[16].
const TARGET_SPEC_BYTES: usize = 40;
/// `_IOWR(0xfd, DM_TABLE_STATUS_CMD = 12, struct dm_ioctl)`.
const DM_TABLE_STATUS: libc::c_ulong =
    (3 << 30) | ((DM_IOCTL_BYTES as libc::c_ulong) << 16) | (0xfd << 8) | 12;
const fn dm_iowr(cmd: libc::c_ulong) -> libc::c_ulong {
    (3 << 30) | ((DM_IOCTL_BYTES as libc::c_ulong) << 16) | (0xfd << 8) | cmd
}
const DM_DEV_CREATE: libc::c_ulong = dm_iowr(3);
const DM_DEV_REMOVE: libc::c_ulong = dm_iowr(4);
const DM_DEV_SUSPEND: libc::c_ulong = dm_iowr(6);
const DM_TABLE_LOAD: libc::c_ulong = dm_iowr(9);
const _: () = assert!(DM_TABLE_STATUS == dm_iowr(12));
const DM_STATUS_TABLE_FLAG: u32 = 1 << 4;
/// The kernel wipes its copies of the ioctl buffer (it holds a key).
const DM_SECURE_DATA_FLAG: u32 = 1 << 15;
const DM_BUFFER_FULL_FLAG: u32 = 1 << 8;
const BUFFER_BYTES: usize = 16 << 10;

/// One target line of a table or status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub start: u64,
    pub length: u64,
    pub kind: String,
    pub params: Zeroizing<String>,
}

/// What to read: the table (`dmsetup table`) or the status (`dmsetup status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    Table,
    Status,
}

/// The targets of the mapping `name`. The buffer (which may hold a
/// dm-crypt key in hex when the key is not in the kernel keyring) is wiped.
pub fn query(control: &Path, name: &str, what: Query) -> std::io::Result<Vec<Target>> {
    let ctl = File::options().read(true).write(true).open(control)?;
    let flags = if what == Query::Table {
        DM_STATUS_TABLE_FLAG
    } else {
        0
    };
    let mut buf = request(name, "", flags, BUFFER_BYTES)?;
    call(&ctl, DM_TABLE_STATUS, &mut buf)?;
    parse_reply(as_bytes_mut(&mut buf))
}

/// A zeroed request buffer of `bytes` (rounded up to 8) that starts with a
/// `struct dm_ioctl` for `name` (and `uuid`), version 4, with `flags`.
fn request(
    name: &str,
    uuid: &str,
    flags: u32,
    bytes: usize,
) -> std::io::Result<Zeroizing<Vec<u64>>> {
    if name.len() >= 128 || uuid.len() >= 129 {
        return Err(std::io::Error::other("mapping name or UUID too long"));
    }
    let bytes = bytes.max(DM_IOCTL_BYTES).next_multiple_of(8);
    let mut buf = Zeroizing::new(vec![0u64; bytes / 8]);
    let b = as_bytes_mut(&mut buf);
    put_u32(b, 0, 4);
    put_u32(b, 12, bytes as u32);
    put_u32(b, 16, DM_IOCTL_BYTES as u32);
    put_u32(b, 28, flags);
    b[48..48 + name.len()].copy_from_slice(name.as_bytes());
    b[176..176 + uuid.len()].copy_from_slice(uuid.as_bytes());
    Ok(buf)
}

/// Issues `cmd` with `buf` on the control device.
fn call(ctl: &File, cmd: libc::c_ulong, buf: &mut [u64]) -> std::io::Result<()> {
    // SAFETY: `buf` is a writable, 8-aligned buffer that starts with an
    // initialised `struct dm_ioctl` whose data_size is the buffer's length
    // (`request`), so the kernel reads and writes only inside it; the
    // descriptor stays open for the duration of the call.
    let rc = unsafe { libc::ioctl(ctl.as_raw_fd(), cmd, buf.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Creates the mapping `name` (device-mapper UUID `uuid`) with one target
/// of `kind` over sectors `0..length` with `params`, and makes it live.
/// Returns the new device's number (`dev_t`). On failure after the
/// create, the half-made mapping is removed again.
pub fn create(
    control: &Path,
    name: &str,
    uuid: &str,
    kind: &str,
    length: u64,
    params: &str,
) -> std::io::Result<libc::dev_t> {
    let ctl = File::options().read(true).write(true).open(control)?;
    let mut created = request(name, uuid, 0, 0)?;
    call(&ctl, DM_DEV_CREATE, &mut created)?;
    let dev = get_u64(as_bytes_mut(&mut created), 40).unwrap_or_default();
    let live = load_and_resume(&ctl, name, kind, length, params);
    if let Err(e) = live {
        let _ = remove_with(&ctl, name);
        return Err(e);
    }
    Ok(dev)
}

fn load_and_resume(
    ctl: &File,
    name: &str,
    kind: &str,
    length: u64,
    params: &str,
) -> std::io::Result<()> {
    if kind.len() >= 16 {
        return Err(std::io::Error::other("target type longer than 15 bytes"));
    }
    // The target spec, then the NUL-terminated parameters, padded to 8.
    let spec_len = (TARGET_SPEC_BYTES + params.len() + 1).next_multiple_of(8);
    let mut load = request(name, "", DM_SECURE_DATA_FLAG, DM_IOCTL_BYTES + spec_len)?;
    {
        let b = as_bytes_mut(&mut load);
        put_u32(b, 20, 1);
        let spec = &mut b[DM_IOCTL_BYTES..];
        spec[8..16].copy_from_slice(&length.to_ne_bytes());
        put_u32(spec, 20, spec_len as u32);
        spec[24..24 + kind.len()].copy_from_slice(kind.as_bytes());
        spec[TARGET_SPEC_BYTES..TARGET_SPEC_BYTES + params.len()]
            .copy_from_slice(params.as_bytes());
    }
    call(ctl, DM_TABLE_LOAD, &mut load)?;
    // DM_DEV_SUSPEND without DM_SUSPEND_FLAG resumes: the loaded table
    // goes live.
    call(ctl, DM_DEV_SUSPEND, &mut request(name, "", 0, 0)?)
}

/// Removes the mapping `name`.
pub fn remove(control: &Path, name: &str) -> std::io::Result<()> {
    let ctl = File::options().read(true).write(true).open(control)?;
    remove_with(&ctl, name)
}

fn remove_with(ctl: &File, name: &str) -> std::io::Result<()> {
    call(ctl, DM_DEV_REMOVE, &mut request(name, "", 0, 0)?)
}

fn as_bytes_mut(buf: &mut [u64]) -> &mut [u8] {
    // SAFETY: any u64 slice is a valid u8 slice of 8x the length, with the
    // same lifetime and exclusive borrow.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), buf.len() * 8) }
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn get_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn get_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn c_str(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Decodes the targets from a `DM_TABLE_STATUS` reply buffer.
fn parse_reply(b: &[u8]) -> std::io::Result<Vec<Target>> {
    let bad =
        |what: &str| std::io::Error::other(format!("malformed DM_TABLE_STATUS reply: {what}"));
    let flags = get_u32(b, 28).ok_or_else(|| bad("short"))?;
    if flags & DM_BUFFER_FULL_FLAG != 0 {
        return Err(bad("the table does not fit the buffer"));
    }
    let count = get_u32(b, 20).ok_or_else(|| bad("short"))? as usize;
    let data_start = get_u32(b, 16).ok_or_else(|| bad("short"))? as usize;
    let mut targets = Vec::with_capacity(count);
    let mut at = data_start;
    for _ in 0..count {
        let spec = b
            .get(at..at + TARGET_SPEC_BYTES)
            .ok_or_else(|| bad("target outside the buffer"))?;
        let start = get_u64(spec, 0).ok_or_else(|| bad("short target"))?;
        let length = get_u64(spec, 8).ok_or_else(|| bad("short target"))?;
        let next = get_u32(spec, 20).ok_or_else(|| bad("short target"))? as usize;
        let kind = c_str(&spec[24..40]);
        let params = Zeroizing::new(c_str(b.get(at + TARGET_SPEC_BYTES..).unwrap_or(&[])));
        targets.push(Target {
            start,
            length,
            kind,
            params,
        });
        if next == 0 {
            break;
        }
        at = data_start + next;
    }
    Ok(targets)
}

/// A dm-crypt table line's parameters: `<cipher> <key> <iv_offset>
/// <device> <offset> [<#opts> <opt>...]`. The key itself is never kept:
/// only its size (from `:<size>:<type>:<desc>` or the hex length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptTable {
    pub cipher: String,
    pub key_bytes: usize,
    pub iv_offset: u64,
    pub device: String,
    pub offset: u64,
    pub options: Vec<String>,
}

pub fn parse_crypt(params: &str) -> Result<CryptTable, String> {
    let mut it = params.split_ascii_whitespace();
    let mut next = |what: &str| {
        it.next()
            .ok_or_else(|| format!("crypt table has no {what}"))
    };
    let cipher = next("cipher")?.to_owned();
    let key = next("key")?;
    let key_bytes = match key.strip_prefix(':') {
        Some(rest) => rest
            .split(':')
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or("crypt table key reference has no size")?,
        None => key.len() / 2,
    };
    let number = |s: &str, what: &str| {
        s.parse::<u64>()
            .map_err(|_| format!("crypt table {what} {s:?} is not a number"))
    };
    let iv_offset = number(next("IV offset")?, "IV offset")?;
    let device = next("device")?.to_owned();
    let offset = number(next("offset")?, "offset")?;
    let options = optional_args(&mut it)?;
    Ok(CryptTable {
        cipher,
        key_bytes,
        iv_offset,
        device,
        offset,
        options,
    })
}

/// A dm-integrity table line's parameters: `<device> <offset> <tag_size>
/// <mode> [<#opts> <opt>...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrityTable {
    pub device: String,
    pub offset: u64,
    pub tag_size: u64,
    pub mode: String,
    pub options: Vec<String>,
}

pub fn parse_integrity(params: &str) -> Result<IntegrityTable, String> {
    let mut it = params.split_ascii_whitespace();
    let mut next = |what: &str| {
        it.next()
            .ok_or_else(|| format!("integrity table has no {what}"))
    };
    let device = next("device")?.to_owned();
    let offset = next("offset")?;
    let tag = next("tag size")?;
    let mode = next("mode")?.to_owned();
    let num = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| format!("integrity table value {s:?} is not a number"))
    };
    Ok(IntegrityTable {
        device,
        offset: num(offset)?,
        tag_size: num(tag)?,
        mode,
        options: optional_args(&mut it)?,
    })
}

/// dm-integrity status: `<failures> <provided_data_sectors> <recalc>` where
/// recalc is `-` unless the superblock says tags are being recalculated
/// (and not checked) from some sector on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrityStatus {
    pub failures: u64,
    pub provided_data_sectors: u64,
    pub recalculating_from: Option<u64>,
}

pub fn parse_integrity_status(params: &str) -> Result<IntegrityStatus, String> {
    let f: Vec<&str> = params.split_ascii_whitespace().collect();
    let num = |i: usize| {
        f.get(i).and_then(|s| s.parse::<u64>().ok()).ok_or_else(|| {
            format!("integrity status {params:?} is not `<failures> <sectors> <recalc>`")
        })
    };
    Ok(IntegrityStatus {
        failures: num(0)?,
        provided_data_sectors: num(1)?,
        recalculating_from: match f.get(2) {
            Some(&"-") | None => None,
            Some(_) => Some(num(2)?),
        },
    })
}

fn optional_args<'a>(it: &mut impl Iterator<Item = &'a str>) -> Result<Vec<String>, String> {
    let Some(n) = it.next() else {
        return Ok(Vec::new());
    };
    let n: usize = n
        .parse()
        .map_err(|_| format!("option count {n:?} is not a number"))?;
    let opts: Vec<String> = it.take(n).map(str::to_owned).collect();
    if opts.len() != n {
        return Err(format!("{n} options announced, {} present", opts.len()));
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn crypt_lines_with_keyring_and_hex_keys() {
        let t = parse_crypt(
            "aes-xts-plain64 :64:logon:cryptsetup:0d3a-d0 0 254:16 32768 4 no_read_workqueue no_write_workqueue sector_size:4096 iv_large_sectors",
        )
        .unwrap();
        assert_eq!(t.cipher, "aes-xts-plain64");
        assert_eq!((t.key_bytes, t.iv_offset, t.offset), (64, 0, 32768));
        assert_eq!(t.device, "254:16");
        assert_eq!(t.options.len(), 4);
        let hex = "ab".repeat(96);
        let t = parse_crypt(&format!(
            "capi:authenc(hmac(sha256),xts(aes))-plain64 {hex} 0 253:1 0 2 integrity:32:aead sector_size:4096"
        ))
        .unwrap();
        assert_eq!(t.key_bytes, 96);
        assert_eq!(t.options, ["integrity:32:aead", "sector_size:4096"]);
        assert!(parse_crypt("aes-xts-plain64 :64:logon:x 0 254:16 32768 3 a").is_err());
        assert!(parse_crypt("aes").is_err());
    }

    #[test]
    fn integrity_lines_and_status() {
        let t = parse_integrity("254:16 32768 32 J 6 journal_sectors:1088 interleave_sectors:32768 buffer_sectors:128 journal_watermark:50 commit_time:10000 block_size:4096").unwrap();
        assert_eq!((t.offset, t.tag_size, t.mode.as_str()), (32768, 32, "J"));
        assert!(t.options.contains(&"block_size:4096".to_owned()));
        let s = parse_integrity_status("0 98304 -").unwrap();
        assert_eq!(s.provided_data_sectors, 98304);
        assert_eq!(s.recalculating_from, None);
        assert_eq!(
            parse_integrity_status("0 98304 8")
                .unwrap()
                .recalculating_from,
            Some(8)
        );
        assert!(parse_integrity_status("zero").is_err());
    }

    #[test]
    fn reply_buffer_decoding() {
        let mut b = vec![0u8; 1024];
        put_u32(&mut b, 16, DM_IOCTL_BYTES as u32);
        put_u32(&mut b, 20, 1);
        let at = DM_IOCTL_BYTES;
        b[at + 8..at + 16].copy_from_slice(&2048u64.to_ne_bytes());
        b[at + 24..at + 29].copy_from_slice(b"crypt");
        b[at + 40..at + 43].copy_from_slice(b"x y");
        let t = parse_reply(&b).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(
            (t[0].start, t[0].length, t[0].kind.as_str()),
            (0, 2048, "crypt")
        );
        assert_eq!(t[0].params.as_str(), "x y");
        put_u32(&mut b, 28, DM_BUFFER_FULL_FLAG);
        assert!(parse_reply(&b).is_err());
    }
}
