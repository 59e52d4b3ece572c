//! The key ring: the keys that sign and encrypt what the service stores, by key id.
//!
//! One key id is current (new signatures and ciphertexts use it); every listed id is accepted on reads,
//! so a rotation adds a new current id and keeps the old ones until nothing stored names them.
//!
//! # The key secret
//!
//! The ring is read from one JSON document (a Secrets Manager secret's string):
//!
//! ```json
//! {"current": "k2", "keys": {"k1": "<base64 of 32 random bytes>", "k2": "<base64 of 32 random bytes>"}}
//! ```
//!
//! - `current`: the id writes use; it must be listed in `keys`.
//! - `keys`: key id → master key, standard base64 with padding (44 characters), exactly 32 bytes.
//! - Key ids are 1 to 32 characters of `A-Z a-z 0-9 . _ -`: they are stored next to every signature and
//!   ciphertext, and printed in logs and metrics.
//! - No other member is accepted, and no id twice: a typo in a secret is an error, not a silent default.
//!
//! # One master key per id, two derived keys
//!
//! Each master key is expanded with HKDF-SHA256 (RFC 5869; salt [`HKDF_SALT`], info = purpose label, a NUL
//! byte, the key id) into a MAC key for HMAC-SHA256 ([`MAC_INFO`]) and an encryption key for AES-256-GCM
//! ([`ENCRYPTION_INFO`]). One secret value per id is what a rotation generates (one KMS data key), while no
//! key is ever used by two algorithms; the id in `info` makes the same bytes listed under two ids two
//! unrelated keys. The master key itself is not kept after the derivation.
//!
//! # Secrecy
//!
//! Key bytes never appear in `Debug`, `Display` or an error: [`KeyRing`]'s `Debug` prints the ids, errors
//! name at most a key id that passed validation (a malformed id could be key material pasted in the wrong
//! place), and a malformed secret is reported by line and column only, never with the parser's message,
//! which can quote the value it choked on. Key bytes (master, derived, and the AES key schedule) are
//! zeroized when dropped. The JSON parser's own transient buffers are not: the caller should hold the
//! secret text in a [`Zeroizing`] string and drop it after [`KeyRing::from_secret_json`].

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::{Aes256Gcm, KeyInit};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use rand::TryRngCore;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use zeroize::Zeroizing;

/// Bytes in a master key and in each derived key.
pub const KEY_LEN: usize = 32;

/// HKDF salt: fixed, naming this service's key ring (the master keys are uniformly random already).
pub const HKDF_SALT: &[u8] = b"bytemark-ticket-cache key ring v1";
/// HKDF info label of the HMAC-SHA256 key (followed by a NUL byte and the key id).
pub const MAC_INFO: &[u8] = b"bytemark-ticket-cache hmac-sha256 v1";
/// HKDF info label of the AES-256-GCM key (followed by a NUL byte and the key id).
pub const ENCRYPTION_INFO: &[u8] = b"bytemark-ticket-cache aes-256-gcm v1";

/// Longest key id.
pub const MAX_KEY_ID_LEN: usize = 32;

/// Why a key secret or a key id cannot be used. Never carries key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not JSON, or not the documented shape (a missing member, a wrong type, an unknown member, an id
    /// listed twice). The parser's message is left out on purpose: it can quote key material.
    #[error("the key secret is not the documented JSON (line {line}, column {column})")]
    Malformed { line: usize, column: usize },
    #[error("a key id must be 1 to {MAX_KEY_ID_LEN} characters of A-Z a-z 0-9 . _ -")]
    InvalidKeyId,
    #[error("the key secret lists no keys")]
    NoKeys,
    #[error("the current key id {id:?} is not listed in the key secret")]
    CurrentNotListed { id: String },
    #[error("key {id:?} is not standard base64")]
    NotBase64 { id: String },
    #[error("key {id:?} has {len} bytes, not {KEY_LEN}")]
    WrongKeyLength { id: String, len: usize },
    #[error("key id {id:?} is listed twice")]
    DuplicateKeyId { id: String },
    #[error("the operating system's random source failed")]
    RandomSource,
}

