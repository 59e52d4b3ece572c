//! `TicketCache`: every operation on `bytemark_tickets_cache`, one MongoDB round trip each on the normal
//! path. Operations update only the fields they own; fields written by others (the Node service, vendors)
//! are left as they are.

use std::collections::BTreeSet;
use std::future::IntoFuture;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{doc, rawdoc, to_raw_document_buf, Bson, DateTime, Document, RawBson, RawBsonRef, RawDocumentBuf};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::{Collection, Database};
use payload::js_date::to_iso_string;
use payload::{ConvertedPayloads, VerifiedPayloads};
use serde::Serialize;

use crate::config::CacheConfig;
use crate::connection::MongoConnection;
use crate::error::{CacheError, ValidationError};
use crate::indexes::index_models;
use crate::input::{validate_log_entry, validate_passes, LogEntryInput, PassUpdate};
use crate::pass_filter::PassFilter;
use crate::read::{self, CachedTickets, Freshness};
use crate::retry::{self, Budget, WriteKind};
use crate::schema::{field, JsNumber, Millis, PassKind, Selection, UserId};
use write_commands::{PushCommand, PushStage, ReplaceCommand, ReplaceStatement, SetStage};

mod audit;
mod bulk;
mod error_report;
mod merge;
mod write_commands;
pub use audit::{AuditFinding, AuditReport, FindingKind};
pub use bulk::MAX_BULK_USERS;
pub use error_report::{CodeCount, ErrorQuery, ErrorReport, HourCount, KindCount, UserCount};
pub use merge::{AppliedMerge, MergeOutcome, MergePlan, MergeReport, MergedUser};

/// The ticket cache over one MongoDB collection. Cheap to clone; share one per execution environment.
#[derive(Clone, Debug)]
pub struct TicketCache {
    connection: MongoConnection,
    config: CacheConfig,
    /// Nanoseconds spent awaiting the driver, over all clones: the database's share of a request.
    driver_nanos: Arc<AtomicU64>,
    /// Write attempts repeated after a conflict or a lost reply, over all clones (`retry.rs`).
    write_retries: Arc<AtomicU64>,
    /// Payloads verified by earlier reads, and converted by earlier writes, in this environment.
    verified: Arc<VerifiedPayloads>,
    converted: Arc<ConvertedPayloads>,
}

/// What a successful replace stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplaceOutcome {
    pub timestamp: Millis,
    pub passes: Option<usize>,
    pub passes4: Option<usize>,
}

/// A validated replace: its `update` statement, and what it writes.
struct PreparedReplace {
    statement: ReplaceStatement,
    outcome: ReplaceOutcome,
}

/// Whether a log entry was added, or was already there (same client `id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    Appended,
    Duplicate,
}

/// Counts from one sweep.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub deleted_documents: u64,
    pub trimmed_log_entries: u64,
    /// Entries kept because their `server_time` is not RFC 3339: they cannot be dated.
    pub unparseable_log_entries: u64,
    pub examined_documents: u64,
    /// The document budget ran out: the next run has more to do.
    pub more_remaining: bool,
    pub duration_ms: u64,
}

/// Errors logged since a point in time, by pass kind and error code.
impl TicketCache {
    /// A cache over `connection`: a client handed in as it is, or a [`MongoConnection`] that replaces a
    /// client that gets stuck.
    pub fn new(connection: impl Into<MongoConnection>, config: CacheConfig) -> TicketCache {
        let verified = Arc::new(VerifiedPayloads::new(config.remembered_payload_bytes));
        let converted = Arc::new(ConvertedPayloads::new(config.remembered_payload_bytes));
        TicketCache {
            connection: connection.into(),
            config,
            driver_nanos: Arc::default(),
            write_retries: Arc::default(),
            verified,
            converted,
        }
    }

    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// Total time spent awaiting the driver (round trips, encoding, decoding) since this cache was made.
    /// Callers take differences to separate database time from their own.
    pub fn driver_time(&self) -> Duration {
        Duration::from_nanos(self.driver_nanos.load(Ordering::Relaxed))
    }

    /// Write attempts repeated since this cache was made (conflicts with concurrent writes, lost
    /// replies). Callers take differences, as with [`TicketCache::driver_time`].
    pub fn write_retries(&self) -> u64 {
        self.write_retries.load(Ordering::Relaxed)
    }

    /// The collection (tests and tools read documents exactly as stored).
    pub fn collection(&self) -> Collection<Document> {
        self.docs()
    }

