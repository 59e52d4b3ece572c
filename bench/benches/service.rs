//! `make bench`: the service benchmark. On a real engine (MONGODB_URI, else DocumentDB through its
//! launcher, else the stand-in; `bench::engine`): binary sizes, cold starts, warm latency end to end through
//! a local Runtime API side by side with the Node/Mongoose peer, where each request's time goes (the
//! function's own `DbLatency`, the same command from a plain client, the harness floor), handler-only
//! latency, and the sweeper's throughput; then the same end-to-end rows and sweep on the stand-in for
//! comparison. Writes `bench/results.md`. `BENCH_QUICK=1` runs a small smoke version.

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use bench::contestant::{Cold, Contestant, Op, Runner, Target, Warm};
use bench::data::{client, log_entry, seed_user, twenty_passes};
use bench::engine::{note, Engine, EngineKind};
use bench::floors;
use bench::peer::{Peer, PeerRole};
use bench::stats::{micros, millis, pairwise_minus, percentiles, quantile, ratio, verdict};
use bench::sweep::{self, Expiry, SweepFigure};
use domain::mongodb::bson::{doc, DateTime};
use domain::mongodb::Client;
use domain::{AccessConfig, CacheConfig, Settings, TicketCache};
use integration_tests::{unique_database, workspace_root, Auth, HttpEvent};
use lambda_adapter::{AppState, Metrics, Operation};

const FUNCTIONS: [&str; 4] = ["get-tickets", "update-tickets", "push-log", "ttl-sweeper"];
const NOOP: &str = "noop-bootstrap";

/// The benchmark's users, each seeded as the benchmark user (20 + 20 passes, 100 + 100 log entries). Reads
/// share one; every writer gets its own, so no side writes the document another side measures.
mod users {
    pub const GET: i64 = 42;
    pub const PUT_RUST: i64 = 1001;
    pub const PUT_NODE_LEAN: i64 = 1002;
    pub const PUT_NODE_SEED: i64 = 1003;
    pub const PUT_REPLAY: i64 = 1004;
    pub const POST_RUST: i64 = 2001;
    pub const POST_NODE: i64 = 2002;
    pub const POST_REPLAY: i64 = 2003;
    pub const WRITE_FLOOR: i64 = 3001;
    pub const ALL: [i64; 9] = [GET, PUT_RUST, PUT_NODE_LEAN, PUT_NODE_SEED, PUT_REPLAY, POST_RUST, POST_NODE, POST_REPLAY, WRITE_FLOOR];
}

struct Plan {
    cold_runs: usize,
    warm_up: usize,
    warm_invocations: usize,
    sweep_documents: usize,
}

/// A contestant's figures.
struct Row<'a> {
    contestant: Contestant<'a>,
    cold: Cold,
    warm: Warm,
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is expected.
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1");
    let plan = if quick {
        Plan { cold_runs: 3, warm_up: 10, warm_invocations: 100, sweep_documents: 1_000 }
    } else {
        Plan { cold_runs: 21, warm_up: 50, warm_invocations: 2_000, sweep_documents: 10_000 }
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

fn machine_line() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let output = |program: &str, arg: &str| {
        Command::new(program).arg(arg).output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default()
    };
    let load =
        std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| l.split_whitespace().next().map(str::to_owned)).unwrap_or_default();
    format!("{cpu}, {cores} cores, {}, {} (load average {load} at the start)", output("uname", "-srm"), output("rustc", "--version"))
}

async fn server_version(client: &Client) -> String {
    let info = client.database("admin").run_command(doc! { "buildInfo": 1 }).await;
    info.ok().and_then(|i| i.get_str("version").ok().map(str::to_owned)).unwrap_or_else(|| "?".into())
}

