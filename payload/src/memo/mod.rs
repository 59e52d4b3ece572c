//! Work already done in this execution environment for identical content, within a byte budget: the
//! verdicts of payloads verified by earlier reads ([`VerifiedPayloads`]: a repeat read of unchanged passes
//! copies their printed text instead of printing and hashing them again) and the conversions of payloads
//! by earlier writes ([`ConvertedPayloads`]: clients resend unchanged passes).
//!
//! Nothing is trusted that was not checked: an entry is used only for exactly the input it was computed
//! from. Memory is bounded by a byte budget with two generations: when the current one fills up it
//! becomes the previous one, and entries read from the previous one move back to the current one, so what
//! is read often stays and the rest is dropped.

mod conversions;
mod verdicts;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

pub use conversions::ConvertedPayloads;
pub use verdicts::VerifiedPayloads;

/// Values kept per key within a byte budget: when the current generation fills up it becomes the
/// previous one (dropping the one before), and a value read from the previous generation moves back.
#[derive(Debug)]
pub(super) struct Generational<V> {
    generations: Mutex<Generations<V>>,
    /// Bytes per generation; zero keeps nothing.
    pub(super) budget: usize,
}

#[derive(Debug)]
struct Generations<V> {
    current: HashMap<Box<str>, (Arc<V>, usize)>,
    previous: HashMap<Box<str>, (Arc<V>, usize)>,
    current_bytes: usize,
}

impl<V> Generational<V> {
    pub(super) fn new(budget: usize) -> Self {
        let generations = Generations { current: HashMap::new(), previous: HashMap::new(), current_bytes: 0 };
        Generational { generations: Mutex::new(generations), budget }
    }

    pub(super) fn get(&self, key: &str) -> Option<Arc<V>> {
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
    pub(super) fn insert(&self, key: &str, value: V, size: usize) -> Arc<V> {
        let value = Arc::new(value);
        if self.budget > 0 {
            let size = size + key.len() + 64;
            let mut generations = self.generations.lock().unwrap_or_else(PoisonError::into_inner);
            generations.insert(key, value.clone(), size, self.budget);
        }
        value
    }

    /// Entries held (both generations).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
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
