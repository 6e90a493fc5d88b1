//! The patients domain: what a patient record may hold and what may happen to it, decided
//! without I/O.

pub mod error;
pub mod events;
pub mod patient;
pub mod search;
pub mod values;

pub use error::PatientError;
pub use events::PatientEvent;
pub use patient::{Field, Patient, PatientChanges, PatientDetails, PatientStatus};
pub use search::SearchTerm;
pub use values::{latest_today, DateOfBirth, Email, PatientName, Phone};
