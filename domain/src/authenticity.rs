//! Keyed authenticity of stored passes and documents: HMAC-SHA256 signatures under the [`KeyRing`].
//!
//! Anyone who can write the shared collection can recompute an unkeyed payload hash; only a key holder
//! can compute these signatures.
//!
//! # What is signed
//!
//! A **pass signature** covers every field the service owns in a pass — `pass_uuid`, `timestamp`,
//! `status`, `free_ticket_status` and the payload (the plaintext payload, also when it is stored
//! encrypted) — each as the RFC 8785 text of its stored value (the `payload` crate's canonical writer),
//! bound to the user id, the array (`passes` / `passes4`) and the key id. Numbers are signed as
//! JavaScript holds them, so a value stored as int32, int64 or double signs alike; a value with no exact
//! JSON text (a date, NaN, an integer beyond ±2^53) cannot be signed and never verifies. Vendor fields,
//! `payload_hash` and `payload_hash_alg` are not covered: the hash is recomputed from the payload on reads.
//!
//! A **document signature** covers the user id, the document `timestamp`, and for each array in the order
//! `passes`, `passes4`: whether it is stored, and the ordered list of its items' stored signatures
//! ([`PASS_SIG`], [`PASS_SIG_KID`]; an item that is not a document is listed as such). A pass moved to
//! another user or array fails its own signature; a pass dropped, duplicated, reordered, or added
//! unsigned, fails the document's.
//!
//! Neither covers a whole older document of the same user: restoring one that the service itself wrote
//! (replay, e.g. from a backup) verifies until the keys that signed it are retired. Detecting that needs
//! state outside the document (a per-user counter), which a shared collection cannot keep honest.
//!
//! # Encoding (version 1)
//!
//! `lp(x)` is `x` preceded by its length as a 4-byte big-endian integer. A field is `lp(name) 0x00` when
//! absent (or, for the signature fields in a document's list, null) and `lp(name) 0x01 lp(text)`
//! otherwise, `text` being the RFC 8785 text of the value (`null`, `""`, `"ACTIVE"`, `1700000000000`…):
//!
//! ```text
//! pass     = lp("bytemark-ticket-cache pass") 0x01 lp(kid) lp(user id digits) lp(array name)
//!            field(pass_uuid) field(timestamp) field(status) field(free_ticket_status) field(payload)
//! document = lp("bytemark-ticket-cache document") 0x01 lp(kid) lp(user id digits) field(timestamp)
//!            array(passes) array(passes4)
//! array    = lp(name) 0x00                      absent or null
//!          | lp(name) 0x02                      stored, but not an array
//!          | lp(name) 0x01 u32be(count) item*   an array
//! item     = 0x00                               not a document
//!          | 0x01 field(pass_sig) field(pass_sig_kid)
//! ```
//!
//! # Stored form
//!
//! A pass holds [`PASS_SIG`] (the HMAC, 64 lower-case hex digits) and [`PASS_SIG_KID`] (the key id); the
//! document holds [`DOC_SIG`] and [`DOC_SIG_KID`] at its top level.
//!
//! # Verdicts
//!
//! | stored | [`Verdict`] |
//! |---|---|
//! | neither signature field (both absent or null) | `Unauthenticated` (legacy and Node-written data) |
//! | a signature that verifies under a listed key | `Authenticated` |
//! | a key id of valid syntax that the ring does not list | `UnknownKey` (refresh the keys, then forged) |
//! | anything else: one field without the other, not a string, not 64 characters, upper-case or non-hex digits, a malformed key id, a covered value with no exact text, or a signature that does not verify (a copy from another pass or user, a changed field) | `Forged` with the [`Forgery`] |
//!
//! Upper-case hex is forged, not tolerated: the service writes lower case only, so a changed case is a
//! change. The verdict a client sees for a pass is [`pass_in_document`]: a pass is authenticated only when
//! its document's signature verifies too.

use hmac::{Hmac, KeyInit, Mac};
use payload::reader::{CorruptBson, Doc, Value};
use payload::text::{self, TextError, TextForm};

use crate::keys::{KeyId, KeyRing, KEY_LEN};
use crate::schema::{field, PassKind, UserId};

/// Pass field: the pass signature, lower-case hex.
pub const PASS_SIG: &str = "pass_sig";
/// Pass field: the key id of the pass signature.
pub const PASS_SIG_KID: &str = "pass_sig_kid";
/// Document field: the document signature, lower-case hex.
pub const DOC_SIG: &str = "doc_sig";
/// Document field: the key id of the document signature.
pub const DOC_SIG_KID: &str = "doc_sig_kid";

/// Version of the signed encoding (the byte after the label).
pub const VERSION: u8 = 1;
const PASS_LABEL: &[u8] = b"bytemark-ticket-cache pass";
const DOCUMENT_LABEL: &[u8] = b"bytemark-ticket-cache document";
/// Bytes of an HMAC-SHA256.
pub const SIG_LEN: usize = 32;

type HmacSha256 = Hmac<sha2_mac::Sha256>;

/// A value a signature covers.
#[derive(Debug, Clone, Copy)]
pub enum Covered<'a> {
    /// The field is not stored.
    Absent,
    /// A stored value; its RFC 8785 text is signed.
    Stored(Value<'a>),
    /// The RFC 8785 text of the value, already written (e.g. the payload text a read has just printed).
    Text(&'a [u8]),
}

impl<'a> From<Option<Value<'a>>> for Covered<'a> {
    fn from(value: Option<Value<'a>>) -> Covered<'a> {
        value.map_or(Covered::Absent, Covered::Stored)
    }
}

/// The fields of a pass its signature covers.
#[derive(Debug, Clone, Copy)]
pub struct PassContent<'a> {
    pub pass_uuid: Covered<'a>,
    pub timestamp: Covered<'a>,
    pub status: Covered<'a>,
    pub free_ticket_status: Covered<'a>,
    /// The plaintext payload: for a pass stored encrypted, the decrypted document.
    pub payload: Covered<'a>,
}

/// The signature fields as stored in a pass or a document; null reads as absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoredSignature<'a> {
    pub sig: Option<Value<'a>>,
    pub kid: Option<Value<'a>>,
}

impl<'a> StoredSignature<'a> {
    fn is_unsigned(&self) -> bool {
        absent(self.sig).is_none() && absent(self.kid).is_none()
    }
}

