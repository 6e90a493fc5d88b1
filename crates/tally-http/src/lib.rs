//! HTTP conventions shared by every service: problem+json errors, JSON and query extractors that
//! name the failing field, exact amounts on the wire, `Idempotency-Key` handling, request ids,
//! metrics, health and the API documentation. It knows nothing about any one service.

pub mod amount;
pub mod app;
pub mod extract;
pub mod idempotency;
pub mod metrics;
pub mod problem;
pub mod testing;

pub use amount::{AmountInput, AmountOutput};
pub use app::{HttpSettings, Platform};
pub use extract::{ApiJson, ApiJsonOrEmpty, ApiQuery, Caller, RequestMeta};
pub use idempotency::{execute, Failure, IdempotencyHeader, IdempotentRequest};
pub use problem::{FieldError, FieldErrors, Problem};
