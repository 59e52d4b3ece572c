//! The stack's `DatabaseIndexes` custom resource, served by the ttl-sweeper function, so every index (the
//! unique `user_id` index above all) exists before the first write of a new deployment.
//!
//! CloudFormation sends `Create`, `Update` or `Delete` and waits for the answer at the pre-signed
//! `ResponseURL` (an HTTP PUT of a JSON document). Create and Update create every index; Delete answers
//! SUCCESS and touches nothing (the indexes stay with the data they protect). An answer is always sent:
//! after a database error, when start-up failed, when the index build outlasts the invocation (the time
//! for the answer is kept back), even after a panic. Without one the stack would wait for the resource's
//! `ServiceTimeout`.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use http_body_util::Full;
use hyper::body::Bytes;
use lambda_runtime::LambdaEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::Instrument;

use crate::startup::StartupError;
use crate::AppState;

/// Kept back from the invocation's time for sending the answer.
const ANSWER_RESERVE: Duration = Duration::from_secs(15);
/// One attempt to deliver the answer; a few are made within the reserve.
const PUT_TIMEOUT: Duration = Duration::from_secs(4);
const PUT_ATTEMPTS: u32 = 3;
/// CloudFormation rejects answers above 4 KiB; the reason is cut well below.
const MAX_REASON_CHARS: usize = 1000;

/// Whether an event is a CloudFormation custom resource request (rather than a schedule's).
pub fn is_request(event: &Value) -> bool {
    event.get("RequestType").is_some() && event.get("ResponseURL").is_some()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum RequestType {
    Create,
    Update,
    Delete,
}

/// The fields of a request this handler uses (CloudFormation sends more).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    pub request_type: RequestType,
    #[serde(rename = "ResponseURL")]
    pub response_url: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    /// Absent on Create.
    #[serde(default)]
    pub physical_resource_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Success,
    Failed,
}

