//! JSON text from stored BSON, printed the way JavaScript prints it.
//!
//! RFC 8785 (JCS) is `JSON.stringify`'s formatting with object members sorted by UTF-16 code units, so one
//! writer produces both hash forms found in the collection — stored member order for the Node service's
//! `JSON.stringify(payload)`, sorted for `sha256-jcs` — and the read responses, which carry exactly the
//! text that was hashed. It walks the raw BSON of the MongoDB reply: no `Document` is built on a read.
//!
//! Anyone with write access to the collection can store BSON that no JSON text stands for exactly: repeated
//! member names, integers beyond ±2^53, NaN, dates, nesting thousands of levels deep. The two hash forms
//! refuse such values ([`TextError`]), so a hash is only ever compared over text that means one thing to
//! every JSON parser; [`TextForm::Display`] still shows them to clients, once per name and within
//! [`MAX_DEPTH`]. Every walk is depth-bounded, so no stored document can exhaust the stack.
//!
//! The `serde_json_canonicalizer` crate is the reference this writer is tested (and fuzzed) against; it is
//! not used here because it buffers and re-parses every member (bench `payload_steps`).

use std::cmp::Ordering;
use std::collections::HashMap;

use bson::spec::ElementType;
use bson::{Bson, RawBsonRef, RawDocument};

use crate::js_date;
use crate::reader::{CorruptBson, Doc, Value};

/// Nesting levels a printed value may have (objects and arrays): MongoDB's own limit for stored
/// documents. Deeper values exist only where an engine accepts more (DocumentDB does); they are not printed.
pub const MAX_DEPTH: usize = 100;

/// Which text of a stored value to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextForm {
    /// `JSON.stringify(payload)` as the Node service hashed it: stored member order. Only values JSON
    /// represents exactly (no repeated names, no integers beyond ±2^53, no NaN, no BSON-only types).
    JsonStringify,
    /// RFC 8785: members sorted by UTF-16 code units; the same values as [`TextForm::JsonStringify`].
    Canonical,
    /// What a client is shown of a value no hash covers: stored member order, every BSON value as js-bson's
    /// `toJSON` prints it (dates and ObjectIds as strings), a repeated name once (first position, last
    /// value, as a JavaScript object holds it), integers with all their digits. Fails only on corrupt BSON,
    /// invalid UTF-8 and nesting beyond [`MAX_DEPTH`].
    Display,
}

