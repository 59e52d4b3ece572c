//! Writes as clients send them, and their validation into what gets stored.
//!
//! Wrong JSON types fail deserialization (the caller reports a bad field); everything that deserializes but
//! breaks a rule fails [`ValidationError`]. Nothing reaches MongoDB before both pass.

use std::collections::HashSet;
use std::fmt;

use mongodb::bson::{self, doc, RawBson, RawDocumentBuf};
use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use utoipa::openapi::schema::{ArrayBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{Ref, RefOr};

use payload::hash::{self, HashForm};
use payload::rules::{self, Violation};
use payload::{convert_payload, ConvertError, ConvertedPayloads, JCS_ALG, MAX_SAFE_INTEGER};

use crate::api_schema;
use crate::config::Limits;
use crate::error::ValidationError;
use crate::schema::{reserved, JsNumber, Millis, PassKind, UserId};

/// A client timestamp: integral milliseconds since the epoch, positive, within JavaScript's safe range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientMillis(pub Millis);

impl<'de> Deserialize<'de> for ClientMillis {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = match JsNumber::deserialize(deserializer)? {
            JsNumber::Int(v) => v,
            JsNumber::Float(_) => return Err(de::Error::custom("timestamp must be whole milliseconds")),
        };
        if !(1..=MAX_SAFE_INTEGER).contains(&value) {
            return Err(de::Error::custom("timestamp must be positive milliseconds since the epoch"));
        }
        Ok(ClientMillis(Millis(value)))
    }
}

impl utoipa::PartialSchema for ClientMillis {
    fn schema() -> RefOr<Schema> {
        api_schema::safe_positive_integer("Milliseconds since the Unix epoch (JavaScript's `Date.now()`), whole and positive.").into()
    }
}

impl utoipa::ToSchema for ClientMillis {}

/// One pass array of a write: at most `max_passes` passes; `null` or absent leaves the stored array alone.
fn pass_array() -> Schema {
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(Ref::from_schema_name(<PassInput as utoipa::ToSchema>::name()))
        .max_items(Some(Limits::default().max_passes))
        .into()
}

/// A pass as a client sends it. Other fields are kept as sent (the Node service's schema is not strict),
/// except the names the service owns (`_id`, `payload_hash_alg`, `integrity`); `pass_uuid` is unique
/// within its array. The server computes the payload hash.
#[derive(Debug, Clone, utoipa::ToSchema)]
pub struct PassInput {
    #[schema(schema_with = api_schema::pass_uuid)]
    pub pass_uuid: String,
    #[schema(schema_with = api_schema::pass_status)]
    pub status: String,
    /// When the pass was written; the update's `timestamp` when absent.
    pub timestamp: Option<ClientMillis>,
    pub free_ticket_status: Option<JsNumber>,
    /// The pass's payload, stored as sent (member order kept; at most 16 levels deep and 16 KiB as
    /// canonical JSON; no member name twice; integers within ±(2^53-1)).
    // Kept as JSON text: validation converts it to BSON and hashes it in one pass, without a JSON tree.
    #[schema(value_type = Object)]
    pub payload: Box<RawValue>,
    /// Optional: when sent, the SHA-256 (hex) of the payload as RFC 8785 canonical JSON or as
    /// `JSON.stringify` prints it; anything else is refused (422 `payload_hash_mismatch`).
    pub payload_hash: Option<String>,
    #[schema(ignore)]
    pub extra: Map<String, Value>,
}

impl<'de> Deserialize<'de> for PassInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(PassInputVisitor)
    }
}

/// Written out rather than derived: `#[serde(flatten)]` (for `extra`) buffers every field, and a buffered
/// field can no longer be read as a `RawValue`.
struct PassInputVisitor;

