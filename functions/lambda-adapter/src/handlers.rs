//! The HTTP handlers: request → identity → domain call → response. No cache logic lives here.

use std::time::Duration;

use domain::mongodb::bson::DateTime;
use domain::{
    BulkEntry, CacheError, ErrorQuery, Integrity, LogEntryInput, PassUpdate, PushOutcome, Selection, UserId, ValidationError,
    MAX_BULK_USERS,
};
use lambda_http::http::{header, HeaderMap, HeaderValue, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use tracing::Instrument;

use crate::error::ApiError;
use crate::identity::Caller;
use crate::metrics::Metric;
use crate::query::Query;
use crate::response::{BulkReplaced, BulkResult, LogPushed, TicketsReplaced};
use crate::routes::{self, Operation};
use crate::AppState;

/// Serves one HTTP request for the function that handles `served`. Every failure becomes a JSON error
/// response; nothing here panics or returns an error to the runtime.
pub async fn serve(state: &AppState, served: Operation, request: Request) -> Result<Response<Body>, std::convert::Infallible> {
    let span = tracing::info_span!("handler", function = state.metrics.function());
    let handled = handle(state, served, &request).instrument(span);
    let outcome = match time_to_deadline(&request) {
        Some(left) => tokio::time::timeout(left, handled).await.unwrap_or_else(|_| {
            tracing::error!(left_ms = left.as_millis() as u64, "the invocation's deadline came before the database answered");
            Err(ApiError::Unavailable)
        }),
        None => handled.await,
    };
    Ok(match outcome {
        Ok(response) => response,
        Err(error) => {
            if error.status().is_server_error() {
                tracing::error!(code = error.code(), "request failed");
            } else {
                tracing::info!(code = error.code(), status = error.status().as_u16(), "request refused");
            }
            error.into_response()
        }
    })
}

/// Time kept back from the invocation's deadline to send the answer through the Runtime API.
const ANSWER_TIME: Duration = Duration::from_millis(250);

/// How long this invocation may work before it must answer: its Lambda deadline, less [`ANSWER_TIME`].
/// Every database wait is bounded already; this bounds their sum (first contact, retries, a read-back)
/// by what the invocation really has.
fn time_to_deadline(request: &Request) -> Option<Duration> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64;
    time_left(request.lambda_context_ref()?.deadline, now)
}

/// [`time_to_deadline`] of a deadline and a time, in milliseconds since the epoch. A deadline that is not
/// after now was not given (local emulators send none, or 0); Lambda's always lies ahead.
fn time_left(deadline_ms: u64, now_ms: u64) -> Option<Duration> {
    (deadline_ms > now_ms).then(|| Duration::from_millis(deadline_ms - now_ms).saturating_sub(ANSWER_TIME))
}

async fn handle(state: &AppState, served: Operation, request: &Request) -> Result<Response<Body>, ApiError> {
    let route_key = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.route_key.as_deref(),
        _ => None,
    };
    let user_param = request.path_parameters_ref().and_then(|p| p.first("user_id"));
    let target = routes::resolve(request.method().as_str(), request.uri().path(), route_key, user_param)?;
    let function = |operation: Operation| operation.route().map(|route| route.function.as_str());
    if function(target.operation) != function(served) {
        // The path exists, but another function serves it, or serves this method on it.
        let allow = served.route().map_or_else(String::new, |r| r.method.clone());
        return Err(ApiError::MethodNotAllowed { allow });
    }
    Caller::from_request(request, &state.access).authorize(target.operation, target.user, &state.access)?;
    match (target.operation, target.user) {
        (Operation::GetTickets, Some(user)) => get_tickets(state, user, request).await,
        (Operation::UpdateTickets, Some(user)) => update_tickets(state, user, request).await,
        (Operation::PushLog, Some(user)) => push_log(state, user, request).await,
        (Operation::BulkUpdateTickets, None) => bulk_update_tickets(state, request).await,
        (Operation::ErrorReport, None) => error_report(state, request).await,
        // `resolve` gives a user exactly to the routes under /v1/users/{user_id}.
        _ => Err(ApiError::RouteNotFound),
    }
}

