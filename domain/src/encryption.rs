//! Encryption of payloads at rest: AES-256-GCM under the [`KeyRing`]'s current key.
//!
//! The plaintext is the payload's BSON document, byte for byte as the plain path stores it, so a read
//! that decrypts walks exactly the document it would have read in the clear: it prints the same text,
//! and `payload_hash` (over the plaintext's canonical text) is the same.
//!
//! # Stored form
//!
//! A pass stored encrypted has no `payload`; its [`FIELD`] (`payload_enc`) holds the envelope
//!
//! ```text
//! { alg: "A256GCM", kid: <key id>, nonce: Binary(subtype 0, 12 bytes), ct: Binary(subtype 0, ciphertext ‖ 16-byte tag) }
//! ```
//!
//! Other members of the envelope (an `_id` a Mongoose schema adds) are ignored: nothing in them is used.
//!
//! # Nonces and associated data
//!
//! Each encryption draws a fresh 96-bit nonce from the operating system's generator; no production path
//! takes a nonce from its caller. Random nonces keep a key safe for 2^32 encryptions (NIST SP 800-38D),
//! far beyond what one key id sees between rotations here.
//!
//! The associated data binds the ciphertext to where it is stored, so a ciphertext copied to another
//! pass, array or user, or relabelled with another algorithm or key id, does not decrypt:
//!
//! ```text
//! ad = lp("bytemark-ticket-cache payload") 0x01 lp("A256GCM") lp(kid) lp(user id digits) lp(array name) lp(pass_uuid)
//! ```
//!
//! (`lp(x)`: `x` preceded by its length as a 4-byte big-endian integer.)
//!
//! # Failures
//!
//! Every failure is a [`DecryptError`], never a panic. AES-GCM cannot tell a damaged ciphertext from a
//! wrong key or a moved one: each is [`DecryptError::Inauthentic`] (a failed tag), and nothing of it is
//! printed.

use aes_gcm::aead::Aead;
use aes_gcm::aead::Payload;
use aes_gcm::Nonce;
use mongodb::bson::spec::{BinarySubtype, ElementType};
use mongodb::bson::{Binary, RawDocument, RawDocumentBuf};
use payload::reader::{Doc, Value};
use rand::TryRngCore;

use crate::keys::{KeyId, KeyRing};
use crate::schema::{PassKind, UserId};

/// The pass field holding an encrypted payload.
pub const FIELD: &str = "payload_enc";
/// The envelope's `alg`.
pub const ALG: &str = "A256GCM";
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
const AD_LABEL: &[u8] = b"bytemark-ticket-cache payload";
const AD_VERSION: u8 = 1;

/// Where an encrypted payload is stored: what its associated data binds.
#[derive(Debug, Clone, Copy)]
pub struct PayloadBinding<'a> {
    pub user: UserId,
    pub kind: PassKind,
    pub pass_uuid: &'a str,
}

/// Why a payload cannot be encrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncryptError {
    #[error("the operating system's random source failed")]
    RandomSource,
    #[error("the payload is too large for AES-GCM")]
    TooLarge,
}

/// Why an envelope does not decrypt. None carries plaintext or key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    /// Not an envelope: a member missing, repeated or of the wrong type (which one).
    #[error("the encrypted payload is malformed: {0}")]
    Malformed(&'static str),
    #[error("the encrypted payload's algorithm is not A256GCM")]
    UnsupportedAlgorithm,
    #[error("the encrypted payload's key id is malformed")]
    MalformedKeyId,
    /// A key id of valid syntax the ring does not list: refresh the keys, then treat it as forged.
    #[error("the encrypted payload names key {kid}, which the key ring does not list")]
    UnknownKey { kid: KeyId },
    #[error("the nonce has {len} bytes, not {NONCE_LEN}")]
    WrongNonceLength { len: usize },
    #[error("the ciphertext has {len} bytes, fewer than the {TAG_LEN}-byte tag")]
    Truncated { len: usize },
    /// The tag does not verify: the ciphertext, nonce or tag was changed, or the envelope was moved to
    /// another pass, array or user, or relabelled.
    #[error("the encrypted payload does not authenticate")]
    Inauthentic,
    /// It authenticated but is not a BSON document: only a key holder could have written it.
    #[error("the decrypted payload is not a BSON document")]
    NotADocument,
}

/// Encrypts a payload under the current key: the envelope to store in [`FIELD`].
pub fn encrypt_payload(keys: &KeyRing, at: &PayloadBinding<'_>, payload: &RawDocument) -> Result<RawDocumentBuf, EncryptError> {
    let mut nonce = [0; NONCE_LEN];
    rand::rngs::OsRng.try_fill_bytes(&mut nonce).map_err(|_| EncryptError::RandomSource)?;
    seal(keys, at, payload, nonce)
}

/// Encrypts with a given nonce: for test vectors only.
#[cfg(test)]
pub(crate) fn encrypt_with_nonce(keys: &KeyRing, at: &PayloadBinding<'_>, payload: &RawDocument, nonce: [u8; NONCE_LEN]) -> RawDocumentBuf {
    seal(keys, at, payload, nonce).unwrap()
}

