//! The events notifications reads (version 1, as the hospital flow contract defines them) parsed
//! into types, and the events it publishes.
//!
//! Parse errors name the field and never repeat its value: the data of `patient.*` events holds
//! contact details, and a refused event's error is logged and kept with its dead letter.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tally_kernel::event::DomainEvent;
use tally_kernel::{Currency, Envelope, Money};
use uuid::Uuid;

use super::delivery::Channel;

pub const PATIENT_REGISTERED: &str = "patient.registered";
pub const PATIENT_UPDATED: &str = "patient.updated";
pub const APPOINTMENT_BOOKED: &str = "appointment.booked";
pub const APPOINTMENT_CANCELLED: &str = "appointment.cancelled";
pub const BILL_GENERATED: &str = "bill.generated";
pub const BILL_PAID: &str = "bill.paid";
pub const PAYMENT_COMPLETED: &str = "payment.completed";
pub const PAYMENT_FAILED: &str = "payment.failed";
pub const NOTIFICATION_SENT: &str = "notification.sent";
pub const NOTIFICATION_FAILED: &str = "notification.failed";

/// Why an event can never be used: its consumer sends it to the dead letters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("{event_type} version {version} is not known to notifications")]
    UnknownVersion { event_type: String, version: u32 },
    #[error("{0} is not an event notifications reads")]
    UnknownType(String),
    #[error("{event_type} data does not parse: {detail}")]
    BadData { event_type: String, detail: String },
}

fn bad(event: &Envelope, detail: impl Into<String>) -> EventError {
    EventError::BadData {
        event_type: event.event_type.clone(),
        detail: detail.into(),
    }
}

fn version_1(event: &Envelope) -> Result<(), EventError> {
    if event.version == 1 {
        Ok(())
    } else {
        Err(EventError::UnknownVersion {
            event_type: event.event_type.clone(),
            version: event.version,
        })
    }
}

/// Reads `data` into `T`, naming the field that failed without its value.
fn data<T: DeserializeOwned>(event: &Envelope) -> Result<T, EventError> {
    serde_path_to_error::deserialize(&event.data).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // "missing field `x`" names only the field; other serde messages may quote the value.
        let detail = if message.starts_with("missing field") {
            message
        } else if path == "." {
            String::from("the data is not an object of the documented fields")
        } else {
            format!("field `{path}` has the wrong type")
        };
        bad(event, detail)
    })
}

fn time(event: &Envelope, field: &str, text: String) -> Result<String, EventError> {
    // Times are shown as given; they must be RFC 3339 all the same.
    tally_kernel::time::from_db(&text)
        .map(|_| text)
        .map_err(|_| bad(event, format!("field `{field}` is not an RFC 3339 time")))
}

fn money(event: &Envelope, amount_minor: i64, currency: &str) -> Result<Money, EventError> {
    Currency::parse(currency)
        .map(|c| Money::new(amount_minor, c))
        .map_err(|_| bad(event, "field `currency` is not an ISO 4217 currency code"))
}

/// A patient's contact details, from `patient.registered` or `patient.updated`. `Debug` shows
/// the patient id only.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct Contact {
    pub patient_id: Uuid,
    pub full_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
}

impl std::fmt::Debug for Contact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contact")
            .field("patient_id", &self.patient_id)
            .finish_non_exhaustive()
    }
}

impl Contact {
    pub fn parse(event: &Envelope) -> Result<Contact, EventError> {
        match event.event_type.as_str() {
            PATIENT_REGISTERED | PATIENT_UPDATED => {}
            other => return Err(EventError::UnknownType(other.to_owned())),
        }
        version_1(event)?;
        data(event)
    }
}

/// What a message is about: one of the events a patient is told of, with what the message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Occasion {
    AppointmentBooked {
        appointment_id: Uuid,
        start: String,
        end: String,
        price: Money,
    },
    AppointmentCancelled {
        appointment_id: Uuid,
        reason: Option<String>,
    },
    BillGenerated {
        bill_id: Uuid,
        appointment_id: Uuid,
        amount: Money,
    },
    BillPaid {
        bill_id: Uuid,
        appointment_id: Uuid,
        amount: Money,
    },
    PaymentCompleted {
        payment_id: Uuid,
        bill_id: Uuid,
        method: String,
        amount: Money,
    },
    PaymentFailed {
        payment_id: Uuid,
        bill_id: Uuid,
        method: String,
        amount: Money,
        reason: String,
    },
}

