//! Payload hashes, in the two forms found in the collection.
//!
//! - `sha256-jcs` (what this service writes): SHA-256 over the RFC 8785 canonical JSON of the payload.
//! - legacy (Node service, no `payload_hash_alg`): SHA-256 over `JSON.stringify(payload)` — keys in stored
//!   order, JavaScript number formatting, no whitespace.
//!
//! Both are lowercase hex. The text of either form comes from [`crate::text`], straight from raw BSON.
//!
//! `verified` means exactly one thing: the payload text served is valid I-JSON (no repeated names, only
//! values JSON holds exactly) and its SHA-256 is the stored hash. Anything else that carries a hash is a
//! `mismatch` (the text could be computed and differs) or `unverifiable` (no exact text exists to hash).

use bson::RawDocument;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::text::{self, TextError, TextForm};

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
    /// A hash is stored, but the payload has no exact text in the declared form to compare it with
    /// (repeated member names, integers beyond ±2^53, NaN, BSON-only types, nesting beyond the bound,
    /// corrupt BSON, or an unknown `payload_hash_alg`). Written by neither service: treat it as tampered.
    Unverifiable,
}

impl Integrity {
    pub const ALL: [Integrity; 4] = [Integrity::Verified, Integrity::Mismatch, Integrity::Unverified, Integrity::Unverifiable];

    pub fn as_str(self) -> &'static str {
        match self {
            Integrity::Verified => "verified",
            Integrity::Mismatch => "mismatch",
            Integrity::Unverified => "unverified",
            Integrity::Unverifiable => "unverifiable",
        }
    }
}

/// The text a payload hash is computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashForm {
    /// RFC 8785 canonical JSON (`payload_hash_alg: "sha256-jcs"`).
    Jcs,
    /// `JSON.stringify(payload)`, as the Node service hashed (no `payload_hash_alg`).
    Legacy,
}

impl HashForm {
    /// The form a stored pass declares; `None` for an algorithm this service does not know.
    pub fn declared(alg: Option<&str>) -> Option<HashForm> {
        match alg {
            None => Some(HashForm::Legacy),
            Some(JCS_ALG) => Some(HashForm::Jcs),
            Some(_) => None,
        }
    }

    fn text_form(self) -> TextForm {
        match self {
            HashForm::Jcs => TextForm::Canonical,
            HashForm::Legacy => TextForm::JsonStringify,
        }
    }
}

/// Appends the payload's text in `form` to `out` and returns its SHA-256. On error `out` is unchanged.
pub fn write_and_digest(payload: &RawDocument, form: HashForm, out: &mut Vec<u8>) -> Result<[u8; 32], TextError> {
    let start = out.len();
    text::write_document(payload, form.text_form(), out)?;
    Ok(Sha256::digest(&out[start..]).into())
}

/// Lowercase hex SHA-256 of the payload in `form`, and the length of the text hashed.
pub fn hash(payload: &RawDocument, form: HashForm) -> Result<(String, usize), TextError> {
    let mut text = Vec::with_capacity(payload.as_bytes().len());
    let digest = write_and_digest(payload, form, &mut text)?;
    Ok((hex::encode(digest), text.len()))
}

/// Checks a payload against its stored hash in the declared form, appending the payload's text to `out`:
/// the hashed text when the form could be written, else its [`TextForm::Display`] text. The error, if any,
/// is why not even that could be written (`out` is then unchanged); the verdict stands either way.
pub fn verify_into(
    payload: &RawDocument,
    stored_hash: Option<&str>,
    alg: Option<&str>,
    out: &mut Vec<u8>,
) -> (Integrity, Result<(), TextError>) {
    let Some(stored_hash) = stored_hash else {
        return (Integrity::Unverified, text::write_document(payload, TextForm::Display, out));
    };
    if let Some(form) = HashForm::declared(alg) {
        if let Ok(digest) = write_and_digest(payload, form, out) {
            return (if hex_eq(stored_hash, &digest) { Integrity::Verified } else { Integrity::Mismatch }, Ok(()));
        }
    }
    (Integrity::Unverifiable, text::write_document(payload, TextForm::Display, out))
}

/// Whether `text` is the hex form of `digest`, in either case.
fn hex_eq(text: &str, digest: &[u8; 32]) -> bool {
    let mut decoded = [0_u8; 32];
    hex::decode_to_slice(text, &mut decoded).is_ok() && decoded == *digest
}

