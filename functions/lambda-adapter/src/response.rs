//! Response bodies: the types the handlers serialize, which are also the contract's schemas
//! (`openapi.rs`), and the JSON response around them.

use std::collections::BTreeMap;

use domain::{DegradedPart, PassKind, UserId};
use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Every error this service answers: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable snake_case code to branch on; each response lists the codes its status carries.
    pub code: &'static str,
    /// For people; never carries internals.
    pub message: String,
    /// `stale_write` only: the newer timestamp already stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub stored_timestamp: Option<i64>,
}

/// `PUT /v1/users/{user_id}/tickets`: what was stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TicketsReplaced {
    pub user_id: UserId,
    /// The stored document's timestamp: the update's, or the server's clock when it sent none.
    #[schema(value_type = i64)]
    pub timestamp: domain::Millis,
    /// How many passes the array holds now; `null` when the update left it alone.
    #[schema(required = true)]
    pub passes: Option<usize>,
    #[schema(required = true)]
    pub passes4: Option<usize>,
}

/// `POST /v1/users/{user_id}/logs`: the entry, and whether its `id` was already logged (then nothing
/// was appended: 200 instead of 201).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LogPushed {
    pub user_id: UserId,
    pub kind: PassKind,
    #[schema(required = true)]
    pub id: Option<String>,
    pub duplicate: bool,
}

/// `PUT /v1/tickets`: one result per entry, in request order, and how many entries got each status.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BulkReplaced {
    pub results: Vec<BulkResult>,
    /// Entries per status, keyed by the status as text (`{"200": 98, "409": 2}`).
    pub counts: BTreeMap<String, u64>,
}

/// One entry's answer: the status and error a single `PUT` of it would have had.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BulkResult {
    /// `null` when the entry has no readable `user_id`.
    #[schema(required = true)]
    pub user_id: Option<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error: Option<ErrorDetail>,
    /// `stale_write` only: the newer timestamp already stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub stored_timestamp: Option<i64>,
    #[schema(minimum = 200, maximum = 599)]
    pub status: u16,
}

/// `GET /v1/users/{user_id}/tickets`: the user's cached passes, never the logs.
// `domain::read` prints this body straight from the stored BSON; this type only describes that text for
// the contract (`make contract` checks real answers against it).
#[derive(Debug, Clone, ToSchema)]
#[allow(dead_code)]
pub struct Tickets {
    pub user_id: UserId,
    /// The stored timestamp (ms since the epoch); `null` when the stored one is missing or not a time
    /// in 0…2^53-1 (the document is then stale).
    #[schema(required = true)]
    pub timestamp: Option<i64>,
    /// Seconds since `timestamp`; `null` with it.
    #[schema(required = true)]
    pub age_seconds: Option<u64>,
    /// Older than the freshness TTL, undated, or dated further ahead than the clock skew allows.
    pub stale: bool,
    /// Present unless `format=passes4`.
    #[schema(nullable = false)]
    pub passes: Option<Vec<ShownPass>>,
    /// Present unless `format=passes`.
    #[schema(nullable = false)]
    pub passes4: Option<Vec<ShownPass>>,
    /// Parts of the stored document that could not be shown, and why; absent when nothing was left out.
    #[schema(nullable = false)]
    pub degraded: Option<Vec<DegradedPart>>,
}

/// A stored pass as a read shows it: the service's fields, the verdict on its payload hash, then every
/// other stored field (vendor fields, Mongoose's `__v`…) as stored. Every pass either service wrote
/// has a string `pass_uuid` and `status` and an object `payload`; a document another writer stored may
/// hold other JSON values there, or `null` where a value cannot be shown (see `degraded`).
#[derive(Debug, Clone, ToSchema)]
#[allow(dead_code)]
pub struct ShownPass {
    #[schema(value_type = Value)]
    pub pass_uuid: serde_json::Value,
    /// When the pass was written (ms since the epoch); `null` when it is not a time.
    #[schema(required = true)]
    pub timestamp: Option<i64>,
    #[schema(value_type = Value)]
    pub status: serde_json::Value,
    #[schema(required = true)]
    pub free_ticket_status: Option<f64>,
    /// The payload, printed exactly as the text `payload_hash` covers: RFC 8785 canonical JSON for
    /// passes this service wrote, `JSON.stringify`'s text for the Node service's.
    #[schema(value_type = Value)]
    pub payload: serde_json::Value,
    /// Lower-case hex SHA-256 of the `payload` text as printed here, when stored.
    #[schema(value_type = Value)]
    pub payload_hash: serde_json::Value,
    #[schema(schema_with = domain::api_schema::integrity)]
    pub integrity: domain::Integrity,
}

