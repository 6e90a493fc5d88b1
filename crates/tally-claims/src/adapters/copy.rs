//! PostgreSQL's binary `COPY` format for the claims table: the rows of a batch encoded on the
//! importer's reader thread, so that storing them is part of one `COPY` whose data the server
//! stores without parsing any text (the format is PostgreSQL's "Binary Format" of `COPY`: a
//! signature, then per row a field count and each field as its length and its binary value, then
//! a trailer). A transaction's batches are the rows of one `COPY`: [`HEADER`], each batch's
//! [`encode`]d rows, [`TRAILER`].

use tally_kernel::time::Timestamp;

use uuid::Uuid;

use crate::domain::{Claim, CURRENCY};

/// The `COPY` statement the rows of [`encode`] are for: its columns, in the order encoded.
pub const COPY_CLAIMS: &str = "COPY claims (id, service_date, submitted_procedure, quadrant, \
     plan_group_number, subscriber_number, provider_npi, provider_fees_minor, allowed_fees_minor, \
     member_coinsurance_minor, member_copay_minor, net_fee_minor, currency, created_at) \
     FROM STDIN (FORMAT binary)";

const FIELDS: i16 = 14;

/// The signature, flags (no OIDs) and header extension length every binary `COPY` starts with.
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// What ends a binary `COPY`'s data: a field count of -1.
pub const TRAILER: &[u8] = &(-1i16).to_be_bytes();

/// Microseconds from the Unix epoch to PostgreSQL's, 2000-01-01T00:00:00Z.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// The `COPY` rows of the claims with their ids, created at `created_at`: one tuple per claim
/// (without the [`HEADER`] and [`TRAILER`] around a `COPY`'s rows).
pub fn encode<'a>(
    claims: impl ExactSizeIterator<Item = (Uuid, &'a Claim)>,
    created_at: Timestamp,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(claims.len() * 200);
    let created_at = micros(created_at);
    let currency = CURRENCY.code();
    for (id, c) in claims {
        out.extend_from_slice(&FIELDS.to_be_bytes());
        field(&mut out, id.as_bytes());
        int8(&mut out, micros(c.service_date));
        text(&mut out, c.submitted_procedure.as_str());
        match &c.quadrant {
            Some(quadrant) => text(&mut out, quadrant),
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
        text(&mut out, &c.plan_group_number);
        text(&mut out, &c.subscriber_number);
        text(&mut out, c.provider_npi.as_str());
        int8(&mut out, c.provider_fees.amount_minor);
        int8(&mut out, c.allowed_fees.amount_minor);
        int8(&mut out, c.member_coinsurance.amount_minor);
        int8(&mut out, c.member_copay.amount_minor);
        int8(&mut out, c.net_fee().amount_minor);
        text(&mut out, currency);
        int8(&mut out, created_at);
    }
    out
}

/// A `TIMESTAMPTZ` as PostgreSQL stores it: microseconds since its epoch.
fn micros(at: Timestamp) -> i64 {
    at.timestamp_micros() - POSTGRES_EPOCH_MICROS
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    // Every field encoded here is a few dozen bytes at most (the domain bounds text lengths).
    let len = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

fn text(out: &mut Vec<u8>, text: &str) {
    field(out, text.as_bytes());
}

fn int8(out: &mut Vec<u8>, value: i64) {
    field(out, &value.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_count_microseconds_from_2000() {
        let epoch: Timestamp = "2000-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(micros(epoch), 0);
        let later: Timestamp = "2000-01-01T00:00:01.000002Z".parse().unwrap();
        assert_eq!(micros(later), 1_000_002);
        let earlier: Timestamp = "1999-12-31T23:59:59Z".parse().unwrap();
        assert_eq!(micros(earlier), -1_000_000);
    }

    #[test]
    fn a_copy_starts_with_the_signature_and_ends_with_a_field_count_of_minus_one() {
        assert_eq!(HEADER.len(), 19);
        assert!(HEADER.starts_with(b"PGCOPY\n\xff\r\n\0"));
        assert_eq!(TRAILER, [0xff, 0xff]);
        let none = encode(std::iter::empty(), "2026-11-21T00:00:00Z".parse().unwrap());
        assert!(none.is_empty());
    }
}
