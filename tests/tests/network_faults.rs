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

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use integration_tests::documentdb;
use integration_tests::fault_drill::{host_port, report, run_fault, run_fault_with};
use integration_tests::fault_proxy::Fault;
use integration_tests::{server, Engine, Restartable};
use tokio::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

async fn proxy_fault(name: &str, fault: Fault) {
    let _one = ONE_AT_A_TIME.lock().await;
    let outcome = run_fault(name, &server().uri, |stack| stack.proxy.set(fault), |stack| stack.proxy.set(Fault::Healthy)).await;
    // Silence leaves connections pending in their handshake: only a replaced client serves again.
    let wedging = matches!(fault, Fault::SilenceMidRequest | Fault::SilenceMidReply | Fault::BlackHole);
    assert!(!wedging || outcome.replaced > 0, "{name}: no environment replaced its client, so the wedge was not reproduced");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_killed_and_restarted_mid_burst() {
    if !matches!(server().engine, Engine::DocumentDb | Engine::StandIn) {
        eprintln!("[faults] skipped: {} cannot be killed and restarted by this test", server().description);
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let engine = std::sync::Mutex::new(Restartable::start());
    let (uri, durable) = engine.lock().map(|e| (e.uri().to_owned(), e.durable())).unwrap_or_default();
    let outcome = run_fault_with(
        "engine_killed",
        &uri,
        |_| {
            if let Ok(mut engine) = engine.lock() {
                engine.kill_hard();
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
