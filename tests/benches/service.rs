//! `make bench`: binary sizes, cold init, warm latency (end to end through a local Runtime API, and
//! handler-only with the database's time excluded), sweeper throughput and peak RSS, against the targets
//! of the performance issue. Writes `bench/results.md`. `BENCH_QUICK=1` runs a small smoke version.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use domain::mongodb::bson::{doc, DateTime};
use domain::{AccessConfig, CacheConfig, Settings, TicketCache};
use integration_tests::bench_support::{client, log_entry, percentiles, seed_user, twenty_passes};
use integration_tests::runtime_api::{lambda_env, RuntimeApi};
use integration_tests::{unique_database, workspace_root, Auth, HttpEvent, StandIn};
use lambda_adapter::{AppState, Metrics, Operation};
use serde_json::json;

const FUNCTIONS: [&str; 4] = ["get-tickets", "update-tickets", "push-log", "ttl-sweeper"];

/// A handler-only row: its name, the state it runs on, the function, the target p50 (µs), and the
/// request of the i-th call.
type HandlerRow<'a> = (&'a str, &'a AppState, Operation, u64, &'a dyn Fn(usize) -> HttpEvent);

struct Plan {
    cold_runs: usize,
    warm_invocations: usize,
    sweep_documents: usize,
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is expected.
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1");
    let plan = if quick {
        Plan { cold_runs: 3, warm_invocations: 100, sweep_documents: 1_000 }
    } else {
        Plan { cold_runs: 21, warm_invocations: 2_000, sweep_documents: 10_000 }
    };
    // The functions' runtime: one thread (`functions/*/src/main.rs`), so the handler-only figures are
    // measured as the functions run.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let report = runtime.block_on(run(&plan, quick));
    print!("{report}");
    let path = workspace_root().join("bench/results.md");
    if quick {
        println!("(quick mode: {} not written)", path.display());
    } else if let Err(e) = std::fs::write(&path, &report) {
        eprintln!("cannot write {}: {e}", path.display());
    }
}

fn release_binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"));
    let path = target.join("release").join(name);
    assert!(path.exists(), "{} missing: run `cargo build --release --bins` first (make bench does)", path.display());
    path
}

struct Process {
    api: RuntimeApi,
    child: Child,
}

impl Process {
    async fn start(name: &str, env: &[(&str, String)]) -> (Process, Duration) {
        let api = RuntimeApi::start().await.expect("runtime api");
        let mut command = Command::new(release_binary(name));
        command.envs(lambda_env(name, &api.endpoint())).env("RUST_LOG", "warn").envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let started = Instant::now();
        let child = command.stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().expect("spawn");
        let polled = api.wait_for_first_poll(Duration::from_secs(30)).await.expect("first poll");
        (Process { api, child }, polled.duration_since(started))
    }

    /// Peak resident set size so far (VmHWM), in MB.
    fn peak_rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn machine_line() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let kernel =
        Command::new("uname").arg("-srm").output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default();
    format!("{cpu}, {cores} cores, {kernel}, {rustc}")
}

