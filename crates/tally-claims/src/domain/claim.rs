//! A claim row as received, the claim it validates into, and what accepting claims produces: an
//! id and a net fee per claim, and how much each provider's total grows.

use std::collections::HashMap;

use serde::Serialize;
use tally_kernel::time::Timestamp;
use tally_kernel::Money;
use uuid::Uuid;

use super::error::{Invalid, RowProblem};
use super::events::ClaimAccepted;
use super::fields::{self, Npi, ProcedureCode, CURRENCY};

/// Longest group and subscriber numbers accepted.
const MAX_NUMBER_CHARS: usize = 64;
/// Longest quadrant accepted (`UR`, `LL`, or a tooth range).
const MAX_QUADRANT_CHARS: usize = 16;

/// The fields of a claim row, named as in document 002.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    ServiceDate,
    SubmittedProcedure,
    Quadrant,
    PlanGroupNumber,
    SubscriberNumber,
    ProviderNpi,
    ProviderFees,
    AllowedFees,
    MemberCoinsurance,
    MemberCopay,
}

impl Field {
    pub const ALL: [Field; 10] = [
        Field::ServiceDate,
        Field::SubmittedProcedure,
        Field::Quadrant,
        Field::PlanGroupNumber,
        Field::SubscriberNumber,
        Field::ProviderNpi,
        Field::ProviderFees,
        Field::AllowedFees,
        Field::MemberCoinsurance,
        Field::MemberCopay,
    ];

