//! Secrets never reach logs or error bodies. In a test binary of its own: the log capture is a
//! thread-local subscriber, and tracing caches per-callsite interest across threads, so tests running
//! concurrently in the same process could hide events from it.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::Settings;
use integration_tests::{call, Auth, HttpEvent};
use lambda_adapter::{AppState, Metrics, Operation};
use serde_json::json;

async fn state_for(uri: &str) -> AppState {
    let settings = Settings::from_lookup(|k| (k == "MONGODB_URI").then(|| uri.to_owned())).unwrap();
    let client = lambda_adapter::startup::connect(uri, "t", settings.cache.operation_timeout).await.unwrap();
    AppState::new(&client, settings, Metrics::memory("T", "t"))
}

/// A writer that keeps everything the production log format writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn secrets_never_reach_logs_or_error_bodies() {
    let logs = Captured::default();
    let sink = logs.clone();
    let _guard = tracing::subscriber::set_default(lambda_adapter::startup::json_subscriber(move || sink.clone()));
    const PASSWORD: &str = "s3cr3t-Pa55word";

    // The database is down: the error path logs the driver's error.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let uri = format!("mongodb://tickets:{PASSWORD}@127.0.0.1:{port}/?authSource=admin");
    let state = state_for(&uri).await;
    let reply = call(&state, Operation::GetTickets, HttpEvent::new("GET", "/v1/users/1/tickets").auth(Auth::user(1))).await;
    assert_eq!(reply.status, 503);
    let body = json!({ "passes": [{ "pass_uuid": "a", "status": "S", "payload": {} }] });
    let reply = call(&state, Operation::UpdateTickets, HttpEvent::new("PUT", "/v1/users/1/tickets").auth(Auth::Iam).json(&body)).await;
    assert_eq!(reply.status, 503);
    // Configuration and start-up errors do not echo the URI either.
    let bad = format!("mongodb://tickets:{PASSWORD}@/nohost");
    let startup = lambda_adapter::startup::connect(&bad, "t", Duration::from_secs(1)).await.unwrap_err().to_string();
    let settings = format!("{:?}", Settings::from_lookup(|k| (k == "MONGODB_URI").then(|| uri.clone())).unwrap());

    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logged.contains("cache operation failed"), "the failure is logged: {logged}");
    assert!(logged.contains("\"function\":\"t\""), "log lines name the function: {logged}");
    for text in [&logged, &reply.body.to_string(), &startup, &settings] {
        assert!(!text.contains(PASSWORD), "secret leaked: {text}");
    }
}
