//! The test vectors the Node client (`clients/node/`) is checked against, written by this crate's
//! signing and encryption code.
//!
//! `node_vectors_are_current` fails when `clients/node/vectors.json` differs from what the code produces
//! now; `UPDATE_NODE_VECTORS=1 cargo test -p domain --lib node_vectors` rewrites it. Keys and nonces are
//! fixed here (through [`encryption::encrypt_with_nonce`], which exists in test builds only).

use mongodb::bson::{self, Bson, Document, RawDocumentBuf};
use payload::reader::Doc;
use serde_json::{json, Value as Json};

use crate::authenticity::{self, Verdict};
use crate::encryption::{self, PayloadBinding};
use crate::keys::{secret_json, KeyId, KeyRing, MasterKey, KEY_LEN};
use crate::schema::{PassKind, UserId};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../clients/node/vectors.json");

fn k1_bytes() -> [u8; KEY_LEN] {
    std::array::from_fn(|i| i as u8)
}

const K2_BYTES: [u8; KEY_LEN] = [0x42; KEY_LEN];

/// The ring the Node client loads (current `k1`) and the same keys with `k2` current.
fn rings() -> (String, KeyRing, KeyRing) {
    let (k1, k2) = (MasterKey::from_bytes(k1_bytes()), MasterKey::from_bytes(K2_BYTES));
    let (id1, id2) = (KeyId::parse("k1").unwrap(), KeyId::parse("k2").unwrap());
    let secret = secret_json(&id1, &[(id1.clone(), &k1), (id2.clone(), &k2)]);
    let rotated = secret_json(&id2, &[(id1, &k1), (id2.clone(), &k2)]);
    (secret.to_string(), KeyRing::from_secret_json(&secret).unwrap(), KeyRing::from_secret_json(&rotated).unwrap())
}

const FARE: &str = r#"{"fare":{"amount":2.75,"currency":"USD"},"rides":1,"barcode":"QR-123"}"#;
const NUMBERS: &str = r#"{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001,-0.0,1e21,1e-7,9007199254740991,-9007199254740991,5e-324,1.7976931348623157e308,0.1,100,1e2,123456789012345680000],"string":"\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/","literals":[null,true,false]}"#;
const KEY_ORDER: &str = r#"{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis","\ue000":"Private Use","a":{"z":1,"b":[{"y":2,"x":1}]}}"#;

fn user(id: i64) -> UserId {
    UserId::new(id).unwrap()
}

fn kind(name: &str) -> PassKind {
    PassKind::parse(name).unwrap()
}

/// A stored pass from the vector's fields (any JSON, as the driver would store it) and payload text (as a
/// write converts it).
fn stored_pass(fields: &Json, payload_json: Option<&str>) -> RawDocumentBuf {
    let mut pass: Document = bson::to_document(fields).unwrap();
    if let Some(text) = payload_json {
        pass.insert("payload", payload::convert_payload(text, 16).unwrap().bson.to_document().unwrap());
    }
    RawDocumentBuf::from_document(&pass).unwrap()
}

fn verdict_json(verdict: &Verdict) -> Json {
    match verdict {
        Verdict::Authenticated => json!({ "verdict": "authenticated" }),
        Verdict::Unauthenticated => json!({ "verdict": "unauthenticated" }),
        Verdict::UnknownKey(kid) => json!({ "verdict": "unknown_key", "kid": kid.as_str() }),
        Verdict::Forged(forgery) => json!({ "verdict": "forged", "reason": forgery.as_str() }),
    }
}

struct PassCase {
    name: &'static str,
    user_id: i64,
    array: &'static str,
    fields: Json,
    payload_json: Option<&'static str>,
}