async fn run(plan: &Plan, quick: bool) -> String {
    // Prepared before anything is timed: `npm ci` would load the machine.
    let peer = Peer::prepare().map_err(|reason| {
        note(&format!("the Node peer is skipped: {reason}"));
        reason
    });
    let engine = Engine::primary();
    let standin = (engine.kind != EngineKind::StandIn).then(Engine::standin);
    let client = client(&engine.uri).await;
    let database = unique_database("bench");
    let config = CacheConfig { database: database.clone(), ..CacheConfig::default() };
    let cache = TicketCache::new(&client, config.clone());
    cache.ensure_indexes().await.expect("indexes");
    for user in users::ALL {
        seed_user(&cache, user).await;
    }
    let target = Target { uri: &engine.uri, database: &database };

    let mut out = String::new();
    let _ = writeln!(out, "# Benchmark results\n");
    let _ = writeln!(out, "Command: `make bench`{}  ", if quick { " (BENCH_QUICK=1)" } else { "" });
    let _ = writeln!(out, "Machine: {}  ", machine_line());
    let _ = writeln!(out, "Date: {}  ", domain::clock::format_rfc3339_millis(DateTime::now()));
    let _ =
        writeln!(out, "Database: **{}** — {} (reports MongoDB {}).  ", engine.name(), engine.description, server_version(&client).await);
    match &peer {
        Ok(peer) => {
            let _ = writeln!(
                out,
                "Node peer: `../shared/peer` (Node {}, Mongoose {}), copied to `target/bench-peer/` and installed with `npm ci`.  ",
                peer.node_version,
                peer.mongoose_version()
            );
        }
        Err(reason) => {
            let _ = writeln!(out, "Node peer: **skipped** — {reason}.  ");
        }
    }
    let _ = writeln!(
        out,
        "Every figure is on {} unless its section says stand-in. The machine's 2 cores are shared with other work: compare rows of one run, not runs.",
        engine.name()
    );

    sizes(&mut out);

    let contestants = contestants(peer.as_ref().ok());
    let mut rows = Vec::new();
    for contestant in contestants {
        note(&format!("{} {}", contestant.label, contestant.op.name()));
        let cold = contestant.cold(target, plan.cold_runs).await;
        let warm = if contestant.op == Op::Sweep {
            Warm { e2e: Vec::new(), db: Vec::new(), rss_mb: 0.0 }
        } else {
            contestant.warm(target, plan.warm_up, plan.warm_invocations).await
        };
        rows.push(Row { contestant, cold, warm });
    }
    cold_starts(&mut out, &rows, plan);
    side_by_side(&mut out, &rows, plan, engine.name(), peer.as_ref().err());

    note("database-side floors");
    let floors = Floors::measure(&engine.uri, &client, &config, plan).await;
    where_the_time_goes(&mut out, &rows, &floors, plan, engine.name());

    note("handler only");
    handler_only(&mut out, &client, &engine.uri, &config, plan).await;

    note("sweeper");
    let mut sweeps = vec![sweep::sweep(&client, &engine.uri, &unique_database("benchsweep"), Expiry::Legacy, plan.sweep_documents).await];
    // The stand-in hides documents past `expires_at` from every read, so only a real engine sweeps them.
    if engine.kind != EngineKind::StandIn {
        sweeps.insert(0, sweep::sweep(&client, &engine.uri, &unique_database("benchsweep"), Expiry::ExpiresAt, plan.sweep_documents).await);
    }
    sweeper(&mut out, &sweeps, engine.name());

    if let Some(standin) = &standin {
        note("stand-in comparison");
        standin_comparison(&mut out, standin, engine.name(), &rows, plan).await;
    }
    let _ = writeln!(out, "\nRound trips: exactly one MongoDB command per get, update and push, and no log entries in the get reply, are asserted by tests (`cache_operations`), not timed here.");
    let _ = client.database(&database).drop().await;
    out
}

fn contestants(peer: Option<&Peer>) -> Vec<Contestant<'_>> {
    let rust = |binary: &'static str, op: Op, user: i64| Contestant { label: binary.into(), op, user, runner: Runner::Rust(binary) };
    let mut all = vec![
        rust("get-tickets", Op::Get, users::GET),
        rust("update-tickets", Op::Put, users::PUT_RUST),
        rust("push-log", Op::Post, users::POST_RUST),
        rust("ttl-sweeper", Op::Sweep, 0),
        rust(NOOP, Op::Noop, users::GET),
    ];
    if let Some(peer) = peer {
        let node =
            |label: &str, op: Op, user: i64, role: PeerRole| Contestant { label: label.into(), op, user, runner: Runner::Node(peer, role) };
        all.extend([
            node("Node lean", Op::Get, users::GET, PeerRole::Lean),
            node("Node seed", Op::Get, users::GET, PeerRole::Seed),
            node("Node lean", Op::Put, users::PUT_NODE_LEAN, PeerRole::Lean),
            node("Node seed", Op::Put, users::PUT_NODE_SEED, PeerRole::Seed),
            // The peer's push is the seed's `$push` in both modes.
            node("Node (seed's $push)", Op::Post, users::POST_NODE, PeerRole::Seed),
            node("Node noop.js", Op::Noop, users::GET, PeerRole::Noop),
        ]);
    }
    all
}

