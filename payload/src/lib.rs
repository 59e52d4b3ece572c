//! Pass payloads, without a database: stored BSON printed as JavaScript prints it, the client's JSON
//! converted to what a write stores, the SHA-256 hashes both services compute over them, and the
//! per-environment memos of that work.
//!
//! Modules depend one way (the integration test `module_graph` holds them to it):
//! [`reader`] → [`text`] → [`hash`] → [`convert`] → [`memo`], with [`rules`] (what may be stored) and
//! [`js_date`] (dates as JavaScript prints them) below them all.

pub mod convert;
pub mod hash;
pub mod js_date;
pub mod memo;
pub mod reader;
pub mod rules;
pub mod text;

pub use convert::{convert_payload, ConvertError, ConvertedPayload};
pub use hash::{HashForm, Integrity, JCS_ALG};
pub use memo::{ConvertedPayloads, VerifiedPayloads};
pub use rules::{Violation, MAX_SAFE_INTEGER};
pub use text::{TextError, TextForm};
