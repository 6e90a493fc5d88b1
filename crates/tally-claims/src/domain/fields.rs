//! The parts of a claim, each parsed from the text a payer wrote into a type that holds only valid
//! values. Parsers get text that is already trimmed and not blank.
//!
//! Decisions, so that every importer reads a file the same way:
//! - A procedure is a CDT code: an upper-case `D` and exactly four digits (`D0180`).
//! - An NPI is exactly 10 digits whose last digit is the Luhn check digit computed over the
//!   prefix `80840` and the first nine digits (CMS's rule). A wrong check digit is refused, not
//!   warned about: a mistyped NPI would credit the wrong provider.
//! - An amount is dollars: an optional `$`, digits (thousands may be grouped with commas:
//!   `$1,250.00`), and at most two decimals (`150`, `150.5` and `150.50` are all accepted and
//!   exact). More decimals, a minus sign, or more than $10,000,000.00 is refused. Nothing rounds.
//! - A service date is `M/D/YY`, `M/D/YYYY` or `YYYY-MM-DD`, optionally followed by a time
//!   `H:MM` or `H:MM:SS` (after a space or `T`), or a full RFC 3339 timestamp. A two-digit year
//!   `YY` is the year 20YY (`3/28/18` is 2018-03-28): claims are from this century; write four
//!   digits for an earlier year. A date without an offset is read as UTC.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::Serialize;
use tally_kernel::luhn;
use tally_kernel::time::Timestamp;
use tally_kernel::{Currency, Money};

use super::error::Invalid;

/// Claims are in US dollars (document 002's `$X.XX`).
pub const CURRENCY: Currency = Currency::USD;

/// The largest amount a claim field may hold: $10,000,000.00. It keeps every net fee, and every
/// provider's total over billions of claims, far inside an `i64`.
pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000;

/// A CDT procedure code such as `D0180`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ProcedureCode(String);

impl ProcedureCode {
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        match text.as_bytes() {
            [b'D', digits @ ..] if digits.len() == 4 && digits.iter().all(u8::is_ascii_digit) => {
                Ok(Self(text.to_owned()))
            }
            _ => Err(Invalid::NotACdtCode),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A National Provider Identifier: 10 digits with a valid check digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Npi(String);

impl Npi {
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        if text.len() != 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Invalid::NpiNotTenDigits);
        }
        // The NPI check digit is the Luhn digit of the number prefixed with 80840 (the ISO
        // 7812 issuer prefix for US health applications).
        let mut prefixed = *b"80840__________";
        prefixed[5..].copy_from_slice(text.as_bytes());
        if !std::str::from_utf8(&prefixed).is_ok_and(luhn::is_valid) {
            return Err(Invalid::NpiCheckDigit);
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The NPI as a number (its ten digits), for keying maps without comparing text. Its text
    /// is the number written with ten digits, leading zeros included: [`Npi::text_of`].
    pub fn number(&self) -> u64 {
        self.0
            .bytes()
            .fold(0, |n, digit| n * 10 + u64::from(digit - b'0'))
    }

    /// The text of the NPI whose [`Npi::number`] is `number`.
    pub fn text_of(number: u64) -> String {
        format!("{number:010}")
    }
}

/// Free text (group and subscriber numbers, quadrant): at most `max_chars`, no control characters.
pub fn parse_text(text: &str, max_chars: usize) -> Result<String, Invalid> {
    // A text has at most as many characters as bytes: most need no counting.
    if text.len() > max_chars && text.chars().count() > max_chars {
        return Err(Invalid::TooLong(max_chars));
    }
    // ASCII text, the usual, has only ASCII control characters.
    let control = if text.is_ascii() {
        text.bytes().any(|b| b.is_ascii_control())
    } else {
        text.chars().any(char::is_control)
    };
    if control {
        return Err(Invalid::ControlCharacters);
    }
    Ok(text.to_owned())
}

/// An amount in dollars (`$150.00`, `150.5`, `$1,250.00`), exactly, in cents. Reads the digits
/// straight into an integer: an import parses four amounts a row.
pub fn parse_amount(text: &str) -> Result<Money, Invalid> {
    let (minus_first, rest) = split_prefix(text, '-');
    let (_, rest) = split_prefix(trim_start(rest), '$');
    let (minus_after, rest) = split_prefix(trim_start(rest), '-');
    let negative = minus_first || minus_after;
    let (int, frac) = match split_once_byte(rest, |b| b == b'.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (rest, None),
    };
    // `None` when the integer part does not fit: refused as too large once the rest is known good.
    let dollars = ungroup(int).ok_or(Invalid::NotAnAmount)?;
    let frac = frac.unwrap_or("0");
    if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Invalid::NotAnAmount);
    }
    if frac.len() > 2 {
        return Err(Invalid::TooManyDecimals);
    }
    let cents = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(2)
        .fold(0, |n, b| n * 10 + i64::from(b - b'0'));
    let amount_minor = dollars
        .and_then(|d| d.checked_mul(100))
        .and_then(|d| d.checked_add(cents))
        .ok_or(Invalid::AmountTooLarge)?;
    if negative && amount_minor != 0 {
        return Err(Invalid::NegativeAmount);
    }
    if amount_minor > MAX_AMOUNT_MINOR {
        return Err(Invalid::AmountTooLarge);
    }
    Ok(Money::new(amount_minor, CURRENCY))
}

