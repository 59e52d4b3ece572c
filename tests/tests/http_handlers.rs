//! The HTTP contract, through the real handlers with real `lambda_http` requests, against the test MongoDB.

use std::time::{Duration, Instant};

use domain::mongodb::bson::oid::ObjectId;
use domain::mongodb::bson::{doc, Bson, DateTime};
use domain::{AccessConfig, CacheConfig};
use integration_tests::{app_state, call, fixture, Auth, HttpEvent, TestDb};
use lambda_adapter::{AppState, Metric, Operation};
use serde_json::json;

const TICKETS: &str = "/v1/users/7/tickets";
const LOGS: &str = "/v1/users/7/logs";

fn now_ms() -> i64 {
    DateTime::now().timestamp_millis()
}

fn pass(uuid: &str) -> serde_json::Value {
    json!({ "pass_uuid": uuid, "status": "ACTIVE", "free_ticket_status": 1, "payload": { "pass_uuid": uuid, "fare": { "amount": 2.75, "currency": "USD" } }, "vendor_ref": "V-1" })
}

async fn setup(prefix: &str) -> (TestDb, AppState) {
    let db = TestDb::new(prefix).await;
    let state = app_state(&db, AccessConfig::default());
    (db, state)
}

async fn put(state: &AppState, path: &str, body: serde_json::Value) -> integration_tests::Reply {
    call(state, Operation::UpdateTickets, HttpEvent::new("PUT", path).auth(Auth::Iam).json(&body)).await
}

#[tokio::test]
async fn get_200_returns_the_contract_body_and_cache_headers() {
    let (_db, state) = setup("h200").await;
    let ts = now_ms() - 5_000;
    let written = put(&state, TICKETS, json!({ "timestamp": ts, "passes": [pass("a"), pass("b")], "passes4": [pass("c")] })).await;
    assert_eq!(written.status, 200, "{}", written.body);
    assert_eq!(written.body, json!({ "user_id": 7, "timestamp": ts, "passes": 2, "passes4": 1 }));
    let logged =
        call(&state, Operation::PushLog, HttpEvent::new("POST", LOGS).auth(Auth::Iam).json(&json!({ "kind": "passes", "errors": ["E"] })))
            .await;
    assert_eq!(logged.status, 201);

    let reply = call(&state, Operation::GetTickets, HttpEvent::new("GET", TICKETS).auth(Auth::user(7))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = &reply.body;
    assert_eq!(body["user_id"], 7);
    assert_eq!(body["timestamp"], ts);
    assert!(body["age_seconds"].as_u64().unwrap() >= 5);
    assert_eq!(body["stale"], false);
    let keys: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["user_id", "timestamp", "age_seconds", "stale", "passes", "passes4"], "never the logs");
    let first = &body["passes"][0];
    assert_eq!(first["pass_uuid"], "a");
    assert_eq!(first["integrity"], "verified");
    assert_eq!(first["vendor_ref"], "V-1", "unknown pass fields are returned");
    assert_eq!(first["payload"]["fare"]["amount"], 2.75);
    assert_eq!(first["payload_hash"].as_str().unwrap().len(), 64);
    assert!(first.get("_id").is_none() && first.get("payload_hash_alg").is_none());
    assert_eq!(body["passes4"].as_array().unwrap().len(), 1);

    assert_eq!(reply.header("x-cache"), Some("HIT"));
    let max_age: u64 = reply.header("cache-control").unwrap().strip_prefix("private, max-age=").unwrap().parse().unwrap();
    assert!((3590..=3595).contains(&max_age), "{max_age}");
    assert!(reply.header("etag").unwrap().starts_with('"'));
    assert_eq!(state.metrics.total(Metric::CacheHit), 1.0);

    let only = call(&state, Operation::GetTickets, HttpEvent::new("GET", TICKETS).query("format", "passes4").auth(Auth::user(7))).await;
    assert!(only.body.get("passes").is_none());
    assert_eq!(only.body["passes4"][0]["pass_uuid"], "c");
}

#[tokio::test]
async fn get_304_when_if_none_match_names_the_etag() {
    let (_db, state) = setup("h304").await;
    put(&state, TICKETS, json!({ "passes": [pass("a")] })).await;
    let first = call(&state, Operation::GetTickets, HttpEvent::new("GET", TICKETS).auth(Auth::user(7))).await;
    let etag = first.header("etag").unwrap().to_owned();

    let again = call(
        &state,
        Operation::GetTickets,
        HttpEvent::new("GET", TICKETS).auth(Auth::user(7)).header("If-None-Match", &format!("\"other\", W/{etag}")),
    )
    .await;
    assert_eq!(again.status, 304);
    assert!(again.raw_body.is_empty(), "no body on 304");
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    assert!(again.header("cache-control").is_some());

    let other =
        call(&state, Operation::GetTickets, HttpEvent::new("GET", TICKETS).auth(Auth::user(7)).header("If-None-Match", "\"nope\"")).await;
    assert_eq!(other.status, 200);

    // A write changes the validator.
    put(&state, TICKETS, json!({ "passes": [pass("a"), pass("b")] })).await;
    let changed =
        call(&state, Operation::GetTickets, HttpEvent::new("GET", TICKETS).auth(Auth::user(7)).header("If-None-Match", &etag)).await;
    assert_eq!(changed.status, 200);
    assert_ne!(changed.header("etag"), Some(etag.as_str()));
}

