//! A read: the stored document, as the JSON clients receive, with every payload verified as it is written.
//!
//! The raw reply is walked once. Each payload's text is written straight into the response in the form
//! its hash covers (RFC 8785 for `sha256-jcs`, `JSON.stringify` for legacy passes) and hashed from there,
//! so a client can check `sha256(payload text) == payload_hash` itself, and nothing is printed twice.
//!
//! Every document the database accepts renders: the collection is shared, and anyone who can write to it
//! can store any BSON. What cannot be shown (a `passes` that is not an array, an item that is not a pass,
//! invalid UTF-8, nesting beyond [`text::MAX_DEPTH`], corrupt framing) is left out or shown as `null` and
//! named in the response's `degraded` list; a stored field can never stand in for one the service computes.

use std::ops::Range;
use std::time::Duration;

use mongodb::bson::{DateTime, RawDocument};
use payload::hash::{is_sha256_hex, verify_into, Integrity};
use payload::reader::{CorruptBson, Doc, Value};
use payload::text::{self, TextForm};
use payload::VerifiedPayloads;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::pass_filter::PassFilter;
use crate::schema::{field, reserved, JsNumber, Millis, PassKind, Selection, UserId};

/// A cached document as a read returns it.
#[derive(Debug, Clone)]
pub struct CachedTickets {
    pub user_id: UserId,
    pub selection: Selection,
    /// The stored timestamp; `None` when missing or not a time (then the document is stale).
    pub timestamp: Option<Millis>,
    /// Time since `timestamp`; `None` when the document has no timestamp.
    pub age: Option<Duration>,
    /// Older than the freshness TTL, undated, or dated implausibly far in the future.
    pub stale: bool,
    /// How long the document stays fresh from now (zero when stale).
    pub fresh_for: Duration,
    /// The requested arrays, in request order; a missing array reads as empty.
    pub arrays: Vec<(PassKind, Vec<CheckedPass>)>,
    /// Parts of the stored document that could not be shown, and why.
    pub degraded: Vec<DegradedPart>,
    /// A strong validator of `json` apart from its age (see [`body_validator`]).
    pub etag: String,
    /// The read as JSON: `user_id`, `timestamp`, `age_seconds`, `stale`, the requested arrays (each pass
    /// with its fields, its `integrity` and the stored fields this service does not own, minus Mongoose's
    /// `_id` and the [`reserved`] names), and `degraded` when something was left out.
    pub json: String,
}

impl CachedTickets {
    /// Passes with this verdict.
    pub fn count(&self, integrity: Integrity) -> usize {
        self.arrays.iter().flat_map(|(_, passes)| passes).filter(|p| p.integrity == integrity).count()
    }
}

/// A stored pass's identity and the verdict on its payload hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedPass {
    pub pass_uuid: Option<String>,
    pub integrity: Integrity,
}

/// A part of the stored document a read could not show: where it is (`passes[3].status`) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DegradedPart {
    pub path: String,
    pub reason: String,
}

/// Freshness rules for a read.
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    pub now: DateTime,
    pub ttl: Duration,
    /// How far in the future a stored timestamp may be (clock skew) and still count as fresh.
    pub max_skew: Duration,
}