/// Why a stored value has no text in the requested form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error(transparent)]
    Corrupt(#[from] CorruptBson),
    #[error("a {0} has no exact JSON form")]
    NoExactForm(&'static str),
    #[error("member {0:?} appears twice")]
    RepeatedName(String),
    #[error("nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// Appends the JSON text of `doc` to `out`. On error `out` is left as it was.
pub fn write_document(doc: &RawDocument, form: TextForm, out: &mut Vec<u8>) -> Result<(), TextError> {
    let start = out.len();
    let written = Writer::new(form, out).object(Doc::from(doc));
    restore_on_error(written, out, start)
}

/// Appends the JSON text of a value the reader returned (see [`write_document`]).
pub fn write_value(value: Value<'_>, form: TextForm, out: &mut Vec<u8>) -> Result<(), TextError> {
    let start = out.len();
    let written = Writer::new(form, out).value(value);
    restore_on_error(written, out, start)
}

fn restore_on_error(written: Result<(), TextError>, out: &mut Vec<u8>, start: usize) -> Result<(), TextError> {
    if written.is_err() {
        out.truncate(start);
    }
    written
}

/// Appends a JSON string (quotes and escapes as `JSON.stringify` and RFC 8785 write them).
pub fn write_str(value: &str, out: &mut Vec<u8>) {
    if needs_escaping(value.as_bytes()) {
        escaped(value, out);
    } else {
        quoted(value.as_bytes(), out);
    }
}

/// A stored string's bytes as a JSON string: plain ASCII as is, anything else checked as UTF-8 and escaped.
fn write_stored_str(bytes: &[u8], out: &mut Vec<u8>) -> Result<(), TextError> {
    if needs_escaping(bytes) {
        escaped(text(bytes)?, out);
    } else {
        quoted(bytes, out);
    }
    Ok(())
}

fn escaped(value: &str, out: &mut Vec<u8>) {
    // serde_json escapes exactly `"`, `\` and control characters (short forms, else \u00xx), as both
    // do; writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// The largest magnitude up to which every integer is a double: beyond it JavaScript (and so both hash
/// forms) would print a different number than the one stored.
const EXACT_INTEGER_LIMIT: u64 = 1 << 53;

/// Appends an integer's decimal digits, all of them.
pub fn write_i64(value: i64, out: &mut Vec<u8>) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Appends a double as JavaScript prints it; `JSON.stringify` prints non-finite numbers as `null`.
pub fn write_f64(value: f64, out: &mut Vec<u8>) {
    if !value.is_finite() {
        out.extend_from_slice(b"null");
    } else if value == 0.0 {
        out.push(b'0'); // +0 and -0 both print as "0"
    } else {
        out.extend_from_slice(ryu_js::Buffer::new().format_finite(value).as_bytes());
    }
}

/// Whether a string needs more than quotes: a character JSON escapes (`"`, `\`, controls), or non-ASCII
/// text (whose UTF-8 is then checked). Eight bytes at a time, with the classic "has a byte less than /
/// equal to" word tricks, which are exact for "is there any such byte".
fn needs_escaping(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    let mut words = bytes.chunks_exact(8);
    for word in words.by_ref() {
        let mut w = [0; 8];
        w.copy_from_slice(word);
        let x = u64::from_ne_bytes(w);
        // A byte below 0x20 (or 0x80 and above: the high bit) or equal to `"` or `\`.
        let below_space = x.wrapping_sub(ONES * 0x20) & !x & HIGH != 0;
        if below_space || x & HIGH != 0 || has_zero(x ^ (ONES * u64::from(b'"'))) || has_zero(x ^ (ONES * u64::from(b'\\'))) {
            return true;
        }
    }
    // Member names and short strings end here: one table load per byte.
    words.remainder().iter().any(|&b| NEEDS_ESCAPING[usize::from(b)])
}

/// Bytes [`needs_escaping`] looks for, as a table.
const NEEDS_ESCAPING: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = b < 0x20 || b >= 0x80 || b == b'"' as usize || b == b'\\' as usize;
        b += 1;
    }
    table
};

fn quoted(bytes: &[u8], out: &mut Vec<u8>) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    out.extend_from_slice(bytes);
    out.push(b'"');
}

/// Text from stored bytes, checked as UTF-8.
fn text(bytes: &[u8]) -> Result<&str, CorruptBson> {
    std::str::from_utf8(bytes).map_err(CorruptBson::new)
}

/// A stored member name: plain printable ASCII (written between quotes as is), or text that needs
/// escaping or is not ASCII (checked as UTF-8 when read).
#[derive(Debug, Clone, Copy)]
struct Name<'d> {
    bytes: &'d [u8],
    plain: bool,
}

impl<'d> Name<'d> {
    fn new(bytes: &'d [u8]) -> Result<Name<'d>, CorruptBson> {
        let plain = !needs_escaping(bytes);
        if !plain {
            text(bytes)?;
        }
        Ok(Name { bytes, plain })
    }

    fn write(self, out: &mut Vec<u8>) -> Result<(), CorruptBson> {
        if self.plain {
            quoted(self.bytes, out);
        } else {
            escaped(text(self.bytes)?, out);
        }
        Ok(())
    }

    /// RFC 8785 member order (see [`member_order`]); plain names are ASCII.
    fn order(self, other: Name<'_>) -> Ordering {
        member_order(self.bytes, other.bytes, self.plain || other.plain)
    }
}

/// One JSON text being written. `members` holds the members of every object being sorted or collapsed,
/// and `names` the names of every object being checked for repeats, each used as a stack by the recursion
/// so that a text allocates once, not once per object.
struct Writer<'o, 'd> {
    form: TextForm,
    out: &'o mut Vec<u8>,
    members: Vec<(Name<'d>, Value<'d>)>,
    names: Vec<&'d [u8]>,
    depth: usize,
}

impl<'o, 'd> Writer<'o, 'd> {
    fn new(form: TextForm, out: &'o mut Vec<u8>) -> Self {
        Writer { form, out, members: Vec::new(), names: Vec::new(), depth: 0 }
    }

    fn exact(&self) -> bool {
        self.form != TextForm::Display
    }

