//! What an execution environment does once, before its first database request: the first contact (TCP,
//! handshake, SCRAM authentication) and, for writers, the unique `user_id` index check.
//!
//! It starts in the background at init ([`crate::AppState::prepare`]), so it overlaps the wait for the
//! first event, and a request awaits it only while it is under way; once done it costs an atomic load. If
//! it fails (database down at init), the requests that waited for it get that failure, and the next
//! request tries again.
//!
//! Its budget is `MONGODB_FIRST_CONNECT_MS`, not the per-operation timeout: a fleet of cold environments
//! authenticating at the same moment keeps a healthy engine busy for seconds, and that must not turn into
//! 503s. A database that is down still fails fast, in the driver's 2 s server selection (`startup.rs`).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use domain::indexes::{ensure_unique_user_index, IndexError};
use domain::mongodb::bson::doc;
use domain::{CacheError, TicketCache};

use crate::error::ApiError;

#[derive(Debug, Default)]
pub struct Readiness {
    connected: Once,
    indexed: Once,
}

impl Readiness {
    /// Readers: one `ping` opens and authenticates the connection the first request then reuses.
    pub async fn connected(&self, cache: &TicketCache) -> Result<(), ApiError> {
        if self.indexed.is_done() {
            return Ok(());
        }
        self.connected
            .run(|| async {
                let database = cache.connection().client().database(&cache.config().database);
                let ping = async { database.run_command(doc! { "ping": 1 }).await.map(drop).map_err(CacheError::from) };
                within_first_contact(cache, ping).await.map_err(|e| first_contact_failed(e.into()))
            })
            .await
    }

    /// Writers: the unique index exists before anything is written (its `listIndexes` is the first contact).
    pub async fn writable(&self, cache: &TicketCache) -> Result<(), ApiError> {
        self.indexed
            .run(|| async {
                let collection = cache.collection();
                let check = ensure_unique_user_index(&collection, cache.config().writer_index_policy);
                within_first_contact(cache, check).await.map_err(first_contact_failed)
            })
            .await
    }
}

/// A step that succeeds once. Callers arriving during an attempt wait for it and share its outcome, so a
/// database that is down costs each of them one attempt's time, not one each.
#[derive(Debug, Default)]
struct Once {
    done: AtomicBool,
    failures: AtomicU64,
    /// Held during an attempt; the last failure, for those who waited for it.
    attempt: tokio::sync::Mutex<Option<ApiError>>,
}

impl Once {
    fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    async fn run<F: Future<Output = Result<(), ApiError>>>(&self, attempt: impl FnOnce() -> F) -> Result<(), ApiError> {
        if self.is_done() {
            return Ok(());
        }
        let failures_seen = self.failures.load(Ordering::Acquire);
        let mut last_failure = self.attempt.lock().await;
        if self.is_done() {
            return Ok(());
        }
        if self.failures.load(Ordering::Acquire) != failures_seen {
            // The attempt this caller waited for failed just now.
            return Err(last_failure.clone().unwrap_or(ApiError::Unavailable));
        }
        match attempt().await {
            Ok(()) => {
                self.done.store(true, Ordering::Release);
                Ok(())
            }
            Err(error) => {
                *last_failure = Some(error.clone());
                self.failures.fetch_add(1, Ordering::AcqRel);
                Err(error)
            }
        }
    }
}

async fn within_first_contact<E: From<CacheError>>(cache: &TicketCache, step: impl Future<Output = Result<(), E>>) -> Result<(), E> {
    let budget = cache.config().first_connect_timeout;
    tokio::time::timeout(budget, step).await.unwrap_or_else(|_| Err(CacheError::Timeout(budget.as_millis() as u64).into()))
}

fn first_contact_failed(error: IndexError) -> ApiError {
    match &error {
        // The message says what to run; it is the operator's cue, so it is logged in full.
        IndexError::Unusable { .. } => tracing::error!(problem = %error, "writes refused until the unique user_id index exists"),
        // Worded as the handlers word a failed operation, so one log query finds both.
        IndexError::Cache(e) => tracing::error!(
            error = %e,
            source = ?std::error::Error::source(e).map(ToString::to_string),
            step = "first contact",
            "cache operation failed"
        ),
    }
    ApiError::from(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn callers_share_one_attempt_and_its_failure_then_try_again() {
        let once = Arc::new(Once::default());
        let attempts = Arc::new(AtomicU64::new(0));
        let failing = |once: Arc<Once>, attempts: Arc<AtomicU64>| async move {
            once.run(|| async {
                attempts.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(ApiError::Unavailable)
            })
            .await
        };
        let (a, b) = tokio::join!(failing(once.clone(), attempts.clone()), failing(once.clone(), attempts.clone()));
        assert!(a.is_err() && b.is_err());
        assert_eq!(attempts.load(Ordering::SeqCst), 1, "the second caller waited for the first attempt");
        assert!(once.run(|| async { Ok(()) }).await.is_ok(), "a later caller tries again");
        assert!(once.is_done());
        assert!(once.run(|| async { Err(ApiError::Internal) }).await.is_ok(), "done: never run again");
    }
}
