//! Payload hashes, in the two forms found in the collection.
//!
//! - `sha256-jcs` (what this service writes): SHA-256 over the RFC 8785 canonical JSON of the payload.
//! - legacy (Node service, no `payload_hash_alg`): SHA-256 over `JSON.stringify(payload)` — keys in stored
//!   order, JavaScript number formatting, no whitespace.
//!
//! Both are lowercase hex.

use mongodb::bson::{Bson, Document};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::schema::StoredPass;

/// The `payload_hash_alg` value this service stores next to every hash it computes.
pub const JCS_ALG: &str = "sha256-jcs";

/// What a read can say about a stored pass's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Integrity {
    /// The hash matches the payload in the form the pass declares.
    Verified,
    /// The hash does not match: the payload or the hash was changed after it was written.
    Mismatch,
    /// There is no hash (or no payload) to check.
    Unverified,
}

/// Lowercase hex SHA-256 of the RFC 8785 canonical form of `payload` (any JSON-shaped value: a
/// `serde_json` value or map, or a BSON document holding only JSON types).
pub fn jcs_hash<T: Serialize>(payload: &T) -> Result<String, HashError> {
    jcs_canonical_hash(payload).map(|(hash, _)| hash)
}

/// The JCS hash and the length of the canonical form, from one canonicalization.
pub fn jcs_canonical_hash<T: Serialize>(payload: &T) -> Result<(String, usize), HashError> {
    let canonical = serde_json_canonicalizer::to_vec(payload).map_err(|e| HashError(e.to_string()))?;
    Ok((sha256_hex(&canonical), canonical.len()))
}

/// Lowercase hex SHA-256 of `JSON.stringify(payload)` as Node would print the stored document.
pub fn legacy_hash(payload: &Document) -> String {
    let mut out = String::with_capacity(256);
    js_stringify_document(payload, &mut out);
    sha256_hex(out.as_bytes())
}

/// The JCS hash of a stored (BSON) payload. Payloads this service stores hold only JSON types, which
/// serialize to the canonicalizer as they would from JSON (no copy into a JSON value needed).
pub fn jcs_hash_of_document(payload: &Document) -> Result<String, HashError> {
    jcs_hash(payload)
}

