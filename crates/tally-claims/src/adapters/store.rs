//! The claims store: inserts accepted claims, grows their providers' totals and appends their
//! `claim.accepted` events, all in one transaction; reads the providers' ranking.

use anyhow::Context as _;
use sqlx::Row as _;
use tally_bus::outbox;
use tally_db::{classify, Db, DbErrorKind, ServiceSchema, WriteTx};
use tally_kernel::time;
use tally_kernel::{EventMeta, Money};

use crate::domain::{self, AcceptedClaim, Claim, CURRENCY};
use crate::SERVICE;

pub static SCHEMA: std::sync::LazyLock<ServiceSchema> =
    std::sync::LazyLock::new(|| ServiceSchema {
        name: SERVICE,
        sqlite: sqlx::migrate!("migrations/sqlite"),
        postgres: sqlx::migrate!("migrations/postgres"),
    });

/// Most claims stored in one transaction (one request, or one batch of an import).
pub const MAX_BATCH_CLAIMS: usize = 10_000;

/// Most providers one ranking lists.
pub const MAX_TOP_PROVIDERS: i64 = 100;

/// `INSERT INTO claims (...) VALUES ($1, ..., $14), ($15, ...)` for `rows` claims.
fn insert_claims_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let params: Vec<String> = (1..=14).map(|c| format!("${}", r * 14 + c)).collect();
            format!("({})", params.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO claims (id, service_date, submitted_procedure, quadrant, plan_group_number, \
         subscriber_number, provider_npi, provider_fees_minor, allowed_fees_minor, \
         member_coinsurance_minor, member_copay_minor, net_fee_minor, currency, created_at) \
         VALUES {}",
        values.join(", ")
    )
}

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
        let now = time::now();
        let created_at = time::to_db(now);
        // Claims have 14 columns; the statement for a full chunk is made once per batch and
        // prepared once per connection.
        let rows_per_statement = self.db.rows_per_statement(14);
        let full = insert_claims_sql(rows_per_statement);
        for chunk in claims.chunks(rows_per_statement) {
            let partial;
            let sql: &str = if chunk.len() == rows_per_statement {
                &full
            } else {
                partial = insert_claims_sql(chunk.len());
                &partial
            };
            let mut query = sqlx::query(sql);
            for accepted in chunk {
                let c = &accepted.claim;
                query = query
                    .bind(accepted.id.to_string())
                    .bind(time::to_db(c.service_date))
                    .bind(c.submitted_procedure.as_str())
                    .bind(c.quadrant.as_deref())
                    .bind(c.plan_group_number.as_str())
                    .bind(c.subscriber_number.as_str())
                    .bind(c.provider_npi.as_str())
                    .bind(c.provider_fees.amount_minor)
                    .bind(c.allowed_fees.amount_minor)
                    .bind(c.member_coinsurance.amount_minor)
                    .bind(c.member_copay.amount_minor)
                    .bind(accepted.net_fee.amount_minor)
                    .bind(CURRENCY.code())
                    .bind(&created_at);
            }
            query.execute(&mut **tx).await?;
        }
        // One multi-row upsert per chunk of providers, in NPI order (so that two transactions
        // lock provider rows in the same order).
        let totals: Vec<_> = domain::provider_totals(claims).into_iter().collect();
        for chunk in totals.chunks(self.db.rows_per_statement(4)) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| {
                    format!(
                        "(${}, ${}, ${}, ${})",
                        i * 4 + 1,
                        i * 4 + 2,
                        i * 4 + 3,
                        i * 4 + 4
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO provider_totals (provider_npi, total_net_fee_minor, claim_count, \
                 updated_at) VALUES {} ON CONFLICT (provider_npi) DO UPDATE SET \
                 total_net_fee_minor = provider_totals.total_net_fee_minor \
                 + excluded.total_net_fee_minor, \
                 claim_count = provider_totals.claim_count + excluded.claim_count, \
                 updated_at = excluded.updated_at",
                rows.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for (npi, delta) in chunk {
                query = query
                    .bind(npi.as_str())
                    .bind(delta.net_fee_minor)
                    .bind(delta.claim_count)
                    .bind(&created_at);
            }
            query.execute(&mut **tx).await?;
        }
        let events: Vec<_> = claims.iter().map(AcceptedClaim::event).collect();
        outbox::publish(&self.db, tx, SERVICE, meta, &events).await
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

/// Accepts and stores valid claims in one transaction of its own, for importers: each claim gets
/// its id and net fee, its provider's total grows, and its `claim.accepted` event is in the
/// outbox when this returns. At most [`MAX_BATCH_CLAIMS`] claims at once; a batch is stored
/// whole or not at all. A transaction that fails on a deadlock or a busy database is retried.
pub async fn store_batch(
    db: &Db,
    claims: &[Claim],
    meta: &EventMeta,
) -> anyhow::Result<Vec<AcceptedClaim>> {
    anyhow::ensure!(
        claims.len() <= MAX_BATCH_CLAIMS,
        "a batch holds at most {MAX_BATCH_CLAIMS} claims, not {}",
        claims.len()
    );
    let store = Store::new(db.clone());
    let accepted = domain::accept(claims);
    let mut attempt = 1;
    loop {
        let result = async {
            let mut tx = db.begin_write().await?;
            store.insert(&mut tx, &accepted, meta).await?;
            db.commit(tx).await
        }
        .await;
        match result {
            Ok(()) => return Ok(accepted),
            Err(e) if classify(&e) == DbErrorKind::Retryable && attempt < MAX_TX_ATTEMPTS => {
                tracing::debug!(attempt, error = %e, "claims batch conflicted, retrying");
                attempt += 1;
            }
            Err(e) => return Err(e).context("failed to store a batch of claims"),
        }
    }
}
