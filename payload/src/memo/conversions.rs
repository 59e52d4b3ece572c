//! The write memo: payload conversions done by earlier writes, keyed by the exact JSON text.

use std::sync::Arc;

use super::Generational;
use crate::convert::ConvertedPayload;

/// Payload conversions done so far, keyed by the exact JSON text a client sent (clients resend
/// unchanged passes with every update). Only successful conversions are kept; a conversion depends only
/// on the text and the depth limit, which is fixed for an environment.
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::RawDocumentBuf;

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
