//! Work already done in this execution environment for identical content: payloads verified by earlier
//! reads (a repeat read of unchanged passes copies their printed text instead of printing and hashing
//! them again) and payloads converted by earlier writes (clients resend unchanged passes).
//!
//! A verdict is a pure function of the stored bytes, the declared algorithm and the stored hash, so an
//! entry is only used when all three are exactly what the read holds (the payload compared byte for byte):
//! nothing is trusted that was not checked. Memory is bounded by a byte budget with two generations:
//! when the current one fills up it becomes the previous one, and entries read from the previous one move
//! back to the current one, so what is read often stays and the rest is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use mongodb::bson::RawDocumentBuf;

use crate::hashing::Integrity;

/// Values kept per key within a byte budget: when the current generation fills up it becomes the
/// previous one (dropping the one before), and a value read from the previous generation moves back.
#[derive(Debug)]
struct Generational<V> {
    generations: Mutex<Generations<V>>,
    /// Bytes per generation; zero keeps nothing.
    budget: usize,
}

#[derive(Debug)]
struct Generations<V> {
    current: HashMap<Box<str>, (Arc<V>, usize)>,
    previous: HashMap<Box<str>, (Arc<V>, usize)>,
    current_bytes: usize,
}

impl<V> Generational<V> {
    fn new(budget: usize) -> Self {
        let generations = Generations { current: HashMap::new(), previous: HashMap::new(), current_bytes: 0 };
        Generational { generations: Mutex::new(generations), budget }
    }

    fn get(&self, key: &str) -> Option<Arc<V>> {
        if self.budget == 0 {
            return None;
        }
        let mut generations = self.generations.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((value, _)) = generations.current.get(key) {
            return Some(value.clone());
        }
        let (value, size) = generations.previous.remove(key)?;
        generations.insert(key, value.clone(), size, self.budget);
        Some(value)
    }

    /// Keeps `value` under `key`; `size` is what it holds in bytes, beyond the key.
    fn insert(&self, key: &str, value: V, size: usize) -> Arc<V> {
        let value = Arc::new(value);
        if self.budget > 0 {
            let size = size + key.len() + 64;
            let mut generations = self.generations.lock().unwrap_or_else(PoisonError::into_inner);
            generations.insert(key, value.clone(), size, self.budget);
        }
        value
    }

    fn len(&self) -> usize {
        let generations = self.generations.lock().unwrap_or_else(PoisonError::into_inner);
        generations.current.len() + generations.previous.len()
    }
}

impl<V> Generations<V> {
    fn insert(&mut self, key: &str, value: Arc<V>, size: usize, budget: usize) {
        if size > budget {
            return;
        }
        if self.current_bytes + size > budget {
            self.previous = std::mem::take(&mut self.current);
            self.current_bytes = 0;
        }
        if let Some((_, replaced)) = self.current.insert(key.into(), (value, size)) {
            self.current_bytes -= replaced;
        }
        self.current_bytes += size;
    }
}

/// One verified payload: what it was checked against, and the outcome.
#[derive(Debug)]
struct Verified {
    alg: Option<Box<str>>,
    raw: Box<[u8]>,
    text: Box<[u8]>,
    integrity: Integrity,
}

/// The verdicts of payloads verified so far, keyed by stored hash and checked against the exact bytes.
#[derive(Debug)]
pub struct VerifiedPayloads(Generational<Verified>);

impl VerifiedPayloads {
    pub fn new(budget_bytes: usize) -> VerifiedPayloads {
        VerifiedPayloads(Generational::new(budget_bytes))
    }

    /// Appends the printed text of a payload verified before and returns its verdict, if this exact
    /// payload (bytes, algorithm, stored hash) was verified before.
    pub fn copy_if_known(&self, hash: &str, alg: Option<&str>, raw: &[u8], out: &mut Vec<u8>) -> Option<Integrity> {
        let entry = self.0.get(hash)?;
        if entry.alg.as_deref() != alg || *entry.raw != *raw {
            return None;
        }
        out.extend_from_slice(&entry.text);
        Some(entry.integrity)
    }

