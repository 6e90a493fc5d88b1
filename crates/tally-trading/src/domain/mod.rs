//! Trading's decisions, free of storage and transport.

pub mod events;
pub mod message;

pub use message::{Body, Kind, Message, OrderRequest, Refusal, Side};

/// `price × quantity` in minor units, or `None` past what a wallet can hold.
pub fn order_total(price_minor: i64, quantity: i64) -> Option<i64> {
    price_minor.checked_mul(quantity)
}
