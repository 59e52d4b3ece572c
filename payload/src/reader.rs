//! The reader of stored BSON: a framing-only walk over raw bytes, for printing payloads as JSON.
//!
//! Every length is checked against its container and nothing is read out of bounds; strings come back as
//! bytes (the text writer checks UTF-8 once, only for strings that are not plain ASCII), and values of the
//! types JSON has no literal for come back whole, for the `bson` crate to decode.
//!
//! It is the one reader of stored payloads and read responses (`domain`'s `read.rs` walks the reply with it
//! too), chosen by measurement over the `bson` crate's raw API. Bench `payload_steps`, walking the 40
//! stored payloads of the benchmark user and reading what a printer reads of each element (name, number,
//! string bytes, nesting); two runs on the shared 2-core AMD EPYC (load 5 to 6, so absolute figures are
//! high, the ratios steady):
//!
//! | reader | `read_*` step | mean, two runs |
//! |---|---|---|
//! | this one (framing only) | `read_framing_only` | 42 µs, 31 µs |
//! | `RawDocument::iter_elements()`, `RawElement::value()` when needed (lazy) | `read_iter_elements` | 204 µs, 179 µs |
//! | `RawDocument::iter()` (eager `RawBsonRef`s) | `read_iter` | 254 µs, 187 µs |
//!
//! The `bson` crate checks every name as UTF-8 and re-checks each nested document's framing when its value
//! is taken: five to six times this reader, far outside the 10 % that would have made it the choice. Values of
//! the types JSON has no literal for are rare in payloads, so [`Value::decode_other`] hands those to the
//! `bson` crate. (The cache's small driver replies, log ids and `server_time`s, are read with the `bson`
//! crate's API: no figure depends on them.)

use bson::spec::ElementType;
use bson::{RawBson, RawDocument};

/// Stored bytes that are not BSON: a length past its container, an unknown element type, a missing
/// terminator. Nothing after such a point can be located.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid BSON: {0}")]
pub struct CorruptBson(String);

impl CorruptBson {
    pub fn new(reason: impl std::fmt::Display) -> CorruptBson {
        CorruptBson(reason.to_string())
    }
}

/// One element's value.
#[derive(Debug, Clone, Copy)]
pub enum Value<'d> {
    Double(f64),
    /// A string's bytes, without its length prefix and terminating NUL; not yet checked as UTF-8.
    String(&'d [u8]),
    Document(Doc<'d>),
    Array(Doc<'d>),
    Boolean(bool),
    Null,
    Undefined,
    Int32(i32),
    Int64(i64),
    /// Any other BSON type and the value's bytes.
    Other(ElementType, &'d [u8]),
}

impl Value<'_> {
    /// The value's type, as people call it, for messages.
    pub fn type_name(self) -> &'static str {
        match self {
            Value::Double(_) | Value::Int32(_) | Value::Int64(_) => "a number",
            Value::String(_) => "a string",
            Value::Document(_) => "an object",
            Value::Array(_) => "an array",
            Value::Boolean(_) => "a boolean",
            Value::Null => "null",
            Value::Undefined => "undefined",
            Value::Other(..) => "a BSON-only value",
        }
    }

    /// Decodes a [`Value::Other`] (a date, an ObjectId, …) with the `bson` crate, which also validates it.
    pub fn decode_other(element_type: ElementType, bytes: &[u8]) -> Result<RawBson, CorruptBson> {
        // A one-element document with an empty key around the value: the `bson` crate reads whole documents.
        let len = i32::try_from(bytes.len() + 7).map_err(CorruptBson::new)?;
        let mut doc = Vec::with_capacity(bytes.len() + 7);
        doc.extend_from_slice(&len.to_le_bytes());
        doc.extend_from_slice(&[element_type as u8, 0]);
        doc.extend_from_slice(bytes);
        doc.push(0);
        let doc = RawDocument::from_bytes(&doc).map_err(CorruptBson::new)?;
        match doc.iter().next() {
            Some(Ok((_, value))) => Ok(value.to_raw_bson()),
            Some(Err(e)) => Err(CorruptBson::new(e)),
            None => Err(CorruptBson::new("empty element")),
        }
    }
}

/// A document's (or array's) bytes, its length prefix and terminator checked.
#[derive(Debug, Clone, Copy)]
pub struct Doc<'d>(&'d [u8]);

