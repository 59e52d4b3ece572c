//! `make bench`: the service benchmark. On a real engine (MONGODB_URI, else DocumentDB through its
//! launcher, else the stand-in; `bench::engine`): binary sizes, cold starts, warm latency end to end through
//! a local Runtime API side by side with the Node/Mongoose peer, where each request's time goes (the
//! function's own `DbLatency`, the same command from a plain client, the database and harness floors),
//! handler-only latency, and the sweeper's throughput; then the same end-to-end rows and sweep on the
//! stand-in for comparison. Writes `bench/results.md`. `BENCH_QUICK=1` runs a small smoke version.

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use bench::contestant::{Contestant, Op, Runner, Target};
use bench::data::{client, log_entry, seed_user, twenty_passes};
use bench::engine::{note, Engine, EngineKind};
use bench::floors::{self, DbProbe};
use bench::interleave::{self, Probe, Samples};
use bench::peer::{Peer, PeerRole};
use bench::process::shorten;
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
    // The handlers' and the cache's errors (a 5xx names its cause there), as the functions log them.
    let _ = tracing::subscriber::set_global_default(lambda_adapter::startup::json_subscriber(std::io::stderr));
    let (report, failures) = runtime.block_on(run(&plan, quick));
    print!("{report}");
    if quick {
        println!("(quick mode: bench/results.md not written)");
    } else {
        write_results(&report);
    }
    if !failures.is_empty() {
        eprintln!("{} calls failed (listed at the end of the report)", failures.len());
        std::process::exit(1);
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

/// The report, and every call that failed (also listed in the report).
async fn run(plan: &Plan, quick: bool) -> (String, Vec<String>) {
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
    let _ = writeln!(out, "Date: {}  ", payload::js_date::to_iso_string(DateTime::now()));
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
        "Every figure is on {} unless its section says stand-in. The machine's cores and disk are shared with other work: \
         compare the rows of one table (measured interleaved), not runs.",
        engine.name()
    );

    sizes(&mut out);

    let contestants = contestants(peer.as_ref().ok());
    note("cold starts");
    let mut failures = Vec::new();
    let cold = cold_starts(&contestants, target, plan, &mut failures).await;
    report_cold_starts(&mut out, &contestants, &cold, plan);

    let groups = warm_groups(&contestants, &engine.uri, &client, &config, target, plan).await;
    failures.extend(groups.iter().flat_map(|g| g.rows.iter().flat_map(|(.., samples)| samples.failures.iter().cloned())));
    side_by_side(&mut out, &groups, plan, engine.name(), peer.as_ref().err());
    where_the_time_goes(&mut out, &groups, plan, engine.name());

    note("handler only");
    handler_only(&mut out, &client, &engine.uri, &config, plan, &mut failures).await;

    note("sweeper");
    let mut sweeps = vec![];
    // The stand-in hides documents past `expires_at` from every read, so only a real engine sweeps them.
    if engine.kind != EngineKind::StandIn {
        sweeps.push((
            Expiry::ExpiresAt,
            sweep::sweep(&client, &engine.uri, &unique_database("benchsweep"), Expiry::ExpiresAt, plan.sweep_documents).await,
        ));
    }
    sweeps.push((
        Expiry::Legacy,
        sweep::sweep(&client, &engine.uri, &unique_database("benchsweep"), Expiry::Legacy, plan.sweep_documents).await,
    ));
    sweeper(&mut out, &sweeps, engine.name(), plan);
    failures.extend(sweeps.iter().filter_map(|(_, s)| s.as_ref().err().cloned()));

    if let Some(standin) = &standin {
        // The real engine's figures are kept even if the comparison fails (a busy host can starve the
        // stand-in's Python until the driver gives up on it).
        if !quick {
            write_results(&out);
        }
        note("stand-in comparison");
        standin_comparison(&mut out, standin, engine.name(), &groups, plan, &mut failures).await;
    }
    let _ = writeln!(out, "\nRound trips: exactly one MongoDB command per get, update and push, and no log entries in the get reply, are asserted by tests (`cache_operations`), not timed here.");
    if !failures.is_empty() {
        let _ = writeln!(
            out,
            "\n## Failures\n\n{} calls failed; their figures are left out of the rows above. The first ones:\n",
            failures.len()
        );
        for failure in failures.iter().take(20) {
            let _ = writeln!(out, "- {failure}");
        }
    }
    let _ = client.database(&database).drop().await;
    (out, failures)
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
            node("Node (the seed's $push)", Op::Post, users::POST_NODE, PeerRole::Seed),
            node("Node noop.js", Op::Noop, users::GET, PeerRole::Noop),
        ]);
    }
    all
}

