//! `Idempotency-Key` with Stripe's semantics, for every money-moving request.
//!
//! The first response to a key is stored in the transaction of its effect and replayed, byte for
//! byte, for every retry. The same key with a different request is refused (422) and changes
//! nothing. Concurrent requests with one key produce one effect: the losers see the winner's
//! record, or fail on its primary key and replay it once it commits. Refusals decided by the
//! service (insufficient funds) are stored and replayed too; malformed requests never reach here.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tally_db::idempotency::{self, Lookup, StoredResponse};
use tally_db::{classify, group, Backend, Db, DbErrorKind, WriteTx};
use tally_kernel::IdempotencyKey;

use crate::extract::Caller;
use crate::problem::{Problem, PROBLEM_JSON};

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// Attempts at a transaction that failed on a deadlock or a busy database.
const MAX_TX_ATTEMPTS: u32 = 3;

/// The optional `Idempotency-Key` header, validated, and the caller it belongs to: keys are
/// scoped per API token, so two callers never share one.
pub struct IdempotencyHeader {
    pub key: Option<IdempotencyKey>,
    pub caller: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyHeader {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let caller = parts.extensions.get::<Caller>().map(|c| c.token_id.clone());
        let Some(value) = parts.headers.get(IDEMPOTENCY_KEY) else {
            return Ok(IdempotencyHeader { key: None, caller });
        };
        let text = value.to_str().map_err(|_| {
            Problem::invalid_field(
                "Idempotency-Key",
                "must contain only visible ASCII characters",
            )
        })?;
        IdempotencyKey::parse(text)
            .map(|k| IdempotencyHeader {
                key: Some(k),
                caller,
            })
            .map_err(|e| Problem::invalid_field("Idempotency-Key", e.to_string()))
    }
}

/// A keyed request: the key, where it applies, and a digest of what was asked.
#[derive(Debug, Clone)]
pub struct IdempotentRequest {
    key: IdempotencyKey,
    scope: String,
    request_hash: String,
}

impl IdempotentRequest {
    /// `canonical` is the parsed command, so that the same request spelled differently (`500.5`
    /// and `"500.50"`, other key order) counts as the same request.
    pub fn new(header: IdempotencyHeader, scope: &str, canonical: &impl Serialize) -> Option<Self> {
        let key = header.key?;
        let scope = match &header.caller {
            Some(caller) => format!("{caller}:{scope}"),
            None => scope.to_owned(),
        };
        let mut hasher = Sha256::new();
        hasher.update(scope.as_bytes());
        hasher.update([0]);
        hasher.update(serde_json::to_vec(canonical).unwrap_or_default());
        Some(Self {
            key,
            scope: scope.to_owned(),
            request_hash: hex::encode(hasher.finalize()),
        })
    }
}

/// Why the work of a request did not produce its success response.
#[derive(Debug)]
pub enum Failure {
    /// The service refused the request (a 4xx): stored for the key, and nothing is applied.
    Refused(Problem),
    /// A database error: retried when retryable, otherwise a 500.
    Db(sqlx::Error),
    Internal(anyhow::Error),
}

impl From<Problem> for Failure {
    fn from(p: Problem) -> Self {
        Failure::Refused(p)
    }
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Failure::Db(e)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Internal(e)
    }
}

/// Runs `work` in a write transaction of `db` and answers `success` with its result; with a key,
/// stores the response in the same transaction and replays it for retries. `work` may run more
/// than once (after a deadlock), each time in a new transaction.
///
/// On SQLite the transaction is shared with the other requests writing at the same time (group
/// commit, [`Db::write_shared`]): the work runs in a savepoint, a refused work is rolled back to
/// it alone, and the response is sent once the shared transaction has committed.
///
/// The work runs in a task of its own: if the client goes away or the request times out, the
/// transaction still finishes (commits or rolls back) instead of being dropped halfway, so the
/// connection is never left inside an abandoned transaction. A timed-out request may therefore
/// have been applied: retrying it with the same key tells.
pub async fn execute<T, F>(
    db: &Db,
    request: Option<IdempotentRequest>,
    success: StatusCode,
    work: F,
) -> Response
where
    T: Serialize + Send + 'static,
    F: for<'t> Fn(&'t mut WriteTx) -> BoxFuture<'t, Result<T, Failure>> + Send + Sync + 'static,
{
    let db = db.clone();
    let work = Arc::new(work);
    let task = tokio::spawn(async move { execute_here(&db, request, success, work).await });
    match task.await {
        Ok(response) => response,
        Err(e) => {
            Problem::internal(&anyhow::anyhow!("the request's task failed: {e}")).into_response()
        }
    }
}

