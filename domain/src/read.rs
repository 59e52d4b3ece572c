//! A read: the stored document, as the JSON clients receive, with every payload verified as it is written.
//!
//! The raw reply is walked once. Each payload's text is written straight into the response in the form
//! its hash covers (RFC 8785 for `sha256-jcs`, `JSON.stringify` for legacy passes) and hashed from there,
//! so a client can check `sha256(payload text) == payload_hash` itself, and nothing is printed twice.

use std::time::Duration;

use mongodb::bson::{DateTime, RawArray, RawBsonRef, RawDocument};
use sha2::{Digest, Sha256};

use crate::hashing::{self, Integrity};
use crate::json::{self, MemberOrder, NotJson};
use crate::schema::{field, JsNumber, Millis, PassKind, Selection, UserId};
use crate::verified::VerifiedPayloads;

/// A cached document as a read returns it.
#[derive(Debug, Clone)]
pub struct CachedTickets {
    pub user_id: UserId,
    pub selection: Selection,
    pub timestamp: Option<Millis>,
    /// Time since `timestamp`; `None` when the document has no timestamp.
    pub age: Option<Duration>,
    /// Older than the freshness TTL (or undated).
    pub stale: bool,
    /// How long the document stays fresh from now (zero when stale).
    pub fresh_for: Duration,
    /// The requested arrays, in request order; a missing array reads as empty.
    pub arrays: Vec<(PassKind, Vec<CheckedPass>)>,
    /// A strong validator over the stored timestamp, hashes and integrity verdicts.
    pub etag: String,
    /// The read as JSON: `user_id`, `timestamp`, `age_seconds`, `stale` and the requested arrays, each pass
    /// with its fields, its `integrity` and the fields this service does not own (minus Mongoose's `_id`).
    pub json: String,
}

impl CachedTickets {
    /// Passes whose stored hash does not match their payload.
    pub fn mismatches(&self) -> usize {
        self.arrays.iter().flat_map(|(_, passes)| passes).filter(|p| p.integrity == Integrity::Mismatch).count()
    }
}

/// A stored pass's identity and the verdict on its payload hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedPass {
    pub pass_uuid: Option<String>,
    pub integrity: Integrity,
}

/// Freshness rules for a read.
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    pub now: DateTime,
    pub ttl: Duration,
}

/// Renders one user's document (as projected by the read: `timestamp` and the selected arrays).
pub fn render(
    user: UserId,
    selection: Selection,
    document: &RawDocument,
    freshness: Freshness,
    verified: &VerifiedPayloads,
) -> Result<CachedTickets, NotJson> {
    let mut timestamp = None;
    let mut stored_arrays: [Option<&RawArray>; 2] = [None, None];
    for element in document {
        let (key, value) = element.map_err(NotJson::corrupt)?;
        match (key, value) {
            (field::TIMESTAMP, value) => timestamp = JsNumber::from_raw(value).and_then(Millis::from_number),
            (_, value) => match (PassKind::parse(key), value) {
                (Some(kind), RawBsonRef::Array(items)) => stored_arrays[kind as usize] = Some(items),
                (Some(_), RawBsonRef::Null) | (None, _) => {}
                // Showing an empty array would hide the damage.
                (Some(kind), _) => return Err(NotJson::Corrupt(format!("`{}` is not an array", kind.field()))),
            },
        }
    }
    let age = timestamp.map(|ts| Duration::from_millis(freshness.now.timestamp_millis().saturating_sub(ts.0).max(0) as u64));
    let stale = age.is_none_or(|age| age > freshness.ttl);

    let mut out = Vec::with_capacity(document.as_bytes().len() + 256);
    out.extend_from_slice(b"{\"user_id\":");
    json::write_i64(user.get(), &mut out);
    out.extend_from_slice(b",\"timestamp\":");
    write_optional_i64(timestamp.map(|t| t.0), &mut out);
    out.extend_from_slice(b",\"age_seconds\":");
    write_optional_i64(age.map(|a| a.as_secs() as i64), &mut out);
    out.extend_from_slice(if stale { b",\"stale\":true" } else { b",\"stale\":false" });

    let mut validator = Sha256::new();
    validator.update(selection.as_str());
    validator.update(timestamp.map_or(-1, |t| t.0).to_be_bytes());
    let mut arrays = Vec::with_capacity(selection.kinds().len());
    let mut extras = Vec::new();
    for &kind in selection.kinds() {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(kind.field().as_bytes());
        out.extend_from_slice(b"\":[");
        validator.update(kind.field());
        let mut checked = Vec::new();
        for (i, pass) in stored_arrays[kind as usize].into_iter().flatten().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let pass = match pass.map_err(NotJson::corrupt)? {
                RawBsonRef::Document(pass) => write_pass(pass, &mut out, &mut extras, verified)?,
                // Not a pass at all: shown as stored, and nothing vouches for it.
                other => {
                    write_stored(Some(other), &mut out)?;
                    WrittenPass { uuid: None, hash: None, integrity: Integrity::Unverified }
                }
            };
            validator.update([0, pass.integrity as u8]);
            validator.update(pass.hash.unwrap_or("-"));
            checked.push(CheckedPass { pass_uuid: pass.uuid.map(str::to_owned), integrity: pass.integrity });
        }
        out.push(b']');
        arrays.push((kind, checked));
    }
    out.push(b'}');

    let digest = validator.finalize();
    let etag = format!("\"{}\"", &hashing::hex(&digest.into())[..32]);
    // Every byte above comes from UTF-8 strings or ASCII, so this never fails.
    let json = String::from_utf8(out).map_err(NotJson::corrupt)?;
    let fresh_for = age.map_or(Duration::ZERO, |age| freshness.ttl.saturating_sub(age));
    Ok(CachedTickets { user_id: user, selection, timestamp, age, stale, fresh_for, arrays, etag, json })
}