async fn get_tickets(state: &AppState, user: UserId, request: &Request) -> Result<Response<Body>, ApiError> {
    let query = Query::of(request);
    let selection = match query.one("format")? {
        None => Selection::All,
        Some(format) => Selection::parse(format).ok_or(ApiError::InvalidFormat)?,
    };
    let filter = query.pass_filter(&state.cache.config().limits)?;
    state.readiness.connected(&state.cache).await?;
    let found = state.metered(state.cache.get_filtered(user, selection, &filter, DateTime::now())).await?;
    let Some(tickets) = found else {
        state.metrics.emit(&[(Metric::CacheMiss, 1.0)]);
        return Err(ApiError::NotFound);
    };
    let mismatches = tickets.count(Integrity::Mismatch);
    let unverifiable = tickets.count(Integrity::Unverifiable);
    if mismatches + unverifiable > 0 {
        tracing::warn!(user_id = %user, mismatches, unverifiable, "stored payloads are not what their hashes cover");
    }
    if !tickets.degraded.is_empty() {
        let parts: Vec<&str> = tickets.degraded.iter().map(|part| part.path.as_str()).collect();
        tracing::warn!(user_id = %user, ?parts, "parts of the stored document could not be served");
    }
    let outcome = if tickets.stale { Metric::CacheStale } else { Metric::CacheHit };
    state.metrics.emit(&[
        (outcome, 1.0),
        (Metric::IntegrityMismatch, mismatches as f64),
        (Metric::IntegrityUnverifiable, unverifiable as f64),
        (Metric::DegradedRead, tickets.degraded.len() as f64),
    ]);
    if let Some(size) = crate::response::over_lambda_response_limit(&tickets.json) {
        state.metrics.emit(&[(Metric::ResponseTooLarge, 1.0)]);
        return Err(ApiError::ResponseTooLarge { bytes: size, selection: selection.as_str() });
    }

    let not_modified = if_none_match(request.headers(), &tickets.etag);
    let mut response = if not_modified {
        let mut empty = Response::new(Body::Empty);
        *empty.status_mut() = StatusCode::NOT_MODIFIED;
        empty
    } else {
        crate::response::json_text(StatusCode::OK, tickets.json)
    };
    let headers = response.headers_mut();
    let cache_control = format!("private, max-age={}", tickets.fresh_for.as_secs());
    for (name, value) in [
        (header::ETAG, tickets.etag.as_str()),
        (header::CACHE_CONTROL, cache_control.as_str()),
        (header::HeaderName::from_static("x-cache"), if tickets.stale { "STALE" } else { "HIT" }),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    Ok(response)
}

async fn update_tickets(state: &AppState, user: UserId, request: &Request) -> Result<Response<Body>, ApiError> {
    let update: PassUpdate = parse_body(request, state.max_body_bytes)?;
    state.readiness.writable(&state.cache).await?;
    let result = state.metered_write(state.cache.replace_passes(user, &update, DateTime::now())).await;
    if let Err(ApiError::StaleWrite { stored }) = &result {
        tracing::info!(user_id = %user, stored = stored.0, "stale write rejected");
        state.metrics.emit(&[(Metric::StaleWriteRejected, 1.0)]);
    }
    let outcome = result?;
    Ok(crate::response::json(
        StatusCode::OK,
        &TicketsReplaced { user_id: user, timestamp: outcome.timestamp, passes: outcome.passes, passes4: outcome.passes4 },
    ))
}

async fn push_log(state: &AppState, user: UserId, request: &Request) -> Result<Response<Body>, ApiError> {
    let entry: LogEntryInput = parse_body(request, state.max_body_bytes)?;
    state.readiness.writable(&state.cache).await?;
    let outcome = state.metered_write(state.cache.push_log(user, &entry, DateTime::now())).await?;
    let (status, metric) = match outcome {
        PushOutcome::Appended => (StatusCode::CREATED, Metric::LogPushed),
        PushOutcome::Duplicate => (StatusCode::OK, Metric::LogDuplicate),
    };
    state.metrics.emit(&[(metric, 1.0)]);
    Ok(crate::response::json(
        status,
        &LogPushed { user_id: user, kind: entry.kind, id: entry.id, duplicate: outcome == PushOutcome::Duplicate },
    ))
}

/// The largest request Lambda accepts (6 MB): a bulk body may use all of it.
pub const MAX_BULK_BODY_BYTES: usize = 6 * 1024 * 1024;

/// A bulk `PUT /v1/tickets` body: each entry is read on its own, so one malformed entry is answered
/// for itself instead of failing the others.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({ "users": [
    { "user_id": 1001, "timestamp": 1795636734000_i64, "passes": [{ "pass_uuid": "p-1", "status": "ACTIVE", "payload": { "rides": 2 } }] },
    { "user_id": 1002, "passes4": [{ "pass_uuid": "p-2", "status": "USABLE", "payload": { "zone": "B" } }] }
] })))]
pub struct BulkBody {
    #[schema(schema_with = bulk_users)]
    users: Vec<Box<serde_json::value::RawValue>>,
}

