//! The notifications service: one message per event per patient, delivered by webhook, e-mail or
//! simply stored.
//!
//! Two consumers feed it. `notifications.recipients` keeps each patient's contact details from
//! `patient.registered` and `patient.updated`: the only place this service holds them.
//! `notifications.messages` renders one message for each booking, cancellation, bill and payment
//! event, stored "pending" in the transaction that records the event in the inbox, under a unique
//! (event, recipient) key. The delivery worker ([`run_delivery`]) then gives each message one
//! delivery per channel and sends it, retrying with exponential backoff, and publishes
//! `notification.sent` or `notification.failed` through the outbox in the transaction that
//! records the outcome.
//!
//! `domain` decides (rendering, channels, retries, events; no I/O); `adapters` store, consume,
//! deliver and answer HTTP. Patient details (names, e-mail addresses, phone numbers) and message
//! texts never reach a log: nothing here logs them, their `Debug` forms are redacted, and the
//! errors recorded for a failed delivery say what failed without repeating what the other side
//! answered.

pub mod adapters;
pub mod domain;
pub mod settings;
pub mod signature;

pub use adapters::consumers::{
    messages_consumer, recipients_consumer, MESSAGES_CONSUMER, RECIPIENTS_CONSUMER,
};
pub use adapters::delivery::run_delivery;
pub use adapters::routes::{router, NotificationsApi};
pub use adapters::store::SCHEMA;
pub use adapters::Notifications;
pub use settings::{NotificationSettings, Smtp, Webhook};

use domain::events as topics;

/// The service's name: its SQLite file, its PostgreSQL schema, the `source` of its events.
pub const SERVICE: &str = "notifications";

/// The topics this service publishes.
pub const PUBLISHES: &[&str] = &[topics::NOTIFICATION_SENT, topics::NOTIFICATION_FAILED];

/// The topics the recipients read model is built from.
pub const RECIPIENT_TOPICS: &[&str] = &[topics::PATIENT_REGISTERED, topics::PATIENT_UPDATED];

/// The topics that become messages.
pub const MESSAGE_TOPICS: &[&str] = &[
    topics::APPOINTMENT_BOOKED,
    topics::APPOINTMENT_CANCELLED,
    topics::BILL_GENERATED,
    topics::PAYMENT_COMPLETED,
    topics::PAYMENT_FAILED,
    topics::BILL_PAID,
];

/// Every topic this service reads.
pub const CONSUMES: &[&str] = &[
    topics::PATIENT_REGISTERED,
    topics::PATIENT_UPDATED,
    topics::APPOINTMENT_BOOKED,
    topics::APPOINTMENT_CANCELLED,
    topics::BILL_GENERATED,
    topics::PAYMENT_COMPLETED,
    topics::PAYMENT_FAILED,
    topics::BILL_PAID,
];
