//! The care service: physicians and their tariffs, and appointments (book, close, cancel,
//! no-show). A consultation is an appointment: document 000's consultation routes read and
//! close the same records.
//!
//! `domain` decides (pure: no sqlx, no axum, no clock); `adapters` check the patient with the
//! patients service through a [`PatientDirectory`], load and lock state, apply the decision,
//! write the outbox and answer HTTP. Care keeps patient ids only, never patient details, and
//! logs nothing but ids: a cancellation reason (free text that may describe a patient) never
//! reaches a log, and neither does anything the patients service answers.

pub mod adapters;
pub mod domain;

pub use adapters::directory::{
    BaseUrlError, DirectoryError, HttpPatientDirectory, PatientDirectory,
};
pub use adapters::routes::{router, Care, CareApi, CareSettings};
pub use adapters::store::SCHEMA;
pub use domain::PatientStatus;

/// The service's name: its SQLite file, its PostgreSQL schema, the `source` of its events.
pub const SERVICE: &str = "care";

/// The topics this service publishes.
pub const PUBLISHES: &[&str] = &[
    domain::events::APPOINTMENT_BOOKED,
    domain::events::APPOINTMENT_CANCELLED,
    domain::events::APPOINTMENT_NO_SHOW,
    domain::events::CONSULTATION_CLOSED,
];
