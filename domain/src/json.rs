//! JSON text from stored BSON, printed the way JavaScript prints it.
//!
//! RFC 8785 (JCS) is `JSON.stringify`'s formatting with object members sorted by UTF-16 code units, so one
//! writer produces both hash forms found in the collection — stored member order for the Node service's
//! `JSON.stringify(payload)`, sorted for `sha256-jcs` — and the read responses, which carry exactly the
//! text that was hashed. It walks the raw BSON of the MongoDB reply: no `Document` is built on a read.
//!
//! The `serde_json_canonicalizer` crate is the reference this writer is tested (and fuzzed) against; it is
//! not used here because it buffers and re-parses every member (26 µs for a 2 KiB payload, `bench/profile.md`).

use std::cmp::Ordering;

use mongodb::bson::{Bson, RawArray, RawBsonRef, RawDocument};

/// How object members are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberOrder {
    /// As stored: `JSON.stringify` of the document as the Node driver reads it.
    Stored,
    /// RFC 8785: sorted by UTF-16 code units; only JSON values are allowed.
    Canonical,
}

/// Why a stored value cannot be printed in the requested form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotJson {
    #[error("invalid BSON: {0}")]
    Corrupt(String),
    #[error("a {0} has no canonical JSON form")]
    Type(&'static str),
    #[error("member {0:?} appears twice")]
    DuplicateKey(String),
}

impl NotJson {
    pub(crate) fn corrupt(error: impl std::fmt::Display) -> NotJson {
        NotJson::Corrupt(error.to_string())
    }
}

/// Appends the JSON text of `doc` to `out`. In [`MemberOrder::Stored`] every BSON value has a text (as
/// js-bson's `toJSON` gives it); [`MemberOrder::Canonical`] refuses values JSON cannot carry.
pub fn write_document(doc: &RawDocument, order: MemberOrder, out: &mut Vec<u8>) -> Result<(), NotJson> {
    // One buffer for the members of every object being sorted, used as a stack by the recursion.
    let mut members = Vec::new();
    write_object(doc, order, out, &mut members)
}

/// Appends the JSON text of any stored value (see [`write_document`]).
pub fn write_value(value: RawBsonRef<'_>, order: MemberOrder, out: &mut Vec<u8>) -> Result<(), NotJson> {
    write_any(value, order, out, &mut Vec::new())
}

/// Appends a JSON string (quotes and escapes as `JSON.stringify` and RFC 8785 write them).
pub fn write_str(value: &str, out: &mut Vec<u8>) {
    // serde_json escapes exactly `"`, `\` and control characters (short forms, else \u00xx), as both do;
    // writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// Appends a JavaScript number's text: integers as digits, everything else as `Number.prototype.toString`.
pub fn write_i64(value: i64, out: &mut Vec<u8>) {
    // Beyond 2^53 JavaScript holds (and prints) the nearest double.
    if value.unsigned_abs() <= 1 << 53 {
        out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    } else {
        write_f64(value as f64, out);
    }
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

type Members<'d> = Vec<(&'d str, RawBsonRef<'d>)>;

fn write_object<'d>(doc: &'d RawDocument, order: MemberOrder, out: &mut Vec<u8>, members: &mut Members<'d>) -> Result<(), NotJson> {
    out.push(b'{');
    match order {
        MemberOrder::Stored => {
            let mut first = true;
            for element in doc {
                let (key, value) = element.map_err(NotJson::corrupt)?;
                // JSON.stringify leaves out `undefined` members.
                if matches!(value, RawBsonRef::Undefined) {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                write_member(key, value, order, out, members)?;
            }
        }
        MemberOrder::Canonical => {
            let start = members.len();
            for element in doc {
                let (key, value) = element.map_err(NotJson::corrupt)?;
                if !matches!(value, RawBsonRef::Undefined) {
                    members.push((key, value));
                }
            }
            members[start..].sort_unstable_by(|a, b| utf16_order(a.0, b.0));
            for i in start..members.len() {
                let (key, value) = members[i];
                if i > start {
                    if members[i - 1].0 == key {
                        return Err(NotJson::DuplicateKey(key.to_owned()));
                    }
                    out.push(b',');
                }
                write_member(key, value, order, out, members)?;
            }
            members.truncate(start);
        }
    }
    out.push(b'}');
    Ok(())
}

fn write_member<'d>(
    key: &str,
    value: RawBsonRef<'d>,
    order: MemberOrder,
    out: &mut Vec<u8>,
    members: &mut Members<'d>,
) -> Result<(), NotJson> {
    write_str(key, out);
    out.push(b':');
    write_any(value, order, out, members)
}

fn write_array<'d>(items: &'d RawArray, order: MemberOrder, out: &mut Vec<u8>, members: &mut Members<'d>) -> Result<(), NotJson> {
    out.push(b'[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match item.map_err(NotJson::corrupt)? {
            // In arrays, `undefined` prints as null.
            RawBsonRef::Undefined => out.extend_from_slice(b"null"),
            value => write_any(value, order, out, members)?,
        }
    }
    out.push(b']');
    Ok(())
}