impl<'de> de::Visitor<'de> for PassInputVisitor {
    type Value = PassInput;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a pass object")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<PassInput, A::Error> {
        fn once<T, E: de::Error>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), E> {
            match slot.replace(value) {
                Some(_) => Err(E::duplicate_field(name)),
                None => Ok(()),
            }
        }
        let (mut pass_uuid, mut status, mut timestamp, mut free_ticket_status, mut payload, mut payload_hash) =
            (None, None, None, None, None, None);
        let mut extra = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "pass_uuid" => once(&mut pass_uuid, map.next_value::<String>()?, "pass_uuid")?,
                "status" => once(&mut status, map.next_value::<String>()?, "status")?,
                "timestamp" => once(&mut timestamp, map.next_value::<Option<ClientMillis>>()?, "timestamp")?,
                "free_ticket_status" => once(&mut free_ticket_status, map.next_value::<Option<JsNumber>>()?, "free_ticket_status")?,
                "payload_hash" => once(&mut payload_hash, map.next_value::<Option<String>>()?, "payload_hash")?,
                "payload" => {
                    let raw = map.next_value::<Box<RawValue>>()?;
                    if !raw.get().trim_start().starts_with('{') {
                        return Err(de::Error::invalid_type(de::Unexpected::Other(raw.get()), &"a JSON object"));
                    }
                    once(&mut payload, raw, "payload")?;
                }
                _ => {
                    let value = map.next_value::<Value>()?;
                    if extra.insert(key.clone(), value).is_some() {
                        return Err(de::Error::custom(format_args!("duplicate field `{key}`")));
                    }
                }
            }
        }
        Ok(PassInput {
            pass_uuid: pass_uuid.ok_or_else(|| de::Error::missing_field("pass_uuid"))?,
            status: status.ok_or_else(|| de::Error::missing_field("status"))?,
            timestamp: timestamp.flatten(),
            free_ticket_status: free_ticket_status.flatten(),
            payload: payload.ok_or_else(|| de::Error::missing_field("payload"))?,
            payload_hash: payload_hash.flatten(),
            extra,
        })
    }
}

/// `PUT` tickets: new contents for one or both pass arrays (at least one of them). Writes are
/// monotonic: an update older than the stored `timestamp` is refused (409).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({ "passes": [
    { "pass_uuid": "p-1", "status": "ACTIVE", "free_ticket_status": 0, "payload": { "fare": { "amount": 2.75, "currency": "USD" }, "rides": 1 } }
], "passes4": [] })))]
pub struct PassUpdate {
    /// The update's time (default: the server's clock), at most `max_clock_skew` ahead of it.
    #[serde(default)]
    pub timestamp: Option<ClientMillis>,
    #[serde(default)]
    #[schema(schema_with = pass_array)]
    pub passes: Option<Vec<PassInput>>,
    #[serde(default)]
    #[schema(schema_with = pass_array)]
    pub passes4: Option<Vec<PassInput>>,
}

impl PassUpdate {
    pub fn passes(&self, kind: PassKind) -> Option<&Vec<PassInput>> {
        match kind {
            PassKind::Passes => self.passes.as_ref(),
            PassKind::Passes4 => self.passes4.as_ref(),
        }
    }
}

// `PassUpdate`'s fields are repeated rather than `#[serde(flatten)]`ed: serde does not support `flatten`
// together with `deny_unknown_fields`, and both types must refuse unknown fields.
/// One user's entry of a bulk `PUT /v1/tickets`: the user and a single `PUT`'s body.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkEntry {
    pub user_id: UserId,
    #[serde(default)]
    pub timestamp: Option<ClientMillis>,
    #[serde(default)]
    #[schema(schema_with = pass_array)]
    pub passes: Option<Vec<PassInput>>,
    #[serde(default)]
    #[schema(schema_with = pass_array)]
    pub passes4: Option<Vec<PassInput>>,
}

impl BulkEntry {
    pub fn into_update(self) -> (UserId, PassUpdate) {
        (self.user_id, PassUpdate { timestamp: self.timestamp, passes: self.passes, passes4: self.passes4 })
    }
}

/// `POST` logs: one error-log entry for one pass kind. The server sets `server_time` and keeps the
/// newest `LOG_CAP` entries; `errors` and `data` together take at most 8 KiB as JSON.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({ "kind": "passes", "errors": [{ "code": "BM_TIMEOUT", "message": "upstream timeout" }], "id": "retry-safe-1" })))]
pub struct LogEntryInput {
    pub kind: PassKind,
    /// The errors, each any JSON value (an error's `code`, or the error itself when it is a string,
    /// is what the error report counts).
    #[schema(schema_with = api_schema::log_errors)]
    pub errors: Vec<Value>,
    #[serde(default)]
    pub data: Option<Map<String, Value>>,
    /// Client-chosen id: an entry whose id is already stored is not appended again (safe retries).
    #[serde(default)]
    #[schema(schema_with = api_schema::log_id)]
    pub id: Option<String>,
}

