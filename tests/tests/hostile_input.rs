//! Hostile input through the real handlers: every case gets its documented 4xx JSON error, and the stored
//! document is byte-for-byte what it was (read raw before and after each case).

use domain::AccessConfig;
use integration_tests::{app_state, call, Auth, HttpEvent, TestDb};
use lambda_adapter::Operation;
use serde_json::{json, Value};

enum Send {
    Json(Value),
    Raw(String),
    Base64(&'static str),
}

struct Case {
    name: &'static str,
    operation: Operation,
    method: &'static str,
    path: String,
    query: Option<(&'static str, &'static str)>,
    body: Option<Send>,
    status: u16,
    code: &'static str,
}

fn put(name: &'static str, body: Send, status: u16, code: &'static str) -> Case {
    Case {
        name,
        operation: Operation::UpdateTickets,
        method: "PUT",
        path: "/v1/users/7/tickets".into(),
        query: None,
        body: Some(body),
        status,
        code,
    }
}

fn post(name: &'static str, body: Send, status: u16, code: &'static str) -> Case {
    Case {
        name,
        operation: Operation::PushLog,
        method: "POST",
        path: "/v1/users/7/logs".into(),
        query: None,
        body: Some(body),
        status,
        code,
    }
}

fn get(name: &'static str, user: &str, query: Option<(&'static str, &'static str)>, status: u16, code: &'static str) -> Case {
    Case {
        name,
        operation: Operation::GetTickets,
        method: "GET",
        path: format!("/v1/users/{user}/tickets"),
        query,
        body: None,
        status,
        code,
    }
}

fn pass_with(field: &str, value: Value) -> Value {
    let mut pass = json!({ "pass_uuid": "p", "status": "ACTIVE", "payload": { "a": 1 } });
    pass[field] = value;
    json!({ "passes": [pass] })
}

fn payload(value: Value) -> Value {
    pass_with("payload", value)
}

fn cases() -> Vec<Case> {
    use Send::*;
    let deep = (0..40).fold(json!(1), |inner, _| json!({ "d": inner }));
    let many: Vec<Value> = (0..101).map(|i| json!({ "pass_uuid": format!("p{i}"), "status": "S", "payload": {} })).collect();
    let dupes =
        json!({ "passes": [{ "pass_uuid": "d", "status": "S", "payload": {} }, { "pass_uuid": "d", "status": "S", "payload": {} }] });
    vec![
        // Malformed and truncated JSON.
        put("malformed json", Raw("{".into()), 400, "invalid_json"),
        put("truncated json", Raw(r#"{"passes": [{"pass_uuid": "a""#.into()), 400, "invalid_json"),
        put("empty body", Raw(String::new()), 400, "invalid_json"),
        put("trailing garbage", Raw(r#"{"passes": []} x"#.into()), 400, "invalid_json"),
        put("not an object", Json(json!([])), 400, "invalid_field"),
        put("null body", Raw("null".into()), 400, "invalid_field"),
        put("invalid utf-8 (base64)", Base64("/w=="), 400, "invalid_json"),
        put("base64 malformed json", Base64("eyJwYXNzZXMiOg=="), 400, "invalid_json"),
        // Wrong types for every field.
        put("passes is an object", Json(json!({ "passes": {} })), 400, "invalid_field"),
        put("passes4 is a string", Json(json!({ "passes4": "x" })), 400, "invalid_field"),
        put("timestamp is a string", Json(json!({ "timestamp": "1", "passes": [] })), 400, "invalid_field"),
        put("timestamp is fractional", Json(json!({ "timestamp": 1.5, "passes": [] })), 400, "invalid_field"),
        put("timestamp is negative", Json(json!({ "timestamp": -5, "passes": [] })), 400, "invalid_field"),
        put("timestamp is huge", Json(json!({ "timestamp": 1e300, "passes": [] })), 400, "invalid_field"),
        put("pass_uuid is a number", Json(pass_with("pass_uuid", json!(5))), 400, "invalid_field"),
        put("status is null", Json(pass_with("status", Value::Null)), 400, "invalid_field"),
        put("payload is an array", Json(payload(json!([1]))), 400, "invalid_field"),
        put("payload is a string", Json(payload(json!("x"))), 400, "invalid_field"),
        put("free_ticket_status is a string", Json(pass_with("free_ticket_status", json!("1"))), 400, "invalid_field"),
        // Operator injection where a value goes.
        put("$gt as pass_uuid", Json(pass_with("pass_uuid", json!({ "$gt": "" }))), 400, "invalid_field"),
        put("$ne as status", Json(pass_with("status", json!({ "$ne": null }))), 400, "invalid_field"),
        put("$where at top level", Json(json!({ "$where": "sleep(1000)", "passes": [] })), 400, "invalid_field"),
        put("$set at top level", Json(json!({ "$set": { "user_id": 8 }, "passes": [] })), 400, "invalid_field"),
        put("$inc inside a pass", Json(pass_with("$inc", json!({ "x": 1 }))), 422, "validation_failed"),
        // Keys MongoDB cannot store, nesting, sizes.
        put("$-key in payload", Json(payload(json!({ "$where": "1" }))), 422, "validation_failed"),
        put("dotted key in payload", Json(payload(json!({ "a.b": 1 }))), 422, "validation_failed"),
        put("NUL in payload key", Json(payload(json!({ "a\u{0}b": 1 }))), 422, "validation_failed"),
        put("deep $-key in payload", Json(payload(json!({ "a": [{ "b": { "$gt": 1 } }] }))), 422, "validation_failed"),
        put("nesting beyond the limit", Json(payload(deep)), 422, "validation_failed"),
        put("payload over the byte limit", Json(payload(json!({ "blob": "x".repeat(17 * 1024) }))), 422, "validation_failed"),
        put("integer beyond 2^53", Json(payload(json!({ "n": 9_007_199_254_740_993_i64 }))), 422, "validation_failed"),
        put("body over the size limit", Raw(format!(r#"{{"passes": [], "x": "{}"}}"#, "y".repeat(4 * 1024 * 1024))), 413, "body_too_large"),
        put("too many passes", Json(json!({ "passes": many })), 422, "validation_failed"),
        put("duplicate pass_uuid", Json(dupes), 422, "validation_failed"),
        put("empty pass_uuid", Json(pass_with("pass_uuid", json!(""))), 422, "validation_failed"),
        put("pass_uuid too long", Json(pass_with("pass_uuid", json!("u".repeat(129)))), 422, "validation_failed"),
        put("control character in status", Json(pass_with("status", json!("A\nB"))), 422, "validation_failed"),
        put("hash matching neither form", Json(pass_with("payload_hash", json!("ab".repeat(32)))), 422, "payload_hash_mismatch"),
        put("no pass arrays", Json(json!({ "timestamp": 1_000 })), 422, "validation_failed"),
        put("timestamp far in the future", Json(json!({ "timestamp": 4_102_444_800_000_i64, "passes": [] })), 422, "validation_failed"),
        put("older than stored", Json(json!({ "timestamp": 1_000, "passes": [] })), 409, "stale_write"),
        // user_id in the path.
        get("user_id zero", "0", None, 400, "invalid_user_id"),
        get("user_id negative", "-1", None, 400, "invalid_user_id"),
        get("user_id fractional", "1.5", None, 400, "invalid_user_id"),
        get("user_id exponent", "7e0", None, 400, "invalid_user_id"),
        get("user_id huge", "9007199254740993", None, 400, "invalid_user_id"),
        get("user_id non-numeric", "seven", None, 400, "invalid_user_id"),
        get("user_id operator object", "%7B%22%24gt%22%3A0%7D", None, 400, "invalid_user_id"),
        get("user_id with spaces", "%207", None, 400, "invalid_user_id"),
        get("unknown format", "7", Some(("format", "passes5")), 400, "invalid_format"),
        get("format in capitals", "7", Some(("format", "ALL")), 400, "invalid_format"),
        // Wrong methods.
        Case {
            name: "DELETE tickets",
            operation: Operation::UpdateTickets,
            method: "DELETE",
            path: "/v1/users/7/tickets".into(),
            query: None,
            body: None,
            status: 405,
            code: "method_not_allowed",
        },
        Case {
            name: "GET logs",
            operation: Operation::PushLog,
            method: "GET",
            path: "/v1/users/7/logs".into(),
            query: None,
            body: None,
            status: 405,
            code: "method_not_allowed",
        },
        Case {
            name: "PATCH tickets",
            operation: Operation::GetTickets,
            method: "PATCH",
            path: "/v1/users/7/tickets".into(),
            query: None,
            body: None,
            status: 405,
            code: "method_not_allowed",
        },
        // Log entries.
        post("unknown kind", Json(json!({ "kind": "passes5", "errors": [] })), 400, "invalid_field"),
        post("missing kind", Json(json!({ "errors": [] })), 400, "invalid_field"),
        post("errors not an array", Json(json!({ "kind": "passes", "errors": "E" })), 400, "invalid_field"),
        post("data is an array", Json(json!({ "kind": "passes", "errors": [], "data": [] })), 400, "invalid_field"),
        post("$ne as id", Json(json!({ "kind": "passes", "errors": [], "id": { "$ne": "" } })), 400, "invalid_field"),
        post(
            "client sets server_time",
            Json(json!({ "kind": "passes", "errors": [], "server_time": "1970-01-01T00:00:00Z" })),
            400,
            "invalid_field",
        ),
        post("$set key in data", Json(json!({ "kind": "passes", "errors": [], "data": { "$set": 1 } })), 422, "validation_failed"),
        post("dotted key in errors", Json(json!({ "kind": "passes", "errors": [{ "a.b": 1 }] })), 422, "validation_failed"),
        post("id too long", Json(json!({ "kind": "passes", "errors": [], "id": "i".repeat(129) })), 422, "validation_failed"),
        post("entry over the byte limit", Json(json!({ "kind": "passes", "errors": ["e".repeat(9 * 1024)] })), 422, "validation_failed"),
        post("malformed json", Raw("{\"kind\":".into()), 400, "invalid_json"),
    ]
}

#[tokio::test]
async fn hostile_requests_get_their_4xx_and_change_nothing() {
    let db = TestDb::new("hostile").await;
    let state = app_state(&db, AccessConfig::default());
    let seed = json!({ "timestamp": domain::mongodb::bson::DateTime::now().timestamp_millis(), "passes": [{ "pass_uuid": "keep", "status": "ACTIVE", "payload": { "k": "v" } }] });
    let seeded = call(&state, Operation::UpdateTickets, HttpEvent::new("PUT", "/v1/users/7/tickets").auth(Auth::Iam).json(&seed)).await;
    assert_eq!(seeded.status, 200);
    call(
        &state,
        Operation::PushLog,
        HttpEvent::new("POST", "/v1/users/7/logs").auth(Auth::Iam).json(&json!({ "kind": "passes", "errors": ["E"] })),
    )
    .await;
    let before = db.raw_bytes(7).await.expect("seeded");

    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        let auth = if case.operation == Operation::GetTickets { Auth::scope("tickets/admin") } else { Auth::Iam };
        let mut event = HttpEvent::new(case.method, case.path.clone()).auth(auth).without_route_key();
        if let Some((k, v)) = case.query {
            event = event.query(k, v);
        }
        event = match case.body {
            Some(Send::Json(value)) => event.json(&value),
            Some(Send::Raw(text)) => event.body(text),
            Some(Send::Base64(encoded)) => event.base64_body(encoded),
            None => event,
        };
        let reply = call(&state, case.operation, event).await;
        let message_ok = reply.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty());
        if (reply.status, reply.error_code()) != (case.status, Some(case.code)) || !message_ok {
            failures.push(format!("{}: got {} {}", case.name, reply.status, reply.body));
        }
        if db.raw_bytes(7).await.as_ref() != Some(&before) {
            failures.push(format!("{}: the stored document changed", case.name));
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(db.cache.collection().count_documents(domain::mongodb::bson::doc! {}).await.unwrap(), 1, "no other document was created");
}