fn write_any<'d>(value: RawBsonRef<'d>, order: MemberOrder, out: &mut Vec<u8>, members: &mut Members<'d>) -> Result<(), NotJson> {
    let canonical = order == MemberOrder::Canonical;
    match value {
        RawBsonRef::Document(doc) => write_object(doc, order, out, members)?,
        RawBsonRef::Array(items) => write_array(items, order, out, members)?,
        RawBsonRef::String(s) => write_str(s, out),
        RawBsonRef::Boolean(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        RawBsonRef::Null | RawBsonRef::Undefined => out.extend_from_slice(b"null"),
        RawBsonRef::Int32(v) => write_i64(v.into(), out),
        RawBsonRef::Int64(v) => write_i64(v, out),
        RawBsonRef::Double(v) if canonical && !v.is_finite() => return Err(NotJson::Type("non-finite number")),
        RawBsonRef::Double(v) => write_f64(v, out),
        _ if canonical => return Err(NotJson::Type(type_name(value))),
        RawBsonRef::Symbol(s) => write_str(s, out),
        // Date.prototype.toJSON and ObjectId.prototype.toJSON both print a string.
        RawBsonRef::DateTime(at) => match at.try_to_rfc3339_string() {
            Ok(_) => write_str(&crate::clock::format_rfc3339_millis(at), out),
            Err(_) => out.extend_from_slice(b"null"),
        },
        RawBsonRef::ObjectId(oid) => write_str(&oid.to_hex(), out),
        // Other BSON types never come from JSON; js-bson prints their extended JSON.
        other => {
            let value = Bson::try_from(other.to_raw_bson()).map_err(NotJson::corrupt)?.into_relaxed_extjson();
            let _ = serde_json::to_writer(&mut *out, &value);
        }
    }
    Ok(())
}

/// RFC 8785 §3.2.3 orders members by their names' UTF-16 code units. For ASCII names that is byte order.
fn utf16_order(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.cmp(b)
    } else {
        a.encode_utf16().cmp(b.encode_utf16())
    }
}

fn type_name(value: RawBsonRef<'_>) -> &'static str {
    match value {
        RawBsonRef::DateTime(_) => "date",
        RawBsonRef::ObjectId(_) => "ObjectId",
        RawBsonRef::Symbol(_) => "symbol",
        RawBsonRef::Binary(_) => "binary",
        RawBsonRef::Decimal128(_) => "decimal128",
        RawBsonRef::Timestamp(_) => "timestamp",
        RawBsonRef::RegularExpression(_) => "regular expression",
        _ => "non-JSON BSON value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{doc, oid::ObjectId, DateTime, RawDocumentBuf};

    fn text(doc: &mongodb::bson::Document, order: MemberOrder) -> Result<String, NotJson> {
        let raw = RawDocumentBuf::from_document(doc).unwrap();
        let mut out = Vec::new();
        write_document(&raw, order, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn stored_order_is_json_stringify() {
        let payload = doc! {
            "pass_uuid": "uuid-1", "fare": { "amount": 2.75, "currency": "USD" }, "rides": 1_i32, "valid": true,
            "activation": { "start": 1_732_400_000_001_i64, "end": Bson::Null }, "tags": ["a", "b"],
        };
        let expected = r#"{"pass_uuid":"uuid-1","fare":{"amount":2.75,"currency":"USD"},"rides":1,"valid":true,"activation":{"start":1732400000001,"end":null},"tags":["a","b"]}"#;
        assert_eq!(text(&payload, MemberOrder::Stored).unwrap(), expected);
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
            (Bson::Int64(9_007_199_254_740_993), "9007199254740992"),
            (Bson::Int32(-5), "-5"),
            (Bson::String("a\"b\\c\n\u{1}é\u{2028}".into()), "\"a\\\"b\\\\c\\n\\u0001é\u{2028}\""),
        ];
        for (value, expected) in cases {
            assert_eq!(text(&doc! { "v": value.clone() }, MemberOrder::Stored).unwrap(), format!("{{\"v\":{expected}}}"), "{value:?}");
        }
    }

    #[test]
    fn undefined_is_dropped_from_objects_and_null_in_arrays() {
        let payload = doc! { "a": Bson::Undefined, "b": [Bson::Undefined, 1_i32] };
        assert_eq!(text(&payload, MemberOrder::Stored).unwrap(), r#"{"b":[null,1]}"#);
        assert_eq!(text(&payload, MemberOrder::Canonical).unwrap(), r#"{"b":[null,1]}"#);
    }

    #[test]
    fn non_json_values_print_as_js_bson_does_and_have_no_canonical_form() {
        let at = DateTime::from_millis(1_732_400_000_001);
        let oid = ObjectId::parse_str("65a1b2c3d4e5f60718293a4b").unwrap();
        let payload = doc! { "at": at, "id": oid };
        assert_eq!(text(&payload, MemberOrder::Stored).unwrap(), r#"{"at":"2024-11-23T22:13:20.001Z","id":"65a1b2c3d4e5f60718293a4b"}"#);
        assert_eq!(text(&payload, MemberOrder::Canonical), Err(NotJson::Type("date")));
        assert!(text(&doc! { "n": f64::INFINITY }, MemberOrder::Canonical).is_err());
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
        let stored = mongodb::bson::to_document(&input).unwrap();
        assert_eq!(text(&stored, MemberOrder::Canonical).unwrap(), expected);
    }

    #[test]
    fn duplicate_members_have_no_canonical_form() {
        let mut raw = RawDocumentBuf::new();
        raw.append("a", 1_i32);
        raw.append("a", 2_i32);
        let mut out = Vec::new();
        assert_eq!(write_document(&raw, MemberOrder::Canonical, &mut out), Err(NotJson::DuplicateKey("a".into())));
    }
}
