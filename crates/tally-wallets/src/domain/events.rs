//! The events the wallets service publishes. Amounts are integer minor units with a currency.

use serde::Serialize;
use tally_kernel::event::DomainEvent;
use tally_kernel::Currency;

pub const CLIENT_CREATED: &str = "client.created";
pub const CLIENT_REMOVED: &str = "client.removed";
pub const WALLET_OPENED: &str = "wallet.opened";
pub const FUNDS_DEPOSITED: &str = "funds.deposited";
pub const FUNDS_WITHDRAWN: &str = "funds.withdrawn";
pub const FUNDS_TRANSFERRED: &str = "funds.transferred";
pub const HOLD_PLACED: &str = "hold.placed";
pub const HOLD_CAPTURED: &str = "hold.captured";
pub const HOLD_RELEASED: &str = "hold.released";
pub const DEBIT_REQUESTED: &str = "wallet.debit_requested";
pub const CREDIT_REQUESTED: &str = "wallet.credit_requested";
pub const DEBIT_COMPLETED: &str = "wallet.debit_completed";
pub const DEBIT_FAILED: &str = "wallet.debit_failed";
pub const CREDIT_COMPLETED: &str = "wallet.credit_completed";
pub const CREDIT_FAILED: &str = "wallet.credit_failed";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum WalletEvent {
    ClientCreated {
        client_id: i64,
        login: String,
        name: String,
        wallet_id: i64,
        currency: Currency,
    },
    ClientRemoved {
        client_id: i64,
    },
    WalletOpened {
        wallet_id: i64,
        client_id: i64,
        currency: Currency,
    },
    FundsDeposited {
        transaction_number: String,
        wallet_id: i64,
        amount_minor: i64,
        currency: Currency,
        balance_after_minor: i64,
    },
    FundsWithdrawn {
        transaction_number: String,
        wallet_id: i64,
        amount_minor: i64,
        currency: Currency,
        balance_after_minor: i64,
    },
    FundsTransferred {
        transaction_number: String,
        wallet_from_id: i64,
        wallet_to_id: i64,
        amount_minor: i64,
        currency: Currency,
        wallet_from_balance_after_minor: i64,
        wallet_to_balance_after_minor: i64,
    },
    HoldPlaced {
        hold_id: String,
        wallet_id: i64,
        amount_minor: i64,
        currency: Currency,
        reference: Option<String>,
    },
    HoldCaptured {
        hold_id: String,
        wallet_id: i64,
        transaction_number: String,
        captured_minor: i64,
        released_minor: i64,
        currency: Currency,
        credited_account_id: i64,
    },
    HoldReleased {
        hold_id: String,
        wallet_id: i64,
        amount_minor: i64,
        currency: Currency,
    },
    /// The answer to `wallet.debit_requested` or `wallet.credit_requested` from another
    /// service: the money moved (`transaction_number`) or it did not (`reason`).
    RequestAnswered {
        #[serde(skip)]
        event_type: &'static str,
        request_id: String,
        wallet_id: i64,
        amount_minor: i64,
        currency: Currency,
        #[serde(skip_serializing_if = "Option::is_none")]
        transaction_number: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

impl DomainEvent for WalletEvent {
    fn event_type(&self) -> &'static str {
        match self {
            WalletEvent::ClientCreated { .. } => CLIENT_CREATED,
            WalletEvent::ClientRemoved { .. } => CLIENT_REMOVED,
            WalletEvent::WalletOpened { .. } => WALLET_OPENED,
            WalletEvent::FundsDeposited { .. } => FUNDS_DEPOSITED,
            WalletEvent::FundsWithdrawn { .. } => FUNDS_WITHDRAWN,
            WalletEvent::FundsTransferred { .. } => FUNDS_TRANSFERRED,
            WalletEvent::HoldPlaced { .. } => HOLD_PLACED,
            WalletEvent::HoldCaptured { .. } => HOLD_CAPTURED,
            WalletEvent::HoldReleased { .. } => HOLD_RELEASED,
            WalletEvent::RequestAnswered { event_type, .. } => event_type,
        }
    }

    fn aggregate_type(&self) -> &'static str {
        match self {
            WalletEvent::ClientCreated { .. } | WalletEvent::ClientRemoved { .. } => "client",
            _ => "wallet",
        }
    }

    fn aggregate_id(&self) -> String {
        match self {
            WalletEvent::ClientCreated { client_id, .. }
            | WalletEvent::ClientRemoved { client_id } => client_id.to_string(),
            WalletEvent::WalletOpened { wallet_id, .. }
            | WalletEvent::FundsDeposited { wallet_id, .. }
            | WalletEvent::FundsWithdrawn { wallet_id, .. }
            | WalletEvent::HoldPlaced { wallet_id, .. }
            | WalletEvent::HoldCaptured { wallet_id, .. }
            | WalletEvent::HoldReleased { wallet_id, .. }
            | WalletEvent::RequestAnswered { wallet_id, .. } => wallet_id.to_string(),
            WalletEvent::FundsTransferred { wallet_from_id, .. } => wallet_from_id.to_string(),
        }
    }

    fn data(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}
