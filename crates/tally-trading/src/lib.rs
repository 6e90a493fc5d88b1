//! The trading service: document 003's trading desk on top of the wallets.
//!
//! A WebSocket takes document 003's messages. Payment messages (`ADD_USER`, `REMOVE_USER`,
//! `DEPOSIT`, `WITHDRAW`, `USER_INFO`) go to the wallets service on the `payment` topic, and its
//! `payment-response` becomes the caller's reply. A `BUY` asks the wallets service to hold
//! price × amount on the user's wallet and then to capture the hold; once captured, the order
//! executes (the units join the user's holdings). A `SELL` sets its units aside from the holdings
//! and asks the wallets service to credit the proceeds; once credited, the order executes, and if
//! the credit is refused the units go back. No order can overdraw a wallet (the hold is refused)
//! nor sell units the user does not hold (the holdings never go negative), however many arrive at
//! once, and no units change hands without their money.
//!
//! Every message with an `id` is stored with its reply, per token: the same id sent again gets
//! the same reply and has no second effect.

pub mod adapters;
pub mod domain;

pub use adapters::consumers::{wallets_consumer, WALLETS_CONSUMER};
pub use adapters::routes::{router, Trading, TradingApi};
pub use adapters::store::SCHEMA;
pub use adapters::ws::{Connections, Permissions, Verdict, WsSettings, PROTOCOL};

/// The service's name: its SQLite file, its PostgreSQL schema, the `source` of its events.
pub const SERVICE: &str = "trading";

/// The topics this service publishes.
pub const PUBLISHES: &[&str] = &[
    domain::events::TRADE_EXECUTED,
    domain::events::TRADE_REJECTED,
    domain::events::PAYMENT,
    domain::events::HOLD_REQUESTED,
    domain::events::CAPTURE_REQUESTED,
    domain::events::CREDIT_REQUESTED,
];
