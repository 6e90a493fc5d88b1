//! The bills API: bills by id and by patient, payments against a bill, and refunds the clinic
//! asks for when an automatic one failed.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tally_http::{
    execute, AmountInput, AmountOutput, ApiJson, ApiQuery, FieldErrors, IdempotencyHeader,
    IdempotentRequest, Problem, RequestMeta,
};
use tally_kernel::{Currency, Money};
use utoipa::{IntoParams, ToSchema};

use crate::domain::{Bill, BillingError, CardNumber};
use crate::gateway::CardGateway;
use crate::store::{problem, BillRecord, BillStore, PaymentMeans, PaymentRow, RefundRow, RefundTo};

/// Most bills listed at once.
pub const MAX_BILLS_PAGE: i64 = 100;

#[derive(Clone)]
pub struct Bills {
    pub(crate) store: BillStore,
    pub(crate) gateway: Arc<dyn CardGateway>,
}

pub fn bills_router(bills: Bills) -> Router {
    Router::new()
        .route("/bills", get(list_bills))
        .route("/bills/{id}", get(get_bill))
        .route("/bills/{id}/payments", get(list_payments).post(pay))
        .route("/bills/{id}/refunds", get(list_refunds).post(refund))
        .with_state(bills)
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentView {
    payment_id: String,
    bill_id: String,
    /// `cash`, `card` or `wallet`.
    method: String,
    amount: AmountOutput,
    #[schema(value_type = String, example = "USD")]
    currency: Currency,
    /// `completed`, `failed` (a declined card, a refused wallet debit) or `pending` (a wallet
    /// payment waiting for the wallets service).
    status: String,
    refunded: AmountOutput,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    card_last4: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wallet_id: Option<i64>,
    created_at: String,
}

impl From<&PaymentRow> for PaymentView {
    fn from(p: &PaymentRow) -> Self {
        Self {
            payment_id: p.id.clone(),
            bill_id: p.bill_id.clone(),
            method: p.method.as_str().to_owned(),
            amount: AmountOutput(p.amount),
            currency: p.amount.currency,
            status: p.status.clone(),
            refunded: AmountOutput(Money::new(p.refunded_minor, p.amount.currency)),
            failure_reason: p.failure_reason.clone(),
            card_last4: p.card_last4.clone(),
            wallet_id: p.wallet_id,
            created_at: p.created_at.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundView {
    refund_id: String,
    /// The payment refunded.
    payment_id: String,
    bill_id: String,
    /// How the money went back: `cash`, `card` or `wallet`.
    method: String,
    amount: AmountOutput,
    #[schema(value_type = String, example = "USD")]
    currency: Currency,
    /// `completed`; `pending` (a wallet credit waiting for the wallets service); `failed` (the
    /// wallet refused the credit: the amount is owed back again).
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    wallet_id: Option<i64>,
    /// The wallets ledger's transaction, once a wallet refund completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    wallet_transaction: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_reason: Option<String>,
    created_at: String,
    /// When it completed or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    settled_at: Option<String>,
}

impl From<&RefundRow> for RefundView {
    fn from(r: &RefundRow) -> Self {
        Self {
            refund_id: r.id.clone(),
            payment_id: r.payment_id.clone(),
            bill_id: r.bill_id.clone(),
            method: r.method.as_str().to_owned(),
            amount: AmountOutput(r.amount),
            currency: r.amount.currency,
            status: r.status.clone(),
            wallet_id: r.wallet_id,
            wallet_transaction: r.wallet_transaction.clone(),
            failure_reason: r.failure_reason.clone(),
            created_at: r.created_at.clone(),
            settled_at: r.settled_at.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FinanceRecordView {
    physician_id: String,
    start: String,
    end: String,
    duration_minutes: i64,
    price: AmountOutput,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BillView {
    bill_id: String,
    appointment_id: String,
    patient_id: String,
    amount: AmountOutput,
    #[schema(value_type = String, example = "USD")]
    currency: Currency,
    /// The sum of the completed payments.
    paid: AmountOutput,
    /// Reserved by wallet payments in flight.
    pending: AmountOutput,
    /// Given back, or being given back (wallet credits in flight).
    refunded: AmountOutput,
    /// What may still be paid.
    due: AmountOutput,
    /// What the bill holds that is owed back: above zero only after a refund failed.
    refund_due: AmountOutput,
    /// `open`, `paid` or `voided`.
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    payments: Option<Vec<PaymentView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refunds: Option<Vec<RefundView>>,
    /// The finance record written when the consultation closed.
    #[serde(skip_serializing_if = "Option::is_none")]
    finance_record: Option<FinanceRecordView>,
}

fn bill_view(bill: &Bill, detail: Option<&BillRecord>) -> BillView {
    let money = |minor| AmountOutput(Money::new(minor, bill.amount.currency));
    BillView {
        bill_id: bill.id.clone(),
        appointment_id: bill.appointment_id.clone(),
        patient_id: bill.patient_id.clone(),
        amount: AmountOutput(bill.amount),
        currency: bill.amount.currency,
        paid: money(bill.paid_minor),
        pending: money(bill.pending_minor),
        refunded: money(bill.refunded_minor),
        due: money(bill.due_minor()),
        refund_due: money(bill.refund_due_minor()),
        status: bill.status.as_str().to_owned(),
        payments: detail.map(|d| d.payments.iter().map(PaymentView::from).collect()),
        refunds: detail.map(|d| d.refunds.iter().map(RefundView::from).collect()),
        finance_record: detail
            .and_then(|d| d.finance.as_ref())
            .map(|f| FinanceRecordView {
                physician_id: f.physician_id.clone(),
                start: f.started_at.clone(),
                end: f.ended_at.clone(),
                duration_minutes: f.duration_minutes,
                price: AmountOutput(f.price),
            }),
    }
}

/// A bill with its payments, its refunds and, once the consultation closed, its finance record.
#[utoipa::path(get, path = "/bills/{id}", tag = "billing",
    responses((status = 200, body = BillView), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn get_bill(
    State(b): State<Bills>,
    Path(id): Path<String>,
) -> Result<Json<BillView>, Problem> {
    let record = b
        .store
        .bill(&id)
        .await?
        .ok_or_else(|| problem(&BillingError::BillNotFound(id)))?;
    Ok(Json(bill_view(&record.bill, Some(&record))))
}

/// A bill's payments, oldest first.
#[utoipa::path(get, path = "/bills/{id}/payments", tag = "billing",
    responses((status = 200, body = [PaymentView]), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn list_payments(
    State(b): State<Bills>,
    Path(id): Path<String>,
) -> Result<Json<Vec<PaymentView>>, Problem> {
    let record = b
        .store
        .bill(&id)
        .await?
        .ok_or_else(|| problem(&BillingError::BillNotFound(id)))?;
    Ok(Json(
        record.payments.iter().map(PaymentView::from).collect(),
    ))
}

/// A bill's refunds, oldest first.
#[utoipa::path(get, path = "/bills/{id}/refunds", tag = "billing",
    responses((status = 200, body = [RefundView]), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn list_refunds(
    State(b): State<Bills>,
    Path(id): Path<String>,
) -> Result<Json<Vec<RefundView>>, Problem> {
    let record = b
        .store
        .bill(&id)
        .await?
        .ok_or_else(|| problem(&BillingError::BillNotFound(id)))?;
    Ok(Json(record.refunds.iter().map(RefundView::from).collect()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BillsQuery {
    /// The patient whose bills to list (required).
    patient_id: String,
    /// 1 to 100 (default 20).
    limit: Option<i64>,
    /// `nextCursor` of the previous page.
    before: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BillsPage {
    items: Vec<BillView>,
    next_cursor: Option<String>,
}

/// A patient's bills, newest first.
#[utoipa::path(get, path = "/bills", tag = "billing", params(BillsQuery),
    responses((status = 200, body = BillsPage), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn list_bills(
    State(b): State<Bills>,
    ApiQuery(q): ApiQuery<BillsQuery>,
) -> Result<Json<BillsPage>, Problem> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=MAX_BILLS_PAGE).contains(&limit) {
        return Err(Problem::invalid_field(
            "limit",
            format!("must be between 1 and {MAX_BILLS_PAGE}"),
        ));
    }
    let mut bills = b
        .store
        .bills_of_patient(&q.patient_id, limit + 1, q.before.as_deref())
        .await?;
    let more = bills.len() as i64 > limit;
    bills.truncate(limit as usize);
    let next_cursor = if more {
        bills.last().map(|b| b.id.clone())
    } else {
        None
    };
    Ok(Json(BillsPage {
        items: bills.iter().map(|b| bill_view(b, None)).collect(),
        next_cursor,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CardInput {
    /// The card number; only its last four digits are kept.
    number: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PaymentRequest {
    amount: AmountInput,
    /// `cash`, `card` or `wallet`.
    method: String,
    /// Required for `card`.
    card: Option<CardInput>,
    /// Required for `wallet`: the patient's wallet in the wallets service.
    wallet_id: Option<i64>,
    /// Optional; when given it must be the bill's currency.
    currency: Option<String>,
}

/// What was asked, in canonical form, for the Idempotency-Key comparison.
#[derive(Debug, Clone, Serialize)]
struct PaymentCommand {
    bill_id: String,
    amount: String,
    method: String,
    /// Never the whole number: the command is hashed, and a card number's hash is guessable.
    card_last4: Option<String>,
    wallet_id: Option<i64>,
    currency: Option<&'static str>,
}

/// Pays part or all of a bill. Cash and approved cards answer 201 `completed`; a declined card
/// answers 201 with a `failed` payment (nothing charged); a wallet payment answers 202
/// `pending` and completes or fails when the wallets service answers. More than is due is
/// refused (422 `/problems/overpayment`); a voided or paid bill is 409.
#[utoipa::path(post, path = "/bills/{id}/payments", tag = "billing", request_body = PaymentRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: a retry gets the first payment back")),
    responses(
        (status = 201, description = "Completed, or failed (a declined card)", body = PaymentView),
        (status = 202, description = "A wallet payment waiting for the wallets service", body = PaymentView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Bill voided or already paid", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field, or more than is due", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn pay(
    State(b): State<Bills>,
    RequestMeta(meta): RequestMeta,
    idem: IdempotencyHeader,
    Path(bill_id): Path<String>,
    ApiJson(body): ApiJson<PaymentRequest>,
) -> Response {
    let mut f = FieldErrors::default();
    let decimal = f.take(body.amount.positive_decimal("amount"));
    let currency = f.currency(body.currency.as_deref());
    let means = match (body.method.as_str(), &body.card, body.wallet_id) {
        ("cash", None, None) => Some(PaymentMeans::Cash),
        ("card", Some(card), None) => f
            .check("card.number", CardNumber::parse(&card.number))
            .map(PaymentMeans::Card),
        ("wallet", None, Some(wallet)) => Some(PaymentMeans::Wallet(wallet)),
        ("card", None, _) => f.check("card", Err("is required for a card payment")),
        ("wallet", _, None) => f.check("walletId", Err("is required for a wallet payment")),
        ("cash" | "card" | "wallet", _, _) => f.check(
            "method",
            Err("give `card` only for card payments and `walletId` only for wallet payments"),
        ),
        _ => f.check("method", Err("must be cash, card or wallet")),
    };
    let ((decimal, means), currency) = match f.finish(decimal.zip(means).zip(currency)) {
        Ok(parsed) => parsed,
        Err(problem) => return problem.into_response(),
    };
    let status = match means {
        PaymentMeans::Wallet(_) => StatusCode::ACCEPTED,
        _ => StatusCode::CREATED,
    };
    let command = PaymentCommand {
        bill_id: bill_id.clone(),
        amount: decimal.to_string(),
        method: body.method.clone(),
        card_last4: match &means {
            PaymentMeans::Card(card) => Some(card.last4().to_owned()),
            _ => None,
        },
        wallet_id: body.wallet_id,
        currency: currency.map(Currency::code),
    };
    // The gateway sees the same key for every attempt at this request, and for every retry
    // of it with the same Idempotency-Key: a card is charged once.
    let charge_key = match &idem.key {
        Some(key) => format!("{bill_id}:{key}"),
        None => format!("{bill_id}:{}", tally_kernel::id::new_v7()),
    };
    let request = IdempotentRequest::new(idem, "billing:POST /bills/payments", &command);
    let db = b.store.db().clone();
    execute(&db, request, status, move |tx| {
        let (b, meta, bill_id, means, decimal, charge_key) = (
            b.clone(),
            meta.clone(),
            bill_id.clone(),
            means.clone(),
            decimal.clone(),
            charge_key.clone(),
        );
        Box::pin(async move {
            let (_, payment) = b
                .store
                .pay(
                    tx,
                    &bill_id,
                    &decimal,
                    currency,
                    &means,
                    b.gateway.as_ref(),
                    &charge_key,
                    &meta,
                )
                .await?;
            Ok(PaymentView::from(&payment))
        })
    })
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefundRequest {
    /// Optional: by default everything owed back (`refundDue`).
    amount: Option<AmountInput>,
    /// `cash` (handed back at the desk) or `wallet`.
    method: String,
    /// Required for `wallet`: the wallet to deposit into.
    wallet_id: Option<i64>,
    /// Optional; when given it must be the bill's currency.
    currency: Option<String>,
}

/// What was asked, in canonical form, for the Idempotency-Key comparison.
#[derive(Debug, Clone, Serialize)]
struct RefundCommand {
    bill_id: String,
    amount: Option<String>,
    method: String,
    wallet_id: Option<i64>,
    currency: Option<&'static str>,
}

/// Gives back what a bill holds that is owed back (`refundDue`), after an automatic refund
/// failed: in cash, answered 201 `completed`, or into a wallet, answered 202 `pending` until
/// the wallets service answers. The refund is spread over the bill's payments, newest first, so
/// the answer is a list. Nothing owed back is 409 `/problems/no-refund-due`; more than is owed
/// back is 422 `/problems/over-refund`.
#[utoipa::path(post, path = "/bills/{id}/refunds", tag = "billing", request_body = RefundRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: a retry gets the first refunds back")),
    responses(
        (status = 201, description = "Cash handed back", body = [RefundView]),
        (status = 202, description = "A wallet refund waiting for the wallets service", body = [RefundView]),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Nothing is owed back", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field, or more than is owed back", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn refund(
    State(b): State<Bills>,
    RequestMeta(meta): RequestMeta,
    idem: IdempotencyHeader,
    Path(bill_id): Path<String>,
    ApiJson(body): ApiJson<RefundRequest>,
) -> Response {
    let mut f = FieldErrors::default();
    let decimal = match &body.amount {
        None => Some(None),
        Some(amount) => f.take(amount.positive_decimal("amount")).map(Some),
    };
    let currency = f.currency(body.currency.as_deref());
    let to = match (body.method.as_str(), body.wallet_id) {
        ("cash", None) => Some(RefundTo::Cash),
        ("wallet", Some(wallet)) => Some(RefundTo::Wallet(wallet)),
        ("wallet", None) => f.check("walletId", Err("is required for a wallet refund")),
        ("cash", Some(_)) => f.check("walletId", Err("is given only for a wallet refund")),
        _ => f.check("method", Err("must be cash or wallet")),
    };
    let ((decimal, to), currency) = match f.finish(decimal.zip(to).zip(currency)) {
        Ok(parsed) => parsed,
        Err(problem) => return problem.into_response(),
    };
    let status = match to {
        RefundTo::Wallet(_) => StatusCode::ACCEPTED,
        _ => StatusCode::CREATED,
    };
    let command = RefundCommand {
        bill_id: bill_id.clone(),
        amount: decimal.as_ref().map(ToString::to_string),
        method: body.method.clone(),
        wallet_id: body.wallet_id,
        currency: currency.map(Currency::code),
    };
    let request = IdempotentRequest::new(idem, "billing:POST /bills/refunds", &command);
    let db = b.store.db().clone();
    execute(&db, request, status, move |tx| {
        let (b, meta, bill_id, decimal) =
            (b.clone(), meta.clone(), bill_id.clone(), decimal.clone());
        Box::pin(async move {
            let refunds = b
                .store
                .give_back(
                    tx,
                    &bill_id,
                    decimal.as_ref(),
                    currency,
                    to,
                    b.gateway.as_ref(),
                    &meta,
                )
                .await?;
            Ok(refunds.iter().map(RefundView::from).collect::<Vec<_>>())
        })
    })
    .await
}