    /// Remembers a payload's verdict and printed text.
    pub fn remember(&self, hash: &str, alg: Option<&str>, raw: &[u8], text: &[u8], integrity: Integrity) {
        let size = raw.len() + text.len() + alg.map_or(0, str::len);
        if self.0.budget > 0 {
            self.0.insert(hash, Verified { alg: alg.map(Into::into), raw: raw.into(), text: text.into(), integrity }, size);
        }
    }

    /// Entries held (both generations), for tests and diagnostics.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A payload as validation stored it: its BSON, its JCS hash and the length of its canonical text.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertedPayload {
    pub bson: RawDocumentBuf,
    pub jcs_hash: String,
    pub canonical_len: usize,
}

/// Payload conversions done so far, keyed by the exact JSON text a client sent (clients resend
/// unchanged passes with every update). Only successful conversions are kept, and validation depends
/// only on the text and the limits, which are fixed for an environment.
#[derive(Debug)]
pub struct ConvertedPayloads(Generational<ConvertedPayload>);

impl ConvertedPayloads {
    pub fn new(budget_bytes: usize) -> ConvertedPayloads {
        ConvertedPayloads(Generational::new(budget_bytes))
    }

    pub fn get(&self, json: &str) -> Option<Arc<ConvertedPayload>> {
        self.0.get(json)
    }

    /// Keeps a conversion (when the budget allows) and hands it back, shared.
    pub fn remember(&self, json: &str, converted: ConvertedPayload) -> Arc<ConvertedPayload> {
        let size = converted.bson.as_bytes().len() + converted.jcs_hash.len();
        self.0.insert(json, converted, size)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_used_only_for_the_exact_bytes_algorithm_and_hash() {
        let verified = VerifiedPayloads::new(1 << 20);
        verified.remember("h1", Some("sha256-jcs"), b"raw", b"{\"a\":1}", Integrity::Verified);
        let mut out = Vec::new();
        assert_eq!(verified.copy_if_known("h1", Some("sha256-jcs"), b"raw", &mut out), Some(Integrity::Verified));
        assert_eq!(out, b"{\"a\":1}");
        let mut out = Vec::new();
        assert_eq!(verified.copy_if_known("h1", Some("sha256-jcs"), b"raW", &mut out), None, "one byte changed");
        assert_eq!(verified.copy_if_known("h1", None, b"raw", &mut out), None, "other algorithm");
        assert_eq!(verified.copy_if_known("h2", Some("sha256-jcs"), b"raw", &mut out), None, "other hash");
        assert!(out.is_empty());
    }

    #[test]
    fn memory_stays_within_two_generations_of_the_budget() {
        let verified = VerifiedPayloads::new(1000);
        for i in 0..100 {
            verified.remember(&format!("hash-{i}"), None, &[0; 100], &[0; 100], Integrity::Verified);
        }
        // ~330 bytes an entry: at most three in each generation.
        assert!(verified.len() <= 6, "{} entries", verified.len());
        let mut out = Vec::new();
        assert!(verified.copy_if_known("hash-99", None, &[0; 100], &mut out).is_some(), "the newest is kept");
        assert!(verified.copy_if_known("hash-0", None, &[0; 100], &mut out).is_none(), "the oldest is gone");

        let off = VerifiedPayloads::new(0);
        off.remember("h", None, b"r", b"t", Integrity::Verified);
        assert!(off.is_empty());
    }
}

#[cfg(test)]
mod converted_tests {
    use super::*;

    #[test]
    fn conversions_are_found_by_their_exact_text() {
        let converted = ConvertedPayloads::new(1 << 20);
        let payload = ConvertedPayload { bson: RawDocumentBuf::new(), jcs_hash: "h".into(), canonical_len: 2 };
        let _ = converted.remember(r#"{"a":1}"#, payload.clone());
        assert_eq!(converted.get(r#"{"a":1}"#).as_deref(), Some(&payload));
        assert!(converted.get(r#"{"a": 1}"#).is_none(), "other text, even if equal as JSON");
        assert!(ConvertedPayloads::new(0).get(r#"{"a":1}"#).is_none());
    }
}
