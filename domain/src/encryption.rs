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

impl DecryptError {
    /// A stable name for logs, metrics and the Node client.
    pub fn code(&self) -> &'static str {
        match self {
            DecryptError::Malformed(_) => "malformed",
            DecryptError::UnsupportedAlgorithm => "unsupported_algorithm",
            DecryptError::MalformedKeyId => "malformed_key_id",
            DecryptError::UnknownKey { .. } => "unknown_key",
            DecryptError::WrongNonceLength { .. } => "wrong_nonce_length",
            DecryptError::Truncated { .. } => "truncated",
            DecryptError::Inauthentic => "inauthentic",
            DecryptError::NotADocument => "not_a_document",
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authenticity::tests::{random_payload, ring, user, USER};
    use crate::keys::tests::ring_of;
    use crate::keys::KEY_LEN;
    use mongodb::bson::{doc, Bson, Document};
    use payload::hash::{self, HashForm};
    use payload::text::{self, TextForm};
    use rand::{Rng, SeedableRng};

    fn at() -> PayloadBinding<'static> {
        PayloadBinding { user: user(USER), kind: PassKind::Passes, pass_uuid: "p-1" }
    }

    fn payload(json: &str) -> RawDocumentBuf {
        payload::convert_payload(json, 16).unwrap().bson
    }

    fn decrypt(keys: &KeyRing, at: &PayloadBinding<'_>, envelope: &Document) -> Result<RawDocumentBuf, DecryptError> {
        let bytes = RawDocumentBuf::from_document(envelope).unwrap();
        decrypt_payload(keys, at, Doc::from(&*bytes))
    }

    fn encrypted(keys: &KeyRing, json: &str) -> Document {
        encrypt_payload(keys, &at(), &payload(json)).unwrap().to_document().unwrap()
    }

    fn with(envelope: &Document, name: &str, value: impl Into<Bson>) -> Document {
        let mut envelope = envelope.clone();
        envelope.insert(name, value.into());
        envelope
    }

    fn binary(bytes: Vec<u8>) -> Binary {
        Binary { subtype: BinarySubtype::Generic, bytes }
    }

    fn ct(envelope: &Document) -> Vec<u8> {
        envelope.get_binary_generic("ct").unwrap().clone()
    }

    const FARE: &str = r#"{"fare":{"amount":2.75,"currency":"USD"},"rides":1,"barcode":"QR-123"}"#;

    #[test]
    fn a_payload_decrypts_to_the_bytes_the_plain_path_stores() {
        let keys = ring();
        let plain = payload(FARE);
        let envelope = encrypted(&keys, FARE);
        assert_eq!(envelope.get_str("alg").unwrap(), "A256GCM");
        assert_eq!(envelope.get_str("kid").unwrap(), "k1");
        assert_eq!(envelope.get_binary_generic("nonce").unwrap().len(), NONCE_LEN);
        assert_eq!(ct(&envelope).len(), plain.as_bytes().len() + TAG_LEN);
        let decrypted = decrypt(&keys, &at(), &envelope).unwrap();
        assert_eq!(decrypted.as_bytes(), plain.as_bytes());
        // No byte of the client's payload is stored in the clear.
        let stored = RawDocumentBuf::from_document(&envelope).unwrap();
        assert!(!stored.as_bytes().windows(6).any(|w| w == b"QR-123" || w == b"barcod"));
        let bytes = RawDocumentBuf::from_document(&envelope).unwrap();
        assert_eq!(envelope_key_id(Doc::from(&*bytes)), Some("k1"));
    }

    #[test]
    fn each_encryption_draws_a_new_nonce() {
        let keys = ring();
        let (a, b) = (encrypted(&keys, FARE), encrypted(&keys, FARE));
        assert_ne!(a.get_binary_generic("nonce").unwrap(), b.get_binary_generic("nonce").unwrap());
        assert_ne!(ct(&a), ct(&b));
    }

