//! Everything the care service refuses once a request is well formed, and why. Messages name
//! patients, physicians and appointments by id only.

use uuid::Uuid;

use super::appointment::AppointmentStatus;
use super::physician::PhysicianField;
use super::tariff::DurationError;

/// A field of a request that a refusal is about. Each API names it its own way (`scheduledEnd`
/// in the appointments API, `end_date` in document 000's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The appointment (consultation) id in a body.
    Id,
    PatientId,
    PhysicianId,
    ScheduledStart,
    ScheduledEnd,
    /// The real end given when closing.
    End,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CareError {
    #[error("appointment {0} does not exist")]
    AppointmentNotFound(Uuid),
    #[error("physician {0} does not exist")]
    PhysicianNotFound(Uuid),
    /// The patients service does not know the patient.
    #[error("patient {0} is not registered")]
    PatientNotFound(Uuid),
    /// The patients service has the patient deactivated: they can no longer be booked.
    #[error("patient {0} is deactivated and cannot be booked")]
    PatientDeactivated(Uuid),
    /// A registration under an id already taken, with details other than the registered ones.
    #[error("physician {id} is already registered with other details")]
    PhysicianRegisteredDifferently {
        id: Uuid,
        differing: Vec<PhysicianField>,
    },
    /// Only a booked appointment can be closed, cancelled or marked a no-show.
    #[error("appointment {id} is {}, not booked", status.as_str())]
    NotBooked { id: Uuid, status: AppointmentStatus },
    /// The physician already has a booked appointment overlapping the requested time.
    #[error("physician {physician_id} already has appointment {clash} booked at that time")]
    DoubleBooked { physician_id: Uuid, clash: Uuid },
    #[error("{error}")]
    Duration { field: Field, error: DurationError },
    /// Document 000's close names the consultation's patient, physician and start again: they
    /// must be the stored ones.
    #[error("{} of consultation {id} differ", fields.len())]
    Mismatch { id: Uuid, fields: Vec<Field> },
}
