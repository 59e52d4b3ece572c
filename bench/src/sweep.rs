//! The sweeper's throughput: expired documents inserted, then the real `ttl-sweeper` bootstrap invoked as
//! its schedule would, with production settings (1,000 documents per run), until it reports nothing left.

use std::process::Command;
use std::time::{Duration, Instant};

use domain::mongodb::bson::{doc, DateTime, Document};
use domain::mongodb::Client;
use domain::{CacheConfig, TicketCache};
use serde_json::json;

use crate::process::Bootstrap;

/// How the documents expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// `expires_at` in the past, as this service writes every document. A real engine's TTL job (about
    /// once a minute) may delete some of them first; the figure counts only the sweeper's deletes.
    ExpiresAt,
    /// No `expires_at` and a `timestamp` older than the expiry, as the Node service wrote them: no TTL
    /// job ever deletes these, only the sweeper.
    Legacy,
}

pub struct SweepFigure {
    pub expiry: Expiry,
    pub inserted: u64,
    /// Deleted by the sweeper.
    pub deleted: u64,
    /// Gone without the sweeper (a TTL job, or the stand-in hiding expired documents).
    pub deleted_by_others: u64,
    pub runs: u32,
    pub took: Duration,
    pub rss_mb: f64,
}

impl SweepFigure {
    pub fn per_second(&self) -> f64 {
        self.deleted as f64 / self.took.as_secs_f64()
    }
}

/// Inserts `documents` expired documents into a database of their own and sweeps them; an error when a
/// sweep fails or leaves expired documents behind.
pub async fn sweep(client: &Client, uri: &str, database: &str, expiry: Expiry, documents: usize) -> Result<SweepFigure, String> {
    // Set-up only (the sweeper has its own settings): building the indexes over the documents takes seconds.
    let setup = CacheConfig { database: database.to_owned(), operation_timeout: Duration::from_secs(300), ..CacheConfig::default() };
    let cache = TicketCache::new(client, setup);
    let collection = cache.collection();
    let now = DateTime::now().timestamp_millis();
    let expire_after = CacheConfig::default().expire_after.as_millis() as i64;
    let document = |i: i64| -> Document {
        let user_id = 1_000_000 + i;
        match expiry {
            Expiry::ExpiresAt => doc! {
                "user_id": user_id, "timestamp": now - expire_after - 1000, "passes": [],
                "expires_at": DateTime::from_millis(now - 1000),
            },
            Expiry::Legacy => doc! { "user_id": user_id, "timestamp": now - expire_after - 1000, "passes": [] },
        }
    };
    let docs: Vec<Document> = (0..documents as i64).map(document).collect();
    // Small batches: the stand-in handles each in one Python call, and a long one starves its monitor.
    for chunk in docs.chunks(200) {
        collection.insert_many(chunk.to_vec()).await.map_err(|e| format!("insert: {e}"))?;
    }
    // The indexes are in place before the sweep, as the deployment creates them: its first run would
    // otherwise build five indexes over every document (about 2 s for 3,000 on DocumentDB) and time that.
    // Built after the inserts: the stand-in checks a unique index on every insert against every document.
    cache.ensure_indexes().await.map_err(|e| format!("indexes: {e}"))?;

    // A generous operation timeout: the stand-in evaluates `$in` in Python.
    let mut command = Command::new(crate::release_binary("ttl-sweeper"));
    command.env("MONGODB_URI", uri).env("MONGODB_DATABASE", database).env("MONGODB_TIMEOUT_MS", "60000").env("RUST_LOG", "warn");
    let (sweeper, _) = Bootstrap::start("ttl-sweeper", command).await;
    let present = collection.count_documents(doc! {}).await.map_err(|e| format!("count: {e}"))?;
    let started = Instant::now();
    let (mut deleted, mut runs) = (0_u64, 0_u32);
    loop {
        let (summary, _) = sweeper.invoke(&json!({ "source": "aws.scheduler" })).await?;
        runs += 1;
        deleted += summary["deleted_documents"].as_u64().ok_or_else(|| format!("not a sweep summary: {summary}"))?;
        if summary["more_remaining"] != json!(true) || runs > 1000 {
            break;
        }
    }
    let took = started.elapsed();
    let left = collection.count_documents(doc! {}).await.map_err(|e| format!("count: {e}"))?;
    if left > 0 {
        return Err(format!("the sweeper left {left} expired documents"));
    }
    let inserted = documents as u64;
    let figure = SweepFigure {
        expiry,
        inserted,
        deleted,
        deleted_by_others: inserted.saturating_sub(deleted),
        runs,
        took,
        rss_mb: sweeper.peak_rss_mb(),
    };
    assert!(present >= deleted, "counted {present} documents before the sweep, and the sweeper deleted {deleted}");
    let _ = client.database(database).drop().await;
    Ok(figure)
}