    #[test]
    fn a_damaged_ciphertext_does_not_decrypt() {
        let keys = ring();
        let envelope = encrypted(&keys, FARE);
        let mut damaged = ct(&envelope);
        damaged[3] ^= 0x40;
        assert_eq!(decrypt(&keys, &at(), &with(&envelope, "ct", binary(damaged))), Err(DecryptError::Inauthentic));
        let mut tag = ct(&envelope);
        let last = tag.len() - 1;
        tag[last] ^= 1;
        assert_eq!(decrypt(&keys, &at(), &with(&envelope, "ct", binary(tag))), Err(DecryptError::Inauthentic));
    }

    #[test]
    fn a_truncated_ciphertext_does_not_decrypt() {
        let keys = ring();
        let envelope = encrypted(&keys, FARE);
        let full = ct(&envelope);
        assert_eq!(decrypt(&keys, &at(), &with(&envelope, "ct", binary(full[..full.len() - 1].to_vec()))), Err(DecryptError::Inauthentic));
        assert_eq!(
            decrypt(&keys, &at(), &with(&envelope, "ct", binary(full[..TAG_LEN - 1].to_vec()))),
            Err(DecryptError::Truncated { len: 15 })
        );
        assert_eq!(decrypt(&keys, &at(), &with(&envelope, "ct", binary(vec![]))), Err(DecryptError::Truncated { len: 0 }));
    }

    #[test]
    fn a_nonce_of_the_wrong_length_does_not_decrypt() {
        let keys = ring();
        let envelope = encrypted(&keys, FARE);
        for len in [0, 8, 11, 13, 16] {
            assert_eq!(decrypt(&keys, &at(), &with(&envelope, "nonce", binary(vec![0; len]))), Err(DecryptError::WrongNonceLength { len }));
        }
        let mut nonce = envelope.get_binary_generic("nonce").unwrap().clone();
        nonce[0] ^= 1;
        assert_eq!(decrypt(&keys, &at(), &with(&envelope, "nonce", binary(nonce))), Err(DecryptError::Inauthentic));
    }

    #[test]
    fn an_unknown_key_id_is_told_apart_and_decrypts_once_the_key_is_loaded() {
        let rotated = ring_of("k2", &[("k1", [1; KEY_LEN]), ("k2", [2; KEY_LEN])]);
        let envelope = encrypted(&rotated, FARE);
        assert_eq!(decrypt(&ring(), &at(), &envelope), Err(DecryptError::UnknownKey { kid: crate::keys::KeyId::parse("k2").unwrap() }));
        assert_eq!(decrypt(&rotated, &at(), &envelope).unwrap().as_bytes(), payload(FARE).as_bytes());
        // Relabelled with another listed id: the key and the associated data both differ.
        assert_eq!(decrypt(&rotated, &at(), &with(&envelope, "kid", "k1")), Err(DecryptError::Inauthentic));
        assert_eq!(decrypt(&rotated, &at(), &with(&envelope, "kid", "k 2")), Err(DecryptError::MalformedKeyId));
    }

    #[test]
    fn a_ciphertext_moved_to_another_pass_array_or_user_does_not_decrypt() {
        let keys = ring();
        let envelope = encrypted(&keys, FARE);
        let elsewhere = [
            PayloadBinding { pass_uuid: "p-2", ..at() },
            PayloadBinding { kind: PassKind::Passes4, ..at() },
            PayloadBinding { user: user(6002), ..at() },
        ];
        for at in elsewhere {
            assert_eq!(decrypt(&keys, &at, &envelope), Err(DecryptError::Inauthentic), "{at:?}");
        }
    }