/// A JSON response. Serializing our own response types cannot fail; if it ever did, the client gets a
/// plain 500 rather than a panic.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response<Body> {
    let (status, bytes) = match serde_json::to_string(body) {
        Ok(bytes) => (status, bytes),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, r#"{"error":{"code":"internal","message":"internal error"}}"#.to_owned()),
    };
    json_text(status, bytes)
}

/// A response whose JSON text is already written (the cache renders reads itself).
pub fn json_text(status: StatusCode, text: String) -> Response<Body> {
    let mut response = Response::new(Body::Text(text));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Lambda refuses a function response over 6 MB (API Gateway then answers 502). A body travels as a JSON
/// string inside that response, next to the status and headers, for which this leaves 16 KiB.
pub const MAX_BODY_IN_LAMBDA_RESPONSE: usize = 6 * 1024 * 1024 - 16 * 1024;

/// The size `body` takes in the Lambda response ([`size_in_lambda_response`]) when that is over
/// [`MAX_BODY_IN_LAMBDA_RESPONSE`]; `None` when it fits.
///
/// Escaping makes one byte at most six, so a body of up to a sixth of the limit fits without being read:
/// every GET below ~1 MB skips the byte-by-byte count, which was the largest item of a remembered read
/// (bench `handlers`; bench/README.md, "Handler-only, HEAD against `3a8ef3e`").
pub fn over_lambda_response_limit(body: &str) -> Option<usize> {
    if body.len() <= MAX_BODY_IN_LAMBDA_RESPONSE / 6 {
        return None;
    }
    Some(size_in_lambda_response(body)).filter(|&size| size > MAX_BODY_IN_LAMBDA_RESPONSE)
}

/// Bytes a JSON body takes as a string inside the Lambda response: `"` and `\` are escaped with one
/// more byte, control characters as at most `\u00XX`.
fn size_in_lambda_response(body: &str) -> usize {
    body.bytes()
        .map(|b| match b {
            b'"' | b'\\' => 2,
            0..0x20 => 6,
            _ => 1,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_counts_what_escaping_adds() {
        let body = "{\"a\":\"x\\\\y\\n\"}";
        let escaped = serde_json::to_string(body).unwrap();
        assert_eq!(size_in_lambda_response(body), escaped.len() - 2);
        assert_eq!(size_in_lambda_response("\u{1}é"), serde_json::to_string("\u{1}é").unwrap().len() - 2);
    }

    #[test]
    fn the_limit_check_counts_only_bodies_that_could_be_over_it() {
        // The largest body the check does not read: even all control characters fit.
        let unread = "\u{1}".repeat(MAX_BODY_IN_LAMBDA_RESPONSE / 6);
        assert_eq!(size_in_lambda_response(&unread), MAX_BODY_IN_LAMBDA_RESPONSE / 6 * 6);
        assert!(size_in_lambda_response(&unread) <= MAX_BODY_IN_LAMBDA_RESPONSE);
        assert_eq!(over_lambda_response_limit(&unread), None);
        // One byte more is counted: over the limit as escaped text, far under it as bytes.
        let counted = "\u{1}".repeat(MAX_BODY_IN_LAMBDA_RESPONSE / 6 + 1);
        assert_eq!(over_lambda_response_limit(&counted), Some((MAX_BODY_IN_LAMBDA_RESPONSE / 6 + 1) * 6));
        let quotes = "\"".repeat(MAX_BODY_IN_LAMBDA_RESPONSE / 2 + 1);
        assert_eq!(over_lambda_response_limit(&quotes), Some(size_in_lambda_response(&quotes)));
        assert_eq!(over_lambda_response_limit(&"a".repeat(MAX_BODY_IN_LAMBDA_RESPONSE)), None);
        assert_eq!(over_lambda_response_limit(&"a".repeat(MAX_BODY_IN_LAMBDA_RESPONSE + 1)), Some(MAX_BODY_IN_LAMBDA_RESPONSE + 1));
    }
}
