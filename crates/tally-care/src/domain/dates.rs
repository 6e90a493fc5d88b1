//! Dates and times as the API reads and writes them.
//!
//! Accepted: `YYYY-MM-DDTHH:MM:SS`, optionally with 1 to 6 decimals of seconds, optionally
//! followed by `Z` or an offset `±HH:MM`. A time with an offset is that instant; one without
//! (document 000 writes `2021-07-01T08:30:00.000`) is read in the clinic's time zone. Nothing
//! else is guessed: no space for the `T`, no missing seconds, no nanoseconds (times are kept to
//! the microsecond and are never rounded).

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, TimeZone};
use tally_kernel::time::Timestamp;

pub const NOT_A_DATE_TIME: &str =
    "must be a date and time like 2021-07-01T08:30:00.000, optionally with Z or an offset like -03:00";
pub const TOO_PRECISE: &str = "must have at most 6 decimals of seconds";

/// Reads a date and time; one without an offset is read at `clinic_offset`.
pub fn parse(raw: &str, clinic_offset: FixedOffset) -> Result<Timestamp, &'static str> {
    let b = raw.as_bytes();
    let digit_at = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let shape_ok = b.len() >= 19
        && [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
            .into_iter()
            .all(digit_at)
        && (b[4], b[7], b[10], b[13], b[16]) == (b'-', b'-', b'T', b':', b':');
    if !shape_ok {
        return Err(NOT_A_DATE_TIME);
    }
    let number = |from: usize, to: usize| raw[from..to].parse::<u32>().map_err(|_| NOT_A_DATE_TIME);
    let mut rest = &raw[19..];
    let mut micros = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(NOT_A_DATE_TIME);
        }
        if digits > 6 {
            return Err(TOO_PRECISE);
        }
        micros = number(20, 20 + digits)? * 10u32.pow(6 - digits as u32);
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "" => clinic_offset,
        "Z" => FixedOffset::east_opt(0).ok_or(NOT_A_DATE_TIME)?,
        _ => parse_offset(rest).ok_or(NOT_A_DATE_TIME)?,
    };
    let year = raw[0..4].parse::<i32>().map_err(|_| NOT_A_DATE_TIME)?;
    let date = NaiveDate::from_ymd_opt(year, number(5, 7)?, number(8, 10)?);
    let time =
        NaiveTime::from_hms_micro_opt(number(11, 13)?, number(14, 16)?, number(17, 19)?, micros);
    let (Some(date), Some(time)) = (date, time) else {
        return Err(NOT_A_DATE_TIME);
    };
    offset
        .from_local_datetime(&NaiveDateTime::new(date, time))
        .single()
        .map(|t| t.to_utc())
        .ok_or(NOT_A_DATE_TIME)
}

/// `+HH:MM` or `-HH:MM`, hours 0 to 23.
fn parse_offset(text: &str) -> Option<FixedOffset> {
    let b = text.as_bytes();
    let shape_ok = b.len() == 6
        && matches!(b[0], b'+' | b'-')
        && b[3] == b':'
        && [1, 2, 4, 5].iter().all(|&i| b[i].is_ascii_digit());
    if !shape_ok {
        return None;
    }
    let hours: i32 = text[1..3].parse().ok()?;
    let minutes: i32 = text[4..6].parse().ok()?;
    if hours > 23 || minutes > 59 {
        return None;
    }
    let seconds = (hours * 60 + minutes) * 60;
    FixedOffset::east_opt(if b[0] == b'-' { -seconds } else { seconds })
}

/// An instant written in the clinic's time zone with its offset, to the millisecond
/// (`2021-07-01T08:30:00.000Z`, `2021-07-01T08:30:00.000-03:00`): how document 000's routes
/// show dates, close to how they are sent.
pub fn to_clinic_text(ts: Timestamp, clinic_offset: FixedOffset) -> String {
    let local: DateTime<FixedOffset> = ts.with_timezone(&clinic_offset);
    let format = if ts.timestamp_subsec_micros() % 1000 == 0 {
        SecondsFormat::Millis
    } else {
        SecondsFormat::Micros
    };
    local.to_rfc3339_opts(format, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc() -> FixedOffset {
        FixedOffset::east_opt(0).unwrap()
    }

    fn sao_paulo() -> FixedOffset {
        FixedOffset::west_opt(3 * 3600).unwrap()
    }

    fn at(text: &str) -> Timestamp {
        tally_kernel::time::from_db(text).unwrap()
    }

    #[test]
    fn a_time_without_an_offset_is_read_in_the_clinic_zone() {
        assert_eq!(
            parse("2021-07-01T08:30:00.000", utc()),
            Ok(at("2021-07-01T08:30:00Z"))
        );
        assert_eq!(
            parse("2021-07-01T08:30:00.000", sao_paulo()),
            Ok(at("2021-07-01T11:30:00Z"))
        );
        assert_eq!(
            parse("2021-07-01T08:30:00", sao_paulo()),
            Ok(at("2021-07-01T11:30:00Z"))
        );
    }

    #[test]
    fn an_offset_is_honoured() {
        for (text, expected) in [
            ("2021-07-01T08:30:00Z", "2021-07-01T08:30:00Z"),
            ("2021-07-01T08:30:00.5+01:00", "2021-07-01T07:30:00.5Z"),
            (
                "2021-07-01T08:30:00.123456-03:00",
                "2021-07-01T11:30:00.123456Z",
            ),
            ("2021-07-01T23:30:00+05:30", "2021-07-01T18:00:00Z"),
        ] {
            assert_eq!(parse(text, sao_paulo()), Ok(at(expected)), "{text}");
        }
    }

    #[test]
    fn anything_else_is_refused_without_guessing() {
        for bad in [
            "",
            "2021-07-01",
            "2021-07-01 08:30:00",
            "2021-07-01t08:30:00",
            "2021-07-01T08:30",
            "2021-7-01T08:30:00",
            "2021-07-01T08:30:00.",
            "2021-07-01T08:30:00.0x",
            "2021-07-01T08:30:00z",
            "2021-07-01T08:30:00+0100",
            "2021-07-01T08:30:00+24:00",
            "2021-07-01T08:30:00+01:60",
            "2021-02-30T08:30:00",
            "2021-07-01T24:00:00",
            "2021-07-01T08:60:00",
            "2021-07-01T08:30:60",
            "+2021-07-01T08:30:00",
            "2021-07-01T08:30:00Z ",
            "١٢٣٤-07-01T08:30:00",
        ] {
            assert_eq!(parse(bad, utc()), Err(NOT_A_DATE_TIME), "{bad:?}");
        }
        assert_eq!(
            parse("2021-07-01T08:30:00.0000001", utc()),
            Err(TOO_PRECISE)
        );
    }

    #[test]
    fn clinic_text_shows_the_clinic_offset() {
        let t = at("2021-07-01T11:30:00Z");
        assert_eq!(to_clinic_text(t, utc()), "2021-07-01T11:30:00.000Z");
        assert_eq!(
            to_clinic_text(t, sao_paulo()),
            "2021-07-01T08:30:00.000-03:00"
        );
        assert_eq!(
            to_clinic_text(at("2021-07-01T11:30:00.000001Z"), utc()),
            "2021-07-01T11:30:00.000001Z"
        );
        let written = to_clinic_text(t, sao_paulo());
        assert_eq!(parse(&written, utc()), Ok(t), "reads back");
    }
}