async fn run(plan: &Plan, quick: bool) -> String {
    let standin = StandIn::spawn(0).expect("stand-in");
    let uri = standin.uri.clone();
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmark results\n");
    let _ = writeln!(out, "Command: `make bench`{}  ", if quick { " (BENCH_QUICK=1)" } else { "" });
    let _ = writeln!(out, "Machine: {}  ", machine_line());
    let _ = writeln!(out, "Date: {}  ", payload::js_date::to_iso_string(DateTime::now()));
    let _ = writeln!(out, "Database: the MongoDB stand-in on loopback (Python; its latency dominates the end-to-end figures).\n");

    // 1. Sizes.
    let _ = writeln!(out, "## Stripped release `bootstrap` size (target ≤ 10 MiB)\n\n| function | size | target |\n|---|---|---|");
    for f in FUNCTIONS {
        let bytes = std::fs::metadata(release_binary(f)).map_or(0, |m| m.len());
        let mib = bytes as f64 / (1024.0 * 1024.0);
        let _ = writeln!(out, "| {f} | {mib:.2} MiB | {} |", verdict(mib <= 10.0));
    }

    // 2. Cold init: process start until the first poll of the Runtime API (URI set, database reachable).
    let database = unique_database("bench");
    let env = [("MONGODB_URI", uri.clone()), ("MONGODB_DATABASE", database.clone())];
    let _ = writeln!(out, "\n## Cold init: process start → first `next` poll, median of {} (target ≤ 20 ms)\n\n| function | median | min | max | target |\n|---|---|---|---|---|", plan.cold_runs);
    for f in FUNCTIONS {
        let mut samples = Vec::new();
        for _ in 0..plan.cold_runs {
            let (process, took) = Process::start(f, &env).await;
            samples.push(took);
            drop(process);
        }
        samples.sort();
        let median = samples[samples.len() / 2];
        let _ = writeln!(
            out,
            "| {f} | {} | {} | {} | {} |",
            millis(median),
            millis(samples[0]),
            millis(samples[samples.len() - 1]),
            verdict(median <= Duration::from_millis(20))
        );
    }

    // Data: a user with 20 passes per array (~2 KiB payloads) and 100 entries per log.
    let client = client(&uri).await;
    let config = CacheConfig { database: database.clone(), ..CacheConfig::default() };
    let cache = TicketCache::new(&client, config.clone());
    cache.ensure_indexes().await.expect("indexes");
    seed_user(&cache, 42).await;

    let get_event = || HttpEvent::new("GET", "/v1/users/42/tickets").auth(Auth::user(42));
    let put_event = || HttpEvent::new("PUT", "/v1/users/42/tickets").auth(Auth::Iam).json(&twenty_passes(None));
    let post_event = |i: usize| HttpEvent::new("POST", "/v1/users/42/logs").auth(Auth::Iam).json(&log_entry("passes", i));

    // 3a. Warm latency end to end through the Runtime API, and peak RSS.
    let _ = writeln!(out, "\n## Warm latency, end to end through a local Runtime API ({} invocations each)\n\n| function | p50 | p99 | peak RSS (target ≤ 40 MB) |\n|---|---|---|---|", plan.warm_invocations);
    for (f, op) in [("get-tickets", 0), ("update-tickets", 1), ("push-log", 2)] {
        let (process, _) = Process::start(f, &env).await;
        let mut samples = Vec::with_capacity(plan.warm_invocations);
        for i in 0..plan.warm_invocations {
            let event = match op {
                0 => get_event(),
                1 => put_event(),
                _ => post_event(i),
            }
            .to_json();
            let started = Instant::now();
            let response = process.api.invoke(&event, Duration::from_secs(10)).await.expect("invoke");
            samples.push(started.elapsed());
            let status = response["statusCode"].as_u64().unwrap_or(0);
            assert!((200..300).contains(&status), "{f}: {response}");
        }
        let (p50, p99) = percentiles(&mut samples);
        let rss = process.peak_rss_mb();
        let _ = writeln!(out, "| {f} | {} | {} | {rss:.1} MB ({}) |", micros(p50), micros(p99), verdict(rss <= 40.0));
    }

    // 3b. Handler-only: the same requests in process, minus the time spent awaiting the driver.
    let settings = Settings {
        uri: domain::UriSource::Direct(uri.clone()),
        cache: config.clone(),
        access: AccessConfig::default(),
        metrics_namespace: "Bench".into(),
    };
    let state = AppState::new(&client, settings.clone(), Metrics::memory("Bench", "bench"));
    // The same with nothing remembered: every read prints and hashes all 40 payloads, every update converts
    // and hashes all 40 (a user's first request in an execution environment, or passes that changed).
    let unremembered = Settings { cache: CacheConfig { remembered_payload_bytes: 0, ..config.clone() }, ..settings };
    let unremembered = AppState::new(&client, unremembered, Metrics::memory("Bench", "bench"));
    let _ = writeln!(out, "\n## Warm latency, handler only (request → domain → response, database time excluded; {} calls each)\n\n| function | p50 | p99 | target p50 |\n|---|---|---|---|", plan.warm_invocations);
    // The update target names 20 hashes; the bench user has 20 passes in each array (40 hashes).
    // Both are reported: the full update, and one array of 20 passes.
    let put_one_array = || {
        let mut body = twenty_passes(None);
        if let Some(fields) = body.as_object_mut() {
            fields.remove("passes4");
        }
        HttpEvent::new("PUT", "/v1/users/42/tickets").auth(Auth::Iam).json(&body)
    };
    let rows: [HandlerRow; 6] = [
        ("get-tickets (repeat reads: verdicts remembered)", &state, Operation::GetTickets, 150, &|_| get_event()),
        ("get-tickets (every payload verified on every read)", &unremembered, Operation::GetTickets, 150, &|_| get_event()),
        ("update-tickets (unchanged payloads: conversions remembered)", &state, Operation::UpdateTickets, 400, &|_| put_event()),
        ("update-tickets (every payload converted and hashed: 40)", &unremembered, Operation::UpdateTickets, 400, &|_| put_event()),
        (
            "update-tickets (one array of 20 passes, every payload converted and hashed: 20)",
            &unremembered,
            Operation::UpdateTickets,
            400,
            &|_| put_one_array(),
        ),
        ("push-log", &state, Operation::PushLog, 100, &post_event),
    ];
    for (f, state, op, target, event) in rows {
        let mut samples = Vec::with_capacity(plan.warm_invocations);
        for i in 0..plan.warm_invocations {
            let event = event(i);
            let request = event.request();
            let before = state.cache.driver_time();
            let started = Instant::now();
            let response = call_request(state, op, request).await;
            let total = started.elapsed();
            let db = state.cache.driver_time() - before;
            assert!(response < 300, "{f}: status {response}");
            samples.push(total.saturating_sub(db));
        }
        let (p50, p99) = percentiles(&mut samples);
        let _ = writeln!(
            out,
            "| {f} | {} | {} | ≤ {target} µs ({}) |",
            micros(p50),
            micros(p99),
            verdict(p50 <= Duration::from_micros(target))
        );
    }

    // 4. Sweeper throughput on expired documents, through the real binary.
    let now = DateTime::now().timestamp_millis();
    let sweep_db = unique_database("benchsweep");
    let sweep_cache = TicketCache::new(&client, CacheConfig { database: sweep_db.clone(), ..CacheConfig::default() });
    // Legacy documents (no expires_at) past the expiry: the stand-in applies TTL indexes on read, so
    // documents with a past expires_at would vanish before the sweeper saw them.
    let old = now - CacheConfig::default().expire_after.as_millis() as i64 - 1000;
    let docs: Vec<_> =
        (0..plan.sweep_documents as i64).map(|i| doc! { "user_id": 1_000_000 + i, "timestamp": old, "passes": [] }).collect();
    for chunk in docs.chunks(1000) {
        sweep_cache.collection().insert_many(chunk.to_vec()).await.expect("insert");
    }
    // Production settings (1,000 documents per run), invoked until the sweeper reports nothing left.
    // The stand-in evaluates `$in` in Python, so its operations get a longer time limit than MongoDB needs.
    let sweep_env = [("MONGODB_URI", uri.clone()), ("MONGODB_DATABASE", sweep_db.clone()), ("MONGODB_TIMEOUT_MS", "60000".to_owned())];
    let (sweeper, _) = Process::start("ttl-sweeper", &sweep_env).await;
    let started = Instant::now();
    let (mut deleted, mut runs) = (0_u64, 0);
    loop {
        let summary = sweeper.api.invoke(&json!({ "source": "aws.scheduler" }), Duration::from_secs(600)).await.expect("sweep");
        runs += 1;
        deleted += summary["deleted_documents"].as_u64().unwrap_or(0);
        if summary["more_remaining"] != json!(true) || runs > 100 {
            break;
        }
    }
    let took = started.elapsed();
    let _ = writeln!(
        out,
        "\n## Sweeper throughput\n\n{deleted} of {} expired documents removed by {runs} scheduled invocations (1,000 documents each) in {} → **{:.0} documents/s** against the stand-in (peak RSS {:.1} MB).",
        plan.sweep_documents,
        millis(took),
        deleted as f64 / took.as_secs_f64(),
        sweeper.peak_rss_mb()
    );
    assert_eq!(deleted as usize, plan.sweep_documents);
    let _ = writeln!(out, "\nRound trips: exactly one MongoDB command per get, update and push, and no log entries in the get reply, are asserted by tests (`cache_operations`), not timed here.");
    drop(standin);
    out
}

async fn call_request(state: &AppState, op: Operation, request: lambda_http::Request) -> u16 {
    match lambda_adapter::handlers::serve(state, op, request).await {
        Ok(response) => response.status().as_u16(),
        Err(never) => match never {},
    }
}
