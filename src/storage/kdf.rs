//! From the broker's key material to the LUKS2 keyslot passphrase.

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::StorageError;
use crate::config::KeyDerivation;
use crate::secrets::Secret;

/// Key material must carry at least 256 bits.
pub const MIN_KEY_MATERIAL_BYTES: usize = 32;
/// Length of an HKDF-derived keyslot passphrase.
pub const DERIVED_KEY_BYTES: usize = 64;
/// HKDF `info` prefix; the volume name follows. Changing it changes every key.
pub const HKDF_INFO_PREFIX: &str = "cvm-init/luks2-keyslot/v1/";

/// The keyslot passphrase for a volume.
///
/// `Raw`: the material itself (at least 32 bytes). `Hkdf`: HKDF-SHA256 with
/// ikm = material, salt = the LUKS UUID as text, info =
/// `"cvm-init/luks2-keyslot/v1/" + volume_name`, 64 bytes out; one master
/// secret then yields a different key per volume, bound to the header's UUID.
pub fn derive_key(
    kind: KeyDerivation,
    material: &Secret,
    volume_name: &str,
    luks_uuid: &str,
) -> Result<Secret, StorageError> {
    if material.len() < MIN_KEY_MATERIAL_BYTES {
        return Err(StorageError::KeyTooShort {
            volume: volume_name.to_owned(),
            what: match kind {
                KeyDerivation::Raw => "a raw LUKS key",
                KeyDerivation::Hkdf => "HKDF input",
            },
            len: material.len(),
            min: MIN_KEY_MATERIAL_BYTES,
        });
    }
    match kind {
        KeyDerivation::Raw => Ok(material.clone()),
        KeyDerivation::Hkdf => {
            let info = format!("{HKDF_INFO_PREFIX}{volume_name}");
            hkdf_sha256(
                material.expose(),
                luks_uuid.as_bytes(),
                info.as_bytes(),
                DERIVED_KEY_BYTES,
            )
            .map_err(|e| StorageError::Kdf {
                volume: volume_name.to_owned(),
                problem: e.to_string(),
            })
        }
    }
}

/// HKDF-SHA256 (RFC 5869) into a zeroizing buffer; fails only for
/// `len` > 255 * 32.
pub(crate) fn hkdf_sha256(
    ikm: &[u8],
    salt: &[u8],
    info: &[u8],
    len: usize,
) -> Result<Secret, hkdf::InvalidLength> {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    let mut okm = Zeroizing::new(vec![0u8; len]);
    hk.expand(info, &mut okm)?;
    Ok(Secret::new(std::mem::take(&mut *okm)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rfc5869_test_case_1() {
        let ikm = [0x0bu8; 22];
        let salt = hex::decode("000102030405060708090a0b0c").unwrap();
        let info = hex::decode("f0f1f2f3f4f5f6f7f8f9").unwrap();
        let okm = hkdf_sha256(&ikm, &salt, &info, 42).unwrap();
        assert_eq!(
            hex::encode(okm.expose()),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }

    /// Computed independently with Python `cryptography` 48:
    /// `HKDF(SHA256(), 64, salt=b"1b4e28ba-2fa1-4d2b-883f-0016d3cca427",
    ///  info=b"cvm-init/luks2-keyslot/v1/data").derive(bytes(range(0x20, 0x40)))`
    #[test]
    fn derive_key_known_answer() {
        let material = Secret::new((0x20u8..0x40).collect());
        let key = derive_key(
            KeyDerivation::Hkdf,
            &material,
            "data",
            "1b4e28ba-2fa1-4d2b-883f-0016d3cca427",
        )
        .unwrap();
        assert_eq!(
            hex::encode(key.expose()),
            "b95c258fe900c5c5b966ab2c4078638a7d7eba3742d57c414552a073e1a5e5b8\
             4d8469b0769261a6a4a8d9a12f01f187c14418e8a5f254869e87643221ec17ae"
        );
    }

    #[test]
    fn names_and_uuids_separate_keys() {
        let m = Secret::new(vec![7u8; 32]);
        let u1 = "1b4e28ba-2fa1-4d2b-883f-0016d3cca427";
        let u2 = "1b4e28ba-2fa1-4d2b-883f-0016d3cca428";
        let a = derive_key(KeyDerivation::Hkdf, &m, "data", u1).unwrap();
        let b = derive_key(KeyDerivation::Hkdf, &m, "logs", u1).unwrap();
        let c = derive_key(KeyDerivation::Hkdf, &m, "data", u2).unwrap();
        assert_eq!(a.len(), DERIVED_KEY_BYTES);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(b, c);
        assert_ne!(a.expose(), m.expose());
        // Deterministic.
        assert_eq!(a, derive_key(KeyDerivation::Hkdf, &m, "data", u1).unwrap());
    }

    #[test]
    fn raw_is_passed_through_and_short_material_refused() {
        let m = Secret::new(vec![9u8; 32]);
        assert_eq!(derive_key(KeyDerivation::Raw, &m, "v", "u").unwrap(), m);
        for kind in [KeyDerivation::Raw, KeyDerivation::Hkdf] {
            let err = derive_key(kind, &Secret::new(vec![1u8; 31]), "data", "u").unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains("volume data") && msg.contains("31 bytes"),
                "{msg}"
            );
        }
    }
}
