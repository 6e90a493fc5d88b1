//! The shared kernel: money, identifiers, time, the event envelope and the Luhn check digit.
//!
//! Everything here is pure: no I/O, no database, no HTTP. Every service and every infrastructure
//! crate may depend on it; it depends on nothing of Tally's.

pub mod event;
pub mod id;
pub mod idempotency;
pub mod luhn;
pub mod money;
pub mod time;

pub use event::{Envelope, EventMeta};
pub use idempotency::IdempotencyKey;
pub use money::{AmountError, Currency, Decimal, Money};
