//! Each cache operation against the test MongoDB (stand-in here, a real server on Docker hosts).

use std::time::Duration;

use domain::mongodb::bson::oid::ObjectId;
use domain::mongodb::bson::{doc, Bson, DateTime, Document};
use domain::{
    CacheConfig, CacheError, ErrorQuery, Integrity, LogEntryInput, MergeOutcome, Millis, PassKind, PassUpdate, PushOutcome, Selection,
    UserId,
};
use futures_util::TryStreamExt;
use integration_tests::{fixture, TestDb};
use serde_json::json;

fn user(id: i64) -> UserId {
    UserId::new(id).unwrap()
}

fn update(value: serde_json::Value) -> PassUpdate {
    serde_json::from_value(value).unwrap()
}

fn pass(uuid: &str, rides: i64) -> serde_json::Value {
    json!({ "pass_uuid": uuid, "status": "ACTIVE", "free_ticket_status": 0, "payload": { "pass_uuid": uuid, "rides": rides, "fare": { "amount": 2.75 } } })
}

fn log(kind: &str, id: Option<&str>, code: &str) -> LogEntryInput {
    let mut v = json!({ "kind": kind, "errors": [{ "code": code, "message": "m" }], "data": { "attempt": 1 } });
    if let Some(id) = id {
        v["id"] = json!(id);
    }
    serde_json::from_value(v).unwrap()
}

fn at(ms: i64) -> DateTime {
    DateTime::from_millis(ms)
}

const NOW: i64 = 1_795_522_400_000;

#[tokio::test]
async fn get_returns_requested_arrays_with_integrity_in_one_find_without_logs() {
    let db = TestDb::new("get").await;
    let cache = &db.cache;
    cache
        .replace_passes(
            user(7),
            &update(json!({ "timestamp": NOW, "passes": [pass("a", 1), pass("b", 2)], "passes4": [pass("c", 3)] })),
            at(NOW),
        )
        .await
        .unwrap();
    for i in 0..5 {
        cache.push_log(user(7), &log("passes", Some(&format!("e{i}")), "BM_TIMEOUT"), at(NOW)).await.unwrap();
    }
    db.commands.clear();

    let got = cache.get(user(7), Selection::All, at(NOW + 1_000)).await.unwrap().expect("document");
    assert_eq!(db.commands.names(), ["find"], "exactly one round trip");
    let reply = &db.commands.replies("find")[0];
    let first = reply.get_document("cursor").unwrap().get_array("firstBatch").unwrap();
    let Bson::Document(sent) = &first[0] else { panic!("a document") };
    assert!(!sent.contains_key("passesLog") && !sent.contains_key("passes4Log"), "logs never leave the server: {sent}");

    assert_eq!(got.timestamp, Some(Millis(NOW)));
    assert_eq!(got.age, Some(Duration::from_secs(1)));
    assert!(!got.stale);
    assert_eq!(got.fresh_for, Duration::from_secs(3599));
    let kinds: Vec<_> = got.arrays.iter().map(|(k, p)| (*k, p.len())).collect();
    assert_eq!(kinds, [(PassKind::Passes, 2), (PassKind::Passes4, 1)]);
    assert!(got.arrays.iter().flat_map(|(_, p)| p).all(|p| p.integrity == Integrity::Verified));

    let only4 = cache.get(user(7), Selection::Only(PassKind::Passes4), at(NOW)).await.unwrap().unwrap();
    assert_eq!(only4.arrays.len(), 1);
    assert_eq!(only4.arrays[0].0, PassKind::Passes4);
    assert_ne!(only4.etag, got.etag, "the validator depends on the selection");

    let older = cache.get(user(7), Selection::All, at(NOW + 60_000)).await.unwrap().unwrap();
    assert_eq!(older.etag, got.etag, "age alone does not change the validator");
    let stale = cache.get(user(7), Selection::All, at(NOW + 3_601_000)).await.unwrap().unwrap();
    assert!(stale.stale);
    assert_eq!(stale.fresh_for, Duration::ZERO);
    assert_ne!(stale.etag, got.etag, "the body now says `stale: true`: a 304 must not keep the fresh one");

    assert!(cache.get(user(8), Selection::All, at(NOW)).await.unwrap().is_none());
}

#[tokio::test]
async fn legacy_documents_read_verified_including_double_numbers() {
    let docs = fixture("legacy_sample.ejson");
    // The sample's first two documents share an _id: one database each.
    for raw in docs {
        let db = TestDb::new("legacy").await;
        let user_id = match raw.get("user_id") {
            Some(Bson::Int32(v)) => i64::from(*v),
            Some(Bson::Int64(v)) => *v,
            Some(Bson::Double(v)) => *v as i64,
            other => panic!("user_id {other:?}"),
        };
        db.insert_raw(std::slice::from_ref(&raw)).await;
        let got = db.cache.get(user(user_id), Selection::All, at(NOW)).await.unwrap().expect("found by numeric id");
        let passes: Vec<_> = got.arrays.iter().flat_map(|(_, p)| p).collect();
        assert!(!passes.is_empty());
        assert!(passes.iter().all(|p| p.integrity == Integrity::Verified), "user {user_id}");
    }
}

#[tokio::test]
async fn tampered_payload_reads_as_mismatch() {
    let db = TestDb::new("tamper").await;
    db.cache.replace_passes(user(9), &update(json!({ "passes": [pass("a", 1), pass("b", 1)] })), at(NOW)).await.unwrap();
    db.cache.collection().update_one(doc! { "user_id": 9_i64 }, doc! { "$set": { "passes.0.payload.rides": 99_i64 } }).await.unwrap();
    let got = db.cache.get(user(9), Selection::All, at(NOW)).await.unwrap().unwrap();
    let verdicts: Vec<_> = got.arrays[0].1.iter().map(|p| p.integrity).collect();
    assert_eq!(verdicts, [Integrity::Mismatch, Integrity::Verified]);
    assert_eq!(got.count(domain::Integrity::Mismatch), 1);
}

