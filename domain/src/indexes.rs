//! The unique `user_id` index every write relies on: concurrent first writes of one user end as one
//! document only because this index refuses the second insert. Without it they make several, and once
//! they have, the index can no longer be built. So:
//! - the deployment creates every index ([`create_all`], run by the stack's custom resource);
//! - a writer environment checks for the unique index once ([`ensure_unique_user_index`]), creates it if
//!   its policy allows, and otherwise refuses to write, saying what to run.

use std::time::Duration;

use futures_util::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::error::ErrorKind;
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};

use crate::config::WriterIndexPolicy;
use crate::error::CacheError;
use crate::schema::{field, PassKind};

/// The collection's indexes, each with the query (in `cache.rs`) that uses it.
pub fn index_models() -> Vec<IndexModel> {
    let index = |keys: Document, options: IndexOptions| IndexModel::builder().keys(keys).options(options).build();
    let mut models = vec![
        // get / replace_passes / push_log filter by user_id; unique so concurrent first writes make one document.
        unique_user_id(),
        // MongoDB's TTL monitor deletes at `expires_at`; the sweeper's expired-document scan uses it too.
        index(doc! { field::EXPIRES_AT: 1 }, IndexOptions::builder().expire_after(Duration::ZERO).build()),
        // The sweeper's scan for legacy documents without `expires_at` (range on `timestamp`).
        index(doc! { field::TIMESTAMP: 1 }, IndexOptions::default()),
    ];
    // The sweeper's range scan for log entries older than the retention (and the error summary's $match).
    for kind in PassKind::ALL {
        models.push(index(doc! { format!("{}.{}", kind.log_field(), field::SERVER_TIME): 1 }, IndexOptions::default()));
    }
    models
}

/// The index every write relies on (also the first of [`index_models`]).
pub fn unique_user_id() -> IndexModel {
    IndexModel::builder().keys(doc! { field::USER_ID: 1 }).options(IndexOptions::builder().unique(true).build()).build()
}

/// Why writes cannot go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexProblem {
    /// The index is missing and `WRITER_INDEX_POLICY=require`.
    Missing,
    /// The index is missing and this database user may not create indexes.
    NotPermitted,
    /// Some `user_id` already has several documents, so a unique index cannot be built.
    Duplicates,
    /// An index on `user_id` exists without `unique` (or only for part of the collection).
    NotUnique { name: String },
    /// The database refused `createIndexes` for another reason.
    Refused { code: i32, code_name: String },
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The check could not run (database unreachable, timeout): nothing is known yet.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The database answered, and writing now would risk duplicate documents.
    #[error("{}", describe(problem, namespace))]
    Unusable { problem: IndexProblem, namespace: Namespace },
}

/// `database.collection`, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub database: String,
    pub collection: String,
}

fn describe(problem: &IndexProblem, ns: &Namespace) -> String {
    let collection = format!("db.getSiblingDB({:?}).getCollection({:?})", ns.database, ns.collection);
    let create = format!("{collection}.createIndex({{user_id: 1}}, {{unique: true}})");
    let or_sweeper = "or invoke the ttl-sweeper function once (it creates every index), or redeploy the stack (its DatabaseIndexes resource does the same)";
    let at = format!("{}.{}", ns.database, ns.collection);
    match problem {
        IndexProblem::Missing => {
            format!("writes refused: the unique index on user_id of {at} is missing and WRITER_INDEX_POLICY=require; create it in mongosh: {create}, {or_sweeper}")
        }
        IndexProblem::NotPermitted => format!(
            "writes refused: the unique index on user_id of {at} is missing and this database user may not create indexes; create it as a user who may, in mongosh: {create}, {or_sweeper}"
        ),
        IndexProblem::Duplicates => format!(
            "writes refused: the unique index on user_id of {at} cannot be built because some user_id has several documents; list them in mongosh: {collection}.aggregate([{{$group: {{_id: \"$user_id\", n: {{$sum: 1}}}}}}, {{$match: {{n: {{$gt: 1}}}}}}]), keep the newest of each, then run: {create}"
        ),
        IndexProblem::NotUnique { name } => format!(
            "writes refused: {at} has an index on user_id ({name:?}) that is not unique over the whole collection; replace it in mongosh: {collection}.dropIndex({name:?}); {create}"
        ),
        IndexProblem::Refused { code, code_name } => format!(
            "writes refused: creating the unique index on user_id of {at} failed ({code} {code_name}); run it in mongosh to see why: {create}"
        ),
    }
}

/// What `listIndexes` says about `user_id`.
enum Found {
    Unique,
    NotUnique(String),
    Absent,
}