    /// The name in JSON bodies and in error paths (`rows[3].provider_npi`).
    pub fn name(self) -> &'static str {
        match self {
            Field::ServiceDate => "service_date",
            Field::SubmittedProcedure => "submitted_procedure",
            Field::Quadrant => "quadrant",
            Field::PlanGroupNumber => "plan_group_number",
            Field::SubscriberNumber => "subscriber_number",
            Field::ProviderNpi => "provider_npi",
            Field::ProviderFees => "provider_fees",
            Field::AllowedFees => "allowed_fees",
            Field::MemberCoinsurance => "member_coinsurance",
            Field::MemberCopay => "member_copay",
        }
    }

    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Every field but the quadrant must be present.
    pub fn required(self) -> bool {
        self != Field::Quadrant
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What a reader found in one field of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Cell<'a> {
    #[default]
    Absent,
    Text(&'a str),
    /// The reader could not even get text out of it (bad UTF-8, a JSON object).
    Refused(&'a Invalid),
}

/// A claim row as received: the text of each field, before validation. JSON and CSV readers fill
/// it, so both validate the same way.
#[derive(Debug, Clone, Default)]
pub struct ClaimRow<'a> {
    cells: [Cell<'a>; 10],
    /// Problems with the row itself or with fields that are not claim fields.
    others: Vec<RowProblem>,
}

impl<'a> ClaimRow<'a> {
    pub fn set(&mut self, field: Field, text: &'a str) {
        self.cells[field.index()] = Cell::Text(text);
    }

    /// Marks a field the reader could not read as text; validation reports `reason` for it.
    pub fn refuse(&mut self, field: Field, reason: &'a Invalid) {
        self.cells[field.index()] = Cell::Refused(reason);
    }

    /// Adds a problem that is not about one claim field (an unknown field, a row that is not an
    /// object).
    pub fn refuse_other(&mut self, problem: RowProblem) {
        self.others.push(problem);
    }

    /// The claim this row describes, or every reason it is not one, in field order.
    pub fn validate(&self) -> Result<Claim, Vec<RowProblem>> {
        let p = &mut Vec::new();
        let amount = fields::parse_amount;
        let number = |t: &str| fields::parse_text(t, MAX_NUMBER_CHARS);
        let service_date = self.required(p, Field::ServiceDate, fields::parse_service_date);
        let procedure = self.required(p, Field::SubmittedProcedure, ProcedureCode::parse);
        let quadrant = self.optional(p, Field::Quadrant, |t| {
            fields::parse_text(t, MAX_QUADRANT_CHARS)
        });
        let group = self.required(p, Field::PlanGroupNumber, number);
        let subscriber = self.required(p, Field::SubscriberNumber, number);
        let npi = self.required(p, Field::ProviderNpi, Npi::parse);
        let provider_fees = self.required(p, Field::ProviderFees, amount);
        let allowed_fees = self.required(p, Field::AllowedFees, amount);
        let coinsurance = self.required(p, Field::MemberCoinsurance, amount);
        let copay = self.required(p, Field::MemberCopay, amount);
        p.extend(self.others.iter().cloned());
        match (
            service_date,
            procedure,
            quadrant,
            group,
            subscriber,
            npi,
            provider_fees,
            allowed_fees,
            coinsurance,
            copay,
        ) {
            (
                Some(service_date),
                Some(submitted_procedure),
                Some(quadrant),
                Some(plan_group_number),
                Some(subscriber_number),
                Some(provider_npi),
                Some(provider_fees),
                Some(allowed_fees),
                Some(member_coinsurance),
                Some(member_copay),
            ) if p.is_empty() => Ok(Claim {
                service_date,
                submitted_procedure,
                quadrant,
                plan_group_number,
                subscriber_number,
                provider_npi,
                provider_fees,
                allowed_fees,
                member_coinsurance,
                member_copay,
            }),
            _ => Err(std::mem::take(p)),
        }
    }

    /// A field that must be present, parsed; or `None` with its problem recorded.
    fn required<T>(
        &self,
        problems: &mut Vec<RowProblem>,
        field: Field,
        parse: impl FnOnce(&str) -> Result<T, Invalid>,
    ) -> Option<T> {
        let result = match self.cells[field.index()] {
            Cell::Text(text) => match fields::trim(text) {
                "" => Err(Invalid::Missing),
                text => parse(text),
            },
            Cell::Refused(reason) => Err(reason.clone()),
            Cell::Absent => Err(Invalid::Missing),
        };
        result
            .map_err(|reason| problems.push(RowProblem::field(field.name(), reason)))
            .ok()
    }

    /// A field that may be absent or blank: `Some(None)` then.
    fn optional<T>(
        &self,
        problems: &mut Vec<RowProblem>,
        field: Field,
        parse: impl FnOnce(&str) -> Result<T, Invalid>,
    ) -> Option<Option<T>> {
        match self.cells[field.index()] {
            Cell::Absent => Some(None),
            Cell::Text(text) if fields::trim(text).is_empty() => Some(None),
            _ => self.required(problems, field, parse).map(Some),
        }
    }
}

/// A valid claim: only [`ClaimRow::validate`] makes one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claim {
    pub(crate) service_date: Timestamp,
    pub(crate) submitted_procedure: ProcedureCode,
    pub(crate) quadrant: Option<String>,
    pub(crate) plan_group_number: String,
    pub(crate) subscriber_number: String,
    pub(crate) provider_npi: Npi,
    pub(crate) provider_fees: Money,
    pub(crate) allowed_fees: Money,
    pub(crate) member_coinsurance: Money,
    pub(crate) member_copay: Money,
}

impl Claim {
    /// `provider_fees + member_coinsurance + member_copay - allowed_fees`, exactly; negative when
    /// the plan allowed more than the provider and the member account for.
    pub fn net_fee(&self) -> Money {
        // Each amount is at most MAX_AMOUNT_MINOR, so this cannot overflow.
        Money::new(
            self.provider_fees.amount_minor
                + self.member_coinsurance.amount_minor
                + self.member_copay.amount_minor
                - self.allowed_fees.amount_minor,
            CURRENCY,
        )
    }

    pub fn service_date(&self) -> Timestamp {
        self.service_date
    }
    pub fn submitted_procedure(&self) -> &ProcedureCode {
        &self.submitted_procedure
    }
    pub fn quadrant(&self) -> Option<&str> {
        self.quadrant.as_deref()
    }
    pub fn plan_group_number(&self) -> &str {
        &self.plan_group_number
    }
    pub fn subscriber_number(&self) -> &str {
        &self.subscriber_number
    }
    pub fn provider_npi(&self) -> &Npi {
        &self.provider_npi
    }
    pub fn provider_fees(&self) -> Money {
        self.provider_fees
    }
    pub fn allowed_fees(&self) -> Money {
        self.allowed_fees
    }
    pub fn member_coinsurance(&self) -> Money {
        self.member_coinsurance
    }
    pub fn member_copay(&self) -> Money {
        self.member_copay
    }
}

/// A claim accepted into the service: its id and its net fee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedClaim {
    pub id: Uuid,
    pub claim: Claim,
    pub net_fee: Money,
}

