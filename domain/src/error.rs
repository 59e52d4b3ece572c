//! Typed errors of the cache. The adapter maps each to an HTTP status in one place.

use mongodb::error::{ErrorKind, WriteFailure};

use crate::schema::Millis;

/// A write that deserialized but breaks a rule. Nothing is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{field}: key {key:?} cannot be stored (no leading '$', no '.', no NUL, not empty)")]
    ForbiddenKey { field: String, key: String },
    #[error("{kind}: at most {max} passes")]
    TooManyPasses { kind: &'static str, max: usize },
    #[error("pass_uuid {pass_uuid:?} appears more than once")]
    DuplicatePass { pass_uuid: String },
    #[error("{field}: larger than {max} bytes")]
    PayloadTooLarge { field: String, max: usize },
    #[error("payload_hash of pass {pass_uuid:?} matches its payload in neither hash form")]
    HashMismatch { pass_uuid: String },
    #[error("the body must contain `passes`, `passes4` or both")]
    NoPasses,
    #[error("timestamp {timestamp} is more than {max_skew_seconds} s ahead of the server clock")]
    TimestampInFuture { timestamp: i64, max_skew_seconds: u64 },
}

/// Everything a cache operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// The stored document is newer than the write; nothing changed.
    #[error("a newer write is already stored (timestamp {stored})", stored = stored.0)]
    StaleWrite { stored: Millis },
    /// MongoDB cannot be reached or did not answer in time; retrying later may succeed.
    #[error("the database is unavailable")]
    Unavailable(#[source] mongodb::error::Error),
    #[error("the database did not answer within {0} ms")]
    Timeout(u64),
    /// Concurrent writes kept refusing this one until the operation timeout was spent; retrying later
    /// may succeed. `source` is the last refusal.
    #[error("the write conflicted with concurrent writes {retries} times until the time was spent")]
    Contended {
        retries: u32,
        #[source]
        source: mongodb::error::Error,
    },
    /// The write ran but the configured write concern was not satisfied; retrying is safe.
    #[error("the write was not acknowledged as configured: {0}")]
    WriteConcern(String),
    /// Anything else the database reported: a bug or a misconfiguration, not the caller's fault.
    #[error("the database rejected the operation")]
    Database(#[source] mongodb::error::Error),
}

impl From<mongodb::error::Error> for CacheError {
    fn from(err: mongodb::error::Error) -> Self {
        if let ErrorKind::Write(WriteFailure::WriteConcernError(concern)) = err.kind.as_ref() {
            CacheError::WriteConcern(concern.message.clone())
        } else if is_unavailable(&err) {
            CacheError::Unavailable(err)
        } else {
            CacheError::Database(err)
        }
    }
}

/// MongoDB server error codes that mean "not now", not "never": shutting down, stepping down, no primary.
pub(crate) const TRANSIENT_CODES: [i32; 9] = [6, 7, 89, 91, 189, 262, 10107, 11600, 13435];

fn is_unavailable(err: &mongodb::error::Error) -> bool {
    match err.kind.as_ref() {
        ErrorKind::ServerSelection { .. } | ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. } => true,
        ErrorKind::Command(e) => TRANSIENT_CODES.contains(&e.code),
        _ => false,
    }
}
