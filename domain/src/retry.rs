//! The one retry policy of every write: which failures are worth another attempt, and how long to wait
//! before it.
//!
//! Engines that do not retry on the server (DocumentDB, and MongoDB itself inside transactions or under
//! heavy contention) answer a losing upsert with E11000 and a lock conflict with WriteConflict (112).
//! Both mean the write was refused, so another attempt is safe. A lost reply is different: the write may
//! have run, so only an idempotent write is sent again.
//!
//! An attempt stuck on a lock keeps waiting until the server ends the wait; on DocumentDB (PostgreSQL) a
//! deadlock ends only after `deadlock_timeout` (1 s), and such waits queue behind each other. Each
//! attempt therefore carries a server-side limit (`maxTimeMS`) below that: the server abandons a stuck
//! attempt and releases its locks. The limit doubles with each retry, so a write that is merely slow
//! still gets the whole budget. (Concurrent first writes of one user no longer deadlock there: see
//! `derived_id` in `cache.rs`.)

use std::time::{Duration, Instant};

use mongodb::error::{Error, ErrorKind, WriteFailure, RETRYABLE_WRITE_ERROR, TRANSIENT_TRANSACTION_ERROR};

use crate::error::TRANSIENT_CODES;

const DUPLICATE_KEY: i32 = 11000;
const WRITE_CONFLICT: i32 = 112;
/// The server stopped the attempt at its `maxTimeMS`; a single-document write is then not applied.
const MAX_TIME_EXPIRED: i32 = 50;

/// What one failed attempt says about another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The server refused the write (a concurrent write won, or it cannot take writes right now):
    /// nothing was written, and another attempt may succeed.
    Refused,
    /// The reply was lost: the write may or may not have run.
    Unknown,
    /// Another attempt would fail the same way (a bug, a misconfiguration, a real duplicate).
    Final,
}

/// How a write may be repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteKind {
    /// An upsert on the unique `user_id`: E11000 means a concurrent first write created the document,
    /// which the next attempt updates. For any other write E11000 is final.
    pub upsert: bool,
    /// Running it twice stores what running it once stores, so it may be sent again after a lost reply.
    pub idempotent: bool,
}

impl WriteKind {
    /// Whether a failure with this verdict is tried again (time permitting).
    pub fn retries(self, verdict: Verdict) -> bool {
        match verdict {
            Verdict::Refused => true,
            Verdict::Unknown => self.idempotent,
            Verdict::Final => false,
        }
    }
}

/// The facts about a driver error that decide its verdict (kept apart so the rules are testable
/// without a server: the driver does not let callers build labelled errors).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failure {
    /// No reply arrived: the connection broke or the pool was cleared under the operation.
    pub connection_lost: bool,
    /// The write ran but its write concern was not satisfied.
    pub write_concern: bool,
    /// The server's error code (a command error, or the write error of a single-document write).
    pub code: Option<i32>,
    pub transient_transaction: bool,
    pub retryable_write: bool,
}

impl Failure {
    pub fn of(error: &Error) -> Failure {
        let code = match error.kind.as_ref() {
            ErrorKind::Command(e) => Some(e.code),
            ErrorKind::Write(WriteFailure::WriteError(e)) => Some(e.code),
            _ => None,
        };
        Failure {
            connection_lost: matches!(error.kind.as_ref(), ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. }),
            write_concern: matches!(error.kind.as_ref(), ErrorKind::Write(WriteFailure::WriteConcernError(_))),
            code,
            transient_transaction: error.contains_label(TRANSIENT_TRANSACTION_ERROR),
            retryable_write: error.contains_label(RETRYABLE_WRITE_ERROR),
        }
    }

    pub fn verdict(&self, kind: WriteKind) -> Verdict {
        // First: the driver labels a lost reply (and some write concern errors) as retryable too, but
        // that does not make the write unwritten.
        if self.connection_lost || self.write_concern {
            return Verdict::Unknown;
        }
        match self.code {
            Some(DUPLICATE_KEY) if kind.upsert => Verdict::Refused,
            Some(WRITE_CONFLICT | MAX_TIME_EXPIRED) => Verdict::Refused,
            Some(code) if TRANSIENT_CODES.contains(&code) => Verdict::Refused,
            _ if self.transient_transaction || self.retryable_write => Verdict::Refused,
            _ => Verdict::Final,
        }
    }
}

