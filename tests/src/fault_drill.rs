//! The fault drill: the real bootstraps (update-tickets, push-log, get-tickets), each its own process
//! behind its own Runtime API, connected to the engine through the fault proxy; a fault switched on for a
//! window while every environment keeps serving, then off; and the invariants every fault must keep
//! (`tests/tests/network_faults.rs` says which). The soak runs the same stack for minutes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use domain::mongodb::bson::{doc, Bson, DateTime, Document};
use domain::mongodb::Client;
use futures_util::TryStreamExt;
use serde_json::{json, Value};

use crate::binaries::release_bootstraps;
use crate::environments::{millis, percentile, Answer, Environment, Tally};
use crate::fault_proxy::FaultProxy;
use crate::{server, unique_database, Auth, HttpEvent};

/// Every environment serves again this soon after the network heals.
pub const HEAL_WITHIN: Duration = Duration::from_secs(5);
/// The function timeout of `infra/template.yaml`: each invocation's deadline.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// Connections one environment may hold: the pool (`max_pool_size` 4) and the server monitor.
pub const POOL_BOUND: usize = 5;
/// How long a fault lasts: three operation timeouts and more, so that an environment serving one request
/// after another opens (at least) the driver's two concurrent connections during it.
pub const FAULT_WINDOW: Duration = Duration::from_secs(10);
/// The driver's heartbeat in these environments. A heartbeat that fails during a fault clears the pool and
/// cancels connections stuck in their first message, which hides the wedge when it happens to fall in the
/// window; a deployed environment is frozen between invocations, heartbeat included, so that cannot be
/// counted on. Thirty seconds keeps it out of every window.
pub const HEARTBEAT: &str = "heartbeatFrequencyMS=30000";
pub const LOG_CAP: usize = 100;

/// Who did what, for the invariants.
#[derive(Default)]
pub struct Ledger {
    /// Writer user → (timestamp, status) of each PUT.
    pub puts: BTreeMap<i64, Vec<(i64, u16)>>,
    /// Pusher user → (entry id, status) of each POST.
    pub pushes: BTreeMap<i64, Vec<(String, u16)>>,
    pub during: Tally,
    pub after: Tally,
    pub broken: Vec<String>,
    pub warming: bool,
    /// The engine restarts empty (the stand-in): a read may find its user gone until it is written again.
    pub reads_may_miss: bool,
    pub latencies_during: Vec<Duration>,
    pub latencies_after: Vec<Duration>,
}

/// Which environment of a [`Stack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Slot {
    Writer(usize),
    Pusher(usize),
    Reader(usize),
}

pub enum Write {
    Put(i64),
    Push(String),
}

/// One request and its answer.
pub struct Served {
    pub slot: Slot,
    pub answer: Answer,
    pub user: i64,
    pub write: Option<Write>,
}

impl Ledger {
    pub fn record(&mut self, served: Served, in_fault: bool) -> (Slot, u16) {
        let Served { slot, answer, user, write } = served;
        self.judge(&format!("{slot:?}"), &answer, in_fault);
        match write {
            Some(Write::Put(timestamp)) => self.puts.entry(user).or_default().push((timestamp, answer.status)),
            Some(Write::Push(id)) => self.pushes.entry(user).or_default().push((id, answer.status)),
            None => {}
        }
        (slot, answer.status)
    }

    pub fn judge(&mut self, env: &str, answer: &Answer, in_fault: bool) {
        let status = answer.status;
        if self.warming {
            // Not counted: the environments are starting.
        } else if in_fault {
            self.during.add(status);
            self.latencies_during.push(answer.took);
        } else {
            self.after.add(status);
            self.latencies_after.push(answer.took);
        }
        if answer.took >= DEADLINE {
            self.broken.push(format!("{env}: an invocation took {} (deadline {})", millis(answer.took), millis(DEADLINE)));
        }
        match status {
            200 | 201 | 409 => {}
            // The first round's reads may come before their user's first write.
            404 if env.starts_with("Reader") && (self.warming || self.reads_may_miss) => {}
            503 if answer.retry_after.is_some() => {}
            503 => self.broken.push(format!("{env}: 503 without Retry-After")),
            other => self.broken.push(format!("{env}: answered {other}: {}", answer.body)),
        }
    }
}

