//! What every read response must satisfy, whatever is stored: it is I-JSON (no member named twice, at any
//! depth), and `verified` is said only of a payload whose printed text hashes to the printed hash. Shared
//! by the tests and the fuzz targets (`#[path]`), so both hold responses to the same rules.

use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// Parses `text` as I-JSON requires, refusing repeated member names (serde_json, `JSON.parse` and
/// Python keep the last one silently).
pub fn strict_json(text: &[u8]) -> Result<serde_json::Value, String> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Value};

    struct Strict;
    impl<'de> DeserializeSeed<'de> for Strict {
        type Value = Value;
        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
            deserializer.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Strict {
        type Value = Value;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(v.into())
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(v.into())
        }
        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            Ok(v.into())
        }
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(v.into())
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Value, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = items.next_element_seed(Strict)? {
                out.push(item);
            }
            Ok(Value::Array(out))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<Value, A::Error> {
            let mut out = Map::new();
            while let Some(name) = members.next_key::<String>()? {
                let value = members.next_value_seed(Strict)?;
                if out.insert(name.clone(), value).is_some() {
                    return Err(serde::de::Error::custom(format!("member {name:?} appears twice")));
                }
            }
            Ok(Value::Object(out))
        }
    }
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let value = Strict.deserialize(&mut deserializer).map_err(|e| e.to_string())?;
    deserializer.end().map_err(|e| e.to_string())?;
    Ok(value)
}

/// A served pass, with its payload's exact text.
#[derive(Deserialize)]
struct ServedPass {
    payload: Box<RawValue>,
    payload_hash: Option<serde_json::Value>,
    integrity: String,
}

#[derive(Deserialize)]
struct Served {
    #[serde(default)]
    passes: Vec<ServedPass>,
    #[serde(default)]
    passes4: Vec<ServedPass>,
}

/// Checks that every pass a read body calls `verified` has `payload_hash == sha256(payload text)`.
pub fn verified_payloads_match_their_hashes(body: &[u8]) -> Result<(), String> {
    let served: Served = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    for pass in served.passes.iter().chain(&served.passes4) {
        if pass.integrity == "verified" {
            let text = pass.payload.get();
            let digest: String = Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
            if pass.payload_hash != Some(serde_json::Value::String(digest)) {
                return Err(format!("verified, yet {text} is not what {:?} covers", pass.payload_hash));
            }
        }
    }
    Ok(())
}
