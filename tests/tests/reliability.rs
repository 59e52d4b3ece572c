//! Database faults, concurrency and secrecy, through the real handlers.

use std::time::{Duration, Instant};

use domain::mongodb::bson::{doc, Bson, DateTime};
use domain::{AccessConfig, CacheConfig, Settings};
use integration_tests::{app_state, call, unique_database, Auth, HttpEvent, Reply, Restartable, StandIn, TestDb};
use lambda_adapter::{AppState, Metrics, Operation};
use lambda_http::RequestExt;
use serde_json::json;

fn pass(uuid: &str) -> serde_json::Value {
    json!({ "pass_uuid": uuid, "status": "ACTIVE", "payload": { "p": uuid } })
}

/// Function state on its own client to `uri`, configured exactly as a deployed function.
async fn state_for(uri: &str, database: &str) -> AppState {
    let settings = Settings::from_lookup(|k| match k {
        "MONGODB_URI" => Some(uri.to_owned()),
        "MONGODB_DATABASE" => Some(database.to_owned()),
        _ => None,
    })
    .unwrap();
    let client = lambda_adapter::startup::connect(uri, "test", settings.cache.operation_timeout).await.unwrap();
    AppState::new(&client, settings, Metrics::memory("T", "t"))
}

async fn get(state: &AppState, user: i64) -> (Reply, Duration) {
    let started = Instant::now();
    let reply = call(state, Operation::GetTickets, HttpEvent::new("GET", format!("/v1/users/{user}/tickets")).auth(Auth::user(user))).await;
    (reply, started.elapsed())
}

async fn put(state: &AppState, user: i64, body: serde_json::Value) -> Reply {
    call(state, Operation::UpdateTickets, HttpEvent::new("PUT", format!("/v1/users/{user}/tickets")).auth(Auth::Iam).json(&body)).await
}

fn assert_unavailable(reply: &Reply, took: Duration) {
    assert_eq!((reply.status, reply.error_code()), (503, Some("unavailable")), "{}", reply.body);
    assert_eq!(reply.header("retry-after"), Some("2"));
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
}