#[derive(Deserialize)]
struct Booked {
    appointment_id: Uuid,
    patient_id: Uuid,
    scheduled_start: String,
    scheduled_end: String,
    scheduled_price_minor: i64,
    currency: String,
}

#[derive(Deserialize)]
struct Cancelled {
    appointment_id: Uuid,
    patient_id: Uuid,
    reason: Option<String>,
}

/// `bill.generated` and `bill.paid` carry the same fields.
#[derive(Deserialize)]
struct BillData {
    bill_id: Uuid,
    appointment_id: Uuid,
    patient_id: Uuid,
    amount_minor: i64,
    currency: String,
}

/// `payment.completed`, and `payment.failed` with its reason.
#[derive(Deserialize)]
struct PaymentData {
    payment_id: Uuid,
    bill_id: Uuid,
    patient_id: Uuid,
    method: String,
    amount_minor: i64,
    currency: String,
    #[serde(default)]
    reason: Option<String>,
}

impl Occasion {
    /// The occasion an event is, and the patient it concerns (the message's recipient).
    pub fn parse(event: &Envelope) -> Result<(Uuid, Occasion), EventError> {
        let known = [
            APPOINTMENT_BOOKED,
            APPOINTMENT_CANCELLED,
            BILL_GENERATED,
            BILL_PAID,
            PAYMENT_COMPLETED,
            PAYMENT_FAILED,
        ];
        if !known.contains(&event.event_type.as_str()) {
            return Err(EventError::UnknownType(event.event_type.clone()));
        }
        version_1(event)?;
        match event.event_type.as_str() {
            APPOINTMENT_BOOKED => {
                let d: Booked = data(event)?;
                Ok((
                    d.patient_id,
                    Occasion::AppointmentBooked {
                        appointment_id: d.appointment_id,
                        start: time(event, "scheduled_start", d.scheduled_start)?,
                        end: time(event, "scheduled_end", d.scheduled_end)?,
                        price: money(event, d.scheduled_price_minor, &d.currency)?,
                    },
                ))
            }
            APPOINTMENT_CANCELLED => {
                let d: Cancelled = data(event)?;
                Ok((
                    d.patient_id,
                    Occasion::AppointmentCancelled {
                        appointment_id: d.appointment_id,
                        reason: d.reason.filter(|r| !r.trim().is_empty()),
                    },
                ))
            }
            BILL_GENERATED | BILL_PAID => {
                let d: BillData = data(event)?;
                let (bill_id, appointment_id) = (d.bill_id, d.appointment_id);
                let amount = money(event, d.amount_minor, &d.currency)?;
                let occasion = if event.event_type == BILL_PAID {
                    Occasion::BillPaid {
                        bill_id,
                        appointment_id,
                        amount,
                    }
                } else {
                    Occasion::BillGenerated {
                        bill_id,
                        appointment_id,
                        amount,
                    }
                };
                Ok((d.patient_id, occasion))
            }
            _ => {
                let d: PaymentData = data(event)?;
                let amount = money(event, d.amount_minor, &d.currency)?;
                let occasion = if event.event_type == PAYMENT_FAILED {
                    Occasion::PaymentFailed {
                        payment_id: d.payment_id,
                        bill_id: d.bill_id,
                        method: d.method,
                        amount,
                        reason: d
                            .reason
                            .ok_or_else(|| bad(event, "missing field `reason`"))?,
                    }
                } else {
                    Occasion::PaymentCompleted {
                        payment_id: d.payment_id,
                        bill_id: d.bill_id,
                        method: d.method,
                        amount,
                    }
                };
                Ok((d.patient_id, occasion))
            }
        }
    }
}

/// The events notifications publishes (version 1), aggregate type `notification`, aggregate id
/// the notification (message) id. One is published per delivery when it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum NotificationEvent {
    Sent {
        notification_id: Uuid,
        event_id: Uuid,
        patient_id: Uuid,
        channel: Channel,
    },
    Failed {
        notification_id: Uuid,
        event_id: Uuid,
        patient_id: Uuid,
        channel: Channel,
        /// What failed, without patient data (see `domain::delivery::Failure`).
        reason: String,
    },
}

