//! The notifications domain, decided without I/O: the events read and published, the text of
//! each message, and what happens to a delivery after each attempt.

pub mod delivery;
pub mod events;
pub mod render;

pub use delivery::{decide, routes, Channel, Decision, Failure, RetryPolicy, Route, Status};
pub use events::{Contact, EventError, NotificationEvent, Occasion};
pub use render::Message;
