//! The plain dm-crypt mapping of a volume whose volume key is derived,
//! made with device-mapper ioctls (`dmtable::create`) instead of
//! libcryptsetup's activation by volume key.
//!
//! What that skips is libcryptsetup's check of the key against the
//! header's digest: PBKDF2 at its floor of 1000 iterations, 35 ms of a
//! 55 ms activation under emulation. The check adds nothing here. The
//! caller has verified the state token's MAC, whose key comes from the same
//! broker secret, volume name and instance as the volume key, and which
//! binds this header's UUID, digest, segment and the claim "the volume key
//! is derived" (`state`). A header we did not make, or one of ours with a
//! random volume key, never gets here. The table is the one libcryptsetup
//! builds for the same header (checked against a real boot in the tests),
//! and `mapping::check` reads back what the kernel made either way.

use std::path::Path;

use zeroize::Zeroizing;

use super::header::params::{CIPHER, DATA_OFFSET, SECTOR_SIZE};
use super::{dmtable, mapping};
use crate::secrets::Secret;

/// The dm-crypt target's parameters for our segment on the device
/// `device` (`major:minor`), with the header's persistent `flags` (already
/// validated): `aes-xts-plain64 <hex key> 0 <dev> 32768 <n> <options>`.
pub(crate) fn table_params(
    key: &Secret,
    device: &str,
    flags: &[&str],
) -> std::io::Result<Zeroizing<String>> {
    let mut options = Vec::with_capacity(flags.len() + 1);
    for flag in flags {
        options.push(match *flag {
            "allow-discards" => "allow_discards",
            "no-read-workqueue" => "no_read_workqueue",
            "no-write-workqueue" => "no_write_workqueue",
            other => {
                return Err(std::io::Error::other(format!(
                    "persistent flag {other:?} has no dm-crypt option here"
                )))
            }
        });
    }
    let sector = format!("sector_size:{SECTOR_SIZE}");
    options.push(&sector);
    let hex = Zeroizing::new(hex::encode(key.expose()));
    Ok(Zeroizing::new(format!(
        "{CIPHER} {} 0 {device} {} {} {}",
        hex.as_str(),
        DATA_OFFSET / 512,
        options.len(),
        options.join(" ")
    )))
}

/// Creates `/dev/mapper/<name>` over `device` from [`DATA_OFFSET`] to its
/// end (whole 4 KiB sectors) with `key`, device-mapper UUID
/// `CRYPT-LUKS2-<uuid>-<name>` as libcryptsetup names it, so that
/// `cryptsetup status` and systemd know it.
pub(crate) fn create(
    dev_dir: &Path,
    name: &str,
    luks_uuid: &str,
    device: &Path,
    key: &Secret,
    flags: &[&str],
) -> std::io::Result<()> {
    let size = mapping::device_bytes(device)?;
    let sectors = size.saturating_sub(DATA_OFFSET) / SECTOR_SIZE * (SECTOR_SIZE / 512);
    if sectors == 0 {
        return Err(std::io::Error::other(
            "the device ends before the data segment",
        ));
    }
    let params = table_params(key, &mapping::dev_numbers(device)?, flags)?;
    let dm_uuid = format!("CRYPT-LUKS2-{}-{name}", luks_uuid.replace('-', ""));
    let control = dev_dir.join("mapper/control");
    let dev = dmtable::create(&control, name, &dm_uuid, "crypt", sectors, &params)?;
    // No udev in an initramfs: the node is ours to make, as libdevmapper
    // makes it.
    let node = dev_dir.join("mapper").join(name);
    let _ = std::fs::remove_file(&node);
    let made = nix::sys::stat::mknod(
        &node,
        nix::sys::stat::SFlag::S_IFBLK,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        dev,
    );
    if let Err(e) = made {
        let _ = dmtable::remove(&control, name);
        return Err(std::io::Error::from(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_table_is_libcryptsetups() {
        // libcryptsetup 2.6.1's table for a cvm-init volume on 254:16, from
        // a real boot (its key by keyring reference; ours in hex).
        let real = "aes-xts-plain64 :64:logon:cryptsetup:64e3837d-6430-4aaf-8c4a-3f7abbccaa61-d0 0 254:16 32768 3 no_read_workqueue no_write_workqueue sector_size:4096";
        let key = Secret::new(vec![0xab; 64]);
        let ours =
            table_params(&key, "254:16", &["no-read-workqueue", "no-write-workqueue"]).unwrap();
        let hex = "ab".repeat(64);
        assert_eq!(
            ours.replace(&hex, "KEY"),
            real.replace(
                ":64:logon:cryptsetup:64e3837d-6430-4aaf-8c4a-3f7abbccaa61-d0",
                "KEY"
            )
        );
        let parsed = dmtable::parse_crypt(&ours).unwrap();
        assert_eq!(parsed.key_bytes, 64);
        assert_eq!(parsed.device, "254:16");
        let discard = table_params(&key, "254:16", &["allow-discards"]).unwrap();
        assert!(discard.ends_with(" 0 254:16 32768 2 allow_discards sector_size:4096"));
        assert!(table_params(&key, "254:16", &["same-cpu-crypt"]).is_err());
    }
}
