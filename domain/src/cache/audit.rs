//! The consistency audit: re-verifies stored documents on its own schedule and reports what it finds. It
//! never changes a cached document; its only write is its own resume point, in a collection of its own
//! (`<collection>_audit`), so that successive runs cover the whole collection.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use futures_util::TryStreamExt;
use mongodb::bson::{doc, Bson, DateTime, Document, RawBsonRef, RawDocumentBuf};
use mongodb::options::FindOptions;
use payload::{Integrity, MAX_SAFE_INTEGER};
use serde::Serialize;

use super::TicketCache;
use crate::error::CacheError;
use crate::pass_filter::PassFilter;
use crate::read::{self, Freshness};
use crate::schema::{field, JsNumber, PassKind, Selection, UserId};

/// Findings listed one by one in a report; beyond this only their counts are.
pub const LISTED_FINDINGS: usize = 100;
/// Documents fetched per batch: bounds the memory one run holds (a document can be megabytes).
const BATCH: u32 = 50;
const RESUME_POINT: &str = "resume_point";

/// One thing the audit found wrong with a stored document. Never a payload: user ids, pass uuids, paths.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditFinding {
    /// As stored (legacy documents hold numbers of any BSON type).
    pub user_id: serde_json::Value,
    pub finding: FindingKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pass_uuid: Option<String>,
    /// Where, for findings about a part of the document (`passes`, `passes4Log`, `passes[3]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// How many documents the user has, for [`FindingKind::DuplicateDocuments`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documents: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A payload that no longer matches its hash.
    IntegrityMismatch,
    /// A hash with nothing exact to compare it with (written by neither service: treat as tampered).
    IntegrityUnverifiable,
    /// The same `pass_uuid` twice in one array.
    DuplicatePassUuid,
    /// No `expires_at`: the TTL index never deletes the document (the sweeper's legacy scan does).
    ExpiresAtMissing,
    /// An `expires_at` that is not a BSON Date: the TTL index ignores it.
    ExpiresAtNotDate,
    /// More passes in an array than a write may store.
    TooManyPasses,
    /// More entries in a log than the cap.
    LogOverCap,
    /// A `user_id` that is not a user id, or a part the read cannot show.
    Unreadable,
    /// More than one document for one user id (numbers of different BSON types, which DocumentDB's unique
    /// index keeps apart). Reads and writes take the one with the smallest `_id`; the sweeper's
    /// `merge_duplicates` task folds the others into it. Listed once per user, with `documents`.
    DuplicateDocuments,
}

/// What one audit run did and found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditReport {
    pub audited_documents: u64,
    /// Of those, written since the previous run (audited first).
    pub recently_written: u64,
    /// Whether the resumed scan reached the end of the collection (the next run starts it again).
    pub scan_completed: bool,
    pub integrity_mismatches: u64,
    pub findings: u64,
    pub findings_by_kind: BTreeMap<FindingKind, u64>,
    /// The first [`LISTED_FINDINGS`] findings.
    pub listed: Vec<AuditFinding>,
}

