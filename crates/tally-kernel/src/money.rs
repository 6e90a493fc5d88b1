//! Money: an integer count of minor units with an ISO 4217 currency.
//!
//! Amounts arrive as decimal text (a JSON string, or the raw text of a JSON number) and are parsed
//! exactly. Nothing here rounds: more decimals than the currency has is an error, never a rounding.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An ISO 4217 currency that has minor units (funds and special codes such as `XAU` do not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency(iso_currency::Currency);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an ISO 4217 currency code with minor units")]
pub struct UnknownCurrency(pub String);

impl Currency {
    pub const USD: Currency = Currency(iso_currency::Currency::USD);

    pub fn parse(code: &str) -> Result<Self, UnknownCurrency> {
        iso_currency::Currency::from_code(code)
            .filter(|c| c.code() == code && c.exponent().is_some())
            .map(Currency)
            .ok_or_else(|| UnknownCurrency(code.to_owned()))
    }

    pub fn code(self) -> &'static str {
        self.0.code()
    }

    /// The ISO 4217 numeric code (840 for USD).
    pub fn numeric(self) -> u16 {
        self.0.numeric()
    }

    /// How many decimal digits the minor unit has (2 for USD, 0 for JPY, 3 for KWD).
    pub fn exponent(self) -> u32 {
        // `parse` only admits currencies whose exponent is known.
        u32::from(self.0.exponent().unwrap_or(0))
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Currency::parse(&code).map_err(serde::de::Error::custom)
    }
}

/// An exact amount of one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: Currency,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("must be a decimal number such as 12.34")]
    NotADecimal,
    #[error("has more decimals than {currency} allows ({max})")]
    TooManyDecimals { currency: Currency, max: u32 },
    #[error("is out of range")]
    OutOfRange,
    #[error("must be greater than zero")]
    NotPositive,
}

impl Money {
    pub fn new(amount_minor: i64, currency: Currency) -> Self {
        Self {
            amount_minor,
            currency,
        }
    }

    /// Parses decimal text (`12`, `12.3`, `-0.05`, `1.5e2`) exactly into minor units.
    pub fn parse(text: &str, currency: Currency) -> Result<Self, AmountError> {
        parse_minor(text, currency).map(|amount_minor| Self {
            amount_minor,
            currency,
        })
    }

    /// Parses an amount that must be greater than zero, as every movement of money is.
    pub fn parse_positive(text: &str, currency: Currency) -> Result<Self, AmountError> {
        let money = Self::parse(text, currency)?;
        if money.amount_minor <= 0 {
            return Err(AmountError::NotPositive);
        }
        Ok(money)
    }

    /// The amount as decimal text with exactly the currency's number of decimals.
    pub fn to_decimal_string(self) -> String {
        format_minor(self.amount_minor, self.currency.exponent())
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.to_decimal_string(), self.currency)
    }
}

/// Digits beyond this many significant digits cannot fit an `i64` of minor units anyway.
const MAX_SIGNIFICANT_DIGITS: usize = 40;
/// Exponents beyond this are out of range for any non-zero amount.
const MAX_EXPONENT_MAGNITUDE: i64 = 400;

/// An exact decimal number as a client wrote it, before its currency is known:
/// `significant × 10^exponent`, with no leading or trailing zeros in `significant`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decimal {
    negative: bool,
    significant: String,
    exponent: i64,
}

