//! The duplicate merge (the sweeper's `merge_duplicates` task): folds the documents of a user who has
//! several into the one every read and write takes (`user_document_order`: the smallest `_id`), in
//! bounded runs that go through the collection in `_id` order and resume where the previous run stopped
//! (its resume point is kept next to the audit's, in `<collection>_audit`).
//!
//! Several documents for one user exist only where a unique index tells number types apart (DocumentDB)
//! and writers once stored one user id as different types. The merged document:
//! - keeps the surviving document's `_id`, `user_id` and fields, and adds the top-level fields only another
//!   document has (from the newest that has them);
//! - takes `timestamp` from the newest document (the greatest stored time), and each pass array from the
//!   newest document that holds it;
//! - unites each log by entry `id` (one entry per id; entries without one kept, an identical copy once),
//!   ordered by `server_time`, the newest `log_cap` kept;
//! - keeps the latest `expires_at` date.
//!
//! Safe to stop at any point and to run again: the survivor is written first, and only if it is exactly as
//! read; each other document is deleted only if it is exactly as read (compared whole, on the server). A
//! document a concurrent writer changed meanwhile is left for a later run, which merges it again; merging a
//! survivor with documents it already holds changes nothing.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use mongodb::bson::{doc, Bson, DateTime, Document, RawDocumentBuf};
use serde::Serialize;

use super::audit::stored_user_id;
use super::{user_document_order_doc, TicketCache, SWEEP};
use crate::error::CacheError;
use crate::retry::Budget;
use crate::schema::{field, JsNumber, Millis, PassKind, UserId};

/// Users listed one by one in a report; beyond this only their counts are.
pub const LISTED_USERS: usize = 100;
/// Documents scanned per batch (only `_id` and `user_id` travel).
const BATCH: u32 = 100;
const RESUME_POINT: &str = "merge_duplicates_resume_point";