impl TicketCache {
    /// Audits up to `max_documents` documents: those written since the previous run first (newest first),
    /// then the collection in `_id` order from where the previous run's scan stopped.
    pub async fn audit(&self, max_documents: u32, now: DateTime) -> Result<AuditReport, CacheError> {
        let state = self.db().collection::<Document>(&format!("{}_audit", self.config.collection));
        let resume = self.await_driver(state.find_one(doc! { "_id": RESUME_POINT })).await?;
        let last_run = resume.as_ref().and_then(|r| r.get_datetime("last_run_at").ok().copied());
        let after = resume.as_ref().and_then(|r| r.get("last_id")).filter(|id| **id != Bson::Null).cloned();

        let mut auditor = Auditor::new(self, now);
        let mut projection = doc! { field::USER_ID: 1, field::TIMESTAMP: 1, field::EXPIRES_AT: 1 };
        for kind in PassKind::ALL {
            projection.insert(kind.field(), 1);
            // Only the logs' lengths travel. (`$size` of a guarded input: DocumentDB evaluates both
            // branches of a `$cond`.)
            let log = format!("${}", kind.log_field());
            projection.insert(kind.log_field(), doc! { "$size": { "$cond": [{ "$isArray": &log }, &log, []] } });
        }
        // Documents audited in this run, so the scan does not audit (or count) a recent one twice.
        let mut audited: Vec<Bson> = Vec::new();
        if let Some(since) = last_run {
            // Written since the previous run: both services set `timestamp` on every write.
            let recent = doc! { field::TIMESTAMP: { "$gte": since.timestamp_millis() } };
            let options = FindOptions::builder()
                .projection(projection.clone())
                .sort(doc! { field::TIMESTAMP: -1 })
                .limit(i64::from(max_documents))
                .batch_size(BATCH)
                .build();
            let mut cursor = self.await_driver(self.raw().find(recent).with_options(options)).await?;
            while let Some(document) = self.await_driver(cursor.try_next()).await? {
                audited.extend(document_id(&document));
                auditor.report.recently_written += 1;
                auditor.audit(&document);
            }
        }
        let remaining = u64::from(max_documents).saturating_sub(auditor.report.audited_documents);
        let mut last_id = after.clone();
        let mut scanned = 0;
        if remaining > 0 {
            let mut from = after.map_or_else(Document::new, |id| doc! { "_id": { "$gt": id } });
            if !audited.is_empty() {
                let mut ids = from.get_document("_id").cloned().unwrap_or_default();
                ids.insert("$nin", audited);
                from.insert("_id", ids);
            }
            let options =
                FindOptions::builder().projection(projection).sort(doc! { "_id": 1 }).limit(remaining as i64).batch_size(BATCH).build();
            let mut cursor = self.await_driver(self.raw().find(from).with_options(options)).await?;
            while let Some(document) = self.await_driver(cursor.try_next()).await? {
                scanned += 1;
                last_id = document_id(&document);
                auditor.audit(&document);
            }
        }
        let duplicated = self.users_with_several_documents(&auditor.users).await?;
        for (user, documents) in duplicated {
            let listed_before = auditor.report.listed.len();
            auditor.found(&serde_json::Value::from(user.get()), FindingKind::DuplicateDocuments, None, None);
            if auditor.report.listed.len() > listed_before {
                auditor.report.listed[listed_before].documents = Some(documents);
            }
        }
        let mut report = auditor.report;
        report.scan_completed = remaining > 0 && scanned < remaining;
        let next_id = if report.scan_completed { Bson::Null } else { last_id.unwrap_or(Bson::Null) };
        let resume_point = doc! { "$set": { "last_id": next_id, "last_run_at": now } };
        self.await_driver(state.update_one(doc! { "_id": RESUME_POINT }, resume_point).upsert(true)).await?;
        Ok(report)
    }
}

impl TicketCache {
    /// Of these users, those with more than one document, and how many each has: one `find` per
    /// [`USERS_PER_QUERY`] users on the `user_id` index (a query matches every number type by value).
    pub(super) async fn users_with_several_documents(&self, users: &BTreeSet<UserId>) -> Result<Vec<(UserId, u64)>, CacheError> {
        let mut several = Vec::new();
        let users: Vec<UserId> = users.iter().copied().collect();
        for chunk in users.chunks(USERS_PER_QUERY) {
            let filter = doc! { field::USER_ID: { "$in": chunk.iter().map(|&u| Bson::from(u)).collect::<Vec<_>>() } };
            let cursor = self.await_driver(self.raw().find(filter).projection(doc! { "_id": 1, field::USER_ID: 1 })).await?;
            let found: Vec<RawDocumentBuf> = self.await_driver(cursor.try_collect()).await?;
            let mut counts: BTreeMap<UserId, u64> = BTreeMap::new();
            for document in &found {
                if let Some(user) = document.get(field::USER_ID).ok().flatten().and_then(stored_user_id) {
                    *counts.entry(user).or_default() += 1;
                }
            }
            several.extend(counts.into_iter().filter(|(_, n)| *n > 1));
        }
        Ok(several)
    }
}

/// Users whose documents one query looks for.
const USERS_PER_QUERY: usize = 500;

/// A stored `user_id` that is a user id, whatever its number type.
pub(super) fn stored_user_id(stored: RawBsonRef<'_>) -> Option<UserId> {
    match JsNumber::from_raw(stored)? {
        JsNumber::Int(v) => UserId::new(v),
        JsNumber::Float(_) => None,
    }
}

fn document_id(document: &RawDocumentBuf) -> Option<Bson> {
    document.get("_id").ok().flatten().and_then(|id| Bson::try_from(id.to_raw_bson()).ok())
}

/// Checks documents one at a time and keeps the report.
struct Auditor<'c> {
    cache: &'c TicketCache,
    now: DateTime,
    report: AuditReport,
    /// The users of the audited documents, whose documents are then counted.
    users: BTreeSet<UserId>,
}