    /// The client this cache talks through.
    pub fn connection(&self) -> &MongoConnection {
        &self.connection
    }

    /// The database, on the current client (`connection.rs` replaces a stuck one).
    fn db(&self) -> Database {
        self.connection.current().client.database(&self.config.database)
    }

    fn docs(&self) -> Collection<Document> {
        self.db().collection(&self.config.collection)
    }

    /// The collection read as raw BSON, as stored.
    fn raw(&self) -> Collection<RawDocumentBuf> {
        self.db().collection(&self.config.collection)
    }

    /// Reads one user's passes: one `find`, whose projection names only what the response needs (never
    /// the logs), and whose raw reply is rendered without building a `Document`.
    pub async fn get(&self, user: UserId, selection: Selection, now: DateTime) -> Result<Option<CachedTickets>, CacheError> {
        self.get_filtered(user, selection, &PassFilter::default(), now).await
    }

    /// [`TicketCache::get`] of the passes `filter` keeps: the database drops those failing its stored-field
    /// conditions inside the same `find`, the read those failing its verdict.
    pub async fn get_filtered(
        &self,
        user: UserId,
        selection: Selection,
        filter: &PassFilter,
        now: DateTime,
    ) -> Result<Option<CachedTickets>, CacheError> {
        let mut projection = doc! { "_id": 0, field::TIMESTAMP: 1 };
        for kind in selection.kinds() {
            match filter.projection(*kind) {
                Some(filtered) => projection.insert(kind.field(), filtered),
                None => projection.insert(kind.field(), 1),
            };
        }
        let raw = self.raw();
        let read = raw.find_one(doc! { field::USER_ID: user }).sort(user_document_order_doc()).projection(projection);
        let found = self.await_driver(read).await?;
        let Some(document) = found else { return Ok(None) };
        let freshness = Freshness { now, ttl: self.config.fresh_ttl, max_skew: self.config.limits.max_clock_skew };
        Ok(Some(read::render(user, selection, filter, &document, freshness, &self.verified)))
    }

    /// Replaces one or both pass arrays in one atomic upsert.
    ///
    /// Monotonic: when the stored `timestamp` is newer than this write nothing changes and the stored
    /// timestamp is returned as [`CacheError::StaleWrite`]. A pass whose `pass_uuid` was already stored keeps
    /// the stored fields this service does not own (Mongoose's `_id`, vendor fields).
    ///
    /// One `findAndModify` with a two-stage pipeline (`merge_stages`) on the document the rule picks
    /// ([`user_document_order`]): an `update` statement cannot say which of a user's documents it writes
    /// before MongoDB 8.0. Its reply is that document's stored timestamp before the write, so a refused
    /// write is told from an applied one without reading again.
    pub async fn replace_passes(&self, user: UserId, update: &PassUpdate, now: DateTime) -> Result<ReplaceOutcome, CacheError> {
        let replace = self.prepare_replace(user, update, now)?;
        let write_concern = self.write_concern()?;
        let (order, fields) = (user_document_order(), rawdoc! { "_id": 0, field::TIMESTAMP: 1 });
        let command = |max_time_ms| {
            ReplaceCommand::new(&self.config.collection, &replace.statement, &order, &fields, write_concern.as_deref(), max_time_ms)
        };

        // Idempotent: the same timestamp writes the same state, so a repeat after a lost reply is safe, and
        // a repeat after E11000 (a concurrent first write created the document) updates that document.
        // The driver does not retry raw commands; `write` does.
        let mut budget = Budget::start(self.config.operation_timeout);
        let reply = self.write_command(&mut budget, WRITE_REPLACE, command, write_acknowledged).await?;
        let outcome = replace.outcome;
        // `value` is the document before the write (`new` defaults to false), or null for an insert: the
        // guard kept it exactly when its timestamp is newer than this write's.
        let stored = reply.get_document("value").ok().and_then(|before| before.get(field::TIMESTAMP)).cloned();
        let newer = stored
            .and_then(|stored| RawBson::try_from(stored).ok())
            .and_then(|stored| newer_than(stored.as_raw_bson_ref(), outcome.timestamp));
        match newer {
            Some(stored) => Err(CacheError::StaleWrite { stored }),
            None => Ok(outcome),
        }
    }

