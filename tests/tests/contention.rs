//! Many concurrent requests on one user, through the real handlers sharing one client: what a burst of
//! first writes, a storm of mixed traffic, and client retries of pushes leave behind. On an engine that
//! returns conflicts to the client (DocumentDB: E11000, WriteConflict 112) these exercise every retry;
//! on the stand-in (one lock per command) they check the same invariants without contention.
//!
//! Invariants: no 5xx; one document per user; the maximum timestamp stored with its own passes; a 409
//! names a newer stored timestamp; the log holds exactly the expected ids, none twice; a repeated push
//! answers 200 and changes nothing.

use std::collections::BTreeSet;

use domain::mongodb::bson::{doc, Bson, DateTime, Document};
use domain::{AccessConfig, CacheConfig};
use futures_util::future::join_all;
use integration_tests::{app_state, call, Auth, HttpEvent, Reply, TestDb};
use lambda_adapter::{AppState, Metric, Operation};
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
/// results in order.
async fn all_at_once<T: Send + 'static>(
    futures: impl IntoIterator<Item = impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let tasks: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    join_all(tasks).await.into_iter().map(|r| r.unwrap_or_else(|e| panic!("a request task failed: {e}"))).collect()
}

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

#[tokio::test]
async fn two_hundred_mixed_requests_on_one_user_end_consistent() {
    let db = TestDb::new("mixed").await;
    let state = app_state(&db, AccessConfig::default());
    let retries_before = state.cache.write_retries();
    let (user, base) = (2000, DateTime::now().timestamp_millis() - 60_000);
    let requests = (0..200_i64).map(|i| {
        let state = state.clone();
        async move {
            let reply = match i % 3 {
                0 => get(&state, user).await,
                1 => put(&state, user, base + i, &format!("m{i}")).await,
                _ => push(&state, user, &format!("log-{i}")).await,
            };
            (i, reply)
        }
    });
    let replies = all_at_once(requests).await;

    let (mut puts, mut pushed) = (Vec::new(), BTreeSet::new());
    for (i, reply) in &replies {
        match i % 3 {
            0 => match reply.status {
                404 => {}
                // A read sees one whole write: the stored timestamp comes with that write's passes.
                200 => {
                    if let Some(timestamp) = reply.body["timestamp"].as_i64() {
                        assert_eq!(reply.body["passes"][0]["pass_uuid"], format!("m{}", timestamp - base), "{}", reply.body);
                    }
                }
                status => panic!("GET answered {status}: {}", reply.body),
            },
            1 => {
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
    // 66 pushes under the default cap of 100: every entry kept, none twice.
    let ids = log_ids(&stored);
    assert_eq!(ids.len(), pushed.len(), "no entry lost or duplicated: {ids:?}");
    assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), pushed);
    assert_retries_reported(&state, puts.len() + pushed.len(), retries_before);
}

#[tokio::test]
async fn fifty_concurrent_pushes_then_the_same_fifty_again_store_each_entry_once() {
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
