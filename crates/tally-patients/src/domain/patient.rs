//! A patient's record and what may happen to it: registration (once per id), updates of its
//! details, deactivation. Each decision returns the event it produces, or refuses.

use serde::Serialize;
use tally_kernel::time::Timestamp;
use uuid::Uuid;

use super::error::PatientError;
use super::events::PatientEvent;
use super::values::{DateOfBirth, Email, PatientName, Phone};

/// Whether a patient may be booked: care refuses appointments for deactivated patients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PatientStatus {
    Active,
    Deactivated,
}

impl PatientStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PatientStatus::Active => "active",
            PatientStatus::Deactivated => "deactivated",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(PatientStatus::Active),
            "deactivated" => Some(PatientStatus::Deactivated),
            _ => None,
        }
    }
}

/// A patient's details, named as events name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    FullName,
    DateOfBirth,
    Email,
    Phone,
}

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Field::FullName => "full_name",
            Field::DateOfBirth => "date_of_birth",
            Field::Email => "email",
            Field::Phone => "phone",
        }
    }
}

/// Who the patient is and how to reach them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PatientDetails {
    pub full_name: PatientName,
    pub date_of_birth: DateOfBirth,
    pub email: Option<Email>,
    pub phone: Option<Phone>,
}

impl PatientDetails {
    /// The fields whose values differ between the two, in declaration order.
    pub fn differing_fields(&self, other: &PatientDetails) -> Vec<Field> {
        [
            (Field::FullName, self.full_name == other.full_name),
            (
                Field::DateOfBirth,
                self.date_of_birth == other.date_of_birth,
            ),
            (Field::Email, self.email == other.email),
            (Field::Phone, self.phone == other.phone),
        ]
        .into_iter()
        .filter(|(_, same)| !same)
        .map(|(field, _)| field)
        .collect()
    }
}

