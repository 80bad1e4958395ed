//! Timestamps on the wire and in the store: RFC 3339, UTC, fixed nine fractional digits,
//! so that text order is time order (SQLite compares them as text).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// Formats a time the one way AgentLab writes times.
pub fn format(t: OffsetDateTime) -> String {
    let fixed = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z");
    t.to_offset(time::UtcOffset::UTC).format(&fixed).unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Now, formatted.
pub fn now() -> String {
    format(OffsetDateTime::now_utc())
}

/// Parses any RFC 3339 time.
pub fn parse(s: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(s, &Rfc3339)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_width_text_sorts_like_time() {
        let a = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let b = a + time::Duration::milliseconds(5);
        let (fa, fb) = (format(a), format(b));
        assert_eq!(fa.len(), fb.len());
        assert!(fa < fb);
        assert_eq!(parse(&fa).ok(), Some(a));
    }
}