/// Fields a client may not set inside a pass: the server owns them, or they only exist in responses (a
/// client may send back a pass as it read it).
fn server_owned(key: &str) -> bool {
    matches!(key, "_id" | "payload_hash_alg" | "payload_hash") || reserved::is_reserved(key.as_bytes())
}

/// A validated pass, ready to store: its payload as BSON and its JCS hash computed here.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidPass(pub RawDocumentBuf);

/// Validates one array of passes, computing each payload hash. `default_timestamp` fills passes without one.
pub fn validate_passes(
    kind: PassKind,
    passes: &[PassInput],
    default_timestamp: Millis,
    limits: &Limits,
    converted: &ConvertedPayloads,
) -> Result<Vec<ValidPass>, ValidationError> {
    if passes.len() > limits.max_passes {
        return Err(ValidationError::TooManyPasses { kind: kind.field(), max: limits.max_passes });
    }
    let mut seen = HashSet::with_capacity(passes.len());
    passes
        .iter()
        .enumerate()
        .map(|(index, pass)| {
            let at = |name| PassField { kind, index, name };
            if !seen.insert(pass.pass_uuid.as_str()) {
                return Err(ValidationError::DuplicatePass { pass_uuid: pass.pass_uuid.clone() });
            }
            check_text(&at("pass_uuid"), &pass.pass_uuid, limits.max_pass_uuid_chars)?;
            check_text(&at("status"), &pass.status, limits.max_status_chars)?;
            check_object_keys(&at(""), &pass.extra)?;
            let text = pass.payload.get();
            let payload = match converted.get(text) {
                Some(done) => done,
                None => {
                    let fresh = convert_payload(text, limits.max_payload_depth).map_err(|e| unconvertible(&at("payload"), e))?;
                    converted.remember(text, fresh)
                }
            };
            // The canonical form is the payload's size as stored, give or take BSON framing.
            if payload.canonical_len > limits.max_payload_bytes {
                return Err(ValidationError::PayloadTooLarge { field: at("payload").to_string(), max: limits.max_payload_bytes });
            }
            let hash = payload.jcs_hash.as_str();
            if let Some(sent) = pass.payload_hash.as_deref() {
                let legacy = || hash::hash(&payload.bson, HashForm::Legacy).map(|(hash, _)| hash).unwrap_or_default();
                if !sent.eq_ignore_ascii_case(hash) && !sent.eq_ignore_ascii_case(&legacy()) {
                    return Err(ValidationError::HashMismatch { pass_uuid: pass.pass_uuid.clone() });
                }
            }

            // Room for the payload, the two texts, and 256 bytes for names, the hash and a few vendor fields.
            let mut stored = empty_document(payload.bson.as_bytes().len() + pass.pass_uuid.len() + pass.status.len() + 256);
            stored.append("pass_uuid", pass.pass_uuid.as_str());
            stored.append("timestamp", pass.timestamp.map_or(default_timestamp, |t| t.0).0);
            stored.append("status", pass.status.as_str());
            match pass.free_ticket_status {
                Some(JsNumber::Int(v)) => stored.append("free_ticket_status", v),
                Some(JsNumber::Float(v)) => stored.append("free_ticket_status", v),
                None => stored.append("free_ticket_status", RawBson::Null),
            }
            stored.append_ref("payload", &*payload.bson);
            stored.append("payload_hash", hash);
            stored.append("payload_hash_alg", JCS_ALG);
            for (key, value) in &pass.extra {
                if !server_owned(key) {
                    // The same rules as payload values: names MongoDB can store, bounded nesting, exact integers.
                    check_value(&at(key), value, 1, limits)?;
                    let value = bson::to_bson(value)
                        .and_then(|v| RawBson::try_from(v).map_err(|e| <bson::ser::Error as serde::ser::Error>::custom(e.to_string())))
                        .map_err(|e| ValidationError::Invalid { field: at(key).to_string(), reason: e.to_string() })?;
                    stored.append(key, value);
                }
            }
            Ok(ValidPass(stored))
        })
        .collect()
}