    fn enter(&mut self) -> Result<(), TextError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(TextError::TooDeep);
        }
        Ok(())
    }

    fn object(&mut self, doc: Doc<'d>) -> Result<(), TextError> {
        self.enter()?;
        self.out.push(b'{');
        match self.form {
            TextForm::JsonStringify => self.stored_order_members(doc)?,
            TextForm::Canonical => self.canonical_members(doc)?,
            TextForm::Display => self.display_members(doc)?,
        }
        self.out.push(b'}');
        self.depth -= 1;
        Ok(())
    }

    /// Members as stored, each name at most once.
    fn stored_order_members(&mut self, doc: Doc<'d>) -> Result<(), TextError> {
        let start = self.names.len();
        for element in doc.elements() {
            let (key, value) = element?;
            if self.names.len() > start {
                self.out.push(b',');
            }
            self.names.push(key);
            self.member(Name::new(key)?, value)?;
        }
        if let Some(name) = repeated_name(&mut self.names[start..]) {
            return Err(TextError::RepeatedName(String::from_utf8_lossy(name).into_owned()));
        }
        self.names.truncate(start);
        Ok(())
    }

    /// Members sorted by RFC 8785's order; a repeated name has no canonical form.
    fn canonical_members(&mut self, doc: Doc<'d>) -> Result<(), TextError> {
        let start = self.members.len();
        for element in doc.elements() {
            let (key, value) = element?;
            self.members.push((Name::new(key)?, value));
        }
        self.members[start..].sort_unstable_by(|a, b| a.0.order(b.0));
        for i in start..self.members.len() {
            let (key, value) = self.members[i];
            if i > start {
                if self.members[i - 1].0.bytes == key.bytes {
                    return Err(TextError::RepeatedName(String::from_utf8_lossy(key.bytes).into_owned()));
                }
                self.out.push(b',');
            }
            self.member(key, value)?;
        }
        self.members.truncate(start);
        Ok(())
    }

    /// Members as stored, `undefined` left out as `JSON.stringify` does, a repeated name once.
    fn display_members(&mut self, doc: Doc<'d>) -> Result<(), TextError> {
        let start = self.members.len();
        for element in doc.elements() {
            let (key, value) = element?;
            if !matches!(value, Value::Undefined) {
                self.members.push((Name::new(key)?, value));
            }
        }
        let kept = last_value_at_first_position(&mut self.members[start..], |member| member.0.bytes);
        let mut first = true;
        for i in start..self.members.len() {
            if !kept[i - start] {
                continue;
            }
            if !first {
                self.out.push(b',');
            }
            first = false;
            let (key, value) = self.members[i];
            self.member(key, value)?;
        }
        self.members.truncate(start);
        Ok(())
    }

    fn member(&mut self, key: Name<'d>, value: Value<'d>) -> Result<(), TextError> {
        key.write(self.out)?;
        self.out.push(b':');
        self.value(value)
    }

    fn array(&mut self, items: Doc<'d>) -> Result<(), TextError> {
        self.enter()?;
        self.out.push(b'[');
        for (i, item) in items.elements().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.value(item?.1)?;
        }
        self.out.push(b']');
        self.depth -= 1;
        Ok(())
    }

    fn value(&mut self, value: Value<'d>) -> Result<(), TextError> {
        match value {
            Value::Document(doc) => self.object(doc),
            Value::Array(items) => self.array(items),
            Value::String(bytes) => write_stored_str(bytes, self.out),
            Value::Boolean(b) => self.scalar(RawBsonRef::Boolean(b)),
            Value::Null => self.scalar(RawBsonRef::Null),
            Value::Undefined => self.scalar(RawBsonRef::Undefined),
            Value::Int32(v) => self.scalar(RawBsonRef::Int32(v)),
            Value::Int64(v) => self.scalar(RawBsonRef::Int64(v)),
            Value::Double(v) => self.scalar(RawBsonRef::Double(v)),
            // Code with scope holds a document: printed by this writer, within its depth bound.
            Value::Other(ElementType::JavaScriptCodeWithScope, bytes) if !self.exact() => self.code_with_scope(bytes),
            Value::Other(element_type, bytes) => self.scalar(Value::decode_other(element_type, bytes)?.as_raw_bson_ref()),
        }
    }

    /// Values other than documents, arrays and strings, as the `bson` crate reads them.
    fn scalar(&mut self, value: RawBsonRef<'_>) -> Result<(), TextError> {
        let exact = self.exact();
        let out = &mut *self.out;
        match value {
            RawBsonRef::Document(_) | RawBsonRef::Array(_) | RawBsonRef::String(_) => {
                return Err(CorruptBson::new("a nested value outside the walk").into());
            }
            RawBsonRef::Boolean(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
            RawBsonRef::Null => out.extend_from_slice(b"null"),
            RawBsonRef::Int32(v) => write_i64(v.into(), out),
            RawBsonRef::Int64(v) if exact && v.unsigned_abs() > EXACT_INTEGER_LIMIT => {
                return Err(TextError::NoExactForm("integer beyond ±2^53"))
            }
            RawBsonRef::Int64(v) => write_i64(v, out),
            RawBsonRef::Double(v) if exact && !v.is_finite() => return Err(TextError::NoExactForm("non-finite number")),
            RawBsonRef::Double(v) => write_f64(v, out),
            _ if exact => return Err(TextError::NoExactForm(type_name(value))),
            // In arrays `undefined` prints as null (objects leave it out before it gets here).
            RawBsonRef::Undefined => out.extend_from_slice(b"null"),
            RawBsonRef::Symbol(s) => write_str(s, out),
            // Date.prototype.toJSON and ObjectId.prototype.toJSON both print a string.
            RawBsonRef::DateTime(at) => match at.try_to_rfc3339_string() {
                Ok(_) => write_str(&js_date::to_iso_string(at), out),
                Err(_) => out.extend_from_slice(b"null"),
            },
            RawBsonRef::ObjectId(oid) => write_str(&oid.to_hex(), out),
            // Other BSON types never come from JSON and hold no document; js-bson prints their extended JSON.
            other => {
                let value = Bson::try_from(other.to_raw_bson()).map_err(CorruptBson::new)?.into_relaxed_extjson();
                let _ = serde_json::to_writer(&mut *out, &value);
            }
        }
        Ok(())
    }

    /// `{"$code": …, "$scope": …}`, extended JSON's form, from the value's bytes: total length, code, scope.
    fn code_with_scope(&mut self, bytes: &'d [u8]) -> Result<(), TextError> {
        let corrupt = || CorruptBson::new("malformed code with scope");
        let code_len = bytes.get(4..8).and_then(|b| <[u8; 4]>::try_from(b).ok()).map(i32::from_le_bytes).ok_or_else(corrupt)?;
        let code_end = usize::try_from(code_len).ok().and_then(|len| len.checked_add(8)).ok_or_else(corrupt)?;
        let code = bytes.get(8..code_end).and_then(|b| b.split_last()).filter(|(nul, _)| **nul == 0).ok_or_else(corrupt)?.1;
        let scope = Doc::new(bytes.get(code_end..).ok_or_else(corrupt)?)?;
        self.out.extend_from_slice(b"{\"$code\":");
        write_stored_str(code, self.out)?;
        self.out.extend_from_slice(b",\"$scope\":");
        self.object(scope)?;
        self.out.push(b'}');
        Ok(())
    }
}

