//! Stored documents as an attacker with write access to the shared collection could write them: every
//! document the database accepts reads without a crash or a 500, no response names a member twice, and
//! `verified` is never earned by anything but a payload text whose SHA-256 is the stored hash.
//!
//! Each case is inserted as raw BSON, bypassing the service, then read through the real GET handler.
//! An engine that refuses to store a case says so on stderr; that case then has nothing to read.

use domain::mongodb::bson::{doc, rawdoc, Bson, DateTime, Document, RawDocumentBuf};
use domain::mongodb::Client;
use domain::AccessConfig;
use integration_tests::{app_state_on, call, server, strict_json, verified_payloads_match_their_hashes, Auth, HttpEvent, Reply, TestDb};
use lambda_adapter::{AppState, Metric, Operation};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const USER: i64 = 6001;
const TICKETS: &str = "/v1/users/6001/tickets";

fn sha256_hex(text: &[u8]) -> String {
    Sha256::digest(text).iter().map(|b| format!("{b:02x}")).collect()
}

fn now_ms() -> i64 {
    DateTime::now().timestamp_millis()
}

/// A test database, and function state on a client without command monitoring: monitoring turns every
/// command and reply into a `Document`, recursively, which the deepest documents here would overflow
/// (deployed functions run without it).
async fn setup(prefix: &str) -> (TestDb, AppState) {
    let db = TestDb::new(prefix).await;
    let client = Client::with_uri_str(&server().uri).await.unwrap();
    let state = app_state_on(&client, &db, AccessConfig::default());
    (db, state)
}

/// Stores a document exactly as given; `false` (with the engine's reason on stderr) when it refuses it.
async fn store(state: &AppState, what: &str, document: RawDocumentBuf) -> bool {
    let raw = state.cache.collection().clone_with_type::<RawDocumentBuf>();
    let _ = raw.delete_many(doc! { "user_id": USER }).await;
    match raw.insert_one(document).await {
        Ok(_) => true,
        Err(e) => {
            eprintln!("[stored_documents] the engine refused to store {what}: {e}");
            false
        }
    }
}

async fn get(state: &AppState, query: &[(&str, &str)]) -> Reply {
    let mut event = HttpEvent::new("GET", TICKETS).auth(Auth::user(USER));
    for (k, v) in query {
        event = event.query(k, v);
    }
    call(state, Operation::GetTickets, event).await
}

/// What every successful read must satisfy, whatever was stored: valid I-JSON (no member named twice),
/// and `verified` only where the printed payload text hashes to the printed hash.
fn assert_honest(reply: &Reply, what: &str) -> Value {
    assert_eq!(reply.status, 200, "{what}: {}", String::from_utf8_lossy(&reply.raw_body));
    let body = strict_json(&reply.raw_body).unwrap_or_else(|e| panic!("{what}: {e}: {}", String::from_utf8_lossy(&reply.raw_body)));
    verified_payloads_match_their_hashes(&reply.raw_body).unwrap_or_else(|e| panic!("{what}: {e}"));
    body
}

fn pass_doc(uuid: &str, payload: Document, hash: &str) -> Document {
    doc! { "pass_uuid": uuid, "timestamp": now_ms(), "status": "ACTIVE", "payload": payload, "payload_hash": hash }
}

fn document_with(passes: Vec<Bson>) -> RawDocumentBuf {
    let doc = doc! { "user_id": USER, "timestamp": now_ms(), "passes": passes };
    RawDocumentBuf::from_document(&doc).unwrap()
}

/// `{"d": {"d": … {"leaf": 1}}}` with `levels` objects, built as bytes (no recursion anywhere).
fn nested_bytes(levels: usize) -> Vec<u8> {
    let leaf: &[u8] = &[15, 0, 0, 0, 0x10, b'l', b'e', b'a', b'f', 0, 1, 0, 0, 0, 0];
    let mut out = Vec::with_capacity(levels * 8 + leaf.len());
    for level in (1..levels).rev() {
        let size = (leaf.len() + 8 * level) as i32;
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&[0x03, b'd', 0]);
    }
    out.extend_from_slice(leaf);
    out.extend(std::iter::repeat_n(0, levels - 1));
    out
}

