//! Every way a request can fail, and the one place that turns each into an HTTP response.

use crate::response::{ErrorBody, ErrorDetail};
use crate::routes::RouteError;
use domain::{CacheError, IndexError, Millis, ValidationError};
use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Response};

/// Seconds a client should wait before retrying when the database is unavailable or too contended.
pub const RETRY_AFTER_SECONDS: u32 = 2;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidField(String),
    #[error("user_id must be a positive integer, got {0:?}")]
    InvalidUserId(String),
    #[error("format must be one of passes, passes4, all")]
    InvalidFormat,
    /// A query parameter that is not what it should be.
    #[error("{parameter}: {reason}")]
    InvalidFilter { parameter: &'static str, reason: String },
    #[error("the request needs an identity")]
    Unauthenticated,
    #[error("this identity may not access this user's data")]
    Forbidden,
    #[error("no cached tickets for this user")]
    NotFound,
    #[error("no such route")]
    RouteNotFound,
    #[error("method not allowed here; allowed: {allow}")]
    MethodNotAllowed { allow: String },
    #[error("a newer write is already stored")]
    StaleWrite { stored: Millis },
    #[error("the request body is larger than {max} bytes")]
    BodyTooLarge { max: usize },
    #[error(
        "the response would be {bytes} bytes, over Lambda's 6 MB limit; ask for less: one array at a time \
         (format=passes or format=passes4) instead of format={selection}"
    )]
    ResponseTooLarge { bytes: usize, selection: &'static str },
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error("the ticket cache is temporarily unavailable, retry later")]
    Unavailable,
    #[error("internal error")]
    Internal,
}

impl From<CacheError> for ApiError {
    fn from(err: CacheError) -> Self {
        match err {
            CacheError::Validation(e) => ApiError::Validation(e),
            CacheError::StaleWrite { stored } => ApiError::StaleWrite { stored },
            CacheError::Unavailable(_) | CacheError::Timeout(_) | CacheError::WriteConcern(_) | CacheError::Contended { .. } => {
                ApiError::Unavailable
            }
            CacheError::Database(_) => ApiError::Internal,
        }
    }
}

impl From<RouteError> for ApiError {
    fn from(err: RouteError) -> Self {
        match err {
            RouteError::NotFound => ApiError::RouteNotFound,
            RouteError::MethodNotAllowed { allow } => ApiError::MethodNotAllowed { allow },
            RouteError::InvalidUserId(given) => ApiError::InvalidUserId(given),
            // Start-up refuses to run without a route table, so a request never meets this.
            RouteError::Table(_) => ApiError::Internal,
        }
    }
}

impl From<IndexError> for ApiError {
    fn from(err: IndexError) -> Self {
        match err {
            IndexError::Cache(e) => ApiError::from(e),
            // Writing now could store duplicate documents; the log line says what to run.
            IndexError::Unusable { .. } => ApiError::Unavailable,
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson(_)
            | ApiError::InvalidField(_)
            | ApiError::InvalidUserId(_)
            | ApiError::InvalidFormat
            | ApiError::InvalidFilter { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound | ApiError::RouteNotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::StaleWrite { .. } => StatusCode::CONFLICT,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Validation(_) | ApiError::ResponseTooLarge { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable snake_case code clients can branch on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidField(_) => "invalid_field",
            ApiError::InvalidUserId(_) => "invalid_user_id",
            ApiError::InvalidFormat => "invalid_format",
            ApiError::InvalidFilter { .. } => "invalid_filter",
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::Forbidden => "forbidden",
            ApiError::NotFound => "not_found",
            ApiError::RouteNotFound => "route_not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::StaleWrite { .. } => "stale_write",
            ApiError::BodyTooLarge { .. } => "body_too_large",
            ApiError::ResponseTooLarge { .. } => "response_too_large",
            ApiError::Validation(ValidationError::HashMismatch { .. }) => "payload_hash_mismatch",
            ApiError::Validation(_) => "validation_failed",
            ApiError::Unavailable => "unavailable",
            ApiError::Internal => "internal",
        }
    }

    /// The error's body. Messages are written for people and never carry internals.
    pub fn detail(&self) -> ErrorDetail {
        let stored_timestamp = match self {
            ApiError::StaleWrite { stored } => Some(stored.0),
            _ => None,
        };
        ErrorDetail { code: self.code(), message: self.to_string(), stored_timestamp }
    }

    /// The JSON error response.
    pub fn into_response(self) -> Response<Body> {
        let mut response = crate::response::json(self.status(), &ErrorBody { error: self.detail() });
        let headers = response.headers_mut();
        match &self {
            ApiError::Unavailable => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
            }
            ApiError::MethodNotAllowed { allow } => {
                if let Ok(value) = HeaderValue::from_str(allow) {
                    headers.insert(header::ALLOW, value);
                }
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contention_that_outlasts_the_timeout_is_a_503_with_retry_after() {
        let source = domain::mongodb::error::Error::from(std::io::ErrorKind::Other);
        let response = ApiError::from(CacheError::Contended { retries: 7, source }).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()), Some("2"));
    }
}