fn absent(value: Option<Value<'_>>) -> Option<Value<'_>> {
    value.filter(|v| !matches!(v, Value::Null))
}

/// A stored pass's covered fields and signature, each field's last occurrence as the read shows it.
/// The payload is the stored `payload` field: replace it with the decrypted document for a pass stored
/// encrypted.
pub fn read_pass(pass: Doc<'_>) -> Result<(PassContent<'_>, StoredSignature<'_>), CorruptBson> {
    let mut fields: [Option<Value<'_>>; 7] = [None; 7];
    const NAMES: [&str; 7] = [field::PASS_UUID, field::TIMESTAMP, "status", "free_ticket_status", "payload", PASS_SIG, PASS_SIG_KID];
    for element in pass.elements() {
        let (key, value) = element?;
        if let Some(slot) = NAMES.iter().position(|name| name.as_bytes() == key) {
            fields[slot] = Some(value);
        }
    }
    let [pass_uuid, timestamp, status, free_ticket_status, payload, sig, kid] = fields;
    let content = PassContent {
        pass_uuid: pass_uuid.into(),
        timestamp: timestamp.into(),
        status: status.into(),
        free_ticket_status: free_ticket_status.into(),
        payload: payload.into(),
    };
    Ok((content, StoredSignature { sig, kid }))
}

/// One pass array as the document signature lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListedArray {
    /// Not stored, or null.
    Absent,
    /// Stored as something other than an array.
    NotAnArray,
    /// Each item's stored signature fields, in order.
    Items(Vec<ListedItem>),
}

/// One array item as the document signature lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListedItem {
    NotADocument,
    /// The RFC 8785 texts of the item's [`PASS_SIG`] and [`PASS_SIG_KID`] (`None`: absent or null).
    Pass {
        sig: Option<Vec<u8>>,
        kid: Option<Vec<u8>>,
    },
}

impl ListedItem {
    /// The item a pass signed with `signature` is listed as.
    pub fn signed(signature: &PassSignature) -> ListedItem {
        let quoted = |text: &str| {
            let mut out = Vec::with_capacity(text.len() + 2);
            text::write_str(text, &mut out);
            out
        };
        ListedItem::Pass { sig: Some(quoted(&signature.hex)), kid: Some(quoted(signature.kid.as_str())) }
    }

    /// A stored pass without a signature (legacy).
    pub fn unsigned() -> ListedItem {
        ListedItem::Pass { sig: None, kid: None }
    }

    fn stored(item: Value<'_>) -> Result<ListedItem, SignError> {
        let Value::Document(pass) = item else {
            return Ok(ListedItem::NotADocument);
        };
        let (_, stored) = read_pass(pass).map_err(|e| SignError::NoExactText { field: "pass", source: e.into() })?;
        let text = |value: Option<Value<'_>>, name| {
            absent(value)
                .map(|value| {
                    let mut out = Vec::new();
                    text::write_value(value, TextForm::Canonical, &mut out).map(|()| out)
                })
                .transpose()
                .map_err(|source| SignError::NoExactText { field: name, source })
        };
        Ok(ListedItem::Pass { sig: text(stored.sig, PASS_SIG)?, kid: text(stored.kid, PASS_SIG_KID)? })
    }
}

/// The parts of a document its signature covers.
#[derive(Debug, Clone)]
pub struct DocumentContent<'a> {
    pub timestamp: Covered<'a>,
    pub passes: ListedArray,
    pub passes4: ListedArray,
}

impl DocumentContent<'_> {
    fn array(&self, kind: PassKind) -> &ListedArray {
        match kind {
            PassKind::Passes => &self.passes,
            PassKind::Passes4 => &self.passes4,
        }
    }
}

/// A stored document's covered parts and its signature (each top-level field's last occurrence). The
/// read must include `timestamp`, both arrays' items' signature fields, [`DOC_SIG`] and [`DOC_SIG_KID`].
pub fn read_document(document: Doc<'_>) -> Result<(DocumentContent<'_>, StoredSignature<'_>), SignError> {
    let mut fields: [Option<Value<'_>>; 5] = [None; 5];
    const NAMES: [&str; 5] = [field::TIMESTAMP, "passes", "passes4", DOC_SIG, DOC_SIG_KID];
    for element in document.elements() {
        let (key, value) = element.map_err(|e| SignError::NoExactText { field: "document", source: e.into() })?;
        if let Some(slot) = NAMES.iter().position(|name| name.as_bytes() == key) {
            fields[slot] = Some(value);
        }
    }
    let [timestamp, passes, passes4, sig, kid] = fields;
    let listed = |array: Option<Value<'_>>| -> Result<ListedArray, SignError> {
        match array {
            None | Some(Value::Null) => Ok(ListedArray::Absent),
            Some(Value::Array(items)) => items
                .elements()
                .map(|item| {
                    let (_, item) = item.map_err(|e| SignError::NoExactText { field: "passes", source: e.into() })?;
                    ListedItem::stored(item)
                })
                .collect::<Result<_, _>>()
                .map(ListedArray::Items),
            Some(_) => Ok(ListedArray::NotAnArray),
        }
    };
    let content = DocumentContent { timestamp: timestamp.into(), passes: listed(passes)?, passes4: listed(passes4)? };
    Ok((content, StoredSignature { sig, kid }))
}

/// A new signature: what a write stores in the signature fields.
#[derive(Clone, PartialEq, Eq)]
pub struct PassSignature {
    pub kid: KeyId,
    /// The HMAC in lower-case hex.
    pub hex: String,
}

impl std::fmt::Debug for PassSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kid, self.hex)
    }
}

/// Why something cannot be signed: a covered value has no exact JSON text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("{field} has no exact JSON text: {source}")]
    NoExactText {
        field: &'static str,
        #[source]
        source: TextError,
    },
}

/// How a stored signature fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgery {
    /// A key id without a signature.
    SignatureMissing,
    /// A signature without a key id.
    KeyIdMissing,
    /// The signature is stored as something other than a string.
    SignatureNotAString,
    /// The signature text is not 64 characters long (its length).
    WrongLength(usize),
    /// The signature has upper-case hex digits (the service writes lower case only).
    UpperCaseHex,
    /// The signature has characters that are not hex digits.
    NotHex,
    /// The key id is not a string of key id syntax.
    MalformedKeyId,
    /// A covered value has no exact JSON text: nothing the service signs.
    NoExactText,
    /// The signature is well-formed but does not verify: a field changed, or it was copied from elsewhere.
    Mismatch,
    /// The pass is signed but its document's signature is missing.
    DocumentUnsigned,
    /// The document's signature does not list the document's passes as stored.
    NotListed,
}