/// Issue reproduction 1: a stored `"integrity": "verified"` must not override the computed verdict, and a
/// legitimate PUT of the same pass must not carry it over.
#[tokio::test]
async fn a_stored_integrity_field_never_overrides_the_verdict_nor_survives_a_put() {
    let (db, state) = setup("sd_override").await;
    let forged = doc! {
        "pass_uuid": "p", "status": "ACTIVE", "payload": { "amount": 999 },
        "payload_hash": sha256_hex(br#"{"amount":1}"#), "integrity": "verified",
    };
    let document = doc! { "user_id": USER, "timestamp": 1_795_616_987_000_i64, "passes": [forged] };
    assert!(store(&state, "the forged verdict", RawDocumentBuf::from_document(&document).unwrap()).await);
    let reply = get(&state, &[]).await;
    let body = assert_honest(&reply, "forged verdict");
    assert_eq!(body["passes"][0]["integrity"], "mismatch");
    assert_eq!(String::from_utf8_lossy(&reply.raw_body).matches("\"integrity\"").count(), 1, "one integrity member");

    let put = call(
        &state,
        Operation::UpdateTickets,
        HttpEvent::new("PUT", TICKETS)
            .auth(Auth::Iam)
            .json(&json!({ "timestamp": now_ms(), "passes": [{ "pass_uuid": "p", "status": "ACTIVE", "payload": { "amount": 1 } }] })),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let stored = db.raw(USER).await.unwrap();
    let Some(Bson::Document(pass)) = stored.get_array("passes").unwrap().first().cloned() else { panic!("a pass") };
    assert!(!pass.contains_key("integrity"), "the merge dropped the stored verdict: {pass}");
    let body = assert_honest(&get(&state, &[]).await, "after the PUT");
    assert_eq!(body["passes"][0]["integrity"], "verified");
}

/// Issue reproductions 3–6 and the other shapes the database accepts, each read through GET.
#[tokio::test]
async fn every_document_the_database_accepts_reads_honestly_without_a_5xx() {
    let (_db, state) = setup("sd_table").await;
    let good_payload = doc! { "amount": 1 };
    let good_hash = sha256_hex(br#"{"amount":1}"#);

    let one_pass = |pass: RawDocumentBuf| {
        let mut passes = domain::mongodb::bson::RawArrayBuf::new();
        passes.push(pass);
        rawdoc! { "user_id": USER, "timestamp": now_ms(), "passes": passes }
    };

    let mut deep = Vec::new();
    for levels in [1_000, 10_000] {
        let payload = RawDocumentBuf::from_bytes(nested_bytes(levels)).unwrap();
        let mut pass = RawDocumentBuf::from_document(&pass_doc("deep", doc! {}, &good_hash)).unwrap();
        pass.append("payload", payload.clone());
        pass.append("vendor_tree", payload);
        deep.push((levels, one_pass(pass)));
    }

    let future = now_ms() + 24 * 3600 * 1000;
    type Check = Box<dyn Fn(&Value)>;
    let cases: Vec<(&str, RawDocumentBuf, Check)> = vec![
        (
            "passes stored as a string",
            RawDocumentBuf::from_document(&doc! { "user_id": USER, "timestamp": now_ms(), "passes": "x", "passes4": { "a": 1 } }).unwrap(),
            Box::new(|body| {
                assert_eq!((&body["passes"], &body["passes4"]), (&json!([]), &json!([])));
                assert_eq!(body["degraded"][0], json!({ "path": "passes", "reason": "stored as a string, not an array" }));
                assert_eq!(body["degraded"][1], json!({ "path": "passes4", "reason": "stored as an object, not an array" }));
            }),
        ),
        (
            "items that are not passes",
            document_with(vec![Bson::String("x".into()), Bson::Int32(5), pass_doc("ok", good_payload.clone(), &good_hash).into()]),
            Box::new(|body| {
                assert_eq!(body["passes"].as_array().map(Vec::len), Some(1));
                assert_eq!(body["passes"][0]["integrity"], "verified");
                assert_eq!(body["degraded"][0]["path"], "passes[0]");
                assert_eq!(body["degraded"][1]["path"], "passes[1]");
            }),
        ),
        (
            "an upper-case stored hash",
            document_with(vec![pass_doc("upper", good_payload.clone(), &good_hash.to_uppercase()).into()]),
            Box::new(move |body| {
                assert_eq!(body["passes"][0]["integrity"], "verified");
                assert_eq!(body["passes"][0]["payload_hash"], sha256_hex(br#"{"amount":1}"#));
            }),
        ),
        (
            "integers beyond 2^53 in a payload and an extra field",
            document_with(vec![{
                let mut pass = pass_doc("big", doc! { "n": 9_007_199_254_740_993_i64 }, &sha256_hex(br#"{"n":9007199254740992}"#));
                pass.insert("vendor_id", 9_007_199_254_740_993_i64);
                pass.into()
            }]),
            Box::new(|body| {
                let pass = &body["passes"][0];
                assert_eq!(pass["integrity"], "unverifiable");
                assert!(pass.to_string().contains(r#""n":9007199254740993"#), "exact digits: {pass}");
                assert_eq!(pass["vendor_id"].as_u64(), Some(9_007_199_254_740_993));
            }),
        ),
        (
            "NaN, a date and an unknown algorithm",
            document_with(vec![
                pass_doc("nan", doc! { "n": f64::NAN }, &sha256_hex(br#"{"n":null}"#)).into(),
                pass_doc("date", doc! { "at": DateTime::from_millis(0) }, &sha256_hex(br#"{"at":"1970-01-01T00:00:00.000Z"}"#)).into(),
                {
                    let mut pass = pass_doc("alg", good_payload.clone(), &good_hash);
                    pass.insert("payload_hash_alg", "md5");
                    pass.into()
                },
            ]),
            Box::new(|body| {
                let verdicts: Vec<_> = body["passes"].as_array().unwrap().iter().map(|p| p["integrity"].clone()).collect();
                assert_eq!(verdicts, [json!("unverifiable"), json!("unverifiable"), json!("unverifiable")]);
            }),
        ),
        (
            "a timestamp no clock wrote",
            RawDocumentBuf::from_document(
                &doc! { "user_id": USER, "timestamp": 1e300, "passes": [pass_doc("t", good_payload.clone(), &good_hash)] },
            )
            .unwrap(),
            Box::new(|body| {
                assert_eq!((&body["timestamp"], &body["stale"]), (&Value::Null, &json!(true)));
                assert_eq!(body["degraded"][0]["path"], "timestamp");
            }),
        ),
        (
            "a timestamp a day ahead",
            RawDocumentBuf::from_document(&doc! { "user_id": USER, "timestamp": future, "passes": [] }).unwrap(),
            Box::new(|body| assert_eq!(body["stale"], json!(true), "not fresh for ever")),
        ),
    ];
    for (what, document, check) in cases.into_iter().chain(deep.into_iter().map(|(levels, document)| {
        let check: Check = Box::new(move |body: &Value| {
            let pass = &body["passes"][0];
            assert_eq!((&pass["integrity"], &pass["payload"]), (&json!("unverifiable"), &Value::Null), "{levels} levels");
            assert!(pass.get("vendor_tree").is_none(), "{levels} levels: the extra field is left out");
            let paths: Vec<_> = body["degraded"].as_array().unwrap().iter().map(|d| d["path"].clone()).collect();
            assert_eq!(paths, [json!("passes[0].payload"), json!("passes[0].vendor_tree")]);
        });
        ("a payload nested deeper than any JSON text", document, check)
    })) {
        if store(&state, what, document).await {
            let body = assert_honest(&get(&state, &[]).await, what);
            check(&body);
        }
    }
    assert!(state.metrics.total(Metric::DegradedRead) >= 4.0);
    assert!(state.metrics.total(Metric::IntegrityUnverifiable) >= 3.0);
}

/// Issue reproduction 4: `{a:1, a:2}` is never verified, whether its hash covers the text the old writer
/// printed (`{"a":1,"a":2}`) or what Node reads (`{"a":2}`), and it is shown with each name once. Engines
/// that keep repeated names (DocumentDB) store it as sent; one that collapses them (the stand-in's Python
/// dict) stores `{a:2}`, which is then an ordinary payload with an ordinary verdict.
#[tokio::test]
async fn repeated_member_names_are_never_verified_and_shown_once() {
    let (_db, state) = setup("sd_repeated").await;
    let mut payload = RawDocumentBuf::new();
    payload.append("a", 1_i32);
    payload.append("a", 2_i32);
    for (hashed, kept_verdict, collapsed_verdict) in
        [(r#"{"a":1,"a":2}"#, "unverifiable", "mismatch"), (r#"{"a":2}"#, "unverifiable", "verified")]
    {
        let mut pass = RawDocumentBuf::new();
        pass.append("pass_uuid", "dup");
        pass.append("status", "FIRST");
        pass.append("payload", payload.clone());
        pass.append("payload_hash", sha256_hex(hashed.as_bytes()));
        pass.append("vendor", 1_i32);
        pass.append("vendor", 2_i32);
        pass.append("status", "LAST");
        let mut passes = domain::mongodb::bson::RawArrayBuf::new();
        passes.push(pass);
        if !store(&state, "repeated names", rawdoc! { "user_id": USER, "timestamp": now_ms(), "passes": passes }).await {
            continue;
        }
        let stored =
            state.cache.collection().clone_with_type::<RawDocumentBuf>().find_one(doc! { "user_id": USER }).await.unwrap().unwrap();
        let stored_payload = stored.get_array("passes").unwrap().into_iter().next().unwrap().unwrap();
        let kept = stored_payload.as_document().unwrap().get_document("payload").unwrap().into_iter().count() == 2;
        let body = assert_honest(&get(&state, &[]).await, "repeated names");
        let pass = &body["passes"][0];
        assert_eq!(pass["integrity"], if kept { kept_verdict } else { collapsed_verdict }, "hash over {hashed}; kept: {kept}");
        assert_eq!((&pass["payload"], &pass["status"], &pass["vendor"]), (&json!({ "a": 2 }), &json!("LAST"), &json!(2)));
    }
}

/// Invalid UTF-8 inside strings and names: the database stores bytes; a read shows the rest.
#[tokio::test]
async fn invalid_utf8_is_left_out_and_named() {
    let (_db, state) = setup("sd_utf8").await;
    let placeholders = ["\u{11}\u{12}\u{13}\u{14}", "\u{15}\u{16}\u{17}\u{18}", "\u{19}\u{1a}\u{1b}\u{1c}"];
    let mut pass = pass_doc("u", doc! { "s": placeholders[0] }, &sha256_hex(b"-"));
    pass.insert("status", placeholders[1]);
    pass.insert(placeholders[2], "vendor");
    let mut bytes = RawDocumentBuf::from_document(&doc! { "user_id": USER, "timestamp": now_ms(), "passes": [pass] }).unwrap().into_bytes();
    // Same length, no longer UTF-8: 0xFF never appears in UTF-8.
    for placeholder in placeholders {
        let at = bytes.windows(4).position(|w| w == placeholder.as_bytes()).unwrap();
        bytes[at..at + 4].copy_from_slice(&[0xFF; 4]);
    }
    let document = RawDocumentBuf::from_bytes(bytes).unwrap();
    if store(&state, "invalid UTF-8", document).await {
        let body = assert_honest(&get(&state, &[]).await, "invalid UTF-8");
        let pass = &body["passes"][0];
        assert_eq!((&pass["status"], &pass["payload"], &pass["integrity"]), (&Value::Null, &Value::Null, &json!("unverifiable")));
        let paths: Vec<_> = body["degraded"].as_array().unwrap().iter().map(|d| d["path"].as_str().unwrap().to_owned()).collect();
        assert_eq!(paths.len(), 3, "{paths:?}");
        assert!(paths.contains(&"passes[0].status".to_owned()) && paths.contains(&"passes[0].payload".to_owned()), "{paths:?}");
    }
}

/// A document whose read would not fit Lambda's 6 MB response: a JSON error that says what to ask for.
#[tokio::test]
async fn a_read_over_lambdas_response_limit_answers_what_to_ask_for() {
    let (_db, state) = setup("sd_large").await;
    let big = "x".repeat(2_400_000);
    let pass = |uuid: &str| doc! { "pass_uuid": uuid, "status": "ACTIVE", "payload": { "blob": &big } };
    let document = doc! { "user_id": USER, "timestamp": now_ms(), "passes": [pass("a"), pass("b")], "passes4": [pass("c"), pass("d")] };
    assert!(store(&state, "a 9.6 MB document", RawDocumentBuf::from_document(&document).unwrap()).await);
    let reply = get(&state, &[]).await;
    assert_eq!((reply.status, reply.error_code()), (422, Some("response_too_large")), "{}", reply.body);
    assert!(reply.body["error"]["message"].as_str().unwrap().contains("format=passes"));
    assert_eq!(state.metrics.total(Metric::ResponseTooLarge), 1.0);
    let half = get(&state, &[("format", "passes")]).await;
    assert_eq!(half.status, 200);
    assert!(half.raw_body.len() > 4_800_000);
}

/// Issue reproduction 2: decimal literals are stored as the correctly rounded double, and a client that
/// hashed the RFC 8785 text (as Node prints the numbers) is not refused.
#[tokio::test]
async fn put_stores_the_correctly_rounded_double_of_every_literal() {
    let (db, state) = setup("sd_numbers").await;
    let literals = ["9007199254740993.0", "1.00000000000000011102230246251565", "2.4703282292062328e-324", "1.7976931348623158e308"];
    // What Node's JSON.parse then JSON.stringify gives each (tests/fixtures/number_oracle.json).
    let expected = ["9007199254740992", "1", "5e-324", "1.7976931348623157e+308"];
    let payload_text = format!(r#"{{"a":{},"b":{},"c":{},"d":{}}}"#, literals[0], literals[1], literals[2], literals[3]);
    let canonical = format!(r#"{{"a":{},"b":{},"c":{},"d":{}}}"#, expected[0], expected[1], expected[2], expected[3]);
    let body = format!(
        r#"{{"timestamp":{},"passes":[{{"pass_uuid":"n","status":"ACTIVE","payload":{payload_text},"payload_hash":"{}"}}]}}"#,
        now_ms(),
        sha256_hex(canonical.as_bytes())
    );
    let reply = call(&state, Operation::UpdateTickets, HttpEvent::new("PUT", TICKETS).auth(Auth::Iam).body(body)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let stored = db.raw(USER).await.unwrap();
    let Some(Bson::Document(pass)) = stored.get_array("passes").unwrap().first().cloned() else { panic!("a pass") };
    let payload = pass.get_document("payload").unwrap();
    let numbers: Vec<f64> = ["a", "b", "c", "d"].iter().map(|k| payload.get_f64(k).unwrap()).collect();
    assert_eq!(numbers, [9_007_199_254_740_992.0, 1.0, 5e-324, f64::MAX]);
    let read = assert_honest(&get(&state, &[]).await, "the numbers");
    assert_eq!(read["passes"][0]["integrity"], "verified");
    let expected_payload: Value = serde_json::from_str(&canonical).unwrap();
    assert_eq!(read["passes"][0]["payload"], expected_payload);
}

/// Integers beyond ±(2^53 - 1) are refused the same way in a payload and in an extra pass field.
#[tokio::test]
async fn put_refuses_inexact_integers_in_payloads_and_extra_fields_alike() {
    let (db, state) = setup("sd_ints").await;
    for pass in [
        json!({ "pass_uuid": "a", "status": "S", "payload": { "n": 9_007_199_254_740_993_i64 } }),
        json!({ "pass_uuid": "a", "status": "S", "payload": {}, "vendor_id": 9_007_199_254_740_993_i64 }),
        json!({ "pass_uuid": "a", "status": "S", "payload": {}, "vendor": { "nested": [9_007_199_254_740_993_i64] } }),
    ] {
        let reply =
            call(&state, Operation::UpdateTickets, HttpEvent::new("PUT", TICKETS).auth(Auth::Iam).json(&json!({ "passes": [pass] }))).await;
        assert_eq!((reply.status, reply.error_code()), (422, Some("validation_failed")), "{}", reply.body);
        assert!(reply.body["error"]["message"].as_str().unwrap().contains("9007199254740993"), "{}", reply.body);
    }
    assert!(db.raw(USER).await.is_none());
}

/// Logs stored as anything (not arrays, items that are not entries, errors nested thousands of levels
/// deep) never fail a push, a sweep or the error summary: a push replaces a log that is not an array, and
/// the sweeper and the summary read only what is an entry.
#[tokio::test]
async fn damaged_logs_never_stop_a_push_a_sweep_or_the_error_report() {
    let (_db, state) = setup("sd_logs").await;
    let old = "2020-01-01T00:00:00.000Z";
    let deep = RawDocumentBuf::from_bytes(nested_bytes(5_000)).unwrap();
    let mut entries = domain::mongodb::bson::RawArrayBuf::new();
    entries.push("not an entry");
    entries.push(rawdoc! { "server_time": old, "errors": [deep.clone()] });
    entries.push(rawdoc! { "server_time": deep.clone(), "errors": ["E1"] });
    entries.push(rawdoc! { "server_time": old, "errors": [{ "code": "E2" }] });
    let document = rawdoc! { "user_id": USER, "timestamp": now_ms(), "passesLog": entries, "passes4Log": "not a log" };
    if !store(&state, "damaged logs", document).await {
        return;
    }
    let around_old =
        domain::ErrorQuery::new(DateTime::from_millis(1_577_000_000_000), DateTime::from_millis(1_578_000_000_000), None, None).unwrap();
    let summary = state.cache.error_report(&around_old).await.unwrap();
    let codes: Vec<_> = summary.by_code.iter().map(|c| (c.code.as_str(), c.count)).collect();
    assert!(codes.contains(&("E2", 1)) && codes.contains(&("unknown", 1)), "{codes:?}");

    let report = state.cache.sweep(DateTime::now()).await.unwrap();
    assert_eq!(report.trimmed_log_entries, 2, "{report:?}");
    let kept = state.cache.collection().clone_with_type::<RawDocumentBuf>().find_one(doc! { "user_id": USER }).await.unwrap().unwrap();
    assert_eq!(kept.get_array("passesLog").unwrap().into_iter().count(), 2, "the entry that is not one and the undated one stay");
    assert_eq!(kept.get_str("passes4Log").unwrap(), "not a log", "the sweeper changes no log it cannot read");

    let push = call(
        &state,
        Operation::PushLog,
        HttpEvent::new("POST", "/v1/users/6001/logs").auth(Auth::Iam).json(&json!({ "kind": "passes4", "errors": ["E3"], "id": "x" })),
    )
    .await;
    assert_eq!(push.status, 201, "{}", push.body);
    let pushed = state.cache.collection().clone_with_type::<RawDocumentBuf>().find_one(doc! { "user_id": USER }).await.unwrap().unwrap();
    let log: Vec<_> = pushed
        .get_array("passes4Log")
        .unwrap()
        .into_iter()
        .map(|e| e.unwrap().as_document().unwrap().get_str("id").unwrap().to_owned())
        .collect();
    assert_eq!(log, ["x"], "the push replaced what was not a log");
}
