//! Criterion: each payload step of the update and read paths over the benchmark user's 40 payloads
//! (`pass_payload.json`, about 1.3 KiB of JSON each), in process, so `bench/README.md` can say where the
//! handler-only time goes. The `read_*` steps compare the readers of stored BSON (see `reader.rs`).

use std::time::Duration;

use bson::spec::ElementType;
use bson::{RawBsonRef, RawDocument, RawDocumentBuf};
use criterion::{criterion_group, criterion_main, Criterion};
use payload::hash::{self, HashForm};
use payload::reader::{Doc, Value};
use payload::text::{self, TextForm};
use payload::{convert_payload, JCS_ALG};
use sha2::{Digest, Sha256};

/// The service's default depth limit (`domain`'s `Limits::max_payload_depth`).
const MAX_DEPTH: usize = 16;

/// The 40 payloads of the benchmark user (20 passes in each array), as a client sends them.
fn payload_texts() -> Vec<String> {
    let template: serde_json::Value = serde_json::from_str(include_str!("pass_payload.json")).expect("the fixture is JSON");
    let uuids = (0..20).map(|i| format!("pass-{i}")).chain((0..20).map(|i| format!("pass4-{i}")));
    uuids
        .map(|uuid| {
            let mut payload = template.clone();
            payload["pass_uuid"] = uuid.into();
            payload.to_string()
        })
        .collect()
}

/// What a printer needs of every element, read with the framing-only reader: names, numbers, strings
/// (as bytes), nesting.
fn walk_framing_only(doc: Doc<'_>) -> usize {
    let mut seen = 0;
    for element in doc.elements() {
        let (key, value) = element.expect("well framed");
        seen += key.len()
            + match value {
                Value::Document(inner) | Value::Array(inner) => walk_framing_only(inner),
                Value::String(bytes) => bytes.len(),
                Value::Double(v) => v.to_bits() as usize & 1,
                Value::Int32(v) => v as usize & 1,
                Value::Int64(v) => v as usize & 1,
                Value::Boolean(b) => usize::from(b),
                Value::Null | Value::Undefined | Value::Other(..) => 1,
            };
    }
    seen
}

/// The same with the `bson` crate's lazy elements (`RawDocument::iter_elements`, `RawElement::value`).
fn walk_iter_elements(doc: &RawDocument) -> usize {
    let mut seen = 0;
    for element in doc.iter_elements() {
        let element = element.expect("well framed");
        let value = match element.element_type() {
            ElementType::MinKey | ElementType::MaxKey | ElementType::Null | ElementType::Undefined => 1,
            // Other values are decoded only when needed: these are, by every printer.
            _ => value_size(element.value().expect("valid value"), walk_iter_elements),
        };
        seen += element.key().len() + value;
    }
    seen
}

/// The same with the `bson` crate's eager iterator (`RawDocument::iter`).
fn walk_iter(doc: &RawDocument) -> usize {
    doc.iter()
        .map(|element| {
            let (key, value) = element.expect("well framed");
            key.len() + value_size(value, walk_iter)
        })
        .sum()
}

/// What [`walk_framing_only`] reads of a value; nested documents are walked by `walk`.
fn value_size(value: RawBsonRef<'_>, walk: fn(&RawDocument) -> usize) -> usize {
    match value {
        RawBsonRef::Document(inner) => walk(inner),
        RawBsonRef::Array(items) => walk(RawDocument::from_bytes(items.as_bytes()).expect("well framed")),
        RawBsonRef::String(text) => text.len(),
        RawBsonRef::Double(v) => v.to_bits() as usize & 1,
        RawBsonRef::Int32(v) => v as usize & 1,
        RawBsonRef::Int64(v) => v as usize & 1,
        RawBsonRef::Boolean(b) => usize::from(b),
        _ => 1,
    }
}

fn steps(c: &mut Criterion) {
    let texts = payload_texts();
    let converted: Vec<RawDocumentBuf> = texts.iter().map(|text| convert_payload(text, MAX_DEPTH).expect("valid payload").bson).collect();
    let hashes: Vec<String> = converted.iter().map(|doc| hash::hash(doc, HashForm::Jcs).expect("hashable").0).collect();

    let mut group = c.benchmark_group("payload_steps_40");
    group.sample_size(30).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    // JSON → BSON and the canonical text's SHA-256, one parse per payload (what an update does per pass).
    group.bench_function("convert_and_hash", |b| {
        b.iter(|| texts.iter().map(|text| convert_payload(text, MAX_DEPTH).expect("valid payload")).collect::<Vec<_>>())
    });
    // The readers alone, over the same stored BSON (the choice in `reader.rs`).
    group.bench_function("read_framing_only", |b| {
        b.iter(|| converted.iter().map(|doc| walk_framing_only(Doc::from(&**doc))).sum::<usize>())
    });
    group.bench_function("read_iter_elements", |b| b.iter(|| converted.iter().map(|doc| walk_iter_elements(doc)).sum::<usize>()));
    group.bench_function("read_iter", |b| b.iter(|| converted.iter().map(|doc| walk_iter(doc)).sum::<usize>()));
    let mut text = Vec::with_capacity(128 << 10);
    group.bench_function("stored_order_text", |b| {
        b.iter(|| {
            text.clear();
            converted.iter().try_for_each(|doc| text::write_document(doc, TextForm::JsonStringify, &mut text)).expect("printable")
        })
    });
    group.bench_function("canonical_text", |b| {
        b.iter(|| {
            text.clear();
            converted.iter().try_for_each(|doc| text::write_document(doc, TextForm::Canonical, &mut text)).expect("printable")
        })
    });
    group.bench_function("sha256_of_canonical_texts", |b| b.iter(|| Sha256::digest(&text)));
    group.bench_function("canonical_hashes", |b| {
        b.iter(|| converted.iter().map(|doc| hash::hash(doc, HashForm::Jcs).expect("hashable")).collect::<Vec<_>>())
    });
    // What a read does per payload when no verdict is remembered: print in the hashed form, hash, compare.
    group.bench_function("verify_every_payload", |b| {
        b.iter(|| {
            text.clear();
            converted.iter().zip(&hashes).map(|(doc, hash)| hash::verify_into(doc, Some(hash), Some(JCS_ALG), &mut text).0).count()
        })
    });
    group.finish();
}

criterion_group!(benches, steps);
criterion_main!(benches);
