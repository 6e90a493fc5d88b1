//! Bills and payments, decided without I/O.

use serde::Serialize;
use tally_kernel::event::DomainEvent;
use tally_kernel::{Currency, Money};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillStatus {
    Open,
    Paid,
    Voided,
}

impl BillStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BillStatus::Open => "open",
            BillStatus::Paid => "paid",
            BillStatus::Voided => "voided",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "open" => Some(BillStatus::Open),
            "paid" => Some(BillStatus::Paid),
            "voided" => Some(BillStatus::Voided),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bill {
    pub id: String,
    pub appointment_id: String,
    pub patient_id: String,
    pub amount: Money,
    pub paid_minor: i64,
    pub pending_minor: i64,
    pub refunded_minor: i64,
    pub status: BillStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Cash,
    Card,
    Wallet,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Cash => "cash",
            Method::Card => "card",
            Method::Wallet => "wallet",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "cash" => Some(Method::Cash),
            "card" => Some(Method::Card),
            "wallet" => Some(Method::Wallet),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillingError {
    #[error("bill {0} does not exist")]
    BillNotFound(String),
    #[error("bill {0} was voided")]
    BillVoided(String),
    #[error("bill {0} is already paid")]
    BillPaid(String),
    #[error("{requested} is more than the {due} still due")]
    Overpayment { due: Money, requested: Money },
    #[error("the bill is in {expected}, not {got}")]
    CurrencyMismatch { expected: Currency, got: Currency },
    #[error("bill {0} holds nothing that is owed back")]
    NoRefundDue(String),
    #[error("{requested} is more than the {due} owed back")]
    OverRefund { due: Money, requested: Money },
}

impl Bill {
    /// What may still be paid: the amount less what is held (completed payments not refunded)
    /// and what wallet payments in flight reserve. Nothing is due on a voided bill.
    pub fn due_minor(&self) -> i64 {
        if self.status == BillStatus::Voided {
            return 0;
        }
        (self.amount.amount_minor - self.held_minor() - self.pending_minor).max(0)
    }

    /// Checks a new payment of `amount` may be taken against this bill.
    pub fn accept_payment(&self, amount: Money) -> Result<(), BillingError> {
        match self.status {
            BillStatus::Voided => return Err(BillingError::BillVoided(self.id.clone())),
            BillStatus::Paid => return Err(BillingError::BillPaid(self.id.clone())),
            BillStatus::Open => {}
        }
        if amount.currency != self.amount.currency {
            return Err(BillingError::CurrencyMismatch {
                expected: self.amount.currency,
                got: amount.currency,
            });
        }
        let due = self.due_minor();
        if amount.amount_minor > due {
            return Err(BillingError::Overpayment {
                due: Money::new(due, self.amount.currency),
                requested: amount,
            });
        }
        Ok(())
    }

    /// Whether what is held covers the amount (a bill of zero is covered at once).
    pub fn is_covered(&self) -> bool {
        self.held_minor() >= self.amount.amount_minor
    }

    /// What has been paid and not refunded.
    pub fn held_minor(&self) -> i64 {
        self.paid_minor - self.refunded_minor
    }

    /// What the bill holds that is owed back: everything on a voided bill, otherwise what is
    /// held beyond the amount. Refunds are made as soon as something is owed, so this is only
    /// above zero while a refund that failed (a wallet that refused the credit) is unresolved.
    pub fn refund_due_minor(&self) -> i64 {
        match self.status {
            BillStatus::Voided => self.held_minor().max(0),
            _ => (self.held_minor() - self.amount.amount_minor).max(0),
        }
    }

    /// Checks `amount` may be given back now, by a refund the clinic asks for.
    pub fn accept_refund(&self, amount: Money) -> Result<(), BillingError> {
        if amount.currency != self.amount.currency {
            return Err(BillingError::CurrencyMismatch {
                expected: self.amount.currency,
                got: amount.currency,
            });
        }
        let due = self.refund_due_minor();
        if due == 0 {
            return Err(BillingError::NoRefundDue(self.id.clone()));
        }
        if amount.amount_minor > due {
            return Err(BillingError::OverRefund {
                due: Money::new(due, self.amount.currency),
                requested: amount,
            });
        }
        Ok(())
    }
}

/// A card number as a payer gives it: 12 to 19 digits (spaces and dashes ignored) with a valid
/// Luhn check digit. Only its last four digits are ever stored.
#[derive(Clone, PartialEq, Eq)]
pub struct CardNumber(String);

impl std::fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CardNumber(…{})", self.last4())
    }
}

