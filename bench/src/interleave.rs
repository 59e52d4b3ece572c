//! Warm figures measured side by side: every probe of a group (this project's environment, the peer's,
//! the same command from the benchmark's client, a floor) is called in turn, one call at a time, round
//! after round. Each probe then sees the same machine over the same minutes, so a busy spell on a shared
//! host moves every row of the group alike, and the ratios between them hold.

use std::time::Duration;

use crate::contestant::{Contestant, Op, Target};
use crate::floors::DbProbe;
use crate::process::Bootstrap;

/// One thing timed in a group.
pub enum Probe<'a> {
    /// A warm execution environment, invoked with its contestant's events.
    Environment { contestant: &'a Contestant<'a>, bootstrap: Bootstrap },
    /// A database call from the benchmark's client.
    Database(DbProbe),
}

/// A probe's figures: each successful call end to end, and for this project's functions the database
/// time each invocation reported itself (`DbLatency`, same order; only when no call failed, since a
/// failed call may report none).
#[derive(Default)]
pub struct Samples {
    pub e2e: Vec<Duration>,
    pub db: Vec<Duration>,
    pub rss_mb: f64,
    /// What went wrong in the calls that failed (warm-up included).
    pub failures: Vec<String>,
}

impl<'a> Probe<'a> {
    /// A new, not yet warm environment for `contestant`.
    pub async fn environment(contestant: &'a Contestant<'a>, target: Target<'_>) -> Probe<'a> {
        let (bootstrap, _) = contestant.start(target).await;
        Probe::Environment { contestant, bootstrap }
    }

    async fn call(&self, n: usize) -> Result<Duration, String> {
        match self {
            Probe::Environment { contestant, bootstrap } => contestant.invoke(bootstrap, n).await,
            Probe::Database(probe) => probe.call(n).await,
        }
    }

    fn reports_db_time(&self) -> bool {
        matches!(self, Probe::Environment { contestant, .. } if contestant.is_rust() && contestant.op != Op::Noop)
    }
}

/// `warm_up` unmeasured rounds, then `rounds` measured ones; one [`Samples`] per probe, in order.
pub async fn measure(probes: &[Probe<'_>], warm_up: usize, rounds: usize) -> Vec<Samples> {
    let mut samples: Vec<Samples> = probes.iter().map(|_| Samples { e2e: Vec::with_capacity(rounds), ..Samples::default() }).collect();
    for n in 0..warm_up {
        for (probe, samples) in probes.iter().zip(&mut samples) {
            if let Err(failure) = probe.call(n).await {
                samples.failures.push(failure);
            }
        }
    }
    let reported_before: Vec<usize> = probes
        .iter()
        .map(|p| match p {
            Probe::Environment { bootstrap, .. } => bootstrap.db_latency_count(),
            Probe::Database(_) => 0,
        })
        .collect();
    for n in warm_up..warm_up + rounds {
        for (probe, samples) in probes.iter().zip(&mut samples) {
            match probe.call(n).await {
                Ok(took) => samples.e2e.push(took),
                Err(failure) => samples.failures.push(failure),
            }
        }
    }
    for ((probe, samples), before) in probes.iter().zip(&mut samples).zip(reported_before) {
        if let Probe::Environment { contestant, bootstrap } = probe {
            samples.rss_mb = bootstrap.peak_rss_mb();
            if probe.reports_db_time() && samples.failures.is_empty() {
                samples.db = bootstrap.db_latencies(before, rounds).await;
                assert_eq!(samples.db.len(), rounds, "{}: one DbLatency per invocation expected", contestant.label);
            }
        }
    }
    samples
}
