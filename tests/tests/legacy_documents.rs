//! Documents written by the Node/Mongoose service read through the service's read path (`read::render`,
//! what `TicketCache::get` runs on the raw reply), and their legacy hashes verify.

use std::time::Duration;

use domain::mongodb::bson::{DateTime, Document, RawDocumentBuf};
use domain::read::{render, CachedTickets, Freshness};
use domain::{Integrity, Selection, UserId};
use integration_tests::fixture;
use payload::VerifiedPayloads;
use serde_json::value::RawValue;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn read(doc: &Document) -> (CachedTickets, Value) {
    let raw = RawDocumentBuf::from_document(doc).unwrap();
    let freshness = Freshness { now: DateTime::now(), ttl: Duration::from_secs(3600), max_skew: Duration::from_secs(300) };
    let tickets =
        render(UserId::new(1).unwrap(), Selection::All, &domain::PassFilter::default(), &raw, freshness, &VerifiedPayloads::new(0));
    assert!(tickets.degraded.is_empty(), "{:?}: {doc}", tickets.degraded);
    let body: Value = serde_json::from_str(&tickets.json).unwrap_or_else(|e| panic!("{e}: {}", tickets.json));
    (tickets, body)
}

fn verdicts(tickets: &CachedTickets) -> Vec<Integrity> {
    tickets.arrays.iter().flat_map(|(_, passes)| passes.iter().map(|p| p.integrity)).collect()
}

#[test]
fn every_sample_document_reads_and_its_legacy_hashes_verify() {
    let docs = fixture("legacy_sample.ejson");
    assert_eq!(docs.len(), 4);
    let mut passes_seen = 0;
    for doc in &docs {
        let (tickets, body) = read(doc);
        assert!(tickets.timestamp.is_some());
        for verdict in verdicts(&tickets) {
            passes_seen += 1;
            assert_eq!(verdict, Integrity::Verified, "{doc}");
        }
        for pass in body["passes"].as_array().unwrap().iter().chain(body["passes4"].as_array().unwrap()) {
            assert_eq!(pass["integrity"], "verified");
            assert!(pass.get("_id").is_none() && pass.get("payload_hash_alg").is_none(), "internal fields are not shown: {pass}");
        }
    }
    assert_eq!(passes_seen, 8);
}

/// The payload text in a response is exactly the text its hash covers: a client can check it with SHA-256
/// alone, without reimplementing `JSON.stringify` or RFC 8785.
#[test]
fn response_payload_text_hashes_to_payload_hash() {
    #[derive(serde::Deserialize)]
    struct Body<'a> {
        #[serde(borrow)]
        passes: Vec<Pass<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Pass<'a> {
        #[serde(borrow)]
        payload: &'a RawValue,
        payload_hash: String,
    }
    for doc in fixture("legacy_sample.ejson") {
        let (tickets, _) = read(&doc);
        let body: Body = serde_json::from_str(&tickets.json).unwrap();
        for pass in body.passes {
            let digest = Sha256::digest(pass.payload.get().as_bytes());
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex, pass.payload_hash, "{}", pass.payload.get());
        }
    }
}

#[test]
fn numbers_read_the_same_whether_int32_int64_or_double() {
    let docs = fixture("legacy_sample.ejson");
    let (mongoose, a) = read(&docs[0]);
    let (doubles, b) = read(&docs[3]);
    assert_eq!(mongoose.timestamp.map(|t| t.0), Some(1_795_522_373_614));
    assert_eq!(doubles.timestamp, mongoose.timestamp);
    assert_eq!(a["passes"][0]["timestamp"], b["passes"][0]["timestamp"]);
    assert_eq!(a["passes"][0]["free_ticket_status"], serde_json::json!(1));
    assert_eq!(b["passes"][0]["free_ticket_status"], serde_json::json!(1), "1.0 stored as a double reads as 1");
    assert_eq!(a["passes"][0]["payload"], b["passes"][0]["payload"], "payload numbers print as JavaScript prints them");

    let (_, fractional) = read(&docs[1]);
    assert_eq!(fractional["passes"][0]["free_ticket_status"], serde_json::json!(1.5));
    assert_eq!(fractional["passes"][0]["vendor_ref"], "X-1", "unknown pass fields are shown");
}