/// What one merge run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MergeReport {
    /// Documents the scan went through (the budget counts these).
    pub examined_documents: u64,
    /// Users found with more than one document.
    pub duplicated_users: u64,
    /// Of those, users left with one document.
    pub merged_users: u64,
    pub deleted_documents: u64,
    /// Users one of whose documents changed between the merge's read and its write: left for a later run.
    pub changed_meanwhile: u64,
    /// Users with a document the merge cannot decode (e.g. invalid UTF-8): left as they are.
    pub unmergeable: u64,
    /// Whether the scan reached the end of the collection (the next run starts it again).
    pub scan_completed: bool,
    /// The document budget or the time ran out first: the next run goes on from here.
    pub more_remaining: bool,
    /// The first [`LISTED_USERS`] users found, and what became of each.
    pub listed: Vec<MergedUser>,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MergedUser {
    pub user_id: i64,
    /// How many documents the user had when the merge read them.
    pub documents: u64,
    pub outcome: MergeOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeOutcome {
    Merged,
    ChangedMeanwhile,
    Unmergeable,
}

impl TicketCache {
    /// Merges the duplicated users among up to `max_documents` documents, starting no new batch or user
    /// after `max_duration`.
    pub async fn merge_duplicates(&self, max_documents: u32, max_duration: Duration) -> Result<MergeReport, CacheError> {
        let started = Instant::now();
        let state = self.db().collection::<Document>(&format!("{}_audit", self.config.collection));
        let resume = self.await_driver(state.find_one(doc! { "_id": RESUME_POINT })).await?;
        let mut last_id = resume.and_then(|mut r| r.remove("last_id")).filter(|id| *id != Bson::Null);

        let mut report = MergeReport::default();
        let mut handled = HashSet::new();
        let out_of_time = || started.elapsed() >= max_duration;
        'scan: while report.examined_documents < u64::from(max_documents) && !out_of_time() {
            let want = BATCH.min(max_documents - report.examined_documents as u32);
            let from = last_id.as_ref().map_or_else(Document::new, |id| doc! { "_id": { "$gt": id } });
            let raw = self.raw();
            let find = raw.find(from).projection(doc! { "_id": 1, field::USER_ID: 1 }).sort(doc! { "_id": 1 }).limit(i64::from(want));
            let cursor = self.await_driver(find).await?;
            let batch: Vec<RawDocumentBuf> = self.await_driver(cursor.try_collect()).await?;
            let users: BTreeSet<UserId> = batch
                .iter()
                .filter_map(|d| d.get(field::USER_ID).ok().flatten().and_then(stored_user_id))
                .filter(|user| !handled.contains(user))
                .collect();
            for (user, _) in self.users_with_several_documents(&users).await? {
                if out_of_time() {
                    // This batch is not done: the next run scans it again.
                    break 'scan;
                }
                handled.insert(user);
                let Some((documents, applied)) = self.merge_user(user).await? else { continue };
                let outcome = applied.outcome;
                report.duplicated_users += 1;
                match outcome {
                    MergeOutcome::Merged => report.merged_users += 1,
                    MergeOutcome::ChangedMeanwhile => report.changed_meanwhile += 1,
                    MergeOutcome::Unmergeable => report.unmergeable += 1,
                }
                if report.listed.len() < LISTED_USERS {
                    report.listed.push(MergedUser { user_id: user.get(), documents, outcome });
                }
                report.deleted_documents += applied.deleted_documents;
            }
            report.examined_documents += batch.len() as u64;
            if let Some(id) = batch.last().and_then(|d| d.get("_id").ok().flatten()).and_then(|id| Bson::try_from(id.to_raw_bson()).ok()) {
                last_id = Some(id);
            }
            if (batch.len() as u32) < want {
                report.scan_completed = true;
                break;
            }
        }
        report.more_remaining = !report.scan_completed;
        let next_id = if report.scan_completed { Bson::Null } else { last_id.unwrap_or(Bson::Null) };
        let resume_point = doc! { "$set": { "last_id": next_id, "last_run_at": DateTime::now() } };
        self.await_driver(state.update_one(doc! { "_id": RESUME_POINT }, resume_point).upsert(true)).await?;
        report.duration_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }

    /// Merges one user's documents: [`TicketCache::plan_merge`], then [`TicketCache::apply_merge`]. `None`
    /// when the user has one document (or none) by now, else how many were read and what became of them.
    async fn merge_user(&self, user: UserId) -> Result<Option<(u64, AppliedMerge)>, CacheError> {
        let Some(plan) = self.plan_merge(user).await? else { return Ok(None) };
        let applied = self.apply_merge(&plan).await?;
        if applied.outcome == MergeOutcome::Unmergeable {
            tracing::warn!(user = user.get(), "a duplicated user's document cannot be decoded; left as it is");
        }
        Ok(Some((plan.count, applied)))
    }

    /// The first step of one user's merge: reads the user's documents (in `_id` order) and computes the
    /// merged one. `None` when the user has fewer than two documents.
    pub async fn plan_merge(&self, user: UserId) -> Result<Option<MergePlan>, CacheError> {
        let cursor = self.await_driver(self.raw().find(doc! { field::USER_ID: user }).sort(user_document_order_doc())).await?;
        let stored: Vec<RawDocumentBuf> = self.await_driver(cursor.try_collect()).await?;
        if stored.len() < 2 {
            return Ok(None);
        }
        let documents = stored.iter().map(|raw| Document::try_from(raw.as_ref()).ok()).collect::<Option<Vec<_>>>();
        let merged = documents.as_deref().map(|documents| merged_document(documents, self.config.log_cap as usize)).unwrap_or_default();
        Ok(Some(MergePlan { count: stored.len() as u64, documents, merged }))
    }

    /// The second step: writes the merged document over the survivor if the survivor is exactly as the
    /// plan read it, then deletes each other document that is exactly as read. Anything a writer changed
    /// meanwhile is kept, and the user is left for a later run ([`MergeOutcome::ChangedMeanwhile`]).
    pub async fn apply_merge(&self, plan: &MergePlan) -> Result<AppliedMerge, CacheError> {
        let Some((survivor, others)) = plan.documents.as_deref().and_then(|documents| documents.split_first()) else {
            return Ok(AppliedMerge { outcome: MergeOutcome::Unmergeable, deleted_documents: 0 });
        };
        // Compared whole on the server: each write applies only to the document exactly as read.
        let unchanged = |document: &Document| {
            doc! { "_id": document.get("_id").cloned().unwrap_or(Bson::Null), "$expr": { "$eq": ["$$ROOT", { "$literal": document.clone() }] } }
        };
        let docs = self.docs();
        let replace = |_| docs.replace_one(unchanged(survivor), plan.merged.clone());
        let replaced = self.write(&mut Budget::start(self.config.operation_timeout), SWEEP, replace).await?;
        if replaced.matched_count == 0 {
            return Ok(AppliedMerge { outcome: MergeOutcome::ChangedMeanwhile, deleted_documents: 0 });
        }
        let mut applied = AppliedMerge { outcome: MergeOutcome::Merged, deleted_documents: 0 };
        for other in others {
            let delete = |_| docs.delete_one(unchanged(other));
            let deleted = self.write(&mut Budget::start(self.config.operation_timeout), SWEEP, delete).await?;
            applied.deleted_documents += deleted.deleted_count;
            if deleted.deleted_count == 0 {
                applied.outcome = MergeOutcome::ChangedMeanwhile;
            }
        }
        Ok(applied)
    }
}