impl Forgery {
    /// A stable name for logs, metrics and the Node client.
    pub fn as_str(self) -> &'static str {
        match self {
            Forgery::SignatureMissing => "signature_missing",
            Forgery::KeyIdMissing => "key_id_missing",
            Forgery::SignatureNotAString => "signature_not_a_string",
            Forgery::WrongLength(_) => "wrong_length",
            Forgery::UpperCaseHex => "upper_case_hex",
            Forgery::NotHex => "not_hex",
            Forgery::MalformedKeyId => "malformed_key_id",
            Forgery::NoExactText => "no_exact_text",
            Forgery::Mismatch => "mismatch",
            Forgery::DocumentUnsigned => "document_unsigned",
            Forgery::NotListed => "not_listed",
        }
    }
}

/// A signature check's outcome, for a pass or a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Signed by a key holder, unchanged since.
    Authenticated,
    /// A signature is stored and fails.
    Forged(Forgery),
    /// A well-formed signature names a key id the ring does not list: refresh the keys and check again;
    /// still unknown, it is forged.
    UnknownKey(KeyId),
    /// No signature at all.
    Unauthenticated,
}

impl Verdict {
    /// The client vocabulary: `authenticated`, `forged` (an unknown key included) or `unauthenticated`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Authenticated => "authenticated",
            Verdict::Forged(_) | Verdict::UnknownKey(_) => "forged",
            Verdict::Unauthenticated => "unauthenticated",
        }
    }
}

/// The verdict on a pass as clients see it: its own signature's, within its document's.
///
/// A pass's own forgery stands. Otherwise a document whose signature fails makes every pass forged
/// (`NotListed`: which one the signature does not list cannot be told), an unknown document key is
/// reported as such, and a signed pass in an unsigned document is forged (`DocumentUnsigned`: only
/// stripping the document signature makes one).
pub fn pass_in_document(pass: Verdict, document: &Verdict) -> Verdict {
    match (pass, document) {
        (forged @ (Verdict::Forged(_) | Verdict::UnknownKey(_)), _) => forged,
        (_, Verdict::Forged(_)) => Verdict::Forged(Forgery::NotListed),
        (_, Verdict::UnknownKey(kid)) => Verdict::UnknownKey(kid.clone()),
        (Verdict::Authenticated, Verdict::Unauthenticated) => Verdict::Forged(Forgery::DocumentUnsigned),
        (pass, Verdict::Authenticated | Verdict::Unauthenticated) => pass,
    }
}

/// Signs a pass with the current key.
pub fn sign_pass(keys: &KeyRing, user: UserId, kind: PassKind, pass: &PassContent<'_>) -> Result<PassSignature, SignError> {
    let kid = keys.current_id();
    let message = pass_message(kid.as_str(), user, kind, pass)?;
    Ok(PassSignature { kid: kid.clone(), hex: hex::encode(mac(keys.current_mac_key(), &message)) })
}

/// Checks a pass's stored signature.
pub fn verify_pass(keys: &KeyRing, user: UserId, kind: PassKind, pass: &PassContent<'_>, stored: &StoredSignature<'_>) -> Verdict {
    verify(keys, stored, |kid| pass_message(kid, user, kind, pass))
}

/// Signs a document with the current key.
pub fn sign_document(keys: &KeyRing, user: UserId, document: &DocumentContent<'_>) -> Result<PassSignature, SignError> {
    let kid = keys.current_id();
    let message = document_message(kid.as_str(), user, document)?;
    Ok(PassSignature { kid: kid.clone(), hex: hex::encode(mac(keys.current_mac_key(), &message)) })
}

/// Checks a document's stored signature: whether it lists exactly the stored passes, in order.
pub fn verify_document(keys: &KeyRing, user: UserId, document: &DocumentContent<'_>, stored: &StoredSignature<'_>) -> Verdict {
    verify(keys, stored, |kid| document_message(kid, user, document))
}

/// Checks a stored document's signature from its bytes (see [`read_document`] for what the read must
/// include). A document whose covered parts cannot be read exactly (corrupt BSON, a pass signature
/// stored as a value with no JSON text) is forged when it carries a signature: the service writes neither.
pub fn verify_stored_document(keys: &KeyRing, user: UserId, document: Doc<'_>) -> Verdict {
    match read_document(document) {
        Ok((content, stored)) => verify_document(keys, user, &content, &stored),
        Err(_) => {
            let signed = document
                .elements()
                .flatten()
                .any(|(key, value)| (key == DOC_SIG.as_bytes() || key == DOC_SIG_KID.as_bytes()) && !matches!(value, Value::Null));
            if signed {
                Verdict::Forged(Forgery::NoExactText)
            } else {
                Verdict::Unauthenticated
            }
        }
    }
}

