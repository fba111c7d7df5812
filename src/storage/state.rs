//! The authenticated state token: what a boot may do with one of our
//! volumes, in a form the host cannot forge.
//!
//! The token lives in the LUKS2 header, which the host can rewrite at every
//! boot, so its state counts only when its MAC verifies. The MAC key is
//! derived from the volume's broker secret (HKDF-SHA256, its own label), and
//! the MAC binds the state, the LUKS UUID, the volume name, the integrity
//! mapping size (when recorded) and the header's keyslots, digests,
//! segments and config. A host that flips `ready` to `provisioning`,
//! deletes the token, copies a token from another volume or VM, or edits a
//! keyslot parameter gets a header that is refused, never formatted.
//!
//! MAC input (HMAC-SHA256): the label [`MAC_LABEL`], then each field as a
//! big-endian u64 length followed by its bytes: volume name, LUKS UUID,
//! state (`"provisioning"`/`"ready"`), data sectors (decimal, or empty), the
//! RFC 8785 canonical JSON of `{config, digests, keyslots, segments}` as
//! libcryptsetup loaded them, and, only for a volume whose volume key is
//! derived (token field `"volume_key": "derived"`), the field
//! [`DERIVED_KEY_FIELD`]. Tokens from before that field verify as they did.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use super::header::params::TOKEN_TYPE;
use super::header::HeaderError;
use super::kdf::hkdf_sha256;
use crate::secrets::Secret;

/// Token format version. Version 1 carried no MAC and is refused.
pub const TOKEN_VERSION: u64 = 2;
/// Domain separation for the MAC input and the HKDF label of its key.
pub const MAC_LABEL: &str = "cvm-init/state-token/v2";
/// The header sections the MAC binds (everything but the tokens).
const BOUND_SECTIONS: &[&str] = &["config", "digests", "keyslots", "segments"];
/// The MAC's sixth field when the volume key is derived.
pub const DERIVED_KEY_FIELD: &[u8] = b"volume-key:derived";

/// The provisioning state recorded in our LUKS2 token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    /// First boot began but did not finish (no complete filesystem yet, no
    /// workload ever ran): provisioning restarts from scratch.
    Provisioning,
    /// Provisioned: unlock only, never format.
    Ready,
}

impl TokenState {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Provisioning => "provisioning",
            TokenState::Ready => "ready",
        }
    }
}

/// Our token as found in a header: what it claims, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateToken {
    /// The LUKS2 token id.
    pub id: u32,
    pub state: TokenState,
    /// For integrity volumes in state `ready`: the size of the dm-integrity
    /// mapping in 512-byte sectors, checked after every activation.
    pub data_sectors: Option<u64>,
    /// The volume key is [`super::kdf::VolumeKeys::volume_key`] of this
    /// header's UUID (cvm-init formatted it so). Trust it only once the
    /// MAC verified.
    pub derived_key: bool,
    mac: Vec<u8>,
}

/// The MAC key of one volume.
pub struct StateKey(pub(crate) Secret);

impl std::fmt::Debug for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateKey(..)")
    }
}

/// What the MAC covers besides the header sections.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    pub volume: &'a str,
    pub luks_uuid: &'a str,
    pub state: TokenState,
    pub data_sectors: Option<u64>,
    /// The header's volume key is the derived one.
    pub derived_key: bool,
}

impl StateKey {
    /// HKDF-SHA256(ikm = the volume's broker secret, salt = [`MAC_LABEL`],
    /// info = `MAC_LABEL/<volume>` + NUL + the instance identity), 32 bytes.
    pub fn derive(
        material: &Secret,
        volume: &str,
        instance: Option<&str>,
    ) -> Result<Self, hkdf::InvalidLength> {
        let info = format!("{MAC_LABEL}/{volume}\0{}", instance.unwrap_or(""));
        hkdf_sha256(material.expose(), MAC_LABEL.as_bytes(), info.as_bytes(), 32).map(StateKey)
    }