/// What a probe of a warm group stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Rust,
    NodeLean,
    /// The peer as the seed uses it (for POST and the no-op, the peer's only form).
    NodeSeed,
    /// The command the function sends, from the benchmark's client.
    SameCommand,
    ReadFloor,
    WriteFloor,
}

fn role_of(contestant: &Contestant) -> Role {
    match contestant.runner {
        Runner::Rust(_) => Role::Rust,
        Runner::Node(_, PeerRole::Lean) => Role::NodeLean,
        Runner::Node(_, PeerRole::Seed | PeerRole::Noop) => Role::NodeSeed,
    }
}

/// One warm group's figures: every probe measured interleaved with the others.
struct Group {
    op: Op,
    rows: Vec<(Role, String, Samples)>,
}

impl Group {
    fn samples(&self, role: Role) -> Option<&Samples> {
        self.rows.iter().find(|(r, ..)| *r == role).map(|(_, _, s)| s)
    }

    /// p50 and p99 of a role's calls.
    fn p(&self, role: Role) -> Option<(Duration, Duration)> {
        self.samples(role).map(|s| percentiles(&s.e2e))
    }
}

fn group(groups: &[Group], op: Op) -> Option<&Group> {
    groups.iter().find(|g| g.op == op)
}

fn sizes(out: &mut String) {
    let _ = writeln!(out, "\n## Stripped release `bootstrap` size (target ≤ 10 MiB)\n\n| function | size | target |\n|---|---|---|");
    for f in FUNCTIONS {
        let bytes = std::fs::metadata(bench::release_binary(f)).map_or(0, |m| m.len());
        let mib = bytes as f64 / (1024.0 * 1024.0);
        let _ = writeln!(out, "| {f} | {mib:.2} MiB | {} |", verdict(mib <= 10.0));
    }
}

/// Each contestant's cold starts (inits, first invocations), interleaved: round after round, one new
/// environment of each.
async fn cold_starts(
    contestants: &[Contestant<'_>],
    target: Target<'_>,
    plan: &Plan,
    failures: &mut Vec<String>,
) -> Vec<(Vec<Duration>, Vec<Duration>)> {
    let mut cold: Vec<(Vec<Duration>, Vec<Duration>)> = contestants.iter().map(|_| (Vec::new(), Vec::new())).collect();
    for i in 0..plan.cold_runs {
        for (contestant, (init, first)) in contestants.iter().zip(&mut cold) {
            let (took_init, took_first) = contestant.cold_start(target, i).await;
            init.push(took_init);
            match took_first {
                Ok(took) => first.push(took),
                Err(failure) => failures.push(format!("cold start, first invoke: {failure}")),
            }
        }
    }
    cold
}

fn report_cold_starts(out: &mut String, contestants: &[Contestant], cold: &[(Vec<Duration>, Vec<Duration>)], plan: &Plan) {
    let _ = writeln!(
        out,
        "\n## Cold start: a new process each time, median of {}\n\n\
         Init: process start → first `next` poll of the Runtime API (this project connects in the background meanwhile; the peer connects before it polls). \
         First invoke: the first event, sent at once (this project's first contact with the database completes in it).\n\n\
         | bootstrap | event | init median | init min – max | first invoke median | init + first invoke | init target ≤ 20 ms |\n|---|---|---|---|---|---|---|",
        plan.cold_runs
    );
    for (contestant, (init, first)) in contestants.iter().zip(cold) {
        let (median, lo, hi) = (quantile(init, 0.5), quantile(init, 0.0), quantile(init, 1.0));
        let first = quantile(first, 0.5);
        let target = if contestant.is_rust() && contestant.op != Op::Noop { verdict(median <= Duration::from_millis(20)) } else { "–" };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} – {} | {} | {} | {target} |",
            contestant.label,
            contestant.op.name(),
            millis(median),
            millis(lo),
            millis(hi),
            millis(first),
            millis(median + first)
        );
    }
}

