//! Canonical hashing of arbitrary JSON: never panics, the RFC 8785 text this service prints from the
//! stored BSON is byte for byte what the reference canonicalizer prints from the client's JSON, and a
//! write's one-pass conversion (`convert_payload`) stores that BSON with the hash reads recompute.
#![no_main]

use bson::RawDocumentBuf;
use libfuzzer_sys::fuzz_target;
use payload::hash::{self, HashForm};
use payload::{convert_payload, Integrity, JCS_ALG};
use serde_json::Value;

/// Integers beyond ±2^53 are refused by validation (JavaScript, and JCS, cannot represent them exactly).
fn safe_numbers(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.is_f64() || n.as_i64().is_some_and(|v| v.unsigned_abs() <= (1 << 53)),
        Value::Array(items) => items.iter().all(safe_numbers),
        Value::Object(map) => map.values().all(safe_numbers),
        _ => true,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else { return };
    let Value::Object(map) = &value else { return };
    let Ok(document) = bson::to_document(map) else { return };
    let Ok(raw) = RawDocumentBuf::from_document(&document) else { return };
    // A write converts the client's text in one pass. What it accepts (no repeated names, integers within
    // ±2^53) it stores as the bson crate stores the parsed value, with the hash reads recompute from it.
    let converted = std::str::from_utf8(data).ok().map(|text| convert_payload(text, 128));
    if let Some(Ok(converted)) = converted {
        assert_eq!(converted.bson.as_bytes(), bson::to_vec(map).expect("JSON-typed").as_slice(), "{value}");
        let (jcs_hash, len) = hash::hash(&converted.bson, HashForm::Jcs).expect("JSON-typed BSON has a canonical form");
        assert_eq!((converted.jcs_hash, converted.canonical_len), (jcs_hash, len), "{value}");
    }
    let _ = hash::hash(&raw, HashForm::Legacy);
    let ours = hash::hash(&raw, HashForm::Jcs);
    if safe_numbers(&value) {
        let reference = serde_json_canonicalizer::to_vec(&value).expect("the reference canonicalizes JSON");
        let mut text = Vec::new();
        hash::write_and_digest(&raw, HashForm::Jcs, &mut text).expect("JSON-typed BSON has a canonical form");
        assert_eq!(text, reference, "stored BSON and client JSON canonicalize differently: {value}");
    }
    if let Ok((jcs_hash, _)) = ours {
        let mut out = Vec::new();
        assert_eq!(hash::verify_into(&raw, Some(&jcs_hash), Some(JCS_ALG), &mut out), (Integrity::Verified, Ok(())));
        serde_json::from_slice::<Value>(&out).expect("the payload text is JSON");
    }
});
