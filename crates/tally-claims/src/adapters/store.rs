//! The claims store: inserts accepted claims, grows their providers' totals and appends their
//! `claim.accepted` events, all in one transaction; reads the providers' ranking.
//!
//! Writing is split in two: [`prepare_batch`] does everything that needs no database (ids, net
//! fees, the totals per provider, every row serialized), so that an importer can prepare the
//! next batch on its reader thread while the database writes this one; the transaction then
//! only binds and executes a few statements per table. On SQLite those are multi-row `INSERT`s
//! with anonymous parameters (see [`tally_db::sqlite_values`]). On PostgreSQL a prepared batch
//! goes through the native driver ([`BulkWriter`]): the claims as binary `COPY` rows (all the
//! batches of a [`BulkWriter::write_all`] as one `COPY`), the totals as one statement of array
//! parameters; a request (inside the portable transaction of its
//! idempotency record) binds a JSON array of rows per table instead.
//!
//! A prepared batch's `claim.accepted` events are one outbox row naming its run of claims (see
//! [`tally_bus::rows`]): an event carries nothing its claim's row does not hold, so the log
//! reader builds the events from the claims ([`ROW_EVENTS`]) and an import writes each claim's
//! data once. That is why claims never change once stored (their table refuses updates and
//! deletes). A request's events are written whole, packed.

use std::sync::LazyLock;

use anyhow::Context as _;
use futures_util::{Stream, StreamExt as _};
use sqlx::Row as _;
use tally_bus::{outbox, RowEvents};
use tally_db::{classify, Backend, Db, DbErrorKind, PgTx, ServiceSchema, WriteTx};
use tally_kernel::time;
use tally_kernel::{EventMeta, Money};
use uuid::Uuid;

use super::{copy, imports};
use crate::domain::events::ClaimAccepted;
use crate::domain::{self, AcceptedClaim, Claim, Totals, CURRENCY};
use crate::SERVICE;

pub static SCHEMA: LazyLock<ServiceSchema> = LazyLock::new(|| ServiceSchema {
    name: SERVICE,
    sqlite: sqlx::migrate!("migrations/sqlite"),
    postgres: sqlx::migrate!("migrations/postgres"),
});

/// Most claims stored in one transaction (one request, or one batch of an import).
pub const MAX_BATCH_CLAIMS: usize = 10_000;

/// Most providers one ranking lists.
pub const MAX_TOP_PROVIDERS: i64 = 100;

/// Attempts at a batch whose transaction failed on a deadlock or a busy database.
const MAX_TX_ATTEMPTS: u32 = 3;

/// One line of the providers' ranking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderTotal {
    pub provider_npi: String,
    pub total_net_fee: Money,
    pub claim_count: i64,
}

#[derive(Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Stores `claims` inside `tx`: their rows, their providers' totals and their events. Nothing
    /// of it is visible until `tx` commits.
    pub async fn insert(
        &self,
        tx: &mut WriteTx,
        claims: &[AcceptedClaim],
        meta: &EventMeta,
    ) -> Result<(), sqlx::Error> {
        let rows = Rows::new(self.db.backend(), claims)?;
        let events = prepare_events(&self.db, claims, meta)?;
        write(tx, claims, &rows, &events).await
    }

    /// The same ranking computed the slow way, by summing every claim: the baseline that
    /// benchmarks compare [`Store::top_providers`] with. Not used to answer requests.
    pub async fn top_providers_by_scan(&self, limit: i64) -> Result<usize, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT provider_npi, CAST(SUM(net_fee_minor) AS BIGINT) AS total FROM claims \
             GROUP BY provider_npi ORDER BY total DESC, provider_npi LIMIT $1",
        )
        .bind(limit.clamp(1, MAX_TOP_PROVIDERS))
        .fetch_all(self.db.reader())
        .await?;
        Ok(rows.len())
    }

    /// The `limit` providers with the highest total net fee, highest first; ties in NPI order.
    /// Reads the first entries of the ranking index, however many claims there are.
    pub async fn top_providers(&self, limit: i64) -> Result<Vec<ProviderTotal>, sqlx::Error> {
        let rows = sqlx::query(TOP_PROVIDERS)
            .bind(limit.clamp(1, MAX_TOP_PROVIDERS))
            .fetch_all(self.db.reader())
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ProviderTotal {
                    provider_npi: row.try_get(0)?,
                    total_net_fee: Money::new(row.try_get(1)?, CURRENCY),
                    claim_count: row.try_get(2)?,
                })
            })
            .collect()
    }
}