#[tokio::test]
async fn get_stale_is_served_and_marked() {
    let db = TestDb::with_config("hstale", CacheConfig { fresh_ttl: Duration::from_secs(60), ..CacheConfig::default() }).await;
    let state = app_state(&db, AccessConfig::default());
    put(&state, TICKETS, json!({ "timestamp": now_ms() - 120_000, "passes": [pass("a")] })).await;
    let reply = call(&state, Operation::GetTickets, HttpEvent::new("GET", TICKETS).auth(Auth::user(7))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["stale"], true);
    assert_eq!(reply.header("x-cache"), Some("STALE"));
    assert_eq!(reply.header("cache-control"), Some("private, max-age=0"));
    assert_eq!(state.metrics.total(Metric::CacheStale), 1.0);
}

#[tokio::test]
async fn get_404_without_a_document_and_for_unknown_routes() {
    let (_db, state) = setup("h404").await;
    let reply = call(&state, Operation::GetTickets, HttpEvent::new("GET", TICKETS).auth(Auth::user(7))).await;
    assert_eq!((reply.status, reply.error_code()), (404, Some("not_found")));
    assert_eq!(state.metrics.total(Metric::CacheMiss), 1.0);
    let reply = call(&state, Operation::GetTickets, HttpEvent::new("GET", "/v1/users/7/passes").auth(Auth::user(7))).await;
    assert_eq!((reply.status, reply.error_code()), (404, Some("route_not_found")));
}

#[tokio::test]
async fn status_400_for_bad_user_ids_formats_json_and_fields() {
    let (_db, state) = setup("h400").await;
    for bad in ["0", "-3", "1.5", "abc", "12345678901234567890"] {
        let reply =
            call(&state, Operation::GetTickets, HttpEvent::new("GET", format!("/v1/users/{bad}/tickets")).auth(Auth::user(7))).await;
        assert_eq!((reply.status, reply.error_code()), (400, Some("invalid_user_id")), "{bad}");
    }
    let reply = call(&state, Operation::GetTickets, HttpEvent::new("GET", TICKETS).query("format", "passes5").auth(Auth::user(7))).await;
    assert_eq!((reply.status, reply.error_code()), (400, Some("invalid_format")));
    let reply = call(&state, Operation::UpdateTickets, HttpEvent::new("PUT", TICKETS).auth(Auth::Iam).body("{\"passes\": [")).await;
    assert_eq!((reply.status, reply.error_code()), (400, Some("invalid_json")));
    let reply = put(&state, TICKETS, json!({ "passes": [{ "pass_uuid": { "$gt": "" }, "status": "S", "payload": {} }] })).await;
    assert_eq!((reply.status, reply.error_code()), (400, Some("invalid_field")));
    assert!(reply.body["error"]["message"].as_str().unwrap().starts_with("passes[0].pass_uuid"), "{}", reply.body);
}

#[tokio::test]
async fn status_401_without_identity_and_403_for_other_users() {
    let (_db, state) = setup("hauth").await;
    put(&state, TICKETS, json!({ "passes": [pass("a")] })).await;
    let reply = call(&state, Operation::GetTickets, HttpEvent::new("GET", TICKETS)).await;
    assert_eq!((reply.status, reply.error_code()), (401, Some("unauthenticated")));
    let reply = call(&state, Operation::UpdateTickets, HttpEvent::new("PUT", TICKETS).json(&json!({ "passes": [] }))).await;
    assert_eq!(reply.status, 401);

    let reply = call(&state, Operation::GetTickets, HttpEvent::new("GET", TICKETS).auth(Auth::user(8))).await;
    assert_eq!((reply.status, reply.error_code()), (403, Some("forbidden")));
    let reply =
        call(&state, Operation::UpdateTickets, HttpEvent::new("PUT", TICKETS).auth(Auth::user(7)).json(&json!({ "passes": [] }))).await;
    assert_eq!(reply.status, 403, "a reader token cannot write, even its own user");

    let reply = call(&state, Operation::GetTickets, HttpEvent::new("GET", TICKETS).auth(Auth::scope("openid tickets/admin"))).await;
    assert_eq!(reply.status, 200, "the admin scope reads any user");
    let reply = call(
        &state,
        Operation::UpdateTickets,
        HttpEvent::new("PUT", TICKETS).auth(Auth::scope("tickets/write")).json(&json!({ "passes": [pass("z")] })),
    )
    .await;
    assert_eq!(reply.status, 200, "a token with the write scope writes");
}