    #[test]
    fn a_malformed_envelope_is_refused_with_what_is_wrong() {
        let keys = ring();
        let envelope = encrypted(&keys, FARE);
        let cases = [
            (with(&envelope, "alg", "A128GCM"), DecryptError::UnsupportedAlgorithm),
            (with(&envelope, "alg", 1), DecryptError::Malformed("alg")),
            (with(&envelope, "nonce", "AAAAAAAAAAAAAAAA"), DecryptError::Malformed("nonce")),
            (
                with(&envelope, "ct", Binary { subtype: BinarySubtype::UserDefined(0x80), bytes: ct(&envelope) }),
                DecryptError::Malformed("ct"),
            ),
            (doc! { "alg": "A256GCM", "kid": "k1", "nonce": binary(vec![0; 12]) }, DecryptError::Malformed("ct")),
            (doc! {}, DecryptError::Malformed("alg")),
        ];
        for (envelope, expected) in cases {
            assert_eq!(decrypt(&keys, &at(), &envelope), Err(expected), "{envelope}");
        }
        // A member repeated.
        let mut repeated = RawDocumentBuf::from_document(&envelope).unwrap();
        repeated.append("kid", "k1");
        assert_eq!(decrypt_payload(&keys, &at(), Doc::from(&*repeated)), Err(DecryptError::Malformed("kid")));
        // Members the envelope does not use are ignored.
        assert!(decrypt(&keys, &at(), &with(&envelope, "_id", mongodb::bson::oid::ObjectId::new())).is_ok());
    }

    /// A few hundred random payloads: each decrypts to its stored bytes, prints and hashes as the plain
    /// path does, and no single-bit change of its nonce or ciphertext decrypts.
    #[test]
    fn decrypt_inverts_encrypt_and_no_single_bit_flip_decrypts() {
        let keys = ring();
        let mut rng = rand::rngs::StdRng::seed_from_u64(8785);
        for case in 0..300 {
            let json = random_payload(&mut rng, 3).to_string();
            let plain = payload(&json);
            let envelope = encrypted(&keys, &json);
            let decrypted = decrypt(&keys, &at(), &envelope).unwrap();
            assert_eq!(decrypted.as_bytes(), plain.as_bytes(), "{json}");
            let (mut shown, mut shown_plain) = (Vec::new(), Vec::new());
            text::write_document(&decrypted, TextForm::Display, &mut shown).unwrap();
            text::write_document(&plain, TextForm::Display, &mut shown_plain).unwrap();
            assert_eq!(shown, shown_plain);
            assert_eq!(hash::hash(&decrypted, HashForm::Jcs).unwrap(), hash::hash(&plain, HashForm::Jcs).unwrap());

            let (nonce, ciphertext) = (envelope.get_binary_generic("nonce").unwrap().clone(), ct(&envelope));
            // Every bit for a tenth of the cases, a few random bits for the others.
            let bits = |len: usize, rng: &mut rand::rngs::StdRng| -> Vec<usize> {
                if case % 10 == 0 {
                    (0..len * 8).collect()
                } else {
                    (0..4).map(|_| rng.random_range(0..len * 8)).collect()
                }
            };
            for bit in bits(nonce.len(), &mut rng) {
                let mut flipped = nonce.clone();
                flipped[bit / 8] ^= 1 << (bit % 8);
                assert_eq!(decrypt(&keys, &at(), &with(&envelope, "nonce", binary(flipped))), Err(DecryptError::Inauthentic));
            }
            for bit in bits(ciphertext.len(), &mut rng) {
                let mut flipped = ciphertext.clone();
                flipped[bit / 8] ^= 1 << (bit % 8);
                assert_eq!(decrypt(&keys, &at(), &with(&envelope, "ct", binary(flipped))), Err(DecryptError::Inauthentic));
            }
        }
    }

    #[test]
    fn errors_show_no_key_bytes() {
        let spotted = crate::keys::tests::SPOTTED_KEY;
        let keys = ring_of("k1", &[("k1", spotted)]);
        let envelope = encrypted(&keys, FARE);
        let mut shown = format!("{keys:?}");
        let mut damaged = ct(&envelope);
        damaged[0] ^= 1;
        for envelope in [with(&envelope, "ct", binary(damaged)), with(&envelope, "kid", "k9"), with(&envelope, "nonce", binary(vec![1]))] {
            let error = decrypt(&keys, &at(), &envelope).unwrap_err();
            shown.push_str(&format!("{error:?} {error}"));
        }
        crate::keys::tests::assert_no_key_bytes(&shown, &spotted);
        assert_eq!(format!("{:?}", EncryptError::RandomSource), "RandomSource");
    }
}