impl AcceptedClaim {
    pub fn event(&self) -> ClaimAccepted {
        let c = &self.claim;
        ClaimAccepted {
            claim_id: self.id,
            provider_npi: c.provider_npi.as_str().to_owned(),
            service_date: c.service_date,
            submitted_procedure: c.submitted_procedure.as_str().to_owned(),
            quadrant: c.quadrant.clone(),
            net_fee_minor: self.net_fee.amount_minor,
            provider_fees_minor: c.provider_fees.amount_minor,
            allowed_fees_minor: c.allowed_fees.amount_minor,
            member_coinsurance_minor: c.member_coinsurance.amount_minor,
            member_copay_minor: c.member_copay.amount_minor,
            currency: CURRENCY,
        }
    }
}

/// Accepts valid claims: each gets a new id (UUID v7) and its net fee.
pub fn accept(claims: impl IntoIterator<Item = Claim>) -> Vec<AcceptedClaim> {
    let claims: Vec<Claim> = claims.into_iter().collect();
    let ids = tally_kernel::id::new_v7_run(claims.len());
    claims
        .into_iter()
        .zip(ids)
        .map(|(claim, id)| AcceptedClaim {
            id,
            net_fee: claim.net_fee(),
            claim,
        })
        .collect()
}

/// How much one provider's total grows by a batch of claims.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProviderDelta {
    pub net_fee_minor: i64,
    pub claim_count: i64,
}

/// Providers' growth keyed by NPI number. Hashed with foldhash (seeded per map) rather than
/// SipHash: an import sums two million entries into these per million claims.
pub type Totals = HashMap<u64, ProviderDelta, foldhash::fast::RandomState>;

/// The batch's growth per provider, keyed by the provider's NPI as a number ([`Npi::number`]):
/// a bulk writer sums many batches' growth, and numbers hash and compare for a fraction of the
/// cost of text. [`in_npi_order`] lists them for writing.
pub fn provider_totals<'a>(claims: impl ExactSizeIterator<Item = &'a Claim>) -> Totals {
    let mut totals =
        Totals::with_capacity_and_hasher(claims.len().min(1 << 14), Default::default());
    for claim in claims {
        let delta = totals.entry(claim.provider_npi.number()).or_default();
        delta.net_fee_minor += claim.net_fee().amount_minor;
        delta.claim_count += 1;
    }
    totals
}

