//! The events the care service publishes (version 1), on the topics of their names, with
//! aggregate type `appointment` and the appointment's UUID as aggregate id (a consultation is an
//! appointment). Amounts are integer minor units with an ISO 4217 `currency`; times are RFC 3339
//! UTC strings; ids are UUID strings. The fields are the hospital flow contract's, no more.

use serde::{Serialize, Serializer};
use tally_kernel::event::DomainEvent;
use tally_kernel::time::Timestamp;
use tally_kernel::Currency;
use uuid::Uuid;

pub const APPOINTMENT_BOOKED: &str = "appointment.booked";
pub const APPOINTMENT_CANCELLED: &str = "appointment.cancelled";
pub const APPOINTMENT_NO_SHOW: &str = "appointment.no_show";
pub const CONSULTATION_CLOSED: &str = "consultation.closed";

/// RFC 3339 in UTC with `Z`, to the microsecond at most (`2021-07-01T08:30:00Z`).
fn rfc3339<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&ts.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

/// `Debug` shows the event type and the ids only: a cancellation reason is free text that may
/// describe the patient.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum CareEvent {
    Booked {
        appointment_id: Uuid,
        patient_id: Uuid,
        physician_id: Uuid,
        #[serde(serialize_with = "rfc3339")]
        scheduled_start: Timestamp,
        #[serde(serialize_with = "rfc3339")]
        scheduled_end: Timestamp,
        scheduled_price_minor: i64,
        currency: Currency,
    },
    Cancelled {
        appointment_id: Uuid,
        patient_id: Uuid,
        physician_id: Uuid,
        reason: Option<String>,
    },
    NoShow {
        appointment_id: Uuid,
        patient_id: Uuid,
        physician_id: Uuid,
    },
    Closed {
        appointment_id: Uuid,
        patient_id: Uuid,
        physician_id: Uuid,
        #[serde(serialize_with = "rfc3339")]
        start: Timestamp,
        #[serde(serialize_with = "rfc3339")]
        end: Timestamp,
        duration_minutes: i64,
        price_minor: i64,
        currency: Currency,
    },
}

impl CareEvent {
    fn ids(&self) -> (Uuid, Uuid, Uuid) {
        match self {
            CareEvent::Booked {
                appointment_id,
                patient_id,
                physician_id,
                ..
            }
            | CareEvent::Cancelled {
                appointment_id,
                patient_id,
                physician_id,
                ..
            }
            | CareEvent::NoShow {
                appointment_id,
                patient_id,
                physician_id,
            }
            | CareEvent::Closed {
                appointment_id,
                patient_id,
                physician_id,
                ..
            } => (*appointment_id, *patient_id, *physician_id),
        }
    }
}

impl std::fmt::Debug for CareEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (appointment_id, patient_id, physician_id) = self.ids();
        f.debug_struct(self.event_type())
            .field("appointment_id", &appointment_id)
            .field("patient_id", &patient_id)
            .field("physician_id", &physician_id)
            .finish_non_exhaustive()
    }
}

impl DomainEvent for CareEvent {
    fn event_type(&self) -> &'static str {
        match self {
            CareEvent::Booked { .. } => APPOINTMENT_BOOKED,
            CareEvent::Cancelled { .. } => APPOINTMENT_CANCELLED,
            CareEvent::NoShow { .. } => APPOINTMENT_NO_SHOW,
            CareEvent::Closed { .. } => CONSULTATION_CLOSED,
        }
    }

    fn aggregate_type(&self) -> &'static str {
        "appointment"
    }

    fn aggregate_id(&self) -> String {
        self.ids().0.to_string()
    }

    fn data(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}
