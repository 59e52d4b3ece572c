//! The Lambda side of the ticket cache: routing, identity, HTTP error mapping, metrics and start-up.
//! Each function binary is start-up plus one call into [`handlers::serve`] or [`sweeper::handle`].

pub mod custom_resource;
pub mod error;
pub mod handlers;
pub mod identity;
pub mod metrics;
pub mod openapi;
pub mod query;
pub mod readiness;
pub mod response;
pub mod routes;
pub mod startup;
pub mod sweeper;

use std::sync::Arc;

use domain::{AccessConfig, MongoConnection, Settings, TicketCache};

pub use error::ApiError;
pub use metrics::{Metric, Metrics};
pub use readiness::Readiness;
pub use routes::Operation;

/// Shared by every invocation of one execution environment.
#[derive(Debug, Clone)]
pub struct AppState {
    pub cache: TicketCache,
    pub access: AccessConfig,
    pub metrics: Metrics,
    /// Larger request bodies are refused with 413 before parsing.
    pub max_body_bytes: usize,
    /// The environment's first contact with the database (and the writers' index check), done once.
    pub readiness: Arc<Readiness>,
}

impl AppState {
    pub fn new(connection: impl Into<MongoConnection>, settings: Settings, metrics: Metrics) -> AppState {
        let max_body_bytes = settings.cache.limits.max_request_bytes;
        AppState {
            cache: TicketCache::new(connection, settings.cache),
            access: settings.access,
            metrics,
            max_body_bytes,
            readiness: Arc::default(),
        }
    }

    /// Starts the first contact in the background, at init, for the function serving `operation`; its first
    /// request awaits it only if it is still under way. Needs the tokio runtime.
    pub fn prepare(&self, operation: Operation) {
        let state = self.clone();
        tokio::spawn(async move {
            // A failure is logged there and retried by the first request.
            let _ = match operation {
                Operation::UpdateTickets | Operation::PushLog | Operation::BulkUpdateTickets => {
                    state.readiness.writable(&state.cache).await
                }
                Operation::GetTickets | Operation::ErrorReport => state.readiness.connected(&state.cache).await,
            };
        });
    }
}
