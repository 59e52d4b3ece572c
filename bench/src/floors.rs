//! The database side of each request on its own: the command a function sends, captured from the same
//! domain code and replayed by the same driver, and a minimal read as the floor of any round trip.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use domain::mongodb::bson::{doc, Bson, DateTime, Document, RawDocumentBuf};
use domain::mongodb::event::command::CommandEvent;
use domain::mongodb::event::EventHandler;
use domain::mongodb::options::ClientOptions;
use domain::mongodb::{Client, Database};
use domain::{CacheConfig, LogEntryInput, PassUpdate, TicketCache, UserId};

use crate::data::{log_entry, twenty_passes};

/// Fields the driver adds to a command for its session and topology; the replay's driver adds its own.
fn is_envelope(name: &str) -> bool {
    name.starts_with('$') || name == "lsid" || name == "txnNumber"
}

/// The command the domain code sent for one operation, captured through command monitoring.
pub struct Captured {
    command: Document,
    /// The write's clock values, `timestamp` (ms) and `expires_at` (ms): a replay moves both forward, so
    /// each replay is a newer write that stores something, not a no-op the engine could skip.
    clock: Option<(i64, i64)>,
}

impl Captured {
    /// The command of the `n`-th replay.
    fn replay_command(&self, n: usize) -> RawDocumentBuf {
        let mut command = self.command.clone();
        if let Some((timestamp, expires_at)) = self.clock {
            shift_clock(&mut command, timestamp, expires_at, n as i64 + 1);
        }
        RawDocumentBuf::from_document(&command).expect("command encodes")
    }
}

/// Moves every `timestamp` value (an integer) and `expires_at` value (a date) in `document` forward by `by` ms.
fn shift_clock(document: &mut Document, timestamp: i64, expires_at: i64, by: i64) {
    for (_, value) in document.iter_mut() {
        shift_value(value, timestamp, expires_at, by);
    }
}

fn shift_value(value: &mut Bson, timestamp: i64, expires_at: i64, by: i64) {
    match value {
        Bson::Int64(n) if *n == timestamp => *n += by,
        Bson::DateTime(at) if at.timestamp_millis() == expires_at => *at = DateTime::from_millis(expires_at + by),
        Bson::Document(document) => shift_clock(document, timestamp, expires_at, by),
        Bson::Array(items) => items.iter_mut().for_each(|item| shift_value(item, timestamp, expires_at, by)),
        _ => {}
    }
}

/// Runs `replace_passes` (20 + 20 passes) on `user` and returns the `findAndModify` it sent.
pub async fn capture_put(uri: &str, config: &CacheConfig, user: i64) -> Captured {
    let now = DateTime::now();
    let timestamp = now.timestamp_millis();
    let expires_at = timestamp + config.expire_after.as_millis() as i64;
    let command = capture(uri, config, "findAndModify", |cache| async move {
        let update: PassUpdate = serde_json::from_value(twenty_passes(Some(timestamp))).expect("valid body");
        cache.replace_passes(UserId::new(user).expect("user id"), &update, now).await.expect("replace");
    })
    .await;
    Captured { command, clock: Some((timestamp, expires_at)) }
}

/// Runs `push_log` of the benchmark's entry on `user` and returns the `findAndModify` it sent (a replay
/// appends the entry again and drops the oldest: a write every time).
pub async fn capture_post(uri: &str, config: &CacheConfig, user: i64) -> Captured {
    let command = capture(uri, config, "findAndModify", |cache| async move {
        let entry: LogEntryInput = serde_json::from_value(log_entry("passes", 0)).expect("valid entry");
        cache.push_log(UserId::new(user).expect("user id"), &entry, DateTime::now()).await.expect("push");
    })
    .await;
    Captured { command, clock: None }
}

