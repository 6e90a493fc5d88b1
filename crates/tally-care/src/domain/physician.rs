//! Physicians: who sees patients, how long an appointment lasts when nobody says, and the
//! tariff their consultations are priced by.

use serde::Serialize;
use tally_kernel::time::Timestamp;
use uuid::Uuid;

use super::error::CareError;
use super::tariff::{Tariff, MAX_CONSULTATION_MINUTES};

/// Longest physician name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// How long an appointment lasts when only its start is given (document 000's create), unless
/// the physician says otherwise.
pub const DEFAULT_MINUTES: i64 = 30;

/// A physician's name: 1 to 200 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PhysicianName(String);

impl PhysicianName {
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

/// Checks an appointment length given in minutes: 1 to 1440.
pub fn check_default_minutes(minutes: i64) -> Result<i64, &'static str> {
    if (1..=MAX_CONSULTATION_MINUTES).contains(&minutes) {
        Ok(minutes)
    } else {
        Err("must be a whole number of minutes from 1 to 1440")
    }
}

/// The parts of a physician, named as the API names them in a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhysicianField {
    Name,
    Tariff,
    DefaultMinutes,
}

/// What a physician is registered with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PhysicianDetails {
    pub name: PhysicianName,
    pub tariff: Tariff,
    /// How long an appointment booked with a start only lasts: 1 to 1440.
    pub default_minutes: i64,
}

impl PhysicianDetails {
    /// The fields whose values differ between the two, in declaration order.
    pub fn differing_fields(&self, other: &PhysicianDetails) -> Vec<PhysicianField> {
        [
            (PhysicianField::Name, self.name == other.name),
            (PhysicianField::Tariff, self.tariff == other.tariff),
            (
                PhysicianField::DefaultMinutes,
                self.default_minutes == other.default_minutes,
            ),
        ]
        .into_iter()
        .filter(|(_, same)| !same)
        .map(|(field, _)| field)
        .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Physician {
    pub id: Uuid,
    pub details: PhysicianDetails,
    pub created_at: Timestamp,
}

impl Physician {
    pub fn register(id: Uuid, details: PhysicianDetails, now: Timestamp) -> Physician {
        Physician {
            id,
            details,
            created_at: now,
        }
    }

    /// A registration under this physician's id again: with the same details it is a no-op (a
    /// retried `PUT`), with other details it is refused, naming the fields that differ.
    pub fn reregister(&self, details: &PhysicianDetails) -> Result<(), CareError> {
        let differing = self.details.differing_fields(details);
        if differing.is_empty() {
            Ok(())
        } else {
            Err(CareError::PhysicianRegisteredDifferently {
                id: self.id,
                differing,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use tally_kernel::{Currency, Money};

    use super::*;
    use crate::domain::tariff::Rule;

    fn details() -> PhysicianDetails {
        PhysicianDetails {
            name: PhysicianName::parse(" Dr. Ana Souza ").unwrap(),
            tariff: Tariff::new(
                Rule::PerBlock { block_minutes: 15 },
                Money::new(5000, Currency::USD),
            )
            .unwrap(),
            default_minutes: DEFAULT_MINUTES,
        }
    }

    #[test]
    fn a_name_is_trimmed_and_bounded() {
        assert_eq!(details().name.as_str(), "Dr. Ana Souza");
        assert_eq!(PhysicianName::parse("  "), Err("must not be blank"));
        assert!(PhysicianName::parse(&"é".repeat(200)).is_ok());
        assert_eq!(
            PhysicianName::parse(&"é".repeat(201)),
            Err("must be at most 200 characters")
        );
        assert_eq!(
            PhysicianName::parse("Dr.\nWho"),
            Err("must not contain control characters")
        );
    }

    #[test]
    fn an_appointment_lasts_1_to_1440_minutes_by_default() {
        assert_eq!(check_default_minutes(1), Ok(1));
        assert_eq!(check_default_minutes(1440), Ok(1440));
        assert!(check_default_minutes(0).is_err());
        assert!(check_default_minutes(1441).is_err());
    }

    #[test]
    fn registering_again_is_a_no_op_with_the_same_details_and_refused_with_others() {
        let now = tally_kernel::time::from_db("2026-03-01T09:00:00Z").unwrap();
        let physician = Physician::register(Uuid::now_v7(), details(), now);
        assert_eq!(physician.reregister(&details()), Ok(()));
        let mut other = details();
        other.default_minutes = 45;
        other.tariff = Tariff::new(
            Rule::PerBlock { block_minutes: 20 },
            Money::new(5000, Currency::USD),
        )
        .unwrap();
        assert_eq!(
            physician.reregister(&other),
            Err(CareError::PhysicianRegisteredDifferently {
                id: physician.id,
                differing: vec![PhysicianField::Tariff, PhysicianField::DefaultMinutes],
            })
        );
    }
}
