//! Tariffs and the price of a consultation: exact integer arithmetic on minor units.
//!
//! A tariff is configured per physician. The default kind is `per_block`: a fee for every
//! started block of minutes. The other is `per_minute`: a fee per minute, with a minimum number
//! of minutes billed. Durations become whole minutes by one rule, [`BilledMinutes::between`]; a
//! price is then an integer product, [`Tariff::price`]. Nothing here rounds money.

use serde::Serialize;
use tally_kernel::time::Timestamp;
use tally_kernel::Money;

/// The longest appointment or consultation, in minutes (a day). Longer ones are refused: they
/// are typing mistakes, and the bound keeps every price within an `i64` of minor units.
pub const MAX_CONSULTATION_MINUTES: i64 = 24 * 60;

/// The largest fee per block or per minute, in minor units: with at most
/// [`MAX_CONSULTATION_MINUTES`] blocks or minutes billed, no price can overflow.
pub const MAX_FEE_MINOR: i64 = i64::MAX / MAX_CONSULTATION_MINUTES;

const NANOS_PER_MINUTE: i64 = 60 * 1_000_000_000;

/// Why a duration cannot be billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("must be after the start")]
    NotAfterStart,
    #[error("is before the start")]
    EndBeforeStart,
    #[error("is more than 24 hours after the start")]
    TooLong,
}

/// A duration in whole minutes, from 0 to [`MAX_CONSULTATION_MINUTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct BilledMinutes(i64);

impl BilledMinutes {
    /// The minutes billed for a consultation from `start` to `end`.
    ///
    /// **Rounding rule:** the exact duration is rounded UP to whole minutes; any part of a
    /// minute counts as a started minute. 0 s is 0 minutes, 15 min exactly is 15, 15 min and
    /// one second is 16, one second is 1. An `end` before `start` is refused, and so is a
    /// duration of more than [`MAX_CONSULTATION_MINUTES`] once rounded.
    pub fn between(start: Timestamp, end: Timestamp) -> Result<Self, DurationError> {
        let nanos = (end - start)
            .num_nanoseconds()
            .ok_or(DurationError::TooLong)?;
        if nanos < 0 {
            return Err(DurationError::EndBeforeStart);
        }
        let minutes = nanos / NANOS_PER_MINUTE + i64::from(nanos % NANOS_PER_MINUTE != 0);
        Self::new(minutes)
    }

    /// Whole minutes, from 0 to [`MAX_CONSULTATION_MINUTES`].
    pub fn new(minutes: i64) -> Result<Self, DurationError> {
        if minutes < 0 {
            return Err(DurationError::EndBeforeStart);
        }
        if minutes > MAX_CONSULTATION_MINUTES {
            return Err(DurationError::TooLong);
        }
        Ok(Self(minutes))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// How a tariff turns minutes into a number of units to charge its fee for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Rule {
    /// The fee is charged for every started block of `block_minutes` (the default kind).
    PerBlock { block_minutes: i64 },
    /// The fee is charged per minute, for at least `minimum_minutes`.
    PerMinute { minimum_minutes: i64 },
}

impl Rule {
    /// Checks the rule's minutes: a block is 1 to 1440 minutes, a minimum 0 to 1440.
    pub fn check(self) -> Result<Self, TariffError> {
        match self {
            Rule::PerBlock { block_minutes }
                if !(1..=MAX_CONSULTATION_MINUTES).contains(&block_minutes) =>
            {
                Err(TariffError::BlockMinutes)
            }
            Rule::PerMinute { minimum_minutes }
                if !(0..=MAX_CONSULTATION_MINUTES).contains(&minimum_minutes) =>
            {
                Err(TariffError::MinimumMinutes)
            }
            rule => Ok(rule),
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Rule::PerBlock { .. } => "per_block",
            Rule::PerMinute { .. } => "per_minute",
        }
    }
}

/// What a tariff may not be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TariffError {
    #[error("must be a whole number of minutes from 1 to 1440")]
    BlockMinutes,
    #[error("must be a whole number of minutes from 0 to 1440")]
    MinimumMinutes,
    #[error("must be greater than zero and at most 1/1440 of the largest amount")]
    Fee,
}

/// A physician's tariff: a rule and the fee it charges, in the tariff's currency. Valid by
/// construction (see [`Tariff::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Tariff {
    rule: Rule,
    fee: Money,
}