/// The warm groups: GET, PUT, POST (each: this project, the peer, the same command from the benchmark's
/// client, a database floor) and the harness floors.
async fn warm_groups(
    contestants: &[Contestant<'_>],
    uri: &str,
    client: &Client,
    config: &CacheConfig,
    target: Target<'_>,
    plan: &Plan,
) -> Vec<Group> {
    let database = client.database(&config.database);
    let put = floors::capture_put(uri, config, users::PUT_REPLAY).await;
    let post = floors::capture_post(uri, config, users::POST_REPLAY).await;
    let mut database_probes = vec![
        (Op::Get, Role::SameCommand, "same find, plain client", DbProbe::get_read(&database, config, users::GET)),
        (Op::Get, Role::ReadFloor, "read floor", DbProbe::minimal_read(&database, config, users::GET)),
        (Op::Put, Role::SameCommand, "same findAndModify, plain client", DbProbe::replay(&database, put)),
        (Op::Put, Role::WriteFloor, "write floor", DbProbe::minimal_write(&database, config, users::WRITE_FLOOR)),
        (Op::Post, Role::SameCommand, "same findAndModify, plain client", DbProbe::replay(&database, post)),
        (Op::Post, Role::WriteFloor, "write floor", DbProbe::minimal_write(&database, config, users::WRITE_FLOOR)),
    ];
    let mut groups = Vec::new();
    for op in [Op::Get, Op::Put, Op::Post, Op::Noop] {
        note(&format!("warm {}", op.name()));
        let mut probes = Vec::new();
        let mut labels = Vec::new();
        for contestant in contestants.iter().filter(|c| c.op == op) {
            probes.push(Probe::environment(contestant, target).await);
            labels.push((role_of(contestant), contestant.label.clone()));
        }
        let (these, others): (Vec<_>, Vec<_>) = database_probes.into_iter().partition(|(of, ..)| *of == op);
        database_probes = others;
        for (_, role, label, probe) in these {
            probes.push(Probe::Database(probe));
            labels.push((role, label.to_owned()));
        }
        let samples = interleave::measure(&probes, plan.warm_up, plan.warm_invocations).await;
        let rows = labels.into_iter().zip(samples).map(|((role, label), samples)| (role, label, samples)).collect();
        groups.push(Group { op, rows });
    }
    groups
}

fn side_by_side(out: &mut String, groups: &[Group], plan: &Plan, engine: &str, skipped: Option<&String>) {
    let _ = writeln!(
        out,
        "\n## Warm latency end to end, side by side ({engine}; one environment each, {} invocations after {} unmeasured)\n\n\
         The same Runtime API harness (`tests/src/runtime_api.rs`), database and documents for both sides: each user holds 20 + 20 passes \
         (~2 KiB payloads) and 100 + 100 log entries; PUT bodies carry 20 + 20 passes. Within an operation, the rows (and the database \
         rows of the next section) were called in turn, one call at a time, so they saw the same machine. \
         The peer's PUT has no merge by `pass_uuid` and no monotonic guard, and its POST is the seed's unbounded `$push` (its log grows with every call); \
         this project's PUT merges and guards, and its POST keeps the newest 100.\n\n\
         | operation | bootstrap | p50 | p99 | peak RSS |\n|---|---|---|---|---|",
        plan.warm_invocations, plan.warm_up
    );
    for group in groups {
        for (role, label, samples) in group.rows.iter().filter(|(role, ..)| matches!(role, Role::Rust | Role::NodeLean | Role::NodeSeed)) {
            let (p50, p99) = percentiles(&samples.e2e);
            let rss = if *role == Role::Rust && group.op != Op::Noop {
                format!("{:.1} MB (target ≤ 40 MB: {})", samples.rss_mb, verdict(samples.rss_mb <= 40.0))
            } else {
                format!("{:.1} MB", samples.rss_mb)
            };
            let failed = match samples.failures.len() {
                0 => String::new(),
                n => format!(" — **{n} calls failed**"),
            };
            let _ = writeln!(out, "| {} | {label}{failed} | {} | {} | {rss} |", group.op.name(), micros(p50), micros(p99));
        }
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
    for group in groups {
        let Some((r50, r99)) = group.p(Role::Rust) else { continue };
        let cells = |node: Option<(Duration, Duration)>| {
            node.map_or(("–".to_owned(), "–".to_owned()), |(n50, n99)| (ratio(r50, n50), ratio(r99, n99)))
        };
        let (lean, seed) = (group.p(Role::NodeLean), group.p(Role::NodeSeed));
        let target = match (group.op, lean, seed) {
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
        let ((l50, l99), (s50, s99)) = (cells(lean), cells(seed));
        let _ = writeln!(out, "| {} | {l50} | {l99} | {s50} | {s99} | {target} |", group.op.name());
    }

    // Every write waits for the engine's commit; what each side adds above it is the part code can change.
    let _ = writeln!(
        out,
        "\n### Writes above the engine's write floor (p50 − the write floor's p50, measured in the same rounds)\n\n\
         | operation | write floor p50 | this project − floor | Node lean − floor | Node seed − floor | ratio to lean | ratio to seed |\n|---|---|---|---|---|---|---|"
    );
    for group in groups.iter().filter(|g| matches!(g.op, Op::Put | Op::Post)) {
        let (Some((floor, _)), Some((r50, _))) = (group.p(Role::WriteFloor), group.p(Role::Rust)) else { continue };
        let above = |p: Option<(Duration, Duration)>| p.map(|(p50, _)| p50.saturating_sub(floor));
        let rust = r50.saturating_sub(floor);
        let (lean, seed) = (above(group.p(Role::NodeLean)), above(group.p(Role::NodeSeed)));
        let cell = |d: Option<Duration>| d.map_or("–".to_owned(), micros);
        let ratio_to = |d: Option<Duration>| d.map_or("–".to_owned(), |d| ratio(rust, d));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            group.op.name(),
            micros(floor),
            micros(rust),
            cell(lean),
            cell(seed),
            ratio_to(lean),
            ratio_to(seed)
        );
    }
}

fn where_the_time_goes(out: &mut String, groups: &[Group], plan: &Plan, engine: &str) {
    let harness = group(groups, Op::Noop).and_then(|g| g.p(Role::Rust)).unwrap_or_default();
    let _ = writeln!(
        out,
        "\n## Where the time goes ({engine}, this project, warm, {} invocations)\n\n\
         - **DB time**: each invocation's own `DbLatency`, the EMF metric the function prints on stdout (time spent awaiting the driver: \
         round trip, the server's work, encoding and decoding), paired with that invocation's end-to-end time.\n\
         - **Same command, plain client**: what the function sends, sent from the benchmark's own client on the same driver, in the same rounds \
         (GET: the same `find` filter and projection, reply kept raw; PUT and POST: the `findAndModify` the domain code sent, captured through \
         command monitoring and replayed with `runCommand`, each PUT replay a newer write): the database side of each request on its own.\n\
         - **DB floor**, from the same client in the same rounds: for GET a read, `findOne({{user_id}})` projecting only `timestamp`; for PUT and \
         POST a write, `updateOne({{user_id}}, {{$set: {{one small field}}}})` on a benchmark user's document (the engine's commit, no pipeline).\n\
         - **Harness floor**: the Rust no-op bootstrap (`bench/src/bin/noop_bootstrap.rs`, `lambda_runtime`, no database): p50 {} / p99 {}.\n\
         - **Own share** = e2e − DB time (per invocation), p50, less the harness floor's p50: the function's code, its runtime client and its \
         event and response JSON.\n\n\
         | operation | e2e p50 / p99 | DB time p50 / p99 | same command, plain client p50 / p99 | DB floor p50 / p99 | e2e − DB time p50 / p99 | own share p50 |\n|---|---|---|---|---|---|---|",
        plan.warm_invocations,
        micros(harness.0),
        micros(harness.1)
    );
    let pair = |p: Option<(Duration, Duration)>| p.map_or("–".to_owned(), |(a, b)| format!("{} / {}", micros(a), micros(b)));
    for group in groups.iter().filter(|g| matches!(g.op, Op::Get | Op::Put | Op::Post)) {
        let Some(rust) = group.samples(Role::Rust) else { continue };
        let floor = group.p(Role::ReadFloor).or(group.p(Role::WriteFloor));
        let (o50, o99) = percentiles(&pairwise_minus(&rust.e2e, &rust.db));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            group.op.name(),
            pair(Some(percentiles(&rust.e2e))),
            pair(Some(percentiles(&rust.db))),
            pair(group.p(Role::SameCommand)),
            pair(floor),
            pair(Some((o50, o99))),
            micros(o50.saturating_sub(harness.0))
        );
    }
}

/// A handler-only row: its name, the state it runs on, the function, the target p50 (µs), and the
/// request of the i-th call.
type HandlerRow<'a> = (&'a str, &'a AppState, Operation, u64, &'a dyn Fn(usize) -> HttpEvent);