fn mac(key: &[u8; KEY_LEN], message: &[u8]) -> [u8; SIG_LEN] {
    let mut mac = keyed(key);
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn keyed(key: &[u8; KEY_LEN]) -> HmacSha256 {
    // HMAC pads a key shorter than the hash's 64-byte block with zeros (RFC 2104): the same key, taken
    // without `new_from_slice`'s error case.
    let mut block = zeroize::Zeroizing::new([0; 64]);
    block[..KEY_LEN].copy_from_slice(key);
    <HmacSha256 as KeyInit>::new(&(*block).into())
}

fn verify(keys: &KeyRing, stored: &StoredSignature<'_>, message: impl FnOnce(&str) -> Result<Vec<u8>, SignError>) -> Verdict {
    if stored.is_unsigned() {
        return Verdict::Unauthenticated;
    }
    let (sig, kid) = match (absent(stored.sig), absent(stored.kid)) {
        (Some(sig), Some(kid)) => (sig, kid),
        (None, _) => return Verdict::Forged(Forgery::SignatureMissing),
        (_, None) => return Verdict::Forged(Forgery::KeyIdMissing),
    };
    let Value::String(sig) = sig else {
        return Verdict::Forged(Forgery::SignatureNotAString);
    };
    let mut tag = [0; SIG_LEN];
    if let Err(forgery) = decode_lower_hex(sig, &mut tag) {
        return Verdict::Forged(forgery);
    }
    let kid = match kid {
        Value::String(bytes) => match std::str::from_utf8(bytes).ok().map(KeyId::parse) {
            Some(Ok(kid)) => kid,
            _ => return Verdict::Forged(Forgery::MalformedKeyId),
        },
        _ => return Verdict::Forged(Forgery::MalformedKeyId),
    };
    let Some(key) = keys.mac_key(kid.as_str()) else {
        return Verdict::UnknownKey(kid);
    };
    let Ok(message) = message(kid.as_str()) else {
        return Verdict::Forged(Forgery::NoExactText);
    };
    let mut mac = keyed(key);
    mac.update(&message);
    // Constant time.
    match mac.verify_slice(&tag) {
        Ok(()) => Verdict::Authenticated,
        Err(_) => Verdict::Forged(Forgery::Mismatch),
    }
}

/// 64 lower-case hex digits into `out`.
fn decode_lower_hex(text: &[u8], out: &mut [u8; SIG_LEN]) -> Result<(), Forgery> {
    if text.len() != 2 * SIG_LEN {
        return Err(Forgery::WrongLength(text.len()));
    }
    if !text.iter().all(|b| b.is_ascii_hexdigit()) {
        return Err(Forgery::NotHex);
    }
    if text.iter().any(|b| b.is_ascii_uppercase()) {
        return Err(Forgery::UpperCaseHex);
    }
    hex::decode_to_slice(text, out).map_err(|_| Forgery::NotHex)
}

/// The bytes a pass signature is computed over (see the module documentation).
pub fn pass_message(kid: &str, user: UserId, kind: PassKind, pass: &PassContent<'_>) -> Result<Vec<u8>, SignError> {
    let mut out = Message::new(PASS_LABEL, kid, user);
    out.bytes(kind.field().as_bytes());
    out.field(field::PASS_UUID, pass.pass_uuid)?;
    out.field(field::TIMESTAMP, pass.timestamp)?;
    out.field("status", pass.status)?;
    out.field("free_ticket_status", pass.free_ticket_status)?;
    out.field("payload", pass.payload)?;
    Ok(out.0)
}

/// The bytes a document signature is computed over (see the module documentation).
pub fn document_message(kid: &str, user: UserId, document: &DocumentContent<'_>) -> Result<Vec<u8>, SignError> {
    let mut out = Message::new(DOCUMENT_LABEL, kid, user);
    out.field(field::TIMESTAMP, document.timestamp)?;
    for kind in PassKind::ALL {
        out.bytes(kind.field().as_bytes());
        match document.array(kind) {
            ListedArray::Absent => out.0.push(0),
            ListedArray::NotAnArray => out.0.push(2),
            ListedArray::Items(items) => {
                out.0.push(1);
                out.length(items.len());
                for item in items {
                    match item {
                        ListedItem::NotADocument => out.0.push(0),
                        ListedItem::Pass { sig, kid } => {
                            out.0.push(1);
                            out.text_field(PASS_SIG, sig.as_deref());
                            out.text_field(PASS_SIG_KID, kid.as_deref());
                        }
                    }
                }
            }
        }
    }
    Ok(out.0)
}

/// A message being encoded.
struct Message(Vec<u8>);

impl Message {
    fn new(label: &[u8], kid: &str, user: UserId) -> Message {
        let mut out = Message(Vec::with_capacity(256));
        out.bytes(label);
        out.0.push(VERSION);
        out.bytes(kid.as_bytes());
        let mut digits = Vec::with_capacity(16);
        text::write_i64(user.get(), &mut digits);
        out.bytes(&digits);
        out
    }

    fn length(&mut self, len: usize) {
        // Stored documents are at most 16 MiB (48 MiB on some engines): lengths fit 32 bits.
        self.0.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.length(bytes.len());
        self.0.extend_from_slice(bytes);
    }

    fn text_field(&mut self, name: &str, text: Option<&[u8]>) {
        self.bytes(name.as_bytes());
        match text {
            None => self.0.push(0),
            Some(text) => {
                self.0.push(1);
                self.bytes(text);
            }
        }
    }

    fn field(&mut self, name: &'static str, value: Covered<'_>) -> Result<(), SignError> {
        self.bytes(name.as_bytes());
        match value {
            Covered::Absent => self.0.push(0),
            Covered::Text(text) => {
                self.0.push(1);
                self.bytes(text);
            }
            Covered::Stored(value) => {
                self.0.push(1);
                // The length goes before the text: reserve it, write the text, fill it in.
                let at = self.0.len();
                self.0.extend_from_slice(&[0; 4]);
                text::write_value(value, TextForm::Canonical, &mut self.0)
                    .map_err(|source| SignError::NoExactText { field: name, source })?;
                let len = self.0.len() - at - 4;
                self.0[at..at + 4].copy_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::keys::tests::ring_of;
    use mongodb::bson::{doc, Bson, Document, RawDocumentBuf};
    use rand::{Rng, SeedableRng};

    pub(crate) const USER: i64 = 6001;
    pub(crate) const TIMESTAMP: i64 = 1_700_000_000_000;

    pub(crate) fn user(id: i64) -> UserId {
        UserId::new(id).unwrap()
    }

    pub(crate) fn ring() -> KeyRing {
        ring_of("k1", &[("k1", [1; KEY_LEN])])
    }

    /// A pass as a write stores it (see `input::validate_passes`).
    pub(crate) fn stored_pass(uuid: &str, status: &str, payload_json: &str) -> Document {
        let payload = payload::convert_payload(payload_json, 16).unwrap();
        doc! {
            "pass_uuid": uuid, "timestamp": TIMESTAMP, "status": status, "free_ticket_status": 0_i64,
            "payload": payload.bson.to_document().unwrap(), "payload_hash": payload.jcs_hash, "payload_hash_alg": "sha256-jcs",
        }
    }

    fn raw(document: &Document) -> RawDocumentBuf {
        RawDocumentBuf::from_document(document).unwrap()
    }

    /// The pass with its signature fields set.
    pub(crate) fn signed(keys: &KeyRing, user_id: i64, kind: PassKind, mut pass: Document) -> Document {
        let bytes = raw(&pass);
        let (content, _) = read_pass(Doc::from(&*bytes)).unwrap();
        let signature = sign_pass(keys, user(user_id), kind, &content).unwrap();
        pass.insert(PASS_SIG, signature.hex);
        pass.insert(PASS_SIG_KID, signature.kid.as_str());
        pass
    }

    pub(crate) fn pass_verdict(keys: &KeyRing, user_id: i64, kind: PassKind, pass: &Document) -> Verdict {
        let bytes = raw(pass);
        let (content, stored) = read_pass(Doc::from(&*bytes)).unwrap();
        verify_pass(keys, user(user_id), kind, &content, &stored)
    }

    /// A document holding the passes, signed.
    pub(crate) fn signed_document(keys: &KeyRing, user_id: i64, passes: &[Document], passes4: &[Document]) -> Document {
        let mut document = doc! {
            "user_id": user_id, "timestamp": TIMESTAMP,
            "passes": passes.iter().cloned().map(Bson::Document).collect::<Vec<_>>(),
            "passes4": passes4.iter().cloned().map(Bson::Document).collect::<Vec<_>>(),
        };
        let bytes = raw(&document);
        let (content, _) = read_document(Doc::from(&*bytes)).unwrap();
        let signature = sign_document(keys, user(user_id), &content).unwrap();
        document.insert(DOC_SIG, signature.hex);
        document.insert(DOC_SIG_KID, signature.kid.as_str());
        document
    }

    pub(crate) fn document_verdict(keys: &KeyRing, user_id: i64, document: &Document) -> Verdict {
        let bytes = raw(document);
        let (content, stored) = read_document(Doc::from(&*bytes)).unwrap();
        verify_document(keys, user(user_id), &content, &stored)
    }

    fn with(pass: &Document, name: &str, value: impl Into<Bson>) -> Document {
        let mut pass = pass.clone();
        pass.insert(name, value.into());
        pass
    }

    fn without(pass: &Document, name: &str) -> Document {
        let mut pass = pass.clone();
        pass.remove(name);
        pass
    }

    fn array(document: &mut Document, kind: PassKind) -> &mut Vec<Bson> {
        document.get_array_mut(kind.field()).unwrap()
    }

    const FARE: &str = r#"{"fare":{"amount":2.75,"currency":"USD"},"rides":1}"#;

    fn a_signed_pass() -> (KeyRing, Document) {
        let keys = ring();
        let pass = signed(&keys, USER, PassKind::Passes, stored_pass("p-1", "EXPIRED", FARE));
        (keys, pass)
    }

    #[test]
    fn a_signed_pass_is_authenticated() {
        let (keys, pass) = a_signed_pass();
        assert_eq!(pass_verdict(&keys, USER, PassKind::Passes, &pass), Verdict::Authenticated);
        let hex = pass.get_str(PASS_SIG).unwrap();
        assert!(hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{hex}");
        assert_eq!(pass.get_str(PASS_SIG_KID).unwrap(), "k1");
    }

    #[test]
    fn a_pass_without_signature_is_unauthenticated() {
        let keys = ring();
        let legacy = stored_pass("p-1", "ACTIVE", FARE);
        assert_eq!(pass_verdict(&keys, USER, PassKind::Passes, &legacy), Verdict::Unauthenticated);
        let nulls = with(&with(&legacy, PASS_SIG, Bson::Null), PASS_SIG_KID, Bson::Null);
        assert_eq!(pass_verdict(&keys, USER, PassKind::Passes, &nulls), Verdict::Unauthenticated);
    }

    /// The attack the authenticity exists for: a new payload with its unkeyed hash recomputed.
    #[test]
    fn a_payload_replaced_with_its_hash_recomputed_is_forged() {
        let (keys, pass) = a_signed_pass();
        let forged_payload = payload::convert_payload(r#"{"x":999}"#, 16).unwrap();
        let mut forged = with(&pass, "payload", forged_payload.bson.to_document().unwrap());
        forged.insert("payload_hash", forged_payload.jcs_hash);
        forged.insert("status", "ACTIVE");
        assert_eq!(pass_verdict(&keys, USER, PassKind::Passes, &forged), Verdict::Forged(Forgery::Mismatch));
    }

    #[test]
    fn a_status_flip_is_forged() {
        let (keys, pass) = a_signed_pass();
        let flipped = with(&pass, "status", "ACTIVE");
        assert_eq!(pass_verdict(&keys, USER, PassKind::Passes, &flipped), Verdict::Forged(Forgery::Mismatch));
    }

    #[test]
    fn every_covered_field_changed_is_forged() {
        let (keys, pass) = a_signed_pass();
        let changed = [
            with(&pass, "pass_uuid", "p-2"),
            with(&pass, "timestamp", TIMESTAMP + 1),
            with(&pass, "free_ticket_status", 1_i64),
            with(&pass, "payload", doc! { "fare": { "amount": 0.0, "currency": "USD" }, "rides": 1 }),
            // Absent, null and empty are three different values.
            without(&pass, "status"),
            with(&pass, "status", Bson::Null),
            with(&pass, "status", ""),
            without(&pass, "free_ticket_status"),
            with(&pass, "free_ticket_status", Bson::Null),
        ];
        for pass in changed {
            assert_eq!(pass_verdict(&keys, USER, PassKind::Passes, &pass), Verdict::Forged(Forgery::Mismatch), "{pass}");
        }
    }

    /// What the service does not own is not covered, and numbers are signed as JavaScript holds them.
    #[test]
    fn uncovered_fields_and_number_types_leave_the_signature_valid() {
        let (keys, pass) = a_signed_pass();
        let unchanged = [
            with(&pass, "vendor_field", "anything"),
            with(&pass, "payload_hash", "0".repeat(64)),
            with(&pass, "timestamp", TIMESTAMP as f64),
            with(&pass, "free_ticket_status", 0_i32),
            with(&pass, "payload", doc! { "fare": { "amount": 2.75, "currency": "USD" }, "rides": 1.0 }),
            // Stored member order is not signed: the canonical text sorts it.
            with(&pass, "payload", doc! { "rides": 1, "fare": { "currency": "USD", "amount": 2.75 } }),
        ];
        for pass in unchanged {
            assert_eq!(pass_verdict(&keys, USER, PassKind::Passes, &pass), Verdict::Authenticated, "{pass}");
        }
    }

    #[test]
    fn a_signature_copied_from_another_pass_is_forged() {
        let keys = ring();
        let other = signed(&keys, USER, PassKind::Passes, stored_pass("p-2", "ACTIVE", FARE));
        let unsigned = stored_pass("p-1", "ACTIVE", FARE);
        let copied = with(&with(&unsigned, PASS_SIG, other.get_str(PASS_SIG).unwrap()), PASS_SIG_KID, "k1");
        assert_eq!(pass_verdict(&keys, USER, PassKind::Passes, &copied), Verdict::Forged(Forgery::Mismatch));
    }

    #[test]
    fn a_signature_copied_from_another_user_is_forged() {
        let keys = ring();
        // The same pass, signed for user 6002, stored in user 6001's document.
        let theirs = signed(&keys, 6002, PassKind::Passes, stored_pass("p-1", "ACTIVE", FARE));
        assert_eq!(pass_verdict(&keys, 6002, PassKind::Passes, &theirs), Verdict::Authenticated);
        assert_eq!(pass_verdict(&keys, USER, PassKind::Passes, &theirs), Verdict::Forged(Forgery::Mismatch));
    }

    #[test]
    fn a_pass_moved_to_the_other_array_is_forged() {
        let (keys, pass) = a_signed_pass();
        assert_eq!(pass_verdict(&keys, USER, PassKind::Passes4, &pass), Verdict::Forged(Forgery::Mismatch));
    }

    #[test]
    fn a_signature_of_the_wrong_length_is_forged() {
        let (keys, pass) = a_signed_pass();
        let hex = pass.get_str(PASS_SIG).unwrap().to_owned();
        for (text, len) in [(&hex[..62], 62), (&format!("{hex}00")[..], 66), ("", 0)] {
            let stored = with(&pass, PASS_SIG, text);
            assert_eq!(pass_verdict(&keys, USER, PassKind::Passes, &stored), Verdict::Forged(Forgery::WrongLength(len)));
        }
    }

    #[test]
    fn an_upper_case_hex_signature_is_forged() {
        let (keys, pass) = a_signed_pass();
        let upper = pass.get_str(PASS_SIG).unwrap().to_ascii_uppercase();
        let stored = with(&pass, PASS_SIG, upper);
        assert_eq!(pass_verdict(&keys, USER, PassKind::Passes, &stored), Verdict::Forged(Forgery::UpperCaseHex));
    }

    #[test]
    fn a_non_hex_signature_is_forged() {
        let (keys, pass) = a_signed_pass();
        let stored = with(&pass, PASS_SIG, format!("{}zz", &pass.get_str(PASS_SIG).unwrap()[..62]));
        assert_eq!(pass_verdict(&keys, USER, PassKind::Passes, &stored), Verdict::Forged(Forgery::NotHex));
        let binary =
            with(&pass, PASS_SIG, mongodb::bson::Binary { subtype: mongodb::bson::spec::BinarySubtype::Generic, bytes: vec![0; 32] });
        assert_eq!(pass_verdict(&keys, USER, PassKind::Passes, &binary), Verdict::Forged(Forgery::SignatureNotAString));
    }

    #[test]
    fn an_unknown_key_id_is_told_apart_and_verifies_once_the_key_is_loaded() {
        let rotated = ring_of("k2", &[("k1", [1; KEY_LEN]), ("k2", [2; KEY_LEN])]);
        let pass = signed(&rotated, USER, PassKind::Passes, stored_pass("p-1", "ACTIVE", FARE));
        assert_eq!(pass.get_str(PASS_SIG_KID).unwrap(), "k2");
        assert_eq!(pass_verdict(&ring(), USER, PassKind::Passes, &pass), Verdict::UnknownKey(KeyId::parse("k2").unwrap()));
        assert_eq!(Verdict::UnknownKey(KeyId::parse("k2").unwrap()).as_str(), "forged");
        assert_eq!(pass_verdict(&rotated, USER, PassKind::Passes, &pass), Verdict::Authenticated);
        // Same bytes, different id: another key.
        let renamed = with(&pass, PASS_SIG_KID, "k1");
        assert_eq!(pass_verdict(&rotated, USER, PassKind::Passes, &renamed), Verdict::Forged(Forgery::Mismatch));
    }

    #[test]
    fn a_rotated_ring_keeps_verifying_what_the_old_key_signed() {
        let (old, pass) = a_signed_pass();
        let rotated = ring_of("k2", &[("k1", [1; KEY_LEN]), ("k2", [2; KEY_LEN])]);
        assert_eq!(pass_verdict(&rotated, USER, PassKind::Passes, &pass), Verdict::Authenticated);
        assert_eq!(pass_verdict(&old, USER, PassKind::Passes, &pass), Verdict::Authenticated);
    }

    #[test]
    fn half_a_signature_or_a_malformed_key_id_is_forged() {
        let (keys, pass) = a_signed_pass();
        let cases = [
            (without(&pass, PASS_SIG_KID), Forgery::KeyIdMissing),
            (with(&pass, PASS_SIG_KID, Bson::Null), Forgery::KeyIdMissing),
            (without(&pass, PASS_SIG), Forgery::SignatureMissing),
            (with(&pass, PASS_SIG_KID, "k 1"), Forgery::MalformedKeyId),
            (with(&pass, PASS_SIG_KID, 1_i32), Forgery::MalformedKeyId),
            (with(&pass, PASS_SIG_KID, "k".repeat(33)), Forgery::MalformedKeyId),
        ];
        for (pass, forgery) in cases {
            assert_eq!(pass_verdict(&keys, USER, PassKind::Passes, &pass), Verdict::Forged(forgery), "{pass}");
        }
    }

    #[test]
    fn a_covered_value_without_exact_text_cannot_be_signed_and_never_verifies() {
        let (keys, pass) = a_signed_pass();
        let dated = with(&pass, "timestamp", mongodb::bson::DateTime::from_millis(TIMESTAMP));
        assert_eq!(pass_verdict(&keys, USER, PassKind::Passes, &dated), Verdict::Forged(Forgery::NoExactText));
        let bytes = raw(&dated);
        let (content, _) = read_pass(Doc::from(&*bytes)).unwrap();
        assert!(matches!(sign_pass(&keys, user(USER), PassKind::Passes, &content), Err(SignError::NoExactText { field: "timestamp", .. })));
        let huge = with(&pass, "free_ticket_status", 9_007_199_254_740_993_i64);
        assert_eq!(pass_verdict(&keys, USER, PassKind::Passes, &huge), Verdict::Forged(Forgery::NoExactText));
    }

    /// A read that has already printed the payload's canonical text can sign over it as is.
    #[test]
    fn canonical_text_given_signs_as_the_stored_value_does() {
        let (keys, pass) = a_signed_pass();
        let bytes = raw(&pass);
        let (mut content, stored) = read_pass(Doc::from(&*bytes)).unwrap();
        let text = br#"{"fare":{"amount":2.75,"currency":"USD"},"rides":1}"#;
        content.payload = Covered::Text(text);
        assert_eq!(verify_pass(&keys, user(USER), PassKind::Passes, &content, &stored), Verdict::Authenticated);
    }

    fn three_passes(keys: &KeyRing) -> Vec<Document> {
        ["p-1", "p-2", "p-3"].map(|uuid| signed(keys, USER, PassKind::Passes, stored_pass(uuid, "ACTIVE", FARE))).to_vec()
    }

    #[test]
    fn a_signed_document_is_authenticated() {
        let keys = ring();
        let passes = three_passes(&keys);
        let passes4 = [signed(&keys, USER, PassKind::Passes4, stored_pass("q-1", "ACTIVE", FARE))];
        let document = signed_document(&keys, USER, &passes, &passes4);
        assert_eq!(document_verdict(&keys, USER, &document), Verdict::Authenticated);
        assert_eq!(document_verdict(&keys, USER, &without(&without(&document, DOC_SIG), DOC_SIG_KID)), Verdict::Unauthenticated);
    }

    #[test]
    fn a_dropped_pass_fails_the_document_signature() {
        let keys = ring();
        let mut document = signed_document(&keys, USER, &three_passes(&keys), &[]);
        array(&mut document, PassKind::Passes).remove(1);
        assert_eq!(document_verdict(&keys, USER, &document), Verdict::Forged(Forgery::Mismatch));
    }

    #[test]
    fn a_duplicated_pass_fails_the_document_signature() {
        let keys = ring();
        let mut document = signed_document(&keys, USER, &three_passes(&keys), &[]);
        let copy = array(&mut document, PassKind::Passes)[0].clone();
        array(&mut document, PassKind::Passes).push(copy);
        assert_eq!(document_verdict(&keys, USER, &document), Verdict::Forged(Forgery::Mismatch));
    }

    #[test]
    fn reordered_passes_fail_the_document_signature() {
        let keys = ring();
        let mut document = signed_document(&keys, USER, &three_passes(&keys), &[]);
        array(&mut document, PassKind::Passes).swap(0, 2);
        assert_eq!(document_verdict(&keys, USER, &document), Verdict::Forged(Forgery::Mismatch));
    }

    #[test]
    fn a_pass_moved_to_the_other_array_fails_both_signatures() {
        let keys = ring();
        let mut document = signed_document(&keys, USER, &three_passes(&keys), &[]);
        let moved = array(&mut document, PassKind::Passes).remove(0);
        array(&mut document, PassKind::Passes4).push(moved.clone());
        assert_eq!(document_verdict(&keys, USER, &document), Verdict::Forged(Forgery::Mismatch));
        let moved = moved.as_document().unwrap();
        assert_eq!(pass_verdict(&keys, USER, PassKind::Passes4, moved), Verdict::Forged(Forgery::Mismatch));
    }

    #[test]
    fn a_pass_moved_to_another_users_document_fails_both_signatures() {
        let keys = ring();
        let passes = three_passes(&keys);
        let mut theirs = signed_document(&keys, 6002, &[], &[]);
        array(&mut theirs, PassKind::Passes).push(Bson::Document(passes[0].clone()));
        assert_eq!(document_verdict(&keys, 6002, &theirs), Verdict::Forged(Forgery::Mismatch));
        assert_eq!(pass_verdict(&keys, 6002, PassKind::Passes, &passes[0]), Verdict::Forged(Forgery::Mismatch));
    }

    #[test]
    fn a_document_signature_copied_to_another_user_is_forged() {
        let keys = ring();
        let document = signed_document(&keys, USER, &[], &[]);
        assert_eq!(document_verdict(&keys, 6002, &document), Verdict::Forged(Forgery::Mismatch));
    }

    #[test]
    fn an_unsigned_pass_added_or_a_document_timestamp_changed_fails_the_document_signature() {
        let keys = ring();
        let mut document = signed_document(&keys, USER, &three_passes(&keys), &[]);
        let original = document.clone();
        array(&mut document, PassKind::Passes4).push(Bson::Document(stored_pass("x", "ACTIVE", FARE)));
        assert_eq!(document_verdict(&keys, USER, &document), Verdict::Forged(Forgery::Mismatch));
        let later = with(&original, "timestamp", TIMESTAMP + 1);
        assert_eq!(document_verdict(&keys, USER, &later), Verdict::Forged(Forgery::Mismatch));
        let no_passes4 = without(&original, "passes4");
        assert_eq!(document_verdict(&keys, USER, &no_passes4), Verdict::Forged(Forgery::Mismatch), "an empty array is not an absent one");
        // A pass's signature re-cased changes the list too.
        let mut recased = original.clone();
        let first = array(&mut recased, PassKind::Passes)[0].as_document_mut().unwrap();
        let upper = first.get_str(PASS_SIG).unwrap().to_ascii_uppercase();
        first.insert(PASS_SIG, upper);
        assert_eq!(document_verdict(&keys, USER, &recased), Verdict::Forged(Forgery::Mismatch));
    }

    #[test]
    fn a_document_whose_list_has_no_exact_text_is_forged_when_signed() {
        let keys = ring();
        let mut document = signed_document(&keys, USER, &three_passes(&keys), &[]);
        let first = array(&mut document, PassKind::Passes)[0].as_document_mut().unwrap();
        first.insert(PASS_SIG, mongodb::bson::DateTime::from_millis(0));
        let bytes = raw(&document);
        assert_eq!(verify_stored_document(&keys, user(USER), Doc::from(&*bytes)), Verdict::Forged(Forgery::NoExactText));
        let unsigned = raw(&without(&without(&document, DOC_SIG), DOC_SIG_KID));
        assert_eq!(verify_stored_document(&keys, user(USER), Doc::from(&*unsigned)), Verdict::Unauthenticated);
        let intact = raw(&signed_document(&keys, USER, &three_passes(&keys), &[]));
        assert_eq!(verify_stored_document(&keys, user(USER), Doc::from(&*intact)), Verdict::Authenticated);
    }

    /// A write builds the document's list from the signatures it has just made.
    #[test]
    fn a_list_built_from_new_signatures_signs_as_the_stored_one_reads() {
        let keys = ring();
        let passes = three_passes(&keys);
        let listed = passes
            .iter()
            .map(|pass| {
                let kid = KeyId::parse(pass.get_str(PASS_SIG_KID).unwrap()).unwrap();
                ListedItem::signed(&PassSignature { kid, hex: pass.get_str(PASS_SIG).unwrap().to_owned() })
            })
            .collect();
        let content = DocumentContent {
            timestamp: Covered::Stored(Value::Int64(TIMESTAMP)),
            passes: ListedArray::Items(listed),
            passes4: ListedArray::Items(vec![]),
        };
        let signature = sign_document(&keys, user(USER), &content).unwrap();
        assert_eq!(signature, {
            let stored = signed_document(&keys, USER, &passes, &[]);
            PassSignature { kid: KeyId::parse("k1").unwrap(), hex: stored.get_str(DOC_SIG).unwrap().to_owned() }
        });
    }

    #[test]
    fn a_pass_is_authenticated_only_within_an_authenticated_document() {
        use Verdict::*;
        let unknown = UnknownKey(KeyId::parse("k9").unwrap());
        let cases = [
            (Authenticated, Authenticated, Authenticated),
            (Authenticated, Forged(Forgery::Mismatch), Forged(Forgery::NotListed)),
            (Authenticated, Unauthenticated, Forged(Forgery::DocumentUnsigned)),
            (Authenticated, unknown.clone(), unknown.clone()),
            (Unauthenticated, Authenticated, Unauthenticated),
            (Unauthenticated, Unauthenticated, Unauthenticated),
            (Unauthenticated, Forged(Forgery::Mismatch), Forged(Forgery::NotListed)),
            (Forged(Forgery::UpperCaseHex), Authenticated, Forged(Forgery::UpperCaseHex)),
            (unknown.clone(), Authenticated, unknown.clone()),
        ];
        for (pass, document, expected) in cases {
            assert_eq!(pass_in_document(pass.clone(), &document), expected, "{pass:?} in {document:?}");
        }
    }

    /// A random JSON object for property tests: nested objects and arrays, numbers of every kind.
    pub(crate) fn random_payload(rng: &mut impl Rng, depth: usize) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        for _ in 0..rng.random_range(0..6) {
            // Names whose UTF-16 order differs from their UTF-8 order among them (U+E000 against U+1F600).
            let name: String =
                (0..rng.random_range(1..5)).map(|_| ["a", "Z", "0", "_", "é", "\u{e000}", "\u{1f600}"][rng.random_range(0..7)]).collect();
            object.insert(name, random_value(rng, depth));
        }
        serde_json::Value::Object(object)
    }

    fn random_value(rng: &mut impl Rng, depth: usize) -> serde_json::Value {
        use serde_json::json;
        match rng.random_range(0..9) {
            0 if depth > 0 => random_payload(rng, depth - 1),
            1 if depth > 0 => json!((0..rng.random_range(0..4)).map(|_| random_value(rng, depth - 1)).collect::<Vec<_>>()),
            2 => json!(rng.random_range(-(1_i64 << 53) + 1..1_i64 << 53)),
            3 => json!(f64::from_bits(rng.random::<u64>()).clamp(-1e300, 1e300)),
            4 => json!(rng.random::<f64>() * 1000.0),
            5 => json!(["é", "\u{1f600}", "\"\\\n", "", "ACTIVE"][rng.random_range(0..5)]),
            6 => json!(rng.random::<bool>()),
            7 => serde_json::Value::Null,
            _ => json!(rng.random::<i32>()),
        }
    }

    /// A few hundred random passes: each verifies, and no single-bit change of its stored signature (the
    /// text as stored, or the MAC it encodes) does.
    #[test]
    fn no_single_bit_flip_of_a_stored_signature_is_authenticated() {
        let keys = ring();
        let mut rng = rand::rngs::StdRng::seed_from_u64(25);
        for case in 0..300 {
            let payload = random_payload(&mut rng, 3).to_string();
            let status = ["ACTIVE", "EXPIRED", "", "USABLE"][case % 4];
            let kind = PassKind::ALL[case % 2];
            let mut pass = stored_pass(&format!("p-{case}"), status, &payload);
            pass.insert("free_ticket_status", rng.random_range(0_i64..3));
            let pass = signed(&keys, USER, kind, pass);
            let bytes = raw(&pass);
            let (content, _) = read_pass(Doc::from(&*bytes)).unwrap();
            let hex = pass.get_str(PASS_SIG).unwrap().as_bytes().to_vec();
            let check = |sig: &[u8]| {
                verify_pass(
                    &keys,
                    user(USER),
                    kind,
                    &content,
                    &StoredSignature { sig: Some(Value::String(sig)), kid: Some(Value::String(b"k1")) },
                )
            };
            assert_eq!(check(&hex), Verdict::Authenticated, "{payload}");
            // Every bit of the stored text for a tenth of the cases, one random bit for the others.
            let bits: Vec<usize> = if case % 10 == 0 { (0..hex.len() * 8).collect() } else { vec![rng.random_range(0..hex.len() * 8)] };
            for bit in bits {
                let mut flipped = hex.clone();
                flipped[bit / 8] ^= 1 << (bit % 8);
                assert!(matches!(check(&flipped), Verdict::Forged(_)), "bit {bit} of {payload}");
            }
            // Every bit of the MAC, stored as valid lower-case hex.
            let mut mac = [0; SIG_LEN];
            hex::decode_to_slice(&hex, &mut mac).unwrap();
            for bit in 0..SIG_LEN * 8 {
                let mut flipped = mac;
                flipped[bit / 8] ^= 1 << (bit % 8);
                assert_eq!(check(hex::encode(flipped).as_bytes()), Verdict::Forged(Forgery::Mismatch));
            }
        }
    }

    #[test]
    fn a_verdict_debug_shows_no_key_bytes() {
        let keys = ring_of("k1", &[("k1", crate::keys::tests::SPOTTED_KEY)]);
        let pass = signed(&keys, USER, PassKind::Passes, stored_pass("p-1", "ACTIVE", FARE));
        let verdicts =
            [pass_verdict(&keys, USER, PassKind::Passes, &with(&pass, "status", "X")), pass_verdict(&keys, USER, PassKind::Passes, &pass)];
        let bytes = raw(&with(&pass, "timestamp", mongodb::bson::DateTime::from_millis(0)));
        let (content, _) = read_pass(Doc::from(&*bytes)).unwrap();
        let error = sign_pass(&keys, user(USER), PassKind::Passes, &content).unwrap_err();
        let shown = format!("{verdicts:?} {error:?} {error} {keys:?}");
        crate::keys::tests::assert_no_key_bytes(&shown, &crate::keys::tests::SPOTTED_KEY);
    }
}
