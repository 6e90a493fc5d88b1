//! Amounts on the wire: read exactly from the raw JSON token, written exactly as JSON numbers.

use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use tally_kernel::{AmountError, Decimal, Money};
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::problem::FieldError;

/// An amount as the client sent it: a JSON number (`500.5`) or a decimal string (`"500.50"`).
/// The raw token is kept, so nothing passes through a binary floating-point number.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct AmountInput(Box<RawValue>);

impl AmountInput {
    /// The exact decimal, or a field error naming `field`.
    pub fn decimal(&self, field: &str) -> Result<Decimal, FieldError> {
        let raw = self.0.get();
        let text = if raw.starts_with('"') {
            serde_json::from_str::<String>(raw).map_err(|_| not_a_decimal(field))?
        } else if raw.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            raw.to_owned()
        } else {
            return Err(not_a_decimal(field));
        };
        Decimal::parse(&text).map_err(|e| amount_error(field, &e))
    }

    /// An amount that moves money: a decimal greater than zero.
    pub fn positive_decimal(&self, field: &str) -> Result<Decimal, FieldError> {
        let decimal = self.decimal(field)?;
        if decimal.is_zero() || decimal.is_negative() {
            return Err(amount_error(field, &AmountError::NotPositive));
        }
        Ok(decimal)
    }
}

fn not_a_decimal(field: &str) -> FieldError {
    amount_error(field, &AmountError::NotADecimal)
}

pub fn amount_error(field: &str, error: &AmountError) -> FieldError {
    FieldError {
        field: field.to_owned(),
        detail: error.to_string(),
    }
}

impl PartialSchema for AmountInput {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Number))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(r"^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$")),
            )
            .description(Some(
                "An exact decimal amount in the currency's major unit, as a JSON number or a \
                 string. More decimals than the currency has is refused, never rounded.",
            ))
            .examples([serde_json::json!("500.50")])
            .into()
    }
}

impl ToSchema for AmountInput {}

/// An amount written as a JSON number with exactly the currency's decimals (`1001.00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmountOutput(pub Money);

impl Serialize for AmountOutput {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let raw =
            RawValue::from_string(self.0.to_decimal_string()).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

impl PartialSchema for AmountOutput {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Number)
            .description(Some(
                "An exact amount written with exactly the currency's number of decimals. Read it \
                 as a decimal, not as a binary floating-point number.",
            ))
            .examples([serde_json::json!(1001)])
            .into()
    }
}

impl ToSchema for AmountOutput {}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_kernel::Currency;

    fn input(json: &str) -> AmountInput {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn reads_numbers_and_strings_exactly() {
        let usd = Currency::USD;
        for (json, minor) in [
            ("500.5", 50050),
            ("\"500.50\"", 50050),
            ("1e2", 10000),
            ("0.07", 7),
        ] {
            let money = input(json)
                .decimal("amount")
                .unwrap()
                .to_money(usd)
                .unwrap();
            assert_eq!(money.amount_minor, minor, "{json}");
        }
        for bad in ["true", "null", "{}", "[1]", "\"abc\"", "\"\""] {
            assert_eq!(
                input(bad).decimal("amount").unwrap_err().field,
                "amount",
                "{bad}"
            );
        }
        assert!(input("0").positive_decimal("amount").is_err());
        assert!(input("-1").positive_decimal("amount").is_err());
    }

    #[test]
    fn writes_exact_json_numbers() {
        let out = AmountOutput(Money::new(100100, Currency::USD));
        assert_eq!(serde_json::to_string(&out).unwrap(), "1001.00");
        let out = AmountOutput(Money::new(-5, Currency::USD));
        assert_eq!(serde_json::to_string(&out).unwrap(), "-0.05");
    }
}