/// How the log reader builds the `claim.accepted` events of an import's claims from their rows
/// (see [`tally_bus::rows`]): give these to whatever reads the claims log.
pub static ROW_EVENTS: [RowEvents; 1] = [RowEvents {
    source: "claims",
    event_type: domain::events::CLAIM_ACCEPTED,
    version: 1,
    aggregate_type: "claim",
    sqlite: "SELECT id, provider_npi, service_date, submitted_procedure, quadrant, net_fee_minor, \
             provider_fees_minor, allowed_fees_minor, member_coinsurance_minor, \
             member_copay_minor, currency FROM claims WHERE id >= $1 AND id < $2 ORDER BY id",
    postgres: "SELECT CAST(id AS TEXT), provider_npi, \
               CAST(EXTRACT(EPOCH FROM service_date) * 1000000 AS BIGINT), submitted_procedure, \
               quadrant, net_fee_minor, provider_fees_minor, allowed_fees_minor, \
               member_coinsurance_minor, member_copay_minor, currency FROM claims \
               WHERE id >= CAST($1 AS UUID) AND id < CAST($2 AS UUID) ORDER BY id",
    event: claim_accepted_from_row,
}];

/// A `claim.accepted` event from a row of [`ROW_EVENTS`]' queries: the claim's id and the
/// event's data, the same JSON the event had when its claim was stored.
fn claim_accepted_from_row(
    row: &sqlx::any::AnyRow,
    backend: Backend,
) -> Result<(String, serde_json::Value), sqlx::Error> {
    let decode = |e: Box<dyn std::error::Error + Send + Sync>| sqlx::Error::Decode(e);
    let id: String = row.try_get(0)?;
    let service_date = match backend {
        Backend::Sqlite => {
            time::from_db(row.try_get::<&str, _>(2)?).map_err(|e| decode(Box::new(e)))?
        }
        Backend::Postgres => chrono::DateTime::from_timestamp_micros(row.try_get(2)?)
            .ok_or_else(|| decode("a service date out of range".into()))?,
    };
    let event = ClaimAccepted {
        claim_id: id.parse().map_err(|e| decode(Box::new(e)))?,
        provider_npi: row.try_get(1)?,
        service_date,
        submitted_procedure: row.try_get(3)?,
        quadrant: row.try_get(4)?,
        net_fee_minor: row.try_get(5)?,
        provider_fees_minor: row.try_get(6)?,
        allowed_fees_minor: row.try_get(7)?,
        member_coinsurance_minor: row.try_get(8)?,
        member_copay_minor: row.try_get(9)?,
        currency: tally_kernel::Currency::parse(row.try_get(10)?)
            .map_err(|e| decode(Box::new(e)))?,
    };
    Ok((id, tally_kernel::event::DomainEvent::data(&event)))
}

/// The ranking query; its `ORDER BY` is the order of the index `provider_totals_rank`.
pub const TOP_PROVIDERS: &str = "SELECT provider_npi, total_net_fee_minor, claim_count \
     FROM provider_totals ORDER BY total_net_fee_minor DESC, provider_npi LIMIT $1";

/// A batch of claims made ready to store by [`prepare_batch`]: accepted (ids and net fees) and
/// serialized, its rows and the outbox row of its events. Storing it ([`store_prepared`]) binds
/// and executes only.
pub struct PreparedBatch {
    accepted: Vec<AcceptedClaim>,
    len: usize,
    rows: Rows,
    events: outbox::Prepared,
}

