//! The patients service: registering patients, keeping their details, deactivating them, and
//! telling other services in the process whether a patient may be booked.
//!
//! `domain` decides (pure: no sqlx, no axum); `adapters` load state, apply the decision, write
//! the outbox and answer HTTP. Patient details (names, dates of birth, e-mail addresses, phone
//! numbers) never reach a log: nothing here logs them, their `Debug` forms are redacted, and
//! error details name the refused field without repeating its value.

pub mod adapters;
pub mod domain;

pub use adapters::routes::{router, Patients, PatientsApi};
pub use adapters::store::SCHEMA;
pub use domain::PatientStatus;

/// The service's name: its SQLite file, its PostgreSQL schema, the `source` of its events.
pub const SERVICE: &str = "patients";

/// The topics this service publishes.
pub const PUBLISHES: &[&str] = &[
    domain::events::PATIENT_REGISTERED,
    domain::events::PATIENT_UPDATED,
    domain::events::PATIENT_DEACTIVATED,
];
