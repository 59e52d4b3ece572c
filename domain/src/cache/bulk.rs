//! Many users' replaces in one unordered `update` command: the job processors' bulk refresh.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use futures_util::TryStreamExt;
use mongodb::bson::{doc, Bson, DateTime, Document, RawBson, RawDocumentBuf};

use super::write_commands::{ReplaceStatement, UpdateCommand};
use super::{changed_count, concern_satisfied, newer_than, time_spent, ReplaceOutcome, TicketCache, WRITE_REPLACE};
use crate::error::CacheError;
use crate::input::PassUpdate;
use crate::retry::{Budget, Failure};
use crate::schema::{field, JsNumber, UserId};

/// The most users one bulk replace takes.
pub const MAX_BULK_USERS: usize = 100;

impl TicketCache {
    /// Replaces the passes of many users, each exactly as [`TicketCache::replace_passes`] would, and
    /// answers for each in the order given. A bad or stale entry never blocks the others.
    ///
    /// One `find` first names each user's document under the rule (`user_document_order`: an `update`
    /// statement takes no `sort` before MongoDB 8.0, so each statement names its document's `_id`); then
    /// the valid entries go to the database in one unordered `update`. When every statement changed its
    /// document (the normal case) those are the only round trips. Statements refused by contention are
    /// sent again, together, aimed anew, while the operation timeout allows. Statements that changed
    /// nothing were refused by the timestamp guard (or repeated an identical write): one `find` over those
    /// users tells which. A failure of a whole command (the database is unreachable) fails the whole call.
    pub async fn replace_many(
        &self,
        entries: &[(UserId, PassUpdate)],
        now: DateTime,
    ) -> Result<Vec<Result<ReplaceOutcome, CacheError>>, CacheError> {
        // Each entry's answer: its validation error, or what it writes until the database says otherwise.
        let mut results = Vec::with_capacity(entries.len());
        let mut statements = Vec::new();
        for (index, (user, update)) in entries.iter().enumerate() {
            match self.prepare_replace(*user, update, now) {
                Ok(prepared) => {
                    results.push(Ok(prepared.outcome));
                    statements.push((index, prepared.statement));
                }
                Err(error) => results.push(Err(error)),
            }
        }

        let mut budget = Budget::start(self.config.operation_timeout);
        let mut pending: Vec<usize> = (0..statements.len()).collect();
        // Entries whose statement ran without error, and how many documents those statements changed.
        let mut written = Vec::new();
        let mut changed = 0;
        let write_concern = self.write_concern()?;
        while !pending.is_empty() {
            let users: Vec<UserId> = pending.iter().map(|&i| entries[statements[i].0].0).collect();
            let stored = self.stored_heads(&users).await?;
            for &i in &pending {
                let user = entries[statements[i].0].0;
                if let Some(head) = stored.get(&user.get()) {
                    statements[i].1.target(user, head.id.clone());
                }
            }
            let updates: Vec<&ReplaceStatement> = pending.iter().map(|&i| &statements[i].1).collect();
            let command = |max_time_ms| UpdateCommand {
                update: &self.config.collection,
                updates: &updates,
                ordered: Some(false),
                write_concern: write_concern.as_deref(),
                max_time_ms,
            };
            // The whole command is repeated after a lost reply or a refusal of the command itself: every
            // statement is idempotent (`replace_passes`).
            let reply = self.write_command(&mut budget, WRITE_REPLACE, command, concern_satisfied).await?;
            changed += changed_count(&reply);
            let errors = statement_errors(&reply);
            let mut refused = Vec::new();
            for (position, &i) in pending.iter().enumerate() {
                match errors.get(&position) {
                    None => written.push(i),
                    Some(error)
                        if WRITE_REPLACE.retries(Failure { code: Some(error.code), ..Failure::default() }.verdict(WRITE_REPLACE)) =>
                    {
                        refused.push((i, error));
                    }
                    Some(error) => results[statements[i].0] = Err(CacheError::Database(error.to_driver_error())),
                }
            }
            if refused.is_empty() {
                break;
            }
            let Some(delay) = budget.next_delay() else {
                for (i, error) in refused {
                    results[statements[i].0] = Err(time_spent(error.to_driver_error(), budget.retries()));
                }
                break;
            };
            self.write_retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
            pending = refused.into_iter().map(|(i, _)| i).collect();
        }

        if changed < written.len() as i64 {
            // Some statements changed nothing: one read of the written users' timestamps tells which.
            let users: Vec<UserId> = written.iter().map(|&i| entries[statements[i].0].0).collect();
            let stored = self.stored_heads(&users).await?;
            for i in written {
                let index = statements[i].0;
                let Ok(outcome) = &results[index] else { continue };
                let timestamp = stored.get(&entries[index].0.get()).and_then(|head| head.timestamp.as_ref());
                if let Some(stored) = timestamp.and_then(|t| newer_than(t.as_raw_bson_ref(), outcome.timestamp)) {
                    results[index] = Err(CacheError::StaleWrite { stored });
                }
            }
        }
        Ok(results)
    }

