//! Logged errors aggregated for monitoring: one aggregation over the log arrays' `server_time` indexes.

use std::time::Duration;

use futures_util::TryStreamExt;
use mongodb::bson::{doc, Bson, DateTime, RawBsonRef, RawDocument, RawDocumentBuf};
use serde::Serialize;
use utoipa::openapi::schema::{ArrayBuilder, Schema};
use utoipa::openapi::Ref;
use utoipa::ToSchema;

use super::TicketCache;
use crate::error::{CacheError, ValidationError};
use payload::js_date::to_iso_string;
use payload::MAX_SAFE_INTEGER;

use crate::schema::{field, PassKind, UserId};

/// The longest window one report covers: the aggregation reads every entry in it.
pub const MAX_WINDOW: Duration = Duration::from_secs(31 * 24 * 3600);
/// Rows in `by_code` and `top_users`.
pub const TOP_CODES: i64 = 50;
pub const TOP_USERS: i64 = 20;

/// Which logged errors a report counts: those logged in `[since, until)`, of one kind or both, of one
/// user or all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorQuery {
    since: DateTime,
    until: DateTime,
    pub kind: Option<PassKind>,
    pub user: Option<UserId>,
}

impl ErrorQuery {
    /// A window that ends after it starts and spans at most [`MAX_WINDOW`].
    pub fn new(since: DateTime, until: DateTime, kind: Option<PassKind>, user: Option<UserId>) -> Result<ErrorQuery, ValidationError> {
        let span = until.timestamp_millis().saturating_sub(since.timestamp_millis());
        if span <= 0 {
            return Err(ValidationError::Invalid { field: "until".into(), reason: "must be later than since".into() });
        }
        if span as u128 > MAX_WINDOW.as_millis() {
            let days = MAX_WINDOW.as_secs() / 86_400;
            return Err(ValidationError::Invalid { field: "since".into(), reason: format!("the window spans at most {days} days") });
        }
        Ok(ErrorQuery { since, until, kind, user })
    }

    pub fn since(&self) -> DateTime {
        self.since
    }

    pub fn until(&self) -> DateTime {
        self.until
    }
}