/// What [`TicketCache::apply_merge`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppliedMerge {
    pub outcome: MergeOutcome,
    pub deleted_documents: u64,
}

/// One user's documents as the merge read them, and the document they become.
#[derive(Debug, Clone)]
pub struct MergePlan {
    count: u64,
    /// In `_id` order, the survivor first; `None` when one cannot be decoded.
    documents: Option<Vec<Document>>,
    merged: Document,
}

impl MergePlan {
    /// The document that replaces the survivor.
    pub fn merged(&self) -> &Document {
        &self.merged
    }
}

/// One user's documents (in `_id` order, the survivor first) as one document. See the module's rules.
fn merged_document(documents: &[Document], log_cap: usize) -> Document {
    let Some(survivor) = documents.first() else { return Document::new() };
    // Newest first by stored time; undated documents last; ties in `_id` order (the sort is stable).
    let mut newest_first: Vec<&Document> = documents.iter().collect();
    newest_first.sort_by_key(|document| Reverse(stored_time(document)));

    let mut merged = survivor.clone();
    for document in &newest_first {
        for (name, value) in document.iter() {
            if !merged.contains_key(name) {
                merged.insert(name.clone(), value.clone());
            }
        }
    }
    if let Some(timestamp) = newest_first.first().and_then(|newest| newest.get(field::TIMESTAMP)) {
        merged.insert(field::TIMESTAMP, timestamp.clone());
    }
    for kind in PassKind::ALL {
        let passes = newest_first.iter().find_map(|document| document.get(kind.field()).filter(|passes| **passes != Bson::Null));
        if let Some(passes) = passes {
            merged.insert(kind.field(), passes.clone());
        }
        let logs: Vec<&Vec<Bson>> = documents.iter().filter_map(|document| document.get_array(kind.log_field()).ok()).collect();
        if !logs.is_empty() {
            merged.insert(kind.log_field(), united_log(&logs, log_cap));
        }
    }
    let latest_expiry = documents.iter().filter_map(|document| document.get_datetime(field::EXPIRES_AT).ok()).max();
    if let Some(expires_at) = latest_expiry {
        merged.insert(field::EXPIRES_AT, *expires_at);
    }
    merged
}

/// A document's `timestamp` when it is a time.
fn stored_time(document: &Document) -> Option<Millis> {
    let number = match document.get(field::TIMESTAMP)? {
        Bson::Int32(v) => JsNumber::Int(i64::from(*v)),
        Bson::Int64(v) => JsNumber::Int(*v),
        Bson::Double(v) => JsNumber::from_f64(*v),
        _ => return None,
    };
    Millis::from_number(number)
}

/// The logs' entries as one log: one entry per `id` (the first document's copy), entries without an `id`
/// kept (an identical copy once, so a merge run again adds nothing), in `server_time` order (entries
/// without a string one first, as the oldest), the newest `cap` kept.
fn united_log(logs: &[&Vec<Bson>], cap: usize) -> Vec<Bson> {
    let mut ids = HashSet::new();
    let mut entries: Vec<Bson> = Vec::new();
    for entry in logs.iter().flat_map(|log| log.iter()) {
        let id = entry.as_document().and_then(|e| e.get_str(field::LOG_ENTRY_ID).ok());
        let new = match id {
            Some(id) => ids.insert(id.to_owned()),
            None => !entries.contains(entry),
        };
        if new {
            entries.push(entry.clone());
        }
    }
    // Stable: entries logged at the same time keep their order.
    entries.sort_by(|a, b| server_time(a).cmp(&server_time(b)));
    let excess = entries.len().saturating_sub(cap);
    entries.split_off(excess)
}

