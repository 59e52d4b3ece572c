//! Payload hashes, in the two forms found in the collection.
//!
//! - `sha256-jcs` (what this service writes): SHA-256 over the RFC 8785 canonical JSON of the payload.
//! - legacy (Node service, no `payload_hash_alg`): SHA-256 over `JSON.stringify(payload)` — keys in stored
//!   order, JavaScript number formatting, no whitespace.
//!
//! Both are lowercase hex. The text of either form comes from [`crate::json`], straight from raw BSON.

use mongodb::bson::RawDocument;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::json::{self, MemberOrder, NotJson};

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

impl Integrity {
    pub fn as_str(self) -> &'static str {
        match self {
            Integrity::Verified => "verified",
            Integrity::Mismatch => "mismatch",
            Integrity::Unverified => "unverified",
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

    fn order(self) -> MemberOrder {
        match self {
            HashForm::Jcs => MemberOrder::Canonical,
            HashForm::Legacy => MemberOrder::Stored,
        }
    }
}

/// Appends the payload's text in `form` to `out` and returns its SHA-256. On error `out` is unchanged.
pub fn write_and_digest(payload: &RawDocument, form: HashForm, out: &mut Vec<u8>) -> Result<[u8; 32], NotJson> {
    let start = out.len();
    match json::write_document(payload, form.order(), out) {
        Ok(()) => Ok(Sha256::digest(&out[start..]).into()),
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// Lowercase hex SHA-256 of the payload in `form`, and the length of the text hashed.
pub fn hash(payload: &RawDocument, form: HashForm) -> Result<(String, usize), NotJson> {
    let mut text = Vec::with_capacity(payload.as_bytes().len());
    let digest = write_and_digest(payload, form, &mut text)?;
    Ok((hex(&digest), text.len()))
}

/// Checks a payload against its stored hash in the declared form, appending the payload's text to `out`:
/// the hashed text when the form could be written, else the text as stored (`JSON.stringify`).
pub fn verify_into(payload: &RawDocument, stored_hash: Option<&str>, alg: Option<&str>, out: &mut Vec<u8>) -> Result<Integrity, NotJson> {
    let form = HashForm::declared(alg);
    if let (Some(hash), Some(form)) = (stored_hash, form) {
        if let Ok(digest) = write_and_digest(payload, form, out) {
            return Ok(if hex_eq(hash, &digest) { Integrity::Verified } else { Integrity::Mismatch });
        }
    }
    json::write_document(payload, MemberOrder::Stored, out)?;
    // A hash that cannot be recomputed (unknown algorithm, no canonical form) cannot vouch for the payload.
    Ok(if stored_hash.is_some() { Integrity::Mismatch } else { Integrity::Unverified })
}

/// Lowercase hex of a digest.
pub fn hex(digest: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(64);
    for byte in digest {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    text
}

/// Whether `text` is the hex form of `digest`, in either case.
fn hex_eq(text: &str, digest: &[u8; 32]) -> bool {
    let digit = |c: u8| (c as char).to_digit(16);
    text.len() == 64
        && text
            .as_bytes()
            .chunks(2)
            .zip(digest)
            .all(|(pair, byte)| matches!((digit(pair[0]), digit(pair[1])), (Some(hi), Some(lo)) if hi * 16 + lo == u32::from(*byte)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{doc, Document, RawDocumentBuf};

    fn raw(doc: &Document) -> RawDocumentBuf {
        RawDocumentBuf::from_document(doc).unwrap()
    }

    fn sha(bytes: &[u8]) -> String {
        hex(&Sha256::digest(bytes).into())
    }

    #[test]
    fn legacy_form_matches_the_hash_the_node_service_stored() {
        let payload = doc! {
            "pass_uuid": "uuid-1", "fare": { "amount": 2.75, "currency": "USD" }, "rides": 1_i32, "valid": true,
            "activation": { "start": 1_732_400_000_001_i64, "end": mongodb::bson::Bson::Null }, "tags": ["a", "b"],
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
        let (hash, len) = hash(&raw(&mongodb::bson::to_document(&json).unwrap()), HashForm::Jcs).unwrap();
        assert_eq!((hash, len), (sha(&reference), reference.len()));
    }

    #[test]
    fn verify_tells_each_form_apart_and_writes_the_hashed_text() {
        let payload = raw(&doc! { "b": 1_i32, "a": "x" });
        let (legacy, _) = hash(&payload, HashForm::Legacy).unwrap();
        let (jcs, _) = hash(&payload, HashForm::Jcs).unwrap();
        let check = |hash: Option<&str>, alg: Option<&str>| {
            let mut out = Vec::new();
            let verdict = verify_into(&payload, hash, alg, &mut out).unwrap();
            (verdict, String::from_utf8(out).unwrap())
        };
        assert_eq!(check(Some(&legacy), None), (Integrity::Verified, r#"{"b":1,"a":"x"}"#.into()));
        assert_eq!(check(Some(&jcs), Some(JCS_ALG)), (Integrity::Verified, r#"{"a":"x","b":1}"#.into()));
        assert_eq!(check(Some(&jcs.to_uppercase()), Some(JCS_ALG)).0, Integrity::Verified);
        // A JCS hash read as legacy (alg removed) is a different digest: reported, never trusted.
        assert_eq!(check(Some(&jcs), None).0, Integrity::Mismatch);
        assert_eq!(check(Some(&legacy), Some("md5")), (Integrity::Mismatch, r#"{"b":1,"a":"x"}"#.into()));
        assert_eq!(check(None, None), (Integrity::Unverified, r#"{"b":1,"a":"x"}"#.into()));

        let tampered = raw(&doc! { "b": 1_i32, "a": "y" });
        let mut out = Vec::new();
        assert_eq!(verify_into(&tampered, Some(&legacy), None, &mut out), Ok(Integrity::Mismatch));

        // A JCS pass whose payload has no canonical form is a mismatch, printed as stored.
        let dated = raw(&doc! { "at": mongodb::bson::DateTime::from_millis(0) });
        let mut out = Vec::new();
        assert_eq!(verify_into(&dated, Some(&jcs), Some(JCS_ALG), &mut out), Ok(Integrity::Mismatch));
        assert_eq!(out, br#"{"at":"1970-01-01T00:00:00.000Z"}"#);
    }
}