fn seal(keys: &KeyRing, at: &PayloadBinding<'_>, payload: &RawDocument, nonce: [u8; NONCE_LEN]) -> Result<RawDocumentBuf, EncryptError> {
    let kid = keys.current_id();
    let cipher = keys.current_cipher();
    let ad = associated_data(kid.as_str(), at);
    let ct = cipher.encrypt(&Nonce::from(nonce), Payload { msg: payload.as_bytes(), aad: &ad }).map_err(|_| EncryptError::TooLarge)?;
    let mut envelope = RawDocumentBuf::new();
    envelope.append("alg", ALG);
    envelope.append("kid", kid.as_str());
    envelope.append("nonce", Binary { subtype: BinarySubtype::Generic, bytes: nonce.to_vec() });
    envelope.append("ct", Binary { subtype: BinarySubtype::Generic, bytes: ct });
    Ok(envelope)
}

/// Decrypts a stored envelope back to the payload document the plain path would have stored.
pub fn decrypt_payload(keys: &KeyRing, at: &PayloadBinding<'_>, envelope: Doc<'_>) -> Result<RawDocumentBuf, DecryptError> {
    let parts = Envelope::read(envelope)?;
    if parts.alg != ALG.as_bytes() {
        return Err(DecryptError::UnsupportedAlgorithm);
    }
    let kid = std::str::from_utf8(parts.kid).ok().and_then(|kid| KeyId::parse(kid).ok()).ok_or(DecryptError::MalformedKeyId)?;
    let nonce: [u8; NONCE_LEN] = parts.nonce.try_into().map_err(|_| DecryptError::WrongNonceLength { len: parts.nonce.len() })?;
    if parts.ct.len() < TAG_LEN {
        return Err(DecryptError::Truncated { len: parts.ct.len() });
    }
    let Some(cipher) = keys.cipher(kid.as_str()) else {
        return Err(DecryptError::UnknownKey { kid });
    };
    let ad = associated_data(kid.as_str(), at);
    let plaintext = cipher.decrypt(&Nonce::from(nonce), Payload { msg: parts.ct, aad: &ad }).map_err(|_| DecryptError::Inauthentic)?;
    RawDocumentBuf::from_bytes(plaintext).ok().filter(|doc| Doc::new(doc.as_bytes()).is_ok()).ok_or(DecryptError::NotADocument)
}

/// The key id an envelope names, when it is a string (for audits and re-encryption under a new key).
pub fn envelope_key_id(envelope: Doc<'_>) -> Option<&str> {
    Envelope::read(envelope).ok().and_then(|parts| std::str::from_utf8(parts.kid).ok())
}

/// The associated data of a payload stored at `at` under `kid` (see the module documentation).
pub fn associated_data(kid: &str, at: &PayloadBinding<'_>) -> Vec<u8> {
    let user = at.user.get().to_string();
    let mut ad = Vec::with_capacity(96 + at.pass_uuid.len());
    push_with_length(&mut ad, AD_LABEL);
    ad.push(AD_VERSION);
    for part in [ALG.as_bytes(), kid.as_bytes(), user.as_bytes(), at.kind.field().as_bytes(), at.pass_uuid.as_bytes()] {
        push_with_length(&mut ad, part);
    }
    ad
}

fn push_with_length(out: &mut Vec<u8>, bytes: &[u8]) {
    // A pass_uuid is at most a few hundred bytes: the length fits 32 bits.
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// An envelope's members, as stored.
struct Envelope<'d> {
    alg: &'d [u8],
    kid: &'d [u8],
    nonce: &'d [u8],
    ct: &'d [u8],
}

impl<'d> Envelope<'d> {
    fn read(envelope: Doc<'d>) -> Result<Envelope<'d>, DecryptError> {
        let (mut alg, mut kid, mut nonce, mut ct) = (None, None, None, None);
        for element in envelope.elements() {
            let (key, value) = element.map_err(|_| DecryptError::Malformed("invalid BSON"))?;
            let (slot, name, wanted) = match key {
                b"alg" => (&mut alg, "alg", Wanted::String),
                b"kid" => (&mut kid, "kid", Wanted::String),
                b"nonce" => (&mut nonce, "nonce", Wanted::Binary),
                b"ct" => (&mut ct, "ct", Wanted::Binary),
                _ => continue,
            };
            if slot.is_some() {
                return Err(DecryptError::Malformed(name));
            }
            *slot = Some(wanted.bytes(value).ok_or(DecryptError::Malformed(name))?);
        }
        Ok(Envelope {
            alg: alg.ok_or(DecryptError::Malformed("alg"))?,
            kid: kid.ok_or(DecryptError::Malformed("kid"))?,
            nonce: nonce.ok_or(DecryptError::Malformed("nonce"))?,
            ct: ct.ok_or(DecryptError::Malformed("ct"))?,
        })
    }
}

enum Wanted {
    String,
    Binary,
}

impl Wanted {
    /// The bytes of a string, or of a generic binary (its value's bytes: length, subtype, data).
    fn bytes(self, value: Value<'_>) -> Option<&[u8]> {
        match (self, value) {
            (Wanted::String, Value::String(bytes)) => Some(bytes),
            (Wanted::Binary, Value::Other(ElementType::Binary, bytes)) => {
                let len = usize::try_from(i32::from_le_bytes(bytes.get(..4)?.try_into().ok()?)).ok()?;
                let subtype = *bytes.get(4)?;
                (subtype == u8::from(BinarySubtype::Generic) && bytes.len() == 5 + len).then(|| &bytes[5..])
            }
            _ => None,
        }
    }
}