/// The status a GET answers once the server is back, within `within`.
async fn status_once_back(state: &AppState, user: i64, within: Duration) -> u16 {
    let deadline = Instant::now() + within;
    loop {
        let status = get(state, user).await.0.status;
        if status != 503 || Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_warm_function_survives_the_database_going_away_and_recovers() {
    // A server of its own, so stopping it affects no other test.
    let mut database = Restartable::start();
    let state = state_for(database.uri(), &unique_database("faults")).await;
    assert_eq!(put(&state, 1, json!({ "passes": [pass("a")] })).await.status, 200);

    database.stop();
    let (reply, took) = get(&state, 1).await;
    assert_unavailable(&reply, took);
    let reply = put(&state, 1, json!({ "passes": [pass("b")] })).await;
    assert_eq!(reply.status, 503, "writes fail the same way");

    // The same process and client recover once the server is back.
    let kept = database.restart();
    let expected = if kept { 200 } else { 404 };
    assert_eq!(status_once_back(&state, 1, Duration::from_secs(10)).await, expected, "served again (data kept: {kept})");
    assert_eq!(put(&state, 1, json!({ "passes": [pass("c")] })).await.status, 200);
    assert_eq!(get(&state, 1).await.0.status, 200);
}

#[tokio::test]
async fn a_function_started_while_the_database_is_down_serves_once_it_is_up() {
    let mut database = Restartable::start();
    database.stop();
    // Start-up makes no database call, so it succeeds with the database down.
    let state = state_for(database.uri(), &unique_database("coldfault")).await;
    let (reply, took) = get(&state, 1).await;
    assert_unavailable(&reply, took);
    database.restart();
    assert_eq!(status_once_back(&state, 1, Duration::from_secs(10)).await, 404);
}

/// A stand-in of the test's own holding user 1, which then answers every command 10 s late.
async fn user_1_then_a_10_s_delay(prefix: &str) -> (StandIn, AppState) {
    let standin = StandIn::spawn(0).unwrap();
    let state = state_for(&standin.uri, &unique_database(prefix)).await;
    assert_eq!(put(&state, 1, json!({ "passes": [pass("a")] })).await.status, 200);
    let admin = domain::mongodb::Client::with_uri_str(&standin.uri).await.unwrap();
    admin.database("admin").run_command(doc! { "standinSetDelay": 10_000 }).await.unwrap();
    (standin, state)
}

#[tokio::test]
async fn a_slow_database_ends_in_a_timeout_not_a_hung_invocation() {
    let (_standin, state) = user_1_then_a_10_s_delay("slow").await;

    let (reply, took) = get(&state, 1).await;
    assert_unavailable(&reply, took);
    let limit = CacheConfig::default().operation_timeout;
    assert!(took >= limit && took < limit + Duration::from_secs(1), "bounded by the operation timeout: {took:?}");
}

/// The function's Lambda deadline comes before the operation timeout: the invocation answers 503 in time.
#[tokio::test]
async fn an_invocation_answers_before_its_lambda_deadline() {
    let (_standin, state) = user_1_then_a_10_s_delay("deadline").await;

    let left = Duration::from_millis(1_200);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let mut context = lambda_http::Context::default();
    context.deadline = (now + left).as_millis() as u64;
    let request = HttpEvent::new("GET", "/v1/users/1/tickets").auth(Auth::user(1)).request().with_lambda_context(context);
    let started = Instant::now();
    let response = lambda_adapter::handlers::serve(&state, Operation::GetTickets, request).await.unwrap();
    let took = started.elapsed();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert!(took < left, "answered {took:?} after the start, the deadline was {left:?} away");
    assert!(took >= left - Duration::from_millis(400), "it used the time it had: {took:?}");
}

#[tokio::test]
async fn concurrent_requests_end_consistent_and_without_5xx() {
    let db = TestDb::with_config("concurrent", CacheConfig { log_cap: 30, ..CacheConfig::default() }).await;
    let state = app_state(&db, AccessConfig::default());

    // 50 concurrent pushes (distinct ids) → exactly min(50, cap) entries, none twice.
    let pushes: Vec<_> = (0..50)
        .map(|i| {
            let state = state.clone();
            tokio::spawn(async move {
                let body = json!({ "kind": "passes", "errors": [format!("E{i}")], "id": format!("id-{i}") });
                call(&state, Operation::PushLog, HttpEvent::new("POST", "/v1/users/5/logs").auth(Auth::Iam).json(&body)).await.status
            })
        })
        .collect();
    for push in pushes {
        assert_eq!(push.await.unwrap(), 201);
    }
    let stored = db.raw(5).await.unwrap();
    let ids: std::collections::BTreeSet<_> =
        stored.get_array("passesLog").unwrap().iter().map(|e| e.as_document().unwrap().get_str("id").unwrap().to_owned()).collect();
    assert_eq!((stored.get_array("passesLog").unwrap().len(), ids.len()), (30, 30));

    // 20 concurrent first writes with distinct timestamps → one document holding the newest write.
    let base = DateTime::now().timestamp_millis() - 60_000;
    let writes: Vec<_> = (0..20)
        .map(|i| {
            let state = state.clone();
            tokio::spawn(async move { put(&state, 6, json!({ "timestamp": base + i, "passes": [pass(&format!("w{i}"))] })).await.status })
        })
        .collect();
    for write in writes {
        let status = write.await.unwrap();
        assert!(status == 200 || status == 409, "{status}");
    }
    assert_eq!(db.cache.collection().count_documents(doc! { "user_id": 6_i64 }).await.unwrap(), 1);
    let stored = db.raw(6).await.unwrap();
    assert_eq!(stored.get_i64("timestamp").unwrap(), base + 19, "the maximum timestamp is stored");
    let Some(Bson::Document(p)) = stored.get_array("passes").unwrap().first() else { panic!() };
    assert_eq!(p.get_str("pass_uuid").unwrap(), "w19", "with that write's passes");

    // 20 concurrent updates of an existing user.
    let updates: Vec<_> = (0..20)
        .map(|i| {
            let state = state.clone();
            tokio::spawn(
                async move { put(&state, 6, json!({ "timestamp": base + 100 + i, "passes4": [pass(&format!("u{i}"))] })).await.status },
            )
        })
        .collect();
    for update in updates {
        let status = update.await.unwrap();
        assert!(status == 200 || status == 409, "{status}");
    }
    let stored = db.raw(6).await.unwrap();
    assert_eq!(stored.get_i64("timestamp").unwrap(), base + 119);
    let Some(Bson::Document(p)) = stored.get_array("passes4").unwrap().first() else { panic!() };
    assert_eq!(p.get_str("pass_uuid").unwrap(), "u19");
}

#[tokio::test]
async fn no_user_reads_or_writes_another_users_data() {
    let db = TestDb::new("isolation").await;
    let state = app_state(&db, AccessConfig::default());
    assert_eq!(put(&state, 1, json!({ "passes": [pass("mine")] })).await.status, 200);
    let before = db.raw_bytes(1).await.unwrap();
    for (user, status) in [(1, 200), (2, 403)] {
        let reply = call(&state, Operation::GetTickets, HttpEvent::new("GET", "/v1/users/1/tickets").auth(Auth::user(user))).await;
        assert_eq!(reply.status, status, "user {user}");
        if status == 403 {
            assert!(!reply.body.to_string().contains("mine"), "nothing of user 1 in the refusal");
        }
    }
    // A reader token cannot write to anyone, itself included; nor can a token without the write scope.
    for auth in [Auth::user(1), Auth::user(2), Auth::scope("tickets/admin"), Auth::Jwt(json!({ "sub": "x" }))] {
        let reply = call(
            &state,
            Operation::UpdateTickets,
            HttpEvent::new("PUT", "/v1/users/1/tickets").auth(auth.clone()).json(&json!({ "passes": [] })),
        )
        .await;
        assert_eq!(reply.status, 403, "{auth:?}");
        let reply = call(
            &state,
            Operation::PushLog,
            HttpEvent::new("POST", "/v1/users/1/logs").auth(auth).json(&json!({ "kind": "passes", "errors": [] })),
        )
        .await;
        assert_eq!(reply.status, 403);
    }
    // A claim that is not a user id is nobody's.
    let reply = call(
        &state,
        Operation::GetTickets,
        HttpEvent::new("GET", "/v1/users/1/tickets").auth(Auth::Jwt(json!({ "custom:user_id": "1 OR 2" }))),
    )
    .await;
    assert_eq!(reply.status, 403);
    // Local-mode headers are ignored by a deployed configuration, even with a valid route.
    let reply = call(
        &state,
        Operation::GetTickets,
        HttpEvent::new("GET", "/v1/users/1/tickets").header("x-local-user-id", "1").header("x-local-scope", "tickets/admin"),
    )
    .await;
    assert_eq!(reply.status, 401);
    assert_eq!(db.raw_bytes(1).await.unwrap(), before, "nothing changed");
}
