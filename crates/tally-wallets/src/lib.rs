//! The wallets service: clients, their wallets, and the double-entry ledger underneath
//! (deposits, withdrawals, transfers, holds).
//!
//! `domain` decides (pure: no sqlx, no axum); `adapters` load state, apply the decision, write
//! the outbox and answer HTTP.

pub mod adapters;
pub mod domain;

pub use adapters::consumers::{
    payment_channel_consumer, payments_consumer, PAYMENTS_CONSUMER, PAYMENT_CHANNEL_CONSUMER,
};
pub use adapters::routes::{router, Wallets, WalletsApi};
pub use adapters::store::SCHEMA;
pub use domain::events::{
    CAPTURE_COMPLETED, CAPTURE_FAILED, CAPTURE_REQUESTED, HOLD_COMPLETED, HOLD_FAILED,
    HOLD_REQUESTED, PAYMENT, PAYMENT_RESPONSE,
};

/// The service's name: its SQLite file, its PostgreSQL schema, the `source` of its events.
pub const SERVICE: &str = "wallets";

/// The topics this service publishes.
pub const PUBLISHES: &[&str] = &[
    domain::events::CLIENT_CREATED,
    domain::events::CLIENT_REMOVED,
    domain::events::WALLET_OPENED,
    domain::events::FUNDS_DEPOSITED,
    domain::events::FUNDS_WITHDRAWN,
    domain::events::FUNDS_TRANSFERRED,
    domain::events::HOLD_PLACED,
    domain::events::HOLD_CAPTURED,
    domain::events::HOLD_RELEASED,
    domain::events::DEBIT_COMPLETED,
    domain::events::DEBIT_FAILED,
    domain::events::CREDIT_COMPLETED,
    domain::events::CREDIT_FAILED,
    domain::events::HOLD_COMPLETED,
    domain::events::HOLD_FAILED,
    domain::events::CAPTURE_COMPLETED,
    domain::events::CAPTURE_FAILED,
    domain::events::PAYMENT_RESPONSE,
];
