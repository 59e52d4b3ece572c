//! The Lambda side of the ticket cache: routing, identity, HTTP error mapping, metrics and start-up.
//! Each function binary is start-up plus one call into [`handlers::serve`] or [`sweeper::sweep`].

pub mod error;
pub mod handlers;
pub mod identity;
pub mod metrics;
pub mod response;
pub mod routes;
pub mod startup;
pub mod sweeper;

use domain::mongodb::Client;
use domain::{AccessConfig, Settings, TicketCache};

pub use error::ApiError;
pub use metrics::{Metric, Metrics};
pub use routes::Operation;

/// Shared by every invocation of one execution environment.
#[derive(Debug, Clone)]
pub struct AppState {
    pub cache: TicketCache,
    pub access: AccessConfig,
    pub metrics: Metrics,
    /// Larger request bodies are refused with 413 before parsing.
    pub max_body_bytes: usize,
}

impl AppState {
    pub fn new(client: &Client, settings: Settings, metrics: Metrics) -> AppState {
        let max_body_bytes = settings.cache.limits.max_request_bytes;
        AppState { cache: TicketCache::new(client, settings.cache), access: settings.access, metrics, max_body_bytes }
    }
}