/// 1 to [`MAX_BULK_USERS`] entries, at most one per user. An entry is a [`BulkEntry`], but any value is
/// accepted and answered in its own result (422 when it is not a valid entry), so the contract cannot
/// refuse other values: the schema says `BulkEntry` or anything else.
fn bulk_users() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{AnyOfBuilder, ArrayBuilder, ObjectBuilder, SchemaType};
    use utoipa::ToSchema;
    let entry = AnyOfBuilder::new().item(utoipa::openapi::Ref::from_schema_name(BulkEntry::name())).item(
        ObjectBuilder::new()
            .schema_type(SchemaType::AnyValue)
            .description(Some("Anything else: answered in its result (422 `validation_failed`), the other entries are written")),
    );
    ArrayBuilder::new().items(entry).min_items(Some(1)).max_items(Some(MAX_BULK_USERS)).into()
}

async fn bulk_update_tickets(state: &AppState, request: &Request) -> Result<Response<Body>, ApiError> {
    let body: BulkBody = parse_body(request, MAX_BULK_BODY_BYTES)?;
    if body.users.is_empty() || body.users.len() > MAX_BULK_USERS {
        return Err(ApiError::InvalidField(format!("users: between 1 and {MAX_BULK_USERS} entries, got {}", body.users.len())));
    }
    // Each entry: its user id (when readable) and the update, or why it cannot be read.
    let mut parsed: Vec<(Option<UserId>, Result<PassUpdate, ApiError>)> = Vec::with_capacity(body.users.len());
    let mut seen = std::collections::HashSet::new();
    for (index, raw) in body.users.iter().enumerate() {
        let entry = serde_path_to_error::deserialize::<_, BulkEntry>(&mut serde_json::Deserializer::from_str(raw.get())).map_err(|e| {
            ApiError::Validation(ValidationError::Invalid { field: format!("users[{index}].{}", e.path()), reason: e.inner().to_string() })
        });
        let user = match &entry {
            Ok(entry) => Some(entry.user_id),
            Err(_) => user_id_of(raw.get()),
        };
        if let Some(user) = user {
            if !seen.insert(user) {
                return Err(ApiError::InvalidField(format!("users[{index}].user_id: {user} appears more than once")));
            }
        }
        parsed.push((user, entry.map(|entry| entry.into_update().1)));
    }
    state.readiness.writable(&state.cache).await?;
    // What each entry came to: why it could not be read, or what the database said of it.
    let mut outcomes: Vec<Result<(), ApiError>> = Vec::with_capacity(parsed.len());
    let (mut valid, mut positions) = (Vec::new(), Vec::new());
    for (position, (user, update)) in parsed.iter().enumerate() {
        match (user, update) {
            (Some(user), Ok(update)) => {
                valid.push((*user, update.clone()));
                positions.push(position);
                outcomes.push(Ok(()));
            }
            (_, Err(error)) => outcomes.push(Err(error.clone())),
            (None, Ok(_)) => outcomes.push(Err(ApiError::Validation(ValidationError::Invalid {
                field: format!("users[{position}].user_id"),
                reason: "missing".into(),
            }))),
        }
    }
    let written = state.metered_write(state.cache.replace_many(&valid, DateTime::now())).await?;
    for (position, result) in positions.into_iter().zip(written) {
        outcomes[position] = result.map(|_| ()).map_err(ApiError::from);
    }

    let mut counts = std::collections::BTreeMap::<u16, u64>::new();
    let results: Vec<BulkResult> = parsed
        .iter()
        .zip(outcomes)
        .map(|((user, _), outcome)| {
            let mut result = BulkResult { user_id: *user, error: None, stored_timestamp: None, status: StatusCode::OK.as_u16() };
            if let Err(error) = outcome {
                // Per entry, as the single PUT would answer it (`error.rs`); the stored timestamp beside it.
                let mut detail = error.detail();
                result.stored_timestamp = detail.stored_timestamp.take();
                result.error = Some(detail);
                result.status = error.status().as_u16();
            }
            *counts.entry(result.status).or_default() += 1;
            result
        })
        .collect();
    let stale = counts.get(&StatusCode::CONFLICT.as_u16()).copied().unwrap_or(0);
    if stale > 0 {
        state.metrics.emit(&[(Metric::StaleWriteRejected, stale as f64)]);
    }
    let counts = counts.into_iter().map(|(status, n)| (status.to_string(), n)).collect();
    Ok(crate::response::json(StatusCode::OK, &BulkReplaced { results, counts }))
}

/// The `user_id` of an entry that is otherwise unreadable, so its answer can still name it.
fn user_id_of(raw: &str) -> Option<UserId> {
    #[derive(serde::Deserialize)]
    struct OnlyUser {
        user_id: UserId,
    }
    serde_json::from_str::<OnlyUser>(raw).ok().map(|only| only.user_id)
}

/// The default window of an error report: the last 24 hours.
const DEFAULT_REPORT_WINDOW_MS: i64 = 24 * 3_600_000;

