//! Everything the wallets service refuses, and why.

use tally_kernel::{Currency, Money};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalletError {
    #[error("client {0} does not exist")]
    ClientNotFound(i64),
    #[error("wallet {0} does not exist")]
    WalletNotFound(i64),
    #[error("hold {0} does not exist")]
    HoldNotFound(String),
    #[error("login is already taken")]
    LoginTaken,
    #[error("wallet {wallet_id} has {available} available; {requested} requested")]
    InsufficientFunds {
        wallet_id: i64,
        available: Money,
        requested: Money,
    },
    /// The database's check refused a posting the service let through: a defect, caught by the
    /// second line of defence.
    #[error("the ledger refused to overdraw wallet {0}")]
    Overdraft(i64),
    #[error("a transfer needs two different wallets")]
    SameWallet,
    #[error("wallet {wallet_id} holds {expected}, not {got}")]
    CurrencyMismatch {
        wallet_id: i64,
        expected: Currency,
        got: Currency,
        field: &'static str,
    },
    #[error("{field} {error}")]
    Amount {
        field: &'static str,
        error: tally_kernel::AmountError,
    },
    #[error("wallet {0} is closed")]
    WalletClosed(i64),
    #[error("client {0} was removed")]
    ClientRemoved(i64),
    #[error("client {0} has no open wallet")]
    NoOpenWallet(i64),
    #[error("client {0} still has money or holds in a wallet")]
    ClientHasFunds(i64),
    #[error("hold {hold_id} is already {status}")]
    HoldNotPlaced {
        hold_id: String,
        status: &'static str,
    },
    #[error("hold {hold_id} is for {held}; {requested} cannot be captured")]
    CaptureExceedsHold {
        hold_id: String,
        held: Money,
        requested: Money,
    },
}
