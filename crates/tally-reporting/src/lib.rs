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
    "trade.executed",
    "trade.rejected",
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

/// The fields of `trade.executed` and `trade.rejected` the statistics read.
#[derive(Deserialize)]
struct TradeData {
    symbol: String,
    side: String,
    currency: String,
    quantity: i64,
    total_minor: i64,
}

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
            "trade.executed" | "trade.rejected" => {
                let data: TradeData = serde_json::from_value(event.data.clone()).map_err(|e| {
                    HandlerError::Permanent(anyhow::anyhow!(
                        "{} data does not parse: {e}",
                        event.event_type
                    ))
                })?;
                bump_trades(tx, &data, event.event_type == "trade.executed").await?
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

/// Counts an executed trade (its units and value) or a rejected one.
async fn bump_trades(
    tx: &mut WriteTx,
    trade: &TradeData,
    executed: bool,
) -> Result<(), sqlx::Error> {
    let (executed_count, rejected_count, quantity, volume) = if executed {
        (1, 0, trade.quantity, trade.total_minor)
    } else {
        (0, 1, 0, 0)
    };
    sqlx::query(
        "INSERT INTO trade_statistics (symbol, side, currency, executed, rejected, quantity, \
         volume_minor) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (symbol, side, currency) DO UPDATE SET \
         executed = trade_statistics.executed + excluded.executed, \
         rejected = trade_statistics.rejected + excluded.rejected, \
         quantity = trade_statistics.quantity + excluded.quantity, \
         volume_minor = trade_statistics.volume_minor + excluded.volume_minor",
    )
    .bind(&trade.symbol)
    .bind(&trade.side)
    .bind(&trade.currency)
    .bind(executed_count)
    .bind(rejected_count)
    .bind(quantity)
    .bind(volume)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Trades of one symbol on one side, in one currency.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TradeFigure {
    #[schema(example = "ACME")]
    symbol: String,
    /// `BUY` or `SELL`.
    side: String,
    #[schema(value_type = String, example = "USD")]
    currency: Currency,
    /// Trades executed.
    count: i64,
    /// Orders rejected (insufficient funds or holdings).
    rejected: i64,
    /// Units traded.
    quantity: i64,
    /// Value traded: the sum of price × units.
    volume: AmountOutput,
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
    /// Trading per symbol and side.
    trades: Vec<TradeFigure>,
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
    let rows = sqlx::query(
        "SELECT symbol, side, currency, executed, rejected, quantity, volume_minor \
         FROM trade_statistics ORDER BY symbol, side, currency",
    )
    .fetch_all(db.reader())
    .await?;
    for row in rows {
        let currency: String = row.try_get(2)?;
        let currency = Currency::parse(&currency).map_err(anyhow::Error::from)?;
        view.trades.push(TradeFigure {
            symbol: row.try_get(0)?,
            side: row.try_get(1)?,
            currency,
            count: row.try_get(3)?,
            rejected: row.try_get(4)?,
            quantity: row.try_get(5)?,
            volume: AmountOutput(Money::new(row.try_get(6)?, currency)),
        });
    }
    Ok(Json(view))
}