/// A name that appears more than once among `names` (reordered in the search).
fn repeated_name<'d>(names: &mut [&'d [u8]]) -> Option<&'d [u8]> {
    // Objects are small: comparing pairs is cheaper than sorting until a few dozen members.
    if names.len() <= 16 {
        return names.iter().enumerate().find(|(i, a)| names[i + 1..].contains(a)).map(|(_, a)| *a);
    }
    names.sort_unstable();
    names.windows(2).find(|pair| pair[0] == pair[1]).map(|pair| pair[0])
}

/// Collapses repeated names the way a JavaScript object holds them: the first occurrence keeps its
/// position and takes the last occurrence's value. Returns which members remain.
pub fn last_value_at_first_position<T: Copy, K: Eq + std::hash::Hash + Copy>(members: &mut [T], key: impl Fn(&T) -> K) -> Vec<bool> {
    let mut kept = vec![true; members.len()];
    if members.len() < 2 {
        return kept;
    }
    let mut first_at: HashMap<K, usize> = HashMap::with_capacity(members.len());
    for i in 0..members.len() {
        match first_at.entry(key(&members[i])) {
            std::collections::hash_map::Entry::Occupied(first) => {
                members[*first.get()] = members[i];
                kept[i] = false;
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(i);
            }
        }
    }
    kept
}

/// RFC 8785 §3.2.3 orders members by their names' UTF-16 code units. UTF-8 byte order is code point order,
/// which differs from it only between two non-ASCII names (U+E000–U+FFFF against supplementary characters),
/// so when either name is known to be ASCII (`either_ascii`) the bytes are compared as they are.
pub(crate) fn member_order(a: &[u8], b: &[u8], either_ascii: bool) -> Ordering {
    if either_ascii {
        return a.cmp(b);
    }
    match (std::str::from_utf8(a), std::str::from_utf8(b)) {
        (Ok(a), Ok(b)) => a.encode_utf16().cmp(b.encode_utf16()),
        _ => a.cmp(b),
    }
}

