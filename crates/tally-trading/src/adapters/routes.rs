//! Trading's HTTP surface: the WebSocket upgrade (`/ws`, and `/` as document 003 connects) and
//! read routes for holdings and orders.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tally_db::Db;
use tally_http::{AmountOutput, Problem};
use utoipa::{OpenApi, ToSchema};

use super::replies::Replies;
use super::store::Store;
use super::ws::{self, Connections, Permissions, WsSettings};

/// The service as its routes see it.
#[derive(Clone)]
pub struct Trading {
    pub(crate) store: Store,
    pub(crate) replies: Arc<Replies>,
    pub(crate) permissions: Arc<dyn Permissions>,
    pub(crate) ws: WsSettings,
    pub(crate) connections: Connections,
}

impl Trading {
    /// The service on `db`; its WebSocket connections are counted in `connections` and close
    /// when its shutdown signal fires.
    pub fn new(
        db: Db,
        permissions: Arc<dyn Permissions>,
        ws: WsSettings,
        connections: Connections,
    ) -> Self {
        let store = Store::new(db);
        Self {
            replies: Arc::new(Replies::new(store.clone())),
            store,
            permissions,
            ws,
            connections,
        }
    }
}

pub fn router(trading: Trading) -> Router {
    Router::new()
        .route("/ws", get(ws::upgrade))
        .route("/", get(ws::upgrade))
        .route("/trading/v1/users/{user_id}/holdings", get(holdings))
        .route("/trading/v1/orders/{order_id}", get(order))
        .with_state(trading)
}

#[derive(OpenApi)]
#[openapi(
    paths(websocket, holdings, order),
    tags((name = "trading", description = "Document 003's trading desk: a WebSocket for orders and payments, and reads"))
)]
pub struct TradingApi;

/// The trading WebSocket (also at `/`). Send `Authorization: Bearer <token>` with the upgrade
/// (a `trading:read` token), or offer the subprotocols `tally.v1, bearer.<token>`. Messages
/// are document 003's JSON objects; each gets one reply `{id, status: OK|ERROR, message, ...}`.
/// BUY and SELL need `trading:write`; DEPOSIT, WITHDRAW, ADD_USER and REMOVE_USER need
/// `wallets:write`; USER_INFO needs `wallets:read`. See docs/api.md.
#[utoipa::path(get, path = "/ws", tag = "trading",
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 401, description = "No token, or an unknown or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token lacks trading:read", body = Problem, content_type = "application/problem+json"),
    ))]
#[allow(dead_code)]
async fn websocket() {}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HoldingView {
    #[schema(example = "ACME")]
    symbol: String,
    /// Whole units held.
    quantity: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HoldingsView {
    user_id: i64,
    holdings: Vec<HoldingView>,
}

/// A user's holdings: the units of each symbol bought and not sold.
#[utoipa::path(get, path = "/trading/v1/users/{user_id}/holdings", tag = "trading",
    params(("user_id" = i64, Path, description = "The user (a wallets client id)")),
    responses((status = 200, body = HoldingsView)))]
async fn holdings(
    State(trading): State<Trading>,
    Path(user_id): Path<String>,
) -> Result<Json<HoldingsView>, Problem> {
    let user_id: i64 = user_id
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Problem::invalid_field("user_id", "must be a positive integer"))?;
    let holdings = trading.store.holdings(user_id).await?;
    Ok(Json(HoldingsView {
        user_id,
        holdings: holdings
            .into_iter()
            .map(|h| HoldingView {
                symbol: h.symbol,
                quantity: h.quantity,
            })
            .collect(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    id: String,
    user_id: i64,
    wallet_id: i64,
    #[schema(example = "BUY")]
    side: &'static str,
    symbol: String,
    quantity: i64,
    price: AmountOutput,
    total: AmountOutput,
    #[schema(example = "USD")]
    currency: String,
    /// `pending` (waiting for its money to move: a BUY's hold to be placed and captured, a
    /// SELL's proceeds to be credited), `executed` (the money moved, the units changed hands) or `rejected` (nothing
    /// changed hands).
    status: String,
    /// Why a rejected order was rejected.
    reason: Option<String>,
    /// Whether the wallet's money moved: the hold captured (BUY) or the proceeds credited
    /// (SELL). An order executes when its money moves, so this is true exactly when it is
    /// `executed`.
    settled: bool,
}

/// An order (a BUY or SELL message), by its id (`order_id` in the message's reply).
#[utoipa::path(get, path = "/trading/v1/orders/{order_id}", tag = "trading",
    params(("order_id" = String, Path, description = "The order's id")),
    responses((status = 200, body = OrderView),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn order(
    State(trading): State<Trading>,
    Path(order_id): Path<String>,
) -> Result<Json<OrderView>, Problem> {
    let order = trading
        .store
        .order(&order_id)
        .await?
        .ok_or_else(|| Problem::not_found("order"))?;
    Ok(Json(OrderView {
        id: order.id,
        user_id: order.user_id,
        wallet_id: order.wallet_id,
        side: order.side.as_str(),
        symbol: order.symbol,
        quantity: order.quantity,
        price: AmountOutput(order.price),
        total: AmountOutput(order.total),
        currency: order.total.currency.code().to_owned(),
        status: order.status,
        reason: order.reason,
        settled: order.settled,
    }))
}
