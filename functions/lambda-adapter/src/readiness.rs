//! What an execution environment does once, before its first database request: the first contact (TCP,
//! handshake, SCRAM authentication) and, for writers, the unique `user_id` index check.
//!
//! It starts in the background at init ([`crate::AppState::prepare`]), so it overlaps the wait for the
//! first event, and a request awaits it only while it is under way; once done it costs an atomic load. If
//! it fails (database down at init), the next request runs it again.
//!
//! Its budget is `MONGODB_FIRST_CONNECT_MS`, not the per-operation timeout: a fleet of cold environments
//! authenticating at the same moment keeps a healthy engine busy for seconds, and that must not turn into
//! 503s. A database that is down still fails fast, in the driver's 2 s server selection (`startup.rs`).

use domain::indexes::{ensure_unique_user_index, IndexError};
use domain::mongodb::bson::doc;
use domain::{CacheError, TicketCache};
use tokio::sync::OnceCell;

use crate::error::ApiError;

#[derive(Debug, Default)]
pub struct Readiness {
    connected: OnceCell<()>,
    indexed: OnceCell<()>,
}

impl Readiness {
    /// Readers: one `ping` opens and authenticates the connection the first request then reuses.
    pub async fn connected(&self, cache: &TicketCache) -> Result<(), ApiError> {
        if self.connected.initialized() || self.indexed.initialized() {
            return Ok(());
        }
        self.connected
            .get_or_try_init(|| async {
                let database = cache.collection().client().database(&cache.config().database);
                within_first_contact(cache, async { database.run_command(doc! { "ping": 1 }).await.map(drop).map_err(CacheError::from) })
                    .await
                    .map_err(|e| first_contact_failed(e.into()))
            })
            .await
            .map(drop)
    }

    /// Writers: the unique index exists before anything is written (its `listIndexes` is the first contact).
    pub async fn writable(&self, cache: &TicketCache) -> Result<(), ApiError> {
        self.indexed
            .get_or_try_init(|| async {
                let policy = cache.config().writer_index_policy;
                within_first_contact(cache, async { ensure_unique_user_index(cache, policy).await }).await.map_err(first_contact_failed)
            })
            .await
            .map(drop)
    }
}

async fn within_first_contact<E: From<CacheError>>(
    cache: &TicketCache,
    step: impl std::future::Future<Output = Result<(), E>>,
) -> Result<(), E> {
    let budget = cache.config().first_connect_timeout;
    tokio::time::timeout(budget, step).await.unwrap_or_else(|_| Err(CacheError::Timeout(budget.as_millis() as u64).into()))
}

fn first_contact_failed(error: IndexError) -> ApiError {
    match &error {
        // The message says what to run; it is the operator's cue, so it is logged in full.
        IndexError::Unusable { .. } => tracing::error!(problem = %error, "writes refused until the unique user_id index exists"),
        IndexError::Cache(e) => {
            tracing::warn!(error = %e, source = ?std::error::Error::source(e).map(ToString::to_string), "first contact with the database failed")
        }
    }
    ApiError::from(error)
}
