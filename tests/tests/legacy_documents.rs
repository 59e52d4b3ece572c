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
