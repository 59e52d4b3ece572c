//! Faults on the wire and in the engine, through the real release bootstraps: update-tickets and push-log
//! (three environments each) and get-tickets (two), each its own process behind its own Runtime API,
//! connected to the engine through the fault proxy (`integration_tests::fault_proxy`).
//!
//! Each test warms the environments, switches one fault on for a window while every environment keeps
//! serving requests one at a time (as Lambda sends them), switches it off, and then checks:
//! - during the fault, every answer is a success or a 503 with `Retry-After`, never a 500, and every
//!   invocation ends before its deadline (`Lambda-Runtime-Deadline-Ms`, the template's 10 s);
//! - after it, every environment serves again within [`HEAL_WITHIN`] of the network healing, and then
//!   without a 5xx;
//! - a write answered 2xx is stored and read back; a write answered 503 is stored whole or not at all and
//!   repeating it is safe; no log entry id is stored twice; the cap holds; every document reads 200 with
//!   every pass verified;
//! - every environment's open connections come back within the pool's bound: a silenced connection that
//!   nobody closes is not kept by the function.
//!
//! The tests run one at a time (the fault timings are what they check) on the process's engine; the
//! engine-kill test has an engine of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::mongodb::bson::{doc, Bson, DateTime, Document};
use domain::mongodb::Client;
use futures_util::TryStreamExt;
use integration_tests::binaries::release_bootstraps;
use integration_tests::documentdb::{self, DocumentDb};
use integration_tests::environments::{millis, percentile, Answer, Environment, Tally};
use integration_tests::fault_proxy::{Fault, FaultProxy};
use integration_tests::{server, unique_database, Auth, Engine, HttpEvent, StandIn};
use serde_json::{json, Value};
use tokio::sync::Mutex;

/// Every environment serves again this soon after the network heals.
const HEAL_WITHIN: Duration = Duration::from_secs(5);
/// The function timeout of `infra/template.yaml`: each invocation's deadline.
const DEADLINE: Duration = Duration::from_secs(10);
/// Connections one environment may hold: the pool (`max_pool_size` 4) and the server monitor.
const POOL_BOUND: usize = 5;
/// How long a fault lasts: three operation timeouts and more, so that an environment serving one request
/// after another opens (at least) the driver's two concurrent connections during it.
const FAULT_WINDOW: Duration = Duration::from_secs(10);
/// The driver's heartbeat in these environments. A heartbeat that fails during a fault clears the pool and
/// cancels connections stuck in their first message, which hides the wedge when it happens to fall in the
/// window; a deployed environment is frozen between invocations, heartbeat included, so that cannot be
/// counted on. Thirty seconds keeps it out of every window.
const HEARTBEAT: &str = "heartbeatFrequencyMS=30000";
const LOG_CAP: usize = 100;

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Who did what, for the invariants.
#[derive(Default)]
struct Ledger {
    /// Writer user → (timestamp, status) of each PUT.
    puts: BTreeMap<i64, Vec<(i64, u16)>>,
    /// Pusher user → (entry id, status) of each POST.
    pushes: BTreeMap<i64, Vec<(String, u16)>>,
    during: Tally,
    after: Tally,
    broken: Vec<String>,
    warming: bool,
    latencies_during: Vec<Duration>,
    latencies_after: Vec<Duration>,
}

/// Which environment of a [`Stack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    Writer(usize),
    Pusher(usize),
    Reader(usize),
}

enum Write {
    Put(i64),
    Push(String),
}

/// One request and its answer.
struct Served {
    slot: Slot,
    answer: Answer,
    user: i64,
    write: Option<Write>,
}

impl Ledger {
    fn record(&mut self, served: Served, in_fault: bool) -> (Slot, u16) {
        let Served { slot, answer, user, write } = served;
        self.judge(&format!("{slot:?}"), &answer, in_fault);
        match write {
            Some(Write::Put(timestamp)) => self.puts.entry(user).or_default().push((timestamp, answer.status)),
            Some(Write::Push(id)) => self.pushes.entry(user).or_default().push((id, answer.status)),
            None => {}
        }
        (slot, answer.status)
    }