async fn execute_here<T, F>(
    db: &Db,
    request: Option<IdempotentRequest>,
    success: StatusCode,
    work: Arc<F>,
) -> Response
where
    T: Serialize + Send + 'static,
    F: for<'t> Fn(&'t mut WriteTx) -> BoxFuture<'t, Result<T, Failure>> + Send + Sync + 'static,
{
    if let Some(req) = &request {
        match idempotency::lookup(db, &req.scope, req.key.as_str(), &req.request_hash).await {
            Ok(Lookup::Miss) => {}
            Ok(found) => return answer_found(found),
            Err(e) => return Problem::from(e).into_response(),
        }
    }
    let mut attempt = 1;
    loop {
        let outcome = match db.backend() {
            Backend::Sqlite => attempt_shared(db, request.as_ref(), success, &work).await,
            Backend::Postgres => attempt_once(db, request.as_ref(), success, &*work).await,
        };
        match outcome {
            Ok(response) => return response,
            Err(e) if classify(&e) == DbErrorKind::Retryable && attempt < MAX_TX_ATTEMPTS => {
                tracing::debug!(attempt, error = %e, "transaction conflict, retrying");
                attempt += 1;
            }
            Err(e) => return Problem::from(e).into_response(),
        }
    }
}

async fn attempt_once<T, F>(
    db: &Db,
    request: Option<&IdempotentRequest>,
    success: StatusCode,
    work: &F,
) -> Result<Response, sqlx::Error>
where
    T: Serialize,
    F: for<'t> Fn(&'t mut WriteTx) -> BoxFuture<'t, Result<T, Failure>>,
{
    let mut tx = db.begin_write().await?;
    if let Some(found) = found_in(&mut tx, request).await? {
        return Ok(found);
    }
    let stored = match work(&mut tx).await {
        Ok(value) => success_record(success, &value)?,
        Err(Failure::Refused(problem)) => {
            // Nothing of the refused work may commit: record the refusal in a transaction of
            // its own.
            tx.rollback().await?;
            let stored = refusal_record(&problem);
            return match request {
                Some(req) if is_kept(&stored) => record_alone(db, req, stored).await,
                _ => Ok(respond(&stored, false)),
            };
        }
        Err(Failure::Db(e)) => return Err(e),
        Err(Failure::Internal(e)) => return Ok(Problem::internal(&e).into_response()),
    };
    match request {
        Some(req) => record_and_commit(db, tx, req, stored).await,
        None => {
            db.commit(tx).await?;
            Ok(respond(&stored, false))
        }
    }
}

/// One attempt in a transaction shared with other requests (SQLite's group commit).
async fn attempt_shared<T, F>(
    db: &Db,
    request: Option<&IdempotentRequest>,
    success: StatusCode,
    work: &Arc<F>,
) -> Result<Response, sqlx::Error>
where
    T: Serialize + Send + 'static,
    F: for<'t> Fn(&'t mut WriteTx) -> BoxFuture<'t, Result<T, Failure>> + Send + Sync + 'static,
{
    let (owned, work) = (request.cloned(), work.clone());
    let shared = group::shared(move |tx| {
        let (request, work) = (owned.clone(), work.clone());
        Box::pin(async move { in_shared(tx, request.as_ref(), success, &*work).await })
    });
    match (db.write_shared(shared).await, request) {
        // Another request with the key stored its response first (on SQLite, another process).
        (Err(e), Some(req)) if classify(&e) == DbErrorKind::UniqueViolation => {
            replay_after_conflict(db, req, e).await
        }
        (result, _) => result,
    }
}

