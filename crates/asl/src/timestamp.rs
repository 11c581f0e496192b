//! ISO-8601 timestamps as ASL accepts them (RFC 3339 with a mandatory offset).

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Parses an RFC 3339 timestamp (`2016-03-14T01:59:00Z`, offsets and fractions allowed).
pub fn parse(s: &str) -> Option<OffsetDateTime> {
    if !s.contains('T') {
        return None;
    }
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// Unix milliseconds of a timestamp.
pub fn to_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Renders unix milliseconds as RFC 3339 with milliseconds (`2024-01-01T00:00:00.000Z`).
pub fn format_ms(ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.format(&fmt).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_rfc3339_only() {
        assert!(parse("2016-03-14T01:59:00Z").is_some());
        assert!(parse("2016-03-14T01:59:00.123+02:00").is_some());
        assert!(parse("2016-03-14T01:59:00").is_none());
        assert!(parse("2016-03-14 01:59:00Z").is_none());
        assert!(parse("2016-13-14T01:59:00Z").is_none());
    }

    #[test]
    fn formats_millis() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        let t = parse("2024-01-01T00:00:00Z").unwrap();
        assert_eq!(format_ms(to_ms(t)), "2024-01-01T00:00:00.000Z");
    }
}
