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