fn find<'r>(rows: &'r [Row], op: Op, rust: bool, label: Option<&str>) -> Option<&'r Row<'r>> {
    rows.iter().find(|r| r.contestant.op == op && r.contestant.is_rust() == rust && label.is_none_or(|l| r.contestant.label.starts_with(l)))
}

fn sizes(out: &mut String) {
    let _ = writeln!(out, "\n## Stripped release `bootstrap` size (target ≤ 10 MiB)\n\n| function | size | target |\n|---|---|---|");
    for f in FUNCTIONS {
        let bytes = std::fs::metadata(bench::release_binary(f)).map_or(0, |m| m.len());
        let mib = bytes as f64 / (1024.0 * 1024.0);
        let _ = writeln!(out, "| {f} | {mib:.2} MiB | {} |", verdict(mib <= 10.0));
    }
}

fn cold_starts(out: &mut String, rows: &[Row], plan: &Plan) {
    let _ = writeln!(
        out,
        "\n## Cold start: a new process each time, median of {}\n\n\
         Init: process start → first `next` poll of the Runtime API (this project connects in the background during it; the peer connects before it). \
         First invoke: the first event, sent at once (this project's first contact with the database completes in it).\n\n\
         | bootstrap | event | init median | init min – max | first invoke median | init + first invoke | init target ≤ 20 ms |\n|---|---|---|---|---|---|---|",
        plan.cold_runs
    );
    for row in rows {
        let init = quantile(&row.cold.init, 0.5);
        let first = quantile(&row.cold.first_invoke, 0.5);
        let (lo, hi) = (quantile(&row.cold.init, 0.0), quantile(&row.cold.init, 1.0));
        let target =
            if row.contestant.is_rust() && row.contestant.op != Op::Noop { verdict(init <= Duration::from_millis(20)) } else { "–" };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} – {} | {} | {} | {target} |",
            row.contestant.label,
            row.contestant.op.name(),
            millis(init),
            millis(lo),
            millis(hi),
            millis(first),
            millis(init + first)
        );
    }
}

fn side_by_side(out: &mut String, rows: &[Row], plan: &Plan, engine: &str, skipped: Option<&String>) {
    let _ = writeln!(
        out,
        "\n## Warm latency end to end, side by side ({engine}; one environment each, {} invocations after {} unmeasured)\n\n\
         The same Runtime API harness (`tests/src/runtime_api.rs`), database and documents for both sides: each user holds 20 + 20 passes \
         (~2 KiB payloads) and 100 + 100 log entries; PUT bodies carry 20 + 20 passes. \
         The peer's PUT has no merge by `pass_uuid` and no monotonic guard, and its POST is the seed's unbounded `$push` (its log grows with every call); \
         this project's PUT merges and guards, and its POST keeps the newest 100.\n\n\
         | operation | bootstrap | p50 | p99 | peak RSS |\n|---|---|---|---|---|",
        plan.warm_invocations, plan.warm_up
    );
    for row in rows.iter().filter(|r| r.contestant.op != Op::Sweep) {
        let (p50, p99) = percentiles(&row.warm.e2e);
        let rss = if row.contestant.is_rust() && row.contestant.op != Op::Noop {
            format!("{:.1} MB (target ≤ 40 MB: {})", row.warm.rss_mb, verdict(row.warm.rss_mb <= 40.0))
        } else {
            format!("{:.1} MB", row.warm.rss_mb)
        };
        let _ = writeln!(out, "| {} | {} | {} | {} | {rss} |", row.contestant.op.name(), row.contestant.label, micros(p50), micros(p99));
    }
    if let Some(reason) = skipped {
        let _ = writeln!(out, "\nNo Node rows: the peer was skipped ({reason}).");
        return;
    }

    let _ = writeln!(
        out,
        "\n### Ratios: this project ÷ the Node peer (warm, end to end)\n\n\
         | operation | p50 ÷ lean | p99 ÷ lean | p50 ÷ seed | p99 ÷ seed | target |\n|---|---|---|---|---|---|"
    );
    for op in [Op::Get, Op::Put, Op::Post, Op::Noop] {
        let Some(rust) = find(rows, op, true, None) else { continue };
        let (r50, r99) = percentiles(&rust.warm.e2e);
        let versus = |label: &str| find(rows, op, false, Some(label)).map(|n| percentiles(&n.warm.e2e));
        let cells = |node: Option<(Duration, Duration)>| {
            node.map_or(("–".to_owned(), "–".to_owned()), |(n50, n99)| (ratio(r50, n50), ratio(r99, n99)))
        };
        let (lean, seed) = match op {
            Op::Post | Op::Noop => (None, versus("Node")),
            _ => (versus("Node lean"), versus("Node seed")),
        };
        let target = match (op, lean, seed) {
            (Op::Put, Some((n50, n99)), _) => format!(
                "p50 ≤ 0.5× lean: {}; p99 ≤ 0.25× lean: {}",
                verdict(r50.as_secs_f64() <= 0.5 * n50.as_secs_f64()),
                verdict(r99.as_secs_f64() <= 0.25 * n99.as_secs_f64())
            ),
            (Op::Post, _, Some((n50, _))) => {
                format!("p50 ≤ 0.4× the seed-style peer: {}", verdict(r50.as_secs_f64() <= 0.4 * n50.as_secs_f64()))
            }
            (Op::Noop, ..) => "(the harness floors)".into(),
            _ => "–".into(),
        };
        let (l50, l99) = cells(lean);
        let (s50, s99) = cells(seed);
        let _ = writeln!(out, "| {} | {l50} | {l99} | {s50} | {s99} | {target} |", op.name());
    }
}