impl PreparedBatch {
    /// How many claims the batch holds.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Accepts `claims` (each gets its id and net fee) and serializes everything their storing
/// writes, for the database of `db` (on PostgreSQL, for a [`BulkWriter`]); does no I/O. At most
/// [`MAX_BATCH_CLAIMS`] claims. The claims get consecutive ids, and their events are one outbox
/// row naming them (see [`ROW_EVENTS`]).
pub fn prepare_batch(
    db: &Db,
    claims: Vec<Claim>,
    meta: &EventMeta,
) -> anyhow::Result<PreparedBatch> {
    anyhow::ensure!(
        claims.len() <= MAX_BATCH_CLAIMS,
        "a batch holds at most {MAX_BATCH_CLAIMS} claims, not {}",
        claims.len()
    );
    let accepted = domain::accept(claims);
    let rows = match db.backend() {
        Backend::Postgres => Rows::bulk(accepted.iter().map(|a| (a.id, &a.claim))),
        Backend::Sqlite => {
            Rows::new(Backend::Sqlite, &accepted).context("failed to serialize the claims")?
        }
    };
    let ids: Vec<Uuid> = accepted.iter().map(|a| a.id).collect();
    let events = run_events(db, meta, &ids)?;
    Ok(PreparedBatch {
        len: accepted.len(),
        accepted,
        rows,
        events,
    })
}

/// [`prepare_batch`] for an importer, which needs none of its claims back: on PostgreSQL the
/// batch holds only the `COPY` data and the outbox row, and `claims` is left empty, its
/// capacity kept for the next chunk (a reader then fills the same memory again rather than
/// fresh pages). On SQLite, whose writes bind each claim's values, the batch takes the claims.
pub fn prepare_import_batch(
    db: &Db,
    claims: &mut Vec<Claim>,
    meta: &EventMeta,
) -> anyhow::Result<PreparedBatch> {
    if db.backend() == Backend::Sqlite {
        return prepare_batch(db, std::mem::take(claims), meta);
    }
    anyhow::ensure!(
        claims.len() <= MAX_BATCH_CLAIMS,
        "a batch holds at most {MAX_BATCH_CLAIMS} claims, not {}",
        claims.len()
    );
    let ids: Vec<Uuid> = tally_kernel::id::new_v7_run(claims.len()).collect();
    let rows = Rows::bulk(ids.iter().copied().zip(claims.iter()));
    let events = run_events(db, meta, &ids)?;
    let len = claims.len();
    claims.clear();
    Ok(PreparedBatch {
        len,
        accepted: Vec::new(),
        rows,
        events,
    })
}

/// The outbox row naming the `claim.accepted` events of the claims with `ids`, which must be
/// consecutive (see [`ROW_EVENTS`]).
fn run_events(db: &Db, meta: &EventMeta, ids: &[Uuid]) -> anyhow::Result<outbox::Prepared> {
    let consecutive = ids
        .windows(2)
        .all(|w| w[0].as_u128().checked_add(1) == Some(w[1].as_u128()));
    anyhow::ensure!(
        consecutive,
        "a batch's claims were not given consecutive ids"
    );
    let first = ids.first().copied().unwrap_or(Uuid::nil());
    outbox::prepare_publish_rows(db, SERVICE, meta, &ROW_EVENTS[0], first, ids.len())
        .context("failed to name the claims' events")
}

/// Stores a prepared batch in one transaction of its own: the claims, their providers' totals
/// and their `claim.accepted` events commit together or not at all. A transaction that fails on
/// a deadlock or a busy database is retried.
pub async fn store_prepared(db: &Db, batch: PreparedBatch) -> anyhow::Result<Vec<AcceptedClaim>> {
    let mut attempt = 1;
    loop {
        let result = async {
            let mut writer = BulkWriter::begin(db).await?;
            writer.write(&batch).await?;
            writer.commit().await
        }
        .await;
        match result {
            Ok(_) => return Ok(batch.accepted),
            Err(e) if classify(&e) == DbErrorKind::Retryable && attempt < MAX_TX_ATTEMPTS => {
                tracing::debug!(attempt, error = %e, "claims batch conflicted, retrying");
                attempt += 1;
            }
            Err(e) => return Err(e).context("failed to store a batch of claims"),
        }
    }
}

/// Accepts and stores valid claims in one transaction of its own, for importers: each claim gets
/// its id and net fee, its provider's total grows, and its `claim.accepted` event is in the
/// outbox when this returns. At most [`MAX_BATCH_CLAIMS`] claims at once; a batch is stored
/// whole or not at all. A transaction that fails on a deadlock or a busy database is retried.
pub async fn store_batch(
    db: &Db,
    claims: &[Claim],
    meta: &EventMeta,
) -> anyhow::Result<Vec<AcceptedClaim>> {
    store_prepared(db, prepare_batch(db, claims.to_vec(), meta)?).await
}

/// One write transaction storing any number of prepared batches (see [`prepare_batch`]): each
/// batch's claims and events are written as it comes, while the providers' totals are summed in
/// memory and grown once, at the commit. An importer commits every few batches through one of
/// these: a provider's row (and its place in the ranking index) is then rewritten once per
/// commit, not once per batch. Nothing of it is visible until [`BulkWriter::commit`].
///
/// On PostgreSQL the transaction is the native driver's: a batch's claims go in as one binary
/// `COPY`, its events and, at the commit, the totals as one statement of array parameters each.
/// On SQLite it holds the database's only write lock until it ends.
pub struct BulkWriter {
    db: Db,
    tx: Tx,
    /// Each provider's growth so far, by NPI number.
    totals: Totals,
    claims: usize,
}

enum Tx {
    Portable(WriteTx),
    Postgres(PgTx),
}

impl BulkWriter {
    /// Starts the transaction.
    pub async fn begin(db: &Db) -> Result<BulkWriter, sqlx::Error> {
        let tx = match db.begin_postgres().await {
            Some(tx) => Tx::Postgres(tx?),
            None => Tx::Portable(db.begin_write().await?),
        };
        Ok(BulkWriter {
            db: db.clone(),
            tx,
            totals: Totals::default(),
            claims: 0,
        })
    }