impl<'c> Auditor<'c> {
    fn new(cache: &'c TicketCache, now: DateTime) -> Self {
        let report = AuditReport {
            audited_documents: 0,
            recently_written: 0,
            scan_completed: false,
            integrity_mismatches: 0,
            findings: 0,
            findings_by_kind: BTreeMap::new(),
            listed: Vec::new(),
        };
        Auditor { cache, now, report, users: BTreeSet::new() }
    }

    fn found(&mut self, user_id: &serde_json::Value, finding: FindingKind, pass_uuid: Option<String>, path: Option<String>) {
        let report = &mut self.report;
        report.findings += 1;
        *report.findings_by_kind.entry(finding).or_default() += 1;
        if finding == FindingKind::IntegrityMismatch {
            report.integrity_mismatches += 1;
        }
        if report.listed.len() < LISTED_FINDINGS {
            report.listed.push(AuditFinding { user_id: user_id.clone(), finding, pass_uuid, path, documents: None });
        }
    }

    fn audit(&mut self, document: &RawDocumentBuf) {
        self.report.audited_documents += 1;
        let stored_user = document.get(field::USER_ID).ok().flatten();
        let user_json = stored_user.map_or(serde_json::Value::Null, user_id_json);
        match document.get(field::EXPIRES_AT) {
            Ok(Some(RawBsonRef::DateTime(_))) => {}
            Ok(None) | Ok(Some(RawBsonRef::Null)) => self.found(&user_json, FindingKind::ExpiresAtMissing, None, None),
            _ => self.found(&user_json, FindingKind::ExpiresAtNotDate, None, None),
        }
        let (max_passes, log_cap) = (self.cache.config.limits.max_passes, i64::from(self.cache.config.log_cap));
        for kind in PassKind::ALL {
            if let Ok(Some(RawBsonRef::Array(passes))) = document.get(kind.field()) {
                if passes.into_iter().count() > max_passes {
                    self.found(&user_json, FindingKind::TooManyPasses, None, Some(kind.field().into()));
                }
            }
            let logged = document.get(kind.log_field()).ok().flatten().and_then(JsNumber::from_raw);
            if matches!(logged, Some(JsNumber::Int(n)) if n > log_cap) {
                self.found(&user_json, FindingKind::LogOverCap, None, Some(kind.log_field().into()));
            }
        }
        let Some(user) = stored_user.and_then(stored_user_id) else {
            self.found(&user_json, FindingKind::Unreadable, None, Some(field::USER_ID.into()));
            return;
        };
        self.users.insert(user);
        // The read's own verification, as a GET does it (remembered verdicts are keyed by the payload's
        // bytes, so a changed payload is verified again).
        let config = &self.cache.config;
        let freshness = Freshness { now: self.now, ttl: config.fresh_ttl, max_skew: config.limits.max_clock_skew };
        let rendered = read::render(user, Selection::All, &PassFilter::default(), document, freshness, &self.cache.verified);
        for part in &rendered.degraded {
            self.found(&user_json, FindingKind::Unreadable, None, Some(part.path.clone()));
        }
        for (kind, passes) in &rendered.arrays {
            let mut uuids = HashSet::new();
            for pass in passes {
                let verdict = match pass.integrity {
                    Integrity::Mismatch => Some(FindingKind::IntegrityMismatch),
                    Integrity::Unverifiable => Some(FindingKind::IntegrityUnverifiable),
                    Integrity::Verified | Integrity::Unverified => None,
                };
                if let Some(finding) = verdict {
                    self.found(&user_json, finding, pass.pass_uuid.clone(), Some(kind.field().into()));
                }
                if let Some(uuid) = &pass.pass_uuid {
                    if !uuids.insert(uuid.clone()) {
                        self.found(&user_json, FindingKind::DuplicatePassUuid, Some(uuid.clone()), Some(kind.field().into()));
                    }
                }
            }
        }
    }
}

/// A stored user id as JSON: integers as numbers, anything else in relaxed Extended JSON.
fn user_id_json(user: RawBsonRef<'_>) -> serde_json::Value {
    match Bson::try_from(user.to_raw_bson()) {
        Ok(Bson::Int32(n)) => n.into(),
        Ok(Bson::Int64(n)) => n.into(),
        Ok(Bson::Double(n)) if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER as f64 => (n as i64).into(),
        Ok(other) => other.into_relaxed_extjson(),
        Err(_) => serde_json::Value::Null,
    }
}
