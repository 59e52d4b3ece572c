//! Fleet simulation: many execution environments of the real release bootstraps, each its own process
//! with its own client, pool and runtime API, cold-started together against an empty database.
//!
//! The in-process concurrency tests share one client; a deployed fleet does not. Here every environment
//! connects and authenticates on its own at the same moment, checks the unique `user_id` index (nobody
//! created it: the database is empty), and then every environment writes the same user at once. Ten rounds,
//! each on a fresh user; the first round is the cold one. Every invariant is checked in every round and the
//! figures are printed before the verdict, so a failing run still says how often and where.
//!
//! `FLEET_ENVIRONMENTS` (default 20, at least 20) sets the environments per function. The bootstraps are
//! what `make build` ships (`integration_tests::binaries::release_bootstraps`: up to date after `make build`,
//! built otherwise); `FLEET_BOOTSTRAPS=<dir>` runs `<dir>/<fn>/bootstrap` instead (to compare builds).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use domain::mongodb::bson::{doc, Bson, DateTime, Document};
use domain::mongodb::{Client, IndexModel};
use futures_util::TryStreamExt;
use integration_tests::binaries::release_bootstraps;
use integration_tests::environments::{millis, percentile, Environment, Tally};
use integration_tests::runtime_api::RuntimeApi;
use integration_tests::{server, unique_database, Auth, HttpEvent};
use serde_json::{json, Value};

const WRITERS: [&str; 2] = ["update-tickets", "push-log"];
const ROUNDS: usize = 10;
fn pass(uuid: String) -> Value {
    json!({ "pass_uuid": uuid, "status": "ACTIVE", "payload": { "fare": 2.75, "id": uuid } })
}

fn put_event(user: i64, timestamp: i64, uuid: String) -> Value {
    HttpEvent::new("PUT", format!("/v1/users/{user}/tickets"))
        .auth(Auth::Iam)
        .json(&json!({ "timestamp": timestamp, "passes": [pass(uuid)] }))
        .to_json()
}

fn push_event(user: i64, id: &str) -> Value {
    HttpEvent::new("POST", format!("/v1/users/{user}/logs"))
        .auth(Auth::Iam)
        .json(&json!({ "kind": "passes", "errors": [{ "code": "E1", "id": id }], "id": id }))
        .to_json()
}