    /// Writes a batch's claims and the outbox row of their events; its totals wait for the
    /// commit.
    pub async fn write(&mut self, batch: &PreparedBatch) -> Result<(), sqlx::Error> {
        let grown = match (&mut self.tx, &batch.rows) {
            (Tx::Postgres(tx), Rows::PostgresBulk { copy, totals }) => {
                let mut sink = tx.copy_in_raw(copy::COPY_CLAIMS).await?;
                sink.send(copy::HEADER).await?;
                sink.send(copy.as_slice()).await?;
                sink.send(copy::TRAILER).await?;
                sink.finish().await?;
                batch.events.append_postgres(tx).await?;
                totals
            }
            (Tx::Portable(tx), Rows::Sqlite { claims, totals }) => {
                let created_at = time::to_db(time::now());
                insert_claims_sqlite(tx, &batch.accepted, claims, &created_at).await?;
                batch.events.append(tx).await?;
                totals
            }
            _ => return Err(another_database()),
        };
        grow(&mut self.totals, grown);
        self.claims += batch.len();
        Ok(())
    }

    /// Writes every batch of `batches`, as [`BulkWriter::write`] would one by one. On
    /// PostgreSQL their claims are the rows of one `COPY`, sent as each batch comes, and the
    /// outbox rows of their events follow it: the server then sets up one `COPY` for the whole
    /// transaction, and never waits for the next batch's `COPY` to begin while the client waits
    /// for the last one to end.
    pub async fn write_all(
        &mut self,
        mut batches: impl Stream<Item = PreparedBatch> + Unpin,
    ) -> Result<(), sqlx::Error> {
        let tx = match &mut self.tx {
            Tx::Postgres(tx) => tx,
            Tx::Portable(_) => {
                while let Some(batch) = batches.next().await {
                    self.write(&batch).await?;
                }
                return Ok(());
            }
        };
        let Some(first) = batches.next().await else {
            return Ok(());
        };
        let mut events = Vec::new();
        let mut sink = tx.copy_in_raw(copy::COPY_CLAIMS).await?;
        let sent = async {
            sink.send(copy::HEADER).await?;
            let mut batch = Some(first);
            while let Some(written) = batch {
                let Rows::PostgresBulk { copy, totals } = &written.rows else {
                    return Err(another_database());
                };
                sink.send(copy.as_slice()).await?;
                grow(&mut self.totals, totals);
                self.claims += written.len();
                events.push(written.events);
                batch = batches.next().await;
            }
            sink.send(copy::TRAILER).await?;
            Ok(())
        }
        .await;
        if let Err(e) = sent {
            // Ends the `COPY` with nothing of it stored, the connection ready for the rollback.
            sink.abort(e.to_string()).await.ok();
            return Err(e);
        }
        sink.finish().await?;
        for batch_events in &events {
            batch_events.append_postgres(tx).await?;
        }
        Ok(())
    }

