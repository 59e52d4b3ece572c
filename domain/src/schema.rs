//! The shape of a `bytemark_tickets_cache` document, as both this service and the legacy Node/Mongoose
//! service write it.
//!
//! Mongoose stored JavaScript numbers, so every number may arrive as BSON int32, int64 or double, any field
//! may be missing or null, and sub-documents carry an `_id`. Unknown fields are kept in `extra` so that
//! nothing this service does not understand is lost when a pass is read and written back.

use std::fmt;

use mongodb::bson::{Bson, RawBson};
use payload::MAX_SAFE_INTEGER;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Top-level field names, in one place.
pub mod field {
    pub const USER_ID: &str = "user_id";
    pub const TIMESTAMP: &str = "timestamp";
    pub const EXPIRES_AT: &str = "expires_at";
    pub const PASS_UUID: &str = "pass_uuid";
    pub const SERVER_TIME: &str = "server_time";
    pub const LOG_ENTRY_ID: &str = "id";
}

/// Names the service computes for a read. A stored field with one of these names would stand in for the
/// service's own verdict, so reads leave it out and writes drop it when merging a stored pass.
pub mod reserved {
    /// Pass fields the service computes: never shown from storage, never kept by a merge.
    pub const PASS_FIELDS: [&str; 1] = ["integrity"];

    pub fn is_reserved(name: &[u8]) -> bool {
        PASS_FIELDS.iter().any(|reserved| reserved.as_bytes() == name)
    }
}

/// Which of the two pass arrays (and its log) an operation targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PassKind {
    Passes,
    Passes4,
}

impl PassKind {
    pub const ALL: [PassKind; 2] = [PassKind::Passes, PassKind::Passes4];

    /// The document field holding this kind's passes.
    pub fn field(self) -> &'static str {
        match self {
            PassKind::Passes => "passes",
            PassKind::Passes4 => "passes4",
        }
    }

    /// The document field holding this kind's error log.
    pub fn log_field(self) -> &'static str {
        match self {
            PassKind::Passes => "passesLog",
            PassKind::Passes4 => "passes4Log",
        }
    }

    pub fn parse(value: &str) -> Option<PassKind> {
        match value {
            "passes" => Some(PassKind::Passes),
            "passes4" => Some(PassKind::Passes4),
            _ => None,
        }
    }
}

/// Which pass arrays a read returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    Only(PassKind),
    All,
}

impl Selection {
    pub fn kinds(self) -> &'static [PassKind] {
        match self {
            Selection::Only(PassKind::Passes) => &[PassKind::Passes],
            Selection::Only(PassKind::Passes4) => &[PassKind::Passes4],
            Selection::All => &PassKind::ALL,
        }
    }

    pub fn includes(self, kind: PassKind) -> bool {
        self.kinds().contains(&kind)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Selection::Only(kind) => kind.field(),
            Selection::All => "all",
        }
    }

    pub fn parse(value: &str) -> Option<Selection> {
        match value {
            "all" => Some(Selection::All),
            other => PassKind::parse(other).map(Selection::Only),
        }
    }
}

/// A user id: a positive integer that a JavaScript number can hold exactly (the Node service shares it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct UserId(i64);

impl UserId {
    pub fn new(value: i64) -> Option<UserId> {
        (1..=MAX_SAFE_INTEGER).contains(&value).then_some(UserId(value))
    }