/// The document PUT to the `ResponseURL`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    pub status: Status,
    pub reason: String,
    pub physical_resource_id: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CustomResourceError {
    #[error("not a CloudFormation custom resource request: {0}")]
    Malformed(#[from] serde_json::Error),
    /// The answer could not be delivered; the invocation fails so that Lambda retries it.
    #[error("the answer to CloudFormation could not be delivered: {0}")]
    NotDelivered(String),
}

impl From<CustomResourceError> for lambda_runtime::Diagnostic {
    fn from(error: CustomResourceError) -> Self {
        let error_type = match &error {
            CustomResourceError::Malformed(_) => "MalformedCustomResourceRequest",
            CustomResourceError::NotDelivered(_) => "CustomResourceAnswerNotDelivered",
        };
        lambda_runtime::Diagnostic { error_type: error_type.into(), error_message: error.to_string() }
    }
}

/// Serves one request: does the work its type asks for within the invocation's time, then answers
/// CloudFormation. `state` is the start-up's outcome, so a function that could not start still answers.
pub async fn handle(state: Result<&AppState, &StartupError>, event: LambdaEvent<Value>) -> Result<Response, CustomResourceError> {
    let span = tracing::info_span!("custom_resource", function = "ttl-sweeper");
    async {
        let request: Request = serde_json::from_value(event.payload)?;
        let budget = time_left(event.context.deadline).saturating_sub(ANSWER_RESERVE);
        tracing::info!(request_type = ?request.request_type, logical_resource_id = %request.logical_resource_id, budget_ms = budget.as_millis() as u64, "custom resource request");
        let outcome = AssertUnwindSafe(work(state, request.request_type, budget)).catch_unwind().await.unwrap_or_else(|_| Err("the index task panicked".into()));
        let response = answer(&request, state.ok(), outcome);
        match deliver(&request.response_url, &response).await {
            Ok(()) => {
                tracing::info!(status = ?response.status, reason = %response.reason, "answered CloudFormation");
                Ok(response)
            }
            Err(error) => {
                tracing::error!(%error, "could not answer CloudFormation");
                Err(CustomResourceError::NotDelivered(error))
            }
        }
    }
    .instrument(span)
    .await
}

/// Create and Update build every index; Delete keeps them (and the data) as they are.
async fn work(state: Result<&AppState, &StartupError>, request_type: RequestType, budget: Duration) -> Result<String, String> {
    if request_type == RequestType::Delete {
        return Ok("nothing to delete: the indexes stay with the data".into());
    }
    let state = state.map_err(|e| format!("the function could not start: {e}"))?;
    let config = state.cache.config();
    let namespace = format!("{}.{}", config.database, config.collection);
    match domain::indexes::create_all(&state.cache.collection(), budget).await {
        Ok(()) => Ok(format!("the indexes of {namespace} are in place")),
        Err(domain::CacheError::Timeout(_)) => Err(format!(
            "building the indexes of {namespace} took longer than the {:.1} s left in this invocation; the build goes on in the database, deploy again once it is done",
            budget.as_secs_f64()
        )),
        Err(error) => {
            let cause = std::error::Error::source(&error).map(|s| format!(": {s}")).unwrap_or_default();
            Err(format!("creating the indexes of {namespace} failed: {error}{cause}"))
        }
    }
}

/// The document for CloudFormation. The physical id names the collection, so pointing the stack at another
/// database replaces the resource (the old one is then deleted: a no-op); Delete echoes the id it was given.
pub fn answer(request: &Request, state: Option<&AppState>, outcome: Result<String, String>) -> Response {
    let physical_resource_id = match (request.request_type, state) {
        (RequestType::Create | RequestType::Update, Some(state)) => {
            format!("{}.{}", state.cache.config().database, state.cache.config().collection)
        }
        _ => request.physical_resource_id.clone().unwrap_or_else(|| request.logical_resource_id.clone()),
    };
    let (status, reason) = match outcome {
        Ok(reason) => (Status::Success, reason),
        Err(reason) => {
            let logs = std::env::var("AWS_LAMBDA_LOG_STREAM_NAME").map(|s| format!(" (log stream {s})")).unwrap_or_default();
            (Status::Failed, format!("{reason}{logs}"))
        }
    };
    Response {
        status,
        reason: reason.chars().take(MAX_REASON_CHARS).collect(),
        physical_resource_id,
        stack_id: request.stack_id.clone(),
        request_id: request.request_id.clone(),
        logical_resource_id: request.logical_resource_id.clone(),
    }
}

fn time_left(deadline_ms: u64) -> Duration {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Duration::from_millis(deadline_ms).saturating_sub(now)
}

/// PUTs the answer to the pre-signed URL, retrying a failed attempt. The URL is signed without a content
/// type, so the request sends an empty one (as AWS's own `cfn-response` does).
pub async fn deliver(url: &str, response: &Response) -> Result<(), String> {
    let body = serde_json::to_vec(response).map_err(|e| e.to_string())?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| format!("TLS roots: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build::<_, Full<Bytes>>(connector);
    let mut last_error = String::new();
    for attempt in 1..=PUT_ATTEMPTS {
        let request = hyper::Request::put(url)
            .header(hyper::header::CONTENT_TYPE, "")
            .header(hyper::header::CONTENT_LENGTH, body.len())
            .body(Full::new(Bytes::from(body.clone())))
            .map_err(|e| format!("the ResponseURL is not usable: {e}"))?;
        last_error = match tokio::time::timeout(PUT_TIMEOUT, client.request(request)).await {
            Ok(Ok(reply)) if reply.status().is_success() => return Ok(()),
            Ok(Ok(reply)) => format!("HTTP {}", reply.status()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no reply within {} s", PUT_TIMEOUT.as_secs()),
        };
        tracing::warn!(attempt, error = %last_error, "answering CloudFormation failed");
        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
    }
    Err(last_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(request_type: &str) -> Value {
        json!({
            "RequestType": request_type,
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:stack-ttl-sweeper",
            "ResponseURL": "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/x?X-Amz-Signature=abc",
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/stack/guid",
            "RequestId": "unique-id",
            "ResourceType": "Custom::DatabaseIndexes",
            "LogicalResourceId": "DatabaseIndexes",
            "ResourceProperties": { "ServiceToken": "arn:...", "Database": "cache" }
        })
    }

    #[test]
    fn requests_are_told_from_schedules_and_parsed() {
        assert!(is_request(&request("Create")));
        assert!(!is_request(&json!({ "source": "aws.scheduler" })));
        assert!(!is_request(&json!({ "detail-type": "Scheduled Event", "RequestType": "x" })));
        let parsed: Request = serde_json::from_value(request("Update")).unwrap();
        assert_eq!(parsed.request_type, RequestType::Update);
        assert_eq!(parsed.physical_resource_id, None);
    }

    #[test]
    fn a_failure_carries_the_fields_cloudformation_needs() {
        let mut event = request("Delete");
        event["PhysicalResourceId"] = json!("cache.bytemark_tickets_cache");
        let parsed: Request = serde_json::from_value(event).unwrap();
        let response = answer(&parsed, None, Err("x".repeat(5000)));
        let body = serde_json::to_value(&response).unwrap();
        assert_eq!(body["Status"], "FAILED");
        assert_eq!(body["PhysicalResourceId"], "cache.bytemark_tickets_cache", "Delete echoes the id");
        assert_eq!(body["StackId"], "arn:aws:cloudformation:us-east-1:123456789012:stack/stack/guid");
        assert_eq!(body["RequestId"], "unique-id");
        assert_eq!(body["LogicalResourceId"], "DatabaseIndexes");
        assert_eq!(body["Reason"].as_str().unwrap().len(), MAX_REASON_CHARS, "cut below CloudFormation's 4 KiB limit");
    }
}
