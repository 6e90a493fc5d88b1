//! The events the claims service publishes. Amounts are integer minor units with a currency.

use serde::Serialize;
use tally_kernel::event::DomainEvent;
use tally_kernel::time::Timestamp;
use tally_kernel::Currency;
use uuid::Uuid;

/// A claim was validated and stored (version 1). Billing records one provider payable per event.
pub const CLAIM_ACCEPTED: &str = "claim.accepted";

/// `claim.accepted`, version 1. It carries what a payable needs, and no member data (group and
/// subscriber numbers stay in the claims service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimAccepted {
    pub claim_id: Uuid,
    pub provider_npi: String,
    /// RFC 3339, UTC.
    pub service_date: Timestamp,
    pub submitted_procedure: String,
    pub quadrant: Option<String>,
    /// `provider_fees + member_coinsurance + member_copay - allowed_fees`; may be negative.
    pub net_fee_minor: i64,
    pub provider_fees_minor: i64,
    pub allowed_fees_minor: i64,
    pub member_coinsurance_minor: i64,
    pub member_copay_minor: i64,
    pub currency: Currency,
}

impl DomainEvent for ClaimAccepted {
    fn event_type(&self) -> &'static str {
        CLAIM_ACCEPTED
    }

    fn aggregate_type(&self) -> &'static str {
        "claim"
    }

    fn aggregate_id(&self) -> String {
        self.claim_id.to_string()
    }

    fn data(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}
