//! Many concurrent requests on one user, through the real handlers sharing one client: what a burst of
//! first writes, a storm of mixed traffic, and client retries of pushes leave behind. On an engine that
//! returns conflicts to the client (DocumentDB: E11000, WriteConflict 112) these exercise every retry;
//! on the stand-in (one lock per command) they check the same invariants without contention.
//!
//! Invariants: no 5xx; one document per user; the maximum timestamp stored with its own passes; a 409
//! names a newer stored timestamp; the log holds exactly the expected ids, none twice; a repeated push
//! answers 200 and changes nothing.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use domain::mongodb::bson::{doc, Bson, DateTime, Document};
use domain::mongodb::Client;
use domain::{AccessConfig, CacheConfig, CacheError, Settings};
use futures_util::future::join_all;
use integration_tests::{app_state, call, unique_database, Auth, HttpEvent, Reply, StandIn, TestDb};
use lambda_adapter::{AppState, Metric, Metrics, Operation};
use lambda_http::lambda_runtime::{self, Context, LambdaEvent};
use serde_json::{json, Value};

fn pass(uuid: &str) -> Value {
    json!({ "pass_uuid": uuid, "status": "ACTIVE", "payload": { "pass_uuid": uuid, "fare": { "amount": 2.75 } } })
}

async fn put(state: &AppState, user: i64, timestamp: i64, uuid: &str) -> Reply {
    let body = json!({ "timestamp": timestamp, "passes": [pass(uuid)] });
    call(state, Operation::UpdateTickets, HttpEvent::new("PUT", format!("/v1/users/{user}/tickets")).auth(Auth::Iam).json(&body)).await
}

async fn push(state: &AppState, user: i64, id: &str) -> Reply {
    let body = json!({ "kind": "passes", "errors": [{ "code": "E", "message": id }], "id": id });
    call(state, Operation::PushLog, HttpEvent::new("POST", format!("/v1/users/{user}/logs")).auth(Auth::Iam).json(&body)).await
}

async fn get(state: &AppState, user: i64) -> Reply {
    call(state, Operation::GetTickets, HttpEvent::new("GET", format!("/v1/users/{user}/tickets")).auth(Auth::user(user))).await
}

/// Runs every future at once (each on its own task, as concurrent invocations would) and returns the
/// results in order. The slowest answer is printed: the margin left under the operation timeout.
async fn all_at_once<T: Send + 'static>(
    futures: impl IntoIterator<Item = impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let timed = |future: _| async move {
        let started = Instant::now();
        (future.await, started.elapsed())
    };
    let tasks: Vec<_> = futures.into_iter().map(|future| tokio::spawn(timed(future))).collect();
    let done: Vec<_> = join_all(tasks).await.into_iter().map(|r| r.unwrap_or_else(|e| panic!("a request task failed: {e}"))).collect();
    let slowest = done.iter().map(|(_, took)| *took).max().unwrap_or_default();
    eprintln!("[contention] {} requests at once, slowest answer {} ms", done.len(), slowest.as_millis());
    done.into_iter().map(|(result, _)| result).collect()
}

/// The bursts on a shared engine run one at a time: each test checks that its own burst is answered
/// within the operation timeout, and sibling bursts would only add the host's CPU to that.
static ONE_BURST_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Pushes every id at once; each reply with its id.
async fn push_all(state: &AppState, user: i64, ids: Vec<String>) -> Vec<(Reply, String)> {
    all_at_once(ids.into_iter().map(|id| {
        let state = state.clone();
        async move { (push(&state, user, &id).await, id) }
    }))
    .await
}

/// The one stored document of `user`, after checking there is exactly one.
async fn only_document(db: &TestDb, user: i64) -> Document {
    let count = db.cache.collection().count_documents(doc! { "user_id": user }).await.unwrap();
    assert_eq!(count, 1, "user {user}: exactly one document");
    db.raw(user).await.unwrap()
}

