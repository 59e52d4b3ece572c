//! The benchmark user: realistic passes and log entries, as the issues' figures were measured on
//! (20 + 20 passes of about 2 KiB each, 100 + 100 log entries), and a client as the functions make one.

use domain::mongodb::bson::DateTime;
use domain::mongodb::options::ClientOptions;
use domain::mongodb::Client;
use domain::{LogEntryInput, PassUpdate, TicketCache, UserId};
use serde_json::{json, Value};

/// A pass whose payload is about 2 KiB of JSON.
pub fn realistic_pass(uuid: &str) -> Value {
    let stops: Vec<Value> =
        (0..12).map(|i| json!({ "stop_id": format!("S{i:04}"), "name": format!("Station number {i}"), "zone": i % 3 })).collect();
    json!({
        "pass_uuid": uuid, "status": "ACTIVE", "free_ticket_status": 0,
        "payload": {
            "pass_uuid": uuid, "product": "7-Day Unlimited", "fare": { "amount": 34.0, "currency": "USD" },
            "rides": 1, "valid": true, "activation": { "start": 1_732_400_000_001_i64, "end": null },
            "tags": ["bus", "rail", "ferry"], "stops": stops,
            "signature": "a".repeat(400),
        },
    })
}

/// `PUT` body with 20 passes in each array.
pub fn twenty_passes(timestamp: Option<i64>) -> Value {
    let passes: Vec<Value> = (0..20).map(|i| realistic_pass(&format!("pass-{i}"))).collect();
    let passes4: Vec<Value> = (0..20).map(|i| realistic_pass(&format!("pass4-{i}"))).collect();
    let mut body = json!({ "passes": passes, "passes4": passes4 });
    if let Some(ts) = timestamp {
        body["timestamp"] = json!(ts);
    }
    body
}

pub fn log_entry(kind: &str, i: usize) -> Value {
    json!({ "kind": kind, "errors": [{ "code": "BM_TIMEOUT", "message": "upstream timeout" }], "data": { "attempt": i } })
}

/// A user with 20 passes in each array and 100 entries in each log.
pub async fn seed_user(cache: &TicketCache, user: i64) {
    let user = UserId::new(user).expect("positive user id");
    let update: PassUpdate = serde_json::from_value(twenty_passes(None)).expect("valid body");
    cache.replace_passes(user, &update, DateTime::now()).await.expect("seed passes");
    for kind in ["passes", "passes4"] {
        for i in 0..100 {
            let entry: LogEntryInput = serde_json::from_value(log_entry(kind, i)).expect("valid entry");
            cache.push_log(user, &entry, DateTime::now()).await.expect("seed log");
        }
    }
}

/// A client as the functions make one (no command monitoring: its events copy every reply).
pub async fn client(uri: &str) -> Client {
    let options = ClientOptions::parse(uri).await.expect("test URI");
    Client::with_options(options).expect("client")
}
