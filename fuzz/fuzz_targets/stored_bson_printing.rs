//! Printing stored BSON as JSON from arbitrary bytes: never panics, never reads out of bounds, and
//! whatever it prints is JSON. Bytes the `bson` crate decodes in full always print in stored order.
#![no_main]

use domain::json::{self, MemberOrder};
use domain::mongodb::bson::{Document, RawDocument};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = RawDocument::from_bytes(data) else { return };
    let decodes = Document::from_reader(data).is_ok();
    for order in [MemberOrder::Stored, MemberOrder::Canonical] {
        let mut out = Vec::new();
        match json::write_document(raw, order, &mut out) {
            Ok(()) => {
                serde_json::from_slice::<Value>(&out).expect("printed text is JSON");
            }
            Err(e) => assert!(!(decodes && order == MemberOrder::Stored), "valid BSON did not print: {e}"),
        }
    }
});