/// Checks a stored pass's hash against its payload, in the form the pass declares.
pub fn verify(pass: &StoredPass) -> Integrity {
    let (Some(hash), Some(payload)) = (pass.payload_hash.as_deref(), pass.payload.as_ref()) else {
        return Integrity::Unverified;
    };
    let computed = match pass.payload_hash_alg.as_deref() {
        None => Some(legacy_hash(payload)),
        Some(JCS_ALG) => jcs_hash_of_document(payload).ok(),
        // An algorithm we do not know cannot vouch for the payload.
        Some(_) => None,
    };
    match computed {
        Some(computed) if computed.eq_ignore_ascii_case(hash) => Integrity::Verified,
        _ => Integrity::Mismatch,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payload cannot be canonicalized: {0}")]
pub struct HashError(String);

fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        use std::fmt::Write;
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

// --- JSON.stringify, as Node prints a document read through the official driver (promoteLongs on) ---

fn js_stringify_document(doc: &Document, out: &mut String) {
    out.push('{');
    let mut first = true;
    for (key, value) in doc {
        // JSON.stringify drops `undefined` members.
        if matches!(value, Bson::Undefined) {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        push_js_string(key, out);
        out.push(':');
        js_stringify(value, out);
    }
    out.push('}');
}

fn js_stringify(value: &Bson, out: &mut String) {
    match value {
        Bson::Document(doc) => js_stringify_document(doc, out),
        Bson::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                // In arrays, `undefined` prints as null.
                if matches!(item, Bson::Undefined) {
                    out.push_str("null");
                } else {
                    js_stringify(item, out);
                }
            }
            out.push(']');
        }
        Bson::String(s) | Bson::Symbol(s) => push_js_string(s, out),
        Bson::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Bson::Null | Bson::Undefined => out.push_str("null"),
        Bson::Int32(v) => out.push_str(&v.to_string()),
        // promoteLongs turns an int64 into a JavaScript number, rounding past 2^53.
        Bson::Int64(v) if v.unsigned_abs() <= (1u64 << 53) => out.push_str(&v.to_string()),
        Bson::Int64(v) => push_js_number(*v as f64, out),
        Bson::Double(v) => push_js_number(*v, out),
        // Date.prototype.toJSON and ObjectId.prototype.toJSON both print a string.
        Bson::DateTime(at) => match at.try_to_rfc3339_string() {
            Ok(_) => push_js_string(&crate::clock::format_rfc3339_millis(*at), out),
            Err(_) => out.push_str("null"),
        },
        Bson::ObjectId(oid) => push_js_string(&oid.to_hex(), out),
        // Other BSON types are not produced by JSON payloads; print their extended JSON, as js-bson does.
        other => out.push_str(&other.clone().into_relaxed_extjson().to_string()),
    }
}

/// JavaScript's Number.prototype.toString for finite values; JSON.stringify prints non-finite ones as null.
fn push_js_number(v: f64, out: &mut String) {
    if !v.is_finite() {
        out.push_str("null");
    } else if v == 0.0 {
        out.push('0'); // both +0 and -0 print as "0"
    } else {
        out.push_str(ryu_js::Buffer::new().format_finite(v));
    }
}

/// JSON.stringify's string quoting matches serde_json's for every valid Unicode string: `"` and `\`
/// escaped, control characters as \b \f \n \r \t or \u00XX, everything else verbatim.
fn push_js_string(s: &str, out: &mut String) {
    // Serializing a &str into a String cannot fail.
    if let Ok(quoted) = serde_json::to_string(s) {
        out.push_str(&quoted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

    fn sha(s: &str) -> String {
        sha256_hex(s.as_bytes())
    }

    #[test]
    fn legacy_form_is_json_stringify_in_stored_order() {
        let payload = doc! {
            "pass_uuid": "uuid-1",
            "fare": { "amount": 2.75, "currency": "USD" },
            "rides": 1_i32,
            "valid": true,
            "activation": { "start": 1_732_400_000_001_i64, "end": Bson::Null },
            "tags": ["a", "b"],
        };
        let expected = r#"{"pass_uuid":"uuid-1","fare":{"amount":2.75,"currency":"USD"},"rides":1,"valid":true,"activation":{"start":1732400000001,"end":null},"tags":["a","b"]}"#;
        assert_eq!(legacy_hash(&payload), sha(expected));
        // Verified against the hash the Node service stored for this payload (shared fixture, uuid-1).
        assert_eq!(legacy_hash(&payload), "11df910c97b410a8df66bddb94edbe5c02952d0678524229b6cc682a11002e45");
    }

    #[test]
    fn legacy_numbers_print_as_javascript_does() {
        let cases: &[(Bson, &str)] = &[
            (Bson::Double(1.0), "1"),
            (Bson::Double(-0.0), "0"),
            (Bson::Double(0.1 + 0.2), "0.30000000000000004"),
            (Bson::Double(1e21), "1e+21"),
            (Bson::Double(1e-7), "1e-7"),
            (Bson::Double(123456789012345680000.0), "123456789012345680000"),
            (Bson::Double(f64::NAN), "null"),
            (Bson::Int64(9_007_199_254_740_993), "9007199254740992"),
            (Bson::Int32(-5), "-5"),
            (Bson::String("a\"b\\c\n\u{1}é\u{2028}".into()), "\"a\\\"b\\\\c\\n\\u0001é\u{2028}\""),
        ];
        for (value, expected) in cases {
            let mut out = String::new();
            js_stringify(value, &mut out);
            assert_eq!(&out, expected, "{value:?}");
        }
    }

    #[test]
    fn undefined_is_dropped_from_objects_and_null_in_arrays() {
        let payload = doc! { "a": Bson::Undefined, "b": [Bson::Undefined, 1_i32] };
        let mut out = String::new();
        js_stringify_document(&payload, &mut out);
        assert_eq!(out, r#"{"b":[null,1]}"#);
    }

    /// RFC 8785 section 3.2.2 / appendix examples: key sorting by UTF-16 code units and ES6 number form.
    #[test]
    fn jcs_matches_rfc8785_examples() {
        let input: serde_json::Value = serde_json::from_str(
            r#"{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
                "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
                "literals": [null, true, false]}"#,
        )
        .unwrap();
        let expected =
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#;
        assert_eq!(serde_json_canonicalizer::to_string(&input).unwrap(), expected);
        assert_eq!(jcs_hash(&input).unwrap(), sha(expected));

        // RFC 8785 §3.2.3: sorting by UTF-16 code units, not UTF-8 bytes.
        let sorting: serde_json::Value = serde_json::from_str(
            r#"{"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
                "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "Latin Small Letter O With Diaeresis"}"#,
        )
        .unwrap();
        let canonical = serde_json_canonicalizer::to_string(&sorting).unwrap();
        let order: Vec<&str> = ["\\r", "1", "\u{80}", "\u{f6}", "\u{20ac}", "\u{1f600}", "\u{fb33}"].to_vec();
        let mut last = 0;
        for key in order {
            let at = canonical.find(&format!("\"{key}\"")).unwrap_or_else(|| panic!("{key} missing"));
            assert!(at >= last, "{key} out of order in {canonical}");
            last = at;
        }
    }

    #[test]
    fn jcs_hash_is_stable_across_bson_round_trip() {
        let json = serde_json::json!({
            "z": 1, "a": [1.5, 2.0, "x", [true, false]], "n": null, "big": 1e300, "tiny": 5e-324, "e21": 1e21,
            "neg": -0.0, "max_safe": 9_007_199_254_740_991_i64, "min": -9_007_199_254_740_991_i64,
            "\u{20ac}": "euro", "\r": "cr", "\u{1f600}": { "nested": { "deeper": [1, { "k": "v" }] } }, "esc": "a\"b\\c\n\u{1}",
        });
        let stored = mongodb::bson::to_document(&json).unwrap();
        assert_eq!(jcs_hash(&json).unwrap(), jcs_hash_of_document(&stored).unwrap());
    }

    #[test]
    fn verify_tells_each_form_apart() {
        let payload = doc! { "b": 1_i32, "a": "x" };
        let legacy = StoredPass { payload: Some(payload.clone()), payload_hash: Some(legacy_hash(&payload)), ..Default::default() };
        assert_eq!(verify(&legacy), Integrity::Verified);

        let jcs = StoredPass {
            payload: Some(payload.clone()),
            payload_hash: Some(jcs_hash_of_document(&payload).unwrap()),
            payload_hash_alg: Some(JCS_ALG.into()),
            ..Default::default()
        };
        assert_eq!(verify(&jcs), Integrity::Verified);

        // A JCS hash read as legacy (alg removed) is a different digest: reported, never trusted.
        let relabelled = StoredPass { payload_hash_alg: None, ..jcs.clone() };
        assert_eq!(verify(&relabelled), Integrity::Mismatch);

        let mut tampered = legacy.clone();
        tampered.payload.as_mut().unwrap().insert("a", "y");
        assert_eq!(verify(&tampered), Integrity::Mismatch);

        let unknown_alg = StoredPass { payload_hash_alg: Some("md5".into()), ..jcs };
        assert_eq!(verify(&unknown_alg), Integrity::Mismatch);

        assert_eq!(verify(&StoredPass { payload: Some(payload), ..Default::default() }), Integrity::Unverified);
    }
}