/// The details an update sets; `None` leaves a field as it is. For the optional contact fields
/// `Some(None)` removes the value. (Serialized for idempotency digests: a field left as it is
/// is absent, a removed one is `null`.)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PatientChanges {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_name: Option<PatientName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<DateOfBirth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<Option<Email>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<Option<Phone>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patient {
    pub id: Uuid,
    pub details: PatientDetails,
    pub status: PatientStatus,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Patient {
    /// A new, active patient under `id`.
    pub fn register(id: Uuid, details: PatientDetails, now: Timestamp) -> (Patient, PatientEvent) {
        let patient = Patient {
            id,
            details,
            status: PatientStatus::Active,
            created_at: now,
            updated_at: now,
        };
        let d = &patient.details;
        let event = PatientEvent::Registered {
            patient_id: id,
            full_name: d.full_name.as_str().to_owned(),
            email: d.email.as_ref().map(|e| e.as_str().to_owned()),
            phone: d.phone.as_ref().map(|p| p.as_str().to_owned()),
        };
        (patient, event)
    }

    /// A registration under this patient's id again: with the same details it is a no-op (a
    /// retried `PUT`), with other details it is refused, naming the fields that differ.
    pub fn reregister(&self, details: &PatientDetails) -> Result<(), PatientError> {
        let differing = self.details.differing_fields(details);
        if differing.is_empty() {
            Ok(())
        } else {
            Err(PatientError::RegisteredDifferently {
                id: self.id,
                differing,
            })
        }
    }

    /// Applies `changes`. Returns `patient.updated` naming the fields whose values changed, or
    /// `None` when every given value is the current one (nothing changes, not even
    /// `updated_at`). A deactivated patient is refused.
    pub fn update(
        &mut self,
        changes: &PatientChanges,
        now: Timestamp,
    ) -> Result<Option<PatientEvent>, PatientError> {
        if self.status == PatientStatus::Deactivated {
            return Err(PatientError::Deactivated(self.id));
        }
        let mut next = self.details.clone();
        if let Some(name) = &changes.full_name {
            next.full_name = name.clone();
        }
        if let Some(dob) = changes.date_of_birth {
            next.date_of_birth = dob;
        }
        if let Some(email) = &changes.email {
            next.email = email.clone();
        }
        if let Some(phone) = &changes.phone {
            next.phone = phone.clone();
        }
        let changed = self.details.differing_fields(&next);
        if changed.is_empty() {
            return Ok(None);
        }
        self.details = next;
        self.updated_at = now;
        let d = &self.details;
        Ok(Some(PatientEvent::Updated {
            patient_id: self.id,
            changed,
            full_name: d.full_name.as_str().to_owned(),
            email: d.email.as_ref().map(|e| e.as_str().to_owned()),
            phone: d.phone.as_ref().map(|p| p.as_str().to_owned()),
        }))
    }

    /// Deactivates the patient. Deactivating a deactivated patient changes nothing and
    /// publishes nothing.
    pub fn deactivate(&mut self, now: Timestamp) -> Option<PatientEvent> {
        if self.status == PatientStatus::Deactivated {
            return None;
        }
        self.status = PatientStatus::Deactivated;
        self.updated_at = now;
        Some(PatientEvent::Deactivated {
            patient_id: self.id,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use tally_kernel::event::DomainEvent;

    use super::*;

    fn at(text: &str) -> Timestamp {
        tally_kernel::time::from_db(text).unwrap()
    }

    fn t0() -> Timestamp {
        at("2026-03-01T09:00:00.000000Z")
    }

    fn t1() -> Timestamp {
        at("2026-03-02T10:30:00.000000Z")
    }

    fn dob(text: &str) -> DateOfBirth {
        DateOfBirth::parse(text, NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()).unwrap()
    }

    fn details() -> PatientDetails {
        PatientDetails {
            full_name: PatientName::parse("Maria da Silva").unwrap(),
            date_of_birth: dob("1984-02-29"),
            email: Some(Email::parse("maria@example.com").unwrap()),
            phone: None,
        }
    }

    fn registered() -> Patient {
        Patient::register(Uuid::now_v7(), details(), t0()).0
    }

    #[test]
    fn registering_makes_an_active_patient_and_announces_its_contact_details() {
        let id = Uuid::now_v7();
        let (patient, event) = Patient::register(id, details(), t0());
        assert_eq!(patient.status, PatientStatus::Active);
        assert_eq!((patient.created_at, patient.updated_at), (t0(), t0()));
        assert_eq!(event.event_type(), "patient.registered");
        assert_eq!(event.aggregate_type(), "patient");
        assert_eq!(event.aggregate_id(), id.to_string());
        assert_eq!(event.version(), 1);
        assert_eq!(
            event.data(),
            serde_json::json!({
                "patient_id": id.to_string(),
                "full_name": "Maria da Silva",
                "email": "maria@example.com",
                "phone": null,
            })
        );
    }

    #[test]
    fn registering_again_with_the_same_details_is_a_no_op() {
        let patient = registered();
        assert_eq!(patient.reregister(&details()), Ok(()));
    }

    #[test]
    fn registering_again_with_other_details_names_the_differing_fields() {
        let patient = registered();
        let mut other = details();
        other.date_of_birth = dob("1984-03-01");
        other.phone = Some(Phone::parse("+5511987654321").unwrap());
        assert_eq!(
            patient.reregister(&other),
            Err(PatientError::RegisteredDifferently {
                id: patient.id,
                differing: vec![Field::DateOfBirth, Field::Phone],
            })
        );
    }

    #[test]
    fn an_update_changes_the_given_fields_and_names_them() {
        let mut patient = registered();
        let changes = PatientChanges {
            full_name: Some(PatientName::parse("Maria Souza").unwrap()),
            email: Some(None),
            phone: Some(Some(Phone::parse("+5511987654321").unwrap())),
            ..PatientChanges::default()
        };
        let event = patient.update(&changes, t1()).unwrap().unwrap();
        assert_eq!(patient.details.full_name.as_str(), "Maria Souza");
        assert_eq!(patient.details.date_of_birth, dob("1984-02-29"));
        assert_eq!(patient.details.email, None);
        assert_eq!(patient.updated_at, t1());
        assert_eq!(patient.created_at, t0());
        assert_eq!(event.event_type(), "patient.updated");
        assert_eq!(
            event.data(),
            serde_json::json!({
                "patient_id": patient.id.to_string(),
                "changed": ["full_name", "email", "phone"],
                "full_name": "Maria Souza",
                "email": null,
                "phone": "+5511987654321",
            })
        );
    }

    #[test]
    fn an_update_to_the_current_values_changes_nothing() {
        let mut patient = registered();
        let before = patient.clone();
        let same = PatientChanges {
            full_name: Some(PatientName::parse(" Maria da Silva ").unwrap()),
            email: Some(Some(Email::parse("maria@EXAMPLE.com").unwrap())),
            phone: Some(None),
            ..PatientChanges::default()
        };
        assert_eq!(patient.update(&same, t1()), Ok(None));
        assert_eq!(patient.update(&PatientChanges::default(), t1()), Ok(None));
        assert_eq!(patient, before, "not even updated_at moved");
    }

    #[test]
    fn an_update_names_only_the_fields_whose_values_changed() {
        let mut patient = registered();
        let changes = PatientChanges {
            full_name: Some(PatientName::parse("Maria da Silva").unwrap()),
            date_of_birth: Some(dob("1985-01-01")),
            ..PatientChanges::default()
        };
        let event = patient.update(&changes, t1()).unwrap().unwrap();
        assert_eq!(
            event.data()["changed"],
            serde_json::json!(["date_of_birth"])
        );
    }

    #[test]
    fn a_deactivated_patient_cannot_be_updated() {
        let mut patient = registered();
        patient.deactivate(t1());
        let before = patient.clone();
        let changes = PatientChanges {
            full_name: Some(PatientName::parse("Someone Else").unwrap()),
            ..PatientChanges::default()
        };
        assert_eq!(
            patient.update(&changes, t1()),
            Err(PatientError::Deactivated(patient.id))
        );
        assert_eq!(patient, before);
    }

    #[test]
    fn deactivating_announces_it_once() {
        let mut patient = registered();
        let event = patient.deactivate(t1()).unwrap();
        assert_eq!(patient.status, PatientStatus::Deactivated);
        assert_eq!(patient.updated_at, t1());
        assert_eq!(event.event_type(), "patient.deactivated");
        assert_eq!(
            event.data(),
            serde_json::json!({ "patient_id": patient.id.to_string() })
        );
        let before = patient.clone();
        assert_eq!(patient.deactivate(at("2026-03-03T00:00:00.000000Z")), None);
        assert_eq!(patient, before, "the second deactivation changed nothing");
    }

    #[test]
    fn a_status_reads_back_what_it_writes() {
        for status in [PatientStatus::Active, PatientStatus::Deactivated] {
            assert_eq!(PatientStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(PatientStatus::parse("removed"), None);
    }

    #[test]
    fn changes_serialize_keep_remove_and_set_differently() {
        let keep = PatientChanges::default();
        let remove = PatientChanges {
            email: Some(None),
            ..PatientChanges::default()
        };
        let set = PatientChanges {
            email: Some(Some(Email::parse("a@b.co").unwrap())),
            ..PatientChanges::default()
        };
        assert_eq!(serde_json::to_string(&keep).unwrap(), "{}");
        assert_eq!(serde_json::to_string(&remove).unwrap(), r#"{"email":null}"#);
        assert_eq!(
            serde_json::to_string(&set).unwrap(),
            r#"{"email":"a@b.co"}"#
        );
    }

    #[test]
    fn an_event_debug_shows_no_contact_details() {
        let (_, event) = Patient::register(Uuid::nil(), details(), t0());
        let shown = format!("{event:?}");
        assert!(
            !shown.contains("Maria") && !shown.contains("example"),
            "{shown}"
        );
        assert!(shown.contains("patient.registered"), "{shown}");
    }
}
