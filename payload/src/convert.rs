//! A payload's JSON text to what a write stores, in one pass of the JSON parser: its BSON (members in the
//! client's order) and the SHA-256 of its RFC 8785 text.
//!
//! Printing the canonical text back from the BSON (what reads do, `text.rs`) would walk every payload a
//! second time. Here each parser event writes both forms at once; when an object closes whose members did
//! not arrive in RFC 8785 order, their texts — already written — are moved into order, so sorting moves
//! bytes, not values. The rules of what may be stored (`rules.rs`) are checked as the events arrive. Numbers and strings are printed by the same functions reads
//! use, and the tests below and the `canonical_hashing` fuzz target hold the text to what reads print.

use std::fmt;

use bson::spec::ElementType;
use bson::RawDocumentBuf;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use sha2::{Digest, Sha256};

use crate::rules::{self, Violation};
use crate::text;

/// A payload as a write stores it: its BSON, its JCS hash and the length of its canonical text.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertedPayload {
    pub bson: RawDocumentBuf,
    /// Lower-case hex SHA-256 of the RFC 8785 text.
    pub jcs_hash: String,
    pub canonical_len: usize,
}

/// Why a payload's text cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Rule(#[from] Violation),
    /// Not JSON, or not a JSON object: the parser's message.
    #[error("{0}")]
    Json(String),
    #[error("{0} too large for BSON")]
    TooLarge(&'static str),
}

/// Converts a payload (the text of a JSON object) and hashes its canonical text. Objects and arrays may
/// nest `max_depth` levels, the payload itself being the first.
pub fn convert_payload(payload: &str, max_depth: usize) -> Result<ConvertedPayload, ConvertError> {
    let mut converter = Converter {
        bson: Vec::with_capacity(payload.len() + payload.len() / 4 + 64),
        text: Vec::with_capacity(payload.len()),
        // Sized up front: growing them payload after payload showed in bench `payload_steps`,
        // `convert_and_hash` (malloc, realloc).
        members: Vec::with_capacity(32),
        scratch: Vec::with_capacity(payload.len()),
        depth: 0,
        max_depth,
        broken: None,
    };
    let mut parser = serde_json::Deserializer::from_str(payload);
    let parsed = ValueSeed { converter: &mut converter, element_type_at: None }.deserialize(&mut parser).and_then(|()| parser.end());
    if let Err(e) = parsed {
        return Err(converter.broken.take().unwrap_or_else(|| ConvertError::Json(e.to_string())));
    }
    let Converter { bson, text, .. } = converter;
    let bson = RawDocumentBuf::from_bytes(bson).map_err(|e| ConvertError::Json(e.to_string()))?;
    let jcs_hash = hex::encode(Sha256::digest(&text));
    Ok(ConvertedPayload { bson, jcs_hash, canonical_len: text.len() })
}

/// The two outputs being written, and the rules.
struct Converter {
    bson: Vec<u8>,
    /// The canonical text.
    text: Vec<u8>,
    /// The members of the objects being written, innermost object last.
    members: Vec<Member>,
    /// Where an object's members are put in order.
    scratch: Vec<u8>,
    /// Objects and arrays open (the payload itself is 1).
    depth: usize,
    max_depth: usize,
    /// Why the payload cannot be stored: the parser's error type carries only a message.
    broken: Option<ConvertError>,
}

/// One object member: its name (a range of `bson`, where it is already written) and its text (a range
/// of `text`: `"name":value`).
#[derive(Debug, Clone, Copy)]
struct Member {
    name: (usize, usize),
    ascii: bool,
    text: (usize, usize),
}

impl Converter {
    /// Records why the payload cannot be stored and stops the parser.
    fn stop<E: de::Error>(&mut self, broken: impl Into<ConvertError>) -> E {
        self.broken = Some(broken.into());
        E::custom("the payload cannot be stored")
    }

    fn enter<E: de::Error>(&mut self) -> Result<(), E> {
        self.depth += 1;
        rules::check_depth(self.depth, self.max_depth).map_err(|broken| self.stop(broken))
    }

    /// Starts a document or array: room for its length.
    fn open_bson(&mut self) -> usize {
        let start = self.bson.len();
        self.bson.extend_from_slice(&[0; 4]);
        start
    }

