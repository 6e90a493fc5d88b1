//! The care domain: physicians and their tariffs, what may happen to an appointment, the price
//! of a consultation and the dates the API reads, all decided without I/O.

pub mod appointment;
pub mod dates;
pub mod error;
pub mod events;
pub mod physician;
pub mod tariff;

pub use appointment::{Appointment, AppointmentStatus, Booking, CancelReason, Schedule};
pub use error::{CareError, Field};
pub use events::CareEvent;
pub use physician::{Physician, PhysicianDetails, PhysicianField, PhysicianName};
pub use tariff::{BilledMinutes, DurationError, Tariff, TariffError};

/// Whether a patient may be booked, as the patients service tells: care refuses appointments
/// for deactivated patients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatientStatus {
    Active,
    Deactivated,
}

impl PatientStatus {
    /// Reads the patients service's `status` field.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(PatientStatus::Active),
            "deactivated" => Some(PatientStatus::Deactivated),
            _ => None,
        }
    }
}