/// Each provider's growth in `totals` with its NPI, in NPI order (the numbers' order is the
/// texts', ten digits each), so that concurrent transactions lock the providers' rows in one
/// order and never deadlock each other.
pub fn in_npi_order(totals: &Totals) -> Vec<(String, ProviderDelta)> {
    let mut ordered: Vec<(u64, ProviderDelta)> = totals.iter().map(|(n, d)| (*n, *d)).collect();
    ordered.sort_unstable_by_key(|(npi, _)| *npi);
    ordered
        .into_iter()
        .map(|(npi, delta)| (Npi::text_of(npi), delta))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Document 002's sample row, as a payer's CSV writes it.
    const GOOD: [(Field, &str); 10] = [
        (Field::ServiceDate, "3/28/18 0:00"),
        (Field::SubmittedProcedure, "D4346"),
        (Field::Quadrant, ""),
        (Field::PlanGroupNumber, "GRP-1000"),
        (Field::SubscriberNumber, "3730189502"),
        (Field::ProviderNpi, "1497775530"),
        (Field::ProviderFees, "$130.00 "),
        (Field::AllowedFees, "$65.00 "),
        (Field::MemberCoinsurance, "$16.25 "),
        (Field::MemberCopay, "$0.00 "),
    ];

    fn row_with(changes: &[(Field, &'static str)]) -> ClaimRow<'static> {
        let mut row = ClaimRow::default();
        for (field, text) in GOOD.iter().chain(changes) {
            row.set(*field, text);
        }
        row
    }

    fn refused_fields(row: &ClaimRow) -> Vec<(String, Invalid)> {
        row.validate()
            .unwrap_err()
            .into_iter()
            .map(|p| (p.field.unwrap_or_default().into_owned(), p.reason))
            .collect()
    }

    #[test]
    fn a_valid_row_becomes_a_claim_with_its_net_fee() {
        let claim = row_with(&[]).validate().unwrap();
        assert_eq!(claim.provider_npi().as_str(), "1497775530");
        assert_eq!(claim.quadrant(), None, "a blank quadrant is absent");
        assert_eq!(claim.provider_fees().amount_minor, 13000);
        // 130.00 + 16.25 + 0.00 - 65.00
        assert_eq!(claim.net_fee(), Money::new(8125, CURRENCY));
        let with_quadrant = row_with(&[(Field::Quadrant, " UR ")]).validate().unwrap();
        assert_eq!(with_quadrant.quadrant(), Some("UR"));
    }

    #[test]
    fn net_fee_may_be_negative_and_is_exact() {
        let claim = row_with(&[
            (Field::ProviderFees, "$100.01"),
            (Field::AllowedFees, "$200.00"),
            (Field::MemberCoinsurance, "$0.03"),
            (Field::MemberCopay, "$10.00"),
        ])
        .validate()
        .unwrap();
        assert_eq!(claim.net_fee().amount_minor, 10001 + 3 + 1000 - 20000);
    }

    #[test]
    fn each_rule_names_the_field_that_breaks_it() {
        let cases: [(Field, &str, Invalid); 12] = [
            (Field::SubmittedProcedure, "0180", Invalid::NotACdtCode),
            (Field::ProviderNpi, "123456789", Invalid::NpiNotTenDigits),
            (Field::ProviderNpi, "1234567890", Invalid::NpiCheckDigit),
            (Field::ProviderFees, "$1.001", Invalid::TooManyDecimals),
            (Field::AllowedFees, "-$5.00", Invalid::NegativeAmount),
            (Field::MemberCoinsurance, "five", Invalid::NotAnAmount),
            (
                Field::MemberCopay,
                "$99,999,999.00",
                Invalid::AmountTooLarge,
            ),
            (Field::ServiceDate, "2/30/18 0:00", Invalid::NotADate),
            (Field::PlanGroupNumber, " ", Invalid::Missing),
            (
                Field::SubscriberNumber,
                "a\u{7}b",
                Invalid::ControlCharacters,
            ),
            (
                Field::Quadrant,
                "a quadrant far too long",
                Invalid::TooLong(16),
            ),
            (Field::ServiceDate, "", Invalid::Missing),
        ];
        for (field, text, reason) in cases {
            let mut row = row_with(&[]);
            row.set(field, text);
            assert_eq!(
                refused_fields(&row),
                vec![(field.name().to_owned(), reason)],
                "{field:?} = {text:?}"
            );
        }
    }

    #[test]
    fn every_bad_field_is_reported_at_once_in_field_order() {
        let mut row = ClaimRow::default();
        row.set(Field::ProviderNpi, "1234567890");
        let reasons = refused_fields(&row);
        let names: Vec<&str> = reasons.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            names,
            [
                "service_date",
                "submitted_procedure",
                "plan_group_number",
                "subscriber_number",
                "provider_npi",
                "provider_fees",
                "allowed_fees",
                "member_coinsurance",
                "member_copay",
            ]
        );
        assert_eq!(reasons[4].1, Invalid::NpiCheckDigit);
        assert!(
            reasons
                .iter()
                .filter(|(_, r)| *r == Invalid::Missing)
                .count()
                == 8
        );
    }

    #[test]
    fn a_reader_refusal_and_other_problems_are_reported_as_given() {
        let not_utf8 = Invalid::NotUtf8;
        let mut row = row_with(&[]);
        row.refuse(Field::ProviderNpi, &not_utf8);
        row.refuse_other(RowProblem {
            field: Some("net_fee".into()),
            reason: Invalid::UnknownField,
        });
        assert_eq!(
            refused_fields(&row),
            vec![
                ("provider_npi".to_owned(), Invalid::NotUtf8),
                ("net_fee".to_owned(), Invalid::UnknownField),
            ]
        );
    }

    #[test]
    fn accepting_gives_ids_and_provider_totals_per_npi() {
        let a = row_with(&[]).validate().unwrap();
        let b = row_with(&[
            (Field::ProviderNpi, "1234567893"),
            (Field::ProviderFees, "$10.00"),
            (Field::AllowedFees, "$30.00"),
        ])
        .validate()
        .unwrap();
        let accepted = accept([a.clone(), b, a]);
        assert_eq!(accepted.len(), 3);
        assert_ne!(accepted[0].id, accepted[2].id);
        let totals = in_npi_order(&provider_totals(accepted.iter().map(|a| &a.claim)));
        let rows: Vec<(&str, i64, i64)> = totals
            .iter()
            .map(|(npi, d)| (npi.as_str(), d.net_fee_minor, d.claim_count))
            .collect();
        assert_eq!(
            rows,
            [
                ("1234567893", 1000 + 1625 - 3000, 1),
                ("1497775530", 2 * 8125, 2)
            ]
        );
        let event = accepted[1].event();
        assert_eq!(event.net_fee_minor, -375);
        assert_eq!(event.claim_id, accepted[1].id);
    }
}