pub fn pass(uuid: &str) -> Value {
    json!({ "pass_uuid": uuid, "status": "ACTIVE", "payload": { "fare": 2.75, "id": uuid } })
}

pub fn put_event(user: i64, timestamp: i64) -> Value {
    HttpEvent::new("PUT", format!("/v1/users/{user}/tickets"))
        .auth(Auth::Iam)
        .json(&json!({ "timestamp": timestamp, "passes": [pass(&format!("{user}-{timestamp}"))] }))
        .to_json()
}

pub fn push_event(user: i64, id: &str) -> Value {
    HttpEvent::new("POST", format!("/v1/users/{user}/logs"))
        .auth(Auth::Iam)
        .json(&json!({ "kind": "passes", "errors": [{ "code": "E1", "id": id }], "id": id }))
        .to_json()
}

pub fn get_event(user: i64) -> Value {
    HttpEvent::new("GET", format!("/v1/users/{user}/tickets")).auth(Auth::scope("tickets/admin")).to_json()
}

/// The `host:port` of a single-host MongoDB URI.
pub fn host_port(uri: &str) -> SocketAddr {
    let rest = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, hosts)| hosts);
    let host = rest.split(['/', '?']).next().unwrap_or(rest);
    host.parse().unwrap_or_else(|e| panic!("{host}: {e}"))
}

/// The environments of one test, behind one proxy.
pub struct Stack {
    pub proxy: FaultProxy,
    pub writers: Vec<(i64, Environment)>,
    pub pushers: Vec<(i64, Environment)>,
    pub readers: Vec<Environment>,
    pub checker: domain::mongodb::Collection<Document>,
    pub started_at: i64,
    pub seq: AtomicI64,
    pub logs: PathBuf,
}

impl Stack {
    /// Three environments of each writer and two readers.
    pub async fn start(name: &str, engine_uri: &str) -> Stack {
        Stack::start_sized(name, engine_uri, 3, 2).await
    }

    /// `writers` environments of update-tickets and of push-log each, and `readers` of get-tickets.
    pub async fn start_sized(name: &str, engine_uri: &str, writers: usize, readers: usize) -> Stack {
        Stack::start_with(name, engine_uri, writers, readers, &[]).await
    }

