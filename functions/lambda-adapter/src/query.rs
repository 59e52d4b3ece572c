//! Query-string parameters: each read once, checked, and named in the error when it is wrong.

use domain::mongodb::bson::DateTime;
use domain::{Integrity, Limits, Millis, PassFilter, PassKind, UserId, ValidationError};
use lambda_http::{Request, RequestExt};

use crate::error::ApiError;

/// The query-string parameters of a request.
pub struct Query<'r> {
    request: &'r Request,
}

impl<'r> Query<'r> {
    pub fn of(request: &'r Request) -> Query<'r> {
        Query { request }
    }

    /// The parameter's one value; given twice it is refused rather than half ignored.
    pub fn one(&self, name: &'static str) -> Result<Option<&'r str>, ApiError> {
        let Some(parameters) = self.request.query_string_parameters_ref() else { return Ok(None) };
        match parameters.all(name).as_deref() {
            None | Some([]) => Ok(None),
            Some([value]) => Ok(Some(value)),
            Some(_) => Err(ApiError::InvalidFilter { parameter: name, reason: "give it once".into() }),
        }
    }

    /// An instant: RFC 3339 (`2026-11-25T18:00:00Z`, any offset) or milliseconds since the epoch.
    pub fn instant(&self, name: &'static str) -> Result<Option<DateTime>, ApiError> {
        let Some(value) = self.one(name)? else { return Ok(None) };
        parse_instant(value).map(Some).ok_or_else(|| ApiError::InvalidFilter {
            parameter: name,
            reason: "expected an RFC 3339 time or milliseconds since the epoch".into(),
        })
    }

    pub fn kind(&self, name: &'static str) -> Result<Option<PassKind>, ApiError> {
        let Some(value) = self.one(name)? else { return Ok(None) };
        PassKind::parse(value)
            .map(Some)
            .ok_or_else(|| ApiError::InvalidFilter { parameter: name, reason: "expected passes or passes4".into() })
    }

    pub fn user(&self, name: &'static str) -> Result<Option<UserId>, ApiError> {
        let Some(value) = self.one(name)? else { return Ok(None) };
        UserId::parse(value)
            .map(Some)
            .ok_or_else(|| ApiError::InvalidFilter { parameter: name, reason: "expected a positive integer".into() })
    }
}

impl Query<'_> {
    /// The read's pass filter: `status=A,B` (exact, at most 10), `updated_since=<instant>`,
    /// `integrity=verified|mismatch|unverified|unverifiable`.
    pub fn pass_filter(&self, limits: &Limits) -> Result<PassFilter, ApiError> {
        let statuses: Vec<String> = match self.one("status")? {
            None => Vec::new(),
            Some(list) => list.split(',').map(str::to_owned).collect(),
        };
        let updated_since = self.instant("updated_since")?.map(Millis::from_datetime);
        if updated_since.is_some_and(|t| t.0 < 0) {
            return Err(ApiError::InvalidFilter { parameter: "updated_since", reason: "must not be before 1970".into() });
        }
        let integrity = match self.one("integrity")? {
            None => None,
            Some(verdict) => Some(Integrity::ALL.into_iter().find(|v| v.as_str() == verdict).ok_or_else(|| ApiError::InvalidFilter {
                parameter: "integrity",
                reason: "expected verified, mismatch, unverified or unverifiable".into(),
            })?),
        };
        PassFilter::new(statuses, updated_since, integrity, limits).map_err(|error| match error {
            ValidationError::Invalid { reason, .. } => ApiError::InvalidFilter { parameter: "status", reason },
            other => ApiError::Validation(other),
        })
    }
}

/// RFC 3339, or up to 16 decimal digits of epoch milliseconds (JavaScript's `Date.now()`).
pub fn parse_instant(value: &str) -> Option<DateTime> {
    if !value.is_empty() && value.len() <= 16 && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse().ok().map(DateTime::from_millis);
    }
    DateTime::parse_rfc3339_str(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_rfc3339_or_epoch_milliseconds() {
        let at = DateTime::from_millis(1_795_522_373_614);
        assert_eq!(parse_instant("1795522373614"), Some(at));
        assert_eq!(parse_instant("2026-11-24T12:12:53.614Z"), Some(at));
        assert_eq!(parse_instant("2026-11-24T14:12:53.614+02:00"), Some(at));
        for bad in ["", "-1", "1e12", "yesterday", "2026-13-01T00:00:00Z", "17955223736140000000", "1795522373614 "] {
            assert_eq!(parse_instant(bad), None, "{bad:?}");
        }
    }
}
