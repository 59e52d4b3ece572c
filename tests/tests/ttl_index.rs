//! The TTL index `ensure_indexes` creates really deletes expired documents: the server's TTL monitor, not
//! the sweeper. MongoDB's monitor and DocumentDB's TTL job run about once a minute, so the test polls for
//! up to 90 s and ends as soon as the document is gone. It has this binary to itself because of that wait.
//!
//! The stand-in has no TTL monitor (mongomock hides expired documents when it reads them, so a deletion
//! could not be told from a read filter); there the test skips at run time and says why.

use std::io::Write;
use std::time::{Duration, Instant};

use domain::mongodb::bson::{doc, Bson, DateTime};
use domain::{PassUpdate, UserId};
use integration_tests::TestDb;
use serde_json::json;

const MONITOR_DEADLINE: Duration = Duration::from_secs(90);

fn update() -> PassUpdate {
    serde_json::from_value(json!({ "passes": [{ "pass_uuid": "p", "status": "ACTIVE", "payload": { "rides": 1 } }] })).unwrap()
}

/// Why this server cannot show a TTL deletion, if it cannot.
async fn no_ttl_monitor(db: &TestDb) -> Option<String> {
    let info = db.client.database("admin").run_command(doc! { "buildInfo": 1 }).await.unwrap();
    let version = info.get_str("version").unwrap_or_default();
    version
        .ends_with("-standin")
        .then(|| format!("server {version} is the stand-in: mongomock has no TTL monitor (it hides expired documents when reading them)"))
}

#[tokio::test]
async fn the_ttl_index_deletes_an_expired_document() {
    let db = TestDb::new("ttl").await;
    if let Some(reason) = no_ttl_monitor(&db).await {
        // Straight to stderr: the test harness would hide `eprintln!` of a passing test.
        let _ = writeln!(std::io::stderr(), "[ttl_index] skipped: {reason}");
        return;
    }
    let expired = UserId::new(1).unwrap();
    let kept = UserId::new(2).unwrap();
    // Written through the cache with the production expiry, by a clock set back past it: `expires_at` is
    // a day ago. The control document is written now and expires in `CACHE_EXPIRE_AFTER_SECONDS`.
    let real_now = DateTime::now().timestamp_millis();
    let back = DateTime::from_millis(real_now - db.cache.config().expire_after.as_millis() as i64 - 86_400_000);
    db.cache.replace_passes(expired, &update(), back).await.unwrap();
    db.cache.replace_passes(kept, &update(), DateTime::now()).await.unwrap();
    let stored = db.raw(1).await.expect("the expired document is stored");
    assert!(matches!(stored.get("expires_at"), Some(Bson::DateTime(_))), "a TTL index only deletes BSON dates: {stored}");

    let started = Instant::now();
    while db.raw(1).await.is_some() {
        assert!(
            started.elapsed() < MONITOR_DEADLINE,
            "the expired document was still there after {MONITOR_DEADLINE:?}: no TTL deletion on this server"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let _ = writeln!(std::io::stderr(), "[ttl_index] the TTL monitor deleted the expired document after {:.0?}", started.elapsed());
    assert!(db.raw(2).await.is_some(), "the document that has not expired is kept");
}