    /// Parses the decimal digits of a path segment; anything else (signs, fractions, exponents) is refused.
    pub fn parse(value: &str) -> Option<UserId> {
        if value.is_empty() || value.len() > 16 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        value.parse().ok().and_then(UserId::new)
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// A user id in a request body: a JSON integer in `1..=2^53-1`.
impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match JsNumber::deserialize(deserializer)? {
            JsNumber::Int(v) => UserId::new(v).ok_or_else(|| de::Error::custom("user_id must be a positive integer up to 2^53-1")),
            JsNumber::Float(_) => Err(de::Error::custom("user_id must be an integer")),
        }
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Stored as the Node service's driver stores the same JavaScript number: int32 when it fits, else a
/// double (exact: a user id is at most 2^53-1); that driver never writes int64. A unique index on
/// DocumentDB (Cosmos DB vCore, FerretDB 2) tells BSON number types apart, unlike MongoDB's; with the
/// same type, both services' first writes of a user meet on the `user_id` index there too, and make one
/// document. Queries match across types on every engine, so documents stored with other types are found.
impl From<UserId> for Bson {
    fn from(id: UserId) -> Bson {
        i32::try_from(id.0).map_or(Bson::Double(id.0 as f64), Bson::Int32)
    }
}

impl From<UserId> for RawBson {
    fn from(id: UserId) -> RawBson {
        i32::try_from(id.0).map_or(RawBson::Double(id.0 as f64), RawBson::Int32)
    }
}

/// Milliseconds since the Unix epoch, read from any BSON number (legacy documents hold doubles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Millis(pub i64);

impl Millis {
    pub fn from_datetime(at: mongodb::bson::DateTime) -> Millis {
        Millis(at.timestamp_millis())
    }
}

impl From<Millis> for Bson {
    fn from(ms: Millis) -> Bson {
        Bson::Int64(ms.0)
    }
}

impl Millis {
    /// Milliseconds from a stored number. Date.now() stored as a double is integral; a fraction carries
    /// no meaning for milliseconds. Only instants from the epoch up to JavaScript's largest exact integer
    /// are times: anything else (negative, 1e300, NaN) was never written by a clock and reads as unknown.
    pub fn from_number(number: JsNumber) -> Option<Millis> {
        let millis = match number {
            JsNumber::Int(v) => v,
            JsNumber::Float(v) if (0.0..=MAX_SAFE_INTEGER as f64).contains(&v) => v.trunc() as i64,
            JsNumber::Float(_) => return None,
        };
        (0..=MAX_SAFE_INTEGER).contains(&millis).then_some(Millis(millis))
    }
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let number = JsNumber::deserialize(deserializer)?;
        Millis::from_number(number).ok_or_else(|| {
            let shown = match number {
                JsNumber::Int(v) => v.to_string(),
                JsNumber::Float(v) => v.to_string(),
            };
            de::Error::custom(format!("timestamp {shown} is not a finite number"))
        })
    }
}

/// A JavaScript number as Mongoose stored it. Integral doubles read as integers, so `1.0` written by an
/// old driver comes back as `1`, as JavaScript would print it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JsNumber {
    Int(i64),
    Float(f64),
}

impl JsNumber {
    /// A stored BSON number as JavaScript holds it; `None` for other types.
    pub fn from_raw(value: mongodb::bson::RawBsonRef<'_>) -> Option<JsNumber> {
        use mongodb::bson::RawBsonRef;
        match value {
            RawBsonRef::Int32(v) => Some(JsNumber::Int(v.into())),
            RawBsonRef::Int64(v) => Some(JsNumber::Int(v)),
            RawBsonRef::Double(v) => Some(JsNumber::from_f64(v)),
            _ => None,
        }
    }

    pub fn from_f64(v: f64) -> JsNumber {
        // Only integral values in the exactly representable range become integers.
        if v.fract() == 0.0 && v.abs() <= MAX_SAFE_INTEGER as f64 {
            JsNumber::Int(v as i64)
        } else {
            JsNumber::Float(v)
        }
    }
}

impl Serialize for JsNumber {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            JsNumber::Int(v) => serializer.serialize_i64(v),
            JsNumber::Float(v) => serializer.serialize_f64(v),
        }
    }
}

impl<'de> Deserialize<'de> for JsNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumberVisitor;
        impl Visitor<'_> for NumberVisitor {
            type Value = JsNumber;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number (int32, int64 or double)")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<JsNumber, E> {
                Ok(JsNumber::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<JsNumber, E> {
                i64::try_from(v).map(JsNumber::Int).map_err(|_| E::custom("number out of range"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<JsNumber, E> {
                Ok(JsNumber::from_f64(v))
            }
        }
        deserializer.deserialize_any(NumberVisitor)
    }
}

impl From<JsNumber> for Bson {
    fn from(n: JsNumber) -> Bson {
        match n {
            JsNumber::Int(v) => Bson::Int64(v),
            JsNumber::Float(v) => Bson::Double(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As the Node driver writes a JavaScript number: int32 when it fits, else a double, never int64.
    #[test]
    fn user_ids_convert_to_the_node_drivers_number_types() {
        let id = |v: i64| UserId::new(v).unwrap();
        assert_eq!(Bson::from(id(201)), Bson::Int32(201));
        assert_eq!(Bson::from(id(i64::from(i32::MAX))), Bson::Int32(i32::MAX));
        assert_eq!(Bson::from(id(i64::from(i32::MAX) + 1)), Bson::Double(2_147_483_648.0));
        assert_eq!(Bson::from(id(3_000_000_003)), Bson::Double(3_000_000_003.0));
        assert_eq!(RawBson::from(id(MAX_SAFE_INTEGER)), RawBson::Double(MAX_SAFE_INTEGER as f64));
        assert_eq!(Bson::from(id(MAX_SAFE_INTEGER)).as_f64().map(|v| v as i64), Some(MAX_SAFE_INTEGER), "exact up to 2^53-1");
    }
}
