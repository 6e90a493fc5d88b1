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
pub const HOLD_REQUESTED: &str = "wallet.hold_requested";
pub const CAPTURE_REQUESTED: &str = "wallet.capture_requested";
pub const HOLD_COMPLETED: &str = "wallet.hold_completed";
pub const HOLD_FAILED: &str = "wallet.hold_failed";
pub const CAPTURE_COMPLETED: &str = "wallet.capture_completed";
pub const CAPTURE_FAILED: &str = "wallet.capture_failed";
/// Document 003's request channel: a caller's `ADD_USER`, `REMOVE_USER`, `DEPOSIT`, `WITHDRAW`
/// or `USER_INFO` message.
pub const PAYMENT: &str = "payment";
/// The reply to each `payment` request (document 003's channel name, not a past tense).
pub const PAYMENT_RESPONSE: &str = "payment-response";

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
    /// The answer to a request from another service (`wallet.debit_requested`,
    /// `wallet.credit_requested`, `wallet.hold_requested`, `wallet.capture_requested`): it was
    /// done (`transaction_number` of the money moved, `hold_id` of the hold placed or captured)
    /// or it was not (`reason`).
    RequestAnswered {
        #[serde(skip)]
        event_type: &'static str,
        request_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        hold_id: Option<String>,
        wallet_id: i64,
        amount_minor: i64,
        currency: Currency,
        #[serde(skip_serializing_if = "Option::is_none")]
        transaction_number: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The reply on `payment-response` to one `payment` request.
    PaymentReplied(PaymentReply),
}

/// Whether a `payment` request was carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ReplyStatus {
    #[serde(rename = "OK")]
    Ok,
    #[serde(rename = "ERROR")]
    Error,
}

/// Document 003's reply: the caller's `id` and `type` echoed, `status`, a sentence in `message`,
/// and what applies of the user, their wallet and its money. Amounts are decimal strings with
/// exactly the currency's decimals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentReply {
    /// The id of the request's envelope: the reply's aggregate.
    pub request_id: String,
    /// The caller's message id, echoed verbatim (`null` when the request had none).
    pub id: serde_json::Value,
    /// The request's `type`, echoed verbatim (`null` when the request had none).
    #[serde(rename = "type")]
    pub request_type: serde_json::Value,
    pub status: ReplyStatus,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wallet_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<Currency>,
    /// `USER_INFO`: the balance; `DEPOSIT` and `WITHDRAW`: the balance after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    /// `USER_INFO`: the balance minus holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_number: Option<String>,
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
            WalletEvent::PaymentReplied(_) => PAYMENT_RESPONSE,
        }
    }

    fn aggregate_type(&self) -> &'static str {
        match self {
            WalletEvent::ClientCreated { .. } | WalletEvent::ClientRemoved { .. } => "client",
            WalletEvent::PaymentReplied(_) => "request",
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
            WalletEvent::PaymentReplied(reply) => reply.request_id.clone(),
        }
    }

    fn data(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}
