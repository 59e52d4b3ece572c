//! The read memo: verdicts of payloads verified by earlier reads, with the text they were printed as.
//!
//! A verdict is a pure function of the stored bytes, the declared algorithm and the stored hash, so an
//! entry is only used when all three are exactly what the read holds (the payload compared byte for byte).

use super::Generational;
use crate::hash::Integrity;

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
        assert!(verified.0.len() <= 6, "{} entries", verified.0.len());
        let mut out = Vec::new();
        assert!(verified.copy_if_known("hash-99", None, &[0; 100], &mut out).is_some(), "the newest is kept");
        assert!(verified.copy_if_known("hash-0", None, &[0; 100], &mut out).is_none(), "the oldest is gone");

        let off = VerifiedPayloads::new(0);
        off.remember("h", None, b"r", b"t", Integrity::Verified);
        assert_eq!(off.0.len(), 0);
    }
}
