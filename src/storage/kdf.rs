//! From the broker's key material to the LUKS2 keyslot passphrase.

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::state::StateKey;
use super::StorageError;
use crate::config::{KeyDerivation, VolumeConfig};
use crate::secrets::Secret;

/// Key material must carry at least 256 bits.
pub const MIN_KEY_MATERIAL_BYTES: usize = 32;
/// Length of an HKDF-derived keyslot passphrase.
pub const DERIVED_KEY_BYTES: usize = 64;
/// HKDF `info` prefix; the volume name, the LUKS UUID and the instance
/// identity follow. Changing it changes every key.
pub const HKDF_INFO_PREFIX: &str = "cvm-init/luks2-keyslot/v2/";
/// HKDF `info` prefix of a derived volume key; the same fields follow.
pub const VOLUME_KEY_INFO_PREFIX: &str = "cvm-init/luks2-volume-key/v1/";

/// Everything the keys of one volume are made from: the broker's secret,
/// how to use it, the volume's name and, when the config has one, a trusted
/// identity of this VM instance.
#[derive(Debug, Clone, Copy)]
pub struct VolumeKeys<'a> {
    pub kind: KeyDerivation,
    pub material: &'a Secret,
    pub volume: &'a str,
    /// From the measured config or init-data bound by HOST_DATA/MRCONFIGID.
    pub instance: Option<&'a str>,
}

impl<'a> VolumeKeys<'a> {
    pub fn new(vol: &'a VolumeConfig, material: &'a Secret, instance: Option<&'a str>) -> Self {
        Self {
            kind: vol.key_derivation,
            material,
            volume: &vol.name,
            instance,
        }
    }

    /// The keyslot passphrase for the header with `luks_uuid`.
    pub fn keyslot(&self, luks_uuid: &str) -> Result<Secret, StorageError> {
        derive_key(
            self.kind,
            self.material,
            self.volume,
            luks_uuid,
            self.instance,
        )
    }

    /// The LUKS2 volume key (`len` bytes) of a header with the random
    /// `luks_uuid` that cvm-init generated when it formatted the volume.
    ///
    /// HKDF-SHA256 with ikm = material, salt = the UUID as text, info =
    /// `"cvm-init/luks2-volume-key/v1/" + volume + NUL + uuid + NUL +
    /// instance`. With it a later boot activates the mapping by volume key
    /// (libcryptsetup checks it against the header's digest) instead of
    /// opening the keyslot: no keyslot KDF, no anti-forensic merge, no
    /// decryption of the keyslot area through the kernel.
    ///
    /// Why this is as strong as libcryptsetup's random volume key:
    /// - the material is at least 256 bits from the broker, which the host
    ///   never sees; HKDF's output is then a pseudorandom key, and the
    ///   volume key is exactly as secret as the keyslot passphrase that
    ///   already decrypts it;
    /// - the prefix separates it from the keyslot passphrase and the state
    ///   key made from the same material, the volume name and instance
    ///   separate volumes and VMs;
    /// - a fresh key per format: the UUID is 122 random bits drawn at each
    ///   format, so a host that blanks the disk and has us format it again
    ///   gets a new key, and never two ciphertexts of different data under
    ///   one XTS key at the same sector. A volume whose config fixes
    ///   `luks_uuid` would break that, so it keeps a random volume key
    ///   (the caller decides; activation then falls back to the keyslot);
    /// - a header the host writes cannot choose the key: the UUID it names
    ///   must carry our MAC'd state token, so it can only replay one of
    ///   our own headers, which the keyslot would open just the same.
    ///
    /// The keyslot still holds the same key, so `cryptsetup open` with the
    /// keyslot passphrase works for recovery.
    pub fn volume_key(&self, luks_uuid: &str, len: usize) -> Result<Secret, StorageError> {
        check_length(self.kind, self.material, self.volume)?;
        let info = format!(
            "{VOLUME_KEY_INFO_PREFIX}{}\0{luks_uuid}\0{}",
            self.volume,
            self.instance.unwrap_or("")
        );
        hkdf_sha256(
            self.material.expose(),
            luks_uuid.as_bytes(),
            info.as_bytes(),
            len,
        )
        .map_err(|e| StorageError::Kdf {
            volume: self.volume.to_owned(),
            problem: e.to_string(),
        })
    }

    /// The key of the volume's state-token MAC.
    pub fn state_key(&self) -> Result<StateKey, StorageError> {
        check_length(self.kind, self.material, self.volume)?;
        StateKey::derive(self.material, self.volume, self.instance).map_err(|e| StorageError::Kdf {
            volume: self.volume.to_owned(),
            problem: e.to_string(),
        })
    }
}

fn check_length(
    kind: KeyDerivation,
    material: &Secret,
    volume_name: &str,
) -> Result<(), StorageError> {
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
    Ok(())
}

