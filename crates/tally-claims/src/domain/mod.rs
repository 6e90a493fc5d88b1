//! The claims domain: what a claim row must look like, what a valid claim is, its net fee and the
//! events accepting it produces. Decided without I/O.

pub mod claim;
pub mod error;
pub mod events;
pub mod fields;

pub use claim::{
    accept, in_npi_order, provider_totals, AcceptedClaim, Claim, ClaimRow, Field, ProviderDelta,
    Totals,
};
pub use error::{ClaimError, Invalid, RowProblem, RowRejection};
pub use fields::{Npi, ProcedureCode, CURRENCY, MAX_AMOUNT_MINOR};
