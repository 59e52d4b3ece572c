//! Criterion: the request steps of the update and read paths that live in `domain` (parsing a PUT body,
//! validating its passes, rendering a read) over the benchmark user's 40 passes, in process and without a
//! database. The payload steps inside them are timed alone in `payload/benches/payload_steps.rs`.

use std::time::Duration;

use bench::data::twenty_passes;
use criterion::{criterion_group, criterion_main, Criterion};
use domain::input::{validate_passes, PassUpdate};
use domain::mongodb::bson::{rawdoc, RawArrayBuf};
use domain::read::{self, Freshness};
use domain::{Limits, Millis, PassFilter, PassKind, Selection, UserId};
use payload::{ConvertedPayloads, VerifiedPayloads};

fn steps(c: &mut Criterion) {
    let body = serde_json::to_vec(&twenty_passes(None)).expect("body");
    let update: PassUpdate = serde_json::from_slice(&body).expect("valid body");
    let limits = Limits::default();
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

    let mut group = c.benchmark_group("request_steps_40");
    group.sample_size(30).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    group.bench_function("parse_put_body", |b| b.iter(|| serde_json::from_slice::<PassUpdate>(&body).expect("valid body")));
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
        b.iter(|| read::render(user, Selection::All, &PassFilter::default(), &stored, freshness, &VerifiedPayloads::new(0)))
    });
    group.bench_function("render_verdicts_remembered", |b| {
        b.iter(|| read::render(user, Selection::All, &PassFilter::default(), &stored, freshness, &remembered))
    });
    group.finish();
}

criterion_group!(benches, steps);
criterion_main!(benches);
