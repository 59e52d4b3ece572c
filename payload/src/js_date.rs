//! Dates as JavaScript prints them: `Date.prototype.toISOString()`, which `JSON.stringify` uses for a
//! `Date` and the Node service used for log `server_time`s.
//!
//! `YYYY-MM-DDTHH:MM:SS.mmmZ`: fixed width and UTC, so string order is time order and range queries on
//! such strings can use an index. (The `bson` crate's `try_to_rfc3339_string` drops a zero fraction and
//! trailing zeros, so its text is neither JavaScript's nor fixed width.)

use bson::DateTime;
use time::macros::format_description;
use time::OffsetDateTime;

/// An instant as `toISOString()` prints it.
pub fn to_iso_string(at: DateTime) -> String {
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(at.timestamp_millis()) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        // Outside years 0..=9999 there is no fixed-width form; such instants are never written by this service.
        .unwrap_or_else(|| at.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_fixed_width_utc() {
        assert_eq!(to_iso_string(DateTime::from_millis(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(to_iso_string(DateTime::from_millis(1_795_522_373_614)), "2026-11-24T12:12:53.614Z");
        assert_eq!(to_iso_string(DateTime::from_millis(1_795_522_373_600)), "2026-11-24T12:12:53.600Z");
    }

    /// The sweeper dates log entries with `bson::DateTime::parse_rfc3339_str` (the `time` crate's RFC 3339
    /// grammar): it reads back what this module writes, and any other offset, and nothing else.
    #[test]
    fn the_text_parses_back_as_rfc_3339() {
        let at = DateTime::from_millis(1_795_522_373_614);
        assert_eq!(DateTime::parse_rfc3339_str(to_iso_string(at)).ok(), Some(at));
        assert_eq!(DateTime::parse_rfc3339_str("2026-11-24T14:12:53.614+02:00").ok(), Some(at));
        // RFC 3339 (section 5.6) lets a space stand for the `T`.
        assert_eq!(DateTime::parse_rfc3339_str("2026-11-24 12:12:53.614Z").ok(), Some(at));
        for bad in ["1795522373636", "", "yesterday", "2026-13-01T00:00:00Z", "2026-11-24T12:12:53"] {
            assert!(DateTime::parse_rfc3339_str(bad).is_err(), "{bad}");
        }
    }
}