/// Reads reuse earlier verdicts only for the exact stored bytes: a payload changed after it was read (and
/// its verdict remembered) reads as a mismatch, and changing it back reads as verified again.
#[tokio::test]
async fn remembered_verdicts_never_hide_a_change() {
    let db = TestDb::new("remember").await;
    db.cache.replace_passes(user(9), &update(json!({ "passes": [pass("a", 1), pass("b", 1)] })), at(NOW)).await.unwrap();
    let first = db.cache.get(user(9), Selection::All, at(NOW)).await.unwrap().unwrap();
    assert_eq!(first.count(domain::Integrity::Mismatch), 0);
    let verdicts = |got: &domain::CachedTickets| got.arrays[0].1.iter().map(|p| p.integrity).collect::<Vec<_>>();

    let collection = db.cache.collection();
    let set_rides = |rides: i64| collection.update_one(doc! { "user_id": 9_i64 }, doc! { "$set": { "passes.0.payload.rides": rides } });
    set_rides(99).await.unwrap();
    let tampered = db.cache.get(user(9), Selection::All, at(NOW)).await.unwrap().unwrap();
    assert_eq!(verdicts(&tampered), [Integrity::Mismatch, Integrity::Verified]);
    assert_ne!(tampered.json, first.json);

    set_rides(1).await.unwrap();
    let restored = db.cache.get(user(9), Selection::All, at(NOW)).await.unwrap().unwrap();
    assert_eq!(verdicts(&restored), [Integrity::Verified, Integrity::Verified]);
    assert_eq!(restored.json, first.json, "the remembered text is the text a fresh read prints");
}

#[tokio::test]
async fn unknown_fields_survive_an_update() {
    let db = TestDb::new("unknown").await;
    let legacy = fixture("legacy_sample.ejson").remove(1);
    db.insert_raw(std::slice::from_ref(&legacy)).await;
    let user_id = 3_000_000_002;
    let before = db.raw(user_id).await.unwrap();
    db.commands.clear();

    let outcome = db
        .cache
        .replace_passes(user(user_id), &update(json!({ "timestamp": NOW, "passes": [pass("uuid-4", 9), pass("uuid-new", 1)] })), at(NOW))
        .await
        .unwrap();
    assert_eq!(outcome.passes, Some(2));
    assert_eq!(db.commands.names(), ["findAndModify"], "one round trip");

    let after = db.raw(user_id).await.unwrap();
    for key in ["_id", "region", "app_version", "__v", "passes4", "passesLog", "passes4Log"] {
        assert_eq!(after.get(key), before.get(key), "top-level {key} kept");
    }
    let passes = after.get_array("passes").unwrap();
    let Bson::Document(updated) = &passes[0] else { panic!() };
    let Bson::Document(old) = &before.get_array("passes").unwrap()[0] else { panic!() };
    assert_eq!(updated.get("vendor_ref"), old.get("vendor_ref"), "unknown pass field kept");
    assert_eq!(updated.get("_id"), old.get("_id"), "Mongoose's sub-document _id kept");
    assert_eq!(updated.get_document("payload").unwrap().get_i64("rides").unwrap(), 9, "owned fields replaced");
    assert_eq!(updated.get_str("payload_hash_alg").unwrap(), "sha256-jcs");
    let Bson::Document(added) = &passes[1] else { panic!() };
    assert!(!added.contains_key("vendor_ref"));
    assert!(matches!(after.get("expires_at"), Some(Bson::DateTime(_))), "expires_at is a BSON date");
    assert_eq!(after.get_i64("timestamp").unwrap(), NOW);
}

#[tokio::test]
async fn writes_are_monotonic() {
    let db = TestDb::new("monotonic").await;
    let cache = &db.cache;
    cache.replace_passes(user(5), &update(json!({ "timestamp": NOW, "passes": [pass("a", 1)] })), at(NOW)).await.unwrap();
    let before = db.raw_bytes(5).await.unwrap();

    let older = update(json!({ "timestamp": NOW - 1, "passes": [pass("z", 1)], "passes4": [pass("y", 1)] }));
    db.commands.clear();
    match cache.replace_passes(user(5), &older, at(NOW)).await {
        Err(CacheError::StaleWrite { stored }) => assert_eq!(stored, Millis(NOW)),
        other => panic!("expected a stale write, got {other:?}"),
    }
    assert_eq!(db.commands.names(), ["findAndModify"], "the reply holds the stored timestamp for the 409: one round trip");
    assert_eq!(db.raw_bytes(5).await.unwrap(), before, "a stale write changes nothing");

    // The very same write again changes nothing either, and is no conflict.
    db.commands.clear();
    cache.replace_passes(user(5), &update(json!({ "timestamp": NOW, "passes": [pass("a", 1)] })), at(NOW)).await.unwrap();
    assert_eq!(db.commands.names(), ["findAndModify"]);
    assert_eq!(db.raw_bytes(5).await.unwrap(), before);

    // The same timestamp again is a retry, not a conflict.
    cache.replace_passes(user(5), &update(json!({ "timestamp": NOW, "passes": [pass("a", 2)] })), at(NOW)).await.unwrap();
    cache.replace_passes(user(5), &update(json!({ "timestamp": NOW + 5, "passes4": [pass("b", 1)] })), at(NOW)).await.unwrap();
    let after = db.raw(5).await.unwrap();
    assert_eq!(after.get_i64("timestamp").unwrap(), NOW + 5);
    assert_eq!(after.get_array("passes").unwrap().len(), 1, "passes untouched by a passes4-only write");

    // Legacy timestamps stored as doubles compare numerically.
    let legacy = fixture("legacy_sample.ejson").remove(3);
    db.insert_raw(&[legacy]).await;
    let stale = cache.replace_passes(user(208), &update(json!({ "timestamp": 1_795_522_373_613_i64, "passes": [] })), at(NOW)).await;
    assert!(matches!(stale, Err(CacheError::StaleWrite { stored: Millis(1_795_522_373_614) })), "{stale:?}");

    // A stored fraction is compared exactly: 1 ms + a half is newer than 1 ms.
    db.insert_raw(&[doc! { "user_id": 209_i64, "timestamp": (NOW as f64) + 0.5 }]).await;
    let stale = cache.replace_passes(user(209), &update(json!({ "timestamp": NOW, "passes": [] })), at(NOW)).await;
    assert!(matches!(stale, Err(CacheError::StaleWrite { stored: Millis(NOW) })), "{stale:?}");
}

#[tokio::test]
async fn a_timestamp_far_in_the_future_is_refused() {
    let db = TestDb::new("future").await;
    let result = db.cache.replace_passes(user(5), &update(json!({ "timestamp": NOW + 3_600_000, "passes": [] })), at(NOW)).await;
    assert!(matches!(result, Err(CacheError::Validation(_))), "{result:?}");
    assert!(db.commands.names().is_empty(), "refused before any database call");
    assert!(db.raw(5).await.is_none());
}