    /// Ends the document or array started at `start`: its terminator and its length.
    fn close_bson<E: de::Error>(&mut self, start: usize) -> Result<(), E> {
        self.bson.push(0);
        let Ok(len) = i32::try_from(self.bson.len() - start) else {
            return Err(self.stop(ConvertError::TooLarge("document")));
        };
        self.bson[start..start + 4].copy_from_slice(&len.to_le_bytes());
        Ok(())
    }

    /// Puts the members of the object whose text starts at `open` (its `{`) in RFC 8785 order.
    fn order_members<E: de::Error>(&mut self, open: usize, first: usize) -> Result<(), E> {
        let bson = &self.bson;
        let name = |member: &Member| &bson[member.name.0..member.name.1];
        let order = |a: &Member, b: &Member| text::member_order(name(a), name(b), a.ascii || b.ascii);
        let members = &mut self.members[first..];
        if !members.windows(2).all(|pair| order(&pair[0], &pair[1]).is_lt()) {
            members.sort_unstable_by(order);
            if let Some(pair) = members.windows(2).find(|pair| name(&pair[0]) == name(&pair[1])) {
                let name = String::from_utf8_lossy(name(&pair[0])).into_owned();
                return Err(self.stop(Violation::RepeatedName(name)));
            }
            self.scratch.clear();
            for (i, member) in members.iter().enumerate() {
                if i > 0 {
                    self.scratch.push(b',');
                }
                self.scratch.extend_from_slice(&self.text[member.text.0..member.text.1]);
            }
            self.text.truncate(open + 1);
            self.text.extend_from_slice(&self.scratch);
        }
        self.members.truncate(first);
        Ok(())
    }
}

/// One value; it sets its element type at `element_type_at` of the BSON (`None` for the payload itself,
/// which must be an object).
struct ValueSeed<'c> {
    converter: &'c mut Converter,
    element_type_at: Option<usize>,
}