/// The database side, measured from the benchmark's own client (a client as the functions make one).
struct Floors {
    minimal: Vec<Duration>,
    minimal_write: Vec<Duration>,
    get: Vec<Duration>,
    put: Vec<Duration>,
    post: Vec<Duration>,
}

impl Floors {
    async fn measure(uri: &str, client: &Client, config: &CacheConfig, plan: &Plan) -> Floors {
        let database = client.database(&config.database);
        let (warm_up, n) = (plan.warm_up, plan.warm_invocations);
        let put = floors::capture_put(uri, config, users::PUT_REPLAY).await;
        let post = floors::capture_post(uri, config, users::POST_REPLAY).await;
        Floors {
            minimal: floors::minimal_read(&database, &config.collection, users::GET, warm_up, n).await,
            minimal_write: floors::minimal_write(&database, &config.collection, users::WRITE_FLOOR, warm_up, n).await,
            get: floors::get_read(&database, &config.collection, users::GET, warm_up, n).await,
            put: floors::replay(&database, &put, warm_up, n).await,
            post: floors::replay(&database, &post, warm_up, n).await,
        }
    }
}

fn where_the_time_goes(out: &mut String, rows: &[Row], floors: &Floors, plan: &Plan, engine: &str) {
    let (m50, m99) = percentiles(&floors.minimal);
    let (w50, w99) = percentiles(&floors.minimal_write);
    let floor = find(rows, Op::Noop, true, None).map(|r| percentiles(&r.warm.e2e)).unwrap_or_default();
    let _ = writeln!(
        out,
        "\n## Where the time goes ({engine}, this project, warm, {} invocations)\n\n\
         - **DB time** is each invocation's own `DbLatency` (the EMF metric the function prints on stdout: time spent awaiting the driver — \
         round trip, the server's work, encoding and decoding), paired with that invocation's end-to-end time.\n\
         - **Same command, plain client**: what the function sent, sent {} times from the benchmark's own client on the same driver \
         (GET: the same `find` filter and projection, reply kept raw; PUT and POST: the `findAndModify` the domain code sent, captured through \
         command monitoring and replayed with `runCommand`): the database-side floor of each request.\n\
         - **DB floor**, from the same client: a read, `findOne({{user_id}})` projecting only `timestamp`: p50 {} / p99 {}; \
         a write, `updateOne({{user_id}}, {{$set: {{one small field}}}})` on a benchmark user's document (the engine's commit, no pipeline): p50 {} / p99 {}.\n\
         - **Harness floor**: the Rust no-op bootstrap (`bench/src/bin/noop_bootstrap.rs`, `lambda_runtime`, no database): p50 {} / p99 {}.\n\
         - **Own share** = e2e − DB time (per invocation) − harness floor (p50 from p50, p99 from p99).\n\n\
         | operation | e2e p50 / p99 | DB time p50 / p99 | same command, plain client p50 / p99 | e2e − DB time p50 / p99 | own share p50 / p99 |\n|---|---|---|---|---|---|",
        plan.warm_invocations,
        plan.warm_invocations,
        micros(m50),
        micros(m99),
        micros(w50),
        micros(w99),
        micros(floor.0),
        micros(floor.1)
    );
    for (op, same) in [(Op::Get, &floors.get), (Op::Put, &floors.put), (Op::Post, &floors.post)] {
        let Some(row) = find(rows, op, true, None) else { continue };
        let (e50, e99) = percentiles(&row.warm.e2e);
        let (d50, d99) = percentiles(&row.warm.db);
        let (s50, s99) = percentiles(same);
        let (o50, o99) = percentiles(&pairwise_minus(&row.warm.e2e, &row.warm.db));
        let _ = writeln!(
            out,
            "| {} | {} / {} | {} / {} | {} / {} | {} / {} | {} / {} |",
            op.name(),
            micros(e50),
            micros(e99),
            micros(d50),
            micros(d99),
            micros(s50),
            micros(s99),
            micros(o50),
            micros(o99),
            micros(o50.saturating_sub(floor.0)),
            micros(o99.saturating_sub(floor.1))
        );
    }
}

