//! The values a patient record is made of, each parsed once at the edge: a value of these types
//! is valid by construction.
//!
//! Refusals are fixed sentences that say what is wrong and never repeat the value, and the
//! `Debug` forms are redacted: a patient's details cannot reach a log or an error message by
//! accident.

use std::fmt;

use chrono::{NaiveDate, TimeDelta};
use serde::{Serialize, Serializer};
use tally_kernel::time::Timestamp;

/// Longest full name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest e-mail address accepted (RFC 5321's limit on a path), in bytes.
pub const MAX_EMAIL_BYTES: usize = 254;
/// Longest local part (before the `@`) of an e-mail address, in bytes.
pub const MAX_EMAIL_LOCAL_BYTES: usize = 64;
/// Longest domain label, in bytes.
pub const MAX_DOMAIN_LABEL_BYTES: usize = 63;
/// Digits a phone number has after its `+` (E.164 allows at most 15).
pub const PHONE_DIGITS: std::ops::RangeInclusive<usize> = 8..=15;
/// The earliest date of birth accepted.
pub const EARLIEST_BIRTH_DATE: NaiveDate = NaiveDate::from_ymd_opt(1900, 1, 1).expect("a date");

/// The time zone furthest ahead of UTC (UTC+14, Kiribati): "today" somewhere on Earth is never
/// later than UTC plus this.
const FURTHEST_AHEAD_HOURS: i64 = 14;

/// The latest date that is today somewhere on Earth at `now`. A date of birth after it is in
/// the future everywhere; one up to it may be today in the clinic's zone, so it is accepted.
pub fn latest_today(now: Timestamp) -> NaiveDate {
    (now + TimeDelta::hours(FURTHEST_AHEAD_HOURS)).date_naive()
}

macro_rules! redacted_debug {
    ($($ty:ident),*) => {$(
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($ty), "(<redacted>)"))
            }
        }
    )*};
}

redacted_debug!(PatientName, DateOfBirth, Email, Phone);

/// A patient's full name: 1 to 200 characters after trimming, no control characters.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PatientName(String);

impl PatientName {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let text = raw.trim();
        if text.is_empty() {
            return Err("must not be blank");
        }
        if text.chars().count() > MAX_NAME_CHARS {
            return Err("must be at most 200 characters");
        }
        if text.chars().any(char::is_control) {
            return Err("must not contain control characters");
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A date of birth: a calendar date from 1900-01-01 to today.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DateOfBirth(NaiveDate);

impl DateOfBirth {
    /// Reads `YYYY-MM-DD` exactly; `today` is the latest date accepted (see [`latest_today`]).
    pub fn parse(raw: &str, today: NaiveDate) -> Result<Self, &'static str> {
        let date = parse_iso_date(raw).ok_or("must be a calendar date written YYYY-MM-DD")?;
        if date < EARLIEST_BIRTH_DATE {
            return Err("must not be before 1900-01-01");
        }
        if date > today {
            return Err("must not be in the future");
        }
        Ok(Self(date))
    }

    pub fn date(self) -> NaiveDate {
        self.0
    }

    /// The `YYYY-MM-DD` form, as stored and shown.
    pub fn to_iso(self) -> String {
        self.0.format("%Y-%m-%d").to_string()
    }
}

impl Serialize for DateOfBirth {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_iso())
    }
}

/// Exactly `YYYY-MM-DD` (chrono alone would also take `2020-1-5` or a signed year).
fn parse_iso_date(raw: &str) -> Option<NaiveDate> {
    let b = raw.as_bytes();
    let shape_ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && [0, 1, 2, 3, 5, 6, 8, 9]
            .iter()
            .all(|&i| b[i].is_ascii_digit());
    if !shape_ok {
        return None;
    }
    let year = raw[0..4].parse().ok()?;
    let month = raw[5..7].parse().ok()?;
    let day = raw[8..10].parse().ok()?;
    NaiveDate::from_ymd_opt(year, month, day)
}

/// An e-mail address that looks deliverable: `local@domain.tld`. The domain is lowercased (it
/// is case-insensitive); the local part is kept as written (it may not be).
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Email(String);

const NOT_AN_EMAIL: &str = "must be an e-mail address like name@example.com";

