//! Criterion: each step of the update and read paths over the benchmark user's 40 payloads, in process and
//! without a database, so `bench/profile.md` can say where the handler-only time goes and what its floor is.

use std::time::Duration;

use bench::data::twenty_passes;
use criterion::{criterion_group, criterion_main, Criterion};
use domain::convert::convert_payload;
use domain::hashing::{self, HashForm};
use domain::input::{validate_passes, PassUpdate};
use domain::json::{self, TextForm};
use domain::mongodb::bson::{rawdoc, RawArrayBuf, RawDocumentBuf};
use domain::read::{self, Freshness};
use domain::verified::{ConvertedPayloads, VerifiedPayloads};
use domain::{Limits, Millis, PassKind, Selection, UserId};
use sha2::{Digest, Sha256};

fn steps(c: &mut Criterion) {
    let body = serde_json::to_vec(&twenty_passes(None)).expect("body");
    let update: PassUpdate = serde_json::from_slice(&body).expect("valid body");
    let limits = Limits::default();
    let payloads: Vec<_> = PassKind::ALL.iter().flat_map(|&kind| update.passes(kind).into_iter().flatten()).map(|p| &p.payload).collect();
    let converted: Vec<RawDocumentBuf> =
        payloads.iter().map(|p| convert_payload(p, &"payload", &limits).expect("valid payload").bson).collect();
    let nothing_remembered = ConvertedPayloads::new(0);

    // The stored document a read gets back: timestamp and both arrays, as an update writes them.
    let mut stored = rawdoc! { "timestamp": 1_i64 };
    for kind in PassKind::ALL {
        let passes = update.passes(kind).expect("both arrays");
        let mut array = RawArrayBuf::new();
        for pass in validate_passes(kind, passes, Millis(1), &limits, &nothing_remembered).expect("valid passes") {
            array.push(pass.0);
        }
        stored.append(kind.field(), array);
    }
    let user = UserId::new(42).expect("user id");
    let freshness = Freshness {
        now: domain::mongodb::bson::DateTime::from_millis(2),
        ttl: Duration::from_secs(60),
        max_skew: Duration::from_secs(300),
    };
    let remembered = VerifiedPayloads::new(4 << 20);

    let mut group = c.benchmark_group("payload_steps_40");
    group.bench_function("parse_put_body", |b| b.iter(|| serde_json::from_slice::<PassUpdate>(&body).expect("valid body")));
    // JSON → BSON and the canonical text's SHA-256, one parse per payload (what an update does per pass).
    group.bench_function("convert_and_hash", |b| {
        b.iter(|| payloads.iter().map(|p| convert_payload(p, &"payload", &limits).expect("valid payload")).collect::<Vec<_>>())
    });
    let mut text = Vec::with_capacity(128 << 10);
    group.bench_function("stored_order_text", |b| {
        b.iter(|| {
            text.clear();
            converted.iter().try_for_each(|doc| json::write_document(doc, TextForm::JsonStringify, &mut text)).expect("printable")
        })
    });
    group.bench_function("canonical_text", |b| {
        b.iter(|| {
            text.clear();
            converted.iter().try_for_each(|doc| json::write_document(doc, TextForm::Canonical, &mut text)).expect("printable")
        })
    });
    group.bench_function("sha256_of_canonical_texts", |b| b.iter(|| Sha256::digest(&text)));
    group.bench_function("canonical_hashes", |b| {
        b.iter(|| converted.iter().map(|doc| hashing::hash(doc, HashForm::Jcs).expect("hashable")).collect::<Vec<_>>())
    });
    group.bench_function("validate_passes", |b| {
        b.iter(|| {
            PassKind::ALL
                .iter()
                .map(|&kind| {
                    let passes = update.passes(kind).expect("both arrays");
                    validate_passes(kind, passes, Millis(1), &limits, &nothing_remembered).expect("valid").len()
                })
                .sum::<usize>()
        })
    });
    group.bench_function("render_every_payload_verified", |b| {
        b.iter(|| read::render(user, Selection::All, &stored, freshness, &VerifiedPayloads::new(0)))
    });
    group.bench_function("render_verdicts_remembered", |b| b.iter(|| read::render(user, Selection::All, &stored, freshness, &remembered)));
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = steps
}
criterion_main!(benches);