/// Renders one user's document (as projected by the read: `timestamp` and the selected arrays).
pub fn render(
    user: UserId,
    selection: Selection,
    filter: &PassFilter,
    document: &RawDocument,
    freshness: Freshness,
    verified: &VerifiedPayloads,
) -> CachedTickets {
    let mut degraded = Vec::new();
    let mut timestamp = None;
    let mut stored_arrays: [Option<Doc<'_>>; 2] = [None, None];
    let root = Doc::new(document.as_bytes());
    for element in root.iter().flat_map(|root| root.elements()) {
        let (key, value) = match element {
            Ok(element) => element,
            Err(e) => {
                degraded.push(DegradedPart { path: "document".into(), reason: e.to_string() });
                break;
            }
        };
        if key == field::TIMESTAMP.as_bytes() {
            timestamp = stored_millis(value);
            if timestamp.is_none() && !matches!(value, Value::Null) {
                degraded.push(DegradedPart { path: field::TIMESTAMP.into(), reason: "not a time in milliseconds".into() });
            }
        } else if let Some(kind) = PassKind::ALL.into_iter().find(|kind| key == kind.field().as_bytes()) {
            stored_arrays[kind as usize] = match value {
                Value::Array(items) => Some(items),
                Value::Null => None,
                // Shown as empty, and said so: hiding the damage would look like a user without passes.
                other => {
                    degraded
                        .push(DegradedPart { path: kind.field().into(), reason: format!("stored as {}, not an array", other.type_name()) });
                    None
                }
            };
        }
    }
    let now = freshness.now.timestamp_millis();
    let age = timestamp.map(|ts| Duration::from_millis(now.saturating_sub(ts.0).max(0).unsigned_abs()));
    let from_the_future = timestamp.is_some_and(|ts| ts.0.saturating_sub(now) > freshness.max_skew.as_millis() as i64);
    let stale = from_the_future || age.is_none_or(|age| age > freshness.ttl);

    let mut out = Vec::with_capacity(document.as_bytes().len() + 256);
    out.extend_from_slice(b"{\"user_id\":");
    text::write_i64(user.get(), &mut out);
    out.extend_from_slice(b",\"timestamp\":");
    write_optional_i64(timestamp.map(|t| t.0), &mut out);
    out.extend_from_slice(b",\"age_seconds\":");
    let age_start = out.len();
    write_optional_i64(age.map(|a| a.as_secs() as i64), &mut out);
    // The age changes every second; the validator leaves it out, so revalidation works while it ticks.
    let age_text = age_start..out.len();
    let mut unvalidated = vec![age_text];
    out.extend_from_slice(if stale { b",\"stale\":true" } else { b",\"stale\":false" });

    let mut arrays = Vec::with_capacity(selection.kinds().len());
    let mut pass = PassWriter { extras: Vec::new(), verified, degraded: &mut degraded, unvalidated: &mut unvalidated };
    for &kind in selection.kinds() {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(kind.field().as_bytes());
        out.extend_from_slice(b"\":[");
        let mut checked = Vec::new();
        for (index, item) in stored_arrays[kind as usize].iter().flat_map(|items| items.elements()).enumerate() {
            let at = PassPath { kind, index };
            match item {
                Ok((_, Value::Document(stored))) => {
                    let mark = out.len();
                    if !checked.is_empty() {
                        out.push(b',');
                    }
                    let written = pass.write(at, stored, &mut out);
                    if filter.keeps(written.integrity) {
                        checked.push(written);
                    } else {
                        out.truncate(mark);
                        pass.unvalidated.retain(|range| range.end <= mark);
                    }
                }
                Ok((_, other)) => pass.skip(at.to_string(), format!("stored as {}, not a pass document", other.type_name())),
                Err(e) => {
                    // The array's framing is broken: nothing after this point can be located.
                    pass.skip(at.to_string(), e.to_string());
                    break;
                }
            }
        }
        out.push(b']');
        arrays.push((kind, checked));
    }
    if !degraded.is_empty() {
        out.extend_from_slice(b",\"degraded\":");
        // Paths and reasons are this module's own ASCII text and stored names, already valid UTF-8.
        let _ = serde_json::to_writer(&mut out, &degraded);
    }
    out.push(b'}');

    let etag = body_validator(&out, &unvalidated);
    // Every byte above is ASCII or was checked as UTF-8 by the writer.
    let json = String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    let fresh_for = if stale { Duration::ZERO } else { age.map_or(Duration::ZERO, |age| freshness.ttl.saturating_sub(age)) };
    CachedTickets { user_id: user, selection, timestamp, age, stale, fresh_for, arrays, degraded, etag, json }
}

/// The ETag of a body: SHA-256 over the body with each of the `left_out` ranges (in order) replaced by a
/// byte that UTF-8 text never holds, so no body can hash like another with its gaps.
///
/// The gaps are the age and the text of every verified payload. A verified payload's text is the
/// preimage of the `payload_hash` printed right after it, so that hash stands for it: the validator still
/// changes whenever the body does, without hashing each payload a second time (`make bench`'s handler-only
/// `get_tickets_20x2_passes` is what this keeps cheap).
fn body_validator(body: &[u8], left_out: &[Range<usize>]) -> String {
    let mut validator = Sha256::new();
    let mut from = 0;
    for gap in left_out {
        validator.update(body.get(from..gap.start).unwrap_or_default());
        validator.update([0xFF]);
        from = gap.end;
    }
    validator.update(body.get(from..).unwrap_or_default());
    format!("\"{}\"", hex::encode(&validator.finalize()[..16]))
}

/// Where a pass sits in the document, for `degraded` paths.
#[derive(Debug, Clone, Copy)]
struct PassPath {
    kind: PassKind,
    index: usize,
}

impl std::fmt::Display for PassPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.kind.field(), self.index)
    }
}