impl Tariff {
    /// A tariff charging `fee` per block or per minute. Blocks are 1 to 1440 minutes long; a
    /// minimum is 0 to 1440 minutes; the fee is positive and at most [`MAX_FEE_MINOR`].
    pub fn new(rule: Rule, fee: Money) -> Result<Self, TariffError> {
        rule.check()?;
        if !(1..=MAX_FEE_MINOR).contains(&fee.amount_minor) {
            return Err(TariffError::Fee);
        }
        Ok(Self { rule, fee })
    }

    pub fn rule(&self) -> Rule {
        self.rule
    }

    /// The fee per block or per minute.
    pub fn fee(&self) -> Money {
        self.fee
    }

    /// The price of a consultation billed for `minutes` (see [`BilledMinutes::between`] for
    /// how a duration becomes minutes), in the tariff's currency.
    ///
    /// Exact integer arithmetic on minor units; money is never rounded, only time is:
    ///
    /// - `per_block`: every STARTED block counts whole, so the price is
    ///   `ceil(minutes / block_minutes) × fee`. With 15-minute blocks at 50.00: 0 minutes is
    ///   0.00 (no block started), 1 to 15 minutes is 50.00, 16 minutes (15 and one second,
    ///   rounded up) is 100.00.
    /// - `per_minute`: `max(minutes, minimum_minutes) × fee` once the consultation lasted at
    ///   all; 0 minutes is 0.00 (nothing started, so no minimum applies either).
    ///
    /// It cannot overflow: at most [`MAX_CONSULTATION_MINUTES`] units are charged, and a fee is
    /// at most [`MAX_FEE_MINOR`].
    pub fn price(&self, minutes: BilledMinutes) -> Money {
        let minutes = minutes.get();
        let units = match self.rule {
            _ if minutes == 0 => 0,
            Rule::PerBlock { block_minutes } => {
                minutes / block_minutes + i64::from(minutes % block_minutes != 0)
            }
            Rule::PerMinute { minimum_minutes } => minutes.max(minimum_minutes),
        };
        let amount_minor = units
            .checked_mul(self.fee.amount_minor)
            .expect("at most 1440 units of at most MAX_FEE_MINOR fit an i64");
        Money::new(amount_minor, self.fee.currency)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use proptest::prelude::*;
    use tally_kernel::Currency;

    use super::*;

    fn usd(minor: i64) -> Money {
        Money::new(minor, Currency::USD)
    }

    fn at(text: &str) -> Timestamp {
        tally_kernel::time::from_db(text).unwrap()
    }

    fn per_block(block_minutes: i64, fee_minor: i64) -> Tariff {
        Tariff::new(Rule::PerBlock { block_minutes }, usd(fee_minor)).unwrap()
    }

    fn per_minute(minimum_minutes: i64, fee_minor: i64) -> Tariff {
        Tariff::new(Rule::PerMinute { minimum_minutes }, usd(fee_minor)).unwrap()
    }

    fn minutes_after(start: Timestamp, delta: TimeDelta) -> i64 {
        BilledMinutes::between(start, start + delta).unwrap().get()
    }

    #[test]
    fn a_duration_is_rounded_up_to_whole_minutes() {
        let start = at("2021-07-01T08:30:00.000000Z");
        assert_eq!(minutes_after(start, TimeDelta::zero()), 0);
        assert_eq!(minutes_after(start, TimeDelta::seconds(1)), 1);
        assert_eq!(minutes_after(start, TimeDelta::microseconds(1)), 1);
        assert_eq!(minutes_after(start, TimeDelta::minutes(15)), 15);
        assert_eq!(
            minutes_after(start, TimeDelta::minutes(15) + TimeDelta::seconds(1)),
            16
        );
        assert_eq!(
            minutes_after(start, TimeDelta::minutes(16) - TimeDelta::microseconds(1)),
            16
        );
        assert_eq!(minutes_after(start, TimeDelta::minutes(310)), 310);
    }

    #[test]
    fn a_duration_ends_after_its_start_and_within_a_day() {
        let start = at("2021-07-01T08:30:00.000000Z");
        assert_eq!(
            BilledMinutes::between(start, start - TimeDelta::seconds(1)),
            Err(DurationError::EndBeforeStart)
        );
        assert_eq!(minutes_after(start, TimeDelta::days(1)), 1440);
        assert_eq!(
            BilledMinutes::between(start, start + TimeDelta::days(1) + TimeDelta::seconds(1)),
            Err(DurationError::TooLong)
        );
        assert_eq!(
            BilledMinutes::between(start, start + TimeDelta::days(365 * 300)),
            Err(DurationError::TooLong)
        );
        assert_eq!(BilledMinutes::new(-1), Err(DurationError::EndBeforeStart));
    }

    #[test]
    fn per_block_charges_every_started_block() {
        let tariff = per_block(15, 5000);
        let start = at("2021-07-01T08:30:00.000000Z");
        let price = |delta: TimeDelta| {
            tariff
                .price(BilledMinutes::between(start, start + delta).unwrap())
                .amount_minor
        };
        assert_eq!(price(TimeDelta::zero()), 0, "0 minutes start no block");
        assert_eq!(
            price(TimeDelta::seconds(1)),
            5000,
            "one second starts a block"
        );
        assert_eq!(price(TimeDelta::minutes(15)), 5000, "exactly a block");
        assert_eq!(
            price(TimeDelta::minutes(15) + TimeDelta::seconds(1)),
            10000,
            "one second over starts the second block"
        );
        assert_eq!(price(TimeDelta::minutes(30)), 10000);
        assert_eq!(price(TimeDelta::minutes(310)), 21 * 5000, "document 000");
        assert_eq!(
            tariff.price(BilledMinutes::new(1440).unwrap()).amount_minor,
            96 * 5000
        );
    }

    #[test]
    fn per_minute_charges_each_minute_with_a_minimum() {
        let tariff = per_minute(10, 200);
        let price = |m: i64| tariff.price(BilledMinutes::new(m).unwrap()).amount_minor;
        assert_eq!(price(0), 0, "nothing started, no minimum");
        assert_eq!(price(1), 2000, "the minimum");
        assert_eq!(price(10), 2000);
        assert_eq!(price(11), 2200);
        assert_eq!(
            per_minute(0, 200).price(BilledMinutes::new(1).unwrap()),
            usd(200)
        );
    }

    #[test]
    fn the_price_is_in_the_tariff_currency() {
        let jpy = Currency::parse("JPY").unwrap();
        let tariff =
            Tariff::new(Rule::PerBlock { block_minutes: 30 }, Money::new(3000, jpy)).unwrap();
        assert_eq!(
            tariff.price(BilledMinutes::new(31).unwrap()),
            Money::new(6000, jpy)
        );
    }

    #[test]
    fn a_tariff_is_bounded_so_that_no_price_overflows() {
        assert_eq!(
            Tariff::new(Rule::PerBlock { block_minutes: 0 }, usd(1)),
            Err(TariffError::BlockMinutes)
        );
        assert_eq!(
            Tariff::new(
                Rule::PerBlock {
                    block_minutes: 1441
                },
                usd(1)
            ),
            Err(TariffError::BlockMinutes)
        );
        assert_eq!(
            Tariff::new(
                Rule::PerMinute {
                    minimum_minutes: -1
                },
                usd(1)
            ),
            Err(TariffError::MinimumMinutes)
        );
        assert_eq!(
            Tariff::new(
                Rule::PerMinute {
                    minimum_minutes: 1441
                },
                usd(1)
            ),
            Err(TariffError::MinimumMinutes)
        );
        for fee in [0, -1, MAX_FEE_MINOR + 1, i64::MAX] {
            assert_eq!(
                Tariff::new(Rule::PerBlock { block_minutes: 1 }, usd(fee)),
                Err(TariffError::Fee),
                "{fee}"
            );
        }
        let most = per_block(1, MAX_FEE_MINOR);
        let price = most.price(BilledMinutes::new(MAX_CONSULTATION_MINUTES).unwrap());
        assert_eq!(price.amount_minor, MAX_FEE_MINOR * 1440);
    }

    proptest! {
        #[test]
        fn per_block_covers_the_minutes_with_less_than_one_spare_block(
            minutes in 0i64..=1440,
            block in 1i64..=1440,
            fee in 1i64..=1_000_000,
        ) {
            let price = per_block(block, fee).price(BilledMinutes::new(minutes).unwrap());
            prop_assert_eq!(price.amount_minor % fee, 0);
            let blocks = price.amount_minor / fee;
            prop_assert!(blocks * block >= minutes);
            prop_assert!(minutes == 0 || (blocks - 1) * block < minutes);
        }

        #[test]
        fn a_longer_consultation_never_costs_less(
            minutes in 0i64..1440,
            block in 1i64..=120,
            minimum in 0i64..=120,
        ) {
            for tariff in [per_block(block, 5000), per_minute(minimum, 200)] {
                let shorter = tariff.price(BilledMinutes::new(minutes).unwrap());
                let longer = tariff.price(BilledMinutes::new(minutes + 1).unwrap());
                prop_assert!(longer.amount_minor >= shorter.amount_minor);
            }
        }
    }
}