/// A request's part of a shared transaction, in a savepoint of its own: a refusal rolls the work
/// back to it and is stored in its place; an error rolls back the whole part.
async fn in_shared<T, F>(
    tx: &mut WriteTx,
    request: Option<&IdempotentRequest>,
    success: StatusCode,
    work: &F,
) -> Result<Response, sqlx::Error>
where
    T: Serialize,
    F: for<'t> Fn(&'t mut WriteTx) -> BoxFuture<'t, Result<T, Failure>>,
{
    if let Some(found) = found_in(tx, request).await? {
        return Ok(found);
    }
    let stored = match work(tx).await {
        Ok(value) => success_record(success, &value)?,
        Err(Failure::Refused(problem)) => {
            group::roll_back_piece(tx).await?;
            let stored = refusal_record(&problem);
            if let Some(req) = request.filter(|_| is_kept(&stored)) {
                idempotency::record(tx, &req.scope, req.key.as_str(), &req.request_hash, &stored)
                    .await?;
            }
            return Ok(respond(&stored, false));
        }
        Err(Failure::Db(e)) => return Err(e),
        Err(Failure::Internal(e)) => {
            group::roll_back_piece(tx).await?;
            return Ok(Problem::internal(&e).into_response());
        }
    };
    if let Some(req) = request {
        idempotency::record(tx, &req.scope, req.key.as_str(), &req.request_hash, &stored).await?;
    }
    Ok(respond(&stored, false))
}

/// Records a refusal in a transaction of its own (the refused work was rolled back).
async fn record_alone(
    db: &Db,
    req: &IdempotentRequest,
    stored: StoredResponse,
) -> Result<Response, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    match found_in(&mut tx, Some(req)).await? {
        Some(found) => Ok(found),
        None => record_and_commit(db, tx, req, stored).await,
    }
}

/// The answer already stored for `request`'s key, as `tx` sees it: a replay, or the refusal of a
/// key reused for another request.
async fn found_in(
    tx: &mut WriteTx,
    request: Option<&IdempotentRequest>,
) -> Result<Option<Response>, sqlx::Error> {
    let Some(req) = request else {
        return Ok(None);
    };
    match idempotency::lookup_in(tx, &req.scope, req.key.as_str(), &req.request_hash).await? {
        Lookup::Miss => Ok(None),
        found => Ok(Some(answer_found(found))),
    }
}

fn success_record<T: Serialize>(
    success: StatusCode,
    value: &T,
) -> Result<StoredResponse, sqlx::Error> {
    Ok(StoredResponse {
        status: success.as_u16(),
        body: serde_json::to_string(value).map_err(|e| sqlx::Error::Encode(e.into()))?,
    })
}

fn refusal_record(problem: &Problem) -> StoredResponse {
    StoredResponse {
        status: problem.status,
        body: problem.to_body(),
    }
}

/// Whether a refusal is stored for its key. Only refusals that depend on the state (409:
/// insufficient funds, a closed wallet) are; a request that was wrong in itself (404, 422) is
/// not, so that it can be corrected and sent again with the same key, as at Stripe.
fn is_kept(refusal: &StoredResponse) -> bool {
    refusal.status == StatusCode::CONFLICT.as_u16()
}

/// Stores the response for the key in `tx` and commits. If a concurrent request with the same
/// key committed first, `tx` is dropped and that request's record answers instead.
async fn record_and_commit(
    db: &Db,
    mut tx: WriteTx,
    req: &IdempotentRequest,
    stored: StoredResponse,
) -> Result<Response, sqlx::Error> {
    let key = req.key.as_str();
    if let Err(e) = idempotency::record(&mut tx, &req.scope, key, &req.request_hash, &stored).await
    {
        drop(tx);
        return replay_after_conflict(db, req, e).await;
    }
    db.commit(tx).await?;
    Ok(respond(&stored, false))
}

/// A concurrent request with the same key committed first: answer with its record.
async fn replay_after_conflict(
    db: &Db,
    req: &IdempotentRequest,
    error: sqlx::Error,
) -> Result<Response, sqlx::Error> {
    if classify(&error) != DbErrorKind::UniqueViolation {
        return Err(error);
    }
    match idempotency::lookup(db, &req.scope, req.key.as_str(), &req.request_hash).await? {
        Lookup::Miss => Err(error),
        found => Ok(answer_found(found)),
    }
}

fn answer_found(found: Lookup) -> Response {
    match found {
        Lookup::Replay(stored) => respond(&stored, true),
        Lookup::Mismatch | Lookup::Miss => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reuse",
            "Idempotency-Key reused",
        )
        .with_field(
            "Idempotency-Key",
            "was already used with a different request",
        )
        .into_response(),
    }
}

fn respond(stored: &StoredResponse, replayed: bool) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let content_type = if status.is_success() {
        "application/json"
    } else {
        PROBLEM_JSON
    };
    let mut response = (status, stored.body.clone()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if replayed {
        headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    response
}
