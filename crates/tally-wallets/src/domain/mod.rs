//! The wallets domain: what a command may do to the ledger, decided without I/O.

pub mod error;
pub mod events;
pub mod ledger;
pub mod payment;

pub use error::WalletError;
pub use ledger::{Account, AccountKind, Hold, HoldStatus, Posting};

/// A client's login: 1 to 100 characters, no control characters (document 001 shows logins
/// with spaces and Cyrillic letters).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Login(String);

/// A client's display name: 1 to 200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClientName(String);

fn clean_text(raw: &str, max_chars: usize) -> Result<String, &'static str> {
    let text = raw.trim();
    if text.is_empty() {
        return Err("must not be blank");
    }
    if text.chars().count() > max_chars {
        return Err("is too long");
    }
    if text.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    Ok(text.to_owned())
}

impl Login {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        clean_text(raw, 100).map(Login)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl ClientName {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        clean_text(raw, 200).map(ClientName)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