#[test]
fn missing_arrays_nulls_and_tampered_payloads() {
    let docs = fixture("legacy_edge_cases.ejson");
    let (bare, body) = read(&docs[0]);
    assert!(bare.timestamp.is_none() && bare.stale, "no timestamp: undated, so stale");
    assert_eq!(body["passes"], serde_json::json!([]));
    assert_eq!(body["passes4"], serde_json::json!([]));

    let (odd, body) = read(&docs[1]);
    assert!(odd.timestamp.is_none(), "null timestamp reads as none");
    assert_eq!(verdicts(&odd), [Integrity::Unverified, Integrity::Mismatch, Integrity::Unverified], "no hash; fare changed; empty pass");
    assert_eq!(body["passes"][0]["status"], Value::Null);
    assert_eq!(odd.count(Integrity::Mismatch), 1);
    let empty = &body["passes"][2];
    for field in ["pass_uuid", "timestamp", "status", "free_ticket_status", "payload", "payload_hash"] {
        assert_eq!(empty[field], Value::Null, "{field} of an empty pass");
    }
}

#[test]
fn the_etag_changes_with_the_verdict_not_only_with_the_hash() {
    let docs = fixture("legacy_sample.ejson");
    let (original, _) = read(&docs[0]);
    let mut tampered = docs[0].clone();
    let passes = tampered.get_array_mut("passes").unwrap();
    let pass = passes[0].as_document_mut().unwrap();
    pass.get_document_mut("payload").unwrap().insert("tampered", true);
    let (changed, _) = read(&tampered);
    assert_eq!(changed.count(Integrity::Mismatch), 1);
    assert_ne!(original.etag, changed.etag);
}