/// An empty document with room for `capacity` bytes: the driver's constructor starts at five bytes, and
/// growing a pass document past its payload reallocated it (bench `request_steps`, `validate_passes`).
fn empty_document(capacity: usize) -> RawDocumentBuf {
    let mut bytes = Vec::with_capacity(capacity);
    bytes.extend_from_slice(RawDocumentBuf::new().as_bytes());
    // Five valid bytes: `from_bytes` cannot refuse them.
    RawDocumentBuf::from_bytes(bytes).unwrap_or_default()
}

/// Where a value sits in a request body (`passes[3].status`; `passes[3]` for the pass itself). Written
/// out only when an error names it: formatting the path of every field of every pass up front showed in
/// bench `request_steps`, `validate_passes`.
#[derive(Debug, Clone, Copy)]
struct PassField<'a> {
    kind: PassKind,
    index: usize,
    name: &'a str,
}

impl fmt::Display for PassField<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.kind.field(), self.index)?;
        match self.name {
            "" => Ok(()),
            name => write!(f, ".{name}"),
        }
    }
}

/// A storage rule broken at `field`.
fn broken(field: &dyn fmt::Display, violation: Violation) -> ValidationError {
    match violation {
        Violation::ForbiddenName(key) => ValidationError::ForbiddenKey { field: field.to_string(), key },
        other => ValidationError::Invalid { field: field.to_string(), reason: other.to_string() },
    }
}

/// A payload at `field` that cannot be stored.
fn unconvertible(field: &dyn fmt::Display, error: ConvertError) -> ValidationError {
    match error {
        ConvertError::Rule(violation) => broken(field, violation),
        other => ValidationError::Invalid { field: field.to_string(), reason: other.to_string() },
    }
}

/// Validates a log entry and returns the document to push (without `server_time`, which the caller sets).
pub fn validate_log_entry(entry: &LogEntryInput, limits: &Limits) -> Result<RawDocumentBuf, ValidationError> {
    if let Some(id) = entry.id.as_deref() {
        check_text(&"id", id, limits.max_log_id_chars)?;
    }
    if entry.errors.len() > limits.max_log_errors {
        return Err(ValidationError::Invalid {
            field: "errors".into(),
            reason: format!("at most {} errors per entry", limits.max_log_errors),
        });
    }
    // Each error sits one level down, inside the `errors` array.
    entry.errors.iter().try_for_each(|error| check_value(&"errors", error, 1, limits))?;
    if let Some(data) = &entry.data {
        check_object(&"data", data, 0, limits)?;
    }
    let size =
        serde_json::to_vec(&entry.errors).map_or(usize::MAX, |v| v.len()) + serde_json::to_vec(&entry.data).map_or(usize::MAX, |v| v.len());
    if size > limits.max_log_entry_bytes {
        return Err(ValidationError::PayloadTooLarge { field: "errors/data".into(), max: limits.max_log_entry_bytes });
    }
    let stored = StoredLogEntry { errors: &entry.errors, data: &entry.data, id: entry.id.as_deref() };
    bson::to_raw_document_buf(&stored).map_err(|e| ValidationError::Invalid { field: "errors/data".into(), reason: e.to_string() })
}

/// A log entry as stored, before the write adds its `server_time`: serialized straight from the request,
/// without an intermediate `Document`.
#[derive(serde::Serialize)]
struct StoredLogEntry<'a> {
    errors: &'a [Value],
    /// `null` when the request has none.
    data: &'a Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
}

pub(crate) fn check_text(field: &dyn fmt::Display, value: &str, max_chars: usize) -> Result<(), ValidationError> {
    let reason = if value.trim().is_empty() {
        "must not be empty"
    } else if value.chars().count() > max_chars {
        return Err(ValidationError::Invalid { field: field.to_string(), reason: format!("at most {max_chars} characters") });
    } else if value.chars().any(char::is_control) {
        "must not contain control characters"
    } else {
        return Ok(());
    };
    Err(ValidationError::Invalid { field: field.to_string(), reason: reason.into() })
}

