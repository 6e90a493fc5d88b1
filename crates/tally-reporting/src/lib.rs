//! The reporting service: statistics built only from other services' events.
//!
//! Its consumer applies each event to counters in its own database, exactly once (the bus
//! records the event in the inbox in the same transaction). It never reads another service's
//! tables, so its figures are only as fresh as the events it has applied.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use tally_bus::{Consumer, Handler, HandlerError};
use tally_db::{Db, ServiceSchema, WriteTx};
use tally_http::{AmountOutput, Problem};
use tally_kernel::{Currency, Envelope, Money};
use utoipa::{OpenApi, ToSchema};

pub const SERVICE: &str = "reporting";
pub const STATISTICS_CONSUMER: &str = "reporting.statistics";

pub static SCHEMA: std::sync::LazyLock<ServiceSchema> =
    std::sync::LazyLock::new(|| ServiceSchema {
        name: SERVICE,
        sqlite: sqlx::migrate!("migrations/sqlite"),
        postgres: sqlx::migrate!("migrations/postgres"),
    });

/// The topics the statistics are built from.
pub const CONSUMES: &[&str] = &[
    "client.created",
    "client.removed",
    "wallet.opened",
    "funds.deposited",
    "funds.withdrawn",
    "funds.transferred",
    "hold.placed",
    "hold.captured",
    "hold.released",
];

/// Counter name for every applied event; with no currency.
const EVENTS: &str = "events";

pub fn statistics_consumer(db: Db) -> Consumer {
    Consumer {
        name: STATISTICS_CONSUMER,
        topics: CONSUMES,
        db,
        handler: Arc::new(Statistics),
    }
}

struct Statistics;

/// The money fields the statistics read; other fields of the event are ignored.
#[derive(Deserialize)]
struct MoneyData {
    #[serde(alias = "captured_minor")]
    amount_minor: i64,
    currency: String,
}

impl Statistics {
    async fn apply(&self, tx: &mut WriteTx, event: &Envelope) -> Result<(), HandlerError> {
        if event.version != 1 {
            return Err(HandlerError::Permanent(anyhow::anyhow!(
                "{} version {} is not known to reporting",
                event.event_type,
                event.version
            )));
        }
        bump(tx, EVENTS, "", 0).await?;
        match event.event_type.as_str() {
            "client.created" | "client.removed" | "wallet.opened" => {
                bump(tx, &event.event_type, "", 0).await?
            }
            _ => {
                let data: MoneyData = serde_json::from_value(event.data.clone()).map_err(|e| {
                    HandlerError::Permanent(anyhow::anyhow!(
                        "{} data does not parse: {e}",
                        event.event_type
                    ))
                })?;
                bump(tx, &event.event_type, &data.currency, data.amount_minor).await?
            }
        }
        Ok(())
    }
}

impl Handler for Statistics {
    fn handle<'a>(
        &'a self,
        _db: &'a Db,
        tx: &'a mut WriteTx,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(self.apply(tx, event))
    }
}

async fn bump(
    tx: &mut WriteTx,
    metric: &str,
    currency: &str,
    amount_minor: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO statistics (metric, currency, count, total_minor) VALUES ($1, $2, 1, $3) \
         ON CONFLICT (metric, currency) DO UPDATE SET count = statistics.count + 1, \
         total_minor = statistics.total_minor + excluded.total_minor",
    )
    .bind(metric)
    .bind(currency)
    .bind(amount_minor)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Figure {
    #[schema(value_type = String, example = "USD")]
    currency: Currency,
    count: i64,
    total: AmountOutput,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct ClientCounts {
    created: i64,
    removed: i64,
}

#[derive(Debug, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatisticsView {
    /// Events applied to these statistics so far.
    events_applied: i64,
    clients: ClientCounts,
    wallets_opened: i64,
    deposits: Vec<Figure>,
    withdrawals: Vec<Figure>,
    transfers: Vec<Figure>,
    holds_placed: Vec<Figure>,
    holds_captured: Vec<Figure>,
    holds_released: Vec<Figure>,
}

pub fn router(db: Db) -> Router {
    Router::new()
        .route("/reporting/v1/statistics", get(statistics))
        .with_state(db)
}

#[derive(OpenApi)]
#[openapi(paths(statistics), tags((name = "reporting", description = "Statistics built from events")))]
pub struct ReportingApi;

/// Platform statistics, built only from events.
#[utoipa::path(get, path = "/reporting/v1/statistics", tag = "reporting",
    responses((status = 200, body = StatisticsView)))]
async fn statistics(State(db): State<Db>) -> Result<Json<StatisticsView>, Problem> {
    let rows = sqlx::query(
        "SELECT metric, currency, count, total_minor FROM statistics ORDER BY metric, currency",
    )
    .fetch_all(db.reader())
    .await?;
    let mut view = StatisticsView::default();
    for row in rows {
        let metric: String = row.try_get(0)?;
        let currency: String = row.try_get(1)?;
        let count: i64 = row.try_get(2)?;
        let total_minor: i64 = row.try_get(3)?;
        let figure = || -> Result<Figure, Problem> {
            let currency = Currency::parse(&currency).map_err(anyhow::Error::from)?;
            Ok(Figure {
                currency,
                count,
                total: AmountOutput(Money::new(total_minor, currency)),
            })
        };
        match metric.as_str() {
            EVENTS => view.events_applied = count,
            "client.created" => view.clients.created = count,
            "client.removed" => view.clients.removed = count,
            "wallet.opened" => view.wallets_opened = count,
            "funds.deposited" => view.deposits.push(figure()?),
            "funds.withdrawn" => view.withdrawals.push(figure()?),
            "funds.transferred" => view.transfers.push(figure()?),
            "hold.placed" => view.holds_placed.push(figure()?),
            "hold.captured" => view.holds_captured.push(figure()?),
            "hold.released" => view.holds_released.push(figure()?),
            _ => {}
        }
    }
    Ok(Json(view))
}