/// The ETag is a validator of the body (apart from the age, which ticks): two reads share one exactly
/// when they print the same body, whatever the stored bytes behind it. Verified payload texts are not
/// hashed twice for it (their printed hash stands for them); these variants show nothing is lost.
#[test]
fn the_etag_changes_exactly_when_the_body_does() {
    let original = fixture("legacy_sample.ejson").swap_remove(0);
    let variant = |change: fn(&mut Document)| {
        let mut doc = original.clone();
        change(&mut doc);
        doc
    };
    fn first_pass(doc: &mut Document) -> &mut Document {
        doc.get_array_mut("passes").unwrap()[0].as_document_mut().unwrap()
    }
    let variants: Vec<(&str, Document)> = vec![
        ("original", original.clone()),
        (
            "another Mongoose _id (not shown)",
            variant(|doc| {
                first_pass(doc).insert("_id", domain::mongodb::bson::oid::ObjectId::new());
            }),
        ),
        (
            "a payload number stored as int64 (prints the same)",
            variant(|doc| {
                first_pass(doc).get_document_mut("payload").unwrap().insert("rides", 1_i64);
            }),
        ),
        (
            "a top-level field reads do not show",
            variant(|doc| {
                doc.insert("vendor_sync", "x");
            }),
        ),
        (
            "a tampered payload",
            variant(|doc| {
                first_pass(doc).get_document_mut("payload").unwrap().insert("rides", 2);
            }),
        ),
        (
            "the payload tampered another way",
            variant(|doc| {
                first_pass(doc).get_document_mut("payload").unwrap().insert("rides", 3);
            }),
        ),
        (
            "another verified payload, with its hash",
            variant(|doc| {
                let second = doc.get_array("passes").unwrap()[1].as_document().unwrap().clone();
                let pass = first_pass(doc);
                pass.insert("payload", second.get_document("payload").unwrap().clone());
                pass.insert("payload_hash", second.get_str("payload_hash").unwrap());
            }),
        ),
        (
            "another status",
            variant(|doc| {
                first_pass(doc).insert("status", "USED");
            }),
        ),
        (
            "a vendor field on a pass",
            variant(|doc| {
                first_pass(doc).insert("vendor_ref", "X-1");
            }),
        ),
        (
            "the passes in another order",
            variant(|doc| {
                doc.get_array_mut("passes").unwrap().swap(0, 1);
            }),
        ),
        (
            "fresh instead of stale",
            variant(|doc| {
                doc.insert("timestamp", DateTime::now().timestamp_millis());
            }),
        ),
    ];
    let reads: Vec<(&str, String, CachedTickets)> = variants
        .iter()
        .map(|(name, doc)| {
            let (tickets, body) = read(doc);
            (*name, tickets.json.replacen(&format!("\"age_seconds\":{}", body["age_seconds"]), "", 1), tickets)
        })
        .collect();
    assert_eq!(verdicts(&reads[6].2), [Integrity::Verified; 3], "the swapped-in payload verifies");
    assert_eq!((reads[4].2.count(Integrity::Mismatch), reads[5].2.count(Integrity::Mismatch)), (1, 1));
    let mut same = Vec::new();
    for (a, body_a, read_a) in &reads {
        for (b, body_b, read_b) in &reads {
            assert_eq!(read_a.etag == read_b.etag, body_a == body_b, "{a} vs {b}:\n{body_a}\n{body_b}");
            if a < b && body_a == body_b {
                same.push((*a, *b));
            }
        }
    }
    same.sort();
    let mut expected = vec![
        ("another Mongoose _id (not shown)", "original"),
        ("a payload number stored as int64 (prints the same)", "original"),
        ("a top-level field reads do not show", "original"),
        ("a payload number stored as int64 (prints the same)", "another Mongoose _id (not shown)"),
        ("a top-level field reads do not show", "another Mongoose _id (not shown)"),
        ("a payload number stored as int64 (prints the same)", "a top-level field reads do not show"),
    ];
    expected.sort();
    assert_eq!(same, expected, "which stored changes leave the body as it was");
}

/// A pass a filter leaves out leaves nothing of itself in the validator: the read that filters on a
/// verdict prints, and validates, as the unfiltered read of the document without the passes it leaves out.
#[test]
fn a_filtered_read_validates_as_the_body_it_prints() {
    let mut original = fixture("legacy_sample.ejson").swap_remove(0);
    let passes = original.get_array_mut("passes").unwrap();
    passes[1].as_document_mut().unwrap().get_document_mut("payload").unwrap().insert("rides", 9);
    // Only the tampered pass is left: the verified ones before and after it are printed, then taken back.
    let mut only_tampered = original.clone();
    only_tampered.get_array_mut("passes").unwrap().remove(0);
    only_tampered.insert("passes4", domain::mongodb::bson::Bson::Array(vec![]));
    let mismatched = domain::PassFilter::new(vec![], None, Some(Integrity::Mismatch), &domain::Limits::default()).unwrap();
    let freshness = Freshness { now: DateTime::now(), ttl: Duration::from_secs(3600), max_skew: Duration::from_secs(300) };
    let render_with = |doc: &Document, filter: &domain::PassFilter| {
        let raw = RawDocumentBuf::from_document(doc).unwrap();
        render(UserId::new(1).unwrap(), Selection::All, filter, &raw, freshness, &VerifiedPayloads::new(0))
    };
    let filtered = render_with(&original, &mismatched);
    let unfiltered = render_with(&only_tampered, &domain::PassFilter::default());
    assert_eq!(verdicts(&filtered), [Integrity::Mismatch]);
    assert_eq!(filtered.json, unfiltered.json);
    assert_eq!(filtered.etag, unfiltered.etag);
    assert_ne!(filtered.etag, render_with(&original, &domain::PassFilter::default()).etag);
}
