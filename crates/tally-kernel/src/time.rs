//! Time as Tally stores and shows it: UTC instants, RFC 3339 on the wire.

use chrono::{DateTime, SecondsFormat, Utc};

pub type Timestamp = DateTime<Utc>;

pub fn now() -> Timestamp {
    Utc::now()
}

/// The text form stored in databases: fixed width (microseconds, `Z`), so that text order is
/// time order on every backend.
pub fn to_db(ts: Timestamp) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Reads a stored timestamp back. Stored values are always written by [`to_db`].
pub fn from_db(text: &str) -> Result<Timestamp, chrono::ParseError> {
    DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_form_round_trips_and_sorts_as_text() {
        let a = from_db("2026-01-02T03:04:05.000006Z").unwrap();
        let b = from_db("2026-01-02T03:04:05.100000Z").unwrap();
        assert_eq!(from_db(&to_db(a)).unwrap(), a);
        assert!(to_db(a) < to_db(b));
        assert_eq!(to_db(a).len(), to_db(b).len());
    }
}