#[tokio::test]
async fn local_identity_headers_count_only_in_local_mode() {
    let (db, state) = setup("hlocal").await;
    put(&state, TICKETS, json!({ "passes": [pass("a")] })).await;
    let event = || HttpEvent::new("GET", TICKETS).header("x-local-user-id", "7").without_route_key();
    let reply = call(&state, Operation::GetTickets, event()).await;
    assert_eq!(reply.status, 401, "headers ignored without AUTH_MODE=local");

    let local = app_state(&db, AccessConfig { local_auth: true, ..AccessConfig::default() });
    let reply = call(&local, Operation::GetTickets, event()).await;
    assert_eq!(reply.status, 200);
    let reply = call(&local, Operation::GetTickets, HttpEvent::new("GET", TICKETS).header("x-local-user-id", "8")).await;
    assert_eq!(reply.status, 403);
    let reply = call(
        &local,
        Operation::PushLog,
        HttpEvent::new("POST", LOGS)
            .header("x-local-scope", "tickets/write")
            .json(&json!({ "kind": "passes4", "errors": [] }))
            .without_route_key(),
    )
    .await;
    assert_eq!(reply.status, 201);
}

#[tokio::test]
async fn status_405_for_other_methods() {
    let (_db, state) = setup("h405").await;
    let reply = call(&state, Operation::GetTickets, HttpEvent::new("DELETE", TICKETS).auth(Auth::user(7)).without_route_key()).await;
    assert_eq!((reply.status, reply.error_code()), (405, Some("method_not_allowed")));
    assert_eq!(reply.header("allow"), Some("GET, PUT"));
    // A PUT that reaches the get-tickets function (function URL / cargo lambda watch) is not served there.
    let reply = call(
        &state,
        Operation::GetTickets,
        HttpEvent::new("PUT", TICKETS).auth(Auth::Iam).json(&json!({ "passes": [] })).without_route_key(),
    )
    .await;
    assert_eq!((reply.status, reply.header("allow")), (405, Some("GET")));
}

#[tokio::test]
async fn put_409_for_an_older_timestamp_with_the_stored_one() {
    let (db, state) = setup("h409").await;
    let ts = now_ms();
    put(&state, TICKETS, json!({ "timestamp": ts, "passes": [pass("a")] })).await;
    let before = db.raw_bytes(7).await.unwrap();
    let reply = put(&state, TICKETS, json!({ "timestamp": ts - 1, "passes": [pass("b")] })).await;
    assert_eq!((reply.status, reply.error_code()), (409, Some("stale_write")));
    assert_eq!(reply.body["error"]["stored_timestamp"], ts);
    assert_eq!(db.raw_bytes(7).await.unwrap(), before);
    assert_eq!(state.metrics.total(Metric::StaleWriteRejected), 1.0);
}

#[tokio::test]
async fn status_413_for_oversized_bodies() {
    let (db, state) = setup("h413").await;
    let huge = format!("{{\"passes\": [], \"pad\": \"{}\"}}", "x".repeat(state.max_body_bytes));
    let reply = call(&state, Operation::UpdateTickets, HttpEvent::new("PUT", TICKETS).auth(Auth::Iam).body(huge)).await;
    assert_eq!((reply.status, reply.error_code()), (413, Some("body_too_large")));
    assert!(db.raw(7).await.is_none());
}

#[tokio::test]
async fn status_422_for_rule_violations_and_hash_mismatches() {
    let (db, state) = setup("h422").await;
    let reply = put(&state, TICKETS, json!({ "passes": [pass("a"), pass("a")] })).await;
    assert_eq!((reply.status, reply.error_code()), (422, Some("validation_failed")));
    let mut bad_hash = pass("a");
    bad_hash["payload_hash"] = json!("0".repeat(64));
    let reply = put(&state, TICKETS, json!({ "passes": [bad_hash] })).await;
    assert_eq!((reply.status, reply.error_code()), (422, Some("payload_hash_mismatch")));
    let reply = put(&state, TICKETS, json!({ "timestamp": now_ms() })).await;
    assert_eq!(reply.status, 422, "at least one array");
    assert!(db.raw(7).await.is_none());
}

#[tokio::test]
async fn post_201_then_200_for_a_retried_id() {
    let (db, state) = setup("hpost").await;
    let event = || {
        HttpEvent::new("POST", LOGS)
            .auth(Auth::Iam)
            .json(&json!({ "kind": "passes", "errors": [{ "code": "BM_TIMEOUT" }], "data": { "attempt": 1 }, "id": "req-9" }))
    };
    let first = call(&state, Operation::PushLog, event()).await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.body, json!({ "user_id": 7, "kind": "passes", "id": "req-9", "duplicate": false }));
    let second = call(&state, Operation::PushLog, event()).await;
    assert_eq!((second.status, second.body["duplicate"].clone()), (200, json!(true)));
    let stored = db.raw(7).await.unwrap();
    assert_eq!(stored.get_array("passesLog").unwrap().len(), 1);
    assert_eq!(state.metrics.total(Metric::LogPushed), 1.0);
    assert_eq!(state.metrics.total(Metric::LogDuplicate), 1.0);
}