/// A key id: 1 to 32 characters of `A-Z a-z 0-9 . _ -`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(String);

impl KeyId {
    pub fn parse(id: &str) -> Result<KeyId, KeyError> {
        if Self::is_valid(id) {
            Ok(KeyId(id.to_owned()))
        } else {
            Err(KeyError::InvalidKeyId)
        }
    }

    /// Whether `id` has a key id's syntax (whether or not any ring lists it).
    pub fn is_valid(id: &str) -> bool {
        (1..=MAX_KEY_ID_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One key id's master key: 32 secret bytes, zeroized on drop, never printed.
pub struct MasterKey(Zeroizing<[u8; KEY_LEN]>);

impl MasterKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> MasterKey {
        MasterKey(Zeroizing::new(bytes))
    }

    /// A new random key from the operating system's generator (for development rings and tests; deployed
    /// keys come from KMS).
    pub fn generate() -> Result<MasterKey, KeyError> {
        let mut key = MasterKey(Zeroizing::new([0; KEY_LEN]));
        rand::rngs::OsRng.try_fill_bytes(&mut key.0[..]).map_err(|_| KeyError::RandomSource)?;
        Ok(key)
    }

    /// HKDF-SHA256 of this master key for one purpose of one key id.
    fn derive(&self, info_label: &[u8], id: &KeyId) -> Zeroizing<[u8; KEY_LEN]> {
        let hkdf = hkdf::Hkdf::<sha2_mac::Sha256>::new(Some(HKDF_SALT), &self.0[..]);
        let mut info = Vec::with_capacity(info_label.len() + 1 + id.0.len());
        info.extend_from_slice(info_label);
        info.push(0);
        info.extend_from_slice(id.0.as_bytes());
        let mut key = Zeroizing::new([0; KEY_LEN]);
        // 32 bytes is far below HKDF-SHA256's limit of 255 × 32: `expand` cannot refuse it.
        let _ = hkdf.expand(&info, &mut key[..]);
        key
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// The keys derived for one key id.
struct DerivedKeys {
    mac: Zeroizing<[u8; KEY_LEN]>,
    /// The AES-256-GCM key, expanded once per ring (its schedule is zeroized on drop).
    cipher: Aes256Gcm,
}

impl DerivedKeys {
    fn new(id: &KeyId, master: &MasterKey) -> DerivedKeys {
        let encryption = master.derive(ENCRYPTION_INFO, id);
        DerivedKeys { mac: master.derive(MAC_INFO, id), cipher: Aes256Gcm::new((&*encryption).into()) }
    }
}

/// Key ids → derived keys, with the current id for writes. `Debug` prints ids only.
pub struct KeyRing {
    /// Sorted by id, each id once, never empty.
    keys: Vec<(KeyId, DerivedKeys)>,
    /// Where the current id is in `keys`.
    current: usize,
}

impl KeyRing {
    /// A ring from master keys; `current` must be one of them.
    pub fn new(current: KeyId, keys: impl IntoIterator<Item = (KeyId, MasterKey)>) -> Result<KeyRing, KeyError> {
        let mut derived = BTreeMap::new();
        for (id, master) in keys {
            let keys = DerivedKeys::new(&id, &master);
            if derived.insert(id.clone(), keys).is_some() {
                return Err(KeyError::DuplicateKeyId { id: id.0 });
            }
        }
        if derived.is_empty() {
            return Err(KeyError::NoKeys);
        }
        let keys: Vec<_> = derived.into_iter().collect();
        let current = keys.iter().position(|(id, _)| *id == current).ok_or(KeyError::CurrentNotListed { id: current.0 })?;
        Ok(KeyRing { keys, current })
    }

    /// A ring from the key secret's JSON (see the module documentation).
    pub fn from_secret_json(secret: &str) -> Result<KeyRing, KeyError> {
        let parsed: SecretJson = serde_json::from_str(secret).map_err(|e| KeyError::Malformed { line: e.line(), column: e.column() })?;
        let current = KeyId::parse(&parsed.current)?;
        let mut keys = Vec::with_capacity(parsed.keys.len());
        for (id, encoded) in &parsed.keys {
            let id = KeyId::parse(id)?;
            let bytes = Zeroizing::new(BASE64.decode(encoded.as_bytes()).map_err(|_| KeyError::NotBase64 { id: id.0.clone() })?);
            let bytes: [u8; KEY_LEN] =
                bytes.as_slice().try_into().map_err(|_| KeyError::WrongKeyLength { id: id.0.clone(), len: bytes.len() })?;
            let master = MasterKey::from_bytes(bytes);
            keys.push((id, master));
        }
        KeyRing::new(current, keys)
    }

    /// The id new signatures and ciphertexts use.
    pub fn current_id(&self) -> &KeyId {
        &self.keys[self.current].0
    }

    /// Every id reads accept, in order.
    pub fn ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.iter().map(|(id, _)| id)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    fn get(&self, id: &str) -> Option<&DerivedKeys> {
        // Rings hold a handful of ids: a scan, without building a `KeyId` for the lookup.
        self.keys.iter().find(|(listed, _)| listed.0 == id).map(|(_, keys)| keys)
    }

    /// The HMAC-SHA256 key of `id`.
    pub(crate) fn mac_key(&self, id: &str) -> Option<&[u8; KEY_LEN]> {
        self.get(id).map(|keys| &*keys.mac)
    }

    /// The AES-256-GCM cipher of `id`.
    pub(crate) fn cipher(&self, id: &str) -> Option<&Aes256Gcm> {
        self.get(id).map(|keys| &keys.cipher)
    }

    /// The HMAC-SHA256 key of the current id.
    pub(crate) fn current_mac_key(&self) -> &[u8; KEY_LEN] {
        &self.keys[self.current].1.mac
    }

    /// The AES-256-GCM cipher of the current id.
    pub(crate) fn current_cipher(&self) -> &Aes256Gcm {
        &self.keys[self.current].1.cipher
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("current", &self.current_id().0)
            .field("ids", &self.ids().map(|id| &id.0).collect::<Vec<_>>())
            .finish()
    }
}

/// The key secret's JSON for master keys: what a development setup or a test stores. The text holds key
/// material, so it comes back zeroizing.
pub fn secret_json(current: &KeyId, keys: &[(KeyId, &MasterKey)]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(32 + keys.len() * 84));
    out.push_str("{\"current\":\"");
    out.push_str(current.as_str());
    out.push_str("\",\"keys\":{");
    for (i, (id, master)) in keys.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(id.as_str());
        out.push_str("\":\"");
        BASE64.encode_string(&master.0[..], &mut out);
        out.push('"');
    }
    out.push_str("}}");
    out
}

/// The secret as parsed, before validation; every key's text zeroized on drop.
struct SecretJson {
    current: String,
    keys: Vec<(String, Zeroizing<String>)>,
}

impl<'de> Deserialize<'de> for SecretJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(SecretVisitor)
    }
}