impl Decimal {
    /// Parses `12`, `12.30`, `-0.05`, `1.5e2`: JSON number syntax, also accepted inside strings.
    pub fn parse(text: &str) -> Result<Self, AmountError> {
        let bytes = text.as_bytes();
        let (negative, rest) = match bytes.first() {
            Some(b'-') => (true, &bytes[1..]),
            _ => (false, bytes),
        };
        let mantissa_end = rest
            .iter()
            .position(|&b| b == b'e' || b == b'E')
            .unwrap_or(rest.len());
        let (mantissa, exponent_part) = rest.split_at(mantissa_end);
        let (int_digits, frac_digits, has_dot) = match mantissa.iter().position(|&b| b == b'.') {
            Some(dot) => (&mantissa[..dot], &mantissa[dot + 1..], true),
            None => (mantissa, &mantissa[..0], false),
        };
        let all_digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
        if int_digits.is_empty() || !all_digits(int_digits) || !all_digits(frac_digits) {
            return Err(AmountError::NotADecimal);
        }
        if has_dot && frac_digits.is_empty() {
            return Err(AmountError::NotADecimal);
        }
        let exp = if exponent_part.is_empty() {
            0
        } else {
            parse_exponent(&exponent_part[1..])?
        };

        let digits: Vec<u8> = int_digits.iter().chain(frac_digits).copied().collect();
        let Some(first) = digits.iter().position(|&b| b != b'0') else {
            return Ok(Self::zero());
        };
        let last = digits.iter().rposition(|&b| b != b'0').unwrap_or(first);
        let trailing_zeros = (digits.len() - 1 - last) as i64;
        let significant = &digits[first..=last];
        if significant.len() > MAX_SIGNIFICANT_DIGITS || exp.abs() > MAX_EXPONENT_MAGNITUDE {
            return Err(AmountError::OutOfRange);
        }
        Ok(Self {
            negative,
            significant: String::from_utf8_lossy(significant).into_owned(),
            exponent: exp - frac_digits.len() as i64 + trailing_zeros,
        })
    }

    fn zero() -> Self {
        Self {
            negative: false,
            significant: String::new(),
            exponent: 0,
        }
    }

    pub fn is_zero(&self) -> bool {
        self.significant.is_empty()
    }

    pub fn is_negative(&self) -> bool {
        self.negative && !self.is_zero()
    }

    /// The amount in minor units of `currency`, refusing anything that would need rounding.
    pub fn to_money(&self, currency: Currency) -> Result<Money, AmountError> {
        if self.is_zero() {
            return Ok(Money::new(0, currency));
        }
        let shift = self.exponent + i64::from(currency.exponent());
        if shift < 0 {
            return Err(AmountError::TooManyDecimals {
                currency,
                max: currency.exponent(),
            });
        }
        if self.significant.len() + shift as usize > MAX_SIGNIFICANT_DIGITS {
            return Err(AmountError::OutOfRange);
        }
        let mut value: i128 = 0;
        for d in self.significant.bytes() {
            value = value * 10 + i128::from(d - b'0');
        }
        for _ in 0..shift {
            value *= 10;
        }
        let signed = if self.negative { -value } else { value };
        i64::try_from(signed)
            .map(|m| Money::new(m, currency))
            .map_err(|_| AmountError::OutOfRange)
    }

    /// An amount that moves money: greater than zero, in minor units of `currency`.
    pub fn to_positive_money(&self, currency: Currency) -> Result<Money, AmountError> {
        if self.is_zero() || self.negative {
            return Err(AmountError::NotPositive);
        }
        self.to_money(currency)
    }
}

/// The canonical form (`5005e-1` for `500.50`): equal amounts print equal, whatever the spelling.
impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0");
        }
        let sign = if self.negative { "-" } else { "" };
        write!(f, "{sign}{}e{}", self.significant, self.exponent)
    }
}

fn parse_minor(text: &str, currency: Currency) -> Result<i64, AmountError> {
    Decimal::parse(text)?
        .to_money(currency)
        .map(|m| m.amount_minor)
}

fn parse_exponent(text: &[u8]) -> Result<i64, AmountError> {
    let (negative, digits) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(AmountError::NotADecimal);
    }
    let mut value: i64 = 0;
    for &d in digits {
        value = value.saturating_mul(10).saturating_add(i64::from(d - b'0'));
    }
    Ok(if negative { -value } else { value })
}

