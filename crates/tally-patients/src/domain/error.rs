//! Everything the patients service refuses once a request is well formed, and why. Messages name
//! patients by id only, never by their details.

use uuid::Uuid;

use super::patient::Field;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatientError {
    #[error("patient {0} does not exist")]
    NotFound(Uuid),
    /// A registration under an id already taken, with details other than the registered ones.
    #[error("patient {id} is already registered with other details")]
    RegisteredDifferently { id: Uuid, differing: Vec<Field> },
    /// A deactivated patient's record is closed: it can be read, not changed.
    #[error("patient {0} is deactivated and can no longer be changed")]
    Deactivated(Uuid),
}
