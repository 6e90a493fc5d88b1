//! The billing service: bills of appointments and their payments (cash, card through a gateway,
//! or the patient's wallet through a saga with the wallets service), refunds, the finance record
//! of each closed consultation, and provider payables from accepted claims.
//!
//! Everything billing does in answer to another service's event happens in a consumer, exactly
//! once: the bus records the event in the inbox in the transaction of the effect, and unique
//! keys (one bill per appointment, one payable per claim) are a second line of defence.

pub mod consumers;
pub mod domain;
pub mod gateway;
pub mod routes;
pub mod store;

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use tally_bus::{Consumer, Handler, HandlerError};
use tally_db::{Db, ServiceSchema, WriteTx};
use tally_http::{AmountOutput, ApiQuery, Problem};
use tally_kernel::{Currency, Envelope, Money};
use utoipa::{IntoParams, OpenApi, ToSchema};

pub const SERVICE: &str = "billing";
pub const PAYABLES_CONSUMER: &str = "billing.payables";
pub const CLAIM_ACCEPTED: &str = "claim.accepted";

pub static SCHEMA: std::sync::LazyLock<ServiceSchema> =
    std::sync::LazyLock::new(|| ServiceSchema {
        name: SERVICE,
        sqlite: sqlx::migrate!("migrations/sqlite"),
        postgres: sqlx::migrate!("migrations/postgres"),
    });

pub const PUBLISHES: &[&str] = &[
    domain::BILL_GENERATED,
    domain::BILL_ADJUSTED,
    domain::BILL_PAID,
    domain::BILL_VOIDED,
    domain::PAYMENT_COMPLETED,
    domain::PAYMENT_FAILED,
    domain::PAYMENT_REFUNDED,
    domain::PAYMENT_REFUND_FAILED,
    domain::WALLET_DEBIT_REQUESTED,
    domain::WALLET_CREDIT_REQUESTED,
];

pub use consumers::{bills_consumer, wallet_answers_consumer};
pub use gateway::{CardGateway, TestGateway};

/// The billing service as the HTTP layer sees it.
#[derive(Clone)]
pub struct Billing {
    db: Db,
    gateway: Arc<dyn CardGateway>,
}

impl Billing {
    pub fn new(db: Db, gateway: Arc<dyn CardGateway>) -> Self {
        Self { db, gateway }
    }

    /// Every consumer billing runs.
    pub fn consumers(&self) -> Vec<Consumer> {
        vec![
            payables_consumer(self.db.clone()),
            bills_consumer(self.db.clone(), self.gateway.clone()),
            wallet_answers_consumer(self.db.clone(), self.gateway.clone()),
        ]
    }
}

pub fn payables_consumer(db: Db) -> Consumer {
    Consumer {
        name: PAYABLES_CONSUMER,
        topics: &[CLAIM_ACCEPTED],
        db,
        handler: Arc::new(Payables),
    }
}

/// What a payable needs of `claim.accepted` (version 1); the other fields are ignored.
#[derive(Debug, Deserialize)]
struct ClaimAccepted {
    claim_id: String,
    provider_npi: String,
    net_fee_minor: i64,
    currency: String,
}

struct Payables;

impl Payables {
    async fn record(&self, tx: &mut WriteTx, event: &Envelope) -> Result<(), HandlerError> {
        let permanent = |e: String| HandlerError::Permanent(anyhow::anyhow!(e));
        if event.version != 1 {
            return Err(permanent(format!(
                "claim.accepted version {} is not known to billing",
                event.version
            )));
        }
        let claim: ClaimAccepted = serde_json::from_value(event.data.clone())
            .map_err(|e| permanent(format!("claim.accepted data does not parse: {e}")))?;
        Currency::parse(&claim.currency).map_err(|e| permanent(e.to_string()))?;
        sqlx::query(
            "INSERT INTO provider_payables (id, claim_id, provider_npi, amount_minor, currency, \
             status, source_event_id, created_at) VALUES ($1, $2, $3, $4, $5, 'open', $6, $7) \
             ON CONFLICT (claim_id) DO NOTHING",
        )
        .bind(tally_kernel::id::new_v7().to_string())
        .bind(&claim.claim_id)
        .bind(&claim.provider_npi)
        .bind(claim.net_fee_minor)
        .bind(&claim.currency)
        .bind(event.id.to_string())
        .bind(tally_kernel::time::to_db(event.occurred_at))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

impl Handler for Payables {
    fn handle<'a>(
        &'a self,
        _db: &'a Db,
        tx: &'a mut WriteTx,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(self.record(tx, event))
    }
}

/// Most payables returned at once.
pub const MAX_PAGE: i64 = 500;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PayablesQuery {
    /// Only this provider's payables.
    npi: Option<String>,
    /// 1 to 500 (default 100).
    limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PayableView {
    id: String,
    claim_id: String,
    provider_npi: String,
    amount: AmountOutput,
    #[schema(value_type = String, example = "USD")]
    currency: Currency,
    status: String,
    created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PayablesPage {
    items: Vec<PayableView>,
}

pub fn router(billing: Billing) -> Router {
    let bills = routes::Bills {
        store: store::BillStore::new(billing.db.clone()),
        gateway: billing.gateway,
    };
    Router::new()
        .route("/billing/payables", get(payables))
        .with_state(billing.db)
        .merge(routes::bills_router(bills))
}

#[derive(OpenApi)]
#[openapi(
    paths(
        payables,
        routes::get_bill,
        routes::list_bills,
        routes::list_payments,
        routes::pay,
        routes::list_refunds,
        routes::refund
    ),
    tags((name = "billing", description = "Bills, payments and provider payables"))
)]
pub struct BillingApi;

/// Provider payables recorded from accepted claims, oldest first.
#[utoipa::path(get, path = "/billing/payables", tag = "billing", params(PayablesQuery),
    responses((status = 200, body = PayablesPage), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn payables(
    State(db): State<Db>,
    ApiQuery(query): ApiQuery<PayablesQuery>,
) -> Result<Json<PayablesPage>, Problem> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Problem::invalid_field(
            "limit",
            format!("must be between 1 and {MAX_PAGE}"),
        ));
    }
    let rows = sqlx::query(
        "SELECT id, claim_id, provider_npi, amount_minor, currency, status, created_at \
         FROM provider_payables WHERE ($1 = '' OR provider_npi = $1) \
         ORDER BY created_at, id LIMIT $2",
    )
    .bind(query.npi.unwrap_or_default())
    .bind(limit)
    .fetch_all(db.reader())
    .await?;
    let items = rows
        .iter()
        .map(|r| {
            let currency: String = r.try_get(4)?;
            let currency = Currency::parse(&currency).map_err(anyhow::Error::from)?;
            Ok(PayableView {
                id: r.try_get(0)?,
                claim_id: r.try_get(1)?,
                provider_npi: r.try_get(2)?,
                amount: AmountOutput(Money::new(r.try_get(3)?, currency)),
                currency,
                status: r.try_get(5)?,
                created_at: r.try_get(6)?,
            })
        })
        .collect::<Result<Vec<_>, Problem>>()?;
    Ok(Json(PayablesPage { items }))
}