impl<'d> Doc<'d> {
    pub fn new(bytes: &'d [u8]) -> Result<Doc<'d>, CorruptBson> {
        match length_at(bytes) {
            Ok(len) if len == bytes.len() && len >= 5 && bytes[len - 1] == 0 => Ok(Doc(bytes)),
            _ => Err(CorruptBson::new("document length does not match its bytes")),
        }
    }

    pub fn as_bytes(self) -> &'d [u8] {
        self.0
    }

    pub fn elements(self) -> Elements<'d> {
        // `new` guarantees at least the 4-byte prefix and the terminating NUL.
        Elements { rest: &self.0[4..self.0.len() - 1] }
    }
}

impl<'d> From<&'d RawDocument> for Doc<'d> {
    /// The `bson` crate checked the framing of a `RawDocument` when it was made.
    fn from(doc: &'d RawDocument) -> Doc<'d> {
        Doc(doc.as_bytes())
    }
}

/// The elements of a document in stored order: key bytes (not yet checked as UTF-8) and value.
pub struct Elements<'d> {
    rest: &'d [u8],
}

impl<'d> Iterator for Elements<'d> {
    type Item = Result<(&'d [u8], Value<'d>), CorruptBson>;

    // Inlined into the writer's loops so an element comes back in registers and its type is matched once,
    // not returned through memory and matched again (bench `payload_steps`, `stored_order_text`).
    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let element = self.read();
        if element.is_err() {
            self.rest = &[];
        }
        Some(element)
    }
}

impl<'d> Elements<'d> {
    #[inline(always)]
    fn read(&mut self) -> Result<(&'d [u8], Value<'d>), CorruptBson> {
        let (&type_byte, rest) = self.rest.split_first().ok_or_else(|| truncated("element"))?;
        let element_type =
            ElementType::from(type_byte).ok_or_else(|| CorruptBson::new(format!("unknown element type {type_byte:#04x}")))?;
        let (key, rest) = cstring(rest)?;
        let size = match element_type {
            ElementType::Double | ElementType::DateTime | ElementType::Timestamp | ElementType::Int64 => 8,
            ElementType::String | ElementType::JavaScriptCode | ElementType::Symbol => 4 + length_at(rest)?,
            ElementType::EmbeddedDocument | ElementType::Array | ElementType::JavaScriptCodeWithScope => length_at(rest)?,
            ElementType::Binary => 5 + length_at(rest)?,
            ElementType::Undefined | ElementType::Null | ElementType::MaxKey | ElementType::MinKey => 0,
            ElementType::ObjectId => 12,
            ElementType::Boolean => 1,
            ElementType::Int32 => 4,
            ElementType::Decimal128 => 16,
            ElementType::RegularExpression => {
                let (_, after_pattern) = cstring(rest)?;
                let (_, after_options) = cstring(after_pattern)?;
                rest.len() - after_options.len()
            }
            ElementType::DbPointer => 4 + length_at(rest)? + 12,
        };
        let value = rest.get(..size).ok_or_else(|| truncated("value"))?;
        self.rest = &rest[size..];
        let value = match element_type {
            ElementType::Double => Value::Double(f64::from_le_bytes(fixed(value)?)),
            ElementType::String => Value::String(string_body(value)?),
            ElementType::EmbeddedDocument => Value::Document(Doc::new(value)?),
            ElementType::Array => Value::Array(Doc::new(value)?),
            ElementType::Undefined => Value::Undefined,
            ElementType::Boolean => match value[0] {
                0 => Value::Boolean(false),
                1 => Value::Boolean(true),
                _ => return Err(CorruptBson::new("boolean is neither 0 nor 1")),
            },
            ElementType::Null => Value::Null,
            ElementType::Int32 => Value::Int32(i32::from_le_bytes(fixed(value)?)),
            ElementType::Int64 => Value::Int64(i64::from_le_bytes(fixed(value)?)),
            other => Value::Other(other, value),
        };
        Ok((key, value))
    }
}

