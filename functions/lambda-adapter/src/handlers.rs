//! The HTTP handlers: request → identity → domain call → response. No cache logic lives here.

use domain::mongodb::bson::DateTime;
use domain::{CacheError, Integrity, LogEntryInput, PassUpdate, PushOutcome, Selection, UserId};
use lambda_http::http::{header, HeaderMap, HeaderValue, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::json;
use tracing::Instrument;

use crate::error::ApiError;
use crate::identity::Caller;
use crate::metrics::Metric;
use crate::routes::{self, Operation};
use crate::AppState;

/// Serves one HTTP request for the function that handles `served`. Every failure becomes a JSON error
/// response; nothing here panics or returns an error to the runtime.
pub async fn serve(state: &AppState, served: Operation, request: Request) -> Result<Response<Body>, std::convert::Infallible> {
    let span = tracing::info_span!("handler", function = state.metrics.function());
    Ok(match handle(state, served, &request).instrument(span).await {
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

async fn handle(state: &AppState, served: Operation, request: &Request) -> Result<Response<Body>, ApiError> {
    let route_key = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.route_key.as_deref(),
        _ => None,
    };
    let user_param = request.path_parameters_ref().and_then(|p| p.first("user_id"));
    let target = routes::resolve(request.method().as_str(), request.uri().path(), route_key, user_param)?;
    if target.operation != served {
        // The path exists, but this function serves another method on it.
        let allow = served.route().map_or_else(String::new, |r| r.method.clone());
        return Err(ApiError::MethodNotAllowed { allow });
    }
    Caller::from_request(request, &state.access).authorize(target.operation, target.user, &state.access)?;
    match target.operation {
        Operation::GetTickets => get_tickets(state, target.user, request).await,
        Operation::UpdateTickets => update_tickets(state, target.user, request).await,
        Operation::PushLog => push_log(state, target.user, request).await,
    }
}

async fn get_tickets(state: &AppState, user: UserId, request: &Request) -> Result<Response<Body>, ApiError> {
    let selection = match request.query_string_parameters_ref().and_then(|q| q.first("format")) {
        None => Selection::All,
        Some(format) => Selection::parse(format).ok_or(ApiError::InvalidFormat)?,
    };
    state.readiness.connected(&state.cache).await?;
    let found = state.metered(state.cache.get(user, selection, DateTime::now())).await?;
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
    let size = crate::response::size_in_lambda_response(&tickets.json);
    if size > crate::response::MAX_BODY_IN_LAMBDA_RESPONSE {
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
        &json!({ "user_id": user, "timestamp": outcome.timestamp, "passes": outcome.passes, "passes4": outcome.passes4 }),
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
        &json!({ "user_id": user, "kind": entry.kind, "id": entry.id, "duplicate": outcome == PushOutcome::Duplicate }),
    ))
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
        let result = call.await;
        let database = self.cache.driver_time().saturating_sub(time_before);
        let latency = (Metric::DbLatency, database.as_secs_f64() * 1000.0);
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