/// Written out rather than derived: a derived map would keep the last of two equal ids, and derived
/// errors quote the unexpected value.
struct SecretVisitor;

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = SecretJson;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key secret object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretJson, A::Error> {
        let (mut current, mut keys) = (None, None);
        while let Some(name) = map.next_key::<String>()? {
            match name.as_str() {
                "current" if current.is_none() => current = Some(map.next_value::<String>()?),
                "keys" if keys.is_none() => keys = Some(map.next_value::<KeyEntries>()?.0),
                _ => return Err(de::Error::custom("unexpected member")),
            }
        }
        match (current, keys) {
            (Some(current), Some(keys)) => Ok(SecretJson { current, keys }),
            _ => Err(de::Error::custom("missing member")),
        }
    }
}

/// The `keys` object, in order, ids repeated or not (validation refuses repeats).
struct KeyEntries(Vec<(String, Zeroizing<String>)>);

impl<'de> Deserialize<'de> for KeyEntries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = KeyEntries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of key ids to base64 keys")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyEntries, A::Error> {
                let mut entries = Vec::new();
                while let Some(id) = map.next_key::<String>()? {
                    let key = Zeroizing::new(map.next_value::<String>()?);
                    entries.push((id, key));
                }
                Ok(KeyEntries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fixed master key whose bytes are easy to spot in any text: 0xA5 repeated.
    pub(crate) const SPOTTED_KEY: [u8; KEY_LEN] = [0xA5; KEY_LEN];

    pub(crate) fn ring_of(current: &str, ids: &[(&str, [u8; KEY_LEN])]) -> KeyRing {
        let keys = ids.iter().map(|(id, bytes)| (KeyId::parse(id).unwrap(), MasterKey::from_bytes(*bytes)));
        KeyRing::new(KeyId::parse(current).unwrap(), keys).unwrap()
    }

    /// Every way key bytes could show in a text: base64, hex in either case, the `Debug` of the array.
    pub(crate) fn assert_no_key_bytes(text: &str, key: &[u8; KEY_LEN]) {
        let forms = [BASE64.encode(key), hex::encode(key), hex::encode_upper(key), format!("{key:?}"), format!("{:?}", &key[..4])];
        for form in forms {
            assert!(!text.contains(&form), "{text:?} contains key bytes as {form:?}");
        }
        assert!(!text.contains("165, 165"), "{text:?} contains key bytes as decimals");
    }

    #[test]
    fn a_secret_parses_into_a_ring_that_accepts_every_listed_id() {
        let k1 = MasterKey::from_bytes([1; KEY_LEN]);
        let k2 = MasterKey::from_bytes([2; KEY_LEN]);
        let (id1, id2) = (KeyId::parse("k1").unwrap(), KeyId::parse("2025-06.b_x").unwrap());
        let secret = secret_json(&id2, &[(id1.clone(), &k1), (id2.clone(), &k2)]);
        let ring = KeyRing::from_secret_json(&secret).unwrap();
        assert_eq!(ring.current_id(), &id2);
        assert_eq!(ring.ids().collect::<Vec<_>>(), vec![&id2, &id1]);
        assert!(ring.contains("k1") && ring.contains("2025-06.b_x") && !ring.contains("k3"));
        // The MAC and encryption keys differ from each other and between ids.
        let (mac1, mac2) = (ring.mac_key("k1").unwrap(), ring.mac_key("2025-06.b_x").unwrap());
        assert_ne!(mac1, mac2);
        assert_ne!(&*k1.derive(ENCRYPTION_INFO, &id1), mac1);
        assert_ne!(&*k1.derive(MAC_INFO, &id1), &*k1.derive(MAC_INFO, &id2), "the id is part of the derivation");
    }

    #[test]
    fn bad_secrets_are_refused_with_typed_errors() {
        let key = BASE64.encode([7; KEY_LEN]);
        let malformed = [
            "not json".to_owned(),
            format!(r#"{{"keys":{{"k1":"{key}"}}}}"#),
            format!(r#"{{"current":"k1","keys":{{"k1":"{key}"}},"extra":1}}"#),
            format!(r#"{{"current":"k1","current":"k1","keys":{{"k1":"{key}"}}}}"#),
            r#"{"current":"k1","keys":{"k1":7}}"#.to_owned(),
        ];
        for secret in malformed {
            assert!(matches!(KeyRing::from_secret_json(&secret), Err(KeyError::Malformed { line: 1, .. })), "{secret}");
        }
        let cases: Vec<(String, KeyError)> = vec![
            (r#"{"current":"k1","keys":{}}"#.into(), KeyError::NoKeys),
            (format!(r#"{{"current":"k9","keys":{{"k1":"{key}"}}}}"#), KeyError::CurrentNotListed { id: "k9".into() }),
            (format!(r#"{{"current":"k1","keys":{{"k1":"{key}","k1":"{key}"}}}}"#), KeyError::DuplicateKeyId { id: "k1".into() }),
            (r#"{"current":"k1","keys":{"k1":"***"}}"#.into(), KeyError::NotBase64 { id: "k1".into() }),
            (
                format!(r#"{{"current":"k1","keys":{{"k1":"{}"}}}}"#, BASE64.encode([7; 16])),
                KeyError::WrongKeyLength { id: "k1".into(), len: 16 },
            ),
            (format!(r#"{{"current":"k 1","keys":{{"k 1":"{key}"}}}}"#), KeyError::InvalidKeyId),
            (format!(r#"{{"current":"k1","keys":{{"{}":"{key}"}}}}"#, "k".repeat(33)), KeyError::InvalidKeyId),
        ];
        for (secret, expected) in cases {
            assert_eq!(KeyRing::from_secret_json(&secret).unwrap_err(), expected, "{secret}");
        }
    }

    #[test]
    fn key_ids_are_short_ascii() {
        for valid in ["k1", "A.b_c-9", &"x".repeat(32)] {
            assert!(KeyId::parse(valid).is_ok(), "{valid}");
        }
        for invalid in ["", "k 1", "k/1", "ké", &"x".repeat(33), "k1\0"] {
            assert_eq!(KeyId::parse(invalid), Err(KeyError::InvalidKeyId), "{invalid:?}");
        }
    }

    /// The secret's text, a key pasted where an id belongs, and every error: none shows the key.
    #[test]
    fn key_bytes_never_appear_in_debug_or_errors() {
        let spotted = BASE64.encode(SPOTTED_KEY);
        let ring = ring_of("k1", &[("k1", SPOTTED_KEY), ("k2", [3; KEY_LEN])]);
        let shown = format!("{ring:?}");
        assert_eq!(shown, r#"KeyRing { current: "k1", ids: ["k1", "k2"] }"#);
        assert_no_key_bytes(&format!("{:?}", MasterKey::from_bytes(SPOTTED_KEY)), &SPOTTED_KEY);

        let secrets = [
            format!(r#"{{"current":"k1","keys":{{"{spotted}":"k1"}}}}"#),
            format!(r#"{{"current":"{spotted}","keys":{{"k1":"{spotted}"}}}}"#),
            format!(r#"{{"current":"k1","keys":["{spotted}"]}}"#),
            format!(r#"{{"current":"k1","keys":{{"k1":["{spotted}"]}}}}"#),
            format!(r#"{{"current":"k1","keys":{{"k1":"{spotted}x"}}}}"#),
            format!(r#"{{"current":"k1","keys":{{"k1":"{}"}}}}"#, BASE64.encode(&SPOTTED_KEY[..31])),
            format!(r#"{{"current":"k1","keys":{{"k1":"{spotted}"}},"k2":"{spotted}"}}"#),
            format!(r#"{{"current":["{spotted}"],"keys":{{"k1":"{spotted}"}}}}"#),
            format!(r#"{{"current":"k1","keys":{{"k1":"{spotted}","k1":"{spotted}"}}}}"#),
            format!(r#"{{"current":"k1","keys":{{"k1":{}}}}}"#, SPOTTED_KEY[0]),
        ];
        for secret in secrets {
            let error = KeyRing::from_secret_json(&secret).unwrap_err();
            assert_no_key_bytes(&format!("{error:?} {error}"), &SPOTTED_KEY);
            assert!(!format!("{error:?} {error}").contains(&spotted[..8]), "{error:?}");
        }
    }
}