    /// How many claims the batches written so far hold.
    pub fn claims(&self) -> usize {
        self.claims
    }

    /// Moves the import of the file with digest `file_sha256` (see [`imports`]) from `rows_from`
    /// rows done to `rows_to`, adding the claims written so far to its accepted ones, in this
    /// transaction. `false`, with nothing changed, when its record no longer says `rows_from`
    /// (another import of the file moved it) or it is finished.
    pub async fn advance_import(
        &mut self,
        file_sha256: &str,
        rows_from: u64,
        rows_to: u64,
    ) -> Result<bool, sqlx::Error> {
        let now = time::to_db(time::now());
        let (to, claims, from) = (
            imports::signed(rows_to)?,
            imports::signed(self.claims as u64)?,
            imports::signed(rows_from)?,
        );
        // The same statement and values for either driver.
        fn advance<'q, DB: sqlx::Database>(
            values: (i64, i64, &'q str, &'q str, i64),
        ) -> sqlx::query::Query<'q, DB, DB::Arguments<'q>>
        where
            i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
            &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        {
            let (to, claims, now, file_sha256, from) = values;
            sqlx::query(imports::ADVANCE)
                .bind(to)
                .bind(claims)
                .bind(now)
                .bind(file_sha256)
                .bind(from)
        }
        let values = (to, claims, now.as_str(), file_sha256, from);
        let moved = match &mut self.tx {
            Tx::Postgres(tx) => advance(values).execute(&mut **tx).await?.rows_affected(),
            Tx::Portable(tx) => advance(values).execute(&mut **tx).await?.rows_affected(),
        };
        Ok(moved == 1)
    }

    /// Grows the providers' totals (in NPI order, so that two writers never deadlock) and
    /// commits; returns how many claims were stored.
    pub async fn commit(self) -> Result<usize, sqlx::Error> {
        let updated_at = time::to_db(time::now());
        let totals = total_rows(&self.totals);
        match self.tx {
            Tx::Postgres(mut tx) => {
                if !totals.is_empty() {
                    let npis: Vec<&str> = totals.iter().map(|t| t.0.as_str()).collect();
                    let fees: Vec<i64> = totals.iter().map(|t| t.1).collect();
                    let counts: Vec<i64> = totals.iter().map(|t| t.2).collect();
                    sqlx::query(&UPSERT_TOTALS_ARRAYS)
                        .bind(npis)
                        .bind(fees)
                        .bind(counts)
                        .bind(updated_at)
                        .execute(&mut *tx)
                        .await?;
                }
                self.db.commit_postgres(tx).await?;
            }
            Tx::Portable(mut tx) => {
                upsert_totals_sqlite(&mut tx, &totals, &updated_at).await?;
                self.db.commit(tx).await?;
            }
        }
        Ok(self.claims)
    }

    /// Rolls back: nothing written through this writer is stored.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self.tx {
            Tx::Postgres(tx) => tx.rollback().await,
            Tx::Portable(tx) => tx.rollback().await,
        }
    }
}

/// Adds a batch's growth of its providers' totals to `totals`.
fn grow(totals: &mut Totals, grown: &Totals) {
    for (npi, delta) in grown {
        let total = totals.entry(*npi).or_default();
        total.net_fee_minor += delta.net_fee_minor;
        total.claim_count += delta.claim_count;
    }
}

