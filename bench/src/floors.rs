//! The database side of each request on its own: the command a function sends, captured from the same
//! domain code and replayed by the same driver, and a minimal read as the floor of any round trip.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use domain::mongodb::bson::{doc, DateTime, Document, RawDocumentBuf};
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

/// The command the domain code sends for one operation, captured through command monitoring.
pub struct Captured {
    pub command: RawDocumentBuf,
}

/// Runs `replace_passes` (20 + 20 passes, timestamp now) on `user` and returns the `findAndModify` it sent.
pub async fn capture_put(uri: &str, config: &CacheConfig, user: i64) -> Captured {
    capture(uri, config, "findAndModify", |cache| async move {
        let update: PassUpdate = serde_json::from_value(twenty_passes(None)).expect("valid body");
        cache.replace_passes(UserId::new(user).expect("user id"), &update, DateTime::now()).await.expect("replace");
    })
    .await
}

/// Runs `push_log` of the benchmark's entry on `user` and returns the `findAndModify` it sent.
pub async fn capture_post(uri: &str, config: &CacheConfig, user: i64) -> Captured {
    capture(uri, config, "findAndModify", |cache| async move {
        let entry: LogEntryInput = serde_json::from_value(log_entry("passes", 0)).expect("valid entry");
        cache.push_log(UserId::new(user).expect("user id"), &entry, DateTime::now()).await.expect("push");
    })
    .await
}

async fn capture<F, Fut>(uri: &str, config: &CacheConfig, name: &'static str, run: F) -> Captured
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
    let command: Document = last.into_iter().filter(|(key, _)| !is_envelope(key)).collect();
    Captured { command: RawDocumentBuf::from_document(&command).expect("command encodes") }
}

/// `invocations` replays of a captured command on `database` (after `warm_up` unmeasured), each timed.
pub async fn replay(database: &Database, captured: &Captured, warm_up: usize, invocations: usize) -> Vec<Duration> {
    timed(warm_up, invocations, || async {
        let reply = database.run_raw_command(captured.command.clone()).await.expect("replayed command");
        assert!(reply.get_document("value").is_ok() || reply.contains_key("lastErrorObject"), "unexpected reply {reply}");
    })
    .await
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