async fn handler_only(out: &mut String, client: &Client, uri: &str, config: &CacheConfig, plan: &Plan, failures: &mut Vec<String>) {
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
        let (mut samples, mut failed) = (Vec::with_capacity(plan.warm_invocations), 0);
        for i in 0..plan.warm_up + plan.warm_invocations {
            let request = event(i).request();
            let before = state.cache.driver_time();
            let started = Instant::now();
            let response = match lambda_adapter::handlers::serve(state, op, request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            let total = started.elapsed();
            let db = state.cache.driver_time() - before;
            if !response.status().is_success() {
                let body = String::from_utf8_lossy(response.body());
                failures.push(format!("handler only, {f}: call {i}: status {}: {}", response.status().as_u16(), shorten(&body)));
                failed += 1;
            } else if i >= plan.warm_up {
                samples.push(total.saturating_sub(db));
            }
        }
        let (p50, p99) = percentiles(&samples);
        let failed = if failed > 0 { format!(" — **{failed} calls failed**") } else { String::new() };
        let _ = writeln!(
            out,
            "| {f}{failed} | {} | {} | ≤ {target} µs ({}) |",
            micros(p50),
            micros(p99),
            verdict(p50 <= Duration::from_micros(target))
        );
    }
}

fn sweeper(out: &mut String, sweeps: &[(Expiry, Result<SweepFigure, String>)], engine: &str, plan: &Plan) {
    let _ = writeln!(
        out,
        "\n## Sweeper throughput ({engine}; goal ≥ 5,000 documents/s)\n\n\
         Expired documents inserted (the indexes in place, as the deployment creates them), then the real `ttl-sweeper` bootstrap invoked \
         as its schedule would (production settings: at most 1,000 documents per run) until it reports nothing left.\n\n\
         | documents | removed by the sweeper | gone before it reached them | scheduled runs | time | documents/s | peak RSS | goal |\n|---|---|---|---|---|---|---|---|"
    );
    for (expiry, figure) in sweeps {
        let kind = match expiry {
            Expiry::ExpiresAt => "`expires_at` in the past",
            Expiry::Legacy => "legacy: no `expires_at`, `timestamp` past the expiry",
        };
        let _ = match figure {
            Ok(figure) => writeln!(
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
            ),
            Err(failure) => writeln!(out, "| {} {kind} | **failed**: {failure} | | | | | | MISSED |", plan.sweep_documents),
        };
    }
    if sweeps.iter().any(|(expiry, _)| *expiry == Expiry::ExpiresAt) {
        let _ = writeln!(out, "\nA real engine's TTL job (DocumentDB: about once a minute) deletes documents past `expires_at` too; any it took first are counted apart, not as the sweeper's.");
    }
}