fn another_database() -> sqlx::Error {
    sqlx::Error::Protocol("a batch was prepared for another database".into())
}

/// The `claim.accepted` events of `claims`, serialized for the outbox, packed: a batch's events
/// share their type, time and cause, so up to [`tally_bus::PACKED_EVENTS`] of them take one row.
fn prepare_events(
    db: &Db,
    claims: &[AcceptedClaim],
    meta: &EventMeta,
) -> Result<outbox::Prepared, sqlx::Error> {
    let events: Vec<_> = claims.iter().map(AcceptedClaim::event).collect();
    outbox::prepare_publish_packed(db, SERVICE, meta, &events)
}

/// Writes the claims, their events and their providers' totals inside `tx`, the totals last, so
/// that their rows stay locked only until the commit that follows.
async fn write(
    tx: &mut WriteTx,
    accepted: &[AcceptedClaim],
    rows: &Rows,
    events: &outbox::Prepared,
) -> Result<(), sqlx::Error> {
    let now = time::to_db(time::now());
    match rows {
        Rows::Sqlite { claims, totals } => {
            insert_claims_sqlite(tx, accepted, claims, &now).await?;
            events.append(tx).await?;
            upsert_totals_sqlite(tx, &total_rows(totals), &now).await
        }
        Rows::Postgres { claims, totals } => {
            for json in claims {
                sqlx::query(&INSERT_CLAIMS_JSON)
                    .bind(json.as_str())
                    .bind(CURRENCY.code())
                    .bind(now.as_str())
                    .execute(&mut **tx)
                    .await?;
            }
            events.append(tx).await?;
            for json in totals {
                sqlx::query(&UPSERT_TOTALS_JSON)
                    .bind(json.as_str())
                    .bind(now.as_str())
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(())
        }
        Rows::PostgresBulk { .. } => Err(sqlx::Error::Protocol(
            "a batch prepared for bulk writes is stored by a BulkWriter".into(),
        )),
    }
}

/// `(provider_npi, net_fee_minor, claim_count)` of each provider in `totals`, in NPI order (see
/// [`domain::in_npi_order`]): the rows of a totals upsert.
fn total_rows(totals: &Totals) -> Vec<(String, i64, i64)> {
    domain::in_npi_order(totals)
        .into_iter()
        .map(|(npi, d)| (npi, d.net_fee_minor, d.claim_count))
        .collect()
}

/// A batch's claims and providers' totals, serialized for one backend.
enum Rows {
    /// The claims' columns that are not text already (parallel to the accepted claims), and the
    /// totals by NPI number (see [`domain::provider_totals`]).
    Sqlite {
        claims: Vec<SqliteClaim>,
        totals: Totals,
    },
    /// PostgreSQL inside a portable transaction (a request): JSON arrays of rows, one per
    /// statement, the totals in NPI order.
    Postgres {
        claims: Vec<String>,
        totals: Vec<String>,
    },
    /// PostgreSQL through the native driver (a [`BulkWriter`]): the claims as binary `COPY`
    /// data, the totals by NPI number (see [`domain::provider_totals`]).
    PostgresBulk { copy: Vec<u8>, totals: Totals },
}

struct SqliteClaim {
    id: String,
    service_date: String,
}

/// Most rows one statement writes on PostgreSQL: a batch's claims, or its providers' totals,
/// go in one statement each.
const JSON_ROWS_PER_STATEMENT: usize = MAX_BATCH_CLAIMS;

impl Rows {
    fn bulk<'a>(claims: impl ExactSizeIterator<Item = (Uuid, &'a Claim)> + Clone) -> Rows {
        Rows::PostgresBulk {
            copy: copy::encode(claims.clone(), time::now()),
            totals: domain::provider_totals(claims.map(|(_, claim)| claim)),
        }
    }

    fn new(backend: Backend, accepted: &[AcceptedClaim]) -> Result<Rows, sqlx::Error> {
        Ok(match backend {
            Backend::Sqlite => Rows::Sqlite {
                claims: accepted
                    .iter()
                    .map(|a| SqliteClaim {
                        id: a.id.to_string(),
                        service_date: time::to_db(a.claim.service_date),
                    })
                    .collect(),
                totals: domain::provider_totals(accepted.iter().map(|a| &a.claim)),
            },
            Backend::Postgres => {
                let mut claims = Vec::new();
                for chunk in accepted.chunks(JSON_ROWS_PER_STATEMENT) {
                    let rows: Vec<_> = chunk
                        .iter()
                        .map(|a| {
                            let c = &a.claim;
                            (
                                a.id.hyphenated(),
                                time::to_db(c.service_date),
                                c.submitted_procedure.as_str(),
                                c.quadrant.as_deref(),
                                c.plan_group_number.as_str(),
                                c.subscriber_number.as_str(),
                                c.provider_npi.as_str(),
                                c.provider_fees.amount_minor,
                                c.allowed_fees.amount_minor,
                                c.member_coinsurance.amount_minor,
                                c.member_copay.amount_minor,
                                a.net_fee.amount_minor,
                            )
                        })
                        .collect();
                    claims.push(serde_json::to_string(&rows).map_err(encode_error)?);
                }
                let totals =
                    total_rows(&domain::provider_totals(accepted.iter().map(|a| &a.claim)))
                        .chunks(JSON_ROWS_PER_STATEMENT)
                        .map(|chunk| serde_json::to_string(chunk).map_err(encode_error))
                        .collect::<Result<_, _>>()?;
                Rows::Postgres { claims, totals }
            }
        })
    }
}

