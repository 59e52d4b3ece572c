//! The Bytemark ticket cache: the `bytemark_tickets_cache` document schema, payload hashing, validation
//! and the cache operations over the official MongoDB driver. Knows nothing of Lambda or HTTP.

mod bson_walk;
pub mod cache;
pub mod clock;
pub mod config;
pub mod convert;
pub mod error;
pub mod hashing;
pub mod indexes;
pub mod input;
pub mod json;
pub mod read;
pub mod retry;
pub mod schema;
pub mod verified;

pub use cache::{ErrorQuery, ErrorReport, PushOutcome, ReplaceOutcome, SweepReport, TicketCache};
pub use config::{AccessConfig, CacheConfig, ConfigError, Limits, Settings, UriSource, WriterIndexPolicy};
pub use error::{CacheError, ValidationError};
pub use hashing::Integrity;
pub use indexes::IndexError;
pub use input::{LogEntryInput, PassInput, PassUpdate};
pub use read::{CachedTickets, CheckedPass};
pub use schema::{JsNumber, Millis, PassKind, Selection, UserId};

/// Re-exported so callers use the same driver and BSON versions as the cache.
pub use mongodb;
