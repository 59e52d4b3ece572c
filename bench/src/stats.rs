//! Percentiles of timing samples, and how the report prints them.

use std::time::Duration;

/// The `q`-quantile (0 ≤ q ≤ 1) of a sample, nearest rank; zero for an empty sample.
pub fn quantile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    match sorted.len() {
        0 => Duration::ZERO,
        n => sorted[((n as f64 - 1.0) * q).round() as usize],
    }
}

/// p50 and p99 of a sample.
pub fn percentiles(samples: &[Duration]) -> (Duration, Duration) {
    (quantile(samples, 0.50), quantile(samples, 0.99))
}

/// Each sample less the one at the same index in `minus` (saturating at zero): e.g. end-to-end time less
/// the database time the function reported for the same invocation.
pub fn pairwise_minus(samples: &[Duration], minus: &[Duration]) -> Vec<Duration> {
    samples.iter().zip(minus).map(|(a, b)| a.saturating_sub(*b)).collect()
}

pub fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

pub fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// `a / b` as a ratio, e.g. `0.42×`.
pub fn ratio(a: Duration, b: Duration) -> String {
    if b.is_zero() {
        return "–".into();
    }
    format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64())
}

pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        assert_eq!(percentiles(&samples), (Duration::from_micros(51), Duration::from_micros(99)));
        assert_eq!(quantile(&samples, 0.0), Duration::from_micros(1));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn pairwise_differences_never_go_below_zero() {
        let a = [Duration::from_micros(10), Duration::from_micros(3)];
        let b = [Duration::from_micros(4), Duration::from_micros(5)];
        assert_eq!(pairwise_minus(&a, &b), vec![Duration::from_micros(6), Duration::ZERO]);
        assert_eq!(ratio(Duration::from_micros(1), Duration::from_micros(4)), "0.25×");
    }
}