/// Whether a stored hash is a SHA-256 in hex (either case): what reads print in lower case.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, Document, RawDocumentBuf};

    fn raw(doc: &Document) -> RawDocumentBuf {
        RawDocumentBuf::from_document(doc).unwrap()
    }

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[test]
    fn legacy_form_matches_the_hash_the_node_service_stored() {
        let payload = doc! {
            "pass_uuid": "uuid-1", "fare": { "amount": 2.75, "currency": "USD" }, "rides": 1_i32, "valid": true,
            "activation": { "start": 1_732_400_000_001_i64, "end": bson::Bson::Null }, "tags": ["a", "b"],
        };
        // The hash the Node service stored for this payload (shared fixture, uuid-1).
        let (hash, _) = hash(&raw(&payload), HashForm::Legacy).unwrap();
        assert_eq!(hash, "11df910c97b410a8df66bddb94edbe5c02952d0678524229b6cc682a11002e45");
    }

    #[test]
    fn jcs_hash_from_stored_bson_equals_the_reference_over_the_clients_json() {
        let json = serde_json::json!({
            "z": 1, "a": [1.5, 2.0, "x", [true, false]], "n": null, "big": 1e300, "tiny": 5e-324, "e21": 1e21,
            "neg": -0.0, "max_safe": 9_007_199_254_740_991_i64, "min": -9_007_199_254_740_991_i64,
            "\u{20ac}": "euro", "\r": "cr", "\u{1f600}": { "nested": { "deeper": [1, { "k": "v" }] } }, "esc": "a\"b\\c\n\u{1}",
        });
        let reference = serde_json_canonicalizer::to_vec(&json).unwrap();
        let (hash, len) = hash(&raw(&bson::to_document(&json).unwrap()), HashForm::Jcs).unwrap();
        assert_eq!((hash, len), (sha(&reference), reference.len()));
    }

    #[test]
    fn verify_tells_each_form_apart_and_writes_the_hashed_text() {
        let payload = raw(&doc! { "b": 1_i32, "a": "x" });
        let (legacy, _) = hash(&payload, HashForm::Legacy).unwrap();
        let (jcs, _) = hash(&payload, HashForm::Jcs).unwrap();
        let check = |hash: Option<&str>, alg: Option<&str>| {
            let mut out = Vec::new();
            let (verdict, printed) = verify_into(&payload, hash, alg, &mut out);
            printed.unwrap();
            (verdict, String::from_utf8(out).unwrap())
        };
        assert_eq!(check(Some(&legacy), None), (Integrity::Verified, r#"{"b":1,"a":"x"}"#.into()));
        assert_eq!(check(Some(&jcs), Some(JCS_ALG)), (Integrity::Verified, r#"{"a":"x","b":1}"#.into()));
        assert_eq!(check(Some(&jcs.to_uppercase()), Some(JCS_ALG)).0, Integrity::Verified);
        // A JCS hash read as legacy (alg removed) is a different digest: reported, never trusted.
        assert_eq!(check(Some(&jcs), None).0, Integrity::Mismatch);
        assert_eq!(check(Some(&legacy), Some("md5")), (Integrity::Unverifiable, r#"{"b":1,"a":"x"}"#.into()));
        assert_eq!(check(None, None), (Integrity::Unverified, r#"{"b":1,"a":"x"}"#.into()));

        let tampered = raw(&doc! { "b": 1_i32, "a": "y" });
        let mut out = Vec::new();
        assert_eq!(verify_into(&tampered, Some(&legacy), None, &mut out), (Integrity::Mismatch, Ok(())));

        // A pass whose payload has no exact text in its form is unverifiable in both forms, shown as stored.
        let dated = raw(&doc! { "at": bson::DateTime::from_millis(0) });
        for alg in [Some(JCS_ALG), None] {
            let mut out = Vec::new();
            assert_eq!(verify_into(&dated, Some(&jcs), alg, &mut out), (Integrity::Unverifiable, Ok(())));
            assert_eq!(out, br#"{"at":"1970-01-01T00:00:00.000Z"}"#);
        }
    }

    /// `{a:1, a:2}` hashed as the text `{"a":1,"a":2}` is never verified: no JSON parser reads that text
    /// as what was hashed. It is shown once, as a JavaScript object holds it.
    #[test]
    fn a_repeated_member_name_is_unverifiable_whatever_its_hash() {
        let mut payload = RawDocumentBuf::new();
        payload.append("a", 1_i32);
        payload.append("a", 2_i32);
        for (hash, alg) in [(sha(br#"{"a":1,"a":2}"#), None), (sha(br#"{"a":2}"#), None), (sha(br#"{"a":1,"a":2}"#), Some(JCS_ALG))] {
            let mut out = Vec::new();
            assert_eq!(verify_into(&payload, Some(&hash), alg, &mut out), (Integrity::Unverifiable, Ok(())));
            assert_eq!(out, br#"{"a":2}"#);
        }
    }
}