#[tokio::test]
async fn concurrent_first_writes_make_one_document() {
    let db = TestDb::new("firstwrites").await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let cache = db.cache.clone();
            tokio::spawn(async move {
                cache
                    .replace_passes(user(11), &update(json!({ "timestamp": NOW + i, "passes": [pass(&format!("p{i}"), i)] })), at(NOW))
                    .await
            })
        })
        .collect();
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) | Err(CacheError::StaleWrite { .. }) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    let count = db.cache.collection().count_documents(doc! { "user_id": 11_i64 }).await.unwrap();
    assert_eq!(count, 1);
    let stored = db.raw(11).await.unwrap();
    assert_eq!(stored.get_i64("timestamp").unwrap(), NOW + 19, "the newest write wins");
    let Bson::Document(p) = &stored.get_array("passes").unwrap()[0] else { panic!() };
    assert_eq!(p.get_str("pass_uuid").unwrap(), "p19", "and its passes are stored");
}

#[tokio::test]
async fn concurrent_pushes_keep_exactly_the_cap() {
    for (cap, expected) in [(30_u32, 30_usize), (100, 50)] {
        let db = TestDb::with_config("pushes", CacheConfig { log_cap: cap, ..CacheConfig::default() }).await;
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let cache = db.cache.clone();
                tokio::spawn(async move { cache.push_log(user(12), &log("passes4", Some(&format!("id-{i}")), "E"), at(NOW + i)).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), PushOutcome::Appended);
        }
        let stored = db.raw(12).await.unwrap();
        let entries = stored.get_array("passes4Log").unwrap();
        assert_eq!(entries.len(), expected, "cap {cap}");
        let mut ids: Vec<_> = entries.iter().filter_map(|e| e.as_document()?.get_str("id").ok()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), expected, "no entry twice");
        assert_eq!(db.cache.collection().count_documents(doc! {}).await.unwrap(), 1);
    }
}

#[tokio::test]
async fn pushes_keep_the_newest_entries_in_order() {
    let db = TestDb::with_config("order", CacheConfig { log_cap: 3, ..CacheConfig::default() }).await;
    for i in 0..5 {
        db.cache.push_log(user(13), &log("passes", Some(&format!("n{i}")), "E"), at(NOW + i)).await.unwrap();
    }
    assert_eq!(db.commands.names(), ["findAndModify"; 5], "one round trip per push");
    let stored = db.raw(13).await.unwrap();
    let entries: Vec<&Document> = stored.get_array("passesLog").unwrap().iter().filter_map(Bson::as_document).collect();
    let ids: Vec<_> = entries.iter().map(|e| e.get_str("id").unwrap()).collect();
    assert_eq!(ids, ["n2", "n3", "n4"]);
    assert_eq!(entries[2].get_str("server_time").unwrap(), "2026-11-24T12:13:20.004Z", "set by the server, RFC 3339 UTC");
    assert!(matches!(stored.get("expires_at"), Some(Bson::DateTime(_))));
}

#[tokio::test]
async fn a_retried_push_is_not_appended_twice() {
    let db = TestDb::new("idempotent").await;
    let entry = log("passes", Some("retry-1"), "E");
    assert_eq!(db.cache.push_log(user(14), &entry, at(NOW)).await.unwrap(), PushOutcome::Appended);
    let before = db.raw_bytes(14).await.unwrap();
    db.commands.clear();
    assert_eq!(db.cache.push_log(user(14), &entry, at(NOW + 1)).await.unwrap(), PushOutcome::Duplicate);
    assert_eq!(db.commands.names(), ["findAndModify"], "a duplicate is one round trip too");
    assert_eq!(db.raw_bytes(14).await.unwrap(), before, "nothing changes");
    // Without an id every push appends; the same id in the other kind's log is a different entry.
    db.cache.push_log(user(14), &log("passes", None, "E"), at(NOW)).await.unwrap();
    db.cache.push_log(user(14), &log("passes4", Some("retry-1"), "E"), at(NOW)).await.unwrap();
    let stored = db.raw(14).await.unwrap();
    assert_eq!(stored.get_array("passesLog").unwrap().len(), 2);
    assert_eq!(stored.get_array("passes4Log").unwrap().len(), 1);
}

#[tokio::test]
async fn indexes_are_the_ones_the_queries_use() {
    let db = TestDb::new("indexes").await;
    db.cache.ensure_indexes().await.unwrap(); // idempotent
    let indexes: Vec<Document> = db
        .cache
        .collection()
        .list_indexes()
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .map(|m| {
            let mut d = doc! { "key": m.keys };
            if let Some(o) = m.options {
                if o.unique == Some(true) {
                    d.insert("unique", true);
                }
                if let Some(ttl) = o.expire_after {
                    d.insert("expireAfterSeconds", ttl.as_secs() as i64);
                }
            }
            d
        })
        .collect();
    let has = |expected: Document| assert!(indexes.contains(&expected), "missing {expected} in {indexes:?}");
    has(doc! { "key": { "user_id": 1 }, "unique": true });
    has(doc! { "key": { "expires_at": 1 }, "expireAfterSeconds": 0_i64 });
    has(doc! { "key": { "timestamp": 1 } });
    has(doc! { "key": { "passesLog.server_time": 1 } });
    has(doc! { "key": { "passes4Log.server_time": 1 } });
    assert_eq!(indexes.len(), 6, "_id plus the five above: {indexes:?}");
}