async fn error_report(state: &AppState, request: &Request) -> Result<Response<Body>, ApiError> {
    let query = Query::of(request);
    let until = query.instant("until")?.unwrap_or_else(DateTime::now);
    let since =
        query.instant("since")?.unwrap_or_else(|| DateTime::from_millis(until.timestamp_millis().saturating_sub(DEFAULT_REPORT_WINDOW_MS)));
    let window = ErrorQuery::new(since, until, query.kind("kind")?, query.user("user_id")?).map_err(|error| match error {
        ValidationError::Invalid { field, reason } => {
            ApiError::InvalidFilter { parameter: if field == "until" { "until" } else { "since" }, reason }
        }
        other => ApiError::Validation(other),
    })?;
    state.readiness.connected(&state.cache).await?;
    let report = state.metered(state.cache.error_report(&window)).await?;
    Ok(crate::response::json(StatusCode::OK, &report))
}

impl AppState {
    /// Runs a cache read, emits the database's share of its time as a metric, and maps its error for HTTP.
    async fn metered<T>(&self, call: impl std::future::Future<Output = Result<T, CacheError>>) -> Result<T, ApiError> {
        self.meter(call, false).await
    }

    /// [`AppState::metered`] for a write, which also reports how many attempts it repeated.
    async fn metered_write<T>(&self, call: impl std::future::Future<Output = Result<T, CacheError>>) -> Result<T, ApiError> {
        self.meter(call, true).await
    }

    async fn meter<T>(&self, call: impl std::future::Future<Output = Result<T, CacheError>>, write: bool) -> Result<T, ApiError> {
        let (time_before, retries_before) = (self.cache.driver_time(), self.cache.write_retries());
        let replaced_before = self.cache.connection().replacements();
        let result = call.await;
        let database = self.cache.driver_time().saturating_sub(time_before);
        let latency = (Metric::DbLatency, database.as_secs_f64() * 1000.0);
        let replaced = self.cache.connection().replacements().saturating_sub(replaced_before);
        if replaced > 0 {
            self.metrics.emit(&[(Metric::MongoClientReplaced, replaced as f64)]);
        }
        if write {
            let retries = self.cache.write_retries().saturating_sub(retries_before);
            self.metrics.emit(&[latency, (Metric::WriteRetries, retries as f64)]);
        } else {
            self.metrics.emit(&[latency]);
        }
        result.map_err(|e| {
            if !matches!(e, CacheError::Validation(_) | CacheError::StaleWrite { .. }) {
                tracing::error!(error = %e, source = ?std::error::Error::source(&e).map(ToString::to_string), "cache operation failed");
            }
            ApiError::from(e)
        })
    }
}

/// Parses a JSON body, telling malformed JSON (400 invalid_json) from wrong fields (400 invalid_field),
/// and refusing oversized bodies before parsing (413).
pub fn parse_body<T: serde::de::DeserializeOwned>(request: &Request, max_bytes: usize) -> Result<T, ApiError> {
    let bytes: &[u8] = match request.body() {
        Body::Empty => return Err(ApiError::InvalidJson("the body is empty".into())),
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => return Err(ApiError::InvalidJson("unsupported body encoding".into())),
    };
    if bytes.len() > max_bytes {
        return Err(ApiError::BodyTooLarge { max: max_bytes });
    }
    // Serde would also build a struct from a JSON array; every body of this API is an object.
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        None => return Err(ApiError::InvalidJson("the body is empty".into())),
        Some(_) => {
            return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Ok(_) => ApiError::InvalidField("the body must be a JSON object".into()),
                Err(e) => ApiError::InvalidJson(e.to_string()),
            })
        }
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                ApiError::InvalidField(if path == "." { inner.to_string() } else { format!("{path}: {inner}") })
            }
            _ => ApiError::InvalidJson(inner.to_string()),
        }
    })?;
    // Trailing data after the document is malformed JSON too.
    deserializer.end().map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    Ok(value)
}

/// Whether `If-None-Match` names this validator (or `*`). Weak comparison, as RFC 9110 asks for GET.
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|candidate| {
        let candidate = candidate.trim();
        candidate == "*" || candidate.trim_start_matches("W/") == etag
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_left_is_the_deadline_less_the_answer_time_and_no_deadline_is_none() {
        let now = 1_800_000_000_000;
        assert_eq!(time_left(now + 1_000, now), Some(Duration::from_millis(750)));
        assert_eq!(time_left(now + 100, now), Some(Duration::ZERO), "too little left: answer at once");
        assert_eq!(time_left(now, now), None);
        assert_eq!(time_left(0, now), None, "an emulator's missing deadline");
        assert_eq!(time_left(now - 5, now), None);
    }
}