fn pass_uuids(stored: &Document, field: &str) -> Vec<String> {
    stored.get_array(field).unwrap().iter().filter_map(|p| Some(p.as_document()?.get_str("pass_uuid").ok()?.to_owned())).collect()
}

fn log_ids(stored: &Document) -> Vec<String> {
    stored
        .get_array("passesLog")
        .map_or(vec![], |log| log.iter().filter_map(|e| Some(e.as_document()?.get_str("id").ok()?.to_owned())).collect())
}

fn stored_timestamp(stored: &Document) -> i64 {
    match stored.get("timestamp") {
        Some(Bson::Int64(t)) => *t,
        other => panic!("timestamp {other:?}"),
    }
}

/// A write's answer: 200, or 409 naming a stored timestamp newer than the write's own.
fn assert_written_or_stale(reply: &Reply, timestamp: i64) {
    match reply.status {
        200 => assert_eq!(reply.body["timestamp"], timestamp, "{}", reply.body),
        409 => {
            let stored = reply.body["error"]["stored_timestamp"].as_i64().unwrap_or_else(|| panic!("{}", reply.body));
            assert!(stored > timestamp, "a 409 for {timestamp} names an older or equal stored timestamp {stored}");
        }
        status => panic!("PUT at {timestamp} answered {status}: {}", reply.body),
    }
}

/// Every write emitted one WriteRetries value; their total is at least the retries the cache made
/// (windows of concurrent requests overlap, so one retry can be counted by several of them).
fn assert_retries_reported(state: &AppState, writes: usize, retries_before: u64) {
    let lines = state.metrics.recorded().iter().filter(|line| line.get(Metric::WriteRetries.name()).is_some()).count();
    assert_eq!(lines, writes, "one WriteRetries value per write");
    let retried = state.cache.write_retries() - retries_before;
    let reported = state.metrics.total(Metric::WriteRetries);
    assert!(reported >= retried as f64, "reported {reported} < {retried} retries");
    eprintln!("[contention] {writes} writes, {retried} retries");
}

#[tokio::test]
async fn a_hundred_concurrent_first_writes_make_one_document_with_the_newest_write_ten_times() {
    let _turn = ONE_BURST_AT_A_TIME.lock().await;
    let db = TestDb::new("firstburst").await;
    let state = app_state(&db, AccessConfig::default());
    let retries_before = state.cache.write_retries();
    let base = DateTime::now().timestamp_millis() - 60_000;
    for round in 0..10_i64 {
        let user = 1000 + round;
        let writes = (0..100_i64).map(|i| {
            let state = state.clone();
            async move { (i, put(&state, user, base + i, &format!("r{round}-w{i}")).await) }
        });
        let replies = all_at_once(writes).await;
        for (i, reply) in &replies {
            assert_written_or_stale(reply, base + i);
        }
        assert!(replies.iter().any(|(_, r)| r.status == 200), "round {round}: at least one write stored");
        let stored = only_document(&db, user).await;
        assert_eq!(stored_timestamp(&stored), base + 99, "round {round}: the maximum timestamp is stored");
        assert_eq!(pass_uuids(&stored, "passes"), [format!("r{round}-w99")], "round {round}: with its own passes");
    }
    assert_retries_reported(&state, 1000, retries_before);
}

