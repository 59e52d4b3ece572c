//! Request bodies and paths as clients may send them: parsing and validation never panic, and whatever
//! validation accepts is stored in a form that verifies on read.
#![no_main]

use domain::input::{validate_log_entry, validate_passes};
use domain::{Limits, LogEntryInput, Millis, PassKind, PassUpdate};
use lambda_adapter::handlers::parse_body;
use lambda_http::{Body, Request};
use libfuzzer_sys::fuzz_target;
use payload::hash::verify_into;
use payload::{ConvertedPayloads, Integrity, JCS_ALG};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let request = Request::new(Body::Binary(data.to_vec()));

    if let Ok(update) = parse_body::<PassUpdate>(&request, limits.max_request_bytes) {
        for kind in PassKind::ALL {
            let Some(passes) = update.passes(kind) else { continue };
            let Ok(valid) = validate_passes(kind, passes, Millis(1), &limits, &ConvertedPayloads::new(1 << 20)) else { continue };
            for pass in valid {
                let hash = pass.0.get_str("payload_hash").expect("a hash");
                assert!(hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
                assert_eq!(pass.0.get_str("payload_hash_alg").ok(), Some(JCS_ALG));
                // What is stored verifies when it is read back.
                let payload = pass.0.get_document("payload").expect("a payload");
                let mut text = Vec::new();
                assert_eq!(
                    verify_into(payload, Some(hash), Some(JCS_ALG), &mut text),
                    (Integrity::Verified, Ok(())),
                    "{:?}",
                    pass.0
                );
            }
        }
    }
    if let Ok(entry) = parse_body::<LogEntryInput>(&request, limits.max_request_bytes) {
        if let Ok(stored) = validate_log_entry(&entry, &limits) {
            assert!(matches!(stored.get("errors"), Ok(Some(_))) && matches!(stored.get("server_time"), Ok(None)));
        }
    }

    let path = String::from_utf8_lossy(&data[..data.len().min(256)]);
    if let Ok(target) = lambda_adapter::routes::resolve("GET", &path, None, None) {
        assert!(target.user.is_none_or(|user| user.get() > 0));
    }
});