fn type_name(value: RawBsonRef<'_>) -> &'static str {
    match value {
        RawBsonRef::Undefined => "undefined",
        RawBsonRef::DateTime(_) => "date",
        RawBsonRef::ObjectId(_) => "ObjectId",
        RawBsonRef::Symbol(_) => "symbol",
        RawBsonRef::Binary(_) => "binary",
        RawBsonRef::Decimal128(_) => "decimal128",
        RawBsonRef::Timestamp(_) => "timestamp",
        RawBsonRef::RegularExpression(_) => "regular expression",
        RawBsonRef::JavaScriptCode(_) | RawBsonRef::JavaScriptCodeWithScope(_) => "JavaScript code",
        _ => "non-JSON BSON value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, oid::ObjectId, DateTime, RawDocumentBuf};

    fn text(doc: &bson::Document, form: TextForm) -> Result<String, TextError> {
        let raw = RawDocumentBuf::from_document(doc).unwrap();
        let mut out = Vec::new();
        write_document(&raw, form, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn stored_order_is_json_stringify() {
        let payload = doc! {
            "pass_uuid": "uuid-1", "fare": { "amount": 2.75, "currency": "USD" }, "rides": 1_i32, "valid": true,
            "activation": { "start": 1_732_400_000_001_i64, "end": Bson::Null }, "tags": ["a", "b"],
        };
        let expected = r#"{"pass_uuid":"uuid-1","fare":{"amount":2.75,"currency":"USD"},"rides":1,"valid":true,"activation":{"start":1732400000001,"end":null},"tags":["a","b"]}"#;
        assert_eq!(text(&payload, TextForm::JsonStringify).unwrap(), expected);
    }

    #[test]
    fn numbers_and_strings_print_as_javascript_does() {
        let cases: &[(Bson, &str)] = &[
            (Bson::Double(1.0), "1"),
            (Bson::Double(-0.0), "0"),
            (Bson::Double(0.1 + 0.2), "0.30000000000000004"),
            (Bson::Double(1e21), "1e+21"),
            (Bson::Double(1e-7), "1e-7"),
            (Bson::Double(123456789012345680000.0), "123456789012345680000"),
            (Bson::Double(f64::NAN), "null"),
            (Bson::Int64(9_007_199_254_740_993), "9007199254740993"),
            (Bson::Int32(-5), "-5"),
            (Bson::String("a\"b\\c\n\u{1}é\u{2028}".into()), "\"a\\\"b\\\\c\\n\\u0001é\u{2028}\""),
        ];
        for (value, expected) in cases {
            assert_eq!(text(&doc! { "v": value.clone() }, TextForm::Display).unwrap(), format!("{{\"v\":{expected}}}"), "{value:?}");
        }
    }

    #[test]
    fn undefined_is_shown_as_json_stringify_does_and_has_no_exact_form() {
        let payload = doc! { "a": Bson::Undefined, "b": [Bson::Undefined, 1_i32] };
        assert_eq!(text(&payload, TextForm::Display).unwrap(), r#"{"b":[null,1]}"#);
        for form in [TextForm::JsonStringify, TextForm::Canonical] {
            assert_eq!(text(&payload, form), Err(TextError::NoExactForm("undefined")));
        }
    }

    #[test]
    fn non_json_values_print_as_js_bson_does_and_have_no_canonical_form() {
        let at = DateTime::from_millis(1_732_400_000_001);
        let oid = ObjectId::parse_str("65a1b2c3d4e5f60718293a4b").unwrap();
        let payload = doc! { "at": at, "id": oid };
        assert_eq!(text(&payload, TextForm::Display).unwrap(), r#"{"at":"2024-11-23T22:13:20.001Z","id":"65a1b2c3d4e5f60718293a4b"}"#);
        for form in [TextForm::JsonStringify, TextForm::Canonical] {
            assert_eq!(text(&payload, form), Err(TextError::NoExactForm("date")));
            assert_eq!(text(&doc! { "n": f64::INFINITY }, form), Err(TextError::NoExactForm("non-finite number")));
            assert_eq!(text(&doc! { "n": f64::NAN }, form), Err(TextError::NoExactForm("non-finite number")));
            assert_eq!(text(&doc! { "n": 9_007_199_254_740_993_i64 }, form), Err(TextError::NoExactForm("integer beyond ±2^53")));
            assert_eq!(text(&doc! { "n": -9_007_199_254_740_992_i64 }, form).unwrap(), r#"{"n":-9007199254740992}"#);
        }
    }

    /// The reference implementation and this writer agree on RFC 8785's own examples and on sorting by
    /// UTF-16 code units (not UTF-8 bytes, not code points).
    #[test]
    fn canonical_order_matches_the_reference_canonicalizer() {
        let input: serde_json::Value = serde_json::from_str(
            r#"{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
                "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
                "literals": [null, true, false],
                "\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
                "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "o",
                "nested": {"z": [1, {"b": 2, "a": 1}], "a": -0.0, "big": 9007199254740991, "e": 1e21}}"#,
        )
        .unwrap();
        let expected = serde_json_canonicalizer::to_string(&input).unwrap();
        assert!(expected.contains(r#""numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27]"#), "{expected}");
        let stored = bson::to_document(&input).unwrap();
        assert_eq!(text(&stored, TextForm::Canonical).unwrap(), expected);
    }

    #[test]
    fn escaping_is_detected_in_every_position() {
        let naive = |bytes: &[u8]| bytes.iter().any(|&b| !(0x20..0x80).contains(&b) || b == b'"' || b == b'\\');
        for len in 0..20 {
            for at in 0..len {
                for b in 0..=255_u8 {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    assert_eq!(needs_escaping(&bytes), naive(&bytes), "{b:#04x} at {at} of {len}");
                }
            }
        }
        let mut out = Vec::new();
        write_str("plain ASCII ~ with DEL \u{7f}", &mut out);
        assert_eq!(out, "\"plain ASCII ~ with DEL \u{7f}\"".as_bytes());
    }

    #[test]
    fn duplicate_members_have_no_canonical_form() {
        let mut raw = RawDocumentBuf::new();
        raw.append("a", 1_i32);
        raw.append("a", 2_i32);
        let mut out = Vec::new();
        assert_eq!(write_document(&raw, TextForm::Canonical, &mut out), Err(TextError::RepeatedName("a".into())));
        assert_eq!(write_document(&raw, TextForm::JsonStringify, &mut out), Err(TextError::RepeatedName("a".into())));
        assert!(out.is_empty(), "a failed write leaves nothing behind");
    }

    /// A JavaScript object holds a repeated name once, where it first appeared, with the last value.
    #[test]
    fn display_shows_a_repeated_name_once_with_its_last_value() {
        let mut inner = RawDocumentBuf::new();
        inner.append("x", 1_i32);
        inner.append("y", true);
        inner.append("x", 3_i32);
        let mut raw = RawDocumentBuf::new();
        raw.append("a", 1_i32);
        raw.append("b", inner);
        raw.append("a", 2_i32);
        let mut out = Vec::new();
        write_document(&raw, TextForm::Display, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"a":2,"b":{"x":3,"y":true}}"#);
        // Many members (past the pairwise search) are checked the same way.
        let mut wide = RawDocumentBuf::new();
        for i in 0..40 {
            wide.append(format!("k{}", i % 30), i);
        }
        let mut out = Vec::new();
        assert!(matches!(write_document(&wide, TextForm::JsonStringify, &mut out), Err(TextError::RepeatedName(_))));
        write_document(&wide, TextForm::Display, &mut out).unwrap();
        let shown: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&out).unwrap();
        assert_eq!((shown.len(), shown["k0"].as_i64(), shown["k29"].as_i64()), (30, Some(30), Some(29)));
    }

    /// Nesting of any depth is refused past the bound in every form, without exhausting the stack.
    #[test]
    fn nesting_past_the_bound_is_refused_not_overflowed() {
        fn nested(levels: usize) -> RawDocumentBuf {
            let mut doc = RawDocumentBuf::new();
            doc.append("leaf", 1_i32);
            for _ in 1..levels {
                let mut outer = RawDocumentBuf::new();
                outer.append("d", doc);
                doc = outer;
            }
            doc
        }
        for form in [TextForm::JsonStringify, TextForm::Canonical, TextForm::Display] {
            let mut out = Vec::new();
            assert_eq!(write_document(&nested(MAX_DEPTH), form, &mut out), Ok(()));
            for levels in [MAX_DEPTH + 1, 10_000] {
                let mut out = Vec::new();
                assert_eq!(write_document(&nested(levels), form, &mut out), Err(TextError::TooDeep), "{levels} levels");
            }
        }
    }
}