/// A read-mostly mix, as a ticket cache sees: half reads, a quarter replaces, a quarter pushes.
#[tokio::test]
async fn two_hundred_mixed_requests_on_one_user_end_consistent() {
    let _turn = ONE_BURST_AT_A_TIME.lock().await;
    let db = TestDb::new("mixed").await;
    let state = app_state(&db, AccessConfig::default());
    let retries_before = state.cache.write_retries();
    let (user, base) = (2000, DateTime::now().timestamp_millis() - 60_000);
    let requests = (0..200_i64).map(|i| {
        let state = state.clone();
        async move {
            let reply = match i % 4 {
                0 | 1 => get(&state, user).await,
                2 => put(&state, user, base + i, &format!("m{i}")).await,
                _ => push(&state, user, &format!("log-{i}")).await,
            };
            (i, reply)
        }
    });
    let replies = all_at_once(requests).await;

    let (mut puts, mut pushed) = (Vec::new(), BTreeSet::new());
    for (i, reply) in &replies {
        match i % 4 {
            0 | 1 => match reply.status {
                404 => {}
                // A read sees one whole write: the stored timestamp comes with that write's passes.
                200 => {
                    if let Some(timestamp) = reply.body["timestamp"].as_i64() {
                        assert_eq!(reply.body["passes"][0]["pass_uuid"], format!("m{}", timestamp - base), "{}", reply.body);
                    }
                }
                status => panic!("GET answered {status}: {}", reply.body),
            },
            2 => {
                assert_written_or_stale(reply, base + i);
                puts.push(*i);
            }
            _ => {
                assert_eq!(reply.status, 201, "POST {i}: {}", reply.body);
                pushed.insert(format!("log-{i}"));
            }
        }
    }
    let stored = only_document(&db, user).await;
    let newest = puts.iter().max().copied().unwrap_or_default();
    assert_eq!(stored_timestamp(&stored), base + newest, "the maximum timestamp is stored");
    assert_eq!(pass_uuids(&stored, "passes"), [format!("m{newest}")], "with its own passes");
    // 50 pushes under the default cap of 100: every entry kept, none twice.
    let ids = log_ids(&stored);
    assert_eq!(ids.len(), pushed.len(), "no entry lost or duplicated: {ids:?}");
    assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), pushed);
    assert_retries_reported(&state, puts.len() + pushed.len(), retries_before);
}

#[tokio::test]
async fn fifty_concurrent_pushes_then_the_same_fifty_again_store_each_entry_once() {
    let _turn = ONE_BURST_AT_A_TIME.lock().await;
    let db = TestDb::new("pushretry").await;
    let state = app_state(&db, AccessConfig::default());
    let retries_before = state.cache.write_retries();
    let user = 3000;
    let ids: Vec<String> = (0..50).map(|i| format!("p-{i}")).collect();

    for (reply, id) in push_all(&state, user, ids.clone()).await {
        assert_eq!(reply.status, 201, "{id}: {}", reply.body);
        assert_eq!(reply.body["duplicate"], false);
    }
    let stored = only_document(&db, user).await;
    let logged = log_ids(&stored);
    assert_eq!(logged.len(), 50, "no entry lost or duplicated: {logged:?}");
    assert_eq!(logged.iter().collect::<BTreeSet<_>>(), ids.iter().collect::<BTreeSet<_>>());
    let before = db.raw_bytes(user).await.unwrap();

    // The clients retry every push: each answers 200 as a duplicate and nothing changes.
    for (reply, id) in push_all(&state, user, ids.clone()).await {
        assert_eq!(reply.status, 200, "retried {id}: {}", reply.body);
        assert_eq!(reply.body["duplicate"], true);
    }
    only_document(&db, user).await;
    assert_eq!(db.raw_bytes(user).await.unwrap(), before, "retries change nothing");
    assert_retries_reported(&state, 100, retries_before);
}