    /// [`Stack::start_sized`] with more environment variables for every function.
    pub async fn start_with(name: &str, engine_uri: &str, writers: usize, readers: usize, more: &[(&'static str, String)]) -> Stack {
        let upstream = host_port(engine_uri);
        let proxy = FaultProxy::start(upstream).await.unwrap_or_else(|e| panic!("proxy: {e}"));
        let uri = proxy.uri_through(engine_uri, upstream);
        let uri = if uri.contains('?') { format!("{uri}&{HEARTBEAT}") } else { format!("{uri}?{HEARTBEAT}") };
        let database = unique_database(name);
        let dir = release_bootstraps();
        let logs = std::env::temp_dir().join(format!("faults-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&logs).unwrap_or_else(|e| panic!("{}: {e}", logs.display()));
        let env = [
            ("MONGODB_URI", uri),
            ("MONGODB_DATABASE", database.clone()),
            ("LOG_CAP", LOG_CAP.to_string()),
            ("RUST_LOG", "warn".to_owned()),
        ]
        .into_iter()
        .chain(more.iter().cloned())
        .collect::<Vec<_>>();
        let base = 4_000_000 + i64::from(std::process::id() % 10_000) * 100 + name.len() as i64 * 10;
        let spawn = |function: &'static str, k: usize| {
            let (dir, env, log) = (dir.clone(), env.clone(), logs.join(format!("{function}-{k}.log")));
            async move {
                let env = Environment::spawn(&dir, function, &env, log).await;
                env.api.set_deadline(DEADLINE);
                env
            }
        };
        let (count, reader_count) = (writers, readers);
        let mut writers = Vec::new();
        let mut pushers = Vec::new();
        let mut readers = Vec::new();
        for k in 0..count {
            writers.push((base + k as i64, spawn("update-tickets", k).await));
            pushers.push((base + (count + k) as i64, spawn("push-log", k).await));
        }
        for k in 0..reader_count {
            readers.push(spawn("get-tickets", k).await);
        }
        let checker = Client::with_uri_str(engine_uri).await.unwrap_or_else(|e| panic!("checker: {e}"));
        let checker = checker.database(&database).collection::<Document>("bytemark_tickets_cache");
        let started_at = DateTime::now().timestamp_millis() - 60_000;
        Stack { proxy, writers, pushers, readers, checker, started_at, seq: AtomicI64::new(1), logs }
    }

    /// Every environment's slot.
    pub fn slots(&self) -> Vec<Slot> {
        let writers = (0..self.writers.len()).map(Slot::Writer);
        let pushers = (0..self.pushers.len()).map(Slot::Pusher);
        writers.chain(pushers).chain((0..self.readers.len()).map(Slot::Reader)).collect()
    }

    /// One request of `slot`'s environment: a PUT with a new timestamp, a POST with a new id, or a GET.
    pub async fn serve_once(&self, slot: Slot) -> Served {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        match slot {
            Slot::Writer(k) => {
                let (user, env) = &self.writers[k];
                let timestamp = self.started_at + seq;
                Served { slot, answer: env.call(put_event(*user, timestamp)).await, user: *user, write: Some(Write::Put(timestamp)) }
            }
            Slot::Pusher(k) => {
                let (user, env) = &self.pushers[k];
                let id = format!("p{k}-{seq}");
                let answer = env.call(push_event(*user, &id)).await;
                Served { slot, answer, user: *user, write: Some(Write::Push(id)) }
            }
            Slot::Reader(k) => {
                let user = self.writers[(k + seq as usize) % self.writers.len()].0;
                Served { slot, answer: self.readers[k].call(get_event(user)).await, user, write: None }
            }
        }
    }

    /// One request from every environment, concurrently; each environment serves one at a time.
    pub async fn round(&self, ledger: &mut Ledger, in_fault: bool) -> Vec<(Slot, u16)> {
        let served = futures_util::future::join_all(self.slots().into_iter().map(|slot| self.serve_once(slot))).await;
        served.into_iter().map(|served| ledger.record(served, in_fault)).collect()
    }

    /// Every environment, on its own, until it answers a success: how long after `healed` each did.
    pub async fn until_served(&self, ledger: &mut Ledger, healed: Instant, give_up: Duration) -> Vec<(Slot, Option<Duration>)> {
        let each = self.slots().into_iter().map(|slot| async move {
            let mut served = Vec::new();
            while healed.elapsed() < give_up {
                let once = self.serve_once(slot).await;
                let ok = once.answer.status < 300;
                served.push(once);
                if ok {
                    return (slot, Some(healed.elapsed()), served);
                }
            }
            (slot, None, served)
        });
        let mut outcome = Vec::new();
        for (slot, took, served) in futures_util::future::join_all(each).await {
            for once in served {
                ledger.record(once, true);
            }
            outcome.push((slot, took));
        }
        outcome
    }

    pub fn environments(&self) -> impl Iterator<Item = &Environment> {
        self.writers.iter().map(|(_, e)| e).chain(self.pushers.iter().map(|(_, e)| e)).chain(&self.readers)
    }

    pub async fn stored(&self, user: i64) -> Vec<Document> {
        let found = self.checker.find(doc! { "user_id": user }).await;
        match found {
            Ok(cursor) => cursor.try_collect().await.unwrap_or_else(|e| panic!("read back {user}: {e}")),
            Err(e) => panic!("read back {user}: {e}"),
        }
    }
}

/// What a test reports and asserts.
pub struct Outcome {
    /// Metric lines of stuck clients replaced, over every environment.
    pub replaced: usize,
    pub name: String,
    pub heal: Vec<Duration>,
    pub ledger: Ledger,
    pub connections: Vec<usize>,
}

/// Warm, fault on for [`FAULT_WINDOW`] (while every environment keeps serving), fault off, heal, check.
pub async fn run_fault(name: &str, engine_uri: &str, fault_on: impl Fn(&Stack), fault_off: impl Fn(&Stack)) -> Outcome {
    run_fault_with(name, engine_uri, fault_on, fault_off, true).await
}

/// [`run_fault`]; `durable` is false for an engine that keeps nothing across a restart (the stand-in):
/// then only availability is checked after it.
pub async fn run_fault_with(name: &str, engine_uri: &str, fault_on: impl Fn(&Stack), fault_off: impl Fn(&Stack), durable: bool) -> Outcome {
    let stack = Stack::start(name, engine_uri).await;
    // Warm: every environment has connected and served (the readers' users exist from the first round on).
    let mut ledger = Ledger { warming: true, reads_may_miss: !durable, ..Ledger::default() };
    stack.round(&mut ledger, false).await;
    ledger.warming = false;
    let warm = stack.round(&mut ledger, false).await;
    assert!(warm.iter().all(|(_, s)| *s < 300), "{name}: warm-up failed: {warm:?}");

    fault_on(&stack);
    let fault_started = Instant::now();
    while fault_started.elapsed() < FAULT_WINDOW {
        stack.round(&mut ledger, true).await;
    }
    fault_off(&stack);
    let healed = Instant::now();

    // Each environment on its own: requests until one succeeds, timed from the heal.
    let mut heal = Vec::new();
    for (slot, took) in stack.until_served(&mut ledger, healed, 4 * HEAL_WITHIN).await {
        match took {
            Some(took) if took <= HEAL_WITHIN => heal.push(took),
            Some(took) => {
                heal.push(took);
                ledger.broken.push(format!("{slot:?} served again only {} after the heal (bound {})", millis(took), millis(HEAL_WITHIN)));
            }
            None => ledger.broken.push(format!("{slot:?} did not serve again within {}", millis(4 * HEAL_WITHIN))),
        }
    }
    // Healed: no 5xx at all.
    for _ in 0..5 {
        stack.round(&mut ledger, false).await;
    }
    if ledger.after.server_errors() > 0 {
        let after = ledger.after.clone();
        ledger.broken.push(format!("5xx after the environments served again: {after}"));
    }

    if durable {
        check_data(&stack, &mut ledger).await;
    } else {
        eprintln!("[faults] {name}: data checks skipped: {} keeps no data across a restart", server().description);
    }

    // Retired clients go once their grace (the operation timeout) has passed; give it that and a second.
    let settle = Instant::now();
    let mut connections = Vec::new();
    while settle.elapsed() < Duration::from_secs(8) {
        connections = stack.environments().map(|e| e.connections_to(stack.proxy.addr.port())).collect();
        if connections.iter().all(|c| *c <= POOL_BOUND) {
            break;
        }
        stack.round(&mut ledger, false).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if connections.iter().any(|c| *c > POOL_BOUND) {
        ledger
            .broken
            .push(format!("connections per environment {connections:?}, bound {POOL_BOUND}: the function kept connections it abandoned"));
    }
    if !ledger.broken.is_empty() {
        for env in stack.environments() {
            for line in env.complaints(4) {
                eprintln!("[faults] {name} {} {}: {line}", env.function, env.pid());
            }
        }
    }
    let replaced = stack.environments().map(|e| e.log_lines_with("\"MongoClientReplaced\"")).sum();
    let _ = std::fs::remove_dir_all(&stack.logs);
    Outcome { name: name.to_owned(), heal, ledger, connections, replaced }
}

/// The data invariants, after recovery; repeats every write answered 503 first.
pub async fn check_data(stack: &Stack, ledger: &mut Ledger) {
    for (user, env) in &stack.writers {
        let puts = ledger.puts.get(user).cloned().unwrap_or_default();
        for (timestamp, _) in puts.iter().filter(|(_, s)| *s == 503) {
            let again = env.call(put_event(*user, *timestamp)).await;
            if !matches!(again.status, 200 | 409) {
                ledger.broken.push(format!("user {user}: repeating a PUT answered 503 got {}: {}", again.status, again.body));
            }
        }
        let acknowledged = puts.iter().filter(|(_, s)| *s == 200).map(|(t, _)| *t).max();
        let stored = stack.stored(*user).await;
        let [document] = stored.as_slice() else {
            ledger.broken.push(format!("user {user}: {} documents", stored.len()));
            continue;
        };
        let timestamp = match document.get("timestamp") {
            Some(Bson::Int64(t)) => *t,
            Some(Bson::Int32(t)) => i64::from(*t),
            Some(Bson::Double(t)) => *t as i64,
            other => panic!("user {user}: timestamp {other:?}"),
        };
        if acknowledged.is_some_and(|acked| timestamp < acked) {
            ledger.broken.push(format!("user {user}: stored timestamp {timestamp} is older than an acknowledged write {acknowledged:?}"));
        }
        let uuid = document.get_array("passes").ok().and_then(|p| p.first()?.as_document()?.get_str("pass_uuid").ok());
        if uuid != Some(format!("{user}-{timestamp}").as_str()) {
            ledger.broken.push(format!("user {user}: timestamp {timestamp} stored with pass {uuid:?}: not one whole write"));
        }
    }
    for (user, env) in &stack.pushers {
        let pushes = ledger.pushes.get(user).cloned().unwrap_or_default();
        let before: Vec<String> = stack.stored(*user).await.first().map(log_ids).unwrap_or_default();
        // The log in append order: each push stored when it was sent, then each repeat that stored its entry
        // only now. The newest LOG_CAP of that are what the log must hold.
        let mut appended: Vec<&String> = Vec::new();
        let mut stored_now: Vec<&String> = Vec::new();
        for (id, status) in &pushes {
            if *status != 503 {
                appended.push(id);
                continue;
            }
            let again = env.call(push_event(*user, id)).await;
            let stored_before = before.contains(id);
            let expected = if stored_before { 200 } else { 201 };
            if again.status != expected {
                ledger.broken.push(format!("user {user}: repeating push {id} (stored before: {stored_before}) answered {}", again.status));
            }
            if stored_before {
                appended.push(id);
            } else {
                stored_now.push(id);
            }
        }
        appended.extend(stored_now);
        let stored = stack.stored(*user).await;
        let [document] = stored.as_slice() else {
            ledger.broken.push(format!("user {user}: {} documents", stored.len()));
            continue;
        };
        let ids = log_ids(document);
        let unique: BTreeSet<&String> = ids.iter().collect();
        if unique.len() != ids.len() {
            ledger.broken.push(format!("user {user}: a log entry id is stored twice: {ids:?}"));
        }
        if ids.len() > LOG_CAP {
            ledger.broken.push(format!("user {user}: {} log entries, cap {LOG_CAP}", ids.len()));
        }
        for id in appended.iter().skip(appended.len().saturating_sub(LOG_CAP)) {
            if !unique.contains(*id) {
                ledger.broken.push(format!("user {user}: push {id} (answered 2xx, or repeated after a 503) is not stored"));
            }
        }
    }
    let reader = &stack.readers[0];
    for (user, _) in &stack.writers {
        let answer = reader.call(get_event(*user)).await;
        let verdicts: Vec<&str> = answer.body["passes"].as_array().into_iter().flatten().filter_map(|p| p["integrity"].as_str()).collect();
        if answer.status != 200 || verdicts.is_empty() || verdicts.iter().any(|v| *v != "verified") {
            ledger.broken.push(format!("user {user}: read back {} with verdicts {verdicts:?}", answer.status));
        }
    }
}

pub fn log_ids(document: &Document) -> Vec<String> {
    document
        .get_array("passesLog")
        .map(|entries| entries.iter().filter_map(|e| e.as_document()?.get_str("id").ok().map(str::to_owned)).collect())
        .unwrap_or_default()
}

pub fn report(outcome: Outcome) {
    let Outcome { name, mut heal, mut ledger, connections, replaced } = outcome;
    heal.sort();
    ledger.latencies_during.sort();
    ledger.latencies_after.sort();
    eprintln!(
        "[faults] {name} ({}): during {} (p50 {}, max {}) | served again after the heal in p50 {} max {} | after {} (p50 {}, p99 {}) | connections per environment {:?} | stuck clients replaced {replaced}",
        server().description,
        ledger.during,
        millis(percentile(&ledger.latencies_during, 0.5)),
        millis(percentile(&ledger.latencies_during, 1.0)),
        millis(percentile(&heal, 0.5)),
        millis(percentile(&heal, 1.0)),
        ledger.after,
        millis(percentile(&ledger.latencies_after, 0.5)),
        millis(percentile(&ledger.latencies_after, 0.99)),
        connections,
    );
    assert!(ledger.broken.is_empty(), "{name}: {} invariant(s) broken:\n{}", ledger.broken.len(), ledger.broken.join("\n"));
}
