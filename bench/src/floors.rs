//! The database side of each request on its own, from the benchmark's client (a client as the functions
//! make one, on the same driver): the command a function sends, captured from the same domain code and
//! replayed, and minimal reads and writes as the floor of any round trip.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use domain::mongodb::bson::{doc, Bson, DateTime, Document, RawDocumentBuf};
use domain::mongodb::event::command::CommandEvent;
use domain::mongodb::event::EventHandler;
use domain::mongodb::options::ClientOptions;
use domain::mongodb::{Client, Collection, Database};
use domain::{CacheConfig, LogEntryInput, PassUpdate, TicketCache, UserId};

use crate::data::{log_entry, twenty_passes};

/// One database call the benchmark times on its own.
pub enum DbProbe {
    /// `findOne({user_id})` projecting only `timestamp`: the floor of any read.
    MinimalRead { docs: Collection<RawDocumentBuf>, user: i64 },
    /// `updateOne({user_id}, {$set: {bench_write_floor: n}})` on a user's document: the floor of any
    /// write (the engine's commit, without the work of an update pipeline). The field is the benchmark's.
    MinimalWrite { docs: Collection<Document>, user: i64 },
    /// The read a GET sends: its filter and projection, the reply kept raw as the function keeps it.
    GetRead { docs: Collection<RawDocumentBuf>, user: i64 },
    /// A captured command, sent again with `runCommand`.
    Replay { database: Database, captured: Captured },
}

impl DbProbe {
    pub fn minimal_read(database: &Database, config: &CacheConfig, user: i64) -> DbProbe {
        DbProbe::MinimalRead { docs: database.collection(&config.collection), user }
    }

    pub fn minimal_write(database: &Database, config: &CacheConfig, user: i64) -> DbProbe {
        DbProbe::MinimalWrite { docs: database.collection(&config.collection), user }
    }

    pub fn get_read(database: &Database, config: &CacheConfig, user: i64) -> DbProbe {
        DbProbe::GetRead { docs: database.collection(&config.collection), user }
    }

    pub fn replay(database: &Database, captured: Captured) -> DbProbe {
        DbProbe::Replay { database: database.clone(), captured }
    }

    fn name(&self) -> &'static str {
        match self {
            DbProbe::MinimalRead { .. } => "read floor",
            DbProbe::MinimalWrite { .. } => "write floor",
            DbProbe::GetRead { .. } => "GET's find",
            DbProbe::Replay { .. } => "replayed command",
        }
    }

    /// The `n`-th call (n counts from 0 for each probe), timed from sending to the reply, or the
    /// database's error.
    pub async fn call(&self, n: usize) -> Result<Duration, String> {
        let failed = |e: domain::mongodb::error::Error| format!("{}: {e}", self.name());
        match self {
            DbProbe::MinimalRead { docs, user } => {
                let started = Instant::now();
                let found = docs.find_one(doc! { "user_id": user }).projection(doc! { "_id": 0, "timestamp": 1 }).await;
                let took = started.elapsed();
                assert!(found.map_err(failed)?.is_some(), "user {user} is not stored");
                Ok(took)
            }
            DbProbe::MinimalWrite { docs, user } => {
                let started = Instant::now();
                let result = docs.update_one(doc! { "user_id": user }, doc! { "$set": { "bench_write_floor": n as i64 } }).await;
                let took = started.elapsed();
                assert_eq!(result.map_err(failed)?.matched_count, 1, "user {user} is not stored");
                Ok(took)
            }
            DbProbe::GetRead { docs, user } => {
                let projection = doc! { "_id": 0, "timestamp": 1, "passes": 1, "passes4": 1 };
                let started = Instant::now();
                let found = docs.find_one(doc! { "user_id": user }).projection(projection).await;
                let took = started.elapsed();
                assert!(found.map_err(failed)?.is_some(), "user {user} is not stored");
                Ok(took)
            }
            DbProbe::Replay { database, captured } => {
                let command = captured.replay_command(n);
                let started = Instant::now();
                let reply = database.run_raw_command(command).await;
                let took = started.elapsed();
                captured.check_reply(&reply.map_err(failed)?, n);
                Ok(took)
            }
        }
    }
}

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

    fn check_reply(&self, reply: &Document, n: usize) {
        let ok = reply.get_f64("ok").ok().or_else(|| reply.get_i32("ok").ok().map(f64::from));
        assert_eq!(ok, Some(1.0), "{reply}");
        if self.clock.is_some() {
            // The replace is an `update`: the replay changed the document (a newer timestamp was stored), it
            // was neither skipped as a no-op nor refused as stale.
            assert!(reply.get("writeErrors").is_none(), "replay {n}: {reply}");
            let modified = reply.get("nModified").and_then(|v| v.as_i32().map(i64::from).or_else(|| v.as_i64()));
            assert_eq!(modified, Some(1), "replay {n}: {reply}");
        }
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

/// Runs `replace_passes` (20 + 20 passes) on `user` and returns the `update` it sent.
pub async fn capture_put(uri: &str, config: &CacheConfig, user: i64) -> Captured {
    let now = DateTime::now();
    let timestamp = now.timestamp_millis();
    let expires_at = timestamp + config.expire_after.as_millis() as i64;
    let command = capture(uri, config, "update", |cache| async move {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_moves_only_the_write_clock() {
        let (timestamp, expires_at) = (1_795_600_000_000_i64, 1_798_192_000_000_i64);
        let mut command = doc! {
            "findAndModify": "c", "maxTimeMS": 250_i64,
            "update": [{ "$set": {
                "timestamp": { "$cond": [{ "$lte": ["$timestamp", timestamp] }, timestamp, "$timestamp"] },
                "expires_at": DateTime::from_millis(expires_at),
                "passes": [{ "payload": { "start": 1_732_400_000_001_i64, "n": 34.0 } }],
            } }],
        };
        shift_clock(&mut command, timestamp, expires_at, 3);
        let set = command.get_array("update").unwrap()[0].as_document().unwrap().get_document("$set").unwrap();
        let guard = set.get_document("timestamp").unwrap().get_array("$cond").unwrap();
        assert_eq!(guard[1], Bson::Int64(timestamp + 3));
        assert_eq!(guard[0].as_document().unwrap().get_array("$lte").unwrap()[1], Bson::Int64(timestamp + 3));
        assert_eq!(set.get_datetime("expires_at").unwrap().timestamp_millis(), expires_at + 3);
        let payload = set.get_array("passes").unwrap()[0].as_document().unwrap().get_document("payload").unwrap();
        assert_eq!(payload, &doc! { "start": 1_732_400_000_001_i64, "n": 34.0 });
        assert_eq!(command.get_i64("maxTimeMS").unwrap(), 250);
    }
}
