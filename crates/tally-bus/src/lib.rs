//! The event bus: the transactional outbox, the embedded event log and the consumer runtime.
//!
//! A service appends its events to its own outbox inside the transaction that makes the change
//! ([`outbox::append`]). Each outbox is a log ordered by a gap-free sequence number. Consumers
//! read those logs in order, apply each event's effect and record the event id in their inbox in
//! one transaction on their own database, so each effect happens exactly once however often an
//! event is delivered. Failures are retried with backoff; after a bounded number of attempts the
//! event goes to the consumer's dead letters. Nothing here knows any one service.

pub mod consumer;
pub mod dead_letter;
pub mod log;
pub mod outbox;
mod packed;
pub mod rows;
pub mod runtime;

pub use consumer::{Consumer, Handler, HandlerError};
pub use packed::PACKED_EVENTS;
pub use rows::RowEvents;
pub use runtime::{BusSettings, EmbeddedBus};
