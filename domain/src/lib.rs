//! The Bytemark ticket cache: the `bytemark_tickets_cache` document schema, the validation of requests
//! and the cache operations over the official MongoDB driver. Payload printing, hashing and conversion
//! live in the `payload` crate. Knows nothing of Lambda or HTTP.

pub mod api_schema;
pub mod authenticity;
pub mod cache;
pub mod config;
pub mod connection;
pub mod encryption;
pub mod error;
pub mod indexes;
pub mod input;
pub mod keys;
#[cfg(test)]
mod node_vectors;
pub mod pass_filter;
pub mod read;
pub mod retry;
pub mod schema;

pub use cache::{
    AuditReport, CodeCount, ErrorQuery, ErrorReport, HourCount, KindCount, MergeOutcome, MergeReport, PushOutcome, ReplaceOutcome,
    SweepReport, TicketCache, UserCount, MAX_BULK_USERS,
};
pub use config::{AccessConfig, CacheConfig, ConfigError, Limits, Settings, UriSource, WriterIndexPolicy};
pub use connection::{ConnectionError, MongoConnection};
pub use error::{CacheError, ValidationError};
pub use indexes::IndexError;
pub use input::{BulkEntry, LogEntryInput, PassInput, PassUpdate};
pub use pass_filter::PassFilter;
pub use payload::Integrity;
pub use read::{CachedTickets, CheckedPass, DegradedPart};
pub use schema::{JsNumber, Millis, PassKind, Selection, UserId};

/// Re-exported so callers use the same driver and BSON versions as the cache.
pub use mongodb;
