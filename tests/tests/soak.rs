//! The soak: a fleet of release bootstraps (update-tickets and push-log, `SOAK_ENVIRONMENTS` each, default
//! 3; get-tickets likewise) under a mixed load for `SOAK_SECONDS` (default 45, the short run `make test`
//! does; `make soak` runs the long one), with faults switched on and off on a schedule: calm, a fault,
//! calm, the next fault, in turn through the proxy's faults.
//!
//! Every environment serves one request after another the whole time. Reported: requests, 5xx outside the
//! fault windows (a window runs from the fault's start to [`HEAL_WITHIN`] after its end; goal 0, asserted),
//! p50/p99 in and out of the windows, each environment's RSS after the first calm period and at the end
//! (goal: flat within 10 %, asserted), connections per environment, and the data checks of every fault
//! drill (acknowledged writes stored, repeats safe, no log id twice, the cap, every pass verified).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration_tests::environments::{millis, percentile};
use integration_tests::fault_drill::{check_data, Ledger, Served, Stack, HEAL_WITHIN, POOL_BOUND};
use integration_tests::fault_proxy::Fault;
use integration_tests::server;

/// Healthy time between two faults.
const CALM: Duration = Duration::from_secs(8);
/// How long each fault lasts.
const FAULT: Duration = Duration::from_secs(6);
/// RSS growth allowed from the first calm period to the end.
const RSS_GROWTH: f64 = 0.10;

fn schedule() -> [Fault; 8] {
    [
        Fault::ResetMidReply,
        Fault::SilenceMidRequest,
        Fault::Latency { base: Duration::from_millis(200), jitter: Duration::from_millis(400) },
        Fault::BlackHole,
        Fault::ResetMidRequest,
        Fault::SilenceMidReply,
        Fault::RefuseNew,
        Fault::Trickle { bytes: 256, every: Duration::from_millis(5) },
    ]
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_under_mixed_load_with_scheduled_faults() {
    let seconds = env_number("SOAK_SECONDS", 45);
    let per_function = env_number("SOAK_ENVIRONMENTS", 3).max(1) as usize;
    // Small payload memories, full within the first calm period: then RSS growth is what is not bounded.
    let memory = [("REMEMBERED_PAYLOAD_BYTES", "65536".to_owned())];
    let stack = Arc::new(Stack::start_with("soak", &server().uri, per_function, per_function, &memory).await);
    let mut ledger = Ledger { warming: true, ..Ledger::default() };
    stack.round(&mut ledger, false).await;
    ledger.warming = false;

    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let served: Arc<Mutex<Vec<(Instant, Instant, Served)>>> = Arc::default();
    let loops: Vec<_> = stack
        .slots()
        .into_iter()
        .map(|slot| {
            let (stack, served) = (stack.clone(), served.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    let begun = Instant::now();
                    let once = stack.serve_once(slot).await;
                    if let Ok(mut served) = served.lock() {
                        served.push((begun, Instant::now(), once));
                    }
                }
            })
        })
        .collect();

    // The schedule: calm, fault, calm, … ; the RSS baseline is taken at the end of the first calm period.
    let mut windows: Vec<(Fault, Instant, Instant)> = Vec::new();
    let mut rss_start = Vec::new();
    for fault in schedule().into_iter().cycle() {
        tokio::time::sleep_until((Instant::now() + CALM).min(until).into()).await;
        if rss_start.is_empty() {
            rss_start = stack.environments().map(|e| e.rss_kib().unwrap_or(0)).collect();
        }
        if Instant::now() + FAULT >= until {
            break;
        }
        stack.proxy.set(fault);
        let on = Instant::now();
        tokio::time::sleep(FAULT).await;
        stack.proxy.set(Fault::Healthy);
        windows.push((fault, on, Instant::now()));
    }
    for handle in loops {
        let _ = handle.await;
    }

    let in_window = |begun: Instant, ended: Instant| windows.iter().any(|(_, on, off)| begun < *off + HEAL_WITHIN && ended > *on);
    let served = std::mem::take(&mut *served.lock().unwrap_or_else(|p| p.into_inner()));
    let requests = served.len();
    for (begun, ended, once) in served {
        let faulted = in_window(begun, ended);
        ledger.record(once, faulted);
    }
    let outside_5xx = ledger.after.server_errors();
    if outside_5xx > 0 {
        let after = ledger.after.clone();
        ledger.broken.push(format!("{outside_5xx} answers were 5xx outside the fault windows: {after}"));
    }
    check_data(&stack, &mut ledger).await;

    let rss_end: Vec<u64> = stack.environments().map(|e| e.rss_kib().unwrap_or(0)).collect();
    let settle = Instant::now();
    let mut connections: Vec<usize> = Vec::new();
    while settle.elapsed() < Duration::from_secs(8) {
        connections = stack.environments().map(|e| e.connections_to(stack.proxy.addr.port())).collect();
        if connections.iter().all(|c| *c <= POOL_BOUND) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if connections.iter().any(|c| *c > POOL_BOUND) {
        ledger.broken.push(format!("connections per environment {connections:?}, bound {POOL_BOUND}"));
    }
    let mut report = String::new();
    for ((env, start), end) in stack.environments().zip(&rss_start).zip(&rss_end) {
        let growth = if *start > 0 { *end as f64 / *start as f64 - 1.0 } else { 0.0 };
        report.push_str(&format!("[soak]   {} {}: RSS {} → {} KiB ({:+.1} %)\n", env.function, env.pid(), start, end, growth * 100.0));
        if growth > RSS_GROWTH {
            ledger.broken.push(format!("{} {}: RSS grew {:.1} % ({start} → {end} KiB)", env.function, env.pid(), growth * 100.0));
        }
    }
    ledger.latencies_during.sort();
    ledger.latencies_after.sort();
    let faults: Vec<String> = windows.iter().map(|(fault, _, _)| format!("{fault:?}")).collect();
    eprintln!(
        "[soak] {} s, {} environments, {} ({}), faults: {}\n[soak] requests {requests}: in fault windows {} (p50 {}, p99 {}) | outside {} (p50 {}, p99 {}) | 5xx outside: {outside_5xx}\n{report}[soak] connections per environment {connections:?} (bound {POOL_BOUND})\n[soak] data checks: {}",
        seconds,
        stack.environments().count(),
        server().description,
        stack.proxy.endpoint(),
        faults.join(", "),
        ledger.during,
        millis(percentile(&ledger.latencies_during, 0.5)),
        millis(percentile(&ledger.latencies_during, 0.99)),
        ledger.after,
        millis(percentile(&ledger.latencies_after, 0.5)),
        millis(percentile(&ledger.latencies_after, 0.99)),
        if ledger.broken.is_empty() { "all held".to_owned() } else { format!("{} broken", ledger.broken.len()) },
    );
    assert!(ledger.broken.is_empty(), "{} invariant(s) broken:\n{}", ledger.broken.len(), ledger.broken.join("\n"));
}