fn encode_error(e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Encode(Box::new(e))
}

/// The rows of a JSON array bound as `$1` (one JSON array per row) as a table of `r`, on
/// PostgreSQL.
const JSON_ROWS: &str = "jsonb_array_elements(CAST($1 AS JSONB)) AS r";

/// PostgreSQL: `INSERT INTO claims (...) SELECT ...` over a JSON array of rows `[id,
/// service_date, submitted_procedure, quadrant, plan_group_number, subscriber_number,
/// provider_npi, provider_fees_minor, allowed_fees_minor, member_coinsurance_minor,
/// member_copay_minor, net_fee_minor]` in `$1`; the currency is `$2` and the creation time `$3`.
static INSERT_CLAIMS_JSON: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO claims (id, service_date, submitted_procedure, quadrant, plan_group_number, \
         subscriber_number, provider_npi, provider_fees_minor, allowed_fees_minor, \
         member_coinsurance_minor, member_copay_minor, net_fee_minor, currency, created_at) \
         SELECT CAST(r ->> 0 AS UUID), CAST(r ->> 1 AS TIMESTAMPTZ), r ->> 2, r ->> 3, r ->> 4, \
         r ->> 5, r ->> 6, CAST(r ->> 7 AS BIGINT), CAST(r ->> 8 AS BIGINT), \
         CAST(r ->> 9 AS BIGINT), CAST(r ->> 10 AS BIGINT), CAST(r ->> 11 AS BIGINT), $2, \
         CAST($3 AS TIMESTAMPTZ) FROM {JSON_ROWS}"
    )
});

/// PostgreSQL: the upsert of providers' totals over a JSON array of rows `[provider_npi,
/// net_fee_minor, claim_count]` in `$1`, in their order, at the time `$2`.
static UPSERT_TOTALS_JSON: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO provider_totals (provider_npi, total_net_fee_minor, claim_count, updated_at) \
         SELECT r ->> 0, CAST(r ->> 1 AS BIGINT), CAST(r ->> 2 AS BIGINT), $2 FROM {JSON_ROWS} \
         {UPSERT_TOTALS}"
    )
});

/// PostgreSQL, native driver: the upsert of providers' totals over three arrays (NPIs, net fees,
/// claim counts, in NPI order) at the time `$4`.
static UPSERT_TOTALS_ARRAYS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO provider_totals (provider_npi, total_net_fee_minor, claim_count, updated_at) \
         SELECT t.npi, t.fee, t.n, $4 FROM unnest(CAST($1 AS TEXT[]), CAST($2 AS BIGINT[]), \
         CAST($3 AS BIGINT[])) AS t(npi, fee, n) {UPSERT_TOTALS}"
    )
});