    fn judge(&mut self, env: &str, answer: &Answer, in_fault: bool) {
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
            404 if env.starts_with("Reader") && self.warming => {}
            503 if answer.retry_after.is_some() => {}
            503 => self.broken.push(format!("{env}: 503 without Retry-After")),
            other => self.broken.push(format!("{env}: answered {other}: {}", answer.body)),
        }
    }
}

fn pass(uuid: &str) -> Value {
    json!({ "pass_uuid": uuid, "status": "ACTIVE", "payload": { "fare": 2.75, "id": uuid } })
}

fn put_event(user: i64, timestamp: i64) -> Value {
    HttpEvent::new("PUT", format!("/v1/users/{user}/tickets"))
        .auth(Auth::Iam)
        .json(&json!({ "timestamp": timestamp, "passes": [pass(&format!("{user}-{timestamp}"))] }))
        .to_json()
}

fn push_event(user: i64, id: &str) -> Value {
    HttpEvent::new("POST", format!("/v1/users/{user}/logs"))
        .auth(Auth::Iam)
        .json(&json!({ "kind": "passes", "errors": [{ "code": "E1", "id": id }], "id": id }))
        .to_json()
}

fn get_event(user: i64) -> Value {
    HttpEvent::new("GET", format!("/v1/users/{user}/tickets")).auth(Auth::scope("tickets/admin")).to_json()
}

/// The `host:port` of a single-host MongoDB URI.
fn host_port(uri: &str) -> SocketAddr {
    let rest = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, hosts)| hosts);
    let host = rest.split(['/', '?']).next().unwrap_or(rest);
    host.parse().unwrap_or_else(|e| panic!("{host}: {e}"))
}

/// The environments of one test, behind one proxy.
struct Stack {
    proxy: FaultProxy,
    writers: Vec<(i64, Environment)>,
    pushers: Vec<(i64, Environment)>,
    readers: Vec<Environment>,
    checker: domain::mongodb::Collection<Document>,
    started_at: i64,
    seq: AtomicI64,
    logs: PathBuf,
}