/// What writing one pass found out.
struct WrittenPass<'d> {
    uuid: Option<&'d str>,
    hash: Option<&'d str>,
    integrity: Integrity,
}

/// Pass fields the response names; everything else stored in a pass follows them, as stored.
const PASS_FIELDS: [&str; 6] = ["pass_uuid", "timestamp", "status", "free_ticket_status", "payload", "payload_hash"];

fn write_pass<'d>(
    pass: &'d RawDocument,
    out: &mut Vec<u8>,
    extras: &mut Vec<(&'d str, RawBsonRef<'d>)>,
    verified: &VerifiedPayloads,
) -> Result<WrittenPass<'d>, NotJson> {
    let mut known: [Option<RawBsonRef<'d>>; 6] = [None; 6];
    let mut alg = None;
    extras.clear();
    for element in pass {
        let (key, value) = element.map_err(NotJson::corrupt)?;
        if let Some(slot) = PASS_FIELDS.iter().position(|name| *name == key) {
            known[slot] = Some(value);
        } else if key == "payload_hash_alg" {
            alg = Some(value);
        } else if key != "_id" {
            extras.push((key, value));
        }
    }
    let [uuid, timestamp, status, free_ticket_status, payload, hash] = known;
    let text = |value: Option<RawBsonRef<'d>>| match value {
        Some(RawBsonRef::String(s)) => Some(s),
        _ => None,
    };
    // A hash or algorithm of another type cannot be matched: it reads as a mismatch, not as "no hash".
    let stored_hash = match hash {
        None | Some(RawBsonRef::Null) => None,
        Some(value) => Some(text(Some(value)).unwrap_or_default()),
    };
    let alg = match alg {
        None | Some(RawBsonRef::Null) => None,
        Some(value) => Some(text(Some(value)).unwrap_or("?")),
    };

    out.extend_from_slice(b"{\"pass_uuid\":");
    write_stored(uuid, out)?;
    out.extend_from_slice(b",\"timestamp\":");
    write_optional_i64(timestamp.and_then(JsNumber::from_raw).and_then(Millis::from_number).map(|t| t.0), out);
    out.extend_from_slice(b",\"status\":");
    write_stored(status, out)?;
    out.extend_from_slice(b",\"free_ticket_status\":");
    match free_ticket_status.and_then(JsNumber::from_raw) {
        Some(JsNumber::Int(v)) => json::write_i64(v, out),
        Some(JsNumber::Float(v)) => json::write_f64(v, out),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"payload\":");
    let integrity = match payload {
        Some(RawBsonRef::Document(payload)) => {
            let raw = payload.as_bytes();
            match stored_hash.and_then(|hash| verified.copy_if_known(hash, alg, raw, out)) {
                Some(integrity) => integrity,
                None => {
                    let start = out.len();
                    let integrity = hashing::verify_into(payload, stored_hash, alg, out)?;
                    if let Some(hash) = stored_hash {
                        verified.remember(hash, alg, raw, &out[start..], integrity);
                    }
                    integrity
                }
            }
        }
        other => {
            write_stored(other, out)?;
            if stored_hash.is_some() && other.is_some() {
                Integrity::Mismatch
            } else {
                Integrity::Unverified
            }
        }
    };
    out.extend_from_slice(b",\"payload_hash\":");
    write_stored(hash, out)?;
    out.extend_from_slice(b",\"integrity\":\"");
    out.extend_from_slice(integrity.as_str().as_bytes());
    out.push(b'"');
    for &(key, value) in extras.iter() {
        out.push(b',');
        json::write_str(key, out);
        out.push(b':');
        write_stored(Some(value), out)?;
    }
    out.push(b'}');
    Ok(WrittenPass { uuid: text(uuid), hash: text(hash), integrity })
}

/// A stored value as `JSON.stringify` prints it; `null` when absent.
fn write_stored(value: Option<RawBsonRef<'_>>, out: &mut Vec<u8>) -> Result<(), NotJson> {
    match value {
        Some(value) => json::write_value(value, MemberOrder::Stored, out),
        None => {
            out.extend_from_slice(b"null");
            Ok(())
        }
    }
}

fn write_optional_i64(value: Option<i64>, out: &mut Vec<u8>) {
    match value {
        Some(v) => json::write_i64(v, out),
        None => out.extend_from_slice(b"null"),
    }
}
