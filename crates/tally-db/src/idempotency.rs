//! Stored first responses to `Idempotency-Key`s, with Stripe's semantics.
//!
//! The record is written in the same transaction as the effect, so a key has at most one effect:
//! a concurrent duplicate either sees the record or fails on its primary key and is answered
//! from the record once the first transaction commits.

use sqlx::Row as _;

use crate::{Db, WriteTx};

/// The response first given for a key, replayed byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The key has not been used in this scope.
    Miss,
    /// The key was used with the same request: here is the first response.
    Replay(StoredResponse),
    /// The key was used with a different request.
    Mismatch,
}

const SELECT: &str = "SELECT request_hash, status_code, response_body FROM idempotency_keys \
                      WHERE scope = $1 AND idempotency_key = $2";

fn to_lookup(row: Option<sqlx::any::AnyRow>, request_hash: &str) -> Result<Lookup, sqlx::Error> {
    let Some(row) = row else {
        return Ok(Lookup::Miss);
    };
    let stored_hash: String = row.try_get(0)?;
    if stored_hash != request_hash {
        return Ok(Lookup::Mismatch);
    }
    let status: i64 = row.try_get(1)?;
    Ok(Lookup::Replay(StoredResponse {
        status: u16::try_from(status).unwrap_or(500),
        body: row.try_get(2)?,
    }))
}

/// Looks a key up outside any transaction: the fast path for replays.
pub async fn lookup(
    db: &Db,
    scope: &str,
    key: &str,
    request_hash: &str,
) -> Result<Lookup, sqlx::Error> {
    let row = sqlx::query(SELECT)
        .bind(scope)
        .bind(key)
        .fetch_optional(db.reader())
        .await?;
    to_lookup(row, request_hash)
}

/// Looks a key up inside the write transaction that would apply the effect.
pub async fn lookup_in(
    tx: &mut WriteTx,
    scope: &str,
    key: &str,
    request_hash: &str,
) -> Result<Lookup, sqlx::Error> {
    let row = sqlx::query(SELECT)
        .bind(scope)
        .bind(key)
        .fetch_optional(&mut **tx)
        .await?;
    to_lookup(row, request_hash)
}

/// Records the response in the effect's transaction. A unique violation here means a
/// concurrent request with the same key committed first: roll back and replay its record.
pub async fn record(
    tx: &mut WriteTx,
    scope: &str,
    key: &str,
    request_hash: &str,
    response: &StoredResponse,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO idempotency_keys \
         (scope, idempotency_key, request_hash, status_code, response_body, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(scope)
    .bind(key)
    .bind(request_hash)
    .bind(i64::from(response.status))
    .bind(&response.body)
    .bind(tally_kernel::time::to_db(tally_kernel::time::now()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Forgets keys older than `cutoff`; a retry after that is a new request, as at Stripe.
pub async fn purge_older_than(
    db: &Db,
    cutoff: tally_kernel::time::Timestamp,
) -> Result<u64, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
        .bind(tally_kernel::time::to_db(cutoff))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}