async fn standin_comparison(out: &mut String, standin: &Engine, engine: &str, groups: &[Group], plan: &Plan, failures: &mut Vec<String>) {
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
        "\n## The stand-in, for comparison\n\nDatabase: {}. The same warm rows of this project ({} invocations after {} unmeasured) and the legacy sweep; \
         the stand-in's Python evaluation, not this project, dominates these figures.\n\n\
         | operation | stand-in p50 | stand-in p99 | {engine} p50 (above) | {engine} p99 (above) |\n|---|---|---|---|---|",
        standin.description, plan.warm_invocations, plan.warm_up,
    );
    for (binary, op, user) in
        [("get-tickets", Op::Get, users::GET), ("update-tickets", Op::Put, users::PUT_RUST), ("push-log", Op::Post, users::POST_RUST)]
    {
        let contestant = Contestant { label: binary.into(), op, user, runner: Runner::Rust(binary) };
        let probes = [Probe::environment(&contestant, target).await];
        let samples = interleave::measure(&probes, plan.warm_up, plan.warm_invocations).await;
        failures.extend(samples[0].failures.iter().map(|f| format!("stand-in: {f}")));
        let (p50, p99) = percentiles(&samples[0].e2e);
        let (r50, r99) = group(groups, op).and_then(|g| g.p(Role::Rust)).unwrap_or_default();
        let _ = writeln!(out, "| {} | {} | {} | {} | {} |", op.name(), micros(p50), micros(p99), micros(r50), micros(r99));
    }
    match sweep::sweep(&client, &standin.uri, &unique_database("benchsweep"), Expiry::Legacy, plan.sweep_documents).await {
        Ok(figure) => {
            let _ = writeln!(
                out,
                "\nSweeper on the stand-in: {} of {} legacy expired documents removed by {} scheduled runs in {} → **{:.0} documents/s**.",
                figure.deleted,
                figure.inserted,
                figure.runs,
                millis(figure.took),
                figure.per_second()
            );
        }
        Err(failure) => {
            let _ = writeln!(out, "\nSweeper on the stand-in: **failed**: {failure}");
            failures.push(format!("stand-in sweep: {failure}"));
        }
    }
    let _ = client.database(&database).drop().await;
}

fn write_results(report: &str) {
    let path = workspace_root().join("bench/results.md");
    if let Err(e) = std::fs::write(&path, report) {
        eprintln!("cannot write {}: {e}", path.display());
    }
}