fn server_time(entry: &Bson) -> Option<&str> {
    entry.as_document()?.get_str(field::SERVER_TIME).ok()
}

#[cfg(test)]
mod tests {
    use mongodb::bson::oid::ObjectId;

    use super::*;

    fn entry(id: Option<&str>, at: &str) -> Bson {
        let mut entry = doc! { "errors": ["E"], "server_time": at };
        if let Some(id) = id {
            entry.insert("id", id);
        }
        Bson::Document(entry)
    }

    #[test]
    fn the_newest_passes_win_logs_unite_by_id_and_unknown_fields_stay() {
        let (a, b) = (ObjectId::from_bytes([1; 12]), ObjectId::from_bytes([2; 12]));
        let expires = |ms| DateTime::from_millis(ms);
        let survivor = doc! {
            "_id": a, "user_id": 3_000_000_003_i64, "timestamp": 100_i64, "expires_at": expires(5),
            "passes": ["old"], "passes4": ["kept"], "region": "eu",
            "passesLog": [entry(Some("x"), "2026-01-01T00:00:01.000Z"), entry(None, "2026-01-01T00:00:03.000Z")],
        };
        let other = doc! {
            "_id": b, "user_id": 3_000_000_003.0, "timestamp": 200.0, "expires_at": expires(9), "passes": ["new"],
            "app_version": "1", "passesLog": [entry(Some("x"), "2026-01-01T00:00:01.000Z"), entry(Some("y"), "2026-01-01T00:00:02.000Z"), entry(None, "2026-01-01T00:00:03.000Z")],
        };
        let merged = merged_document(&[survivor.clone(), other.clone()], 100);
        assert_eq!(merged.get("_id"), Some(&Bson::ObjectId(a)));
        assert_eq!(merged.get("user_id"), Some(&Bson::Int64(3_000_000_003)), "the survivor's, as stored");
        assert_eq!(merged.get("timestamp"), Some(&Bson::Double(200.0)));
        assert_eq!(merged.get_array("passes").unwrap(), &vec![Bson::from("new")]);
        assert_eq!(merged.get_array("passes4").unwrap(), &vec![Bson::from("kept")], "only the older document holds passes4");
        assert_eq!((merged.get_str("region").unwrap(), merged.get_str("app_version").unwrap()), ("eu", "1"));
        assert_eq!(merged.get_datetime("expires_at").unwrap(), &expires(9));
        let log: Vec<_> = merged.get_array("passesLog").unwrap().iter().map(|e| e.as_document().unwrap().get_str("id").ok()).collect();
        assert_eq!(log, [Some("x"), Some("y"), None]);
        let keys: Vec<_> = merged.keys().map(String::as_str).collect();
        assert_eq!(keys[..4], ["_id", "user_id", "timestamp", "expires_at"], "the survivor's field order");

        // Merging again, with the other document as it was, changes nothing.
        assert_eq!(merged_document(&[merged.clone(), other], 100), merged);
    }

    #[test]
    fn a_united_log_keeps_the_newest_entries_up_to_the_cap() {
        let first = vec![entry(Some("a"), "2026-01-01T00:00:01.000Z"), entry(Some("c"), "2026-01-01T00:00:03.000Z")];
        let second = vec![entry(Some("b"), "2026-01-01T00:00:02.000Z"), entry(Some("d"), "2026-01-01T00:00:04.000Z"), Bson::Int32(7)];
        let ids =
            |log: Vec<Bson>| log.iter().map(|e| e.as_document().and_then(|e| e.get_str("id").ok()).map(str::to_owned)).collect::<Vec<_>>();
        let some = |id: &str| Some(id.to_owned());
        assert_eq!(ids(united_log(&[&first, &second], 3)), [some("b"), some("c"), some("d")]);
        assert_eq!(ids(united_log(&[&first, &second], 10)), [None, some("a"), some("b"), some("c"), some("d")], "undated first");
    }

    #[test]
    fn undated_documents_count_as_the_oldest() {
        let dated = doc! { "_id": 2, "timestamp": 5_i32, "passes": ["dated"] };
        let undated = doc! { "_id": 1, "timestamp": "soon", "passes": ["undated"] };
        let merged = merged_document(&[undated, dated], 10);
        assert_eq!((merged.get_i32("timestamp").unwrap(), merged.get_array("passes").unwrap()[0].as_str()), (5, Some("dated")));
    }
}