#[tokio::test]
async fn sweep_is_bounded_and_removes_only_what_expired() {
    let config = CacheConfig { sweep_max_documents: 10, ..CacheConfig::default() };
    let db = TestDb::with_config("sweep", config.clone()).await;
    // Dates are in the real future so neither MongoDB's TTL monitor nor the stand-in removes them first;
    // the sweep runs at a `now` past them.
    let real_now = DateTime::now().timestamp_millis();
    let sweep_at = real_now + 2 * 3_600_000;
    let expired = DateTime::from_millis(real_now + 3_600_000);
    let fresh = DateTime::from_millis(sweep_at + 3_600_000);
    let legacy_old = sweep_at - config.expire_after.as_millis() as i64 - 1;
    let mut docs = Vec::new();
    for i in 0..18 {
        docs.push(doc! { "user_id": 1000 + i, "timestamp": real_now, "expires_at": expired, "region": "x" });
    }
    for i in 0..4 {
        docs.push(doc! { "user_id": 2000 + i, "timestamp": legacy_old as f64 });
        // legacy: no expires_at, double timestamp
    }
    docs.push(doc! { "user_id": 3000, "timestamp": sweep_at - 1000 }); // legacy but recent: kept
    let old_log = payload::js_date::to_iso_string(DateTime::from_millis(sweep_at - config.log_retention.as_millis() as i64 - 1));
    let new_log = payload::js_date::to_iso_string(DateTime::from_millis(sweep_at - 1000));
    docs.push(doc! {
        "user_id": 4000, "timestamp": real_now, "expires_at": fresh,
        "passesLog": [ { "errors": ["old"], "server_time": &old_log }, { "errors": ["new"], "server_time": &new_log }, { "errors": ["?"], "server_time": "1795522373636" } ],
        "passes4Log": [ { "errors": ["old"], "server_time": &old_log, "data": null } ],
    });
    docs.push(doc! { "user_id": 4001, "timestamp": real_now, "expires_at": fresh, "passesLog": [ { "errors": ["new"], "server_time": &new_log } ] });
    db.insert_raw(&docs).await;

    let first = db.cache.sweep(DateTime::from_millis(sweep_at)).await.unwrap();
    assert_eq!(first.deleted_documents, 10, "{first:?}");
    assert!(first.more_remaining);
    let mut total_deleted = first.deleted_documents;
    let mut last = first;
    for _ in 0..5 {
        if !last.more_remaining {
            break;
        }
        last = db.cache.sweep(DateTime::from_millis(sweep_at)).await.unwrap();
        assert!(last.deleted_documents <= 10 && last.examined_documents <= 10, "{last:?}");
        total_deleted += last.deleted_documents;
    }
    assert!(!last.more_remaining, "{last:?}");
    assert_eq!(total_deleted, 22, "18 expired + 4 legacy");
    assert_eq!(last.trimmed_log_entries, 2, "{last:?}");
    assert_eq!(last.unparseable_log_entries, 1, "{last:?}");

    let left: Vec<i64> = db
        .cache
        .collection()
        .find(doc! {})
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .iter()
        .map(|d| d.get_i64("user_id").or_else(|_| d.get_i32("user_id").map(i64::from)).unwrap())
        .collect();
    let mut left = left;
    left.sort();
    assert_eq!(left, [3000, 4000, 4001]);
    let logs = db.raw(4000).await.unwrap();
    let times: Vec<_> =
        logs.get_array("passesLog").unwrap().iter().map(|e| e.as_document().unwrap().get_str("server_time").unwrap()).collect();
    assert_eq!(times, [new_log.as_str(), "1795522373636"], "old entry trimmed, undatable one kept");
    assert!(logs.get_array("passes4Log").unwrap().is_empty());

    let again = db.cache.sweep(DateTime::from_millis(sweep_at)).await.unwrap();
    assert_eq!((again.deleted_documents, again.trimmed_log_entries), (0, 0), "nothing left to do");
}

#[tokio::test]
async fn the_error_report_counts_a_window_by_code_kind_hour_and_user_in_one_aggregation() {
    let db = TestDb::new("errreport").await;
    let cache = &db.cache;
    // Legacy documents: users 201 (int32) and 208 (a double) logged BM_TIMEOUT at 12:12:53Z, inside the
    // window; 204's entry has an epoch-ms string for a time, which orders before any RFC 3339 time. (The
    // second fixture shares the first one's `_id`: they were written to different collections.)
    let mut legacy = fixture("legacy_sample.ejson");
    legacy.remove(1);
    db.insert_raw(&legacy).await;
    let before = NOW - 1000;
    cache.push_log(user(20), &log("passes", None, "BM_TIMEOUT"), at(NOW - 7_200_000)).await.unwrap(); // before the window
    cache.push_log(user(20), &log("passes", None, "BM_TIMEOUT"), at(before)).await.unwrap();
    cache.push_log(user(21), &log("passes", None, "BM_TIMEOUT"), at(before)).await.unwrap();
    cache.push_log(user(21), &log("passes4", None, "BM_DENIED"), at(before)).await.unwrap();
    cache.push_log(user(23), &log("passes", None, "BM_LATE"), at(NOW - 1_800_000)).await.unwrap();
    cache.push_log(user(24), &log("passes", None, "BM_TIMEOUT"), at(NOW)).await.unwrap(); // `until` is exclusive
    let plain: LogEntryInput = serde_json::from_value(json!({ "kind": "passes4", "errors": ["E1", "E1"] })).unwrap();
    cache.push_log(user(22), &plain, at(before)).await.unwrap();

    let window = |kind, user| ErrorQuery::new(at(NOW - 3_600_000), at(NOW), kind, user).unwrap();
    db.commands.clear();
    let report = cache.error_report(&window(None, None)).await.unwrap();
    assert_eq!(db.commands.names(), ["aggregate"], "one aggregation");
    assert_eq!((report.since.as_str(), report.until.as_str()), ("2026-11-24T11:13:20.000Z", "2026-11-24T12:13:20.000Z"));
    assert_eq!(report.total, 8);
    let codes: Vec<_> = report.by_code.iter().map(|c| (c.code.as_str(), c.count)).collect();
    assert_eq!(codes, [("BM_TIMEOUT", 4), ("E1", 2), ("BM_DENIED", 1), ("BM_LATE", 1)]);
    let kinds: Vec<_> = report.by_kind.iter().map(|k| (k.kind, k.count)).collect();
    assert_eq!(kinds, [(PassKind::Passes, 5), (PassKind::Passes4, 3)]);
    let hours: Vec<_> = report.by_hour.iter().map(|h| (h.hour.as_str(), h.count)).collect();
    assert_eq!(hours, [("2026-11-24T11:00:00Z", 1), ("2026-11-24T12:00:00Z", 7)]);
    let users: Vec<_> = report.top_users.iter().map(|u| (u.user_id.clone(), u.count)).collect();
    assert_eq!(users, [(json!(21), 2), (json!(22), 2), (json!(20), 1), (json!(23), 1), (json!(201), 1), (json!(208), 1)]);

    let passes4 = cache.error_report(&window(Some(PassKind::Passes4), None)).await.unwrap();
    assert_eq!((passes4.total, passes4.by_kind.len()), (3, 1));
    let one_user = cache.error_report(&window(None, Some(user(21)))).await.unwrap();
    let codes: Vec<_> = one_user.by_code.iter().map(|c| (c.code.as_str(), c.count)).collect();
    assert_eq!((one_user.total, codes), (2, vec![("BM_DENIED", 1), ("BM_TIMEOUT", 1)]));
    let nobody = cache.error_report(&window(None, Some(user(99)))).await.unwrap();
    assert_eq!((nobody.total, nobody.by_code.len(), nobody.top_users.len()), (0, 0, 0));

    // Windows that end before they start, or span more than 31 days, are refused before any query.
    assert!(ErrorQuery::new(at(NOW), at(NOW), None, None).is_err());
    assert!(ErrorQuery::new(at(NOW), at(NOW - 1), None, None).is_err());
    assert!(ErrorQuery::new(at(NOW - 31 * 86_400_000), at(NOW), None, None).is_ok());
    assert!(ErrorQuery::new(at(NOW - 31 * 86_400_000 - 1), at(NOW), None, None).is_err());
}