/// Makes sure the unique `user_id` index exists: `listIndexes`, and when it is missing (and `policy`
/// allows) `createIndexes`. Environments starting together may all create it at once; a creation that
/// fails while another one is under way is retried until the index shows up or the caller's time runs out.
pub async fn ensure_unique_user_index(collection: &Collection<Document>, policy: WriterIndexPolicy) -> Result<(), IndexError> {
    let namespace = Namespace { database: collection.namespace().db, collection: collection.name().to_owned() };
    let unusable = |problem| Err(IndexError::Unusable { problem, namespace: namespace.clone() });
    let mut pause = Duration::from_millis(10);
    loop {
        match find(collection).await? {
            Found::Unique => return Ok(()),
            Found::NotUnique(name) => return unusable(IndexProblem::NotUnique { name }),
            Found::Absent if policy == WriterIndexPolicy::Require => return unusable(IndexProblem::Missing),
            Found::Absent => {}
        }
        let error = match collection.create_index(unique_user_id()).await {
            Ok(_) => return Ok(()),
            Err(error) => error,
        };
        let ErrorKind::Command(command) = error.kind.as_ref() else { return Err(CacheError::from(error).into()) };
        let problem = match command.code {
            13 => IndexProblem::NotPermitted,
            11000 => IndexProblem::Duplicates,
            // IndexOptionsConflict / IndexKeySpecsConflict: `user_id_1` exists without `unique`.
            85 | 86 => IndexProblem::NotUnique { name: "user_id_1".into() },
            // Another environment is creating the collection or the index right now (NamespaceExists,
            // WriteConflict, IndexBuildAlreadyInProgress, IndexBuildAborted, ...): look again shortly.
            48 | 112 | 276 | 327 => {
                tokio::time::sleep(jittered(pause)).await;
                pause = (pause * 2).min(Duration::from_millis(200));
                continue;
            }
            _ if matches!(CacheError::from(error.clone()), CacheError::Unavailable(_)) => return Err(CacheError::from(error).into()),
            code => IndexProblem::Refused { code, code_name: command.code_name.clone() },
        };
        // It may have been created meanwhile by someone who could.
        return match find(collection).await? {
            Found::Unique => Ok(()),
            _ => unusable(problem),
        };
    }
}

async fn find(collection: &Collection<Document>) -> Result<Found, CacheError> {
    let indexes: Vec<IndexModel> = match collection.list_indexes().await {
        Ok(cursor) => cursor.try_collect().await?,
        // MongoDB answers NamespaceNotFound before the collection exists (DocumentDB: an empty list).
        Err(e) if matches!(e.kind.as_ref(), ErrorKind::Command(c) if c.code == 26) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let mut found = Found::Absent;
    for index in indexes {
        let on_user_id = index.keys.len() == 1 && index.keys.get(field::USER_ID).is_some_and(is_ascending_or_descending);
        if !on_user_id {
            continue;
        }
        let options = index.options.unwrap_or_default();
        if options.unique == Some(true) && options.partial_filter_expression.is_none() {
            return Ok(Found::Unique);
        }
        found = Found::NotUnique(options.name.unwrap_or_else(|| "user_id_1".into()));
    }
    Ok(found)
}

/// `1` or `-1` in any numeric type (older drivers stored doubles); not `"hashed"` or text.
fn is_ascending_or_descending(direction: &Bson) -> bool {
    match direction {
        Bson::Int32(n) => n.abs() == 1,
        Bson::Int64(n) => n.abs() == 1,
        Bson::Double(n) => n.abs() == 1.0,
        _ => false,
    }
}

/// Between half and all of `pause`, so environments that collided do not collide again in step.
fn jittered(pause: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    pause / 2 + Duration::from_nanos(random % (pause.as_nanos() as u64 / 2 + 1))
}

/// Creates every index of the collection (the deployment's task): one `createIndexes`, a no-op for the
/// indexes that exist. Building on a large collection can take a while, so the caller gives the time.
pub async fn create_all(collection: &Collection<Document>, within: Duration) -> Result<(), CacheError> {
    match tokio::time::timeout(within, collection.create_indexes(index_models())).await {
        Ok(result) => result.map(drop).map_err(CacheError::from),
        Err(_) => Err(CacheError::Timeout(within.as_millis() as u64)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_says_what_to_run() {
        let ns = Namespace { database: "cache".into(), collection: "bytemark_tickets_cache".into() };
        let create = r#"db.getSiblingDB("cache").getCollection("bytemark_tickets_cache").createIndex({user_id: 1}, {unique: true})"#;
        for problem in [
            IndexProblem::Missing,
            IndexProblem::NotPermitted,
            IndexProblem::Duplicates,
            IndexProblem::NotUnique { name: "user_id_1".into() },
            IndexProblem::Refused { code: 2, code_name: "BadValue".into() },
        ] {
            let text = describe(&problem, &ns);
            assert!(text.starts_with("writes refused: "), "{text}");
            assert!(text.contains(create), "{problem:?}: {text}");
        }
        assert!(describe(&IndexProblem::NotUnique { name: "uid".into() }, &ns).contains(r#"dropIndex("uid")"#));
        assert!(describe(&IndexProblem::Missing, &ns).contains("ttl-sweeper"));
    }

    #[test]
    fn only_a_plain_ascending_or_descending_key_counts() {
        assert!([Bson::Int32(1), Bson::Int64(-1), Bson::Double(1.0)].iter().all(is_ascending_or_descending));
        assert!(![Bson::String("hashed".into()), Bson::Int32(2), Bson::Double(0.5)].iter().any(is_ascending_or_descending));
    }

    #[test]
    fn jitter_stays_within_half_and_all_of_the_pause() {
        let pause = Duration::from_millis(100);
        for _ in 0..100 {
            let d = jittered(pause);
            assert!(d >= pause / 2 && d <= pause, "{d:?}");
        }
    }
}
