//! The wallets HTTP API (document 001's routes and fields, plus withdrawals, holds, history).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tally_db::Db;
use tally_http::{
    execute, AmountInput, AmountOutput, ApiJson, ApiJsonOrEmpty, ApiQuery, FieldError, FieldErrors,
    IdempotencyHeader, IdempotentRequest, Problem, RequestMeta,
};
use tally_kernel::{Currency, Decimal, Money};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::store::{self, Direction, Store};
use crate::domain::ledger::Account;
use crate::domain::{ClientName, Login, WalletError};

/// The wallets service as the HTTP layer sees it.
#[derive(Clone)]
pub struct Wallets {
    store: Store,
    default_currency: Currency,
}

impl Wallets {
    pub fn new(db: Db, default_currency: Currency) -> Self {
        Self {
            store: Store::new(db),
            default_currency,
        }
    }

    fn db(&self) -> &Db {
        self.store.db()
    }
}

pub fn router(wallets: Wallets) -> Router {
    Router::new()
        .route("/clients", post(create_client))
        .route("/clients/{id}", get(get_client).delete(remove_client))
        .route("/clients/{id}/wallets", post(open_wallet))
        .route("/wallets/{id}", get(get_wallet))
        .route("/wallets/{id}/history", get(history))
        .route("/wallets/{id}/holds", post(place_hold))
        .route("/holds/{id}", get(get_hold))
        .route("/holds/{id}/capture", post(capture_hold))
        .route("/holds/{id}/release", post(release_hold))
        .route("/resupplies", post(resupply))
        .route("/withdrawals", post(withdraw))
        .route("/transfers", post(transfer))
        .route("/ledger/summary", get(summary))
        .with_state(wallets)
}

#[derive(OpenApi)]
#[openapi(
    paths(
        create_client, get_client, remove_client, open_wallet, get_wallet, history, place_hold,
        get_hold, capture_hold, release_hold, resupply, withdraw, transfer, summary
    ),
    components(schemas(Problem, FieldError, AmountInput, AmountOutput)),
    tags((name = "wallets", description = "Clients, wallets and the double-entry ledger"))
)]
pub struct WalletsApi;

/// The one place wallet errors become HTTP statuses.
pub(crate) fn problem(e: &WalletError) -> Problem {
    use WalletError as E;
    let conflict = |slug: &str, title: &str| Problem::new(StatusCode::CONFLICT, slug, title);
    let detail = e.to_string();
    match e {
        E::ClientNotFound(_) | E::WalletNotFound(_) | E::HoldNotFound(_) => {
            Problem::not_found(&detail).with_detail(detail)
        }
        E::LoginTaken => conflict("login-taken", "Login taken").with_field("login", detail),
        E::InsufficientFunds { .. } | E::Overdraft(_) => {
            conflict("insufficient-funds", "Insufficient funds").with_field("amount", detail)
        }
        E::SameWallet => Problem::invalid_field("walletToId", detail),
        E::CurrencyMismatch { field, .. } => Problem::invalid_field(*field, detail),
        E::Amount { field, error } => Problem::invalid_field(*field, error.to_string()),
        E::CaptureExceedsHold { .. } => Problem::invalid_field("amount", detail),
        E::WalletClosed(_) => conflict("wallet-closed", "Wallet closed").with_detail(detail),
        E::ClientRemoved(_) => conflict("client-removed", "Client removed").with_detail(detail),
        E::NoOpenWallet(_) => conflict("no-open-wallet", "No open wallet").with_detail(detail),
        E::ClientHasFunds(_) => {
            conflict("client-has-funds", "Client has funds").with_detail(detail)
        }
        E::HoldNotPlaced { .. } => {
            conflict("hold-not-placed", "Hold not placed").with_detail(detail)
        }
    }
}

fn scope(route: &str) -> String {
    format!("wallets:{route}")
}

type Fields = FieldErrors;