/// The verdict on one failed attempt of a write of this kind.
pub fn classify(error: &Error, kind: WriteKind) -> Verdict {
    Failure::of(error).verdict(kind)
}

/// Full-jitter exponential backoff: the wait before retry `n` (from 0) is uniform in
/// `[0, min(cap, base · 2ⁿ)]`, which spreads competing writers apart fastest (AWS Architecture Blog,
/// "Exponential Backoff and Jitter").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// Every write's backoff. A conflict on one document clears in milliseconds once the document
    /// exists; the cap keeps the last attempts inside a 3 s operation timeout.
    pub const WRITES: Backoff = Backoff { base: Duration::from_millis(4), cap: Duration::from_millis(250) };

    /// The longest wait before retry `retry`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        self.base.saturating_mul(1_u32.checked_shl(retry).unwrap_or(u32::MAX)).min(self.cap)
    }

    /// The wait before retry `retry` for a uniform sample `unit` in `[0, 1]`.
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        self.ceiling(retry).mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// Time an attempt needs at the least: with less left, waiting for one more attempt is pointless.
pub const MIN_ATTEMPT: Duration = Duration::from_millis(10);

/// The first attempt's server-side limit: far above an uncontended write (milliseconds, including a
/// majority write concern), below PostgreSQL's 1 s `deadlock_timeout`. A write concern wait it cuts
/// short is a write that ran; an idempotent one is repeated with the doubled limit.
pub const FIRST_ATTEMPT_TIME: Duration = Duration::from_millis(250);

/// One write's time budget (the operation timeout) and the retries spent in it.
#[derive(Debug)]
pub struct Budget {
    started: Instant,
    limit: Duration,
    backoff: Backoff,
    retries: u32,
}

impl Budget {
    pub fn start(limit: Duration) -> Budget {
        Budget { started: Instant::now(), limit, backoff: Backoff::WRITES, retries: 0 }
    }

    /// The time left for the next attempt.
    pub fn remaining(&self) -> Duration {
        self.limit.saturating_sub(self.started.elapsed())
    }

    /// Retries granted so far.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// The server-side limit (`maxTimeMS`) of the next attempt: [`FIRST_ATTEMPT_TIME`], doubled with
    /// each retry, never past the time left and never 0 (which the server reads as "no limit").
    pub fn attempt_limit(&self) -> Duration {
        attempt_limit(self.retries, self.remaining())
    }

    /// Grants one more attempt: the wait before it, or `None` when the wait and the attempt no longer fit.
    pub fn next_delay(&mut self) -> Option<Duration> {
        let delay = plan(self.backoff, self.retries, self.started.elapsed(), self.limit, rand::random::<f64>())?;
        self.retries += 1;
        Some(delay)
    }
}

/// See [`Budget::attempt_limit`].
pub fn attempt_limit(retries: u32, remaining: Duration) -> Duration {
    let doubled = FIRST_ATTEMPT_TIME.saturating_mul(1_u32.checked_shl(retries).unwrap_or(u32::MAX));
    doubled.min(remaining).max(Duration::from_millis(1))
}