impl Email {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let text = raw.trim();
        if text.is_empty() {
            return Err("must not be blank; leave it out or send null instead");
        }
        if text.len() > MAX_EMAIL_BYTES {
            return Err("must be at most 254 bytes long");
        }
        let (local, domain) = text.rsplit_once('@').ok_or(NOT_AN_EMAIL)?;
        if !valid_local_part(local) || !valid_domain(domain) {
            return Err(NOT_AN_EMAIL);
        }
        Ok(Self(format!("{local}@{}", domain.to_lowercase())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A dot-atom (RFC 5322) of ASCII letters, digits and the allowed symbols, or of non-ASCII
/// letters (RFC 6531): no quoted strings, no comments.
fn valid_local_part(local: &str) -> bool {
    let allowed = |c: char| {
        c.is_ascii_alphanumeric()
            || "!#$%&'*+/=?^_`{|}~-".contains(c)
            || (!c.is_ascii() && c.is_alphanumeric())
    };
    !local.is_empty()
        && local.len() <= MAX_EMAIL_LOCAL_BYTES
        && local.split('.').all(|atom| !atom.is_empty())
        && local.chars().all(|c| c == '.' || allowed(c))
}

/// At least two labels of letters, digits and inner hyphens; the last one not all digits (so
/// that a bare IP address is refused).
fn valid_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |label: &&str| {
        !label.is_empty()
            && label.len() <= MAX_DOMAIN_LABEL_BYTES
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    labels.len() >= 2
        && labels.iter().all(label_ok)
        && labels
            .last()
            .is_some_and(|tld| !tld.chars().all(|c| c.is_ascii_digit()))
}

/// A phone number in E.164 form: `+`, then 8 to 15 digits, the first not 0. Spaces and dashes
/// people write between groups are dropped.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Phone(String);

impl Phone {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let compact: String = raw
            .trim()
            .chars()
            .filter(|c| *c != ' ' && *c != '-')
            .collect();
        if compact.is_empty() {
            return Err("must not be blank; leave it out or send null instead");
        }
        let digits = compact
            .strip_prefix('+')
            .ok_or("must start with + and the country code")?;
        if !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err("must contain only digits after the +, spaces and dashes");
        }
        if !PHONE_DIGITS.contains(&digits.len()) {
            return Err("must have 8 to 15 digits after the +");
        }
        if digits.starts_with('0') {
            return Err("must not start with 0 after the + (country codes do not)");
        }
        Ok(Self(compact))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn today() -> NaiveDate {
        day(2026, 3, 15)
    }

    #[test]
    fn a_name_is_trimmed_and_kept_as_written() {
        let name = PatientName::parse("  Maria da Silva ").unwrap();
        assert_eq!(name.as_str(), "Maria da Silva");
        assert_eq!(
            PatientName::parse("Zoë O'Brien-Ñúñez").unwrap().as_str(),
            "Zoë O'Brien-Ñúñez"
        );
    }

    #[test]
    fn a_name_must_not_be_blank() {
        assert_eq!(PatientName::parse(""), Err("must not be blank"));
        assert_eq!(PatientName::parse(" \t "), Err("must not be blank"));
    }

    #[test]
    fn a_name_has_at_most_200_characters() {
        let longest = "é".repeat(200);
        assert_eq!(PatientName::parse(&longest).unwrap().as_str(), longest);
        assert_eq!(
            PatientName::parse(&"é".repeat(201)),
            Err("must be at most 200 characters")
        );
    }

    #[test]
    fn a_name_has_no_control_characters() {
        for bad in ["Ana\nSilva", "Ana\u{0}", "Ana\u{7f}Silva", "A\u{85}na"] {
            assert_eq!(
                PatientName::parse(bad),
                Err("must not contain control characters"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_date_of_birth_is_exactly_yyyy_mm_dd() {
        let dob = DateOfBirth::parse("1984-02-29", today()).unwrap();
        assert_eq!(dob.date(), day(1984, 2, 29));
        assert_eq!(dob.to_iso(), "1984-02-29");
        for bad in [
            "1984-2-29",
            "84-02-29",
            "1984/02/29",
            "29-02-1984",
            "1985-02-29",
            "1984-13-01",
            "1984-00-10",
            "1984-01-32",
            "+1984-01-01",
            "1984-01-01T00:00:00",
            " 1984-01-01",
            "",
            "1984-01-0١",
        ] {
            assert_eq!(
                DateOfBirth::parse(bad, today()),
                Err("must be a calendar date written YYYY-MM-DD"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_date_of_birth_is_not_before_1900() {
        assert!(DateOfBirth::parse("1900-01-01", today()).is_ok());
        assert_eq!(
            DateOfBirth::parse("1899-12-31", today()),
            Err("must not be before 1900-01-01")
        );
    }

    #[test]
    fn a_date_of_birth_is_not_in_the_future() {
        assert!(DateOfBirth::parse("2026-03-15", today()).is_ok());
        assert_eq!(
            DateOfBirth::parse("2026-03-16", today()),
            Err("must not be in the future")
        );
        assert_eq!(
            DateOfBirth::parse("9999-12-31", today()),
            Err("must not be in the future")
        );
    }

    #[test]
    fn today_is_the_latest_date_anywhere() {
        let late_evening_utc = tally_kernel::time::from_db("2026-03-15T10:00:00.000000Z").unwrap();
        assert_eq!(latest_today(late_evening_utc), day(2026, 3, 16));
        let early_utc = tally_kernel::time::from_db("2026-03-15T09:59:59.000000Z").unwrap();
        assert_eq!(latest_today(early_utc), day(2026, 3, 15));
    }

    #[test]
    fn an_email_keeps_its_local_part_and_lowercases_its_domain() {
        let email = Email::parse(" Ana.Silva+clinic@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "Ana.Silva+clinic@example.com");
        for good in [
            "a@b.co",
            "first.last@sub.example.org",
            "o'brien@example.ie",
            "user@xn--p1ai.xn--p1ai",
            "josé@correo.es",
            "x@my-clinic.example",
        ] {
            assert_eq!(Email::parse(good).unwrap().as_str(), good, "{good}");
        }
    }

    #[test]
    fn an_email_needs_a_local_part_an_at_and_a_dotted_domain() {
        for bad in [
            "plainaddress",
            "@example.com",
            "ana@",
            "ana@localhost",
            "ana@@example.com",
            "ana@exa mple.com",
            "an a@example.com",
            ".ana@example.com",
            "ana.@example.com",
            "an..a@example.com",
            "ana@example..com",
            "ana@-example.com",
            "ana@example-.com",
            "ana@example.com.",
            "ana@192.168.0.1",
            "\"ana\"@example.com",
            "ana(comment)@example.com",
            "ana@exam_ple.com",
        ] {
            assert_eq!(Email::parse(bad), Err(NOT_AN_EMAIL), "{bad}");
        }
        assert_eq!(
            Email::parse("  "),
            Err("must not be blank; leave it out or send null instead")
        );
    }

    #[test]
    fn an_email_respects_the_length_limits() {
        let local_64 = "a".repeat(64);
        assert!(Email::parse(&format!("{local_64}@example.com")).is_ok());
        assert_eq!(
            Email::parse(&format!("a{local_64}@example.com")),
            Err(NOT_AN_EMAIL)
        );
        let label_63 = "b".repeat(63);
        assert!(Email::parse(&format!("a@{label_63}.com")).is_ok());
        assert_eq!(
            Email::parse(&format!("a@b{label_63}.com")),
            Err(NOT_AN_EMAIL)
        );
        let long_domain = format!("{label_63}.{label_63}.{label_63}.{label_63}.com");
        assert_eq!(
            Email::parse(&format!("a@{long_domain}")),
            Err("must be at most 254 bytes long")
        );
    }

    #[test]
    fn parsing_a_parsed_email_or_phone_changes_nothing() {
        let email = Email::parse("Ana@Example.com").unwrap();
        assert_eq!(Email::parse(email.as_str()).unwrap(), email);
        let phone = Phone::parse("+55 11 98765-4321").unwrap();
        assert_eq!(Phone::parse(phone.as_str()).unwrap(), phone);
    }

    #[test]
    fn a_phone_drops_spaces_and_dashes() {
        assert_eq!(
            Phone::parse(" +55 11 98765-4321 ").unwrap().as_str(),
            "+5511987654321"
        );
        assert_eq!(
            Phone::parse("+1-202-555-0143").unwrap().as_str(),
            "+12025550143"
        );
    }

    #[test]
    fn a_phone_starts_with_a_plus() {
        assert_eq!(
            Phone::parse("5511987654321"),
            Err("must start with + and the country code")
        );
        assert_eq!(
            Phone::parse("00 55 11 98765 4321"),
            Err("must start with + and the country code")
        );
    }

    #[test]
    fn a_phone_has_only_digits_after_the_plus() {
        for bad in [
            "+1 (202) 555-0143",
            "+1.202.555.0143",
            "+1202555014x",
            "+1\t2025550143",
            "++12025550143",
            "+١٢٣٤٥٦٧٨٩",
        ] {
            assert_eq!(
                Phone::parse(bad),
                Err("must contain only digits after the +, spaces and dashes"),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_phone_has_8_to_15_digits() {
        assert!(Phone::parse("+12345678").is_ok());
        assert!(Phone::parse("+123456789012345").is_ok());
        assert_eq!(
            Phone::parse("+1234567"),
            Err("must have 8 to 15 digits after the +")
        );
        assert_eq!(
            Phone::parse("+1234567890123456"),
            Err("must have 8 to 15 digits after the +")
        );
        assert_eq!(
            Phone::parse("+"),
            Err("must have 8 to 15 digits after the +")
        );
    }

    #[test]
    fn a_phone_country_code_does_not_start_with_zero() {
        assert_eq!(
            Phone::parse("+0123456789"),
            Err("must not start with 0 after the + (country codes do not)")
        );
    }

    #[test]
    fn a_blank_phone_is_refused() {
        assert_eq!(
            Phone::parse(" - "),
            Err("must not be blank; leave it out or send null instead")
        );
    }

    #[test]
    fn debug_never_shows_patient_data() {
        let shown = format!(
            "{:?} {:?} {:?} {:?}",
            PatientName::parse("Maria Silva").unwrap(),
            DateOfBirth::parse("1984-02-29", today()).unwrap(),
            Email::parse("maria@example.com").unwrap(),
            Phone::parse("+5511987654321").unwrap()
        );
        assert_eq!(
            shown,
            "PatientName(<redacted>) DateOfBirth(<redacted>) Email(<redacted>) Phone(<redacted>)"
        );
    }
}
