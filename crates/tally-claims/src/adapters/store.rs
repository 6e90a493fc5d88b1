//! The claims store: inserts accepted claims, grows their providers' totals and appends their
//! `claim.accepted` events, all in one transaction; reads the providers' ranking.
//!
//! Writing is split in two: [`prepare_batch`] does everything that needs no database (ids, net
//! fees, the totals per provider, every row and event serialized), so that an importer can
//! prepare the next batch on its reader thread while the database writes this one; the
//! transaction then only binds and executes a few statements per table. On SQLite those are
//! multi-row `INSERT`s with anonymous parameters (see [`tally_db::sqlite_values`]); on
//! PostgreSQL each table gets one statement whose single parameter is a JSON array of rows.

use std::sync::LazyLock;

use anyhow::Context as _;
use sqlx::Row as _;
use tally_bus::outbox;
use tally_db::{classify, Backend, Db, DbErrorKind, ServiceSchema, WriteTx};
use tally_kernel::time;
use tally_kernel::{EventMeta, Money};

use crate::domain::{self, AcceptedClaim, Claim, CURRENCY};
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

/// The ranking query; its `ORDER BY` is the order of the index `provider_totals_rank`.
pub const TOP_PROVIDERS: &str = "SELECT provider_npi, total_net_fee_minor, claim_count \
     FROM provider_totals ORDER BY total_net_fee_minor DESC, provider_npi LIMIT $1";

/// A batch of claims made ready to store by [`prepare_batch`]: accepted (ids and net fees) and
/// serialized, rows and events. Storing it ([`store_prepared`]) binds and executes only.
pub struct PreparedBatch {
    accepted: Vec<AcceptedClaim>,
    rows: Rows,
    events: outbox::Prepared,
}

impl PreparedBatch {
    /// How many claims the batch holds.
    pub fn len(&self) -> usize {
        self.accepted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.accepted.is_empty()
    }
}

/// Accepts `claims` (each gets its id and net fee) and serializes everything their storing
/// writes, for the database of `db`; does no I/O. At most [`MAX_BATCH_CLAIMS`] claims.
pub fn prepare_batch(db: &Db, claims: &[Claim], meta: &EventMeta) -> anyhow::Result<PreparedBatch> {
    anyhow::ensure!(
        claims.len() <= MAX_BATCH_CLAIMS,
        "a batch holds at most {MAX_BATCH_CLAIMS} claims, not {}",
        claims.len()
    );
    let accepted = domain::accept(claims);
    let rows = Rows::new(db.backend(), &accepted).context("failed to serialize the claims")?;
    let events =
        prepare_events(db, &accepted, meta).context("failed to serialize the claims' events")?;
    Ok(PreparedBatch {
        accepted,
        rows,
        events,
    })
}

/// Stores a prepared batch in one transaction of its own: the claims, their providers' totals
/// and their `claim.accepted` events commit together or not at all. A transaction that fails on
/// a deadlock or a busy database is retried.
pub async fn store_prepared(db: &Db, batch: PreparedBatch) -> anyhow::Result<Vec<AcceptedClaim>> {
    store_prepared_after(db, batch, std::future::ready(true)).await
}