    /// Validates a replace and builds its statement: the two-stage pipeline of `merge_stages`, every field
    /// guarded by the timestamp. Shared by the single and the bulk replace.
    fn prepare_replace(&self, user: UserId, update: &PassUpdate, now: DateTime) -> Result<PreparedReplace, CacheError> {
        if update.passes.is_none() && update.passes4.is_none() {
            return Err(ValidationError::NoPasses.into());
        }
        let limits = &self.config.limits;
        let timestamp = update.timestamp.map_or(Millis::from_datetime(now), |t| t.0);
        let max_skew = limits.max_clock_skew;
        if timestamp.0 > now.timestamp_millis() + max_skew.as_millis() as i64 {
            return Err(ValidationError::TimestampInFuture { timestamp: timestamp.0, max_skew_seconds: max_skew.as_secs() }.into());
        }

        let mut outcome = ReplaceOutcome { timestamp, passes: None, passes4: None };
        let mut passes = Vec::with_capacity(PassKind::ALL.len());
        for kind in PassKind::ALL {
            let Some(input) = update.passes(kind) else { continue };
            let valid_passes = validate_passes(kind, input, timestamp, limits, &self.converted)?;
            match kind {
                PassKind::Passes => outcome.passes = Some(valid_passes.len()),
                PassKind::Passes4 => outcome.passes4 = Some(valid_passes.len()),
            }
            passes.push((kind, valid_passes.into_iter().map(|pass| pass.0).collect()));
        }
        let statement = ReplaceStatement::new(user, timestamp.0, self.expires_at(now), passes);
        Ok(PreparedReplace { statement, outcome })
    }

    /// Runs a raw write command under [`TicketCache::write`]'s retries: `command` gives each attempt's
    /// command for its `maxTimeMS`, serialized here in one pass (`write_commands`); `reply` turns a reply
    /// into the driver's error where the command reports one inside `ok: 1`.
    async fn write_command<C: Serialize>(
        &self,
        budget: &mut Budget,
        kind: WriteKind,
        command: impl Fn(i64) -> C,
        reply: fn(Document) -> mongodb::error::Result<Document>,
    ) -> Result<Document, CacheError> {
        self.write(budget, kind, |limit| {
            let attempt = to_raw_document_buf(&command(limit.as_millis() as i64));
            async move { self.db().run_raw_command(attempt?).await.and_then(reply) }
        })
        .await
    }

    /// The client's write concern as a command field: a raw command does not inherit it.
    fn write_concern(&self) -> Result<Option<RawDocumentBuf>, CacheError> {
        self.db().write_concern().map(|concern| to_raw_document_buf(concern).map_err(|e| CacheError::Database(e.into()))).transpose()
    }

    /// Appends one entry to a pass kind's log, keeping the newest `log_cap` entries. An entry whose `id`
    /// is already stored is not appended again, so client retries are safe.
    ///
    /// One findAndModify upsert on `user_id` (on the document the rule picks, [`user_document_order`]) with
    /// a pipeline that appends unless the `id` is logged. The guard is in the update, not in the filter:
    /// a filter that excluded logged ids would make the upsert insert a second document for a retried
    /// entry, and concurrent inserts on a unique index are what engines such as DocumentDB deadlock on
    /// (`retry.rs`). The reply is the document's logged ids before the write: the entry was a duplicate
    /// exactly when its `id` is among them.
    pub async fn push_log(&self, user: UserId, entry: &LogEntryInput, now: DateTime) -> Result<PushOutcome, CacheError> {
        let mut stored = validate_log_entry(entry, &self.config.limits)?;
        stored.append(field::SERVER_TIME, to_iso_string(now));
        let log = entry.kind.log_field();
        let stage = PushStage {
            user,
            log,
            entry: stored,
            cap: i64::from(self.config.log_cap),
            expires_at: self.expires_at(now),
            id: entry.id.as_deref(),
        };
        // The reply is the document before the write: its logged ids when the entry has one.
        let fields = match &entry.id {
            Some(_) => rawdoc! { "_id": 0, format!("{log}.{}", field::LOG_ENTRY_ID): 1 },
            None => rawdoc! { "_id": 1 },
        };
        let (query, order, write_concern) = (rawdoc! { field::USER_ID: user }, user_document_order(), self.write_concern()?);
        let command = |max_time_ms| PushCommand {
            collection: &self.config.collection,
            query: &query,
            sort: &order,
            update: [SetStage { set: &stage }],
            upsert: true,
            fields: &fields,
            write_concern: write_concern.as_deref(),
            max_time_ms,
        };
        // Without an `id`, a push whose reply was lost is not repeated: it could be appended twice.
        let kind = WriteKind { upsert: true, idempotent: entry.id.is_some() };
        let mut budget = Budget::start(self.config.operation_timeout);
        let reply = self.write_command(&mut budget, kind, command, write_acknowledged).await?;
        // `value` is the document before the write (`new` defaults to false), or null for an insert.
        let logged_before = |id: &str| {
            let entries = reply.get_document("value").ok().and_then(|before| before.get_array(log).ok());
            entries.into_iter().flatten().filter_map(|e| e.as_document()?.get_str(field::LOG_ENTRY_ID).ok()).any(|logged| logged == id)
        };
        Ok(match &entry.id {
            Some(id) if logged_before(id) => PushOutcome::Duplicate,
            _ => PushOutcome::Appended,
        })
    }