impl DomainEvent for NotificationEvent {
    fn event_type(&self) -> &'static str {
        match self {
            NotificationEvent::Sent { .. } => NOTIFICATION_SENT,
            NotificationEvent::Failed { .. } => NOTIFICATION_FAILED,
        }
    }

    fn aggregate_type(&self) -> &'static str {
        "notification"
    }

    fn aggregate_id(&self) -> String {
        match self {
            NotificationEvent::Sent {
                notification_id, ..
            }
            | NotificationEvent::Failed {
                notification_id, ..
            } => notification_id.to_string(),
        }
    }

    fn data(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tally_kernel::EventMeta;

    use super::*;

    fn envelope(event_type: &str, version: u32, data: serde_json::Value) -> Envelope {
        Envelope {
            id: Uuid::now_v7(),
            event_type: event_type.into(),
            version,
            source: "test".into(),
            aggregate_type: "x".into(),
            aggregate_id: "1".into(),
            occurred_at: tally_kernel::time::now(),
            correlation_id: "c".into(),
            causation_id: "c".into(),
            data,
        }
    }

    const P: &str = "0190b8f2-7c1e-7000-8000-000000000001";
    const A: &str = "0190b8f2-7c1e-7000-8000-000000000002";

    #[test]
    fn unknown_versions_types_and_bad_data_are_refused_without_their_values() {
        let booked = json!({"appointment_id": A, "patient_id": P, "physician_id": A,
            "scheduled_start": "2026-03-02T09:00:00Z", "scheduled_end": "2026-03-02T09:30:00Z",
            "scheduled_price_minor": 15000, "currency": "USD"});
        assert!(Occasion::parse(&envelope(APPOINTMENT_BOOKED, 1, booked.clone())).is_ok());
        assert!(matches!(
            Occasion::parse(&envelope(APPOINTMENT_BOOKED, 2, booked.clone())),
            Err(EventError::UnknownVersion { version: 2, .. })
        ));
        assert!(matches!(
            Occasion::parse(&envelope("appointment.no_show", 1, booked.clone())),
            Err(EventError::UnknownType(_))
        ));
        let mut no_currency = booked.clone();
        no_currency["currency"] = json!("usd");
        let mut bad_time = booked.clone();
        bad_time["scheduled_end"] = json!("tomorrow");
        let mut no_price = booked.clone();
        no_price
            .as_object_mut()
            .unwrap()
            .remove("scheduled_price_minor");
        for (data, detail) in [
            (
                no_currency,
                "field `currency` is not an ISO 4217 currency code",
            ),
            (bad_time, "field `scheduled_end` is not an RFC 3339 time"),
            (no_price, "missing field `scheduled_price_minor`"),
            (
                json!("text"),
                "the data is not an object of the documented fields",
            ),
        ] {
            let error = Occasion::parse(&envelope(APPOINTMENT_BOOKED, 1, data)).unwrap_err();
            assert_eq!(
                error,
                EventError::BadData {
                    event_type: APPOINTMENT_BOOKED.into(),
                    detail: detail.into()
                }
            );
        }

        let secret = "zelda.private@example.com";
        let contact = json!({"patient_id": P, "full_name": "Zelda", "email": 42, "phone": secret});
        let error = Contact::parse(&envelope(PATIENT_REGISTERED, 1, contact)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "patient.registered data does not parse: field `email` has the wrong type"
        );
        let contact = json!({"patient_id": P, "full_name": secret, "email": null, "phone": null});
        let parsed = Contact::parse(&envelope(PATIENT_UPDATED, 1, contact)).unwrap();
        assert!(!format!("{parsed:?}").contains(secret));
    }

    #[test]
    fn published_events_carry_exactly_the_contract_fields() {
        let id = Uuid::now_v7();
        let sent = NotificationEvent::Sent {
            notification_id: id,
            event_id: id,
            patient_id: id,
            channel: Channel::Webhook,
        };
        let env = sent.to_envelope(
            "notifications",
            &EventMeta::from_request("r"),
            tally_kernel::time::now(),
        );
        assert_eq!(
            (
                env.event_type.as_str(),
                env.aggregate_type.as_str(),
                env.version
            ),
            (NOTIFICATION_SENT, "notification", 1)
        );
        let s = id.to_string();
        assert_eq!(
            env.data,
            json!({"notification_id": s, "event_id": s, "patient_id": s, "channel": "webhook"})
        );
        let failed = NotificationEvent::Failed {
            notification_id: id,
            event_id: id,
            patient_id: id,
            channel: Channel::Email,
            reason: "SMTP error 550 (permanent)".into(),
        };
        assert_eq!(
            failed.data(),
            json!({"notification_id": s, "event_id": s, "patient_id": s, "channel": "email",
                "reason": "SMTP error 550 (permanent)"})
        );
    }
}