/// The wait before retry `retry` when `elapsed` of `limit` is spent, or `None` when the wait plus
/// [`MIN_ATTEMPT`] would pass the limit.
pub fn plan(backoff: Backoff, retry: u32, elapsed: Duration, limit: Duration, unit: f64) -> Option<Duration> {
    let delay = backoff.delay(retry, unit);
    (elapsed + delay + MIN_ATTEMPT <= limit).then_some(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPSERT: WriteKind = WriteKind { upsert: true, idempotent: true };
    const UPDATE: WriteKind = WriteKind { upsert: false, idempotent: true };
    const APPEND: WriteKind = WriteKind { upsert: false, idempotent: false };

    fn code(code: i32) -> Failure {
        Failure { code: Some(code), ..Failure::default() }
    }

    #[test]
    fn conflicts_are_refusals_and_retried_by_every_write() {
        assert_eq!(code(112).verdict(UPDATE), Verdict::Refused);
        assert_eq!(code(11000).verdict(UPSERT), Verdict::Refused, "a concurrent first write won");
        for kind in [UPSERT, UPDATE, APPEND] {
            assert!(kind.retries(code(112).verdict(kind)), "{kind:?}");
        }
        // Stepping down, shutting down, no primary: the server refused, nothing was written.
        for transient in [10107, 11600, 189, 91, 13435] {
            assert_eq!(code(transient).verdict(APPEND), Verdict::Refused, "{transient}");
        }
    }

    #[test]
    fn an_attempt_stopped_at_its_time_limit_is_a_refusal() {
        assert_eq!(code(50).verdict(APPEND), Verdict::Refused);
        assert!(APPEND.retries(code(50).verdict(APPEND)));
    }

    #[test]
    fn a_write_concern_error_means_the_write_ran() {
        let unsatisfied = Failure { write_concern: true, retryable_write: true, ..Failure::default() };
        assert_eq!(unsatisfied.verdict(APPEND), Verdict::Unknown);
        assert!(!APPEND.retries(unsatisfied.verdict(APPEND)));
        assert!(UPDATE.retries(unsatisfied.verdict(UPDATE)));
    }

    #[test]
    fn attempt_limits_double_stay_inside_the_budget_and_never_mean_unlimited() {
        let ms = Duration::from_millis;
        let limits: Vec<u128> = (0..4).map(|r| attempt_limit(r, ms(3000)).as_millis()).collect();
        assert_eq!(limits, [250, 500, 1000, 2000]);
        assert!(FIRST_ATTEMPT_TIME < ms(1000), "below PostgreSQL's deadlock_timeout");
        assert_eq!(attempt_limit(0, ms(120)), ms(120), "never past the time left");
        assert_eq!(attempt_limit(2, Duration::ZERO), ms(1), "0 would mean no limit at all");
        assert_eq!(attempt_limit(u32::MAX, ms(3000)), ms(3000));
    }

    #[test]
    fn a_duplicate_key_is_final_unless_the_write_is_an_upsert() {
        assert_eq!(code(11000).verdict(UPDATE), Verdict::Final);
        assert_eq!(code(11000).verdict(APPEND), Verdict::Final);
    }

    #[test]
    fn labelled_errors_are_retried() {
        let labelled = [
            Failure { transient_transaction: true, ..code(251) },
            Failure { retryable_write: true, ..code(262) },
            Failure { retryable_write: true, ..Failure::default() },
        ];
        for failure in labelled {
            assert_eq!(failure.verdict(APPEND), Verdict::Refused, "{failure:?}");
        }
    }

    #[test]
    fn a_lost_reply_is_retried_only_by_idempotent_writes() {
        // The driver labels a lost reply RetryableWriteError; the write may still have run.
        let lost = Failure { connection_lost: true, retryable_write: true, ..Failure::default() };
        assert_eq!(lost.verdict(APPEND), Verdict::Unknown);
        assert!(UPSERT.retries(lost.verdict(UPSERT)));
        assert!(!APPEND.retries(lost.verdict(APPEND)), "an entry without id could be appended twice");
    }

    #[test]
    fn other_errors_are_final() {
        for final_code in [2, 8, 13, 121, 10334, 16755] {
            assert_eq!(code(final_code).verdict(UPSERT), Verdict::Final, "{final_code}");
        }
        assert_eq!(Failure::default().verdict(UPSERT), Verdict::Final);
        assert!(!UPSERT.retries(Verdict::Final));
    }

    #[test]
    fn driver_errors_are_read_for_their_facts() {
        let io = Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(classify(&io, APPEND), Verdict::Unknown);
        let command: mongodb::error::CommandError =
            mongodb::bson::from_document(mongodb::bson::doc! { "code": 112, "codeName": "WriteConflict", "errmsg": "deadlock detected" })
                .unwrap();
        let conflict = Error::from(ErrorKind::Command(command));
        assert_eq!(Failure::of(&conflict), code(112));
        let write: mongodb::error::WriteError =
            mongodb::bson::from_document(mongodb::bson::doc! { "code": 11000, "errmsg": "E11000" }).unwrap();
        let duplicate = Error::from(ErrorKind::Write(WriteFailure::WriteError(write)));
        assert_eq!(Failure::of(&duplicate), code(11000));
        assert_eq!(classify(&duplicate, UPSERT), Verdict::Refused);
        assert_eq!(classify(&duplicate, UPDATE), Verdict::Final);
    }

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap() {
        let backoff = Backoff { base: Duration::from_millis(4), cap: Duration::from_millis(250) };
        let ceilings: Vec<u128> = (0..8).map(|n| backoff.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [4, 8, 16, 32, 64, 128, 250, 250]);
        assert_eq!(backoff.ceiling(40), backoff.cap, "no overflow for large retry counts");
        assert_eq!(backoff.ceiling(u32::MAX), backoff.cap);
    }

    #[test]
    fn every_wait_is_jittered_within_zero_and_the_ceiling() {
        let backoff = Backoff::WRITES;
        for retry in 0..12 {
            assert_eq!(backoff.delay(retry, 0.0), Duration::ZERO);
            assert_eq!(backoff.delay(retry, 1.0), backoff.ceiling(retry));
            assert_eq!(backoff.delay(retry, 7.0), backoff.ceiling(retry), "samples are clamped");
            for _ in 0..200 {
                let delay = backoff.delay(retry, rand::random::<f64>());
                assert!(delay <= backoff.ceiling(retry), "retry {retry}: {delay:?}");
            }
        }
        // Jittered: draws differ (200 equal draws from a continuous distribution do not happen).
        let draws: std::collections::BTreeSet<_> = (0..200).map(|_| backoff.delay(5, rand::random::<f64>())).collect();
        assert!(draws.len() > 100, "{}", draws.len());
    }

    #[test]
    fn no_retry_is_granted_past_the_time_limit() {
        let backoff = Backoff { base: Duration::from_millis(100), cap: Duration::from_millis(100) };
        let limit = Duration::from_millis(3000);
        let at = |ms| Duration::from_millis(ms);
        assert_eq!(plan(backoff, 0, at(0), limit, 1.0), Some(at(100)));
        assert_eq!(plan(backoff, 3, at(2890), limit, 1.0), Some(at(100)), "the wait and the attempt just fit");
        assert_eq!(plan(backoff, 3, at(2891), limit, 1.0), None);
        assert_eq!(plan(backoff, 3, at(2891), limit, 0.0), Some(Duration::ZERO), "a short draw still fits");
        assert_eq!(plan(backoff, 3, at(2991), limit, 0.0), None, "no time left for the attempt itself");
        assert_eq!(plan(backoff, 3, at(5000), limit, 0.0), None);
    }

    #[test]
    fn a_budget_counts_its_retries_and_stops_at_its_limit() {
        let mut budget = Budget::start(Duration::from_millis(50));
        let mut waited = Duration::ZERO;
        while let Some(delay) = budget.next_delay() {
            std::thread::sleep(delay);
            waited += delay;
            assert!(budget.retries() < 1000);
        }
        assert!(budget.retries() >= 1, "at least one retry fits in 50 ms");
        assert!(waited + MIN_ATTEMPT <= Duration::from_millis(50), "{waited:?}");
        assert!(budget.remaining() <= Duration::from_millis(50));
        let none = Budget::start(Duration::ZERO);
        assert_eq!(none.remaining(), Duration::ZERO);
    }
}