    /// Deletes expired documents and trims old log entries, touching at most `sweep_max_documents`.
    ///
    /// The backstop for MongoDB's TTL monitor (which runs once a minute and lags under load) and the only
    /// cleanup for legacy documents written without `expires_at`.
    pub async fn sweep(&self, now: DateTime) -> Result<SweepReport, CacheError> {
        let started = Instant::now();
        let budget = u64::from(self.config.sweep_max_documents);
        let mut report = SweepReport::default();

        let legacy_cutoff = now.timestamp_millis() - self.config.expire_after.as_millis() as i64;
        let expired = doc! { "$or": [
            { field::EXPIRES_AT: { "$lte": now } },
            { field::EXPIRES_AT: { "$exists": false }, field::TIMESTAMP: { "$lt": legacy_cutoff } },
        ] };
        let mut ids = self.ids_matching(expired.clone(), budget + 1).await?;
        report.more_remaining = ids.len() as u64 > budget;
        ids.truncate(budget as usize);
        if !ids.is_empty() {
            // The expiry condition is repeated so a document rewritten since the scan survives.
            let filter = doc! { "$and": [{ "_id": { "$in": ids.clone() } }, expired] };
            let docs = self.docs();
            let delete = |_| docs.delete_many(filter.clone());
            report.deleted_documents = self.write(&mut Budget::start(self.config.operation_timeout), SWEEP, delete).await?.deleted_count;
        }
        report.examined_documents = ids.len() as u64;

        let left = budget - ids.len() as u64;
        if left == 0 {
            report.more_remaining = true;
        } else {
            self.trim_logs(now, left, &mut report).await?;
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }

    async fn ids_matching(&self, filter: Document, limit: u64) -> Result<Vec<Bson>, CacheError> {
        let cursor = self.await_driver(self.docs().find(filter).projection(doc! { "_id": 1 }).limit(limit as i64)).await?;
        let found: Vec<Document> = self.await_driver(cursor.try_collect()).await?;
        Ok(found.into_iter().filter_map(|mut d| d.remove("_id")).collect())
    }

    async fn trim_logs(&self, now: DateTime, budget: u64, report: &mut SweepReport) -> Result<(), CacheError> {
        let cutoff = DateTime::from_millis(now.timestamp_millis() - self.config.log_retention.as_millis() as i64);
        let cutoff_text = to_iso_string(cutoff);
        // Candidates by string range over the fixed-width UTC form (index-backed); the exact decision is
        // made below by parsing each entry, so other offsets and non-dates are never dropped by mistake.
        let old_entry = doc! { "$elemMatch": { field::SERVER_TIME: { "$lt": &cutoff_text, "$regex": "^[0-9]{4}-" } } };
        let mut branches = Vec::new();
        let mut projection = doc! { "_id": 1 };
        for kind in PassKind::ALL {
            branches.push(doc! { kind.log_field(): old_entry.clone() });
            projection.insert(format!("{}.{}", kind.log_field(), field::SERVER_TIME), 1);
        }
        // Read raw: the collection is shared, and a log may hold anything (not an array, items that are not
        // entries, nesting no deserializer should recurse into); only string `server_time`s are dates.
        let cursor = self.await_driver(self.raw().find(doc! { "$or": branches }).projection(projection).limit(budget as i64 + 1)).await?;
        let mut candidates: Vec<RawDocumentBuf> = self.await_driver(cursor.try_collect()).await?;
        report.more_remaining |= candidates.len() as u64 > budget;
        candidates.truncate(budget as usize);
        report.examined_documents += candidates.len() as u64;

        let mut expired_times = BTreeSet::new();
        let entries = candidates.iter().flat_map(|candidate| {
            PassKind::ALL.into_iter().filter_map(|kind| candidate.get_array(kind.log_field()).ok()).flatten().flatten()
        });
        for entry in entries {
            let server_time = entry.as_document().and_then(|entry| entry.get_str(field::SERVER_TIME).ok());
            match server_time.map(|text| (text, DateTime::parse_rfc3339_str(text).ok())) {
                Some((text, Some(at))) if at < cutoff => {
                    report.trimmed_log_entries += 1;
                    expired_times.insert(text.to_owned());
                }
                Some((_, Some(_))) => {}
                _ => report.unparseable_log_entries += 1,
            }
        }
        if expired_times.is_empty() {
            return Ok(());
        }
        // Whether an entry expired depends only on its server_time, so one set serves every document.
        let times: Vec<Bson> = expired_times.into_iter().map(Bson::String).collect();
        let ids: Vec<Bson> = candidates.iter().filter_map(|c| c.get("_id").ok().flatten()?.to_raw_bson().try_into().ok()).collect();
        // One update per log, each only where that log is an array: `$pull` on anything else fails the
        // whole update, and one damaged document would then stop every sweep.
        for kind in PassKind::ALL {
            let filter = doc! { "_id": { "$in": &ids }, kind.log_field(): { "$type": "array" } };
            let pull = doc! { "$pull": { kind.log_field(): { field::SERVER_TIME: { "$in": &times } } } };
            let docs = self.docs();
            let trim = |_| docs.update_many(filter.clone(), pull.clone());
            self.write(&mut Budget::start(self.config.operation_timeout), SWEEP, trim).await?;
        }
        Ok(())
    }

    /// Creates the indexes the queries above rely on. Idempotent: one round trip, a no-op when present.
    pub async fn ensure_indexes(&self) -> Result<(), CacheError> {
        self.await_driver(self.docs().create_indexes(index_models())).await?;
        Ok(())
    }

    fn expires_at(&self, now: DateTime) -> DateTime {
        DateTime::from_millis(now.timestamp_millis().saturating_add(self.config.expire_after.as_millis() as i64))
    }

    /// Awaits one driver operation under the configured time limit, counting its time as the driver's.
    async fn await_driver<T>(&self, operation: impl IntoFuture<Output = mongodb::error::Result<T>>) -> Result<T, CacheError> {
        self.within(self.config.operation_timeout, operation).await?.map_err(CacheError::from)
    }

    /// Runs one database operation under `limit`; the outer error is the time running out.
    async fn within<T>(
        &self,
        limit: Duration,
        operation: impl IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> Result<mongodb::error::Result<T>, CacheError> {
        let started = Instant::now();
        let result = tokio::time::timeout(limit, operation.into_future()).await;
        self.driver_nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.connection.record(result.is_err());
        result.map_err(|_| CacheError::Timeout(self.config.operation_timeout.as_millis() as u64))
    }

    /// Runs a write until it succeeds, fails for good, or `budget` is spent, waiting between attempts as
    /// `retry.rs` says; `attempt` gets the server-side time limit of each try (the sweeper's
    /// `deleteMany`/`updateMany` cannot carry one in this driver). Nothing is repeated unless an attempt
    /// fails, so an uncontended write is one round trip. When the time is spent on conflicts the error
    /// is [`CacheError::Contended`].
    async fn write<T, F, A>(&self, budget: &mut Budget, kind: WriteKind, mut attempt: F) -> Result<T, CacheError>
    where
        F: FnMut(Duration) -> A,
        A: IntoFuture<Output = mongodb::error::Result<T>>,
    {
        // The last refusal: when the time runs out in the attempt after it, the time was spent on conflicts.
        let mut refused: Option<mongodb::error::Error> = None;
        loop {
            let outcome = match self.within(budget.remaining(), attempt(budget.attempt_limit())).await {
                Ok(outcome) => outcome,
                Err(timeout) => {
                    return Err(refused.map_or(timeout, |refusal| time_spent(refusal, budget.retries())));
                }
            };
            let error = match outcome {
                Ok(done) => return Ok(done),
                Err(error) => error,
            };
            let verdict = retry::classify(&error, kind);
            if !kind.retries(verdict) {
                return Err(error.into());
            }
            let Some(delay) = budget.next_delay() else {
                return Err(time_spent(error, budget.retries()));
            };
            refused = (verdict == retry::Verdict::Refused).then(|| error.clone());
            self.write_retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(?verdict, retry = budget.retries(), delay_ms = delay.as_millis() as u64, error = %error, "retrying a write");
            tokio::time::sleep(delay).await;
        }
    }
}

/// The error of a write whose time ran out on refusals, the last one being `refusal`: contention, unless the
/// server said it cannot take writes at all.
fn time_spent(refusal: mongodb::error::Error, retries: u32) -> CacheError {
    match CacheError::from(refusal) {
        CacheError::Database(source) => CacheError::Contended { retries, source },
        unavailable => unavailable,
    }
}

/// Which of a user's documents every read and write takes when there are several: the one with the
/// smallest `_id`. Several can exist only where a unique index tells number types apart (DocumentDB) and
/// writers once stored one user id as different types; the merge task (`merge.rs`) folds them into this
/// one. Every operation sorts by it inside its single command (`find`, `findAndModify`; the bulk replace,
/// an `update`, reads each user's `_id` first and names it), so a read sees the document the last write
/// changed. The sort is over a user's few documents, found by the `user_id` index.
fn user_document_order() -> RawDocumentBuf {
    rawdoc! { "_id": 1 }
}

/// [`user_document_order`] for the driver's typed operations.
fn user_document_order_doc() -> Document {
    doc! { "_id": 1 }
}

/// The `_id` of a document an upsert creates; a stored document keeps its own (`$ifNull`). Derived
/// from the user id (four zero bytes, then the id as eight big-endian bytes), so concurrent first
/// writes of one user collide on the primary key. That matters on DocumentDB: its unique `user_id`
/// index is an exclusion constraint, on which concurrent inserts of one key deadlock (each waits for
/// the others until PostgreSQL's 1 s deadlock timeout ends one, and the rest queue up again), while its
/// primary key is a B-tree whose second inserter waits for the first and then gets E11000, retried as
/// an update. It also keeps a second document for a user from being created where the unique index is
/// missing. Driver-made ObjectIds begin with their creation time, so none equals a derived one.
fn derived_id(user: UserId) -> ObjectId {
    let mut bytes = [0_u8; 12];
    bytes[4..].copy_from_slice(&user.get().to_be_bytes());
    ObjectId::from_bytes(bytes)
}

/// A raw write command's reply, or its first write error or its `writeConcernError` as the driver's
/// error for it (which typed operations raise themselves), so that it is classified and reported like
/// theirs: `update` answers a duplicate key or a write conflict with `ok: 1` and `writeErrors`.
fn write_acknowledged(reply: Document) -> mongodb::error::Result<Document> {
    if let Some(Bson::Document(error)) = reply.get_array("writeErrors").ok().and_then(|errors| errors.first()) {
        let error = mongodb::bson::from_document(error.clone()).map_err(mongodb::error::Error::from)?;
        return Err(ErrorKind::Write(WriteFailure::WriteError(error)).into());
    }
    concern_satisfied(reply)
}

/// A raw write command's reply, or its `writeConcernError` as the driver's error for it.
fn concern_satisfied(reply: Document) -> mongodb::error::Result<Document> {
    match reply.get_document("writeConcernError") {
        Err(_) => Ok(reply),
        Ok(concern) => {
            let error = mongodb::bson::from_document(concern.clone()).map_err(mongodb::error::Error::from)?;
            Err(ErrorKind::Write(WriteFailure::WriteConcernError(error)).into())
        }
    }
}

/// Documents an `update` reply says it changed or created.
fn changed_count(reply: &Document) -> i64 {
    let modified = match reply.get("nModified") {
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Int64(n)) => *n,
        Some(Bson::Double(n)) => *n as i64,
        _ => 0,
    };
    modified + reply.get_array("upserted").map_or(0, |upserted| upserted.len() as i64)
}

/// Whether a stored timestamp is a time later than `timestamp` (the guard's "newer": a number within
/// 0..=2^53-1, compared exactly, fraction included).
fn newer_than(stored: RawBsonRef<'_>, timestamp: Millis) -> Option<Millis> {
    let number = JsNumber::from_raw(stored)?;
    let later = match number {
        JsNumber::Int(v) => v > timestamp.0,
        JsNumber::Float(v) => v > timestamp.0 as f64,
    };
    later.then(|| Millis::from_number(number)).flatten()
}

/// A replace: an upsert, and idempotent (the same timestamp writes the same state).
const WRITE_REPLACE: WriteKind = WriteKind { upsert: true, idempotent: true };

/// The sweeper's deletes and trims: repeating one removes nothing more than running it once.
const SWEEP: WriteKind = WriteKind { upsert: false, idempotent: true };