/// The little-endian i32 length at the start of `bytes`, as a size.
fn length_at(bytes: &[u8]) -> Result<usize, CorruptBson> {
    let len = i32::from_le_bytes(fixed(bytes.get(..4).ok_or_else(|| truncated("length"))?)?);
    usize::try_from(len).map_err(|_| CorruptBson::new(format!("negative length {len}")))
}

fn fixed<const N: usize>(bytes: &[u8]) -> Result<[u8; N], CorruptBson> {
    bytes.try_into().map_err(|_| truncated("value"))
}

/// A NUL-terminated string and what follows it.
fn cstring(bytes: &[u8]) -> Result<(&[u8], &[u8]), CorruptBson> {
    let nul = bytes.iter().position(|&b| b == 0).ok_or_else(|| truncated("key"))?;
    Ok((&bytes[..nul], &bytes[nul + 1..]))
}

/// A BSON string's text: the bytes between its length prefix and its terminating NUL.
fn string_body(value: &[u8]) -> Result<&[u8], CorruptBson> {
    match value.split_last() {
        Some((0, body)) if body.len() >= 4 => Ok(&body[4..]),
        _ => Err(CorruptBson::new("string is not NUL-terminated")),
    }
}

fn truncated(what: &str) -> CorruptBson {
    CorruptBson::new(format!("truncated {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, oid::ObjectId, Binary, Bson, DateTime, RawDocumentBuf, Regex, Timestamp};

    fn elements(doc: &RawDocumentBuf) -> Vec<(String, String)> {
        Doc::new(doc.as_bytes())
            .unwrap()
            .elements()
            .map(|e| e.map(|(k, v)| (String::from_utf8(k.to_vec()).unwrap(), format!("{v:?}"))))
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn frames_every_bson_type_as_the_bson_crate_does() {
        let doc = doc! {
            "d": 1.5, "s": "é", "o": { "a": 1_i32 }, "a": [true, false], "bin": Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![1, 2] },
            "u": Bson::Undefined, "oid": ObjectId::new(), "dt": DateTime::from_millis(5), "n": Bson::Null,
            "re": Regex { pattern: "a+".into(), options: "i".into() }, "i": 7_i32, "ts": Timestamp { time: 1, increment: 2 },
            "l": 8_i64, "min": Bson::MinKey, "max": Bson::MaxKey, "last": "x",
        };
        let raw = RawDocumentBuf::from_document(&doc).unwrap();
        let seen = elements(&raw);
        let keys: Vec<_> = seen.iter().map(|(k, _)| k.as_str()).collect();
        let expected: Vec<_> = doc.keys().map(String::as_str).collect();
        assert_eq!(keys, expected);
        // Values of other types decode through the bson crate to what was stored.
        for (key, value) in Doc::new(raw.as_bytes()).unwrap().elements().map(Result::unwrap) {
            if let Value::Other(element_type, bytes) = value {
                let key = std::str::from_utf8(key).unwrap();
                let decoded = Value::decode_other(element_type, bytes).unwrap();
                assert_eq!(Bson::try_from(decoded).unwrap(), doc.get(key).unwrap().clone(), "{key}");
            }
        }
    }

    #[test]
    fn every_truncation_and_bad_length_is_an_error_not_a_panic() {
        let raw = RawDocumentBuf::from_document(&doc! { "s": "text", "o": { "n": [1_i32, 2.5] }, "b": true }).unwrap();
        let bytes = raw.as_bytes();
        fn walk(doc: Doc<'_>) -> Result<(), CorruptBson> {
            for element in doc.elements() {
                match element?.1 {
                    Value::Document(d) | Value::Array(d) => walk(d)?,
                    _ => {}
                }
            }
            Ok(())
        }
        assert!(walk(Doc::new(bytes).unwrap()).is_ok());
        // Every single-byte change either still frames or fails cleanly; every truncation fails.
        for i in 0..bytes.len() {
            for flip in [0x00, 0x01, 0x7f, 0xff] {
                let mut changed = bytes.to_vec();
                changed[i] ^= flip;
                if let Ok(doc) = Doc::new(&changed) {
                    let _ = walk(doc);
                }
            }
            assert!(Doc::new(&bytes[..i]).is_err());
        }
    }
}