async fn capture<F, Fut>(uri: &str, config: &CacheConfig, name: &'static str, run: F) -> Document
where
    F: FnOnce(TicketCache) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let sent: Arc<Mutex<Vec<Document>>> = Arc::default();
    let sink = sent.clone();
    let mut options = ClientOptions::parse(uri).await.expect("URI");
    options.command_event_handler = Some(EventHandler::callback(move |event: CommandEvent| {
        if let CommandEvent::Started(started) = event {
            if started.command_name == name {
                if let Ok(mut sent) = sink.lock() {
                    sent.push(started.command);
                }
            }
        }
    }));
    let client = Client::with_options(options).expect("client");
    run(TicketCache::new(&client, config.clone())).await;
    let last = sent.lock().ok().and_then(|mut sent| sent.pop()).unwrap_or_else(|| panic!("no {name} was sent"));
    last.into_iter().filter(|(key, _)| !is_envelope(key)).collect()
}

/// `invocations` replays of a captured command on `database` (after `warm_up` unmeasured), each timed
/// from sending to its reply.
pub async fn replay(database: &Database, captured: &Captured, warm_up: usize, invocations: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(invocations);
    for n in 0..warm_up + invocations {
        let command = captured.replay_command(n);
        let started = Instant::now();
        let reply = database.run_raw_command(command).await.expect("replayed command");
        let took = started.elapsed();
        assert_eq!(reply.get_f64("ok").ok().or_else(|| reply.get_i32("ok").ok().map(f64::from)), Some(1.0), "{reply}");
        if let Some((timestamp, _)) = captured.clock {
            // The write stored this replay's timestamp: it was not skipped as a no-op or refused as stale.
            let stored = reply.get_document("value").ok().and_then(|v| v.get("timestamp")).and_then(Bson::as_i64);
            assert_eq!(stored, Some(timestamp + n as i64 + 1), "replay {n}: {reply}");
        }
        if n >= warm_up {
            samples.push(took);
        }
    }
    samples
}

/// The read a GET sends (its filter and projection, the reply kept raw as the function keeps it).
pub async fn get_read(database: &Database, collection: &str, user: i64, warm_up: usize, invocations: usize) -> Vec<Duration> {
    let raw = database.collection::<RawDocumentBuf>(collection);
    let projection = doc! { "_id": 0, "timestamp": 1, "passes": 1, "passes4": 1 };
    timed(warm_up, invocations, || async {
        let found = raw.find_one(doc! { "user_id": user }).projection(projection.clone()).await.expect("find");
        assert!(found.is_some(), "user {user} is not stored");
    })
    .await
}

/// The floor of any round trip: `findOne` by `user_id` (the indexed lookup every request does) returning
/// one small field.
pub async fn minimal_read(database: &Database, collection: &str, user: i64, warm_up: usize, invocations: usize) -> Vec<Duration> {
    let raw = database.collection::<RawDocumentBuf>(collection);
    timed(warm_up, invocations, || async {
        let found = raw.find_one(doc! { "user_id": user }).projection(doc! { "_id": 0, "timestamp": 1 }).await.expect("find");
        assert!(found.is_some(), "user {user} is not stored");
    })
    .await
}

/// The floor of any write: `updateOne` by `user_id` setting one small field of the user's document (the
/// engine's commit, without the work of an update pipeline). The field is the benchmark's own, on a user
/// of its own.
pub async fn minimal_write(database: &Database, collection: &str, user: i64, warm_up: usize, invocations: usize) -> Vec<Duration> {
    let docs = database.collection::<Document>(collection);
    let mut n = 0_i64;
    timed(warm_up, invocations, || {
        n += 1;
        let docs = docs.clone();
        async move {
            let result = docs.update_one(doc! { "user_id": user }, doc! { "$set": { "bench_write_floor": n } }).await.expect("update");
            assert_eq!(result.modified_count, 1, "user {user} is not stored");
        }
    })
    .await
}

async fn timed<F, Fut>(warm_up: usize, invocations: usize, mut call: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..warm_up {
        call().await;
    }
    let mut samples = Vec::with_capacity(invocations);
    for _ in 0..invocations {
        let started = Instant::now();
        call().await;
        samples.push(started.elapsed());
    }
    samples
}