#[tokio::test]
async fn concurrent_pushes_past_the_cap_keep_exactly_the_newest() {
    let _turn = ONE_BURST_AT_A_TIME.lock().await;
    let db = TestDb::with_config("pushcap", CacheConfig { log_cap: 30, ..CacheConfig::default() }).await;
    let state = app_state(&db, AccessConfig::default());
    let user = 4000;
    let wave = |prefix: &str, n: usize| push_all(&state, user, (0..n).map(|i| format!("{prefix}-{i}")).collect());
    // 50 at once under a cap of 30: 30 of them, none twice.
    for (reply, _) in wave("a", 50).await {
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    let first: Vec<String> = log_ids(&only_document(&db, user).await);
    assert_eq!(first.len(), 30);
    assert_eq!(first.iter().collect::<BTreeSet<_>>().len(), 30, "none twice: {first:?}");
    assert!(first.iter().all(|id| id.starts_with("a-")), "{first:?}");

    // 30 more, every one after all of the first wave: exactly those are the newest 30.
    for (reply, _) in wave("b", 30).await {
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    let second: BTreeSet<String> = log_ids(&only_document(&db, user).await).into_iter().collect();
    assert_eq!(second, (0..30).map(|i| format!("b-{i}")).collect::<BTreeSet<_>>());
}

// --- Injected failures ------------------------------------------------------------------------------
// Each failure, deterministically, through MongoDB's `failCommand` fail point on a stand-in of its own
// (fail points are server-wide), with function state configured as a deployed function's.

/// A stand-in, function state on its own client (operation timeout `timeout_ms`), and an admin client.
async fn injected(timeout_ms: u64) -> (StandIn, AppState, Client) {
    let standin = StandIn::spawn(0).unwrap_or_else(|e| panic!("{e}"));
    let database = unique_database("injected");
    let settings = Settings::from_lookup(|name| match name {
        "MONGODB_URI" => Some(standin.uri.clone()),
        "MONGODB_DATABASE" => Some(database.clone()),
        "MONGODB_TIMEOUT_MS" => Some(timeout_ms.to_string()),
        _ => None,
    })
    .unwrap();
    let timeout = settings.cache.operation_timeout;
    let client = lambda_adapter::startup::connect(&standin.uri, "test", timeout).await.unwrap();
    let state = AppState::new(&client, settings, Metrics::memory("T", "t"));
    state.cache.ensure_indexes().await.unwrap();
    let admin = Client::with_uri_str(&standin.uri).await.unwrap();
    (standin, state, admin)
}

/// Sets the fail point: `mode` is {"times": n}, "alwaysOn" or "off".
async fn fail_point(admin: &Client, mode: Bson, data: Document) {
    let command = doc! { "configureFailPoint": "failCommand", "mode": mode, "data": data };
    admin.database("admin").run_command(command).await.unwrap_or_else(|e| panic!("configureFailPoint: {e}"));
}

fn times(n: i32) -> Bson {
    Bson::Document(doc! { "times": n })
}

/// The WriteRetries reported by the last write.
fn last_retries(state: &AppState) -> f64 {
    let recorded = state.metrics.recorded();
    let line = recorded.iter().rev().find(|line| line.get(Metric::WriteRetries.name()).is_some());
    line.and_then(|line| line[Metric::WriteRetries.name()].as_f64()).unwrap_or_else(|| panic!("no WriteRetries in {recorded:?}"))
}

fn stored_log(stored: &Document) -> Vec<Document> {
    stored.get_array("passesLog").map_or(vec![], |log| log.iter().filter_map(|e| e.as_document().cloned()).collect())
}

#[tokio::test]
async fn injected_conflicts_are_retried_on_every_write_path_and_counted() {
    let (_standin, state, admin) = injected(3000).await;
    let base = DateTime::now().timestamp_millis() - 60_000;
    let conflict = |code: i32| doc! { "failCommands": ["update", "findAndModify"], "errorCode": code };

    fail_point(&admin, times(3), conflict(112)).await;
    let reply = put(&state, 1, base, "a").await;
    assert_eq!((reply.status, last_retries(&state)), (200, 3.0), "WriteConflict three times: {}", reply.body);
    // A lost upsert race: E11000 from the unique index.
    fail_point(&admin, times(2), conflict(11000)).await;
    assert_eq!(put(&state, 1, base + 1, "b").await.status, 200);
    assert_eq!(last_retries(&state), 2.0);
    // The server stopped an attempt at its maxTimeMS.
    fail_point(&admin, times(1), conflict(50)).await;
    assert_eq!(put(&state, 1, base + 2, "c").await.status, 200);
    assert_eq!(last_retries(&state), 1.0);
    let replies = [
        (times(2), conflict(112)),
        (times(1), doc! { "failCommands": ["update", "findAndModify"], "errorCode": 251, "errorLabels": ["TransientTransactionError"] }),
        (times(1), doc! { "failCommands": ["update", "findAndModify"], "errorCode": 9001, "errorLabels": ["RetryableWriteError"] }),
        (times(2), conflict(11000)),
    ];
    for (n, (mode, data)) in replies.into_iter().enumerate() {
        let expected = mode.as_document().and_then(|m| m.get_i32("times").ok()).unwrap_or_default();
        fail_point(&admin, mode, data.clone()).await;
        let reply = push(&state, 1, &format!("e{n}")).await;
        assert_eq!((reply.status, last_retries(&state)), (201, f64::from(expected)), "{data}: {}", reply.body);
    }
    let stored = db_document(&state, 1).await;
    assert_eq!(stored_timestamp(&stored), base + 2);
    assert_eq!(pass_uuids(&stored, "passes"), ["c"]);
    assert_eq!(log_ids(&stored), ["e0", "e1", "e2", "e3"], "each entry once");

    // The sweeper's delete and trim.
    let old = payload::js_date::to_iso_string(DateTime::from_millis(base - 8 * DAY_MS));
    let docs = state.cache.collection();
    docs.insert_many([expired_legacy(7), doc! { "user_id": 8_i64, "passesLog": [{ "server_time": &old }] }]).await.unwrap();
    fail_point(&admin, times(2), doc! { "failCommands": ["delete"], "errorCode": 112 }).await;
    let retried = state.cache.write_retries();
    let summary = lambda_adapter::sweeper::sweep(&state, LambdaEvent::new(json!({}), Context::default())).await.unwrap();
    assert_eq!((summary.report.deleted_documents, summary.report.trimmed_log_entries), (1, 1), "{summary:?}");
    assert_eq!(state.cache.write_retries() - retried, 2);
    assert_eq!(last_retries(&state), 2.0, "the sweeper reports its retries");
    fail_point(&admin, times(1), doc! { "failCommands": ["update"], "errorCode": 112 }).await;
    docs.insert_one(doc! { "user_id": 9_i64, "passesLog": [{ "server_time": &old }] }).await.unwrap();
    let summary = lambda_adapter::sweeper::sweep(&state, LambdaEvent::new(json!({}), Context::default())).await.unwrap();
    assert_eq!(summary.report.trimmed_log_entries, 1);
    assert_eq!(last_retries(&state), 1.0);
    let trimmed = docs.find_one(doc! { "user_id": 9_i64 }).await.unwrap().unwrap();
    assert!(stored_log(&trimmed).is_empty(), "{trimmed}");
}

const DAY_MS: i64 = 24 * 3_600_000;

/// A document the sweeper deletes: a legacy one (no `expires_at`, which the stand-in's TTL would remove
/// on read) written 31 days ago.
fn expired_legacy(user: i64) -> Document {
    doc! { "user_id": user, "timestamp": DateTime::now().timestamp_millis() - 31 * DAY_MS }
}

async fn db_document(state: &AppState, user: i64) -> Document {
    let docs = state.cache.collection();
    assert_eq!(docs.count_documents(doc! { "user_id": user }).await.unwrap(), 1);
    docs.find_one(doc! { "user_id": user }).await.unwrap().unwrap()
}

#[tokio::test]
async fn contention_that_outlasts_the_timeout_answers_503_with_retry_after() {
    let (_standin, state, admin) = injected(600).await;
    let limit = Duration::from_millis(600);
    fail_point(&admin, Bson::String("alwaysOn".into()), doc! { "failCommands": ["update", "findAndModify", "delete"], "errorCode": 112 })
        .await;
    let base = DateTime::now().timestamp_millis() - 60_000;
    let calls: [(&str, BoxedReply); 2] = [("PUT", Box::pin(put(&state, 1, base, "a"))), ("POST", Box::pin(push(&state, 1, "e")))];
    for (method, call) in calls {
        let started = Instant::now();
        let reply = call.await;
        let took = started.elapsed();
        assert_eq!((reply.status, reply.error_code()), (503, Some("unavailable")), "{method}: {}", reply.body);
        assert_eq!(reply.header("retry-after"), Some("2"));
        assert!(took >= limit / 2 && took < limit + Duration::from_millis(300), "{method}: retried for about the timeout, took {took:?}");
        assert!(last_retries(&state) >= 2.0, "{method}: {}", last_retries(&state));
    }
    assert_eq!(state.cache.collection().count_documents(doc! {}).await.unwrap(), 0, "nothing was written");

    state.cache.collection().insert_one(expired_legacy(7)).await.unwrap();
    let error = lambda_adapter::sweeper::sweep(&state, LambdaEvent::new(json!({}), Context::default())).await.unwrap_err();
    assert!(matches!(error, lambda_adapter::sweeper::SweepError::Cache(CacheError::Contended { .. })), "{error:?}");
    assert_eq!(lambda_runtime::Diagnostic::from(error).error_type, "DatabaseUnavailable");
    fail_point(&admin, Bson::String("off".into()), doc! {}).await;
}

type BoxedReply<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Reply> + 'a>>;

#[tokio::test]
async fn a_lost_reply_is_retried_only_when_repeating_the_write_is_harmless() {
    let (_standin, state, admin) = injected(3000).await;
    let lose_reply = || doc! { "failCommands": ["update", "findAndModify"], "closeConnection": true, "standinAfterCommand": true };
    let base = DateTime::now().timestamp_millis() - 60_000;

    // A replace is idempotent (same timestamp, same state): repeated, and answered as written.
    fail_point(&admin, times(1), lose_reply()).await;
    let reply = put(&state, 1, base, "a").await;
    assert_eq!((reply.status, last_retries(&state)), (200, 1.0), "{}", reply.body);
    let stored = db_document(&state, 1).await;
    assert_eq!((stored_timestamp(&stored), pass_uuids(&stored, "passes")), (base, vec!["a".to_owned()]));

    // A push with an id: the repeat finds the entry logged and answers 200 as a duplicate.
    fail_point(&admin, times(1), lose_reply()).await;
    let reply = push(&state, 1, "once").await;
    assert_eq!((reply.status, last_retries(&state)), (200, 1.0), "{}", reply.body);
    assert_eq!(reply.body["duplicate"], true);
    assert_eq!(log_ids(&db_document(&state, 1).await), ["once"], "appended once");

    // Without an id a repeat could append twice, so the push is not repeated: 503, stored once.
    fail_point(&admin, times(1), lose_reply()).await;
    let body = json!({ "kind": "passes", "errors": ["no id"] });
    let reply = call(&state, Operation::PushLog, HttpEvent::new("POST", "/v1/users/1/logs").auth(Auth::Iam).json(&body)).await;
    assert_eq!((reply.status, last_retries(&state)), (503, 0.0), "{}", reply.body);
    assert_eq!(stored_log(&db_document(&state, 1).await).len(), 2, "the lost write happened once");
}

#[tokio::test]
async fn errors_that_a_retry_cannot_fix_are_not_retried() {
    let (_standin, state, admin) = injected(3000).await;
    // Once only: a retry would succeed, so the 500 proves there was none.
    fail_point(&admin, times(1), doc! { "failCommands": ["findAndModify"], "errorCode": 2 }).await;
    let reply = put(&state, 1, DateTime::now().timestamp_millis(), "a").await;
    assert_eq!((reply.status, last_retries(&state)), (500, 0.0), "{}", reply.body);
    // E11000 is final on a write that is not an upsert: the sweeper's trim.
    let old = payload::js_date::to_iso_string(DateTime::from_millis(DateTime::now().timestamp_millis() - 8 * DAY_MS));
    state.cache.collection().insert_one(doc! { "user_id": 2_i64, "passesLog": [{ "server_time": &old }] }).await.unwrap();
    fail_point(&admin, times(1), doc! { "failCommands": ["update"], "errorCode": 11000 }).await;
    let error = state.cache.sweep(DateTime::now()).await.unwrap_err();
    assert!(matches!(error, CacheError::Database(_)), "{error:?}");
}

#[tokio::test]
async fn an_unsatisfied_write_concern_is_repeated_only_when_harmless() {
    let (_standin, state, admin) = injected(600).await;
    let concern = || doc! { "failCommands": ["update", "findAndModify"], "writeConcernError": { "code": 50, "codeName": "MaxTimeMSExpired", "errmsg": "waiting for replication timed out" } };
    let base = DateTime::now().timestamp_millis() - 60_000;
    // The write ran but was not acknowledged (here: its maxTimeMS ended the wait for replication). A
    // replace is repeated with a longer limit; so is a push with an id, which then finds itself logged.
    fail_point(&admin, times(1), concern()).await;
    let reply = put(&state, 1, base, "a").await;
    assert_eq!((reply.status, last_retries(&state)), (200, 1.0), "{}", reply.body);
    fail_point(&admin, times(1), concern()).await;
    let reply = push(&state, 1, "once").await;
    assert_eq!((reply.status, reply.body["duplicate"].clone(), last_retries(&state)), (200, json!(true), 1.0), "{}", reply.body);
    assert_eq!(log_ids(&db_document(&state, 1).await), ["once"]);
    // A push without an id is not repeated: 503, stored once.
    fail_point(&admin, times(1), concern()).await;
    let body = json!({ "kind": "passes", "errors": ["no id"] });
    let reply = call(&state, Operation::PushLog, HttpEvent::new("POST", "/v1/users/1/logs").auth(Auth::Iam).json(&body)).await;
    assert_eq!((reply.status, reply.header("retry-after"), last_retries(&state)), (503, Some("2"), 0.0), "{}", reply.body);
    assert_eq!(stored_log(&db_document(&state, 1).await).len(), 2);
    // Never acknowledged within the timeout: 503.
    fail_point(&admin, Bson::String("alwaysOn".into()), concern()).await;
    let reply = put(&state, 1, base + 1, "b").await;
    assert_eq!((reply.status, reply.header("retry-after")), (503, Some("2")), "{}", reply.body);
    assert!(last_retries(&state) >= 1.0);
    fail_point(&admin, Bson::String("off".into()), doc! {}).await;
}

#[tokio::test]
async fn a_document_the_cache_creates_has_the_id_derived_from_its_user() {
    if integration_tests::server().engine == integration_tests::Engine::StandIn {
        eprintln!("skipped: the stand-in (mongomock) assigns its own _id on upsert");
        return;
    }
    let db = TestDb::new("derivedid").await;
    let state = app_state(&db, AccessConfig::default());
    let derived = |user: i64| {
        let mut bytes = [0_u8; 12];
        bytes[4..].copy_from_slice(&user.to_be_bytes());
        Bson::ObjectId(domain::mongodb::bson::oid::ObjectId::from_bytes(bytes))
    };
    assert_eq!(put(&state, 5, DateTime::now().timestamp_millis(), "a").await.status, 200);
    assert_eq!(push(&state, 6, "e").await.status, 201);
    for user in [5, 6] {
        assert_eq!(db.raw(user).await.unwrap().get("_id"), Some(&derived(user)), "user {user}");
    }
    // A document written by someone else keeps its own _id through both writes.
    let legacy = domain::mongodb::bson::oid::ObjectId::new();
    db.insert_raw(&[doc! { "_id": legacy, "user_id": 7_i64 }]).await;
    assert_eq!(put(&state, 7, DateTime::now().timestamp_millis(), "b").await.status, 200);
    assert_eq!(push(&state, 7, "f").await.status, 201);
    assert_eq!(only_document(&db, 7).await.get_object_id("_id").unwrap(), legacy);
}