// ---- Response bodies -------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WalletView {
    wallet_id: i64,
    client_id: Option<i64>,
    #[schema(value_type = String, example = "USD")]
    currency: Currency,
    balance: AmountOutput,
    held_amount: AmountOutput,
    available_balance: AmountOutput,
    status: &'static str,
}

impl From<&Account> for WalletView {
    fn from(a: &Account) -> Self {
        Self {
            wallet_id: a.id,
            client_id: a.client_id,
            currency: a.currency,
            balance: AmountOutput(a.money(a.balance_minor)),
            held_amount: AmountOutput(a.money(a.held_minor)),
            available_balance: AmountOutput(a.money(a.available_minor())),
            status: if a.open { "open" } else { "closed" },
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientCreated {
    login: String,
    name: String,
    id: i64,
    wallet_id: i64,
    #[schema(value_type = String, example = "USD")]
    currency: Currency,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientView {
    id: i64,
    login: String,
    name: String,
    status: String,
    wallets: Vec<WalletView>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MovementResponse {
    wallet_id: i64,
    amount: AmountOutput,
    transaction_number: String,
    wallet_balance: AmountOutput,
    #[schema(value_type = String, example = "USD")]
    currency: Currency,
}

impl From<store::Movement> for MovementResponse {
    fn from(m: store::Movement) -> Self {
        Self {
            wallet_id: m.wallet.id,
            amount: AmountOutput(m.amount),
            transaction_number: m.transaction_number,
            wallet_balance: AmountOutput(m.wallet.money(m.wallet.balance_minor)),
            currency: m.amount.currency,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransferResponse {
    wallet_from_id: i64,
    wallet_to_id: i64,
    amount: AmountOutput,
    transaction_number: String,
    wallet_from_balance: AmountOutput,
    wallet_to_balance: AmountOutput,
    #[schema(value_type = String, example = "USD")]
    currency: Currency,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HoldView {
    hold_id: String,
    wallet_id: i64,
    amount: AmountOutput,
    captured_amount: AmountOutput,
    status: &'static str,
    #[schema(value_type = String, example = "USD")]
    currency: Currency,
    /// The wallet's balances after the operation (absent on `GET`).
    #[serde(skip_serializing_if = "Option::is_none")]
    wallet_balance: Option<AmountOutput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    available_balance: Option<AmountOutput>,
    /// The ledger transfer a capture made.
    #[serde(skip_serializing_if = "Option::is_none")]
    transaction_number: Option<String>,
}

impl HoldView {
    fn of(hold: &crate::domain::Hold, wallet: Option<&Account>, number: Option<String>) -> Self {
        Self {
            hold_id: hold.id.clone(),
            wallet_id: hold.wallet_id,
            amount: AmountOutput(hold.amount),
            captured_amount: AmountOutput(Money::new(hold.captured_minor, hold.amount.currency)),
            status: hold.status.as_str(),
            currency: hold.amount.currency,
            wallet_balance: wallet.map(|w| AmountOutput(w.money(w.balance_minor))),
            available_balance: wallet.map(|w| AmountOutput(w.money(w.available_minor()))),
            transaction_number: number,
        }
    }
}

impl From<store::HoldReceipt> for HoldView {
    fn from(r: store::HoldReceipt) -> Self {
        HoldView::of(&r.hold, Some(&r.wallet), r.transaction_number)
    }
}

// ---- Clients ---------------------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClientRequest {
    #[schema(example = "Иванов Иван")]
    name: String,
    #[schema(example = "myLogin")]
    login: String,
    /// ISO 4217 code of the first wallet; the server's default currency when absent.
    #[schema(example = "USD")]
    currency: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct CreateClient {
    login: Login,
    name: ClientName,
    currency: &'static str,
}

/// Creates a client and its first wallet in one operation.
#[utoipa::path(post, path = "/clients", tag = "wallets", request_body = CreateClientRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses(
        (status = 201, body = ClientCreated),
        (status = 409, description = "Login taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_client(
    State(w): State<Wallets>,
    RequestMeta(meta): RequestMeta,
    idem: IdempotencyHeader,
    ApiJson(body): ApiJson<CreateClientRequest>,
) -> Response {
    let mut f = Fields::default();
    let login = f.check("login", Login::parse(&body.login));
    let name = f.check("name", ClientName::parse(&body.name));
    let currency = f.currency(body.currency.as_deref());
    let cmd = match f.finish(login.zip(name).zip(currency)) {
        Ok(((login, name), currency)) => {
            let currency = currency.unwrap_or(w.default_currency);
            CreateClient {
                login,
                name,
                currency: currency.code(),
            }
        }
        Err(p) => return p.into_response(),
    };
    let request = IdempotentRequest::new(idem, &scope("POST /clients"), &cmd);
    let db = w.db().clone();
    execute(&db, request, StatusCode::CREATED, move |tx| {
        let (w, cmd, meta) = (w.clone(), cmd.clone(), meta.clone());
        Box::pin(async move {
            let currency = Currency::parse(cmd.currency).map_err(anyhow::Error::from)?;
            let (client, wallet) = w
                .store
                .create_client(tx, &cmd.login, &cmd.name, currency, &meta)
                .await?;
            Ok(ClientCreated {
                login: client.login,
                name: client.name,
                id: client.id,
                wallet_id: wallet.id,
                currency,
            })
        })
    })
    .await
}

/// A client with its wallets.
#[utoipa::path(get, path = "/clients/{id}", tag = "wallets",
    responses((status = 200, body = ClientView), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_client(
    State(w): State<Wallets>,
    Path(id): Path<String>,
) -> Result<Json<ClientView>, Problem> {
    let id = path_id(&id)?;
    let (client, wallets) = w
        .store
        .client(id)
        .await?
        .ok_or_else(|| problem(&WalletError::ClientNotFound(id)))?;
    Ok(Json(ClientView {
        id: client.id,
        login: client.login,
        name: client.name,
        status: client.status,
        wallets: wallets.iter().map(WalletView::from).collect(),
    }))
}

/// Removes a client whose wallets are empty and closes its wallets.
#[utoipa::path(delete, path = "/clients/{id}", tag = "wallets",
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 200, body = ClientView), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A wallet still has money or holds", body = Problem, content_type = "application/problem+json")))]
async fn remove_client(
    State(w): State<Wallets>,
    RequestMeta(meta): RequestMeta,
    idem: IdempotencyHeader,
    Path(id): Path<String>,
) -> Response {
    let id = match path_id(&id) {
        Ok(id) => id,
        Err(p) => return p.into_response(),
    };
    let request = IdempotentRequest::new(idem, &scope("DELETE /clients"), &id);
    let db = w.db().clone();
    execute(&db, request, StatusCode::OK, move |tx| {
        let (w, meta) = (w.clone(), meta.clone());
        Box::pin(async move {
            let (client, wallets) = w.store.remove_client(tx, id, &meta).await?;
            Ok(ClientView {
                id: client.id,
                login: client.login,
                name: client.name,
                status: client.status,
                wallets: wallets.iter().map(WalletView::from).collect(),
            })
        })
    })
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenWalletRequest {
    #[schema(example = "EUR")]
    currency: Option<String>,
}

/// Opens another wallet for a client.
#[utoipa::path(post, path = "/clients/{id}/wallets", tag = "wallets", request_body = OpenWalletRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 201, body = WalletView), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn open_wallet(
    State(w): State<Wallets>,
    RequestMeta(meta): RequestMeta,
    idem: IdempotencyHeader,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<OpenWalletRequest>,
) -> Response {
    let client_id = match path_id(&id) {
        Ok(id) => id,
        Err(p) => return p.into_response(),
    };
    let mut f = Fields::default();
    let currency = f.currency(body.currency.as_deref());
    let currency = match f.finish(currency) {
        Ok(c) => c.unwrap_or(w.default_currency),
        Err(p) => return p.into_response(),
    };
    let request = IdempotentRequest::new(
        idem,
        &scope("POST /clients/wallets"),
        &(client_id, currency.code()),
    );
    let db = w.db().clone();
    execute(&db, request, StatusCode::CREATED, move |tx| {
        let (w, meta) = (w.clone(), meta.clone());
        Box::pin(async move {
            let wallet = w.store.open_wallet(tx, client_id, currency, &meta).await?;
            Ok(WalletView::from(&wallet))
        })
    })
    .await
}

fn path_id(raw: &str) -> Result<i64, Problem> {
    raw.parse::<i64>()
        .map_err(|_| Problem::not_found(&format!("`{raw}`")))
}

// ---- Wallets ---------------------------------------------------------------------------------

/// A wallet's balance, held amount and available balance.
#[utoipa::path(get, path = "/wallets/{id}", tag = "wallets",
    responses((status = 200, body = WalletView), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_wallet(
    State(w): State<Wallets>,
    Path(id): Path<String>,
) -> Result<Json<WalletView>, Problem> {
    let id = path_id(&id)?;
    let wallet = w
        .store
        .wallet(id)
        .await?
        .ok_or_else(|| problem(&WalletError::WalletNotFound(id)))?;
    Ok(Json(WalletView::from(&wallet)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Items per page, 1 to 500 (default 50).
    limit: Option<i64>,
    /// `nextCursor` of the previous page.
    before: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryItemView {
    transaction_number: String,
    /// `deposit`, `withdrawal`, `transfer_in`, `transfer_out`, `hold_capture_in`, `hold_capture_out`.
    kind: String,
    /// Signed: positive into the wallet, negative out of it.
    amount: AmountOutput,
    balance_after: AmountOutput,
    counterparty_wallet_id: Option<i64>,
    #[schema(value_type = String, format = DateTime)]
    created_at: tally_kernel::time::Timestamp,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPage {
    items: Vec<HistoryItemView>,
    /// Pass as `before` for the next (older) page; null on the last page.
    next_cursor: Option<String>,
}

/// A wallet's operations, newest first, paged.
#[utoipa::path(get, path = "/wallets/{id}/history", tag = "wallets", params(HistoryQuery),
    responses((status = 200, body = HistoryPage), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn history(
    State(w): State<Wallets>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<HistoryPage>, Problem> {
    let id = path_id(&id)?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=store::MAX_HISTORY_PAGE).contains(&limit) {
        return Err(Problem::invalid_field(
            "limit",
            format!("must be between 1 and {}", store::MAX_HISTORY_PAGE),
        ));
    }
    let before = match query.before.as_deref() {
        None => None,
        Some(c) => Some(
            c.parse::<i64>()
                .map_err(|_| Problem::invalid_field("before", "is not a cursor from this API"))?,
        ),
    };
    let wallet = w
        .store
        .wallet(id)
        .await?
        .ok_or_else(|| problem(&WalletError::WalletNotFound(id)))?;
    let items = w.store.history(&wallet, before, limit + 1).await?;
    let more = items.len() as i64 > limit;
    let items: Vec<_> = items.into_iter().take(limit as usize).collect();
    let next_cursor = if more {
        items.last().map(|i| i.cursor.to_string())
    } else {
        None
    };
    Ok(Json(HistoryPage {
        items: items
            .into_iter()
            .map(|i| HistoryItemView {
                transaction_number: i.transaction_number,
                kind: i.kind,
                amount: AmountOutput(i.amount),
                balance_after: AmountOutput(i.balance_after),
                counterparty_wallet_id: i.counterparty_wallet_id,
                created_at: i.created_at,
            })
            .collect(),
        next_cursor,
    }))
}

// ---- Money movements -------------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MovementRequest {
    wallet_id: i64,
    amount: AmountInput,
    /// Optional; when given it must be the wallet's currency.
    currency: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct Movement {
    wallet_id: i64,
    amount: String,
    currency: Option<&'static str>,
}

impl MovementRequest {
    fn parse(&self) -> Result<(Movement, Decimal, Option<Currency>), Problem> {
        let mut f = Fields::default();
        let amount = f.take(self.amount.positive_decimal("amount"));
        let currency = f.currency(self.currency.as_deref());
        let (amount, currency) = f.finish(amount.zip(currency))?;
        let cmd = Movement {
            wallet_id: self.wallet_id,
            amount: amount.to_string(),
            currency: currency.map(Currency::code),
        };
        Ok((cmd, amount, currency))
    }
}

/// Deposits money into a wallet (document 001's "resupply").
#[utoipa::path(post, path = "/resupplies", tag = "wallets", request_body = MovementRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 200, body = MovementResponse),
        (status = 404, description = "Unknown wallet", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Wallet closed", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid amount or currency", body = Problem, content_type = "application/problem+json")))]
async fn resupply(
    State(w): State<Wallets>,
    RequestMeta(meta): RequestMeta,
    idem: IdempotencyHeader,
    ApiJson(body): ApiJson<MovementRequest>,
) -> Response {
    move_external(w, meta, idem, body, Direction::Deposit).await
}

/// Withdraws money from a wallet to the outside world.
#[utoipa::path(post, path = "/withdrawals", tag = "wallets", request_body = MovementRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 200, body = MovementResponse),
        (status = 404, description = "Unknown wallet", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Insufficient funds, or wallet closed", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid amount or currency", body = Problem, content_type = "application/problem+json")))]
async fn withdraw(
    State(w): State<Wallets>,
    RequestMeta(meta): RequestMeta,
    idem: IdempotencyHeader,
    ApiJson(body): ApiJson<MovementRequest>,
) -> Response {
    move_external(w, meta, idem, body, Direction::Withdrawal).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransferRequest {
    wallet_from_id: i64,
    wallet_to_id: i64,
    amount: AmountInput,
    currency: Option<String>,
}

/// Deposits and withdrawals: the same request, the same response, opposite directions.
async fn move_external(
    w: Wallets,
    meta: tally_kernel::EventMeta,
    idem: IdempotencyHeader,
    body: MovementRequest,
    direction: Direction,
) -> Response {
    let (cmd, amount, currency) = match body.parse() {
        Ok(parsed) => parsed,
        Err(p) => return p.into_response(),
    };
    let route = match direction {
        Direction::Deposit => "POST /resupplies",
        Direction::Withdrawal => "POST /withdrawals",
    };
    let request = IdempotentRequest::new(idem, &scope(route), &cmd);
    let db = w.db().clone();
    execute(&db, request, StatusCode::OK, move |tx| {
        let (w, amount, meta) = (w.clone(), amount.clone(), meta.clone());
        Box::pin(async move {
            let m = w
                .store
                .move_external(tx, direction, cmd.wallet_id, &amount, currency, &meta)
                .await?;
            Ok(MovementResponse::from(m))
        })
    })
    .await
}

#[derive(Debug, Clone, Serialize)]
struct Transfer {
    from: i64,
    to: i64,
    amount: String,
    currency: Option<&'static str>,
}

/// Moves money between two wallets of the same currency.
#[utoipa::path(post, path = "/transfers", tag = "wallets", request_body = TransferRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 200, body = TransferResponse),
        (status = 404, description = "Unknown wallet", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Insufficient funds (balance or available balance), or wallet closed", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid amount, same wallet, or currencies differ", body = Problem, content_type = "application/problem+json")))]
async fn transfer(
    State(w): State<Wallets>,
    RequestMeta(meta): RequestMeta,
    idem: IdempotencyHeader,
    ApiJson(body): ApiJson<TransferRequest>,
) -> Response {
    let mut f = Fields::default();
    if body.wallet_from_id == body.wallet_to_id {
        f.push("walletToId", WalletError::SameWallet.to_string());
    }
    let amount = f.take(body.amount.positive_decimal("amount"));
    let currency = f.currency(body.currency.as_deref());
    let (amount, currency) = match f.finish(amount.zip(currency)) {
        Ok(parsed) => parsed,
        Err(p) => return p.into_response(),
    };
    let cmd = Transfer {
        from: body.wallet_from_id,
        to: body.wallet_to_id,
        amount: amount.to_string(),
        currency: currency.map(Currency::code),
    };
    let request = IdempotentRequest::new(idem, &scope("POST /transfers"), &cmd);
    let db = w.db().clone();
    execute(&db, request, StatusCode::OK, move |tx| {
        let (w, amount, meta) = (w.clone(), amount.clone(), meta.clone());
        Box::pin(async move {
            let r = w
                .store
                .transfer(tx, cmd.from, cmd.to, &amount, currency, &meta)
                .await?;
            Ok(TransferResponse {
                wallet_from_id: r.from.id,
                wallet_to_id: r.to.id,
                amount: AmountOutput(r.amount),
                transaction_number: r.transaction_number,
                wallet_from_balance: AmountOutput(r.from.money(r.from.balance_minor)),
                wallet_to_balance: AmountOutput(r.to.money(r.to.balance_minor)),
                currency: r.amount.currency,
            })
        })
    })
    .await
}

// ---- Holds -----------------------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlaceHoldRequest {
    amount: AmountInput,
    currency: Option<String>,
    /// What the hold is for (an order id, a bill id); returned in the event.
    reference: Option<String>,
}

/// Reserves part of a wallet's available balance.
#[utoipa::path(post, path = "/wallets/{id}/holds", tag = "wallets", request_body = PlaceHoldRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 201, body = HoldView), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Insufficient available balance", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn place_hold(
    State(w): State<Wallets>,
    RequestMeta(meta): RequestMeta,
    idem: IdempotencyHeader,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PlaceHoldRequest>,
) -> Response {
    let wallet_id = match path_id(&id) {
        Ok(id) => id,
        Err(p) => return p.into_response(),
    };
    let mut f = Fields::default();
    let amount = f.take(body.amount.positive_decimal("amount"));
    let currency = f.currency(body.currency.as_deref());
    if body
        .reference
        .as_ref()
        .is_some_and(|r| r.chars().count() > 200)
    {
        f.push("reference", "is too long");
    }
    let (amount, currency) = match f.finish(amount.zip(currency)) {
        Ok(parsed) => parsed,
        Err(p) => return p.into_response(),
    };
    let reference = body.reference;
    let canonical = (
        wallet_id,
        amount.to_string(),
        currency.map(Currency::code),
        reference.clone(),
    );
    let request = IdempotentRequest::new(idem, &scope("POST /wallets/holds"), &canonical);
    let db = w.db().clone();
    execute(&db, request, StatusCode::CREATED, move |tx| {
        let (w, amount, meta, reference) =
            (w.clone(), amount.clone(), meta.clone(), reference.clone());
        Box::pin(async move {
            let r = w
                .store
                .place_hold(
                    tx,
                    wallet_id,
                    &amount,
                    currency,
                    reference.as_deref(),
                    &meta,
                )
                .await?;
            Ok(HoldView::from(r))
        })
    })
    .await
}

/// A hold and its status.
#[utoipa::path(get, path = "/holds/{id}", tag = "wallets",
    responses((status = 200, body = HoldView), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_hold(
    State(w): State<Wallets>,
    Path(id): Path<String>,
) -> Result<Json<HoldView>, Problem> {
    let hold = w
        .store
        .hold(&id)
        .await?
        .ok_or_else(|| problem(&WalletError::HoldNotFound(id)))?;
    Ok(Json(HoldView::of(&hold, None, None)))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaptureRequest {
    /// Part of the hold to capture; the whole hold when absent. The rest is released.
    amount: Option<AmountInput>,
    /// The wallet credited; when absent the money leaves the ledger (the external account).
    wallet_to_id: Option<i64>,
}

/// Captures a hold: the money moves, and what was not captured is released.
#[utoipa::path(post, path = "/holds/{id}/capture", tag = "wallets", request_body = CaptureRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 200, body = HoldView), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Hold already captured or released", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn capture_hold(
    State(w): State<Wallets>,
    RequestMeta(meta): RequestMeta,
    idem: IdempotencyHeader,
    Path(hold_id): Path<String>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<CaptureRequest>,
) -> Response {
    let amount = match body
        .amount
        .as_ref()
        .map(|a| a.positive_decimal("amount"))
        .transpose()
    {
        Ok(a) => a,
        Err(e) => return Problem::validation(vec![e]).into_response(),
    };
    let to = body.wallet_to_id;
    let canonical = (hold_id.clone(), amount.as_ref().map(Decimal::to_string), to);
    let request = IdempotentRequest::new(idem, &scope("POST /holds/capture"), &canonical);
    let db = w.db().clone();
    execute(&db, request, StatusCode::OK, move |tx| {
        let (w, amount, meta, hold_id) = (w.clone(), amount.clone(), meta.clone(), hold_id.clone());
        Box::pin(async move {
            let r = w
                .store
                .capture_hold(tx, &hold_id, amount.as_ref(), to, &meta)
                .await?;
            Ok(HoldView::from(r))
        })
    })
    .await
}

/// Releases a hold: its amount is available again.
#[utoipa::path(post, path = "/holds/{id}/release", tag = "wallets",
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 200, body = HoldView), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Hold already captured or released", body = Problem, content_type = "application/problem+json")))]
async fn release_hold(
    State(w): State<Wallets>,
    RequestMeta(meta): RequestMeta,
    idem: IdempotencyHeader,
    Path(hold_id): Path<String>,
) -> Response {
    let request = IdempotentRequest::new(idem, &scope("POST /holds/release"), &hold_id);
    let db = w.db().clone();
    execute(&db, request, StatusCode::OK, move |tx| {
        let (w, meta, hold_id) = (w.clone(), meta.clone(), hold_id.clone());
        Box::pin(async move {
            let r = w.store.release_hold(tx, &hold_id, &meta).await?;
            Ok(HoldView::from(r))
        })
    })
    .await
}

// ---- Ledger ----------------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CurrencySummaryView {
    #[schema(value_type = String, example = "USD")]
    currency: Currency,
    /// What all wallets of this currency hold.
    wallets_total: AmountOutput,
    /// The external account: minus what came in net of what went out.
    external_total: AmountOutput,
    /// wallets_total + external_total: always 0.
    sum: AmountOutput,
    transfer_count: i64,
    /// Accounts whose balance is not the sum of their entries: always 0.
    unbalanced_accounts: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerSummary {
    currencies: Vec<CurrencySummaryView>,
}

/// Checks the ledger: per currency, all accounts sum to zero and match their entries.
#[utoipa::path(get, path = "/ledger/summary", tag = "wallets", responses((status = 200, body = LedgerSummary)))]
async fn summary(State(w): State<Wallets>) -> Result<Json<LedgerSummary>, Problem> {
    let rows = w.store.summary().await?;
    Ok(Json(LedgerSummary {
        currencies: rows
            .into_iter()
            .map(|s| CurrencySummaryView {
                currency: s.currency,
                wallets_total: AmountOutput(Money::new(s.wallets_minor, s.currency)),
                external_total: AmountOutput(Money::new(s.external_minor, s.currency)),
                sum: AmountOutput(Money::new(s.wallets_minor + s.external_minor, s.currency)),
                transfer_count: s.transfer_count,
                unbalanced_accounts: s.unbalanced_accounts,
            })
            .collect(),
    }))
}