#[tokio::test]
async fn invalid_writes_change_nothing() {
    let db = TestDb::new("invalid").await;
    db.cache.replace_passes(user(30), &update(json!({ "timestamp": NOW, "passes": [pass("a", 1)] })), at(NOW)).await.unwrap();
    let before = db.raw_bytes(30).await.unwrap();
    db.commands.clear();
    let bad = [
        json!({ "timestamp": NOW + 1, "passes": [pass("dup", 1), pass("dup", 2)] }),
        json!({ "timestamp": NOW + 1, "passes": [{ "pass_uuid": "x", "status": "S", "payload": { "$where": "1" } }] }),
        json!({ "timestamp": NOW + 1 }),
    ];
    for body in bad {
        let result = db.cache.replace_passes(user(30), &update(body.clone()), at(NOW)).await;
        assert!(matches!(result, Err(CacheError::Validation(_))), "{body}: {result:?}");
    }
    let entry: LogEntryInput = serde_json::from_value(json!({ "kind": "passes", "errors": [], "data": { "a.b": 1 } })).unwrap();
    assert!(matches!(db.cache.push_log(user(30), &entry, at(NOW)).await, Err(CacheError::Validation(_))));
    assert!(db.commands.names().is_empty(), "nothing reached the database");
    assert_eq!(db.raw_bytes(30).await.unwrap(), before);
}

#[tokio::test]
async fn user_ids_are_stored_as_the_node_service_stores_them() {
    // The Node driver writes a JavaScript number as int32 when it fits, else as a double, never int64
    // (tests/fixtures/legacy_sample.ejson). DocumentDB's unique index tells number types apart, so only the
    // same type makes both services' writes of one user one key.
    let db = TestDb::new("idtype").await;
    let big = 3_000_000_002_i64;
    db.cache.replace_passes(user(201), &update(json!({ "passes": [pass("a", 1)] })), at(NOW)).await.unwrap();
    db.cache.push_log(user(big), &log("passes", Some("e"), "BM"), at(NOW)).await.unwrap();
    db.cache.replace_passes(user(2_147_483_648), &update(json!({ "passes": [pass("a", 1)] })), at(NOW)).await.unwrap();
    db.cache.push_log(user(2_147_483_647), &log("passes", Some("e"), "BM"), at(NOW)).await.unwrap();
    let bulk = [(user(3_000_000_004), update(json!({ "passes": [pass("a", 1)] }))), (user(202), update(json!({ "passes": [] })))];
    assert!(db.cache.replace_many(&bulk, at(NOW)).await.unwrap().iter().all(Result::is_ok));
    let db = &db;
    let stored = |id: i64| async move { db.raw(id).await.unwrap().get("user_id").cloned() };
    assert_eq!(stored(201).await, Some(Bson::Int32(201)));
    assert_eq!(stored(202).await, Some(Bson::Int32(202)));
    assert_eq!(stored(2_147_483_647).await, Some(Bson::Int32(i32::MAX)));
    assert_eq!(stored(2_147_483_648).await, Some(Bson::Double(2_147_483_648.0)));
    assert_eq!(stored(big).await, Some(Bson::Double(3_000_000_002.0)));
    assert_eq!(stored(3_000_000_004).await, Some(Bson::Double(3_000_000_004.0)));

    // The Node service's own first writes of these users meet ours on the unique index, on every engine.
    for (node_id, value) in [(201, Bson::Int32(201)), (big, Bson::Double(big as f64))] {
        let node_write = db.cache.collection().insert_one(doc! { "user_id": value, "timestamp": NOW as f64 }).await;
        let code = node_write.err().and_then(|e| match *e.kind {
            domain::mongodb::error::ErrorKind::Write(domain::mongodb::error::WriteFailure::WriteError(w)) => Some(w.code),
            _ => None,
        });
        assert_eq!(code, Some(11000), "a second document for user {node_id}");
        assert_eq!(db.cache.collection().count_documents(doc! { "user_id": node_id }).await.unwrap(), 1);
    }
}

