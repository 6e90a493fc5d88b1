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

    /// The same JSON as `serde_json::to_writer(out, self)`, with the keys written as they are
    /// (they need no escaping): an import writes one of these per claim.
    fn write_data(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        self.write_json(out, true)
    }

    fn data_fields(&self) -> Option<&'static [&'static str]> {
        Some(&FIELDS)
    }

    fn write_data_values(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        self.write_json(out, false)
    }
}

/// The fields of `claim.accepted`'s data, in the order of the struct (and of its JSON).
const FIELDS: [&str; 11] = [
    "claim_id",
    "provider_npi",
    "service_date",
    "submitted_procedure",
    "quadrant",
    "net_fee_minor",
    "provider_fees_minor",
    "allowed_fees_minor",
    "member_coinsurance_minor",
    "member_copay_minor",
    "currency",
];

impl ClaimAccepted {
    /// The data as a JSON object (`keys`) or as the array of its values in [`FIELDS`] order.
    fn write_json(&self, out: &mut Vec<u8>, keys: bool) -> serde_json::Result<()> {
        let mut fields = FIELDS.iter();
        // Starts the next field: a comma after the first, and its key when writing an object.
        let mut next = |out: &mut Vec<u8>| {
            let field = fields.next().copied().unwrap_or_default();
            if field != FIELDS[0] {
                out.push(b',');
            }
            if keys {
                out.push(b'"');
                out.extend_from_slice(field.as_bytes());
                out.extend_from_slice(b"\":");
            }
        };
        let mut id = Uuid::encode_buffer();
        out.push(if keys { b'{' } else { b'[' });
        next(out);
        out.push(b'"');
        out.extend_from_slice(self.claim_id.hyphenated().encode_lower(&mut id).as_bytes());
        out.push(b'"');
        next(out);
        serde_json::to_writer(&mut *out, &self.provider_npi)?;
        next(out);
        write_timestamp(out, self.service_date)?;
        next(out);
        serde_json::to_writer(&mut *out, &self.submitted_procedure)?;
        next(out);
        serde_json::to_writer(&mut *out, &self.quadrant)?;
        for amount in [
            self.net_fee_minor,
            self.provider_fees_minor,
            self.allowed_fees_minor,
            self.member_coinsurance_minor,
            self.member_copay_minor,
        ] {
            next(out);
            serde_json::to_writer(&mut *out, &amount)?;
        }
        next(out);
        out.push(b'"');
        out.extend_from_slice(self.currency.code().as_bytes());
        out.push(b'"');
        out.push(if keys { b'}' } else { b']' });
        Ok(())
    }
}

/// A timestamp as its `Serialize` writes it (RFC 3339, `Z`), without the formatting machinery
/// for the whole seconds of years 0 to 9999 that service dates are; others take that way.
fn write_timestamp(out: &mut Vec<u8>, at: Timestamp) -> serde_json::Result<()> {
    use chrono::{Datelike as _, Timelike as _};
    if at.nanosecond() != 0 || !(0..=9999).contains(&at.year()) {
        return serde_json::to_writer(out, &at);
    }
    let two = |out: &mut Vec<u8>, n: u32| {
        out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8])
    };
    let year = at.year() as u32;
    out.push(b'"');
    two(out, year / 100);
    two(out, year % 100);
    out.push(b'-');
    two(out, at.month());
    out.push(b'-');
    two(out, at.day());
    out.push(b'T');
    two(out, at.hour());
    out.push(b':');
    two(out, at.minute());
    out.push(b':');
    two(out, at.second());
    out.extend_from_slice(b"Z\"");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(quadrant: Option<&str>, service_date: &str) -> ClaimAccepted {
        ClaimAccepted {
            claim_id: tally_kernel::id::new_v7(),
            provider_npi: "1234567893".to_owned(),
            service_date: service_date.parse().unwrap(),
            submitted_procedure: "D0120".to_owned(),
            quadrant: quadrant.map(str::to_owned),
            net_fee_minor: -250,
            provider_fees_minor: 15_000,
            allowed_fees_minor: 15_250,
            member_coinsurance_minor: 0,
            member_copay_minor: i64::MAX,
            currency: Currency::USD,
        }
    }

    #[test]
    fn the_written_data_and_values_are_the_serialized_event() {
        for (quadrant, date) in [
            (None, "2018-03-28T00:00:00Z"),
            (Some("UR"), "0999-12-31T23:59:59Z"),
            (Some("q \"x\" \\ é\n"), "2018-03-28T10:11:12.5Z"),
            (Some(""), "2024-02-29T07:08:09.000001Z"),
        ] {
            let event = event(quadrant, date);
            let mut written = Vec::new();
            event.write_data(&mut written).unwrap();
            assert_eq!(
                String::from_utf8(written).unwrap(),
                serde_json::to_string(&event).unwrap()
            );
            let mut values = Vec::new();
            event.write_data_values(&mut values).unwrap();
            let values: Vec<serde_json::Value> = serde_json::from_slice(&values).unwrap();
            let fields = event.data_fields().unwrap();
            let zipped: serde_json::Map<_, _> =
                fields.iter().map(|f| f.to_string()).zip(values).collect();
            assert_eq!(serde_json::Value::Object(zipped), event.data());
        }
    }
}