impl ValueSeed<'_> {
    fn element<E: de::Error>(&mut self, element_type: ElementType) -> Result<(), E> {
        match self.element_type_at {
            Some(at) => {
                self.converter.bson[at] = element_type as u8;
                Ok(())
            }
            None => Err(E::invalid_type(de::Unexpected::Other("a value that is not an object"), &"a JSON object")),
        }
    }

    fn integer<E: de::Error>(mut self, value: Result<i64, Violation>) -> Result<(), E> {
        let value = value.map_err(|broken| self.converter.stop(broken))?;
        self.element(ElementType::Int64)?;
        self.converter.bson.extend_from_slice(&value.to_le_bytes());
        text::write_i64(value, &mut self.converter.text);
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(mut self, value: bool) -> Result<(), E> {
        self.element(ElementType::Boolean)?;
        self.converter.bson.push(u8::from(value));
        self.converter.text.extend_from_slice(if value { b"true" } else { b"false" });
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<(), E> {
        self.integer(rules::safe_integer(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<(), E> {
        self.integer(rules::safe_unsigned(value))
    }

    fn visit_f64<E: de::Error>(mut self, value: f64) -> Result<(), E> {
        self.element(ElementType::Double)?;
        self.converter.bson.extend_from_slice(&value.to_le_bytes());
        text::write_f64(value, &mut self.converter.text);
        Ok(())
    }

    fn visit_str<E: de::Error>(mut self, value: &str) -> Result<(), E> {
        self.element(ElementType::String)?;
        let Ok(len) = i32::try_from(value.len() + 1) else {
            return Err(self.converter.stop(ConvertError::TooLarge("string")));
        };
        let bson = &mut self.converter.bson;
        bson.extend_from_slice(&len.to_le_bytes());
        bson.extend_from_slice(value.as_bytes());
        bson.push(0);
        text::write_str(value, &mut self.converter.text);
        Ok(())
    }

    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.element(ElementType::Null)?;
        self.converter.text.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut items: A) -> Result<(), A::Error> {
        self.element(ElementType::Array)?;
        let c = self.converter;
        c.enter()?;
        let start = c.open_bson();
        c.text.push(b'[');
        let mut index = itoa::Buffer::new();
        for i in 0_usize.. {
            // Each item is an element keyed by its index; its type is set once the item is read.
            let element_type_at = c.bson.len();
            c.bson.push(0);
            c.bson.extend_from_slice(index.format(i).as_bytes());
            c.bson.push(0);
            let text_at = c.text.len();
            if i > 0 {
                c.text.push(b',');
            }
            if items.next_element_seed(ValueSeed { converter: &mut *c, element_type_at: Some(element_type_at) })?.is_none() {
                c.bson.truncate(element_type_at);
                c.text.truncate(text_at);
                break;
            }
        }
        c.close_bson(start)?;
        c.text.push(b']');
        c.depth -= 1;
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        if self.element_type_at.is_some() {
            self.element(ElementType::EmbeddedDocument)?;
        }
        let c = self.converter;
        c.enter()?;
        let start = c.open_bson();
        let open = c.text.len();
        c.text.push(b'{');
        let first = c.members.len();
        loop {
            let element_type_at = c.bson.len();
            c.bson.push(0);
            let comma = c.members.len() > first;
            let Some((name, ascii, text_start)) = map.next_key_seed(NameSeed { converter: &mut *c, comma })? else {
                c.bson.truncate(element_type_at);
                break;
            };
            map.next_value_seed(ValueSeed { converter: &mut *c, element_type_at: Some(element_type_at) })?;
            c.members.push(Member { name, ascii, text: (text_start, c.text.len()) });
        }
        c.close_bson(start)?;
        c.order_members(open, first)?;
        c.text.push(b'}');
        c.depth -= 1;
        Ok(())
    }
}

/// A member name: checked, written into the BSON as the element's key and into the text (after a comma
/// unless it is the object's first). Gives back where the name is in the BSON, whether it is ASCII, and
/// where its text starts.
struct NameSeed<'c> {
    converter: &'c mut Converter,
    comma: bool,
}

impl<'de> DeserializeSeed<'de> for NameSeed<'_> {
    type Value = ((usize, usize), bool, usize);

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for NameSeed<'_> {
    type Value = ((usize, usize), bool, usize);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Self::Value, E> {
        let c = self.converter;
        rules::check_name(name).map_err(|broken| c.stop(broken))?;
        let at = c.bson.len();
        c.bson.extend_from_slice(name.as_bytes());
        c.bson.push(0);
        if self.comma {
            c.text.push(b',');
        }
        let text_start = c.text.len();
        text::write_str(name, &mut c.text);
        c.text.push(b':');
        Ok(((at, at + name.len()), name.is_ascii(), text_start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{self, HashForm};
    use crate::text::TextForm;

    /// The depth the service allows (`domain`'s `Limits::max_payload_depth`).
    const MAX_DEPTH: usize = 16;

    fn convert(text: &str) -> Result<ConvertedPayload, ConvertError> {
        convert_payload(text, MAX_DEPTH)
    }

    /// Payloads that exercise every value type, member order by UTF-16 code units (not bytes or code
    /// points), escapes, JavaScript number printing, and objects inside arrays inside objects.
    const PAYLOADS: [&str; 6] = [
        r#"{"b": 1, "a": [1.5, "x", null, true, false, {"z": -2, "y": {}}], "c": []}"#,
        r#"{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001, -0, -0.0, 1e21, 5e-324],
            "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
            "\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Dalet", "1": "One",
            "\ud83d\ude00": "Emoji", "\u0080": "Control", "\u00f6": "o", "\ue000": "private use"}"#,
        r#"{"z": {"y": {"x": [{"w": 1, "v": 2}, [3, {"u": 4, "t": 5}]]}}, "nul": "a\u0000b", "big": 9007199254740991, "neg": -9007199254740991}"#,
        r#"{"already": 1, "in": 2, "order": 3}"#,
        r#"{}"#,
        r#"{"stops": [{"stop_id": "S0001", "name": "Station \"1\"", "zone": 1}], "signature": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#,
    ];

    #[test]
    fn the_text_is_what_reads_print_and_what_the_reference_prints() {
        for text in PAYLOADS {
            let converted = convert(text).unwrap();
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            // The BSON is what the `bson` crate writes for the same JSON, members in the client's order.
            let expected = bson::to_vec(&value).unwrap();
            assert_eq!(converted.bson.as_bytes(), expected.as_slice(), "{text}");
            // The hash is over the text reads print from that BSON, which the reference canonicalizer agrees with.
            let mut printed = Vec::new();
            let digest = hash::write_and_digest(&converted.bson, HashForm::Jcs, &mut printed).unwrap();
            assert_eq!(converted.jcs_hash, hex::encode(digest), "{text}");
            assert_eq!(converted.canonical_len, printed.len());
            assert_eq!(printed, serde_json_canonicalizer::to_vec(&value).unwrap(), "{text}");
            let mut stored_order = Vec::new();
            text::write_document(&converted.bson, TextForm::JsonStringify, &mut stored_order).unwrap();
            // Printed in the client's member order, it is the same JSON (numbers as JavaScript prints them).
            let reread: serde_json::Value = serde_json::from_slice(&stored_order).unwrap();
            assert!(reread.as_object().unwrap().keys().eq(value.as_object().unwrap().keys()), "{text}");
            assert_eq!(serde_json_canonicalizer::to_vec(&reread).unwrap(), printed, "{text}");
        }
    }

    #[test]
    fn every_rule_is_named() {
        let reason = |text: &str| match convert(text) {
            Err(ConvertError::Rule(Violation::ForbiddenName(name))) => format!("forbidden {name}"),
            Err(e) => e.to_string(),
            other => panic!("{text}: {other:?}"),
        };
        assert!(reason(r#"{"a": {"b": 1, "b": 2}}"#).contains("\"b\" appears twice"));
        assert!(reason(r#"{"a": [{"$where": 1}]}"#).contains("forbidden $where"));
        assert!(reason(r#"{"a.b": 1}"#).contains("forbidden a.b"));
        assert!(reason(r#"{"": 1}"#).starts_with("forbidden"));
        assert!(reason(r#"{"n\u0000": 1}"#).starts_with("forbidden"));
        assert!(reason(r#"{"n": 9007199254740992}"#).contains("9007199254740992 is outside"));
        assert!(reason(r#"{"n": [-9007199254740992]}"#).contains("-9007199254740992 is outside"));
        assert!(reason(r#"{"n": 18446744073709551615}"#).contains("outside"));
        let deep = |levels: usize| format!("{}1{}", "[".repeat(levels - 1).replacen('[', "{\"d\":[", 1), "]".repeat(levels - 2) + "]}");
        assert!(convert(&deep(MAX_DEPTH)).is_ok());
        assert_eq!(convert(&deep(MAX_DEPTH + 1)), Err(ConvertError::Rule(Violation::TooDeep(MAX_DEPTH))));
        assert!(matches!(convert("[1]"), Err(ConvertError::Json(_))));
        assert!(matches!(convert(r#"{"a": 1"#), Err(ConvertError::Json(_))));
    }

    /// Number literals against Node's own `JSON.parse` / `JSON.stringify` (`tests/fixtures/number_oracle.json`,
    /// written by `tests/oracle/numbers.mjs`): every finite literal converts to the correctly rounded double
    /// and prints as JavaScript prints it, in both hash forms; literals beyond the double range are refused,
    /// and so are integer literals beyond ±(2^53 - 1) that the parser reads as 64-bit integers (longer ones
    /// reach the conversion as doubles, as `JSON.parse` reads them: the parser keeps no literal text).
    #[test]
    fn numbers_parse_and_print_as_javascript_does() {
        #[derive(serde::Deserialize)]
        struct Oracle {
            cases: Vec<Case>,
        }
        #[derive(serde::Deserialize)]
        struct Case {
            literal: String,
            integer_literal: bool,
            finite: bool,
            json_stringify: String,
        }
        let oracle: Oracle = serde_json::from_str(include_str!("../../tests/fixtures/number_oracle.json")).unwrap();
        assert!(oracle.cases.len() > 400);
        for case in oracle.cases {
            let text = format!(r#"{{"n":{}}}"#, case.literal);
            let safe = case.literal.parse::<i64>().is_ok_and(|v| v.unsigned_abs() <= rules::MAX_SAFE_INTEGER.unsigned_abs());
            let read_as_integer = case.literal.parse::<i64>().is_ok() || case.literal.parse::<u64>().is_ok();
            let refused = !case.finite || (case.integer_literal && read_as_integer && !safe);
            match convert(&text) {
                Ok(converted) if !refused => {
                    let expected = format!(r#"{{"n":{}}}"#, case.json_stringify);
                    for form in [HashForm::Jcs, HashForm::Legacy] {
                        let mut printed = Vec::new();
                        hash::write_and_digest(&converted.bson, form, &mut printed).unwrap();
                        assert_eq!(String::from_utf8(printed).unwrap(), expected, "{} ({form:?})", case.literal);
                    }
                    assert_eq!(converted.jcs_hash, hex::encode(Sha256::digest(expected.as_bytes())), "{}", case.literal);
                }
                Err(ConvertError::Rule(Violation::UnsafeInteger(_)) | ConvertError::Json(_)) if refused => {}
                other => panic!("{}: {other:?} (refused expected: {refused})", case.literal),
            }
        }
    }
}