/// A write's error code, wherever the driver put it.
fn error_code(error: &domain::mongodb::error::Error) -> Option<i32> {
    use domain::mongodb::error::{ErrorKind, WriteFailure};
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

/// The `_id` this service gives a document it creates: four zero bytes, then the id (`derived_id`).
fn derived_id(user_id: i64) -> ObjectId {
    let mut bytes = [0_u8; 12];
    bytes[4..].copy_from_slice(&user_id.to_be_bytes());
    ObjectId::from_bytes(bytes)
}

/// A Node-made ObjectId (its creation time first) that sorts after `derived_id` and by `n`.
fn node_id(n: u8) -> ObjectId {
    ObjectId::from_bytes([0x65, 0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, n])
}

/// Legacy damage: two documents for one user, one whose `user_id` is a double (the Node service's), one an
/// int64 (this service's, before it wrote the Node driver's types). Every read and write takes the one with
/// the smallest `_id`, whichever was inserted first, and leaves the other as it was.
#[tokio::test]
async fn a_user_with_two_documents_is_read_and_written_on_the_one_with_the_smallest_id() {
    let db = TestDb::new("twodocs").await;
    let legacy_pass = doc! { "pass_uuid": "old", "status": "ACTIVE", "payload": { "rides": 1 }, "_id": ObjectId::from_bytes([9; 12]) };
    // (user, the chosen document's _id, the other's _id, whether the chosen one is inserted first)
    let cases = [
        (3_000_000_003_i64, derived_id(3_000_000_003), node_id(1), false),
        (3_000_000_005, node_id(2), node_id(3), true),
        (205, node_id(4), node_id(5), false),
    ];
    for (id, chosen, other, chosen_first) in cases {
        let chosen_doc =
            doc! { "_id": chosen, "user_id": id, "timestamp": (NOW - 20) as f64, "passes": [legacy_pass.clone()], "region": "eu" };
        let other_doc = doc! { "_id": other, "user_id": id as f64, "timestamp": (NOW - 10) as f64, "passes": [legacy_pass.clone()], "app_version": "1" };
        let documents = if chosen_first { [chosen_doc, other_doc] } else { [other_doc, chosen_doc] };
        db.insert_duplicates(&documents).await;
        let other_before = db.raw_by_id(&Bson::ObjectId(other)).await.unwrap();

        db.commands.clear();
        db.cache.replace_passes(user(id), &update(json!({ "timestamp": NOW, "passes": [pass("fresh", 1)] })), at(NOW)).await.unwrap();
        let got = db.cache.get(user(id), Selection::All, at(NOW)).await.unwrap().unwrap();
        assert_eq!(db.commands.names(), ["findAndModify", "find"], "user {id}: one command each");
        assert_eq!(got.timestamp, Some(Millis(NOW)), "user {id}: the read sees the write");
        let read: serde_json::Value = serde_json::from_str(&got.json).unwrap();
        assert_eq!(read["passes"][0]["pass_uuid"], "fresh", "user {id}: {read}");

        assert_eq!(db.cache.push_log(user(id), &log("passes", Some("l1"), "E"), at(NOW)).await.unwrap(), PushOutcome::Appended);
        assert_eq!(db.cache.push_log(user(id), &log("passes", Some("l1"), "E"), at(NOW)).await.unwrap(), PushOutcome::Duplicate);
        let older = db.cache.replace_passes(user(id), &update(json!({ "timestamp": NOW - 1, "passes": [] })), at(NOW)).await;
        assert!(matches!(older, Err(CacheError::StaleWrite { stored: Millis(NOW) })), "user {id}: {older:?}");

        let written = db.raw_by_id(&Bson::ObjectId(chosen)).await.unwrap();
        assert_eq!(written.get_i64("timestamp").unwrap(), NOW, "user {id}");
        assert_eq!(written.get_array("passesLog").unwrap().len(), 1, "user {id}");
        assert_eq!(written.get_str("region").unwrap(), "eu", "user {id}: unknown fields kept");
        assert_eq!(db.raw_by_id(&Bson::ObjectId(other)).await.unwrap(), other_before, "user {id}: the other document untouched");
    }
}

/// A Node-style upsert (Mongoose's filter and `$set`, the user id as the Node driver sends it) fired together
/// with this service's first write of the same new user, for many users: one document each, on every engine.
/// On DocumentDB this needs both writers to store the same number type.
#[tokio::test]
async fn a_node_upsert_and_a_first_write_of_a_new_user_make_one_document() {
    let db = TestDb::new("noderace").await;
    let node_value = |id: i64| i32::try_from(id).map_or(Bson::Double(id as f64), Bson::Int32);
    for round in 0..3_i64 {
        let users: Vec<i64> =
            (0..60).map(|i| if i % 6 == 0 { 100_000 + round * 100 + i } else { 3_000_100_000 + round * 100 + i }).collect();
        let mut tasks = Vec::new();
        for (n, &id) in users.iter().enumerate() {
            let collection = db.cache.collection().clone();
            tasks.push(tokio::spawn(async move {
                // Mongoose's upsert: `{user_id: <number>}`, `$set` of the fields (Date.now() is a double, each
                // pass gets an ObjectId), `__v` on insert. The peer does not retry; a lost race is its error.
                let set = doc! { "timestamp": (NOW - 1) as f64, "passes": [{ "pass_uuid": "node", "status": "ACTIVE", "payload": { "rides": 1 }, "_id": ObjectId::new() }] };
                let filter = doc! { "user_id": node_value(id) };
                let update = doc! { "$set": set, "$setOnInsert": { "__v": 0 } };
                loop {
                    match collection.update_one(filter.clone(), update.clone()).upsert(true).await {
                        Ok(_) => return Ok(()),
                        Err(e) if matches!(error_code(&e), Some(11000 | 112)) => continue,
                        Err(e) => return Err(e.to_string()),
                    }
                }
            }));
            let cache = db.cache.clone();
            tasks.push(tokio::spawn(async move {
                let written = if n % 2 == 0 {
                    cache
                        .replace_passes(user(id), &update(json!({ "timestamp": NOW, "passes": [pass("ours", 1)] })), at(NOW))
                        .await
                        .map(drop)
                } else {
                    cache.push_log(user(id), &log("passes", Some("ours"), "E"), at(NOW)).await.map(drop)
                };
                written.map_err(|e| e.to_string())
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
        for &id in &users {
            let found: Vec<Document> = db.cache.collection().find(doc! { "user_id": id }).await.unwrap().try_collect().await.unwrap();
            assert_eq!(found.len(), 1, "round {round}, user {id}: {found:?}");
            assert_eq!(found[0].get("user_id"), Some(&node_value(id)), "user {id}");
        }
    }
}

#[tokio::test]
async fn the_audit_reports_what_is_wrong_and_changes_nothing() {
    let db = TestDb::new("audit").await;
    let cache = &db.cache;
    cache.replace_passes(user(5), &update(json!({ "timestamp": NOW, "passes": [pass("a", 1)] })), at(NOW)).await.unwrap();
    // Past the real clock too: TTL deletion (the stand-in's on read, DocumentDB's once a minute) must not race.
    let expires = DateTime::from_millis(NOW + 400 * 86_400_000);
    let bare = |uuid: &str| doc! { "pass_uuid": uuid, "status": "ACTIVE", "payload": { "rides": 1 } };
    db.insert_raw(&[
        doc! { "user_id": 401_i64, "timestamp": NOW, "expires_at": expires, "passes": [bare("dup"), bare("dup")] },
        doc! { "user_id": 402_i64, "timestamp": NOW, "expires_at": "2026-12-01T00:00:00Z" },
        doc! { "user_id": "abc", "timestamp": NOW },
        doc! { "user_id": 404_i64, "timestamp": NOW, "expires_at": expires, "passes": (0..101).map(|i| bare(&format!("p{i}"))).collect::<Vec<_>>(),
               "passesLog": (0..101).map(|i| doc! { "errors": [format!("E{i}")] }).collect::<Vec<_>>() },
    ])
    .await;
    db.insert_raw(&[fixture("legacy_edge_cases.ejson").remove(1)]).await; // 302: a tampered payload, no expires_at
    let users = [5_i64, 401, 402, 404, 302];
    let mut before = Vec::new();
    for u in users {
        before.push(db.raw_bytes(u).await.unwrap());
    }

    let report = cache.audit(1000, at(NOW)).await.unwrap();
    assert_eq!((report.audited_documents, report.recently_written, report.scan_completed), (6, 0, true));
    let kinds: Vec<_> = report.findings_by_kind.iter().map(|(k, n)| (serde_json::to_value(k).unwrap(), *n)).collect();
    let count = |kind: &str| kinds.iter().find(|(k, _)| k == kind).map_or(0, |(_, n)| *n);
    assert_eq!(count("duplicate_pass_uuid"), 1, "{kinds:?}");
    assert_eq!(count("expires_at_not_date"), 1, "{kinds:?}");
    assert_eq!(count("expires_at_missing"), 2, "\"abc\" and 302: {kinds:?}");
    assert_eq!(count("too_many_passes"), 1, "{kinds:?}");
    assert_eq!(count("log_over_cap"), 1, "{kinds:?}");
    assert!(count("integrity_mismatch") >= 1 && report.integrity_mismatches == count("integrity_mismatch"), "{kinds:?}");
    let listed = serde_json::to_value(&report.listed).unwrap();
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["user_id"] == 302 && f["finding"] == "integrity_mismatch" && f["pass_uuid"] == "tampered"));
    assert!(listed.as_array().unwrap().iter().any(|f| f["user_id"] == "abc" && f["finding"] == "unreadable" && f["path"] == "user_id"));
    assert!(listed.as_array().unwrap().iter().all(|f| f["user_id"] != 5), "a document this service wrote is clean: {listed}");
    assert!(!serde_json::to_string(&report).unwrap().contains("rides"), "no payload in a report");
    for (u, bytes) in users.iter().zip(before) {
        assert_eq!(db.raw_bytes(*u).await.unwrap(), bytes, "the audit changed user {u}");
    }
}

#[tokio::test]
async fn the_audit_resumes_where_it_stopped_and_takes_recent_writes_first() {
    let db = TestDb::new("auditresume").await;
    let cache = &db.cache;
    let old = NOW - 10 * 86_400_000;
    let expires = DateTime::from_millis(NOW + 400 * 86_400_000);
    db.insert_raw(&(1..=5_i64).map(|u| doc! { "user_id": u, "timestamp": old, "expires_at": expires }).collect::<Vec<_>>()).await;
    let runs: Vec<_> = [0, 1, 2, 3].iter().map(|i| at(NOW + i * 60_000)).collect();
    let first = cache.audit(2, runs[0]).await.unwrap();
    let second = cache.audit(2, runs[1]).await.unwrap();
    let third = cache.audit(2, runs[2]).await.unwrap();
    let progress = |r: &domain::AuditReport| (r.audited_documents, r.recently_written, r.scan_completed);
    assert_eq!(
        [progress(&first), progress(&second), progress(&third)],
        [(2, 0, false), (2, 0, false), (1, 0, true)],
        "the scan goes on where it stopped"
    );
    // A write since the last run is audited first; the scan then starts over.
    cache
        .replace_passes(user(9), &update(json!({ "timestamp": NOW + 150_000, "passes": [pass("n", 1)] })), at(NOW + 150_000))
        .await
        .unwrap();
    let fourth = cache.audit(2, runs[3]).await.unwrap();
    assert_eq!(progress(&fourth), (2, 1, false));
}

/// Two damaged users (one of them with three documents) among clean ones.
fn duplicated_users() -> Vec<Document> {
    let entry = |id: Option<&str>, at: &str| {
        let mut entry = doc! { "errors": [{ "code": "E", "message": "m" }], "server_time": at, "data": {} };
        if let Some(id) = id {
            entry.insert("id", id);
        }
        entry
    };
    let expires = DateTime::from_millis(NOW + 400 * 86_400_000);
    let bare = |uuid: &str| doc! { "pass_uuid": uuid, "status": "ACTIVE", "payload": { "rides": 1 } };
    vec![
        // User 3000000003: this service's int64 document (the survivor: the smallest _id) is older than the
        // Node service's double one.
        doc! { "_id": derived_id(3_000_000_003), "user_id": 3_000_000_003_i64, "timestamp": NOW - 20, "expires_at": expires,
        "passes": [bare("old")], "passes4": [bare("kept")], "region": "eu",
        "passesLog": [entry(Some("a"), "2026-11-24T12:00:01.000Z"), entry(Some("b"), "2026-11-24T12:00:02.000Z"), entry(None, "2026-11-24T12:00:03.000Z")] },
        doc! { "_id": node_id(1), "user_id": 3_000_000_003.0, "timestamp": (NOW - 10) as f64, "passes": [bare("new")], "__v": 0, "app_version": "7.1",
        "passesLog": [entry(Some("b"), "2026-11-24T12:00:02.000Z"), entry(Some("c"), "2026-11-24T12:00:04.000Z"), entry(None, "2026-11-24T12:00:03.000Z")],
        "passes4Log": [entry(Some("z"), "2026-11-24T12:00:05.000Z")] },
        // User 206: three documents, the newest one not the survivor.
        doc! { "_id": node_id(2), "user_id": 206, "timestamp": (NOW - 30) as f64, "passes": [bare("p1")] },
        doc! { "_id": node_id(3), "user_id": 206.0, "timestamp": (NOW - 5) as f64, "passes": [bare("p3")] },
        doc! { "_id": node_id(4), "user_id": 206_i64, "timestamp": NOW - 15, "passes": [bare("p2")] },
        doc! { "_id": node_id(5), "user_id": 207, "timestamp": NOW, "expires_at": expires },
    ]
}

#[tokio::test]
async fn the_audit_lists_users_with_several_documents() {
    let db = TestDb::new("auditdups").await;
    db.insert_duplicates(&duplicated_users()).await;
    let before: Vec<Document> = db.cache.collection().find(doc! {}).await.unwrap().try_collect().await.unwrap();
    let report = db.cache.audit(1000, at(NOW)).await.unwrap();
    assert_eq!(report.audited_documents, 6);
    let kind = domain::cache::FindingKind::DuplicateDocuments;
    assert_eq!(report.findings_by_kind.get(&kind), Some(&2), "{report:?}");
    let listed: Vec<_> = report.listed.iter().filter(|f| f.finding == kind).map(|f| (f.user_id.clone(), f.documents)).collect();
    assert_eq!(listed, [(json!(206), Some(3)), (json!(3_000_000_003_i64), Some(2))]);
    let json = serde_json::to_value(&report).unwrap();
    assert!(json["listed"].as_array().unwrap().iter().any(|f| f["finding"] == "duplicate_documents" && f["documents"] == 3), "{json}");
    let after: Vec<Document> = db.cache.collection().find(doc! {}).await.unwrap().try_collect().await.unwrap();
    assert_eq!(after, before, "the audit changes nothing");
}

#[tokio::test]
async fn the_merge_leaves_one_document_with_the_newest_passes_every_log_entry_and_unknown_fields() {
    let db = TestDb::with_config("merge", CacheConfig { log_cap: 100, ..CacheConfig::default() }).await;
    db.insert_duplicates(&duplicated_users()).await;
    let clean = db.raw(207).await.unwrap();

    let report = db.cache.merge_duplicates(1000, Duration::from_secs(60)).await.unwrap();
    assert_eq!(
        (report.examined_documents, report.duplicated_users, report.merged_users, report.deleted_documents, report.changed_meanwhile),
        (6, 2, 2, 3, 0),
        "{report:?}"
    );
    assert!(report.scan_completed && !report.more_remaining, "{report:?}");
    let collection = db.cache.collection();
    let count = |id: i64| {
        let collection = collection.clone();
        async move { collection.count_documents(doc! { "user_id": id }).await.unwrap() }
    };
    assert_eq!((count(3_000_000_003).await, count(206).await, count(207).await), (1, 1, 1));

    let merged = db.raw(3_000_000_003).await.unwrap();
    assert_eq!(merged.get_object_id("_id").unwrap(), derived_id(3_000_000_003), "the document reads and writes take");
    assert_eq!(merged.get("timestamp"), Some(&Bson::Double((NOW - 10) as f64)), "the newest timestamp");
    let uuids = |array: &str| -> Vec<String> {
        merged.get_array(array).unwrap().iter().map(|p| p.as_document().unwrap().get_str("pass_uuid").unwrap().to_owned()).collect()
    };
    assert_eq!((uuids("passes"), uuids("passes4")), (vec!["new".to_owned()], vec!["kept".to_owned()]));
    let log_ids: Vec<_> =
        merged.get_array("passesLog").unwrap().iter().map(|e| e.as_document().unwrap().get_str("id").ok().map(str::to_owned)).collect();
    assert_eq!(log_ids, [Some("a".into()), Some("b".into()), None, Some("c".into())], "united by id, ordered by server_time");
    assert_eq!(merged.get_array("passes4Log").unwrap().len(), 1);
    assert_eq!((merged.get_str("region").unwrap(), merged.get_str("app_version").unwrap()), ("eu", "7.1"), "unknown fields of both");
    assert_eq!(merged.get("user_id"), Some(&Bson::Int64(3_000_000_003)), "the survivor's user_id, as stored");
    let got = db.cache.get(user(3_000_000_003), Selection::All, at(NOW)).await.unwrap().unwrap();
    assert_eq!(got.timestamp, Some(Millis(NOW - 10)));

    let three = db.raw(206).await.unwrap();
    assert_eq!((three.get_object_id("_id").unwrap(), three.get_f64("timestamp").unwrap()), (node_id(2), (NOW - 5) as f64));
    assert_eq!(three.get_array("passes").unwrap()[0].as_document().unwrap().get_str("pass_uuid").unwrap(), "p3");
    assert_eq!(db.raw(207).await.unwrap(), clean, "a user with one document is left alone");

    // A second run finds nothing to do and changes nothing.
    let before: Vec<Document> = db.cache.collection().find(doc! {}).await.unwrap().try_collect().await.unwrap();
    let again = db.cache.merge_duplicates(1000, Duration::from_secs(60)).await.unwrap();
    assert_eq!((again.examined_documents, again.duplicated_users, again.deleted_documents), (3, 0, 0), "{again:?}");
    let after: Vec<Document> = db.cache.collection().find(doc! {}).await.unwrap().try_collect().await.unwrap();
    assert_eq!(after, before);
}

#[tokio::test]
async fn the_merge_is_bounded_and_resumes_where_it_stopped() {
    let db = TestDb::new("mergebudget").await;
    db.insert_duplicates(&duplicated_users()).await;
    let mut runs = Vec::new();
    loop {
        let report = db.cache.merge_duplicates(2, Duration::from_secs(60)).await.unwrap();
        assert!(report.examined_documents <= 2, "{report:?}");
        let done = report.scan_completed;
        runs.push(report);
        if done || runs.len() > 10 {
            break;
        }
    }
    assert!(runs.len() > 1 && runs[0].more_remaining, "{runs:?}");
    assert_eq!(runs.iter().map(|r| r.merged_users).sum::<u64>(), 2, "{runs:?}");
    assert_eq!(db.cache.collection().count_documents(doc! {}).await.unwrap(), 3);
    // No time left: nothing is examined, and the next run starts where this one would have.
    let none = db.cache.merge_duplicates(1000, Duration::ZERO).await.unwrap();
    assert_eq!((none.examined_documents, none.more_remaining), (0, true));
}

/// The merge writes the survivor only as it read it, and deletes another document only as it read it: a
/// concurrent write in between is kept, and the next run merges it.
#[tokio::test]
async fn the_merge_refuses_to_delete_or_overwrite_a_document_changed_since_it_was_read() {
    let db = TestDb::new("mergeguard").await;
    db.insert_duplicates(&duplicated_users()).await;
    let id = user(3_000_000_003);

    // The other document gets a log entry (the Node service's `$push`) between the read and the write.
    let plan = db.cache.plan_merge(id).await.unwrap().expect("two documents");
    let late = doc! { "errors": ["late"], "server_time": "2026-11-24T12:00:09.000Z", "id": "late" };
    db.cache.collection().update_one(doc! { "_id": node_id(1) }, doc! { "$push": { "passesLog": late } }).await.unwrap();
    let refused = domain::cache::AppliedMerge { outcome: MergeOutcome::ChangedMeanwhile, deleted_documents: 0 };
    assert_eq!(db.cache.apply_merge(&plan).await.unwrap(), refused);
    let other = db.raw_by_id(&Bson::ObjectId(node_id(1))).await.expect("not deleted");
    assert_eq!(other.get_array("passesLog").unwrap().len(), 4);
    let survivor = db.raw(3_000_000_003).await.unwrap();
    assert_eq!(&survivor, plan.merged(), "the survivor holds what was read");

    // The survivor gets a write (this service's replace) between the read and the write: nothing changes.
    let plan = db.cache.plan_merge(id).await.unwrap().expect("two documents");
    db.cache.replace_passes(id, &update(json!({ "timestamp": NOW, "passes": [pass("newest", 1)] })), at(NOW)).await.unwrap();
    let written = db.raw(3_000_000_003).await.unwrap();
    assert_eq!(db.cache.apply_merge(&plan).await.unwrap().outcome, MergeOutcome::ChangedMeanwhile);
    assert_eq!(db.raw(3_000_000_003).await.unwrap(), written, "the concurrent write is kept");
    assert!(db.raw_by_id(&Bson::ObjectId(node_id(1))).await.is_some(), "and nothing deleted");

    // The next run merges both: the late entry and the newest passes.
    let report = db.cache.merge_duplicates(1000, Duration::from_secs(60)).await.unwrap();
    assert_eq!((report.merged_users, report.changed_meanwhile), (2, 0), "{report:?}");
    let merged = db.raw(3_000_000_003).await.unwrap();
    assert_eq!(db.cache.collection().count_documents(doc! { "user_id": 3_000_000_003_i64 }).await.unwrap(), 1);
    assert_eq!(merged.get_i64("timestamp").unwrap(), NOW);
    assert_eq!(merged.get_array("passes").unwrap()[0].as_document().unwrap().get_str("pass_uuid").unwrap(), "newest");
    let log_ids: Vec<_> = merged.get_array("passesLog").unwrap().iter().filter_map(|e| e.as_document()?.get_str("id").ok()).collect();
    assert_eq!(log_ids, ["a", "b", "c", "late"]);
}