/// The keyslot passphrase for a volume.
///
/// `Raw`: the material itself (at least 32 bytes). `Hkdf`: HKDF-SHA256 with
/// ikm = material, salt = the LUKS UUID as text, info =
/// `"cvm-init/luks2-keyslot/v2/" + volume_name + NUL + luks_uuid + NUL +
/// instance` (empty without one), 64 bytes out; one master secret then
/// yields a different key per volume, header and instance.
pub fn derive_key(
    kind: KeyDerivation,
    material: &Secret,
    volume_name: &str,
    luks_uuid: &str,
    instance: Option<&str>,
) -> Result<Secret, StorageError> {
    check_length(kind, material, volume_name)?;
    match kind {
        KeyDerivation::Raw => Ok(material.clone()),
        KeyDerivation::Hkdf => {
            let info = format!(
                "{HKDF_INFO_PREFIX}{volume_name}\0{luks_uuid}\0{}",
                instance.unwrap_or("")
            );
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
    /// `HKDF(SHA256(), 64, salt=u, info=b"cvm-init/luks2-keyslot/v2/data\0"
    ///  + u + b"\0" + inst).derive(bytes(range(0x20, 0x40)))` with
    /// `u = b"1b4e28ba-2fa1-4d2b-883f-0016d3cca427"`, `inst` empty and
    /// `b"vm-42"`.
    #[test]
    fn derive_key_known_answer() {
        let material = Secret::new((0x20u8..0x40).collect());
        let uuid = "1b4e28ba-2fa1-4d2b-883f-0016d3cca427";
        for (instance, want) in [
            (
                None,
                "209d73b89d221b04bf71e1a65b0e87a88cb308aa433dbff4c7fcf1e6145c7662\
                 1df12bc26847b865dac19c4194c5784f0da2ddf880bb42339a5727b140a1e12b",
            ),
            (
                Some("vm-42"),
                "c3d138cfb026d4f307276efedc291275c8b27e31fd18af18765e18704d07e787\
                 a4cbb9eb46eb6f534572cf1dea7cc8435e91b004905663e4f93a92bd016f9d8e",
            ),
        ] {
            let key = derive_key(KeyDerivation::Hkdf, &material, "data", uuid, instance).unwrap();
            assert_eq!(hex::encode(key.expose()), want);
        }
    }

    #[test]
    fn names_uuids_and_instances_separate_keys() {
        let m = Secret::new(vec![7u8; 32]);
        let u1 = "1b4e28ba-2fa1-4d2b-883f-0016d3cca427";
        let u2 = "1b4e28ba-2fa1-4d2b-883f-0016d3cca428";
        let d = |name, uuid, inst| derive_key(KeyDerivation::Hkdf, &m, name, uuid, inst).unwrap();
        let a = d("data", u1, None);
        let keys = [
            d("logs", u1, None),
            d("data", u2, None),
            d("data", u1, Some("vm-2")),
            m.clone(),
        ];
        assert_eq!(a.len(), DERIVED_KEY_BYTES);
        for (i, k) in keys.iter().enumerate() {
            assert_ne!(&a, k, "{i}");
        }
        // Deterministic.
        assert_eq!(a, d("data", u1, None));
    }

    #[test]
    fn volume_key_is_separate_from_the_keyslot_key_and_per_uuid() {
        let m = Secret::new(vec![7u8; 32]);
        let keys = VolumeKeys {
            kind: KeyDerivation::Hkdf,
            material: &m,
            volume: "data",
            instance: None,
        };
        let u1 = "1b4e28ba-2fa1-4d2b-883f-0016d3cca427";
        let u2 = "1b4e28ba-2fa1-4d2b-883f-0016d3cca428";
        let vk = keys.volume_key(u1, 64).unwrap();
        // Python `cryptography`: `HKDF(SHA256(), 64, salt=u, info=
        // b"cvm-init/luks2-volume-key/v1/data\0" + u + b"\0")
        // .derive(bytes(range(0x20, 0x40)))`.
        let kat = VolumeKeys {
            material: &Secret::new((0x20u8..0x40).collect()),
            ..keys
        }
        .volume_key(u1, 64)
        .unwrap();
        assert_eq!(
            hex::encode(kat.expose()),
            "207be95d4bec9aa84f0a126256240110eecc3cd25357928bfb58c5a3acd8f18f\
             e2efb3387e54e73f6889ea8d174936b19cf3df4093f3caa303970abd7e451445"
        );
        assert_eq!(vk, keys.volume_key(u1, 64).unwrap());
        assert_ne!(vk, keys.keyslot(u1).unwrap());
        assert_ne!(vk, keys.volume_key(u2, 64).unwrap());
        let other = VolumeKeys {
            instance: Some("vm-2"),
            ..keys
        };
        assert_ne!(vk, other.volume_key(u1, 64).unwrap());
        // Raw material: still derived, never the material itself.
        let raw = VolumeKeys {
            kind: KeyDerivation::Raw,
            ..keys
        };
        assert_ne!(raw.volume_key(u1, 32).unwrap(), m);
        let short = Secret::new(vec![1u8; 31]);
        let short = VolumeKeys {
            material: &short,
            ..keys
        };
        assert!(short.volume_key(u1, 64).is_err());
    }

    #[test]
    fn raw_is_passed_through_and_short_material_refused() {
        let m = Secret::new(vec![9u8; 32]);
        assert_eq!(
            derive_key(KeyDerivation::Raw, &m, "v", "u", None).unwrap(),
            m
        );
        for kind in [KeyDerivation::Raw, KeyDerivation::Hkdf] {
            let err = derive_key(kind, &Secret::new(vec![1u8; 31]), "data", "u", None).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains("volume data") && msg.contains("31 bytes"),
                "{msg}"
            );
        }
    }
}