#[tokio::test]
async fn tampered_payload_is_reported_as_mismatch_with_a_metric() {
    let (db, state) = setup("htamper").await;
    put(&state, TICKETS, json!({ "passes": [pass("a")] })).await;
    db.cache.collection().update_one(doc! { "user_id": 7_i64 }, doc! { "$set": { "passes.0.payload.fare.amount": 0.01 } }).await.unwrap();
    let reply = call(&state, Operation::GetTickets, HttpEvent::new("GET", TICKETS).auth(Auth::user(7))).await;
    assert_eq!(reply.body["passes"][0]["integrity"], "mismatch");
    assert_eq!(state.metrics.total(Metric::IntegrityMismatch), 1.0);
}

#[tokio::test]
async fn legacy_documents_are_served_verified() {
    let (db, state) = setup("hlegacy").await;
    db.insert_raw(&[fixture("legacy_sample.ejson").remove(1)]).await;
    let reply =
        call(&state, Operation::GetTickets, HttpEvent::new("GET", "/v1/users/3000000002/tickets").auth(Auth::scope("tickets/admin"))).await;
    assert_eq!(reply.status, 200);
    let pass = &reply.body["passes"][0];
    assert_eq!(pass["integrity"], "verified");
    assert_eq!(pass["free_ticket_status"], 1.5);
    assert_eq!(pass["vendor_ref"], "X-1");
    assert_eq!(reply.body["passes4"], json!([]));
}

#[tokio::test]
async fn a_damaged_document_is_served_degraded_with_a_metric() {
    let (db, state) = setup("hdegraded").await;
    db.insert_raw(&[doc! { "user_id": 7_i64, "timestamp": 1_i64, "passes": "not an array" }]).await;
    let reply = call(&state, Operation::GetTickets, HttpEvent::new("GET", TICKETS).auth(Auth::user(7))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["passes"], json!([]));
    assert_eq!(reply.body["degraded"], json!([{ "path": "passes", "reason": "stored as a string, not an array" }]));
    assert_eq!(state.metrics.total(Metric::DegradedRead), 1.0);
}

#[tokio::test]
async fn status_503_with_retry_after_when_mongodb_is_unreachable() {
    // A port nothing listens on: the driver's short server-selection timeout bounds the wait.
    let settings = domain::Settings::from_lookup(|k| (k == "MONGODB_URI").then(|| "mongodb://127.0.0.1:9/".to_owned())).unwrap();
    let client = lambda_adapter::startup::connect("mongodb://127.0.0.1:9/", "test", settings.cache.operation_timeout).await.unwrap();
    let state = AppState::new(&client, settings, lambda_adapter::Metrics::memory("T", "t"));
    let started = Instant::now();
    let reply = call(&state, Operation::GetTickets, HttpEvent::new("GET", TICKETS).auth(Auth::user(7))).await;
    assert_eq!((reply.status, reply.error_code()), (503, Some("unavailable")));
    assert_eq!(reply.header("retry-after"), Some("2"));
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(!reply.body.to_string().contains("127.0.0.1"), "no internals in the message");
}