/// A handler-only row: its name, the state it runs on, the function, the target p50 (µs), and the
/// request of the i-th call.
type HandlerRow<'a> = (&'a str, &'a AppState, Operation, u64, &'a dyn Fn(usize) -> HttpEvent);

async fn handler_only(out: &mut String, client: &Client, uri: &str, config: &CacheConfig, plan: &Plan) {
    let settings = Settings {
        uri: domain::UriSource::Direct(uri.to_owned()),
        cache: config.clone(),
        access: AccessConfig::default(),
        metrics_namespace: "Bench".into(),
    };
    let state = AppState::new(client, settings.clone(), Metrics::memory("Bench", "bench"));
    // The same with nothing remembered: every read prints and hashes all 40 payloads, every update converts
    // and hashes all 40 (a user's first request in an execution environment, or passes that changed).
    let unremembered = Settings { cache: CacheConfig { remembered_payload_bytes: 0, ..config.clone() }, ..settings };
    let unremembered = AppState::new(client, unremembered, Metrics::memory("Bench", "bench"));
    let _ = writeln!(out, "\n## Warm latency, handler only (request → domain → response, database time excluded; {} calls each)\n\n| function | p50 | p99 | target p50 |\n|---|---|---|---|", plan.warm_invocations);
    let get_event = |_| HttpEvent::new("GET", format!("/v1/users/{}/tickets", users::GET)).auth(Auth::user(users::GET));
    let put_path = format!("/v1/users/{}/tickets", users::PUT_RUST);
    let put_event = |_| HttpEvent::new("PUT", put_path.clone()).auth(Auth::Iam).json(&twenty_passes(None));
    let post_event =
        |i: usize| HttpEvent::new("POST", format!("/v1/users/{}/logs", users::POST_RUST)).auth(Auth::Iam).json(&log_entry("passes", i));
    // The update target names 20 hashes; the bench user has 20 passes in each array (40 hashes).
    // Both are reported: the full update, and one array of 20 passes.
    let put_one_array = |_| {
        let mut body = twenty_passes(None);
        if let Some(fields) = body.as_object_mut() {
            fields.remove("passes4");
        }
        HttpEvent::new("PUT", put_path.clone()).auth(Auth::Iam).json(&body)
    };
    let rows: [HandlerRow; 6] = [
        ("get-tickets (repeat reads: verdicts remembered)", &state, Operation::GetTickets, 150, &get_event),
        ("get-tickets (every payload verified on every read)", &unremembered, Operation::GetTickets, 150, &get_event),
        ("update-tickets (unchanged payloads: conversions remembered)", &state, Operation::UpdateTickets, 400, &put_event),
        ("update-tickets (every payload converted and hashed: 40)", &unremembered, Operation::UpdateTickets, 400, &put_event),
        (
            "update-tickets (one array of 20 passes, every payload converted and hashed: 20)",
            &unremembered,
            Operation::UpdateTickets,
            400,
            &put_one_array,
        ),
        ("push-log", &state, Operation::PushLog, 100, &post_event),
    ];
    for (f, state, op, target, event) in rows {
        let mut samples = Vec::with_capacity(plan.warm_invocations);
        for i in 0..plan.warm_up + plan.warm_invocations {
            let request = event(i).request();
            let before = state.cache.driver_time();
            let started = Instant::now();
            let status = match lambda_adapter::handlers::serve(state, op, request).await {
                Ok(response) => response.status().as_u16(),
                Err(never) => match never {},
            };
            let total = started.elapsed();
            let db = state.cache.driver_time() - before;
            assert!(status < 300, "{f}: status {status}");
            if i >= plan.warm_up {
                samples.push(total.saturating_sub(db));
            }
        }
        let (p50, p99) = percentiles(&samples);
        let _ = writeln!(
            out,
            "| {f} | {} | {} | ≤ {target} µs ({}) |",
            micros(p50),
            micros(p99),
            verdict(p50 <= Duration::from_micros(target))
        );
    }
}