fn split_prefix(text: &str, prefix: char) -> (bool, &str) {
    match text.strip_prefix(prefix) {
        Some(rest) => (true, rest),
        None => (false, text),
    }
}

/// `text` without leading and trailing whitespace, as [`str::trim`] (Unicode's), without decoding
/// characters while they are ASCII: a row's every field is trimmed.
#[inline]
pub(crate) fn trim(text: &str) -> &str {
    let text = trim_start(text);
    let bytes = text.as_bytes();
    let mut end = bytes.len();
    while end > 0 && is_ascii_space(bytes[end - 1]) {
        end -= 1;
    }
    let rest = &text[..end];
    if end > 0 && !bytes[end - 1].is_ascii() {
        rest.trim_end()
    } else {
        rest
    }
}

/// `text` without its leading whitespace, as [`str::trim_start`] (Unicode's), without decoding
/// characters while they are ASCII.
#[inline]
fn trim_start(text: &str) -> &str {
    let bytes = text.as_bytes();
    let mut start = 0;
    while start < bytes.len() && is_ascii_space(bytes[start]) {
        start += 1;
    }
    let rest = &text[start..];
    if start < bytes.len() && !bytes[start].is_ascii() {
        rest.trim_start()
    } else {
        rest
    }
}

/// The ASCII characters that [`char::is_whitespace`] holds to be whitespace (which includes the
/// vertical tab, unlike [`u8::is_ascii_whitespace`]).
#[inline]
fn is_ascii_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The text before and after the first byte `at` matches, which must be an ASCII byte (so both
/// sides are whole characters): [`str::split_once`] for the ASCII separators of amounts, dates
/// and times, without a character searcher's set-up for a few bytes.
fn split_once_byte(text: &str, at: impl Fn(u8) -> bool) -> Option<(&str, &str)> {
    let i = text.bytes().position(|b| b.is_ascii() && at(b))?;
    Some((&text[..i], &text[i + 1..]))
}

/// [`str::split`] on one ASCII byte.
fn split_byte(text: &str, at: u8) -> impl Iterator<Item = &str> {
    debug_assert!(at.is_ascii());
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match split_once_byte(current, |b| b == at) {
            Some((part, after)) => {
                rest = Some(after);
                Some(part)
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// The value of an integer part written plainly (`1250`) or grouped by thousands (`1,250`):
/// `None` when it is not written so, `Some(None)` when it is but does not fit an `i64`.
fn ungroup(int: &str) -> Option<Option<i64>> {
    let mut groups = split_byte(int, b',');
    let first = groups.next()?;
    let digits = |g: &str| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit());
    if !digits(first) {
        return None;
    }
    let accumulate = |value: Option<i64>, group: &str| {
        group.bytes().fold(value, |n, b| {
            n?.checked_mul(10)?.checked_add(i64::from(b - b'0'))
        })
    };
    let mut value = accumulate(Some(0), first);
    let mut grouped = false;
    for group in groups {
        if group.len() != 3 || !digits(group) {
            return None;
        }
        grouped = true;
        value = accumulate(value, group);
    }
    if grouped && (first.len() > 3 || first.starts_with('0')) {
        return None;
    }
    Some(value)
}

/// A service date: `3/28/18 0:00`, `2018-03-28 0:00:00`, `2018-03-28T00:00:00Z` and the other
/// forms the module documents, as a UTC instant.
pub fn parse_service_date(text: &str) -> Result<Timestamp, Invalid> {
    if let Ok(ts) = DateTime::parse_from_rfc3339(text) {
        return Ok(ts.with_timezone(&Utc));
    }
    let (date, time) = match split_once_byte(text, |b| b == b' ' || b == b'T') {
        Some((date, time)) => (date, Some(trim_start(time))),
        None => (text, None),
    };
    let date = parse_date(date).ok_or(Invalid::NotADate)?;
    let time = match time {
        None => NaiveTime::MIN,
        Some(time) => {
            parse_time(time.strip_suffix('Z').unwrap_or(time)).ok_or(Invalid::NotADate)?
        }
    };
    Ok(date.and_time(time).and_utc())
}

fn parse_date(text: &str) -> Option<NaiveDate> {
    let (year, month, day) = if let Some((m, rest)) = split_once_byte(text, |b| b == b'/') {
        let (d, y) = split_once_byte(rest, |b| b == b'/')?;
        let year = match y.len() {
            2 => 2000 + number(y, 2, 2)?,
            _ => number(y, 4, 4)?,
        };
        (year, number(m, 1, 2)?, number(d, 1, 2)?)
    } else {
        let mut parts = split_byte(text, b'-');
        let y = number(parts.next()?, 4, 4)?;
        let m = number(parts.next()?, 1, 2)?;
        let d = number(parts.next()?, 1, 2)?;
        if parts.next().is_some() {
            return None;
        }
        (y, m, d)
    };
    NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)
}

fn parse_time(text: &str) -> Option<NaiveTime> {
    let mut parts = split_byte(text, b':');
    let hour = number(parts.next()?, 1, 2)?;
    let minute = number(parts.next()?, 2, 2)?;
    let second = match parts.next() {
        Some(s) => number(s, 2, 2)?,
        None => 0,
    };
    if parts.next().is_some() {
        return None;
    }
    NaiveTime::from_hms_opt(hour, minute, second)
}

/// An unsigned decimal of `min_len` to `max_len` ASCII digits.
fn number(text: &str, min_len: usize, max_len: usize) -> Option<u32> {
    if !(min_len..=max_len).contains(&text.len()) || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cents(text: &str) -> Result<i64, Invalid> {
        parse_amount(text).map(|m| m.amount_minor)
    }

    fn date(text: &str) -> Result<String, Invalid> {
        parse_service_date(text).map(tally_kernel::time::to_db)
    }

    #[test]
    fn procedure_codes_are_d_and_four_digits() {
        assert_eq!(ProcedureCode::parse("D0180").unwrap().as_str(), "D0180");
        assert!(ProcedureCode::parse("D4346").is_ok());
        for bad in [
            "0180",
            "d0180",
            "D018",
            "D01800",
            "DX180",
            "D01 8",
            "E0180",
            "D",
            "D٠١٨٠",
        ] {
            assert_eq!(
                ProcedureCode::parse(bad),
                Err(Invalid::NotACdtCode),
                "{bad}"
            );
        }
    }

    #[test]
    fn npi_is_ten_digits_with_a_luhn_check_digit_over_prefix_80840() {
        // CMS's published example, and the NPI of document 002's sample file.
        assert_eq!(Npi::parse("1234567893").unwrap().as_str(), "1234567893");
        assert!(Npi::parse("1497775530").is_ok());
        assert_eq!(Npi::parse("1234567890"), Err(Invalid::NpiCheckDigit));
        assert_eq!(Npi::parse("1497775531"), Err(Invalid::NpiCheckDigit));
        for bad in [
            "123456789",
            "12345678930",
            "123456789X",
            "12345 7893",
            "+234567893",
        ] {
            assert_eq!(Npi::parse(bad), Err(Invalid::NpiNotTenDigits), "{bad}");
        }
    }

    #[test]
    fn an_npi_number_writes_back_as_its_ten_digits() {
        for text in ["1234567893", "0000000006", "9999999995"] {
            let npi = Npi::parse(text).unwrap();
            assert_eq!(Npi::text_of(npi.number()), text);
        }
        let npi = Npi::parse("1234567893").unwrap();
        assert_eq!(npi.number(), 1_234_567_893);
        assert_eq!(Npi::text_of(42), "0000000042");
    }

    #[test]
    fn every_single_digit_typo_in_an_npi_is_caught() {
        let valid = b"1234567893";
        for position in 0..10 {
            for digit in b'0'..=b'9' {
                let mut typo = *valid;
                if typo[position] == digit {
                    continue;
                }
                typo[position] = digit;
                let text = std::str::from_utf8(&typo).unwrap();
                assert_eq!(Npi::parse(text), Err(Invalid::NpiCheckDigit), "{text}");
            }
        }
    }

    #[test]
    fn amounts_are_dollars_parsed_exactly_into_cents() {
        assert_eq!(cents("$150.00"), Ok(15000));
        assert_eq!(cents("150.00"), Ok(15000));
        assert_eq!(cents("$150"), Ok(15000));
        assert_eq!(cents("$150.5"), Ok(15050));
        assert_eq!(cents("$0.07"), Ok(7));
        assert_eq!(cents("$0.00"), Ok(0));
        assert_eq!(cents("$ 16.25"), Ok(1625));
        assert_eq!(cents("$1,250.00"), Ok(125000));
        assert_eq!(cents("$10,000,000.00"), Ok(MAX_AMOUNT_MINOR));
        assert_eq!(cents("-$0.00"), Ok(0), "minus zero is zero");
    }

    #[test]
    fn amounts_refuse_rounding_signs_and_other_spellings() {
        assert_eq!(cents("$150.005"), Err(Invalid::TooManyDecimals));
        assert_eq!(cents("150.500"), Err(Invalid::TooManyDecimals));
        assert_eq!(cents("-$5.00"), Err(Invalid::NegativeAmount));
        assert_eq!(cents("$-5.00"), Err(Invalid::NegativeAmount));
        assert_eq!(cents("-5"), Err(Invalid::NegativeAmount));
        assert_eq!(cents("$10,000,000.01"), Err(Invalid::AmountTooLarge));
        assert_eq!(cents(&"9".repeat(30)), Err(Invalid::AmountTooLarge));
        for bad in [
            "$", "abc", "$.50", "$150.", "1.5e2", "$1,25.00", "$12,50", "1,2500", "0,250",
            "$1.2.3", "USD 5", "5$", "+5", "$$5", "1 000", "NaN",
        ] {
            assert_eq!(cents(bad), Err(Invalid::NotAnAmount), "{bad}");
        }
    }

    #[test]
    fn service_dates_in_the_forms_payers_export() {
        let midnight = Ok(String::from("2018-03-28T00:00:00.000000Z"));
        for text in [
            "3/28/18 0:00",
            "03/28/18 00:00",
            "3/28/2018 0:00",
            "3/28/18",
            "2018-03-28 0:00:00",
            "2018-03-28 00:00",
            "2018-03-28",
            "2018-03-28T00:00:00",
            "2018-03-28T00:00:00Z",
            "2018-03-28T02:00:00+02:00",
        ] {
            assert_eq!(date(text), midnight, "{text}");
        }
        assert_eq!(
            date("12/31/99 23:59:59"),
            Ok(String::from("2099-12-31T23:59:59.000000Z")),
            "two-digit years are 20YY"
        );
        assert_eq!(
            date("1/2/1999 7:05"),
            Ok(String::from("1999-01-02T07:05:00.000000Z"))
        );
    }

    #[test]
    fn impossible_or_ambiguous_dates_are_refused() {
        for bad in [
            "2/30/18 0:00",
            "13/1/18",
            "3/28/018",
            "3/28",
            "28.03.2018",
            "18-03-28",
            "2018-03-28-5",
            "3/28/18 24:00",
            "3/28/18 0:0",
            "3/28/18 0:00:00:00",
            "3/28/18 noon",
            "yesterday",
        ] {
            assert_eq!(date(bad), Err(Invalid::NotADate), "{bad}");
        }
    }

    /// Text of whitespace (ASCII, vertical tab, Unicode's no-break and ideographic spaces) and
    /// other characters, ASCII or not.
    fn spaced_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::strategy::Strategy as _;
        proptest::collection::vec(
            proptest::sample::select(vec![
                ' ', '\t', '\n', '\r', '\u{0B}', '\u{0C}', '\u{1F}', '\u{85}', '\u{A0}',
                '\u{3000}', 'a', '7', '$', '.', '/', 'é', '€',
            ]),
            0..8,
        )
        .prop_map(|chars| chars.into_iter().collect())
    }

    proptest::proptest! {
        #[test]
        fn trimming_is_unicodes(text in spaced_text()) {
            proptest::prop_assert_eq!(trim(&text), text.trim());
            proptest::prop_assert_eq!(trim_start(&text), text.trim_start());
        }

        #[test]
        fn splitting_on_a_byte_is_splitting_on_its_character(text in spaced_text()) {
            for at in [b'.', b'/', b'$'] {
                proptest::prop_assert_eq!(
                    split_once_byte(&text, |b| b == at),
                    text.split_once(char::from(at))
                );
                proptest::prop_assert_eq!(
                    split_byte(&text, at).collect::<Vec<_>>(),
                    text.split(char::from(at)).collect::<Vec<_>>()
                );
            }
        }

        #[test]
        fn any_amount_written_in_dollars_and_cents_reads_back_exactly(
            minor in 0..=MAX_AMOUNT_MINOR,
            dollar_sign: bool,
            trailing_spaces in 0usize..3,
        ) {
            let text = format!(
                "{}{}{}",
                if dollar_sign { "$" } else { "" },
                Money::new(minor, CURRENCY).to_decimal_string(),
                " ".repeat(trailing_spaces)
            );
            proptest::prop_assert_eq!(cents(text.trim()), Ok(minor));
        }

        #[test]
        fn thousands_separators_do_not_change_the_amount(minor in 0..=MAX_AMOUNT_MINOR) {
            let plain = Money::new(minor, CURRENCY).to_decimal_string();
            let (int, frac) = plain.split_once('.').unwrap();
            let mut grouped = String::new();
            for (i, digit) in int.chars().enumerate() {
                if i > 0 && (int.len() - i) % 3 == 0 {
                    grouped.push(',');
                }
                grouped.push(digit);
            }
            proptest::prop_assert_eq!(cents(&format!("${grouped}.{frac}")), Ok(minor));
        }
    }

    #[test]
    fn text_fields_have_a_length_limit_and_no_control_characters() {
        assert_eq!(parse_text("GRP-1000", 64), Ok(String::from("GRP-1000")));
        assert_eq!(parse_text(&"x".repeat(65), 64), Err(Invalid::TooLong(64)));
        assert_eq!(parse_text("a\u{0}b", 64), Err(Invalid::ControlCharacters));
        // Characters, not bytes, are counted; control characters beyond ASCII are refused too.
        assert_eq!(parse_text(&"é".repeat(64), 64), Ok("é".repeat(64)));
        assert_eq!(parse_text(&"é".repeat(65), 64), Err(Invalid::TooLong(64)));
        assert_eq!(parse_text("a\u{7f}b", 64), Err(Invalid::ControlCharacters));
        assert_eq!(parse_text("é\u{85}b", 64), Err(Invalid::ControlCharacters));
    }
}
