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

/// Lambda refuses a function response over 6 MB (API Gateway then answers 502). A body travels as a JSON
/// string inside that response, next to the status and headers, for which this leaves 16 KiB.
pub const MAX_BODY_IN_LAMBDA_RESPONSE: usize = 6 * 1024 * 1024 - 16 * 1024;

/// Bytes a JSON body takes as a string inside the Lambda response: `"` and `\` are escaped with one
/// more byte, control characters as at most `\u00XX`.
pub fn size_in_lambda_response(body: &str) -> usize {
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
}