impl CardNumber {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let digits: String = raw.chars().filter(|c| *c != ' ' && *c != '-').collect();
        if !(12..=19).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err("must be 12 to 19 digits");
        }
        if !tally_kernel::luhn::is_valid(&digits) {
            return Err("is not a valid card number (check digit)");
        }
        Ok(CardNumber(digits))
    }

    pub fn digits(&self) -> &str {
        &self.0
    }

    pub fn last4(&self) -> &str {
        &self.0[self.0.len() - 4..]
    }
}

pub const BILL_GENERATED: &str = "bill.generated";
pub const BILL_ADJUSTED: &str = "bill.adjusted";
pub const BILL_PAID: &str = "bill.paid";
pub const BILL_VOIDED: &str = "bill.voided";
pub const PAYMENT_COMPLETED: &str = "payment.completed";
pub const PAYMENT_FAILED: &str = "payment.failed";
pub const PAYMENT_REFUNDED: &str = "payment.refunded";
pub const PAYMENT_REFUND_FAILED: &str = "payment.refund_failed";
pub const WALLET_DEBIT_REQUESTED: &str = "wallet.debit_requested";
pub const WALLET_CREDIT_REQUESTED: &str = "wallet.credit_requested";

/// Billing's events (version 1); amounts in minor units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum BillingEvent {
    BillGenerated {
        bill_id: String,
        appointment_id: String,
        patient_id: String,
        amount_minor: i64,
        currency: Currency,
    },
    BillAdjusted {
        bill_id: String,
        appointment_id: String,
        patient_id: String,
        previous_amount_minor: i64,
        amount_minor: i64,
        currency: Currency,
    },
    BillPaid {
        bill_id: String,
        appointment_id: String,
        patient_id: String,
        amount_minor: i64,
        currency: Currency,
    },
    BillVoided {
        bill_id: String,
        appointment_id: String,
        patient_id: String,
        voided_minor: i64,
        refunded_minor: i64,
        currency: Currency,
    },
    Payment {
        #[serde(skip)]
        event_type: &'static str,
        payment_id: String,
        bill_id: String,
        patient_id: String,
        method: Method,
        amount_minor: i64,
        currency: Currency,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// `payment.refunded` when the money arrived, `payment.refund_failed` when it did not.
    Refund {
        #[serde(skip)]
        event_type: &'static str,
        refund_id: String,
        payment_id: String,
        bill_id: String,
        patient_id: String,
        /// The refunded payment's method.
        method: Method,
        /// How the money went back.
        refund_method: Method,
        amount_minor: i64,
        currency: Currency,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    WalletRequest {
        #[serde(skip)]
        event_type: &'static str,
        request_id: String,
        wallet_id: i64,
        amount_minor: i64,
        currency: Currency,
        reference: String,
    },
}

impl DomainEvent for BillingEvent {
    fn event_type(&self) -> &'static str {
        match self {
            BillingEvent::BillGenerated { .. } => BILL_GENERATED,
            BillingEvent::BillAdjusted { .. } => BILL_ADJUSTED,
            BillingEvent::BillPaid { .. } => BILL_PAID,
            BillingEvent::BillVoided { .. } => BILL_VOIDED,
            BillingEvent::Payment { event_type, .. }
            | BillingEvent::Refund { event_type, .. }
            | BillingEvent::WalletRequest { event_type, .. } => event_type,
        }
    }

    fn aggregate_type(&self) -> &'static str {
        match self {
            BillingEvent::Payment { .. }
            | BillingEvent::Refund { .. }
            | BillingEvent::WalletRequest { .. } => "payment",
            _ => "bill",
        }
    }

    fn aggregate_id(&self) -> String {
        match self {
            BillingEvent::BillGenerated { bill_id, .. }
            | BillingEvent::BillAdjusted { bill_id, .. }
            | BillingEvent::BillPaid { bill_id, .. }
            | BillingEvent::BillVoided { bill_id, .. } => bill_id.clone(),
            BillingEvent::Payment { payment_id, .. } | BillingEvent::Refund { payment_id, .. } => {
                payment_id.clone()
            }
            BillingEvent::WalletRequest { request_id, .. } => request_id.clone(),
        }
    }

    fn data(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bill(amount: i64, paid: i64, pending: i64) -> Bill {
        Bill {
            id: "b".into(),
            appointment_id: "a".into(),
            patient_id: "p".into(),
            amount: Money::new(amount, Currency::USD),
            paid_minor: paid,
            pending_minor: pending,
            refunded_minor: 0,
            status: BillStatus::Open,
        }
    }

    #[test]
    fn payments_up_to_what_is_due_are_accepted_and_no_more() {
        let b = bill(10_000, 3_000, 2_000);
        assert_eq!(b.due_minor(), 5_000);
        assert!(b.accept_payment(Money::new(5_000, Currency::USD)).is_ok());
        assert!(matches!(
            b.accept_payment(Money::new(5_001, Currency::USD)),
            Err(BillingError::Overpayment { .. })
        ));
        let eur = Currency::parse("EUR").unwrap();
        assert!(matches!(
            b.accept_payment(Money::new(1, eur)),
            Err(BillingError::CurrencyMismatch { .. })
        ));
        let voided = Bill {
            status: BillStatus::Voided,
            ..b.clone()
        };
        assert_eq!(
            voided.accept_payment(Money::new(1, Currency::USD)),
            Err(BillingError::BillVoided("b".into()))
        );
    }

    #[test]
    fn only_what_is_held_beyond_the_amount_is_owed_back_or_everything_once_voided() {
        let usd = |minor| Money::new(minor, Currency::USD);
        let paid = Bill {
            refunded_minor: 1_000,
            status: BillStatus::Paid,
            ..bill(10_000, 13_000, 0)
        };
        assert_eq!(paid.refund_due_minor(), 2_000);
        assert!(paid.accept_refund(usd(2_000)).is_ok());
        assert_eq!(
            paid.accept_refund(usd(2_001)),
            Err(BillingError::OverRefund {
                due: usd(2_000),
                requested: usd(2_001)
            })
        );
        let covered = bill(10_000, 10_000, 0);
        assert_eq!(covered.refund_due_minor(), 0);
        assert_eq!(
            covered.accept_refund(usd(1)),
            Err(BillingError::NoRefundDue("b".into()))
        );
        let voided = Bill {
            status: BillStatus::Voided,
            ..bill(10_000, 3_000, 0)
        };
        assert_eq!(voided.refund_due_minor(), 3_000);
        let eur = Currency::parse("EUR").unwrap();
        assert!(matches!(
            voided.accept_refund(Money::new(1, eur)),
            Err(BillingError::CurrencyMismatch { .. })
        ));
    }

    #[test]
    fn card_numbers_need_a_valid_check_digit_and_show_only_their_last_four() {
        let card = CardNumber::parse("4242 4242 4242 4242").unwrap();
        assert_eq!(card.last4(), "4242");
        assert_eq!(format!("{card:?}"), "CardNumber(…4242)");
        assert!(CardNumber::parse("4242424242424241").is_err());
        assert!(CardNumber::parse("42").is_err());
        assert!(CardNumber::parse("4242x42424242424").is_err());
    }
}