#[tokio::test]
async fn base64_bodies_are_decoded() {
    let (_db, state) = setup("hb64").await;
    // {"kind":"passes","errors":[]}
    let reply = call(
        &state,
        Operation::PushLog,
        HttpEvent::new("POST", LOGS).auth(Auth::Iam).base64_body("eyJraW5kIjoicGFzc2VzIiwiZXJyb3JzIjpbXX0="),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

fn admin() -> Auth {
    Auth::Jwt(json!({ "sub": "ops", "scope": "tickets/admin" }))
}

async fn bulk(state: &AppState, auth: Auth, body: serde_json::Value) -> integration_tests::Reply {
    call(state, Operation::UpdateTickets, HttpEvent::new("PUT", "/v1/tickets").auth(auth).json(&body)).await
}

#[tokio::test]
async fn bulk_put_writes_every_entry_in_one_update_and_answers_each_in_request_order() {
    let (db, state) = setup("hbulk").await;
    let ts = now_ms() - 60_000;
    // A first write brings the environment's index check behind it.
    assert_eq!(put(&state, "/v1/users/100/tickets", json!({ "timestamp": ts, "passes": [pass("z")] })).await.status, 200);
    let legacy = fixture("legacy_sample.ejson").remove(1); // user 3000000002: vendor_ref, Mongoose _ids, __v
    db.insert_raw(std::slice::from_ref(&legacy)).await;
    db.commands.clear();

    let users = [101, 102, 103, 3_000_000_002_i64];
    let entries: Vec<_> =
        users.iter().map(|u| json!({ "user_id": u, "timestamp": ts, "passes": [pass("uuid-4")], "passes4": [] })).collect();
    let reply = bulk(&state, Auth::Iam, json!({ "users": entries })).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(db.commands.names(), ["find", "update"], "each user's document named by one read, then every entry in one update");
    let results = reply.body["results"].as_array().unwrap();
    assert_eq!(
        results.iter().map(|r| (r["user_id"].as_i64().unwrap(), r["status"].as_u64().unwrap())).collect::<Vec<_>>(),
        users.iter().map(|u| (*u, 200)).collect::<Vec<_>>()
    );
    assert_eq!(reply.body["counts"], json!({ "200": 4 }));
    for user in users {
        assert_eq!(db.raw(user).await.unwrap().get_i64("timestamp").unwrap(), ts, "user {user}");
    }
    let merged = db.raw(3_000_000_002).await.unwrap();
    let stored_pass = merged.get_array("passes").unwrap()[0].as_document().unwrap().clone();
    let legacy_pass = legacy.get_array("passes").unwrap()[0].as_document().unwrap().clone();
    assert_eq!(stored_pass.get("_id"), legacy_pass.get("_id"), "a stored pass's Mongoose _id survives, as in a single PUT");
    assert_eq!(merged.get("region"), legacy.get("region"));

    // Stale, invalid and unreadable entries are answered for themselves; the others are written.
    db.commands.clear();
    let reply = bulk(
        &state,
        Auth::Iam,
        json!({ "users": [
        { "user_id": 101, "timestamp": ts + 1, "passes": [pass("b")] },
        { "user_id": 102, "timestamp": ts - 1, "passes": [pass("old")] },
        { "user_id": 103, "timestamp": ts + 1, "passes": [pass("dup"), pass("dup")] },
        { "user_id": 104, "passes": "not passes" },
        { "user_id": 105, "timestamp": ts + 1, "passes4": [pass("c")] },
    ] }),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let results = reply.body["results"].as_array().unwrap();
    let statuses: Vec<_> = results.iter().map(|r| (r["user_id"].as_i64().unwrap(), r["status"].as_u64().unwrap())).collect();
    assert_eq!(statuses, [(101, 200), (102, 409), (103, 422), (104, 422), (105, 200)]);
    assert_eq!(results[1]["stored_timestamp"], ts);
    assert_eq!(results[1]["error"]["code"], "stale_write");
    assert!(results[3]["error"]["message"].as_str().unwrap().starts_with("users[3].passes"), "{}", results[3]);
    assert_eq!(reply.body["counts"], json!({ "200": 2, "409": 1, "422": 2 }));
    assert_eq!(
        db.commands.names(),
        ["find", "update", "find"],
        "the stored timestamps are read once more, for the entries that changed nothing"
    );
    assert_eq!(db.raw(101).await.unwrap().get_i64("timestamp").unwrap(), ts + 1);
    assert_eq!(db.raw(102).await.unwrap().get_i64("timestamp").unwrap(), ts, "the stale entry changed nothing");
    assert!(db.raw(104).await.is_none());
    assert_eq!(state.metrics.total(Metric::StaleWriteRejected), 1.0);
}

#[tokio::test]
async fn bulk_put_refuses_whole_bodies_that_break_its_limits_and_writes_nothing() {
    let (db, state) = setup("hbulkbad").await;
    let entry = |user: i64| json!({ "user_id": user, "passes": [pass("a")] });
    let many: Vec<_> = (1..=101).map(entry).collect();
    for (body, what) in [
        (json!({ "users": many }), "101 entries"),
        (json!({ "users": [] }), "no entries"),
        (json!({ "users": [entry(5), entry(6), entry(5)] }), "a user twice"),
        (json!({ "users": [entry(5)], "dry_run": true }), "an unknown field"),
        (json!({ "users": { "user_id": 5 } }), "users not an array"),
    ] {
        let reply = bulk(&state, Auth::Iam, body).await;
        assert_eq!(reply.status, 400, "{what}: {}", reply.body);
    }
    // Who may write: IAM or the write scope, never a reader, never anonymous.
    let reply = bulk(&state, Auth::user(5), json!({ "users": [entry(5)] })).await;
    assert_eq!((reply.status, reply.error_code()), (403, Some("forbidden")));
    let reply = bulk(&state, Auth::None, json!({ "users": [entry(5)] })).await;
    assert_eq!(reply.status, 401);
    // Over Lambda's 6 MB: 413 before any parsing.
    let huge = format!("{{\"users\": [], \"pad\": \"{}\"}}", "x".repeat(lambda_adapter::handlers::MAX_BULK_BODY_BYTES));
    let reply = call(&state, Operation::UpdateTickets, HttpEvent::new("PUT", "/v1/tickets").auth(Auth::Iam).body(huge)).await;
    assert_eq!((reply.status, reply.error_code()), (413, Some("body_too_large")));
    for user in [5, 6] {
        assert!(db.raw(user).await.is_none(), "nothing was written for {user}");
    }
    // Served by update-tickets only: get-tickets answers 405.
    let reply =
        call(&state, Operation::GetTickets, HttpEvent::new("PUT", "/v1/tickets").auth(Auth::Iam).json(&json!({ "users": [entry(5)] })))
            .await;
    assert_eq!(reply.status, 405);
    let writer = Auth::Jwt(json!({ "sub": "job", "scope": "tickets/write" }));
    assert_eq!(bulk(&state, writer, json!({ "users": [entry(5)] })).await.status, 200);
}

#[tokio::test]
async fn the_error_report_answers_admins_with_counts_and_refuses_bad_windows() {
    let (_db, state) = setup("hreport").await;
    for (user, code) in [(7, "BM_TIMEOUT"), (7, "BM_TIMEOUT"), (8, "BM_DENIED")] {
        let body = json!({ "kind": "passes", "errors": [{ "code": code }] });
        let path = format!("/v1/users/{user}/logs");
        assert_eq!(call(&state, Operation::PushLog, HttpEvent::new("POST", path).auth(Auth::Iam).json(&body)).await.status, 201);
    }
    let report = |auth: Auth, query: &[(&str, &str)]| {
        let mut event = HttpEvent::new("GET", "/v1/admin/errors").auth(auth);
        for (k, v) in query {
            event = event.query(k, v);
        }
        call(&state, Operation::GetTickets, event)
    };
    let reply = report(admin(), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["total"], 3);
    assert_eq!(reply.body["by_code"], json!([{ "code": "BM_TIMEOUT", "count": 2 }, { "code": "BM_DENIED", "count": 1 }]));
    assert_eq!(reply.body["by_kind"], json!([{ "kind": "passes", "count": 3 }]));
    assert_eq!(reply.body["top_users"], json!([{ "user_id": 7, "count": 2 }, { "user_id": 8, "count": 1 }]));
    assert_eq!(reply.body["by_hour"].as_array().unwrap().len(), 1);
    let one = report(admin(), &[("user_id", "8"), ("kind", "passes")]).await;
    assert_eq!((one.status, one.body["total"].clone()), (200, json!(1)));
    let long_ago = report(admin(), &[("since", "2020-01-01T00:00:00Z"), ("until", "1577923200000")]).await;
    assert_eq!((long_ago.status, long_ago.body["total"].clone()), (200, json!(0)));

    // Only the admin scope: readers, writers and services get 403.
    for auth in [Auth::user(7), Auth::Iam, Auth::Jwt(json!({ "sub": "job", "scope": "tickets/write" }))] {
        assert_eq!(report(auth, &[]).await.status, 403);
    }
    assert_eq!(report(Auth::None, &[]).await.status, 401);
    // Bad parameters: 400 invalid_filter, naming the parameter.
    for (query, parameter) in [
        (vec![("since", "yesterday")], "since"),
        (vec![("until", "2026-13-01T00:00:00Z")], "until"),
        (vec![("since", "2026-11-25T00:00:00Z"), ("until", "2026-11-24T00:00:00Z")], "until"),
        (vec![("since", "2026-01-01T00:00:00Z"), ("until", "2026-11-24T00:00:00Z")], "since"),
        (vec![("kind", "passes5")], "kind"),
        (vec![("kind", "{\"$ne\":null}")], "kind"),
        (vec![("user_id", "7 OR 1=1")], "user_id"),
        (vec![("user_id", "7"), ("user_id", "8")], "user_id"),
    ] {
        let reply = report(admin(), &query).await;
        assert_eq!((reply.status, reply.error_code()), (400, Some("invalid_filter")), "{query:?}: {}", reply.body);
        assert!(reply.body["error"]["message"].as_str().unwrap().starts_with(parameter), "{query:?}: {}", reply.body);
    }
}

#[tokio::test]
async fn get_filters_by_status_time_and_verdict_in_the_one_find_on_legacy_documents() {
    let (db, state) = setup("hfilter").await;
    // 208: timestamps stored as doubles; 302: a pass without status or timestamp ("no-hash") and a
    // tampered one. Inserted one by one: fixtures from different collections share `_id`s.
    let legacy = fixture("legacy_sample.ejson").remove(3);
    let edge = fixture("legacy_edge_cases.ejson").remove(1);
    for document in [legacy, edge] {
        db.insert_raw(&[document]).await;
    }
    let get = |path: &str, query: &[(&str, &str)]| {
        let user: i64 = path.split('/').nth(3).unwrap().parse().unwrap();
        let mut event = HttpEvent::new("GET", path.to_owned()).auth(Auth::user(user));
        for (k, v) in query {
            event = event.query(k, v);
        }
        call(&state, Operation::GetTickets, event)
    };
    let uuids = |reply: &integration_tests::Reply, kind: &str| -> Vec<String> {
        reply.body[kind].as_array().map_or(vec![], |a| a.iter().map(|p| p["pass_uuid"].as_str().unwrap_or("?").to_owned()).collect())
    };
    let all = get("/v1/users/208/tickets", &[]).await;
    assert_eq!((uuids(&all, "passes"), uuids(&all, "passes4")), (vec!["uuid-1".into(), "uuid-2".into()], vec!["uuid-3".to_string()]));

    db.commands.clear();
    let active = get("/v1/users/208/tickets", &[("status", "ACTIVE")]).await;
    assert_eq!(active.status, 200, "{}", active.body);
    assert_eq!(db.commands.names(), ["find"], "filtered in the same single round trip");
    assert_eq!((uuids(&active, "passes"), uuids(&active, "passes4")), (vec!["uuid-1".to_string()], vec!["uuid-3".to_string()]));
    let since = get("/v1/users/208/tickets", &[("updated_since", "1795522372000")]).await;
    assert_eq!((uuids(&since, "passes"), uuids(&since, "passes4")), (vec!["uuid-1".to_string()], vec![]));
    let same_instant = get("/v1/users/208/tickets", &[("updated_since", "2026-11-24T12:12:52.000Z")]).await;
    assert_eq!(same_instant.body, since.body, "RFC 3339 and epoch milliseconds name the same instant");
    let combined =
        get("/v1/users/208/tickets", &[("status", "USABLE,EXPIRED"), ("updated_since", "1795522371614"), ("format", "passes")]).await;
    assert_eq!((uuids(&combined, "passes"), combined.body.get("passes4").is_none()), (vec!["uuid-2".to_string()], true));
    let none = get("/v1/users/208/tickets", &[("status", "$passes")]).await;
    assert_eq!((none.status, uuids(&none, "passes")), (200, vec![]), "a status is a value, never a field path");

    // The validator follows the body: a filtered read has its own ETag, the same filter the same one.
    let etag = |reply: &integration_tests::Reply| reply.header("etag").unwrap().to_owned();
    assert_ne!(etag(&active), etag(&all));
    assert_eq!(etag(&get("/v1/users/208/tickets", &[("status", "ACTIVE")]).await), etag(&active));

    // Missing status or timestamp never matches; verdicts filter after verification.
    let edge_active = get("/v1/users/302/tickets", &[("status", "ACTIVE")]).await;
    assert_eq!(uuids(&edge_active, "passes"), ["tampered"]);
    let dated = get("/v1/users/302/tickets", &[("updated_since", "0")]).await;
    assert_eq!(uuids(&dated, "passes"), ["tampered"]);
    let mismatch = get("/v1/users/302/tickets", &[("integrity", "mismatch")]).await;
    assert_eq!(uuids(&mismatch, "passes"), ["tampered"]);
    assert!(mismatch.body["passes"].as_array().unwrap().iter().all(|p| p["integrity"] == "mismatch"));
    let unverified = get("/v1/users/302/tickets", &[("integrity", "unverified")]).await;
    assert!(uuids(&unverified, "passes").contains(&"no-hash".to_string()), "{}", unverified.body);
    assert!(!uuids(&unverified, "passes").contains(&"tampered".to_string()));

    // Bad values: 400 invalid_filter, naming the parameter, before any database call.
    let eleven = (0..11).map(|i| format!("S{i}")).collect::<Vec<_>>().join(",");
    db.commands.clear();
    for (query, parameter) in [
        (vec![("status", eleven.as_str())], "status"),
        (vec![("status", "ACTIVE,,USED")], "status"),
        (vec![("status", "A\u{1}")], "status"),
        (vec![("updated_since", "last week")], "updated_since"),
        (vec![("updated_since", "-5")], "updated_since"),
        (vec![("integrity", "trusted")], "integrity"),
        (vec![("status", "ACTIVE"), ("status", "USED")], "status"),
    ] {
        let reply = get("/v1/users/208/tickets", &query).await;
        assert_eq!((reply.status, reply.error_code()), (400, Some("invalid_filter")), "{query:?}: {}", reply.body);
        assert!(reply.body["error"]["message"].as_str().unwrap().starts_with(parameter), "{query:?}: {}", reply.body);
    }
    assert!(db.commands.names().is_empty(), "refused before any database call");
}

#[tokio::test]
async fn the_sweeper_audits_on_its_audit_schedule_and_emits_the_counts() {
    let (db, state) = setup("haudit").await;
    assert_eq!(put(&state, TICKETS, json!({ "timestamp": now_ms(), "passes": [pass("a")] })).await.status, 200);
    db.insert_raw(&[fixture("legacy_edge_cases.ejson").remove(1)]).await; // 302: a tampered payload
    let summary = lambda_adapter::sweeper::audit(&state).await.unwrap();
    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!((json["task"].clone(), json["audited_documents"].clone()), (json!("audit"), json!(2)), "{json}");
    assert_eq!(state.metrics.total(Metric::AuditedDocuments), 2.0);
    assert!(state.metrics.total(Metric::IntegrityMismatch) >= 1.0);
    assert_eq!(state.metrics.total(Metric::AuditFindings), json["findings"].as_f64().unwrap());
}

/// A user with two documents (legacy damage: a double `user_id` from the Node service, an int64 one from this
/// service before it stored the Node driver's types): a PUT then a GET read the write back, and a push goes to
/// the same document, whichever of the two was stored first.
#[tokio::test]
async fn a_user_with_two_documents_reads_back_its_put_and_its_push() {
    let (db, state) = setup("htwodocs").await;
    // A first write brings the environment's index check behind it (the damage is made after it).
    assert_eq!(put(&state, "/v1/users/100/tickets", json!({ "passes": [pass("z")] })).await.status, 200);
    let ts = now_ms() - 60_000;
    let legacy = |uuid: &str| doc! { "pass_uuid": uuid, "status": "ACTIVE", "payload": { "pass_uuid": uuid } };
    for (id, first, second) in [
        (3_000_000_007_i64, ObjectId::from_bytes([0x65, 0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]), derived_id(3_000_000_007)),
        (3_000_000_008, derived_id(3_000_000_008), ObjectId::from_bytes([0x65, 0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2])),
    ] {
        let chosen = first.min(second);
        db.insert_duplicates(&[
            doc! { "_id": first, "user_id": id as f64, "timestamp": (ts - 10) as f64, "passes": [legacy("first")] },
            doc! { "_id": second, "user_id": id, "timestamp": ts - 20, "passes": [legacy("second")] },
        ])
        .await;
        let tickets = format!("/v1/users/{id}/tickets");
        let written = put(&state, &tickets, json!({ "timestamp": ts, "passes": [pass("mine")] })).await;
        assert_eq!(written.status, 200, "{}", written.body);
        let read = call(&state, Operation::GetTickets, HttpEvent::new("GET", &tickets).auth(Auth::user(id))).await;
        assert_eq!((read.status, read.body["timestamp"].as_i64()), (200, Some(ts)), "user {id}: {}", read.body);
        assert_eq!(read.body["passes"][0]["pass_uuid"], "mine", "user {id}");

        let entry = json!({ "kind": "passes", "errors": ["E"], "id": "p-1" });
        let logs = format!("/v1/users/{id}/logs");
        let pushed = call(&state, Operation::PushLog, HttpEvent::new("POST", &logs).auth(Auth::Iam).json(&entry)).await;
        assert_eq!(pushed.status, 201, "{}", pushed.body);
        let again = call(&state, Operation::PushLog, HttpEvent::new("POST", &logs).auth(Auth::Iam).json(&entry)).await;
        assert_eq!(again.status, 200, "user {id}: the push finds its entry where it put it");
        let stored = db.raw_by_id(&Bson::ObjectId(chosen)).await.unwrap();
        assert_eq!((stored.get_i64("timestamp").unwrap(), stored.get_array("passesLog").unwrap().len()), (ts, 1), "user {id}");
        let read_again = call(&state, Operation::GetTickets, HttpEvent::new("GET", &tickets).auth(Auth::user(id))).await;
        assert_eq!(read_again.body, read.body, "user {id}: the push and the read agree on the document");
    }
}

#[tokio::test]
async fn the_sweeper_merges_duplicates_on_its_task_and_emits_the_counts() {
    let (db, state) = setup("hmerge").await;
    assert_eq!(put(&state, TICKETS, json!({ "timestamp": now_ms(), "passes": [pass("a")] })).await.status, 200);
    db.insert_duplicates(&[
        doc! { "_id": derived_id(3_000_000_009), "user_id": 3_000_000_009_i64, "timestamp": 1_i64 },
        doc! { "_id": ObjectId::new(), "user_id": 3_000_000_009.0, "timestamp": 2.0 },
    ])
    .await;
    let summary = lambda_adapter::sweeper::merge_duplicates(&state, None).await.unwrap();
    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!(
        (json["task"].clone(), json["merged_users"].clone(), json["deleted_documents"].clone()),
        (json!("merge_duplicates"), json!(1), json!(1)),
        "{json}"
    );
    assert_eq!(json["listed"], json!([{ "user_id": 3_000_000_009_i64, "documents": 2, "outcome": "merged" }]));
    assert_eq!((state.metrics.total(Metric::DuplicatedUsers), state.metrics.total(Metric::MergedDuplicates)), (1.0, 1.0));
    assert_eq!(db.cache.collection().count_documents(doc! { "user_id": 3_000_000_009_i64 }).await.unwrap(), 1);
}

/// The `_id` this service gives a document it creates: four zero bytes, then the id.
fn derived_id(user_id: i64) -> ObjectId {
    let mut bytes = [0_u8; 12];
    bytes[4..].copy_from_slice(&user_id.to_be_bytes());
    ObjectId::from_bytes(bytes)
}