    fn hmac(&self, b: &Binding<'_>, metadata: &Value) -> Result<Hmac<Sha256>, HeaderError> {
        let top = metadata.as_object().ok_or_else(|| HeaderError::Malformed {
            at: "metadata".to_owned(),
            problem: "is not a JSON object".to_owned(),
        })?;
        let bound: Map<String, Value> = BOUND_SECTIONS
            .iter()
            .map(|k| ((*k).to_owned(), top.get(*k).cloned().unwrap_or(Value::Null)))
            .collect();
        let canonical =
            serde_json_canonicalizer::to_string(&Value::Object(bound)).map_err(|e| {
                HeaderError::Malformed {
                    at: "metadata".to_owned(),
                    problem: format!("cannot be canonicalised: {e}"),
                }
            })?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.expose()).map_err(|e| {
            HeaderError::Malformed {
                at: "state key".to_owned(),
                problem: e.to_string(),
            }
        })?;
        let sectors = b.data_sectors.map(|n| n.to_string()).unwrap_or_default();
        mac.update(MAC_LABEL.as_bytes());
        for field in [
            b.volume.as_bytes(),
            b.luks_uuid.as_bytes(),
            b.state.as_str().as_bytes(),
            sectors.as_bytes(),
            canonical.as_bytes(),
        ] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field);
        }
        if b.derived_key {
            mac.update(&(DERIVED_KEY_FIELD.len() as u64).to_be_bytes());
            mac.update(DERIVED_KEY_FIELD);
        }
        Ok(mac)
    }

    /// The token JSON to store for `b` in a header whose metadata (without
    /// or with an older token) is `metadata`.
    pub fn token_json(&self, b: &Binding<'_>, metadata: &Value) -> Result<Value, HeaderError> {
        let tag = self.hmac(b, metadata)?.finalize().into_bytes();
        let mut t = serde_json::json!({
            "type": TOKEN_TYPE,
            "keyslots": [],
            "version": TOKEN_VERSION,
            "state": b.state.as_str(),
            "mac": hex::encode(tag),
        });
        if let Some(n) = b.data_sectors {
            t["data_sectors"] = Value::String(n.to_string());
        }
        if b.derived_key {
            t["volume_key"] = Value::String("derived".to_owned());
        }
        Ok(t)
    }

    /// Whether `token` is the one this key made for this header and volume
    /// (constant-time comparison).
    pub fn verify(
        &self,
        volume: &str,
        luks_uuid: &str,
        token: &StateToken,
        metadata: &Value,
    ) -> Result<bool, HeaderError> {
        let b = Binding {
            volume,
            luks_uuid,
            state: token.state,
            data_sectors: token.data_sectors,
            derived_key: token.derived_key,
        };
        Ok(self.hmac(&b, metadata)?.verify_slice(&token.mac).is_ok())
    }
}

fn bad(id: &str, problem: impl Into<String>) -> HeaderError {
    HeaderError::StateToken {
        id: id.to_owned(),
        problem: problem.into(),
    }
}

/// Our state token in a header's `tokens` object: `None` when there is
/// none. Other token types are ignored here; the header validator refuses
/// them. A token of ours that is malformed, of an older version or
/// duplicated is an error.
pub fn find_token(tokens: &Map<String, Value>) -> Result<Option<StateToken>, HeaderError> {
    let ours: BTreeMap<&String, &Value> = tokens
        .iter()
        .filter(|(_, t)| t.get("type").and_then(Value::as_str) == Some(TOKEN_TYPE))
        .collect();
    let (id, tok) = match ours.len() {
        0 => return Ok(None),
        1 => ours
            .into_iter()
            .next()
            .ok_or(HeaderError::MissingStateToken)?,
        n => return Err(HeaderError::TokenCount { found: n }),
    };
    let t = tok
        .as_object()
        .ok_or_else(|| bad(id, "is not a JSON object"))?;
    if let Some(k) = t.keys().find(|k| {
        ![
            "type",
            "keyslots",
            "version",
            "state",
            "mac",
            "data_sectors",
            "volume_key",
        ]
        .contains(&k.as_str())
    }) {
        return Err(HeaderError::UnknownField {
            at: format!("tokens.{id}.{k}"),
        });
    }
    if t.get("keyslots")
        .and_then(Value::as_array)
        .is_none_or(|a| !a.is_empty())
    {
        return Err(bad(
            id,
            "is assigned to a keyslot or has no keyslots list; ours never is",
        ));
    }
    match t.get("version").and_then(Value::as_u64) {
        Some(TOKEN_VERSION) => {}
        Some(1) => {
            return Err(bad(
                id,
                "is version 1, which carried no MAC; cvm-init no longer trusts an unauthenticated state",
            ))
        }
        other => return Err(bad(id, format!("version is {other:?}, expected {TOKEN_VERSION}"))),
    }
    let state = match t.get("state").and_then(Value::as_str) {
        Some("provisioning") => TokenState::Provisioning,
        Some("ready") => TokenState::Ready,
        other => {
            return Err(bad(
                id,
                format!("state {other:?} is neither \"provisioning\" nor \"ready\""),
            ))
        }
    };
    let mac = t
        .get("mac")
        .and_then(Value::as_str)
        .and_then(|m| hex::decode(m).ok())
        .filter(|m| m.len() == 32)
        .ok_or_else(|| bad(id, "has no 32-byte hex \"mac\""))?;
    let data_sectors = match t.get("data_sectors") {
        None => None,
        Some(v) => Some(
            v.as_str()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| bad(id, "data_sectors is not a decimal string"))?,
        ),
    };
    let derived_key = match t.get("volume_key") {
        None => false,
        Some(v) if v.as_str() == Some("derived") => true,
        Some(v) => return Err(bad(id, format!("volume_key is {v}, expected \"derived\""))),
    };
    Ok(Some(StateToken {
        id: id.parse().map_err(|_| bad(id, "has a non-numeric id"))?,
        state,
        data_sectors,
        derived_key,
        mac,
    }))
}

