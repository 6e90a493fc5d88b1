//! What trading publishes: its trades, and its requests to the wallets service (document 003's
//! `payment` channel, and holds, captures and credits for orders).

use serde::Serialize;
use tally_kernel::event::DomainEvent;
use tally_kernel::Currency;

pub const TRADE_EXECUTED: &str = "trade.executed";
pub const TRADE_REJECTED: &str = "trade.rejected";
/// Document 003's payment channel: the caller's message, for the wallets service.
pub const PAYMENT: &str = "payment";
pub const HOLD_REQUESTED: &str = "wallet.hold_requested";
pub const CAPTURE_REQUESTED: &str = "wallet.capture_requested";
pub const CREDIT_REQUESTED: &str = "wallet.credit_requested";

/// What trading reads from the wallets service.
pub const CLIENT_CREATED: &str = "client.created";
pub const CLIENT_REMOVED: &str = "client.removed";
pub const PAYMENT_RESPONSE: &str = "payment-response";
pub const HOLD_COMPLETED: &str = "wallet.hold_completed";
pub const HOLD_FAILED: &str = "wallet.hold_failed";
pub const CAPTURE_COMPLETED: &str = "wallet.capture_completed";
pub const CAPTURE_FAILED: &str = "wallet.capture_failed";
pub const CREDIT_COMPLETED: &str = "wallet.credit_completed";
pub const CREDIT_FAILED: &str = "wallet.credit_failed";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum TradingEvent {
    TradeExecuted {
        trade_id: String,
        order_id: String,
        user_id: i64,
        wallet_id: i64,
        side: &'static str,
        symbol: String,
        quantity: i64,
        price_minor: i64,
        total_minor: i64,
        currency: Currency,
    },
    TradeRejected {
        order_id: String,
        user_id: i64,
        side: &'static str,
        symbol: String,
        quantity: i64,
        price_minor: i64,
        total_minor: i64,
        currency: Currency,
        reason: String,
    },
    HoldRequested {
        request_id: String,
        wallet_id: i64,
        amount_minor: i64,
        currency: Currency,
        reference: String,
    },
    CaptureRequested {
        request_id: String,
        hold_id: String,
        wallet_id: i64,
        amount_minor: i64,
        currency: Currency,
    },
    CreditRequested {
        request_id: String,
        wallet_id: i64,
        amount_minor: i64,
        currency: Currency,
    },
}

impl DomainEvent for TradingEvent {
    fn event_type(&self) -> &'static str {
        match self {
            TradingEvent::TradeExecuted { .. } => TRADE_EXECUTED,
            TradingEvent::TradeRejected { .. } => TRADE_REJECTED,
            TradingEvent::HoldRequested { .. } => HOLD_REQUESTED,
            TradingEvent::CaptureRequested { .. } => CAPTURE_REQUESTED,
            TradingEvent::CreditRequested { .. } => CREDIT_REQUESTED,
        }
    }

    fn aggregate_type(&self) -> &'static str {
        match self {
            TradingEvent::TradeExecuted { .. } | TradingEvent::TradeRejected { .. } => "order",
            _ => "wallet",
        }
    }

    fn aggregate_id(&self) -> String {
        match self {
            TradingEvent::TradeExecuted { order_id, .. }
            | TradingEvent::TradeRejected { order_id, .. } => order_id.clone(),
            TradingEvent::HoldRequested { wallet_id, .. }
            | TradingEvent::CaptureRequested { wallet_id, .. }
            | TradingEvent::CreditRequested { wallet_id, .. } => wallet_id.to_string(),
        }
    }

    fn data(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}
