//! Canonical hashing of arbitrary JSON: never panics, and a payload hashes the same whether it is
//! canonicalized from the client's JSON or from the BSON document it is stored as.
#![no_main]

use domain::hashing::{self, JCS_ALG};
use domain::mongodb::bson;
use domain::StoredPass;
use libfuzzer_sys::fuzz_target;
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
    let from_json = hashing::jcs_hash(&value);
    let Value::Object(map) = &value else { return };
    let Ok(document) = bson::to_document(map) else { return };
    let _ = hashing::legacy_hash(&document);
    let from_bson = hashing::jcs_hash_of_document(&document);
    if safe_numbers(&value) {
        if let (Ok(a), Ok(b)) = (&from_json, &from_bson) {
            assert_eq!(a, b, "JSON and stored BSON canonicalize differently: {value}");
        }
    }
    let pass =
        StoredPass { payload: Some(document), payload_hash: from_json.ok(), payload_hash_alg: Some(JCS_ALG.into()), ..Default::default() };
    let _ = hashing::verify(&pass);
});