fn log_ids(document: &Document) -> Vec<String> {
    document
        .get_array("passesLog")
        .map(|entries| entries.iter().filter_map(|e| e.as_document()?.get_str("id").ok().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// What one phase of a round sent and got back.
#[derive(Default)]
struct Phase {
    puts: Tally,
    pushes: Tally,
    retries: Tally,
    latencies: Vec<Duration>,
    /// Push id → statuses of its original and its retries.
    by_id: BTreeMap<String, Vec<u16>>,
    errors: Vec<String>,
}

impl Phase {
    fn record(&mut self, kind: &str, id: Option<&str>, (status, body, took): (u16, Value, Duration)) {
        match kind {
            "put" => self.puts.add(status),
            "push" => self.pushes.add(status),
            _ => self.retries.add(status),
        }
        if let Some(id) = id {
            self.by_id.entry(id.to_owned()).or_default().push(status);
        }
        if status >= 500 && self.errors.len() < 5 {
            self.errors.push(format!("{kind} → {status}: {body}"));
        }
        self.latencies.push(took);
    }

    fn server_errors(&self) -> usize {
        self.puts.server_errors() + self.pushes.server_errors() + self.retries.server_errors()
    }
}

/// One phase: every update-tickets environment writes `user` once (timestamp `base + i`), and every push-log
/// environment pushes its own id and then the retry of its neighbour's (so every id's original and retry
/// are in flight at once, in different environments).
async fn run_phase(puts: &[Environment], pushers: &[Environment], user: i64, base: i64, ids: &[String]) -> Phase {
    let n = pushers.len();
    let put_calls = puts.iter().enumerate().map(|(i, env)| async move {
        let result = env.invoke(put_event(user, base + i as i64, format!("w{base}-{i}"))).await;
        vec![("put", None, result)]
    });
    let push_calls = pushers.iter().enumerate().map(|(i, env)| async move {
        let own = &ids[i];
        let neighbour = &ids[(i + n - 1) % n];
        let first = env.invoke(push_event(user, own)).await;
        let retry = env.invoke(push_event(user, neighbour)).await;
        vec![("push", Some(own.as_str()), first), ("retry", Some(neighbour.as_str()), retry)]
    });
    let (put_results, push_results) = tokio::join!(futures_util::future::join_all(put_calls), futures_util::future::join_all(push_calls));
    let mut phase = Phase::default();
    for (kind, id, result) in put_results.into_iter().chain(push_results).flatten() {
        phase.record(kind, id, result);
    }
    phase
}

/// Checks a phase against the stored document; returns what broke.
fn check_phase(name: &str, phase: &Phase, stored: &[Document], newest_timestamp: i64, newest_uuid: &str) -> Vec<String> {
    let mut broken = Vec::new();
    if phase.server_errors() > 0 {
        broken.push(format!("{name}: {} answers were 5xx: {}", phase.server_errors(), phase.errors.join(" | ")));
    }
    for (status, _) in phase.puts.0.iter().filter(|(s, _)| !matches!(s, 200 | 409) && **s < 500) {
        broken.push(format!("{name}: a write answered {status}"));
    }
    // Each id: exactly one 201 (the entry stored once) and 200 for every other send of it.
    for (id, statuses) in &phase.by_id {
        let created = statuses.iter().filter(|s| **s == 201).count();
        let repeated = statuses.iter().filter(|s| **s == 200).count();
        if statuses.iter().all(|s| *s < 500) && (created, repeated) != (1, statuses.len() - 1) {
            broken.push(format!("{name}: push {id} answered {statuses:?} (one 201, the retries 200)"));
        }
    }
    if stored.len() != 1 {
        broken.push(format!("{name}: {} documents for the user, expected exactly one", stored.len()));
        return broken;
    }
    let document = &stored[0];
    let timestamp = document.get_i64("timestamp").ok();
    let first_pass = match document.get_array("passes").ok().and_then(|p| p.first()) {
        Some(Bson::Document(pass)) => pass.get_str("pass_uuid").ok().map(str::to_owned),
        _ => None,
    };
    if timestamp != Some(newest_timestamp) || first_pass.as_deref() != Some(newest_uuid) {
        broken.push(format!(
            "{name}: stored timestamp {timestamp:?} with pass {first_pass:?}, expected {newest_timestamp} with {newest_uuid}"
        ));
    }
    broken
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_fleet_writing_one_user_at_once_stays_consistent_without_5xx() {
    let n: usize = std::env::var("FLEET_ENVIRONMENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    assert!(n >= 20, "FLEET_ENVIRONMENTS must be at least 20 (got {n})");
    // Two phases of n distinct ids each: the second pushes the cap's worth out, so trimming is checked.
    let cap = n + n / 2;
    let dir = release_bootstraps();
    let database = unique_database("fleet");
    let uri = server().uri.clone();
    let logs = std::env::temp_dir().join(format!("fleet-{}", std::process::id()));
    std::fs::create_dir_all(&logs).unwrap_or_else(|e| panic!("{}: {e}", logs.display()));

    // Runtime APIs first, so every process can start in the same instant.
    let mut apis = Vec::new();
    for _ in 0..2 * n {
        apis.push(RuntimeApi::start().await.unwrap_or_else(|e| panic!("runtime API: {e}")));
    }
    let start_all = Instant::now();
    let mut envs: Vec<Environment> = Vec::new();
    for (k, api) in apis.into_iter().enumerate() {
        let function = WRITERS[k / n];
        let log = logs.join(format!("{function}-{}.log", k % n));
        let env = [
            ("MONGODB_URI", uri.clone()),
            ("MONGODB_DATABASE", database.clone()),
            ("LOG_CAP", cap.to_string()),
            ("RUST_LOG", "warn".into()),
        ];
        envs.push(Environment::spawn_on(api, &dir, function, &env, log));
    }
    let spawn_spread = start_all.elapsed();
    let (puts, pushers) = envs.split_at(n);

    let checker = Client::with_uri_str(&uri).await.unwrap_or_else(|e| panic!("checker client: {e}"));
    let collection = checker.database(&database).collection::<Document>("bytemark_tickets_cache");
    let mut broken: Vec<String> = Vec::new();
    let mut report = String::new();
    let mut all_5xx = 0;
    let mut round_times = Vec::new();
    let run_id = std::process::id() as i64;
    for round in 0..ROUNDS {
        let user = 1_000_000 + run_id * 100 + round as i64;
        let base = DateTime::now().timestamp_millis() - 120_000;
        let started = Instant::now();

        // Phase 1: first writes and pushes (with their retries), all at once. In round 0 the events are
        // already queued when the environments first poll, as when a request cold-starts a Lambda.
        let first_ids: Vec<String> = (0..n).map(|i| format!("r{round}-a{i}")).collect();
        let first = run_phase(puts, pushers, user, base, &first_ids).await;
        let stored: Vec<Document> = read_back(|| async { collection.find(doc! { "user_id": user }).await?.try_collect().await }).await;
        broken.extend(check_phase(
            &format!("round {round} first writes"),
            &first,
            &stored,
            base + n as i64 - 1,
            &format!("w{base}-{}", n - 1),
        ));
        let after_first = stored.first().map(log_ids).unwrap_or_default();
        let unique: BTreeSet<&String> = after_first.iter().collect();
        if after_first.len() != n || unique.len() != n || !first_ids.iter().all(|id| unique.contains(id)) {
            broken.push(format!(
                "round {round}: after the first pushes the log holds {} entries ({} unique), expected the {n} ids once each",
                after_first.len(),
                unique.len()
            ));
        }
        if round == 0 {
            let indexes: Vec<IndexModel> = read_back(|| async { collection.list_indexes().await?.try_collect().await }).await;
            let unique_index =
                indexes.iter().any(|ix| ix.keys == doc! { "user_id": 1 } && ix.options.as_ref().and_then(|o| o.unique) == Some(true));
            if !unique_index {
                broken.push("round 0: the writers did not create the unique user_id index".into());
            }
        }

        // Phase 2: updates of the now existing user, and n new ids (cap < 2n: the oldest are trimmed).
        let second_ids: Vec<String> = (0..n).map(|i| format!("r{round}-b{i}")).collect();
        let update_base = base + 10_000;
        let second = run_phase(puts, pushers, user, update_base, &second_ids).await;
        let stored: Vec<Document> = read_back(|| async { collection.find(doc! { "user_id": user }).await?.try_collect().await }).await;
        broken.extend(check_phase(
            &format!("round {round} updates"),
            &second,
            &stored,
            update_base + n as i64 - 1,
            &format!("w{update_base}-{}", n - 1),
        ));
        let log = stored.first().map(log_ids).unwrap_or_default();
        // The newest `cap`: every second-phase id, after the newest (cap - n) of the first phase, in order.
        let kept_first: Vec<&String> = after_first.iter().skip(after_first.len().saturating_sub(cap - n)).collect();
        let (older, newer) = log.split_at(log.len().min(cap - n));
        let newer: BTreeSet<&String> = newer.iter().collect();
        if log.len() != cap.min(2 * n) || older.iter().collect::<Vec<_>>() != kept_first || newer != second_ids.iter().collect() {
            broken.push(format!("round {round}: the log is not the newest {cap} unique ids: {log:?}"));
        }
        let elapsed = started.elapsed();
        round_times.push(elapsed);

        let mut latencies: Vec<Duration> = first.latencies.iter().chain(&second.latencies).copied().collect();
        latencies.sort();
        let fives = first.server_errors() + second.server_errors();
        all_5xx += fives;
        let _ = writeln!(
            report,
            "[fleet] round {round}{}: {} | first writes {} · pushes {} · retries {} | updates {} · pushes {} · retries {} | 5xx {fives} | invocation p50 {} max {}",
            if round == 0 { " (cold)" } else { "" },
            millis(elapsed),
            first.puts,
            first.pushes,
            first.retries,
            second.puts,
            second.pushes,
            second.retries,
            millis(percentile(&latencies, 0.5)),
            millis(percentile(&latencies, 1.0)),
        );
    }

    let mut inits: Vec<Duration> = envs.iter().filter_map(Environment::init_duration).collect();
    inits.sort();
    let mut sorted_rounds = round_times.clone();
    sorted_rounds.sort();
    eprintln!(
        "[fleet] {n} environments per function ({} processes, spawned within {}), LOG_CAP {cap}, {} ({})\n[fleet] cold init (spawn → first poll): p50 {} max {}\n{report}[fleet] rounds: p50 {} max {}; 5xx in all: {all_5xx}",
        2 * n,
        millis(spawn_spread),
        server().description,
        dir.display(),
        millis(percentile(&inits, 0.5)),
        millis(percentile(&inits, 1.0)),
        millis(percentile(&sorted_rounds, 0.5)),
        millis(percentile(&sorted_rounds, 1.0)),
    );
    if !broken.is_empty() {
        // The environments' own words for the failures.
        for env in &envs {
            for line in env.complaints(3) {
                eprintln!("[fleet] {}: {line}", env.log.file_name().map(|f| f.to_string_lossy()).unwrap_or_default());
            }
        }
    }
    assert!(broken.is_empty(), "{} invariant(s) broken:\n{}", broken.len(), broken.join("\n"));
    let _ = std::fs::remove_dir_all(&logs);
}

/// The test's own reads of what the fleet stored. An engine the fleet overloaded may refuse them for a
/// while (DocumentDB: PostgreSQL out of connection slots until abandoned commands finish), so they are
/// retried for up to a minute: the figures above them must not be lost to a read-back.
async fn read_back<T, F: std::future::Future<Output = domain::mongodb::error::Result<T>>>(read: impl Fn() -> F) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match read().await {
            Ok(value) => return value,
            Err(e) if Instant::now() < deadline => {
                eprintln!("[fleet] read-back failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("reading back what the fleet stored: {e}"),
        }
    }
}
