//! Documents written by the Node/Mongoose service deserialize, and their legacy hashes verify.

use domain::hashing::{self, Integrity};
use domain::mongodb::bson::{self, Bson};
use domain::schema::{JsNumber, Millis, TicketDocument};
use domain::PassKind;
use integration_tests::fixture;

#[test]
fn every_sample_document_deserializes_and_its_legacy_hashes_verify() {
    let docs = fixture("legacy_sample.ejson");
    assert_eq!(docs.len(), 4);
    let mut passes_seen = 0;
    for raw in &docs {
        let doc: TicketDocument = bson::from_document(raw.clone()).unwrap_or_else(|e| panic!("{e}: {raw}"));
        assert!(doc.timestamp.is_some());
        for kind in PassKind::ALL {
            for pass in doc.passes(kind).into_iter().flatten() {
                passes_seen += 1;
                assert_eq!(hashing::verify(pass), Integrity::Verified, "{pass:?}");
                assert!(pass.extra.contains_key("_id"), "Mongoose's sub-document _id is kept");
            }
        }
    }
    assert_eq!(passes_seen, 8);
}

#[test]
fn numbers_read_the_same_whether_int32_int64_or_double() {
    let docs = fixture("legacy_sample.ejson");
    let mongoose: TicketDocument = bson::from_document(docs[0].clone()).unwrap();
    let doubles: TicketDocument = bson::from_document(docs[3].clone()).unwrap();
    assert_eq!(mongoose.timestamp, Some(Millis(1_795_522_373_614)));
    assert_eq!(doubles.timestamp, mongoose.timestamp);
    let (a, b) = (&mongoose.passes.as_ref().unwrap()[0], &doubles.passes.as_ref().unwrap()[0]);
    assert_eq!(a.timestamp, b.timestamp);
    assert_eq!(a.free_ticket_status, Some(JsNumber::Int(1)));
    assert_eq!(b.free_ticket_status, Some(JsNumber::Int(1)), "1.0 stored as a double reads as 1");

    let fractional: TicketDocument = bson::from_document(docs[1].clone()).unwrap();
    let pass = &fractional.passes.as_ref().unwrap()[0];
    assert_eq!(pass.free_ticket_status, Some(JsNumber::Float(1.5)));
    assert_eq!(pass.extra.get_str("vendor_ref").unwrap(), "X-1", "unknown pass fields are kept");
}

#[test]
fn missing_arrays_nulls_and_tampered_payloads() {
    let docs = fixture("legacy_edge_cases.ejson");
    let bare: TicketDocument = bson::from_document(docs[0].clone()).unwrap();
    assert!(bare.timestamp.is_none() && bare.passes.is_none() && bare.passes4.is_none());

    let odd: TicketDocument = bson::from_document(docs[1].clone()).unwrap();
    assert!(odd.timestamp.is_none(), "null timestamp reads as none");
    let passes = odd.passes.as_ref().unwrap();
    assert_eq!(hashing::verify(&passes[0]), Integrity::Unverified, "no hash");
    assert_eq!(passes[0].status, None);
    assert_eq!(hashing::verify(&passes[1]), Integrity::Mismatch, "fare changed after hashing");
    assert_eq!(passes[2], Default::default(), "an empty pass deserializes");
}

#[test]
fn stored_pass_round_trips_unknown_fields_with_their_types() {
    let docs = fixture("legacy_sample.ejson");
    let raw_pass = docs[1].get_array("passes").unwrap()[0].clone();
    let Bson::Document(raw_pass) = raw_pass else { panic!("pass is a document") };
    let pass: domain::StoredPass = bson::from_document(raw_pass.clone()).unwrap();
    let back = bson::to_document(&pass).unwrap();
    assert_eq!(back.get("_id"), raw_pass.get("_id"), "ObjectId stays an ObjectId");
    assert_eq!(back.get("vendor_ref"), raw_pass.get("vendor_ref"));
    assert_eq!(back.get("payload"), raw_pass.get("payload"), "payload types and key order unchanged");
}
