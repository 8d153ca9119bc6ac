//! UTC timestamps in the one text form tollgate stores and serves.

use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// RFC 3339 in UTC with exactly six fractional digits, so that text order is time order
/// (the request log sorts and pages on this text in SQLite).
const STORED: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// The current time in UTC.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Formats a timestamp in the stored form (`2026-11-25T22:10:04.123456Z`).
pub fn format(ts: OffsetDateTime) -> String {
    ts.checked_to_offset(UtcOffset::UTC)
        .and_then(|t| t.format(STORED).ok())
        .unwrap_or_else(|| String::from("1970-01-01T00:00:00.000000Z"))
}

/// Parses any RFC 3339 timestamp (as clients send it) into UTC; `None` also for a time whose
/// UTC date is outside the years 1-9999 that `time` represents (`9999-12-31T23:59:59-01:00`
/// is in year 10000 in UTC: `to_offset` would panic on it, `checked_to_offset` says no).
pub fn parse_rfc3339(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| t.checked_to_offset(UtcOffset::UTC))
}

/// Parses the stored form back (also accepts any RFC 3339 text).
pub fn parse_stored(text: &str) -> Option<OffsetDateTime> {
    PrimitiveDateTime::parse(text.trim_end_matches('Z'), &STORED[..STORED.len() - 1])
        .ok()
        .map(PrimitiveDateTime::assume_utc)
        .or_else(|| parse_rfc3339(text))
}

/// Serde helpers for timestamps in the stored form.
pub mod serde_ts {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;

    /// Serializes in the stored form.
    pub fn serialize<S: Serializer>(ts: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*ts))
    }

    /// Deserializes any RFC 3339 text.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::parse_stored(&text).ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 timestamp: {text}")))
    }
}

/// Serde helpers for optional timestamps in the stored form.
pub mod serde_ts_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;

    /// Serializes in the stored form, or null.
    pub fn serialize<S: Serializer>(ts: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
        match ts {
            Some(t) => s.serialize_str(&super::format(*t)),
            None => s.serialize_none(),
        }
    }

    /// Deserializes any RFC 3339 text, or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
        let text = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        text.map(|t| {
            super::parse_stored(&t).ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 timestamp: {t}")))
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_form_round_trips_and_sorts_as_text() {
        let a = parse_rfc3339("2026-11-25T22:10:04.5+01:00").unwrap();
        let b = parse_rfc3339("2026-11-25T21:10:04.500001Z").unwrap();
        assert_eq!(format(a), "2026-11-25T21:10:04.500000Z");
        assert!(format(a) < format(b));
        assert_eq!(parse_stored(&format(b)), Some(b));
    }

    /// Found by the `cursor` fuzz target (fuzz/): a valid RFC 3339 text whose UTC time is past
    /// year 9999 panicked in `to_offset`, so `GET /v1/requests?since=...` (or such a cursor)
    /// crashed the function instead of answering 400.
    #[test]
    fn times_outside_the_representable_years_are_refused_not_a_panic() {
        assert!(parse_rfc3339("9999-12-31T23:59:59-01:00").is_none());
        assert!(parse_stored("9999-12-31T23:30:00-00:31").is_none());
        let last = parse_rfc3339("9999-12-31T23:59:59+01:00").unwrap();
        assert_eq!(format(last), "9999-12-31T22:59:59.000000Z");
        assert!(parse_rfc3339("0001-01-01T00:00:00+01:00").is_some_and(|t| t.year() == 0));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_rfc3339("yesterday").is_none());
        assert!(parse_stored("2026-13-01T00:00:00.000000Z").is_none());
    }
}