/// Counts of logged errors. An entry with several errors counts each; an error is its `code` field, or
/// itself when it is a string; anything else counts as `unknown`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ErrorReport {
    /// The window's start (inclusive), as `server_time` is written: UTC with milliseconds.
    pub since: String,
    /// The window's end (exclusive).
    pub until: String,
    pub total: u64,
    /// The most frequent codes, most frequent first.
    #[schema(schema_with = by_code_schema)]
    pub by_code: Vec<CodeCount>,
    pub by_kind: Vec<KindCount>,
    /// Hours (UTC, the hour's start) in time order; hours without errors are left out.
    pub by_hour: Vec<HourCount>,
    /// The users with the most errors, most first.
    #[schema(schema_with = top_users_schema)]
    pub top_users: Vec<UserCount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CodeCount {
    pub code: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KindCount {
    pub kind: PassKind,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct HourCount {
    pub hour: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct UserCount {
    /// As stored: an integer for every document either service wrote (legacy documents hold numbers of
    /// any BSON type, shown as integers; a damaged one anything, in relaxed Extended JSON).
    pub user_id: serde_json::Value,
    pub count: u64,
}

/// At most [`TOP_CODES`] rows (the bound the aggregation applies, in the contract).
fn by_code_schema() -> Schema {
    ArrayBuilder::new().items(Ref::from_schema_name(CodeCount::name())).max_items(Some(TOP_CODES as usize)).into()
}

/// At most [`TOP_USERS`] rows.
fn top_users_schema() -> Schema {
    ArrayBuilder::new().items(Ref::from_schema_name(UserCount::name())).max_items(Some(TOP_USERS as usize)).into()
}

impl TicketCache {
    /// Aggregates the errors logged in the query's window: one aggregation, bounded by the operation
    /// timeout on the server (`maxTimeMS`) as well as here.
    pub async fn error_report(&self, query: &ErrorQuery) -> Result<ErrorReport, CacheError> {
        let since = to_iso_string(query.since);
        let until = to_iso_string(query.until);
        let window = doc! { "$gte": &since, "$lt": &until };
        let kinds: Vec<PassKind> = PassKind::ALL.into_iter().filter(|k| query.kind.is_none_or(|only| only == *k)).collect();
        let mut matched = doc! {
            // Each kind's `server_time` index finds the documents with an entry in the window.
            "$or": kinds.iter().map(|k| doc! { format!("{}.{}", k.log_field(), field::SERVER_TIME): window.clone() }).collect::<Vec<_>>(),
        };
        if let Some(user) = query.user {
            matched.insert(field::USER_ID, user);
        }
        let entries = |kind: PassKind| {
            let log = format!("${}", kind.log_field());
            doc! { "$map": {
                // A log stored as anything but an array holds no entries (and must not fail the report).
                "input": { "$cond": [{ "$isArray": &log }, &log, []] },
                "as": "e",
                "in": { "kind": kind.field(), "server_time": "$$e.server_time", "errors": "$$e.errors" },
            } }
        };
        let counted = |key: &str| doc! { "$group": { "_id": key, "count": { "$sum": 1 } } };
        let pipeline = vec![
            doc! { "$match": matched },
            doc! { "$project": { "_id": 0, "user_id": 1, "entry": { "$concatArrays": kinds.iter().map(|k| entries(*k)).collect::<Vec<_>>() } } },
            doc! { "$unwind": "$entry" },
            doc! { "$match": { "entry.server_time": window } },
            doc! { "$unwind": "$entry.errors" },
            // Only string codes are kept as keys: a stored error can be any value, nested as deep as the engine
            // allows, and grouping by such a value exhausts some engines' stacks.
            doc! { "$set": { "code": { "$ifNull": ["$entry.errors.code", "$entry.errors"] } } },
            doc! { "$set": {
                "code": { "$cond": [{ "$eq": [{ "$type": "$code" }, "string"] }, "$code", "unknown"] },
                // `server_time` is fixed-width UTC (`payload::js_date`): its first 13 bytes are the hour.
                "hour": { "$substrBytes": ["$entry.server_time", 0, 13] },
            } },
            doc! { "$facet": {
                "total": [{ "$count": "count" }],
                "by_code": [counted("$code"), { "$sort": { "count": -1, "_id": 1 } }, { "$limit": TOP_CODES }],
                "by_kind": [counted("$entry.kind"), { "$sort": { "_id": 1 } }],
                "by_hour": [counted("$hour"), { "$sort": { "_id": 1 } }],
                "top_users": [counted("$user_id"), { "$sort": { "count": -1, "_id": 1 } }, { "$limit": TOP_USERS }],
            } },
        ];
        let docs = self.docs();
        let aggregate = docs.aggregate(pipeline).max_time(self.config.operation_timeout).with_type::<RawDocumentBuf>();
        let cursor = self.await_driver(aggregate).await?;
        let facets: Vec<RawDocumentBuf> = self.await_driver(cursor.try_collect()).await?;
        let Some(facets) = facets.first() else {
            return Ok(ErrorReport { since, until, total: 0, by_code: vec![], by_kind: vec![], by_hour: vec![], top_users: vec![] });
        };
        let rows = |name: &str| -> Vec<(RawBsonRef<'_>, u64)> {
            let Ok(array) = facets.get_array(name) else { return vec![] };
            array
                .into_iter()
                .filter_map(|row| {
                    let row = row.ok()?.as_document()?;
                    Some((row.get("_id").ok()??, count(row)?))
                })
                .collect()
        };
        let total = facets.get_array("total").ok().and_then(|a| a.into_iter().next()?.ok()?.as_document().and_then(count)).unwrap_or(0);
        Ok(ErrorReport {
            since,
            until,
            total,
            by_code: rows("by_code")
                .into_iter()
                .filter_map(|(code, count)| Some(CodeCount { code: code.as_str()?.to_owned(), count }))
                .collect(),
            by_kind: rows("by_kind")
                .into_iter()
                .filter_map(|(kind, count)| Some(KindCount { kind: PassKind::parse(kind.as_str()?)?, count }))
                .collect(),
            by_hour: rows("by_hour")
                .into_iter()
                .filter_map(|(hour, count)| Some(HourCount { hour: format!("{}:00:00Z", hour.as_str()?), count }))
                .collect(),
            top_users: rows("top_users")
                .into_iter()
                .filter_map(|(user, count)| {
                    let user = Bson::try_from(user.to_raw_bson()).ok()?;
                    Some(UserCount { user_id: user_id_json(user), count })
                })
                .collect(),
        })
    }
}

/// A row's `count` (an int32 or int64 from `$sum`/`$count`, a double on some engines).
fn count(row: &RawDocument) -> Option<u64> {
    match row.get("count").ok()?? {
        RawBsonRef::Int32(n) => u64::try_from(n).ok(),
        RawBsonRef::Int64(n) => u64::try_from(n).ok(),
        RawBsonRef::Double(n) if n >= 0.0 => Some(n as u64),
        _ => None,
    }
}

/// A stored user id as JSON: integers as numbers (legacy doubles included), anything else in relaxed
/// Extended JSON.
fn user_id_json(user: Bson) -> serde_json::Value {
    match user {
        Bson::Int32(n) => n.into(),
        Bson::Int64(n) => n.into(),
        Bson::Double(n) if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER as f64 => (n as i64).into(),
        other => other.into_relaxed_extjson(),
    }
}