/// How a provider's total grows by the row being inserted when it exists already.
const UPSERT_TOTALS: &str = "ON CONFLICT (provider_npi) DO UPDATE SET \
     total_net_fee_minor = provider_totals.total_net_fee_minor + excluded.total_net_fee_minor, \
     claim_count = provider_totals.claim_count + excluded.claim_count, \
     updated_at = excluded.updated_at";

/// SQLite: the multi-row `INSERT` of `rows` claims (see [`tally_db::sqlite_values`]).
fn insert_claims_sqlite_sql(rows: usize) -> String {
    format!(
        "INSERT INTO claims (id, service_date, submitted_procedure, quadrant, plan_group_number, \
         subscriber_number, provider_npi, provider_fees_minor, allowed_fees_minor, \
         member_coinsurance_minor, member_copay_minor, net_fee_minor, currency, created_at) \
         VALUES {}",
        tally_db::sqlite_values(rows, 14)
    )
}

/// SQLite: the claims in multi-row statements; `rows` holds their serialized id and service
/// date, in the order of `accepted`.
async fn insert_claims_sqlite(
    tx: &mut WriteTx,
    accepted: &[AcceptedClaim],
    rows: &[SqliteClaim],
    created_at: &str,
) -> Result<(), sqlx::Error> {
    static FULL: LazyLock<(usize, String)> = LazyLock::new(|| {
        let rows = tally_db::sqlite_rows_per_statement(14);
        (rows, insert_claims_sqlite_sql(rows))
    });
    let mut done = 0;
    for size in tally_db::sqlite_statement_sizes(accepted.len(), 14) {
        let sql = tally_db::sqlite_statement(size, &FULL, insert_claims_sqlite_sql);
        let mut query = sqlx::query(&sql);
        for (a, row) in accepted[done..done + size]
            .iter()
            .zip(&rows[done..done + size])
        {
            let c = &a.claim;
            query = query
                .bind(row.id.as_str())
                .bind(row.service_date.as_str())
                .bind(c.submitted_procedure.as_str())
                .bind(c.quadrant.as_deref())
                .bind(c.plan_group_number.as_str())
                .bind(c.subscriber_number.as_str())
                .bind(c.provider_npi.as_str())
                .bind(c.provider_fees.amount_minor)
                .bind(c.allowed_fees.amount_minor)
                .bind(c.member_coinsurance.amount_minor)
                .bind(c.member_copay.amount_minor)
                .bind(a.net_fee.amount_minor)
                .bind(CURRENCY.code())
                .bind(created_at);
        }
        query.execute(&mut **tx).await?;
        done += size;
    }
    Ok(())
}

/// SQLite: the multi-row upsert of `rows` providers' totals.
fn upsert_totals_sqlite_sql(rows: usize) -> String {
    format!(
        "INSERT INTO provider_totals (provider_npi, total_net_fee_minor, claim_count, updated_at) \
         VALUES {} {UPSERT_TOTALS}",
        tally_db::sqlite_values(rows, 4)
    )
}

/// SQLite: the providers' totals, in the order given, in multi-row statements.
async fn upsert_totals_sqlite(
    tx: &mut WriteTx,
    totals: &[(String, i64, i64)],
    created_at: &str,
) -> Result<(), sqlx::Error> {
    static FULL: LazyLock<(usize, String)> = LazyLock::new(|| {
        let rows = tally_db::sqlite_rows_per_statement(4);
        (rows, upsert_totals_sqlite_sql(rows))
    });
    let mut rest = totals;
    for size in tally_db::sqlite_statement_sizes(totals.len(), 4) {
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        let sql = tally_db::sqlite_statement(size, &FULL, upsert_totals_sqlite_sql);
        let mut query = sqlx::query(&sql);
        for (npi, net_fee_minor, claim_count) in chunk {
            query = query
                .bind(npi.as_str())
                .bind(*net_fee_minor)
                .bind(*claim_count)
                .bind(created_at);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}
