//! Payloads already verified in this execution environment, so a repeat read of unchanged passes copies
//! their printed text instead of printing and hashing them again.
//!
//! A verdict is a pure function of the stored bytes, the declared algorithm and the stored hash, so an
//! entry is only used when all three are exactly what the read holds (the payload compared byte for byte):
//! nothing is trusted that was not checked. Memory is bounded by a byte budget with two generations:
//! when the current one fills up it becomes the previous one, and entries read from the previous one move
//! back to the current one, so what is read often stays and the rest is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::hashing::Integrity;

/// One verified payload: what it was checked against, and the outcome.
#[derive(Debug)]
struct Entry {
    alg: Option<Box<str>>,
    raw: Box<[u8]>,
    text: Box<[u8]>,
    integrity: Integrity,
}

impl Entry {
    fn size(&self, hash: &str) -> usize {
        hash.len() + self.raw.len() + self.text.len() + self.alg.as_ref().map_or(0, |a| a.len()) + 64
    }
}

#[derive(Debug, Default)]
struct Generations {
    current: HashMap<Box<str>, Arc<Entry>>,
    previous: HashMap<Box<str>, Arc<Entry>>,
    current_bytes: usize,
}

/// The verdicts of payloads verified so far, keyed by stored hash and checked against the exact bytes.
#[derive(Debug)]
pub struct VerifiedPayloads {
    generations: Mutex<Generations>,
    /// Bytes per generation; zero turns the cache off.
    budget: usize,
}

impl VerifiedPayloads {
    pub fn new(budget_bytes: usize) -> VerifiedPayloads {
        VerifiedPayloads { generations: Mutex::default(), budget: budget_bytes }
    }

    /// Appends the printed text of a payload verified before and returns its verdict, if this exact
    /// payload (bytes, algorithm, stored hash) was verified before.
    pub fn copy_if_known(&self, hash: &str, alg: Option<&str>, raw: &[u8], out: &mut Vec<u8>) -> Option<Integrity> {
        if self.budget == 0 {
            return None;
        }
        let mut generations = self.generations.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = match generations.current.get(hash) {
            Some(entry) => entry.clone(),
            None => {
                let entry = generations.previous.get(hash)?.clone();
                generations.insert(hash, entry.clone(), self.budget);
                entry
            }
        };
        drop(generations);
        if entry.alg.as_deref() != alg || *entry.raw != *raw {
            return None;
        }
        out.extend_from_slice(&entry.text);
        Some(entry.integrity)
    }

    /// Remembers a payload's verdict and printed text.
    pub fn remember(&self, hash: &str, alg: Option<&str>, raw: &[u8], text: &[u8], integrity: Integrity) {
        if self.budget == 0 {
            return;
        }
        let entry = Arc::new(Entry { alg: alg.map(Into::into), raw: raw.into(), text: text.into(), integrity });
        let mut generations = self.generations.lock().unwrap_or_else(PoisonError::into_inner);
        generations.insert(hash, entry, self.budget);
    }

    /// Entries held (both generations), for tests and diagnostics.
    pub fn len(&self) -> usize {
        let generations = self.generations.lock().unwrap_or_else(PoisonError::into_inner);
        generations.current.len() + generations.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Generations {
    fn insert(&mut self, hash: &str, entry: Arc<Entry>, budget: usize) {
        let size = entry.size(hash);
        if size > budget {
            return;
        }
        if self.current_bytes + size > budget {
            self.previous = std::mem::take(&mut self.current);
            self.current_bytes = 0;
        }
        if let Some(replaced) = self.current.insert(hash.into(), entry) {
            self.current_bytes -= replaced.size(hash);
        }
        self.current_bytes += size;
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
        // ~300 bytes an entry: at most three in each generation.
        assert!(verified.len() <= 6, "{} entries", verified.len());
        let mut out = Vec::new();
        assert!(verified.copy_if_known("hash-99", None, &[0; 100], &mut out).is_some(), "the newest is kept");
        assert!(verified.copy_if_known("hash-0", None, &[0; 100], &mut out).is_none(), "the oldest is gone");

        let off = VerifiedPayloads::new(0);
        off.remember("h", None, b"r", b"t", Integrity::Verified);
        assert!(off.is_empty());
    }
}