fn sweeper(out: &mut String, sweeps: &[SweepFigure], engine: &str) {
    let _ = writeln!(
        out,
        "\n## Sweeper throughput ({engine}; goal ≥ 5,000 documents/s)\n\n\
         Expired documents inserted, then the real `ttl-sweeper` bootstrap invoked as its schedule would (production settings: at most 1,000 \
         documents per run) until it reports nothing left.\n\n\
         | documents | removed by the sweeper | gone before it reached them | scheduled runs | time | documents/s | peak RSS | goal |\n|---|---|---|---|---|---|---|---|"
    );
    for figure in sweeps {
        let kind = match figure.expiry {
            Expiry::ExpiresAt => "`expires_at` in the past",
            Expiry::Legacy => "legacy: no `expires_at`, `timestamp` past the expiry",
        };
        let _ = writeln!(
            out,
            "| {} {kind} | {} | {} | {} | {} | **{:.0}** | {:.1} MB | {} |",
            figure.inserted,
            figure.deleted,
            figure.deleted_by_others,
            figure.runs,
            millis(figure.took),
            figure.per_second(),
            figure.rss_mb,
            verdict(figure.per_second() >= 5_000.0)
        );
    }
    if sweeps.iter().any(|s| s.expiry == Expiry::ExpiresAt) {
        let _ = writeln!(out, "\nA real engine's TTL job (DocumentDB: about once a minute) deletes documents past `expires_at` too; any it took first are counted apart, not as the sweeper's.");
    }
}

async fn standin_comparison(out: &mut String, standin: &Engine, engine: &str, rows: &[Row<'_>], plan: &Plan) {
    let client = client(&standin.uri).await;
    let database = unique_database("benchstandin");
    let cache = TicketCache::new(&client, CacheConfig { database: database.clone(), ..CacheConfig::default() });
    cache.ensure_indexes().await.expect("indexes");
    for user in [users::GET, users::PUT_RUST, users::POST_RUST] {
        seed_user(&cache, user).await;
    }
    let target = Target { uri: &standin.uri, database: &database };
    let _ = writeln!(
        out,
        "\n## The stand-in, for comparison\n\nDatabase: {}. The same warm rows ({} invocations after {} unmeasured) and the legacy sweep; its Python evaluation, not this project, dominates these figures.\n\n\
         | operation | stand-in p50 | stand-in p99 | {engine} p50 (above) | {engine} p99 (above) |\n|---|---|---|---|---|",
        standin.description,
        plan.warm_invocations,
        plan.warm_up,
    );
    for (binary, op, user) in
        [("get-tickets", Op::Get, users::GET), ("update-tickets", Op::Put, users::PUT_RUST), ("push-log", Op::Post, users::POST_RUST)]
    {
        let contestant = Contestant { label: binary.into(), op, user, runner: Runner::Rust(binary) };
        let warm = contestant.warm(target, plan.warm_up, plan.warm_invocations).await;
        let (p50, p99) = percentiles(&warm.e2e);
        let (r50, r99) = find(rows, op, true, None).map(|r| percentiles(&r.warm.e2e)).unwrap_or_default();
        let _ = writeln!(out, "| {} | {} | {} | {} | {} |", op.name(), micros(p50), micros(p99), micros(r50), micros(r99));
    }
    let figure = sweep::sweep(&client, &standin.uri, &unique_database("benchsweep"), Expiry::Legacy, plan.sweep_documents).await;
    let _ = writeln!(
        out,
        "\nSweeper on the stand-in: {} of {} legacy expired documents removed by {} scheduled runs in {} → **{:.0} documents/s**.",
        figure.deleted,
        figure.inserted,
        figure.runs,
        millis(figure.took),
        figure.per_second()
    );
    let _ = client.database(&database).drop().await;
}
