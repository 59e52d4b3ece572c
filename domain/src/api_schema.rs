//! OpenAPI schemas (utoipa) for what the derives cannot say by themselves: types with hand-written
//! deserializers, and fields whose bounds are the ones [`Limits`] and the validators enforce. The
//! request and response types derive `ToSchema` and point their bounded fields here, so the published
//! contract (`api/openapi.json`) takes each bound from the code that enforces it.

use payload::{Integrity, MAX_SAFE_INTEGER};
use utoipa::openapi::schema::{ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::config::Limits;
use crate::schema::{JsNumber, UserId};

/// Characters `check_text` refuses (Unicode category Cc, as `char::is_control`).
const NO_CONTROL_CHARACTERS: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";

/// A JSON integer in `1..=2^53-1`.
pub fn safe_positive_integer(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(1))
        .maximum(Some(MAX_SAFE_INTEGER))
        .description(Some(description))
}

impl PartialSchema for UserId {
    fn schema() -> RefOr<Schema> {
        safe_positive_integer("A user id: a positive integer a JavaScript number holds exactly (at most 2^53-1).").into()
    }
}

impl ToSchema for UserId {}

impl PartialSchema for JsNumber {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::Number).description(Some("A JSON number.")).into()
    }
}

impl ToSchema for JsNumber {}

/// `payload` is a foreign crate (no utoipa there): its verdicts are listed from [`Integrity::ALL`].
pub fn integrity() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(Integrity::ALL.map(Integrity::as_str)))
        .description(Some(
            "The read's verdict on the pass's payload hash: `verified` (the SHA-256 of the `payload` text in this response is \
             `payload_hash`), `mismatch`, `unverified` (no hash stored) or `unverifiable` (a hash is stored but the payload has \
             no exact text to compare it with: treat it as tampered).",
        ))
        .into()
}

/// Text `check_text` accepts: 1 to `max_chars` characters, no control characters (and not only white
/// space, which a pattern does not say portably; the server answers 422).
fn text(max_chars: usize, nullable: bool) -> Schema {
    let types = if nullable { SchemaType::from_iter([Type::String, Type::Null]) } else { SchemaType::new(Type::String) };
    ObjectBuilder::new().schema_type(types).min_length(Some(1)).max_length(Some(max_chars)).pattern(Some(NO_CONTROL_CHARACTERS)).into()
}

pub fn pass_uuid() -> Schema {
    text(Limits::default().max_pass_uuid_chars, false)
}

pub fn pass_status() -> Schema {
    text(Limits::default().max_status_chars, false)
}

pub fn log_id() -> Schema {
    text(Limits::default().max_log_id_chars, true)
}

/// A log entry's errors: any JSON values, at most `max_log_errors`.
pub fn log_errors() -> Schema {
    ArrayBuilder::new()
        .items(ObjectBuilder::new().schema_type(SchemaType::AnyValue))
        .max_items(Some(Limits::default().max_log_errors))
        .into()
}
