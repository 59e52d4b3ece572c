//! Time formats shared by writes, the sweeper and the error summary.
//!
//! `server_time` is always written as `YYYY-MM-DDTHH:MM:SS.mmmZ`: fixed width and UTC, so string order is
//! time order and range queries on it can use an index.

use mongodb::bson::DateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;

/// Formats an instant as fixed-width RFC 3339 UTC with milliseconds.
pub fn format_rfc3339_millis(at: DateTime) -> String {
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(at.timestamp_millis()) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        // Outside years 0..=9999 there is no fixed-width form; such instants are never written by this service.
        .unwrap_or_else(|| at.to_string())
}

/// Parses any RFC 3339 timestamp (any offset); `None` when it is not one.
pub fn parse_rfc3339(value: &str) -> Option<DateTime> {
    let parsed = OffsetDateTime::parse(value, &Rfc3339).ok()?;
    let millis = parsed.unix_timestamp_nanos() / 1_000_000;
    i64::try_from(millis).ok().map(DateTime::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_fixed_width_utc() {
        assert_eq!(format_rfc3339_millis(DateTime::from_millis(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339_millis(DateTime::from_millis(1_795_522_373_614)), "2026-11-24T12:12:53.614Z");
    }

    #[test]
    fn parses_offsets_and_rejects_other_strings() {
        let utc = parse_rfc3339("2026-11-24T12:12:53.614Z").unwrap();
        assert_eq!(utc.timestamp_millis(), 1_795_522_373_614);
        let shifted = parse_rfc3339("2026-11-24T14:12:53.614+02:00").unwrap();
        assert_eq!(shifted, utc);
        for bad in ["1795522373636", "", "yesterday", "2026-13-01T00:00:00Z"] {
            assert!(parse_rfc3339(bad).is_none(), "{bad}");
        }
    }
}
