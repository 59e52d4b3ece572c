//! Which passes a read returns: `GET …/tickets?status=&updated_since=&integrity=`.
//!
//! `status` and `updated_since` are conditions on stored fields, so the database applies them (a
//! `$filter` in the read's projection, the same single `find`) and filtered-out passes never travel;
//! `integrity` is a verdict only the read computes, so the read applies it.

use mongodb::bson::{doc, Document};
use payload::Integrity;

use crate::config::Limits;
use crate::error::ValidationError;
use crate::input::check_text;
use crate::schema::{field, Millis, PassKind};

/// The most `status` values one read may ask for.
pub const MAX_STATUSES: usize = 10;

/// Which passes a read keeps. The default keeps every pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassFilter {
    statuses: Vec<String>,
    updated_since: Option<Millis>,
    integrity: Option<Integrity>,
}

impl PassFilter {
    /// Passes whose `status` is one of `statuses` (exact match; none given: any), whose `timestamp` is at
    /// or after `updated_since`, and whose verdict is `integrity`.
    pub fn new(
        statuses: Vec<String>,
        updated_since: Option<Millis>,
        integrity: Option<Integrity>,
        limits: &Limits,
    ) -> Result<PassFilter, ValidationError> {
        if statuses.len() > MAX_STATUSES {
            return Err(ValidationError::Invalid { field: "status".into(), reason: format!("at most {MAX_STATUSES} values") });
        }
        for status in &statuses {
            check_text(&"status", status, limits.max_status_chars)?;
        }
        Ok(PassFilter { statuses, updated_since, integrity })
    }

    pub fn keeps_all(&self) -> bool {
        *self == PassFilter::default()
    }

    /// Whether a pass with this verdict is kept.
    pub fn keeps(&self, integrity: Integrity) -> bool {
        self.integrity.is_none_or(|wanted| wanted == integrity)
    }

    /// The projection of one pass array: the stored array when nothing is filtered by the database,
    /// else only its passes that meet the stored-field conditions. A stored value that is not an array is
    /// projected as it is (the read reports it), and the `$filter` input is guarded as well, because some
    /// engines (DocumentDB) evaluate both branches of a `$cond`.
    pub(crate) fn projection(&self, kind: PassKind) -> Option<Document> {
        let mut conditions = Vec::new();
        if !self.statuses.is_empty() {
            // `$literal`: a status such as "$passes" is a value, not a field path.
            conditions.push(doc! { "$in": [format!("$$pass.{}", "status"), { "$literal": &self.statuses }] });
        }
        if let Some(since) = self.updated_since {
            // Only numbers are times: in BSON order every string is greater than every number.
            let stored = format!("$$pass.{}", field::TIMESTAMP);
            conditions.push(doc! { "$isNumber": &stored });
            conditions.push(doc! { "$gte": [&stored, since.0] });
        }
        if conditions.is_empty() {
            return None;
        }
        let stored = format!("${}", kind.field());
        let is_array = doc! { "$isArray": &stored };
        Some(doc! { "$cond": [
            is_array.clone(),
            { "$filter": { "input": { "$cond": [is_array, &stored, []] }, "as": "pass", "cond": { "$and": conditions } } },
            &stored,
        ] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_projections() {
        let limits = Limits::default();
        let many: Vec<String> = (0..=MAX_STATUSES).map(|i| format!("S{i}")).collect();
        assert!(PassFilter::new(many, None, None, &limits).is_err());
        assert!(PassFilter::new(vec![" ".into()], None, None, &limits).is_err());
        assert!(PassFilter::new(vec!["A\u{0}".into()], None, None, &limits).is_err());
        assert!(PassFilter::default().projection(PassKind::Passes).is_none());
        let integrity_only = PassFilter::new(vec![], None, Some(Integrity::Mismatch), &limits).unwrap();
        assert!(integrity_only.projection(PassKind::Passes).is_none(), "verdicts are the read's");
        assert!(integrity_only.keeps(Integrity::Mismatch) && !integrity_only.keeps(Integrity::Verified));
    }
}