/// [`find_token`] on a whole metadata document.
pub fn header_token(json: &Value) -> Result<Option<StateToken>, HeaderError> {
    let tokens = json
        .get("tokens")
        .and_then(Value::as_object)
        .ok_or_else(|| HeaderError::Malformed {
            at: "metadata.tokens".to_owned(),
            problem: "is missing or not an object".to_owned(),
        })?;
    find_token(tokens)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn meta() -> Value {
        serde_json::json!({
            "keyslots": {"0": {"type": "luks2", "key_size": 64}},
            "segments": {"0": {"type": "crypt", "offset": "16777216"}},
            "digests": {"0": {"type": "pbkdf2", "digest": "X81R=="}},
            "config": {"json_size": "12288", "keyslots_size": "16744448"},
            "tokens": {}
        })
    }

    fn key(material: u8, volume: &str, instance: Option<&str>) -> StateKey {
        StateKey::derive(&Secret::new(vec![material; 32]), volume, instance).unwrap()
    }

    const UUID: &str = "1b4e28ba-2fa1-4d2b-883f-0016d3cca427";

    fn token(k: &StateKey, state: TokenState, m: &Value) -> StateToken {
        token_with(k, state, false, m)
    }

    fn token_with(k: &StateKey, state: TokenState, derived_key: bool, m: &Value) -> StateToken {
        let b = Binding {
            volume: "data",
            luks_uuid: UUID,
            state,
            data_sectors: None,
            derived_key,
        };
        let mut m2 = m.clone();
        m2["tokens"]["0"] = k.token_json(&b, m).unwrap();
        header_token(&m2).unwrap().unwrap()
    }

    #[test]
    fn a_token_verifies_only_for_its_volume_uuid_key_state_and_header() {
        let k = key(7, "data", None);
        let m = meta();
        let t = token(&k, TokenState::Ready, &m);
        assert!(k.verify("data", UUID, &t, &m).unwrap());
        // The token id does not matter, the tokens section is not bound.
        let mut with_token = m.clone();
        with_token["tokens"]["3"] = serde_json::json!({"type": "cvm-init"});
        assert!(k.verify("data", UUID, &t, &with_token).unwrap());

        assert!(!k.verify("logs", UUID, &t, &m).unwrap());
        assert!(!k
            .verify("data", "1b4e28ba-2fa1-4d2b-883f-0016d3cca428", &t, &m)
            .unwrap());
        assert!(!key(8, "data", None).verify("data", UUID, &t, &m).unwrap());
        assert!(!key(7, "data", Some("vm-2"))
            .verify("data", UUID, &t, &m)
            .unwrap());
        let mut flipped = t.clone();
        flipped.state = TokenState::Provisioning;
        assert!(!k.verify("data", UUID, &flipped, &m).unwrap());
        let mut sized = t.clone();
        sized.data_sectors = Some(1);
        assert!(!k.verify("data", UUID, &sized, &m).unwrap());
        // "The volume key is derived" is bound both ways: a host can
        // neither add the claim to a token nor strip it from one.
        let mut claimed = t.clone();
        claimed.derived_key = true;
        assert!(!k.verify("data", UUID, &claimed, &m).unwrap());
        let derived = token_with(&k, TokenState::Ready, true, &m);
        assert!(derived.derived_key);
        assert!(k.verify("data", UUID, &derived, &m).unwrap());
        let mut stripped = derived.clone();
        stripped.derived_key = false;
        assert!(!k.verify("data", UUID, &stripped, &m).unwrap());
        for (section, field) in [
            ("keyslots", "0"),
            ("segments", "0"),
            ("digests", "0"),
            ("config", "flags"),
        ] {
            let mut edited = m.clone();
            edited[section][field] = serde_json::json!(["allow-discards"]);
            assert!(!k.verify("data", UUID, &t, &edited).unwrap(), "{section}");
        }
    }

    #[test]
    fn malformed_old_and_duplicate_tokens_are_errors() {
        let k = key(7, "data", None);
        let m = meta();
        let good = {
            let b = Binding {
                volume: "data",
                luks_uuid: UUID,
                state: TokenState::Ready,
                data_sectors: Some(2048),
                derived_key: false,
            };
            k.token_json(&b, &m).unwrap()
        };
        let mut doc = m.clone();
        doc["tokens"]["0"] = good.clone();
        assert_eq!(
            header_token(&doc).unwrap().unwrap().data_sectors,
            Some(2048)
        );
        let cases: Vec<(&str, Value)> = vec![
            ("version", serde_json::json!(1)),
            ("version", serde_json::json!(3)),
            ("state", serde_json::json!("wiped")),
            ("mac", serde_json::json!("00")),
            ("keyslots", serde_json::json!(["0"])),
            ("data_sectors", serde_json::json!(5)),
            ("extra", serde_json::json!(true)),
            ("volume_key", serde_json::json!("random")),
        ];
        for (k2, v) in cases {
            let mut t = good.clone();
            t[k2] = v;
            let mut doc = m.clone();
            doc["tokens"]["0"] = t;
            assert!(header_token(&doc).is_err(), "{k2}");
        }
        doc["tokens"]["1"] = good;
        assert_eq!(
            header_token(&doc).unwrap_err(),
            HeaderError::TokenCount { found: 2 }
        );
        assert_eq!(header_token(&m).unwrap(), None);
    }
}
