//! The events the patients service publishes (version 1), on the topics of their names, with
//! aggregate type `patient` and the patient's UUID as aggregate id.
//!
//! `patient.registered` and `patient.updated` carry the contact details notifications need
//! (full name, e-mail, phone; never the date of birth). `patient.updated` also lists the changed
//! fields by their snake_case names: `full_name`, `date_of_birth`, `email`, `phone`.

use serde::Serialize;
use tally_kernel::event::DomainEvent;
use uuid::Uuid;

use super::patient::Field;

pub const PATIENT_REGISTERED: &str = "patient.registered";
pub const PATIENT_UPDATED: &str = "patient.updated";
pub const PATIENT_DEACTIVATED: &str = "patient.deactivated";

/// `Debug` shows the event type and the patient id only: events carry contact details.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum PatientEvent {
    Registered {
        patient_id: Uuid,
        full_name: String,
        email: Option<String>,
        phone: Option<String>,
    },
    Updated {
        patient_id: Uuid,
        changed: Vec<Field>,
        full_name: String,
        email: Option<String>,
        phone: Option<String>,
    },
    Deactivated {
        patient_id: Uuid,
    },
}

impl PatientEvent {
    fn patient_id(&self) -> Uuid {
        match self {
            PatientEvent::Registered { patient_id, .. }
            | PatientEvent::Updated { patient_id, .. }
            | PatientEvent::Deactivated { patient_id } => *patient_id,
        }
    }
}

impl std::fmt::Debug for PatientEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = f.debug_struct(self.event_type());
        s.field("patient_id", &self.patient_id());
        if let PatientEvent::Updated { changed, .. } = self {
            s.field("changed", changed);
        }
        s.finish_non_exhaustive()
    }
}

impl DomainEvent for PatientEvent {
    fn event_type(&self) -> &'static str {
        match self {
            PatientEvent::Registered { .. } => PATIENT_REGISTERED,
            PatientEvent::Updated { .. } => PATIENT_UPDATED,
            PatientEvent::Deactivated { .. } => PATIENT_DEACTIVATED,
        }
    }

    fn aggregate_type(&self) -> &'static str {
        "patient"
    }

    fn aggregate_id(&self) -> String {
        self.patient_id().to_string()
    }

    fn data(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}