fn format_minor(amount_minor: i64, exponent: u32) -> String {
    let sign = if amount_minor < 0 { "-" } else { "" };
    let abs = amount_minor.unsigned_abs();
    if exponent == 0 {
        return format!("{sign}{abs}");
    }
    let unit = 10u64.pow(exponent);
    format!(
        "{sign}{}.{:0width$}",
        abs / unit,
        abs % unit,
        width = exponent as usize
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn usd(text: &str) -> Result<i64, AmountError> {
        Money::parse(text, Currency::USD).map(|m| m.amount_minor)
    }

    #[test]
    fn parses_plain_and_exponent_notation_exactly() {
        assert_eq!(usd("500.5"), Ok(50050));
        assert_eq!(usd("1000"), Ok(100000));
        assert_eq!(usd("0.01"), Ok(1));
        assert_eq!(usd("-12.30"), Ok(-1230));
        assert_eq!(usd("1.5e2"), Ok(15000));
        assert_eq!(usd("15E-1"), Ok(150));
        assert_eq!(usd("500.500"), Ok(50050), "trailing zeros need no rounding");
        assert_eq!(usd("0e999999"), Ok(0));
    }

    #[test]
    fn refuses_what_would_need_rounding_or_does_not_fit() {
        let too_many = Err(AmountError::TooManyDecimals {
            currency: Currency::USD,
            max: 2,
        });
        assert_eq!(usd("500.555"), too_many);
        assert_eq!(usd("1e-3"), too_many);
        assert_eq!(usd("92233720368547758.08"), Err(AmountError::OutOfRange));
        assert_eq!(usd("92233720368547758.07"), Ok(i64::MAX));
        assert_eq!(usd("1e400"), Err(AmountError::OutOfRange));
        assert_eq!(usd(&"9".repeat(100)), Err(AmountError::OutOfRange));
        for bad in [
            "", "-", ".5", "5.", "1,5", "1.2.3", "abc", "1e", "1e+", " 1", "NaN", "+1",
        ] {
            assert_eq!(usd(bad), Err(AmountError::NotADecimal), "{bad:?}");
        }
    }

    #[test]
    fn respects_each_currency_exponent() {
        let jpy = Currency::parse("JPY").unwrap();
        let kwd = Currency::parse("KWD").unwrap();
        assert_eq!(Money::parse("150", jpy).unwrap().amount_minor, 150);
        assert!(Money::parse("150.5", jpy).is_err());
        assert_eq!(Money::parse("1.234", kwd).unwrap().amount_minor, 1234);
        assert_eq!(Money::new(1234, kwd).to_decimal_string(), "1.234");
        assert_eq!(Money::new(-5, Currency::USD).to_decimal_string(), "-0.05");
        assert_eq!(Money::new(150, jpy).to_decimal_string(), "150");
    }

    #[test]
    fn positive_amounts_refuse_zero_and_negative() {
        assert_eq!(
            Money::parse_positive("0", Currency::USD),
            Err(AmountError::NotPositive)
        );
        assert_eq!(
            Money::parse_positive("-1", Currency::USD),
            Err(AmountError::NotPositive)
        );
    }

    #[test]
    fn decimals_compare_by_value_not_spelling() {
        let a = Decimal::parse("500.50").unwrap();
        let b = Decimal::parse("5.005e2").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "5005e-1");
        assert!(Decimal::parse("-0.00").unwrap().is_zero());
        assert!(!Decimal::parse("-0.00").unwrap().is_negative());
        let jpy = Currency::parse("JPY").unwrap();
        assert!(a.to_money(jpy).is_err());
        assert_eq!(
            Decimal::parse("-3").unwrap().to_positive_money(jpy),
            Err(AmountError::NotPositive)
        );
    }

    #[test]
    fn unknown_and_unitless_currencies_are_refused() {
        assert!(Currency::parse("usd").is_err());
        assert!(Currency::parse("XXX").is_err());
        assert!(Currency::parse("ABC").is_err());
        assert_eq!(Currency::parse("EUR").unwrap().exponent(), 2);
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(minor in any::<i64>()) {
            let text = Money::new(minor, Currency::USD).to_decimal_string();
            prop_assert_eq!(usd(&text), Ok(minor));
        }

        #[test]
        fn scientific_form_parses_to_the_same_amount(minor in -10_000_000_000i64..10_000_000_000) {
            let text = format!("{minor}e-2");
            prop_assert_eq!(usd(&text), Ok(minor));
        }
    }
}
