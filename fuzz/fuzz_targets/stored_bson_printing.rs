//! Stored BSON from arbitrary bytes, as reads serve it. Printing never panics, never reads out of bounds
//! and never exhausts the stack; every text it prints, and every whole read response, is I-JSON (no
//! member named twice at any depth); and a read says `verified` only of a payload whose printed text
//! hashes to the printed hash.
//!
//! The bytes are tried three ways: as a value printed in each text form; as a whole stored document (so
//! `passes` may be anything); and as the payload of a pass whose hash was computed over its own
//! `JSON.stringify` text and which carries forged `integrity` fields, so `verified` is reachable and the
//! reserved names are always present.
#![no_main]

use std::time::Duration;

use domain::mongodb::bson::{DateTime, RawArrayBuf, RawDocument, RawDocumentBuf};
use domain::read::{render, Freshness};
use domain::{Selection, UserId};
use libfuzzer_sys::fuzz_target;
use payload::hash::{self, HashForm};
use payload::text::{self, TextForm};
use payload::VerifiedPayloads;

#[path = "../../tests/src/read_invariants.rs"]
mod read_invariants;

fn read(document: &RawDocument) {
    let user = UserId::new(1).expect("a user id");
    let freshness =
        Freshness { now: DateTime::from_millis(1_800_000_000_000), ttl: Duration::from_secs(3600), max_skew: Duration::from_secs(300) };
    let tickets = render(user, Selection::All, &domain::PassFilter::default(), document, freshness, &VerifiedPayloads::new(0));
    read_invariants::strict_json(tickets.json.as_bytes()).unwrap_or_else(|e| panic!("{e}: {}", tickets.json));
    read_invariants::verified_payloads_match_their_hashes(tickets.json.as_bytes()).unwrap_or_else(|e| panic!("{e}: {}", tickets.json));
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = RawDocument::from_bytes(data) else { return };
    for form in [TextForm::JsonStringify, TextForm::Canonical, TextForm::Display] {
        let mut out = Vec::new();
        if text::write_document(raw, form, &mut out).is_ok() {
            read_invariants::strict_json(&out).unwrap_or_else(|e| panic!("{form:?}: {e}: {}", String::from_utf8_lossy(&out)));
        }
    }
    read(raw);

    let legacy_hash = hash::hash(raw, HashForm::Legacy).map_or_else(|_| "0".repeat(64), |(hex, _)| hex);
    let mut pass = RawDocumentBuf::new();
    pass.append("integrity", "verified");
    pass.append("pass_uuid", "p");
    pass.append("payload", raw.to_owned());
    pass.append("payload_hash", legacy_hash);
    pass.append("integrity", "verified");
    let mut passes = RawArrayBuf::new();
    passes.push(pass);
    let mut document = RawDocumentBuf::new();
    document.append("timestamp", 1_800_000_000_000_i64);
    document.append("passes", passes);
    read(&document);
});