    /// The `_id` and stored `timestamp` of the document the rule picks for each of these users that has
    /// one, by user id.
    async fn stored_heads(&self, users: &[UserId]) -> Result<HashMap<i64, StoredHead>, CacheError> {
        let filter = doc! { field::USER_ID: { "$in": users.iter().map(|&u| Bson::from(u)).collect::<Vec<_>>() } };
        let raw = self.raw();
        let find =
            raw.find(filter).sort(super::user_document_order_doc()).projection(doc! { "_id": 1, field::USER_ID: 1, field::TIMESTAMP: 1 });
        let cursor = self.await_driver(find).await?;
        let found: Vec<RawDocumentBuf> = self.await_driver(cursor.try_collect()).await?;
        let mut heads = HashMap::new();
        for document in &found {
            let user = match document.get(field::USER_ID).ok().flatten().and_then(JsNumber::from_raw) {
                Some(JsNumber::Int(v)) => v,
                _ => continue,
            };
            let Some(id) = document.get("_id").ok().flatten() else { continue };
            let timestamp = document.get(field::TIMESTAMP).ok().flatten().map(|t| t.to_raw_bson());
            // Sorted by `_id`: the first document of a user is the one the rule picks.
            heads.entry(user).or_insert(StoredHead { id: id.to_raw_bson(), timestamp });
        }
        Ok(heads)
    }
}

/// What the bulk replace needs of a user's document: which one it is, and its stored `timestamp`.
struct StoredHead {
    id: RawBson,
    timestamp: Option<RawBson>,
}

/// A statement's write error, as the server reported it.
#[derive(Debug, Clone)]
struct StatementError {
    code: i32,
    document: Document,
}

impl StatementError {
    /// The driver's error for it, so that it is reported like a typed write's.
    fn to_driver_error(&self) -> mongodb::error::Error {
        match mongodb::bson::from_document(self.document.clone()) {
            Ok(error) => mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteError(error)).into(),
            Err(e) => e.into(),
        }
    }
}

/// The write errors of an unordered `update`, by statement position.
fn statement_errors(reply: &Document) -> HashMap<usize, StatementError> {
    let Ok(errors) = reply.get_array("writeErrors") else { return HashMap::new() };
    errors
        .iter()
        .filter_map(|error| {
            let error = error.as_document()?;
            let index = usize::try_from(error.get_i32("index").ok()?).ok()?;
            Some((index, StatementError { code: error.get_i32("code").unwrap_or_default(), document: error.clone() }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::Failure;

    #[test]
    fn write_errors_are_read_by_statement_position() {
        let reply = doc! { "n": 1, "nModified": 1, "writeErrors": [
            { "index": 2, "code": 11000, "errmsg": "E11000 duplicate key" },
            { "index": 0, "code": 112, "errmsg": "WriteConflict" },
        ] };
        let errors = statement_errors(&reply);
        assert_eq!((errors[&0].code, errors[&2].code, errors.len()), (112, 11000, 2));
        assert_eq!(Failure::of(&errors[&2].to_driver_error()).code, Some(11000), "classified like a typed write's error");
        assert!(statement_errors(&doc! { "n": 2, "nModified": 2 }).is_empty());
    }
}
