//! Response bodies.

use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use serde::Serialize;

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