/// [`store_prepared`], committing only in its turn: the claims and events are written first,
/// then `turn` is awaited, and only if it gives `true` (the batch before this one committed) are
/// the providers' totals grown and the transaction committed; with `false` the transaction
/// rolls back and nothing of the batch is stored. An importer on PostgreSQL writes the next
/// batch this way while the previous one finishes, and its batches still commit in file order,
/// each only after the ones before it. (On SQLite the only writer connection is held while
/// `turn` is pending, so there it should be decided already.)
pub async fn store_prepared_after(
    db: &Db,
    batch: PreparedBatch,
    turn: impl std::future::Future<Output = bool>,
) -> anyhow::Result<Vec<AcceptedClaim>> {
    let mut turn = Some(turn);
    let mut attempt = 1;
    loop {
        let result = async {
            let mut tx = db.begin_write().await?;
            write_claims_and_events(&mut tx, &batch.accepted, &batch.rows, &batch.events).await?;
            if let Some(turn) = turn.take() {
                if !turn.await {
                    tx.rollback().await?;
                    return Ok(false);
                }
            }
            write_totals(&mut tx, &batch.rows).await?;
            db.commit(tx).await?;
            Ok(true)
        }
        .await;
        match result {
            Ok(true) => return Ok(batch.accepted),
            Ok(false) => anyhow::bail!("a batch before this one was not stored"),
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
    store_prepared(db, prepare_batch(db, claims, meta)?).await
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

/// Writes the claims, their events and their providers' totals inside `tx`.
async fn write(
    tx: &mut WriteTx,
    accepted: &[AcceptedClaim],
    rows: &Rows,
    events: &outbox::Prepared,
) -> Result<(), sqlx::Error> {
    write_claims_and_events(tx, accepted, rows, events).await?;
    write_totals(tx, rows).await
}

/// Inserts the claims and appends their events inside `tx`.
async fn write_claims_and_events(
    tx: &mut WriteTx,
    accepted: &[AcceptedClaim],
    rows: &Rows,
    events: &outbox::Prepared,
) -> Result<(), sqlx::Error> {
    let created_at = time::to_db(time::now());
    match rows {
        Rows::Sqlite { claims, .. } => {
            insert_claims_sqlite(tx, accepted, claims, &created_at).await?;
        }
        Rows::Postgres { claims, .. } => {
            for json in claims {
                sqlx::query(&INSERT_CLAIMS_JSON)
                    .bind(json.as_str())
                    .bind(CURRENCY.code())
                    .bind(created_at.as_str())
                    .execute(&mut **tx)
                    .await?;
            }
        }
    }
    events.append(tx).await
}

/// Grows the providers' totals inside `tx`, last, so that their rows stay locked only until the
/// commit that follows.
async fn write_totals(tx: &mut WriteTx, rows: &Rows) -> Result<(), sqlx::Error> {
    let updated_at = time::to_db(time::now());
    match rows {
        Rows::Sqlite { totals, .. } => upsert_totals_sqlite(tx, totals, &updated_at).await,
        Rows::Postgres { totals, .. } => {
            for json in totals {
                sqlx::query(&UPSERT_TOTALS_JSON)
                    .bind(json.as_str())
                    .bind(updated_at.as_str())
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(())
        }
    }
}

/// A batch's claims and providers' totals, serialized for one backend. The totals are in NPI
/// order, so that two transactions lock provider rows in the same order.
enum Rows {
    /// The claims' columns that are not text already (parallel to the accepted claims), and the
    /// totals as `(provider_npi, net_fee_minor, claim_count)`.
    Sqlite {
        claims: Vec<SqliteClaim>,
        totals: Vec<(String, i64, i64)>,
    },
    /// JSON arrays of rows, one per statement.
    Postgres {
        claims: Vec<String>,
        totals: Vec<String>,
    },
}

struct SqliteClaim {
    id: String,
    service_date: String,
}

/// Most rows one statement writes on PostgreSQL: a batch's claims, or its providers' totals,
/// go in one statement each.
const JSON_ROWS_PER_STATEMENT: usize = MAX_BATCH_CLAIMS;

impl Rows {
    fn new(backend: Backend, accepted: &[AcceptedClaim]) -> Result<Rows, sqlx::Error> {
        let totals = domain::provider_totals(accepted);
        Ok(match backend {
            Backend::Sqlite => Rows::Sqlite {
                claims: accepted
                    .iter()
                    .map(|a| SqliteClaim {
                        id: a.id.to_string(),
                        service_date: time::to_db(a.claim.service_date),
                    })
                    .collect(),
                totals: totals
                    .into_iter()
                    .map(|(npi, d)| (npi.as_str().to_owned(), d.net_fee_minor, d.claim_count))
                    .collect(),
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
                let totals: Vec<_> = totals
                    .into_iter()
                    .map(|(npi, d)| (npi.as_str(), d.net_fee_minor, d.claim_count))
                    .collect();
                let totals = totals
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
         SELECT r ->> 0, r ->> 1, r ->> 2, r ->> 3, r ->> 4, r ->> 5, r ->> 6, \
         CAST(r ->> 7 AS BIGINT), CAST(r ->> 8 AS BIGINT), CAST(r ->> 9 AS BIGINT), \
         CAST(r ->> 10 AS BIGINT), CAST(r ->> 11 AS BIGINT), $2, $3 FROM {JSON_ROWS}"
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
        let partial;
        let sql: &str = if size == FULL.0 {
            &FULL.1
        } else {
            partial = insert_claims_sqlite_sql(size);
            &partial
        };
        let mut query = sqlx::query(sql);
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
        let partial;
        let sql: &str = if size == FULL.0 {
            &FULL.1
        } else {
            partial = upsert_totals_sqlite_sql(size);
            &partial
        };
        let mut query = sqlx::query(sql);
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