impl Stack {
    async fn start(name: &str, engine_uri: &str) -> Stack {
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
        ];
        let base = 4_000_000 + i64::from(std::process::id() % 10_000) * 100 + name.len() as i64 * 10;
        let spawn = |function: &'static str, k: usize| {
            let (dir, env, log) = (dir.clone(), env.clone(), logs.join(format!("{function}-{k}.log")));
            async move {
                let env = Environment::spawn(&dir, function, &env, log).await;
                env.api.set_deadline(DEADLINE);
                env
            }
        };
        let mut writers = Vec::new();
        let mut pushers = Vec::new();
        let mut readers = Vec::new();
        for k in 0..3 {
            writers.push((base + k as i64, spawn("update-tickets", k).await));
            pushers.push((base + 3 + k as i64, spawn("push-log", k).await));
        }
        for k in 0..2 {
            readers.push(spawn("get-tickets", k).await);
        }
        let checker = Client::with_uri_str(engine_uri).await.unwrap_or_else(|e| panic!("checker: {e}"));
        let checker = checker.database(&database).collection::<Document>("bytemark_tickets_cache");
        let started_at = DateTime::now().timestamp_millis() - 60_000;
        Stack { proxy, writers, pushers, readers, checker, started_at, seq: AtomicI64::new(1), logs }
    }

    /// Every environment's slot.
    fn slots(&self) -> Vec<Slot> {
        let writers = (0..self.writers.len()).map(Slot::Writer);
        let pushers = (0..self.pushers.len()).map(Slot::Pusher);
        writers.chain(pushers).chain((0..self.readers.len()).map(Slot::Reader)).collect()
    }

    /// One request of `slot`'s environment: a PUT with a new timestamp, a POST with a new id, or a GET.
    async fn serve_once(&self, slot: Slot) -> Served {
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
    async fn round(&self, ledger: &mut Ledger, in_fault: bool) -> Vec<(Slot, u16)> {
        let served = futures_util::future::join_all(self.slots().into_iter().map(|slot| self.serve_once(slot))).await;
        served.into_iter().map(|served| ledger.record(served, in_fault)).collect()
    }

    /// Every environment, on its own, until it answers a success: how long after `healed` each did.
    async fn until_served(&self, ledger: &mut Ledger, healed: Instant, give_up: Duration) -> Vec<(Slot, Option<Duration>)> {
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

    fn environments(&self) -> impl Iterator<Item = &Environment> {
        self.writers.iter().map(|(_, e)| e).chain(self.pushers.iter().map(|(_, e)| e)).chain(&self.readers)
    }

    async fn stored(&self, user: i64) -> Vec<Document> {
        let found = self.checker.find(doc! { "user_id": user }).await;
        match found {
            Ok(cursor) => cursor.try_collect().await.unwrap_or_else(|e| panic!("read back {user}: {e}")),
            Err(e) => panic!("read back {user}: {e}"),
        }
    }
}

/// What a test reports and asserts.
struct Outcome {
    name: String,
    heal: Vec<Duration>,
    ledger: Ledger,
    connections: Vec<usize>,
}

/// Warm, fault on for [`FAULT_WINDOW`] (while every environment keeps serving), fault off, heal, check.
async fn run_fault(name: &str, engine_uri: &str, fault_on: impl Fn(&Stack), fault_off: impl Fn(&Stack)) -> Outcome {
    run_fault_with(name, engine_uri, fault_on, fault_off, true).await
}

/// [`run_fault`]; `durable` is false for an engine that keeps nothing across a restart (the stand-in):
/// then only availability is checked after it.
async fn run_fault_with(name: &str, engine_uri: &str, fault_on: impl Fn(&Stack), fault_off: impl Fn(&Stack), durable: bool) -> Outcome {
    let stack = Stack::start(name, engine_uri).await;
    let mut ledger = Ledger::default();
    // Warm: every environment has connected and served (the readers' users exist from the first round on).
    ledger.warming = true;
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
    let _ = std::fs::remove_dir_all(&stack.logs);
    Outcome { name: name.to_owned(), heal, ledger, connections }
}

/// The data invariants, after recovery; repeats every write answered 503 first.
async fn check_data(stack: &Stack, ledger: &mut Ledger) {
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
        for (id, _) in pushes.iter().filter(|(_, s)| *s == 503) {
            let again = env.call(push_event(*user, id)).await;
            let stored_before = before.contains(id);
            let expected = if stored_before { 200 } else { 201 };
            if again.status != expected {
                ledger.broken.push(format!("user {user}: repeating push {id} (stored before: {stored_before}) answered {}", again.status));
            }
        }
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
        // The log keeps the newest LOG_CAP entries: of those sent last, each acknowledged or repeated id.
        let newest = pushes.len().saturating_sub(LOG_CAP);
        for (id, _) in pushes.iter().skip(newest) {
            if !unique.contains(id) {
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

fn log_ids(document: &Document) -> Vec<String> {
    document
        .get_array("passesLog")
        .map(|entries| entries.iter().filter_map(|e| e.as_document()?.get_str("id").ok().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn report(outcome: Outcome) {
    let Outcome { name, mut heal, mut ledger, connections } = outcome;
    heal.sort();
    ledger.latencies_during.sort();
    ledger.latencies_after.sort();
    eprintln!(
        "[faults] {name} ({}): during {} (p50 {}, max {}) | served again after the heal in p50 {} max {} | after {} (p50 {}, p99 {}) | connections per environment {:?}",
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

async fn proxy_fault(name: &str, fault: Fault) {
    let _one = ONE_AT_A_TIME.lock().await;
    let outcome = run_fault(name, &server().uri, |stack| stack.proxy.set(fault), |stack| stack.proxy.set(Fault::Healthy)).await;
    report(outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_reset_mid_request() {
    proxy_fault("reset_mid_request", Fault::ResetMidRequest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_reset_mid_reply() {
    proxy_fault("reset_mid_reply", Fault::ResetMidReply).await;
}

/// The wedge: half a request, then silence for good, on connections nobody ever closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_silent_mid_request_never_closed() {
    proxy_fault("silent_mid_request", Fault::SilenceMidRequest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_silent_mid_reply_never_closed() {
    proxy_fault("silent_mid_reply", Fault::SilenceMidReply).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_hole_that_accepts_and_never_answers() {
    proxy_fault("black_hole", Fault::BlackHole).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_latency_and_jitter() {
    proxy_fault("latency", Fault::Latency { base: Duration::from_millis(400), jitter: Duration::from_millis(800) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_trickle() {
    proxy_fault("trickle", Fault::Trickle { bytes: 64, every: Duration::from_millis(20) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_refused_while_old_ones_live() {
    proxy_fault("refuse_new", Fault::RefuseNew).await;
}

/// The engine ends the gateway's PostgreSQL sessions, again and again, while writes are in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_backend_connections_terminated_mid_write() {
    if server().engine != Engine::DocumentDb {
        eprintln!("[faults] skipped: backend connections are DocumentDB's PostgreSQL sessions; {} has none", server().description);
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let port = host_port(&server().uri).port();
    let terminating = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let terminated = Arc::new(AtomicUsize::new(0));
    let terminator = {
        let (terminating, done, terminated) = (terminating.clone(), done.clone(), terminated.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if terminating.load(Ordering::Relaxed) {
                    if let Ok(Ok(n)) = tokio::task::spawn_blocking(move || documentdb::terminate_backends(port)).await {
                        terminated.fetch_add(n, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        })
    };
    let outcome = run_fault(
        "backend_terminated",
        &server().uri,
        |_| terminating.store(true, Ordering::Relaxed),
        |_| terminating.store(false, Ordering::Relaxed),
    )
    .await;
    done.store(true, Ordering::Relaxed);
    let _ = terminator.await;
    let terminated = terminated.load(Ordering::Relaxed);
    eprintln!("[faults] backend sessions terminated during the fault: {terminated}");
    assert!(terminated > 0, "the fault never ended a backend session: it tested nothing");
    report(outcome);
}

/// An engine of this test's own, killed with `kill -9` mid-burst and started again.
enum PrivateEngine {
    DocumentDb(DocumentDb),
    StandIn(StandIn),
}

impl PrivateEngine {
    fn start() -> PrivateEngine {
        match server().engine {
            Engine::DocumentDb => {
                let launcher = documentdb::launcher().unwrap_or_else(|_| panic!("the DocumentDB launcher went away"));
                PrivateEngine::DocumentDb(DocumentDb::start(&launcher).unwrap_or_else(|e| panic!("{e}")))
            }
            _ => PrivateEngine::StandIn(StandIn::spawn(0).unwrap_or_else(|e| panic!("{e}"))),
        }
    }

    fn uri(&self) -> String {
        match self {
            PrivateEngine::DocumentDb(server) => server.uri.clone(),
            PrivateEngine::StandIn(standin) => standin.uri.clone(),
        }
    }

    fn kill(&mut self) {
        match self {
            PrivateEngine::DocumentDb(server) => {
                server.kill_hard().unwrap_or_else(|e| panic!("kill -9: {e}"));
            }
            PrivateEngine::StandIn(standin) => standin.kill(),
        }
    }

    fn restart(&mut self) {
        match self {
            PrivateEngine::DocumentDb(server) => server.restart().unwrap_or_else(|e| panic!("restart: {e}")),
            PrivateEngine::StandIn(standin) => {
                *standin = StandIn::spawn(standin.port).unwrap_or_else(|e| panic!("restart the stand-in: {e}"));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_killed_and_restarted_mid_burst() {
    if !matches!(server().engine, Engine::DocumentDb | Engine::StandIn) {
        eprintln!("[faults] skipped: {} cannot be killed and restarted by this test", server().description);
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let engine = std::sync::Mutex::new(PrivateEngine::start());
    let uri = engine.lock().map(|e| e.uri()).unwrap_or_default();
    let durable = matches!(server().engine, Engine::DocumentDb);
    let outcome = run_fault_with(
        "engine_killed",
        &uri,
        |_| {
            if let Ok(mut engine) = engine.lock() {
                engine.kill();
            }
        },
        |_| {
            if let Ok(mut engine) = engine.lock() {
                engine.restart();
            }
        },
        durable,
    )
    .await;
    report(outcome);
}
