//! The claims service: dental claim ingestion (document 002), validation, the net fee of each
//! claim, and the ranking of providers by total net fee.
//!
//! `domain` decides (pure: no sqlx, no axum): what a valid claim is and what it is worth.
//! `adapters` read claims from JSON and CSV, store them with the provider totals and the outbox in
//! one transaction, and answer HTTP. The CSV reader and [`store_batch`] are public so that a
//! streaming importer (`tally import-claims`) validates and stores exactly as the API does.

pub mod adapters;
pub mod domain;

pub use adapters::csv::{csv_rows, CsvRows};
pub use adapters::imports::{file_sha256, FileImport};
pub use adapters::json::json_rows;
pub use adapters::routes::{router, Claims, ClaimsApi, TopProvidersRate};
pub use adapters::store::{
    prepare_batch, prepare_import_batch, store_batch, store_prepared, BulkWriter, PreparedBatch,
    Store, ROW_EVENTS, SCHEMA,
};
pub use domain::events::{ClaimAccepted, CLAIM_ACCEPTED};
pub use domain::{
    AcceptedClaim, Claim, ClaimError, ClaimRow, Field, Invalid, RowProblem, RowRejection,
};

/// The service's name: its SQLite file, its PostgreSQL schema, the `source` of its events.
pub const SERVICE: &str = "claims";

/// The topics this service publishes. `claim.rejected` is left to the importer: a refused API
/// request stores nothing, so it publishes nothing either.
pub const PUBLISHES: &[&str] = &[domain::events::CLAIM_ACCEPTED];
