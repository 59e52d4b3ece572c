//! Criterion: the request → domain → response path of each HTTP function, in process, with the time
//! spent awaiting the driver (`TicketCache::driver_time`) taken out of every sample. On the engine the
//! service benchmark uses (`bench::engine`).

use std::time::{Duration, Instant};

use bench::data::{client, log_entry, seed_user, twenty_passes};
use bench::engine::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use domain::{AccessConfig, CacheConfig, Settings, TicketCache};
use integration_tests::{unique_database, Auth, HttpEvent};
use lambda_adapter::{AppState, Metrics, Operation};

/// A benchmark's name, the state it runs on, the function it exercises, and how to make its request.
type Case<'a> = (&'static str, &'a AppState, Operation, fn() -> HttpEvent);

fn handlers(c: &mut Criterion) {
    // As a function's start-up does: the allocator keeps freed memory for the next request.
    lambda_adapter::startup::keep_freed_memory();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let engine = Engine::primary();
    let (state, unremembered) = runtime.block_on(async {
        let client = client(&engine.uri).await;
        let config = CacheConfig { database: unique_database("criterion"), ..CacheConfig::default() };
        let cache = TicketCache::new(&client, config.clone());
        cache.ensure_indexes().await.expect("indexes");
        seed_user(&cache, 42).await;
        let settings = Settings {
            uri: domain::UriSource::Direct(engine.uri.clone()),
            cache: config.clone(),
            access: AccessConfig::default(),
            metrics_namespace: "Bench".into(),
        };
        // Nothing remembered: every read prints and hashes every payload, every update converts them all.
        let unremembered = Settings { cache: CacheConfig { remembered_payload_bytes: 0, ..config }, ..settings.clone() };
        (
            AppState::new(&client, settings, Metrics::memory("Bench", "bench")),
            AppState::new(&client, unremembered, Metrics::memory("Bench", "bench")),
        )
    });

    let mut group = c.benchmark_group("handler_only");
    let get = || HttpEvent::new("GET", "/v1/users/42/tickets").auth(Auth::user(42));
    let put = || HttpEvent::new("PUT", "/v1/users/42/tickets").auth(Auth::Iam).json(&twenty_passes(None));
    let cases: [Case; 5] = [
        ("get_tickets_20x2_passes", &state, Operation::GetTickets, get),
        ("get_tickets_20x2_passes_every_payload_verified", &unremembered, Operation::GetTickets, get),
        ("update_tickets_20x2_passes", &state, Operation::UpdateTickets, put),
        ("update_tickets_20x2_passes_every_payload_converted", &unremembered, Operation::UpdateTickets, put),
        ("push_log", &state, Operation::PushLog, || {
            HttpEvent::new("POST", "/v1/users/42/logs").auth(Auth::Iam).json(&log_entry("passes", 1))
        }),
    ];
    for (name, state, op, event) in cases {
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                let mut spent = Duration::ZERO;
                for _ in 0..iterations {
                    let request = event().request();
                    let before = state.cache.driver_time();
                    let started = Instant::now();
                    let response = runtime.block_on(lambda_adapter::handlers::serve(state, op, request));
                    let total = started.elapsed();
                    let db = state.cache.driver_time() - before;
                    assert!(response.map(|r| r.status().is_success()).unwrap_or(false));
                    spent += total.saturating_sub(db);
                }
                spent
            })
        });
    }
    group.finish();
    drop(engine);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    targets = handlers
}
criterion_main!(benches);