/// Pass fields the response names, in the order it prints them; everything else stored in a pass
/// follows them, as stored, unless it is `_id`, `payload_hash_alg` or a [`reserved`] name.
const PASS_FIELDS: [&str; 6] = ["pass_uuid", "timestamp", "status", "free_ticket_status", "payload", "payload_hash"];

/// Writes passes into a response, reusing its buffer of extra fields from pass to pass.
struct PassWriter<'d, 'r> {
    extras: Vec<(&'d [u8], Value<'d>)>,
    verified: &'r VerifiedPayloads,
    degraded: &'r mut Vec<DegradedPart>,
    /// Where the response holds verified payload texts, which [`body_validator`] leaves out.
    unvalidated: &'r mut Vec<Range<usize>>,
}

impl<'d> PassWriter<'d, '_> {
    fn skip(&mut self, path: String, reason: String) {
        self.degraded.push(DegradedPart { path, reason });
    }

    /// A stored value as shown to clients, or `null` (and a `degraded` entry) when it cannot be shown.
    fn write_shown(&mut self, at: PassPath, name: &str, value: Option<Value<'_>>, out: &mut Vec<u8>) {
        let Some(value) = value else {
            out.extend_from_slice(b"null");
            return;
        };
        if let Err(e) = text::write_value(value, TextForm::Display, out) {
            out.extend_from_slice(b"null");
            self.skip(format!("{at}.{name}"), e.to_string());
        }
    }

    fn write(&mut self, at: PassPath, pass: Doc<'d>, out: &mut Vec<u8>) -> CheckedPass {
        let mut known: [Option<Value<'d>>; 6] = [None; 6];
        let mut alg = None;
        self.extras.clear();
        for element in pass.elements() {
            let (key, value) = match element {
                Ok(element) => element,
                Err(e) => {
                    // What was read before the damage is shown; the rest cannot be located.
                    self.skip(at.to_string(), e.to_string());
                    break;
                }
            };
            // A repeated field reads as its last value, as a JavaScript object (and the Node service) holds it.
            if let Some(slot) = PASS_FIELDS.iter().position(|name| name.as_bytes() == key) {
                known[slot] = Some(value);
            } else if key == b"payload_hash_alg" {
                alg = Some(value);
            } else if key != b"_id" && !reserved::is_reserved(key) {
                self.extras.push((key, value));
            }
        }
        let [uuid, timestamp, status, free_ticket_status, payload, hash] = known;
        let text = |value: Option<Value<'d>>| match value {
            Some(Value::String(bytes)) => std::str::from_utf8(bytes).ok(),
            _ => None,
        };
        // A hash or algorithm of another type (or unreadable text) cannot be matched: it is a hash that
        // fails, not "no hash".
        let stored_hash = match hash {
            None | Some(Value::Null) => None,
            value => Some(text(value).unwrap_or_default()),
        };
        let alg = match alg {
            None | Some(Value::Null) => None,
            value => Some(text(value).unwrap_or("?")),
        };

        out.extend_from_slice(b"{\"pass_uuid\":");
        self.write_shown(at, "pass_uuid", uuid, out);
        out.extend_from_slice(b",\"timestamp\":");
        write_optional_i64(timestamp.and_then(stored_millis).map(|t| t.0), out);
        out.extend_from_slice(b",\"status\":");
        self.write_shown(at, "status", status, out);
        out.extend_from_slice(b",\"free_ticket_status\":");
        match free_ticket_status.and_then(js_number) {
            Some(JsNumber::Int(v)) => text::write_i64(v, out),
            Some(JsNumber::Float(v)) => text::write_f64(v, out),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"payload\":");
        let payload_start = out.len();
        let integrity = match payload {
            Some(Value::Document(payload)) => self.write_payload(at, payload, stored_hash, alg, out),
            other => {
                self.write_shown(at, "payload", other, out);
                match (stored_hash, other) {
                    (Some(_), Some(_)) => Integrity::Unverifiable,
                    _ => Integrity::Unverified,
                }
            }
        };
        if integrity == Integrity::Verified {
            self.unvalidated.push(payload_start..out.len());
        }
        out.extend_from_slice(b",\"payload_hash\":");
        match stored_hash.filter(|hash| is_sha256_hex(hash)) {
            // Lower case, so `sha256(payload text) == payload_hash` holds as a string comparison.
            Some(hash) => text::write_str(&hash.to_ascii_lowercase(), out),
            None => self.write_shown(at, "payload_hash", hash, out),
        }
        out.extend_from_slice(b",\"integrity\":\"");
        out.extend_from_slice(integrity.as_str().as_bytes());
        out.push(b'"');
        let kept = text::last_value_at_first_position(&mut self.extras, |extra| extra.0);
        for (i, kept) in kept.into_iter().enumerate() {
            let (key, value) = self.extras[i];
            if !kept {
                continue;
            }
            let Ok(name) = std::str::from_utf8(key) else {
                self.skip(format!("{at}.{}", String::from_utf8_lossy(key)), "the field name is not UTF-8".into());
                continue;
            };
            let start = out.len();
            out.push(b',');
            text::write_str(name, out);
            out.push(b':');
            if let Err(e) = text::write_value(value, TextForm::Display, out) {
                out.truncate(start);
                self.skip(format!("{at}.{name}"), e.to_string());
            }
        }
        out.push(b'}');
        CheckedPass { pass_uuid: text(uuid).map(str::to_owned), integrity }
    }

    /// The payload in the form its hash covers, and the verdict; `null` when not even its shown form exists.
    fn write_payload(
        &mut self,
        at: PassPath,
        payload: Doc<'d>,
        stored_hash: Option<&str>,
        alg: Option<&str>,
        out: &mut Vec<u8>,
    ) -> Integrity {
        let Ok(payload) = RawDocument::from_bytes(payload.as_bytes()) else {
            out.extend_from_slice(b"null");
            self.skip(format!("{at}.payload"), CorruptBson::new("document framing").to_string());
            return if stored_hash.is_some() { Integrity::Unverifiable } else { Integrity::Unverified };
        };
        let raw = payload.as_bytes();
        if let Some(integrity) = stored_hash.and_then(|hash| self.verified.copy_if_known(hash, alg, raw, out)) {
            return integrity;
        }
        let start = out.len();
        let (integrity, shown) = verify_into(payload, stored_hash, alg, out);
        match shown {
            Ok(()) => {
                if let Some(hash) = stored_hash {
                    self.verified.remember(hash, alg, raw, &out[start..], integrity);
                }
            }
            Err(e) => {
                out.extend_from_slice(b"null");
                self.skip(format!("{at}.payload"), e.to_string());
            }
        }
        integrity
    }
}

/// A stored number as JavaScript holds it; `None` for other types.
fn js_number(value: Value<'_>) -> Option<JsNumber> {
    match value {
        Value::Int32(v) => Some(JsNumber::Int(v.into())),
        Value::Int64(v) => Some(JsNumber::Int(v)),
        Value::Double(v) => Some(JsNumber::from_f64(v)),
        _ => None,
    }
}

/// A stored time in milliseconds, when it is one (see [`Millis::from_number`]).
fn stored_millis(value: Value<'_>) -> Option<Millis> {
    js_number(value).and_then(Millis::from_number)
}

fn write_optional_i64(value: Option<i64>, out: &mut Vec<u8>) {
    match value {
        Some(v) => text::write_i64(v, out),
        None => out.extend_from_slice(b"null"),
    }
}