/// Applies the storage rules (`payload::rules`) to a client value that is not a payload.
fn check_value(field: &dyn fmt::Display, value: &Value, depth: usize, limits: &Limits) -> Result<(), ValidationError> {
    rules::check_depth(depth, limits.max_payload_depth).map_err(|v| broken(field, v))?;
    let integer = match value {
        Value::Object(map) => return check_object(field, map, depth, limits),
        Value::Array(items) => return items.iter().try_for_each(|v| check_value(field, v, depth + 1, limits)),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(v), _) => rules::safe_integer(v),
            (None, Some(v)) => rules::safe_unsigned(v),
            (None, None) => return Ok(()),
        },
        _ => return Ok(()),
    };
    integer.map(drop).map_err(|v| broken(field, v))
}

fn check_object(field: &dyn fmt::Display, map: &Map<String, Value>, depth: usize, limits: &Limits) -> Result<(), ValidationError> {
    check_object_keys(field, map)?;
    map.values().try_for_each(|v| check_value(field, v, depth + 1, limits))
}

fn check_object_keys(field: &dyn fmt::Display, map: &Map<String, Value>) -> Result<(), ValidationError> {
    map.keys().try_for_each(|key| rules::check_name(key)).map_err(|v| broken(field, v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pass(value: Value) -> PassInput {
        serde_json::from_str(&value.to_string()).unwrap()
    }

    fn jcs_hash(value: &Value) -> String {
        let (hash, _) = hash::hash(&RawDocumentBuf::from_document(&bson::to_document(value).unwrap()).unwrap(), HashForm::Jcs).unwrap();
        hash
    }

    fn ok_pass(uuid: &str) -> Value {
        json!({"pass_uuid": uuid, "status": "ACTIVE", "payload": {"a": 1}})
    }

    /// Validation as the cache runs it, with conversions remembered in a fresh memo.
    fn validate(kind: PassKind, passes: &[PassInput], default: Millis, limits: &Limits) -> Result<Vec<ValidPass>, ValidationError> {
        validate_passes(kind, passes, default, limits, &ConvertedPayloads::new(1 << 20))
    }

    fn limits() -> Limits {
        Limits::default()
    }

    #[test]
    fn computes_jcs_hash_and_keeps_unknown_fields() {
        let input = pass(
            json!({"pass_uuid": "u1", "status": "ACTIVE", "payload": {"b": 2, "a": 1}, "vendor_ref": "X-1", "integrity": "verified", "_id": "x"}),
        );
        let [ValidPass(stored)] = validate(PassKind::Passes, &[input], Millis(5), &limits()).unwrap().try_into().unwrap();
        let stored = stored.to_document().unwrap();
        assert_eq!(stored.get_str("payload_hash_alg").unwrap(), JCS_ALG);
        assert_eq!(stored.get_str("payload_hash").unwrap(), jcs_hash(&json!({"a": 1, "b": 2})));
        // The reference canonicalizer agrees on the hashed text.
        assert_eq!(serde_json_canonicalizer::to_string(&json!({"b": 2, "a": 1})).unwrap(), r#"{"a":1,"b":2}"#);
        assert_eq!(stored.get_i64("timestamp").unwrap(), 5);
        assert_eq!(stored.get_str("vendor_ref").unwrap(), "X-1");
        assert!(!stored.contains_key("integrity") && !stored.contains_key("_id"));
        // Payload key order is the client's.
        let keys: Vec<_> = stored.get_document("payload").unwrap().keys().cloned().collect();
        assert_eq!(keys, ["b", "a"]);
    }

    #[test]
    fn accepts_client_hash_in_either_form_and_rejects_others() {
        let payload = json!({"b": 2.5, "a": 1});
        let jcs = jcs_hash(&payload);
        let raw = RawDocumentBuf::from_document(&bson::to_document(&payload).unwrap()).unwrap();
        let (legacy, _) = hash::hash(&raw, HashForm::Legacy).unwrap();
        assert_ne!(jcs, legacy);
        for good in [jcs.clone(), legacy, jcs.to_uppercase()] {
            let input = pass(json!({"pass_uuid": "u", "status": "S", "payload": payload, "payload_hash": good}));
            assert!(validate(PassKind::Passes, &[input], Millis(1), &limits()).is_ok());
        }
        let input = pass(json!({"pass_uuid": "u", "status": "S", "payload": payload, "payload_hash": "00"}));
        assert!(matches!(validate(PassKind::Passes, &[input], Millis(1), &limits()), Err(ValidationError::HashMismatch { .. })));
    }

    #[test]
    fn errors_name_the_field_by_its_path_in_the_body() {
        let field_of = |kind: PassKind, bad: Value| {
            let passes = [pass(ok_pass("fine")), pass(bad)];
            match validate(kind, &passes, Millis(1), &limits()) {
                Err(ValidationError::Invalid { field, .. } | ValidationError::ForbiddenKey { field, .. }) => field,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(field_of(PassKind::Passes4, json!({"pass_uuid": " ", "status": "S", "payload": {}})), "passes4[1].pass_uuid");
        assert_eq!(field_of(PassKind::Passes, json!({"pass_uuid": "u", "status": "\u{7}", "payload": {}})), "passes[1].status");
        assert_eq!(field_of(PassKind::Passes, json!({"pass_uuid": "u", "status": "S", "payload": {"$x": 1}})), "passes[1].payload");
        // A forbidden key on the pass itself names the pass.
        assert_eq!(field_of(PassKind::Passes, json!({"pass_uuid": "u", "status": "S", "payload": {}, "a.b": 1})), "passes[1]");
    }

    #[test]
    fn a_remembered_conversion_stores_exactly_what_a_fresh_one_does() {
        let memo = ConvertedPayloads::new(1 << 20);
        let input = [pass(json!({"pass_uuid": "u", "status": "S", "payload": {"b": [1, {"c": null}], "a": 2.5}}))];
        let first = validate_passes(PassKind::Passes, &input, Millis(1), &limits(), &memo).unwrap();
        assert!(memo.get(input[0].payload.get()).is_some(), "remembered");
        let again = validate_passes(PassKind::Passes, &input, Millis(1), &limits(), &memo).unwrap();
        assert_eq!(first, again);
        assert_eq!(first, validate_passes(PassKind::Passes, &input, Millis(1), &limits(), &ConvertedPayloads::new(0)).unwrap());
        // The limits still apply to a remembered conversion.
        let tight = Limits { max_payload_bytes: 4, ..limits() };
        assert!(matches!(
            validate_passes(PassKind::Passes, &input, Millis(1), &tight, &memo),
            Err(ValidationError::PayloadTooLarge { .. })
        ));
    }

    #[test]
    fn a_repeated_member_name_is_refused() {
        let input: PassInput =
            serde_json::from_str(r#"{"pass_uuid": "u", "status": "S", "payload": {"a": 1, "n": {"b": 1, "b": 2}}}"#).unwrap();
        let err = validate(PassKind::Passes, &[input], Millis(1), &limits()).unwrap_err();
        assert!(matches!(&err, ValidationError::Invalid { reason, .. } if reason.contains("appears twice")), "{err:?}");
    }

    #[test]
    fn rejects_keys_mongodb_cannot_store() {
        for key in ["$where", "a.b", "nul\u{0}", ""] {
            let mut body = ok_pass("u");
            body["payload"] = json!({ "outer": { key: 1 } });
            let err = validate(PassKind::Passes, &[pass(body)], Millis(1), &limits()).unwrap_err();
            assert!(matches!(err, ValidationError::ForbiddenKey { .. }), "{key:?}: {err:?}");
        }
        let mut body = ok_pass("u");
        body["$set"] = json!(1);
        assert!(matches!(validate(PassKind::Passes, &[pass(body)], Millis(1), &limits()), Err(ValidationError::ForbiddenKey { .. })));
    }

    #[test]
    fn enforces_limits() {
        let l = limits();
        // `max_payload_depth` nested objects and arrays are allowed, one more is not.
        let nested = |levels: usize| {
            let mut deep = json!(1);
            for level in 1..levels {
                deep = if level % 2 == 0 { json!({ "d": deep }) } else { json!([deep]) };
            }
            let mut body = ok_pass("u");
            body["payload"] = json!({ "d": deep });
            validate(PassKind::Passes, &[pass(body)], Millis(1), &l)
        };
        assert!(nested(l.max_payload_depth).is_ok());
        assert!(matches!(nested(l.max_payload_depth + 1), Err(ValidationError::Invalid { .. })));

        let mut body = ok_pass("u");
        body["payload"] = json!({ "blob": "x".repeat(l.max_payload_bytes) });
        assert!(matches!(validate(PassKind::Passes, &[pass(body)], Millis(1), &l), Err(ValidationError::PayloadTooLarge { .. })));

        let many: Vec<_> = (0..=l.max_passes).map(|i| pass(ok_pass(&format!("u{i}")))).collect();
        assert!(matches!(validate(PassKind::Passes4, &many, Millis(1), &l), Err(ValidationError::TooManyPasses { .. })));

        let dupes = [pass(ok_pass("same")), pass(ok_pass("same"))];
        assert!(matches!(validate(PassKind::Passes, &dupes, Millis(1), &l), Err(ValidationError::DuplicatePass { .. })));

        for (field, value) in
            [("pass_uuid", json!("")), ("pass_uuid", json!("x".repeat(l.max_pass_uuid_chars + 1))), ("status", json!("a\nb"))]
        {
            let mut body = ok_pass("u");
            body[field] = value;
            assert!(validate(PassKind::Passes, &[pass(body)], Millis(1), &l).is_err(), "{field}");
        }

        for big in [json!(9_007_199_254_740_993_u64), json!(-9_007_199_254_740_993_i64), json!(u64::MAX)] {
            let mut body = ok_pass("u");
            body["payload"] = json!({ "list": [{ "n": big }] });
            let err = validate(PassKind::Passes, &[pass(body)], Millis(1), &l).unwrap_err();
            assert!(matches!(&err, ValidationError::Invalid { reason, .. } if reason.contains("exactly representable")), "{err:?}");
        }
    }

    #[test]
    fn wrong_types_fail_deserialization() {
        for body in [
            json!({"pass_uuid": {"$gt": ""}, "status": "S", "payload": {}}),
            json!({"pass_uuid": "u", "status": {"$ne": null}, "payload": {}}),
            json!({"pass_uuid": "u", "status": "S", "payload": []}),
            json!({"pass_uuid": "u", "status": "S", "payload": {}, "timestamp": 1.5}),
            json!({"pass_uuid": "u", "status": "S", "payload": {}, "timestamp": -1}),
            json!({"pass_uuid": "u", "status": "S", "payload": {}, "free_ticket_status": "1"}),
        ] {
            assert!(serde_json::from_value::<PassInput>(body.clone()).is_err(), "{body}");
        }
        assert!(serde_json::from_value::<PassUpdate>(json!({"passes": [], "extra": 1})).is_err());
        assert!(serde_json::from_value::<LogEntryInput>(json!({"kind": "passes5", "errors": []})).is_err());
    }

    #[test]
    fn log_entries_are_validated() {
        let l = limits();
        let entry: LogEntryInput =
            serde_json::from_value(json!({"kind": "passes", "errors": [{"code": "E"}], "data": {"a": 1}, "id": "r-1"})).unwrap();
        let stored = validate_log_entry(&entry, &l).unwrap();
        assert_eq!(stored.get_str("id").unwrap(), "r-1");
        // Stored with the BSON types the Node service's entries have: integers as int64 (as `bson`
        // maps JSON integers), fractions as doubles, a missing `data` as null.
        for (body, expected) in [
            (
                json!({"kind": "passes", "errors": [{"code": "E", "n": 1, "big": 9007199254740991_i64, "f": 1.5, "u": "é"}, "x", [null]], "data": {"a": {"b": [1]}}, "id": "r-1"}),
                doc! {
                    "errors": [{ "code": "E", "n": 1_i64, "big": 9007199254740991_i64, "f": 1.5, "u": "é" }, "x", [bson::Bson::Null]],
                    "data": { "a": { "b": [1_i64] } },
                    "id": "r-1",
                },
            ),
            (json!({"kind": "passes4", "errors": []}), doc! { "errors": [], "data": bson::Bson::Null }),
        ] {
            let entry: LogEntryInput = serde_json::from_value(body).unwrap();
            assert_eq!(validate_log_entry(&entry, &l).unwrap(), RawDocumentBuf::from_document(&expected).unwrap());
        }
        let bad: LogEntryInput = serde_json::from_value(json!({"kind": "passes", "errors": [{"$where": "1"}]})).unwrap();
        assert!(validate_log_entry(&bad, &l).is_err());
        let big: LogEntryInput = serde_json::from_value(json!({"kind": "passes", "errors": ["x".repeat(l.max_log_entry_bytes)]})).unwrap();
        assert!(matches!(validate_log_entry(&big, &l), Err(ValidationError::PayloadTooLarge { .. })));
    }
}