fn pass_cases() -> Vec<(PassCase, bool)> {
    let basic = json!({ "pass_uuid": "p-1", "timestamp": 1_700_000_000_000_i64, "status": "ACTIVE", "free_ticket_status": 0 });
    let case = |name, user_id, array, fields: &Json, payload_json| PassCase { name, user_id, array, fields: fields.clone(), payload_json };
    // (case, signed with the rotated ring: current `k2`)
    vec![
        (case("basic", 6001, "passes", &basic, Some(FARE)), false),
        (case("passes4", 6001, "passes4", &basic, Some(FARE)), false),
        (case("tricky numbers and escapes", 6001, "passes", &basic, Some(NUMBERS)), false),
        (case("member order by UTF-16 code units", 6001, "passes", &basic, Some(KEY_ORDER)), false),
        (
            case(
                "null and absent fields",
                6001,
                "passes",
                &json!({ "pass_uuid": "p-2", "timestamp": 1_700_000_000_000_i64, "status": null }),
                Some("{}"),
            ),
            false,
        ),
        (
            case(
                "empty strings and a fraction",
                6001,
                "passes",
                &json!({ "pass_uuid": "", "timestamp": 1, "status": "", "free_ticket_status": 1.5 }),
                Some(r#"{"e":""}"#),
            ),
            false,
        ),
        (case("no payload", 6001, "passes", &basic, None), false),
        (case("largest user id", 9_007_199_254_740_991, "passes4", &basic, Some(FARE)), false),
        (case("signed with k2", 6001, "passes", &basic, Some(FARE)), true),
    ]
}

fn hex_of(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Every vector, as the file holds them.
fn vectors() -> Json {
    let (secret, ring, rotated) = rings();
    let mut pass_signatures = Vec::new();
    let mut signed_fields = Vec::new();
    for (case, with_k2) in pass_cases() {
        let keys = if with_k2 { &rotated } else { &ring };
        let stored = stored_pass(&case.fields, case.payload_json);
        let (content, _) = authenticity::read_pass(Doc::from(&*stored)).unwrap();
        let signature = authenticity::sign_pass(keys, user(case.user_id), kind(case.array), &content).unwrap();
        let message = authenticity::pass_message(signature.kid.as_str(), user(case.user_id), kind(case.array), &content).unwrap();
        let mut fields = case.fields.clone();
        fields["pass_sig"] = json!(signature.hex);
        fields["pass_sig_kid"] = json!(signature.kid.as_str());
        signed_fields.push(fields.clone());
        pass_signatures.push(json!({
            "name": case.name, "user_id": case.user_id, "array": case.array, "fields": case.fields,
            "payload_json": case.payload_json, "message": hex_of(&message), "pass_sig": signature.hex, "pass_sig_kid": signature.kid.as_str(),
        }));
    }

    // Stored passes that must not read authenticated (and two that must), from the basic case.
    let basic = &signed_fields[0];
    let edit = |name: &str, value: Json| {
        let mut fields = basic.clone();
        match value {
            Json::Null if name != "status" => {
                fields.as_object_mut().unwrap().remove(name);
            }
            value => fields[name] = value,
        }
        fields
    };
    let sig = basic["pass_sig"].as_str().unwrap().to_owned();
    let pass_checks = [
        ("as signed", 6001, "passes", basic.clone(), FARE),
        ("signed with k2, read with k1 current", 6001, "passes", signed_fields[8].clone(), FARE),
        ("status flipped", 6001, "passes", edit("status", json!("EXPIRED")), FARE),
        ("status null", 6001, "passes", edit("status", Json::Null), FARE),
        ("payload replaced", 6001, "passes", basic.clone(), r#"{"x":999}"#),
        ("copied to another user", 6002, "passes", basic.clone(), FARE),
        ("moved to passes4", 6001, "passes4", basic.clone(), FARE),
        ("upper-case hex", 6001, "passes", edit("pass_sig", json!(sig.to_ascii_uppercase())), FARE),
        ("wrong length", 6001, "passes", edit("pass_sig", json!(sig[..62])), FARE),
        ("not hex", 6001, "passes", edit("pass_sig", json!(format!("{}zz", &sig[..62]))), FARE),
        ("unknown key id", 6001, "passes", edit("pass_sig_kid", json!("k9")), FARE),
        ("malformed key id", 6001, "passes", edit("pass_sig_kid", json!("k 1")), FARE),
        ("key id missing", 6001, "passes", edit("pass_sig_kid", Json::Null), FARE),
        ("signature missing", 6001, "passes", edit("pass_sig", Json::Null), FARE),
        (
            "no signature at all",
            6001,
            "passes",
            json!({ "pass_uuid": "p-1", "timestamp": 1_700_000_000_000_i64, "status": "ACTIVE" }),
            FARE,
        ),
    ];
    let pass_checks: Vec<Json> = pass_checks
        .into_iter()
        .map(|(name, user_id, array, fields, payload_json)| {
            let stored = stored_pass(&fields, Some(payload_json));
            let (content, signature) = authenticity::read_pass(Doc::from(&*stored)).unwrap();
            let verdict = authenticity::verify_pass(&ring, user(user_id), kind(array), &content, &signature);
            json!({ "name": name, "user_id": user_id, "array": array, "fields": fields, "payload_json": payload_json, "expected": verdict_json(&verdict) })
        })
        .collect();

    // Documents: only the parts the signature covers.
    let listed = |i: usize| json!({ "pass_sig": signed_fields[i]["pass_sig"], "pass_sig_kid": signed_fields[i]["pass_sig_kid"] });
    let documents = [
        ("two arrays", 6001, json!({ "timestamp": 1_700_000_000_000_i64, "passes": [listed(0), listed(2)], "passes4": [listed(1)] })),
        (
            "an unsigned pass, an item that is not a pass, no passes4",
            6001,
            json!({ "timestamp": 1_700_000_000_000_i64, "passes": [{ "pass_uuid": "legacy" }, 7, listed(0)] }),
        ),
        ("empty and null arrays, a fractional timestamp", 6001, json!({ "timestamp": 1_700_000_000_000.5, "passes": [], "passes4": null })),
        ("no timestamp, passes not an array", 9_007_199_254_740_991, json!({ "passes": "x", "passes4": [listed(7)] })),
    ];
    let mut document_signatures = Vec::new();
    for (name, user_id, document) in &documents {
        let stored = RawDocumentBuf::from_document(&bson::to_document(document).unwrap()).unwrap();
        let (content, _) = authenticity::read_document(Doc::from(&*stored)).unwrap();
        let signature = authenticity::sign_document(&ring, user(*user_id), &content).unwrap();
        let message = authenticity::document_message("k1", user(*user_id), &content).unwrap();
        document_signatures.push(json!({
            "name": name, "user_id": user_id, "document": document, "message": hex_of(&message),
            "doc_sig": signature.hex, "doc_sig_kid": signature.kid.as_str(),
        }));
    }
    let signed_document = {
        let mut document = documents[0].2.clone();
        document["doc_sig"] = document_signatures[0]["doc_sig"].clone();
        document["doc_sig_kid"] = json!("k1");
        document
    };
    let reshaped = |name: &str, user_id: i64, change: &dyn Fn(&mut Json)| {
        let mut document = signed_document.clone();
        change(&mut document);
        (name.to_owned(), user_id, document)
    };
    let document_checks = [
        reshaped("as signed", 6001, &|_| {}),
        reshaped("a pass dropped", 6001, &|d| {
            d["passes"].as_array_mut().unwrap().remove(1);
        }),
        reshaped("a pass duplicated", 6001, &|d| {
            let first = d["passes"][0].clone();
            d["passes"].as_array_mut().unwrap().push(first);
        }),
        reshaped("passes reordered", 6001, &|d| d["passes"].as_array_mut().unwrap().swap(0, 1)),
        reshaped("a pass moved to the other array", 6001, &|d| {
            let moved = d["passes"].as_array_mut().unwrap().remove(0);
            d["passes4"].as_array_mut().unwrap().push(moved);
        }),
        reshaped("copied to another user", 6002, &|_| {}),
        reshaped("timestamp changed", 6001, &|d| d["timestamp"] = json!(1_700_000_000_001_i64)),
        reshaped("unsigned", 6001, &|d| {
            d.as_object_mut().unwrap().remove("doc_sig");
            d.as_object_mut().unwrap().remove("doc_sig_kid");
        }),
    ];
    let document_checks: Vec<Json> = document_checks
        .into_iter()
        .map(|(name, user_id, document)| {
            let stored = RawDocumentBuf::from_document(&bson::to_document(&document).unwrap()).unwrap();
            let (content, signature) = authenticity::read_document(Doc::from(&*stored)).unwrap();
            let verdict = authenticity::verify_document(&ring, user(user_id), &content, &signature);
            json!({ "name": name, "user_id": user_id, "document": document, "expected": verdict_json(&verdict) })
        })
        .collect();

    // Encryption with fixed nonces.
    let encryption_cases = [
        ("basic", 6001, "passes", "p-1", FARE, [0_u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
        ("tricky payload, largest user id", 9_007_199_254_740_991, "passes4", "é-uuid", NUMBERS, [0xff; 12]),
        ("empty payload", 6001, "passes", "", "{}", [0x5a; 12]),
    ];
    let mut encryptions = Vec::new();
    let mut envelopes = Vec::new();
    for (name, user_id, array, pass_uuid, payload_json, nonce) in encryption_cases {
        let at = PayloadBinding { user: user(user_id), kind: kind(array), pass_uuid };
        let plaintext = payload::convert_payload(payload_json, 16).unwrap().bson;
        let envelope = encryption::encrypt_with_nonce(&ring, &at, &plaintext, nonce);
        let envelope = envelope_json(&envelope.to_document().unwrap());
        envelopes.push((user_id, array, pass_uuid, envelope.clone()));
        encryptions.push(json!({
            "name": name, "user_id": user_id, "array": array, "pass_uuid": pass_uuid, "payload_json": payload_json,
            "plaintext": hex_of(plaintext.as_bytes()), "associated_data": hex_of(&encryption::associated_data("k1", &at)), "envelope": envelope,
        }));
    }
    let (user_id, array, pass_uuid, envelope) = envelopes[0].clone();
    let altered = |name: &str, member: &str, value: Json| {
        let mut envelope = envelope.clone();
        envelope[member] = value;
        (name.to_owned(), user_id, pass_uuid.to_owned(), envelope)
    };
    let ct = envelope["ct"].as_str().unwrap().to_owned();
    let mut damaged = hex::decode(&ct).unwrap();
    damaged[3] ^= 0x40;
    let decrypt_failures = [
        altered("damaged ciphertext", "ct", json!(hex::encode(&damaged))),
        altered("one byte short", "ct", json!(ct[..ct.len() - 2])),
        altered("shorter than the tag", "ct", json!(ct[..30])),
        altered("nonce of 11 bytes", "nonce", json!(envelope["nonce"].as_str().unwrap()[..22])),
        altered("unknown key id", "kid", json!("k9")),
        altered("relabelled key id", "kid", json!("k2")),
        altered("other algorithm", "alg", json!("A128GCM")),
        ("moved to another pass".to_owned(), user_id, "p-2".to_owned(), envelope.clone()),
        ("moved to another user".to_owned(), 6002, pass_uuid.to_owned(), envelope.clone()),
    ];
    let decrypt_failures: Vec<Json> = decrypt_failures
        .into_iter()
        .map(|(name, user_id, pass_uuid, envelope)| {
            let stored = RawDocumentBuf::from_document(&envelope_document(&envelope)).unwrap();
            let at = PayloadBinding { user: user(user_id), kind: kind(array), pass_uuid: &pass_uuid };
            let error = encryption::decrypt_payload(&ring, &at, Doc::from(&*stored)).unwrap_err();
            json!({ "name": name, "user_id": user_id, "array": array, "pass_uuid": pass_uuid, "envelope": envelope, "error": error.code() })
        })
        .collect();

    json!({
        "about": "Written by `domain` (src/node_vectors.rs) from the Rust signing and encryption code; checked by test.mjs. Keys and nonces are fixed for the vectors only.",
        "key_secret": secret,
        "pass_signatures": pass_signatures,
        "pass_checks": pass_checks,
        "document_signatures": document_signatures,
        "document_checks": document_checks,
        "encryptions": encryptions,
        "decrypt_failures": decrypt_failures,
    })
}

/// An envelope with its binaries as hex.
fn envelope_json(envelope: &Document) -> Json {
    json!({
        "alg": envelope.get_str("alg").unwrap(), "kid": envelope.get_str("kid").unwrap(),
        "nonce": hex::encode(envelope.get_binary_generic("nonce").unwrap()), "ct": hex::encode(envelope.get_binary_generic("ct").unwrap()),
    })
}

fn envelope_document(envelope: &Json) -> Document {
    let binary = |name: &str| {
        Bson::Binary(bson::Binary {
            subtype: bson::spec::BinarySubtype::Generic,
            bytes: hex::decode(envelope[name].as_str().unwrap()).unwrap(),
        })
    };
    let mut document = Document::new();
    document.insert("alg", envelope["alg"].as_str().unwrap());
    document.insert("kid", envelope["kid"].as_str().unwrap());
    document.insert("nonce", binary("nonce"));
    document.insert("ct", binary("ct"));
    document
}

#[test]
fn node_vectors_are_current() {
    let mut expected = serde_json::to_string_pretty(&vectors()).unwrap();
    expected.push('\n');
    if std::env::var_os("UPDATE_NODE_VECTORS").is_some() {
        std::fs::write(PATH, &expected).unwrap();
    }
    let committed = std::fs::read_to_string(PATH).unwrap_or_default();
    assert!(committed == expected, "{PATH} differs from what the code produces: run `UPDATE_NODE_VECTORS=1 cargo test -p domain --lib node_vectors`, then `node --test clients/node/`");
}

/// The vectors hold what the unit tests hold: the checks read as the cases name them.
#[test]
fn node_vectors_say_what_their_names_say() {
    let vectors = vectors();
    for check in vectors["pass_checks"].as_array().unwrap().iter().chain(vectors["document_checks"].as_array().unwrap()) {
        let (name, verdict) = (check["name"].as_str().unwrap(), check["expected"]["verdict"].as_str().unwrap());
        let expected = match name {
            "as signed" | "signed with k2, read with k1 current" => "authenticated",
            "unknown key id" => "unknown_key",
            "no signature at all" | "unsigned" => "unauthenticated",
            _ => "forged",
        };
        assert_eq!(verdict, expected, "{name}");
    }
}
