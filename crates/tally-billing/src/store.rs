//! The bills store: loads a bill locked for the transaction, lets the domain decide, writes
//! bills, payments, refunds and outbox rows in one transaction.

use sqlx::any::AnyRow;
use sqlx::Row as _;
use tally_bus::outbox;
use tally_db::{Db, WriteTx};
use tally_http::{Failure, Problem};
use tally_kernel::time;
use tally_kernel::{Currency, Decimal, EventMeta, Money};

use crate::domain::{
    Bill, BillStatus, BillingError, BillingEvent, CardNumber, Method, PAYMENT_COMPLETED,
    PAYMENT_FAILED, PAYMENT_REFUNDED, PAYMENT_REFUND_FAILED, WALLET_CREDIT_REQUESTED,
    WALLET_DEBIT_REQUESTED,
};
use crate::gateway::{CardGateway, ChargeOutcome};
use crate::SERVICE;

/// How a payment is to be made.
#[derive(Debug, Clone)]
pub enum PaymentMeans {
    Cash,
    Card(CardNumber),
    Wallet(i64),
}

#[derive(Debug, Clone)]
pub struct PaymentRow {
    pub id: String,
    pub bill_id: String,
    pub method: Method,
    pub amount: Money,
    pub status: String,
    pub refunded_minor: i64,
    pub failure_reason: Option<String>,
    pub card_last4: Option<String>,
    pub wallet_id: Option<i64>,
    pub created_at: String,
}

/// Where a refund sends the money.
#[derive(Debug, Clone, Copy)]
pub enum RefundTo {
    /// Back the way each payment came: the card, the wallet, or cash at the desk.
    Original,
    /// Cash handed back at the desk.
    Cash,
    /// A deposit into this wallet.
    Wallet(i64),
}

#[derive(Debug, Clone)]
pub struct RefundRow {
    pub id: String,
    pub payment_id: String,
    pub bill_id: String,
    pub method: Method,
    pub amount: Money,
    /// `pending` (a wallet credit waiting for the wallets service), `completed` or `failed`.
    pub status: String,
    pub wallet_id: Option<i64>,
    pub wallet_transaction: Option<String>,
    pub failure_reason: Option<String>,
    pub created_at: String,
    pub settled_at: Option<String>,
}

/// A bill as `GET /bills/{id}` shows it.
#[derive(Debug, Clone)]
pub struct BillRecord {
    pub bill: Bill,
    pub payments: Vec<PaymentRow>,
    pub refunds: Vec<RefundRow>,
    pub finance: Option<FinanceRecord>,
}

#[derive(Debug, Clone)]
pub struct FinanceRecord {
    pub physician_id: String,
    pub started_at: String,
    pub ended_at: String,
    pub duration_minutes: i64,
    pub price: Money,
}

/// What `consultation.closed` says (version 1).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Closed {
    pub appointment_id: String,
    pub patient_id: String,
    pub physician_id: String,
    pub start: String,
    pub end: String,
    pub duration_minutes: i64,
    pub price_minor: i64,
    pub currency: String,
}

const BILL_COLUMNS: &str = "id, appointment_id, patient_id, amount_minor, currency, paid_minor, \
                            pending_minor, refunded_minor, status";
const PAYMENT_COLUMNS: &str = "id, bill_id, method, amount_minor, currency, status, \
                               refunded_minor, failure_reason, card_last4, wallet_id, created_at";
const REFUND_COLUMNS: &str = "r.id, r.payment_id, r.bill_id, r.method, r.amount_minor, \
                              p.currency, r.status, r.wallet_id, r.wallet_transaction, \
                              r.failure_reason, r.created_at, r.settled_at";

fn decode<E: std::fmt::Display>(e: E) -> sqlx::Error {
    sqlx::Error::Decode(e.to_string().into())
}

fn bill_from_row(row: &AnyRow) -> Result<Bill, sqlx::Error> {
    let currency: String = row.try_get(4)?;
    let status: String = row.try_get(8)?;
    Ok(Bill {
        id: row.try_get(0)?,
        appointment_id: row.try_get(1)?,
        patient_id: row.try_get(2)?,
        amount: Money::new(row.try_get(3)?, Currency::parse(&currency).map_err(decode)?),
        paid_minor: row.try_get(5)?,
        pending_minor: row.try_get(6)?,
        refunded_minor: row.try_get(7)?,
        status: BillStatus::parse(&status)
            .ok_or_else(|| decode(format!("bill status {status}")))?,
    })
}

fn payment_from_row(row: &AnyRow) -> Result<PaymentRow, sqlx::Error> {
    let method: String = row.try_get(2)?;
    let currency: String = row.try_get(4)?;
    Ok(PaymentRow {
        id: row.try_get(0)?,
        bill_id: row.try_get(1)?,
        method: Method::parse(&method).ok_or_else(|| decode(format!("method {method}")))?,
        amount: Money::new(row.try_get(3)?, Currency::parse(&currency).map_err(decode)?),
        status: row.try_get(5)?,
        refunded_minor: row.try_get(6)?,
        failure_reason: row.try_get(7)?,
        card_last4: row.try_get(8)?,
        wallet_id: row.try_get(9)?,
        created_at: row.try_get(10)?,
    })
}

fn refund_from_row(row: &AnyRow) -> Result<RefundRow, sqlx::Error> {
    let method: String = row.try_get(3)?;
    let currency: String = row.try_get(5)?;
    Ok(RefundRow {
        id: row.try_get(0)?,
        payment_id: row.try_get(1)?,
        bill_id: row.try_get(2)?,
        method: Method::parse(&method).ok_or_else(|| decode(format!("method {method}")))?,
        amount: Money::new(row.try_get(4)?, Currency::parse(&currency).map_err(decode)?),
        status: row.try_get(6)?,
        wallet_id: row.try_get(7)?,
        wallet_transaction: row.try_get(8)?,
        failure_reason: row.try_get(9)?,
        created_at: row.try_get(10)?,
        settled_at: row.try_get(11)?,
    })
}

/// The one place billing refusals become HTTP statuses.
pub fn problem(e: &BillingError) -> Problem {
    use axum::http::StatusCode;
    let detail = e.to_string();
    match e {
        BillingError::BillNotFound(_) => Problem::not_found(&detail).with_detail(detail),
        BillingError::BillVoided(_) => {
            Problem::new(StatusCode::CONFLICT, "bill-voided", "Bill voided").with_detail(detail)
        }
        BillingError::BillPaid(_) => {
            Problem::new(StatusCode::CONFLICT, "bill-paid", "Bill already paid").with_detail(detail)
        }
        BillingError::Overpayment { .. } => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "overpayment",
            "Overpayment",
        )
        .with_field("amount", detail),
        BillingError::CurrencyMismatch { .. } => Problem::invalid_field("currency", detail),
        BillingError::NoRefundDue(_) => Problem::new(
            StatusCode::CONFLICT,
            "no-refund-due",
            "Nothing is owed back",
        )
        .with_detail(detail),
        BillingError::OverRefund { .. } => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "over-refund",
            "More than is owed back",
        )
        .with_field("amount", detail),
    }
}

impl From<BillingError> for Failure {
    fn from(e: BillingError) -> Self {
        Failure::Refused(problem(&e))
    }
}

#[derive(Clone)]
pub struct BillStore {
    db: Db,
}

impl BillStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    async fn locked_bill(
        &self,
        tx: &mut WriteTx,
        column: &str,
        value: &str,
    ) -> Result<Option<Bill>, sqlx::Error> {
        let sql = format!(
            "SELECT {BILL_COLUMNS} FROM bills WHERE {column} = $1{}",
            self.db.for_update()
        );
        let row = sqlx::query(&sql)
            .bind(value)
            .fetch_optional(&mut **tx)
            .await?;
        row.as_ref().map(bill_from_row).transpose()
    }

    async fn save_bill(&self, tx: &mut WriteTx, bill: &Bill) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE bills SET amount_minor = $1, paid_minor = $2, pending_minor = $3, \
             refunded_minor = $4, status = $5, updated_at = $6 WHERE id = $7",
        )
        .bind(bill.amount.amount_minor)
        .bind(bill.paid_minor)
        .bind(bill.pending_minor)
        .bind(bill.refunded_minor)
        .bind(bill.status.as_str())
        .bind(time::to_db(time::now()))
        .bind(&bill.id)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Generates the bill of an appointment, once: `None` when it already exists.
    pub async fn generate(
        &self,
        tx: &mut WriteTx,
        appointment_id: &str,
        patient_id: &str,
        amount: Money,
        meta: &EventMeta,
    ) -> Result<Option<Bill>, sqlx::Error> {
        let id = tally_kernel::id::new_v7().to_string();
        let now = time::to_db(time::now());
        let inserted = sqlx::query(
            "INSERT INTO bills (id, appointment_id, patient_id, amount_minor, currency, status, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'open', $6, $6) \
             ON CONFLICT (appointment_id) DO NOTHING",
        )
        .bind(&id)
        .bind(appointment_id)
        .bind(patient_id)
        .bind(amount.amount_minor)
        .bind(amount.currency.code())
        .bind(&now)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(None);
        }
        let bill = Bill {
            id,
            appointment_id: appointment_id.to_owned(),
            patient_id: patient_id.to_owned(),
            amount,
            paid_minor: 0,
            pending_minor: 0,
            refunded_minor: 0,
            status: BillStatus::Open,
        };
        let event = BillingEvent::BillGenerated {
            bill_id: bill.id.clone(),
            appointment_id: bill.appointment_id.clone(),
            patient_id: bill.patient_id.clone(),
            amount_minor: amount.amount_minor,
            currency: amount.currency,
        };
        outbox::publish(&self.db, tx, SERVICE, meta, &[event]).await?;
        Ok(Some(bill))
    }

    /// A closed consultation: the bill is adjusted to the final price, the finance record is
    /// written, and the bill is paid (or what was paid beyond the price refunded) as it stands.
    pub async fn close(
        &self,
        tx: &mut WriteTx,
        closed: &Closed,
        gateway: &dyn CardGateway,
        meta: &EventMeta,
    ) -> Result<(), Failure> {
        let currency = Currency::parse(&closed.currency).map_err(anyhow::Error::from)?;
        let price = Money::new(closed.price_minor, currency);
        if self
            .locked_bill(tx, "appointment_id", &closed.appointment_id)
            .await?
            .is_none()
        {
            self.generate(tx, &closed.appointment_id, &closed.patient_id, price, meta)
                .await?;
        }
        let mut bill = self
            .locked_bill(tx, "appointment_id", &closed.appointment_id)
            .await?
            .ok_or_else(|| {
                anyhow::anyhow!("the bill of appointment {} vanished", closed.appointment_id)
            })?;
        sqlx::query(
            "INSERT INTO finance_records (appointment_id, bill_id, patient_id, physician_id, \
             started_at, ended_at, duration_minutes, price_minor, currency, recorded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (appointment_id) DO NOTHING",
        )
        .bind(&closed.appointment_id)
        .bind(&bill.id)
        .bind(&closed.patient_id)
        .bind(&closed.physician_id)
        .bind(&closed.start)
        .bind(&closed.end)
        .bind(closed.duration_minutes)
        .bind(closed.price_minor)
        .bind(currency.code())
        .bind(time::to_db(time::now()))
        .execute(&mut **tx)
        .await?;
        if bill.status == BillStatus::Voided {
            return Ok(());
        }
        let previous = bill.amount.amount_minor;
        bill.amount = price;
        let mut events = vec![BillingEvent::BillAdjusted {
            bill_id: bill.id.clone(),
            appointment_id: bill.appointment_id.clone(),
            patient_id: bill.patient_id.clone(),
            previous_amount_minor: previous,
            amount_minor: price.amount_minor,
            currency,
        }];
        events.extend(self.settle(tx, &mut bill, gateway, meta).await?);
        self.save_bill(tx, &bill).await?;
        outbox::publish(&self.db, tx, SERVICE, meta, &events).await?;
        Ok(())
    }

    /// Brings a bill's status in line with its amount and what it holds, after any change:
    /// a voided bill gives back whatever it still holds (a wallet payment completing late);
    /// otherwise what is held beyond the amount is refunded, a paid bill whose amount grew is
    /// open again, and an open bill that is covered (with no wallet payment in flight) is paid.
    async fn settle(
        &self,
        tx: &mut WriteTx,
        bill: &mut Bill,
        gateway: &dyn CardGateway,
        meta: &EventMeta,
    ) -> Result<Vec<BillingEvent>, Failure> {
        if bill.status == BillStatus::Voided {
            let held = bill.held_minor();
            if held > 0 {
                self.refund(tx, bill, held, RefundTo::Original, gateway, meta)
                    .await?;
            }
            return Ok(Vec::new());
        }
        let excess = bill.held_minor() - bill.amount.amount_minor;
        if excess > 0 {
            self.refund(tx, bill, excess, RefundTo::Original, gateway, meta)
                .await?;
        }
        if bill.status == BillStatus::Paid && !bill.is_covered() {
            bill.status = BillStatus::Open;
        }
        if bill.status == BillStatus::Open && bill.pending_minor == 0 && bill.is_covered() {
            bill.status = BillStatus::Paid;
            return Ok(vec![paid_event(bill)]);
        }
        Ok(Vec::new())
    }

    /// A cancelled appointment: the unpaid part is voided and what was paid is refunded.
    pub async fn cancel(
        &self,
        tx: &mut WriteTx,
        appointment_id: &str,
        gateway: &dyn CardGateway,
        meta: &EventMeta,
    ) -> Result<(), Failure> {
        let Some(mut bill) = self
            .locked_bill(tx, "appointment_id", appointment_id)
            .await?
        else {
            return Ok(());
        };
        if bill.status == BillStatus::Voided {
            return Ok(());
        }
        let voided = (bill.amount.amount_minor - bill.held_minor()).max(0);
        let held = bill.held_minor();
        let refunded: i64 = self
            .refund(tx, &mut bill, held, RefundTo::Original, gateway, meta)
            .await?
            .iter()
            .map(|r| r.amount.amount_minor)
            .sum();
        bill.status = BillStatus::Voided;
        self.save_bill(tx, &bill).await?;
        let event = BillingEvent::BillVoided {
            bill_id: bill.id.clone(),
            appointment_id: bill.appointment_id.clone(),
            patient_id: bill.patient_id.clone(),
            voided_minor: voided,
            refunded_minor: refunded,
            currency: bill.amount.currency,
        };
        outbox::publish(&self.db, tx, SERVICE, meta, &[event]).await?;
        Ok(())
    }

    /// Gives back up to `amount_minor` of the bill's completed payments, newest first, each
    /// payment at most what is left of it. Card refunds go to the gateway and cash is handed
    /// back at the desk: both are completed at once. A wallet refund is requested from the
    /// wallets service and stays pending until it answers; it counts as refunded meanwhile, so
    /// nothing is given back twice, and is taken back out if the credit fails.
    async fn refund(
        &self,
        tx: &mut WriteTx,
        bill: &mut Bill,
        amount_minor: i64,
        to: RefundTo,
        gateway: &dyn CardGateway,
        meta: &EventMeta,
    ) -> Result<Vec<RefundRow>, Failure> {
        let sql = format!(
            "SELECT {PAYMENT_COLUMNS}, gateway_reference FROM payments \
             WHERE bill_id = $1 AND status = 'completed' ORDER BY created_at DESC, id DESC{}",
            self.db.for_update()
        );
        let rows = sqlx::query(&sql)
            .bind(&bill.id)
            .fetch_all(&mut **tx)
            .await?;
        let mut remaining = amount_minor;
        let mut events = Vec::new();
        let mut refunds = Vec::new();
        for row in &rows {
            if remaining <= 0 {
                break;
            }
            let payment = payment_from_row(row)?;
            let take = (payment.amount.amount_minor - payment.refunded_minor).min(remaining);
            if take <= 0 {
                continue;
            }
            let amount = Money::new(take, payment.amount.currency);
            let refund_id = tally_kernel::id::new_v7().to_string();
            let (method, wallet_id) = match to {
                RefundTo::Original => (payment.method, payment.wallet_id),
                RefundTo::Cash => (Method::Cash, None),
                RefundTo::Wallet(wallet) => (Method::Wallet, Some(wallet)),
            };
            match method {
                Method::Card => {
                    let reference: Option<String> = row.try_get(11)?;
                    // The same refund of the same payment for the same cause, however often
                    // the transaction is retried or the event delivered.
                    let key = format!("refund:{}:{}", meta.causation_id, payment.id);
                    gateway
                        .refund(reference.as_deref().unwrap_or_default(), amount, &key)
                        .await
                        .map_err(anyhow::Error::from)?;
                }
                Method::Wallet => events.push(BillingEvent::WalletRequest {
                    event_type: WALLET_CREDIT_REQUESTED,
                    request_id: refund_id.clone(),
                    wallet_id: wallet_id.unwrap_or_default(),
                    amount_minor: take,
                    currency: amount.currency,
                    reference: bill.id.clone(),
                }),
                Method::Cash => {}
            }
            let now = time::to_db(time::now());
            let (status, settled_at) = match method {
                Method::Wallet => ("pending", None),
                _ => ("completed", Some(now.clone())),
            };
            sqlx::query(
                "INSERT INTO refunds (id, payment_id, bill_id, amount_minor, method, status, \
                 wallet_id, created_at, settled_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&refund_id)
            .bind(&payment.id)
            .bind(&bill.id)
            .bind(take)
            .bind(method.as_str())
            .bind(status)
            .bind(wallet_id)
            .bind(&now)
            .bind(&settled_at)
            .execute(&mut **tx)
            .await?;
            sqlx::query("UPDATE payments SET refunded_minor = refunded_minor + $1, updated_at = $2 WHERE id = $3")
                .bind(take)
                .bind(&now)
                .bind(&payment.id)
                .execute(&mut **tx)
                .await?;
            let refund = RefundRow {
                id: refund_id,
                payment_id: payment.id.clone(),
                bill_id: bill.id.clone(),
                method,
                amount,
                status: status.to_owned(),
                wallet_id,
                wallet_transaction: None,
                failure_reason: None,
                created_at: now,
                settled_at,
            };
            if refund.status == "completed" {
                events.push(refund_event(
                    PAYMENT_REFUNDED,
                    &refund,
                    bill,
                    payment.method,
                    None,
                ));
            }
            refunds.push(refund);
            bill.refunded_minor += take;
            remaining -= take;
        }
        outbox::publish(&self.db, tx, SERVICE, meta, &events).await?;
        Ok(refunds)
    }

    /// A refund the clinic asks for: gives back `amount` (by default everything owed back) of
    /// what the bill holds beyond its amount, or of everything it holds once voided, in cash
    /// or into a wallet. What is owed back is only above zero after a refund failed.
    ///
    /// `amount` is read in the bill's currency, which `currency`, when given, must be.
    #[allow(clippy::too_many_arguments)]
    pub async fn give_back(
        &self,
        tx: &mut WriteTx,
        bill_id: &str,
        amount: Option<&Decimal>,
        currency: Option<Currency>,
        to: RefundTo,
        gateway: &dyn CardGateway,
        meta: &EventMeta,
    ) -> Result<Vec<RefundRow>, Failure> {
        let mut bill = self
            .locked_bill(tx, "id", bill_id)
            .await?
            .ok_or_else(|| BillingError::BillNotFound(bill_id.to_owned()))?;
        let currency = currency.unwrap_or(bill.amount.currency);
        let amount = match amount {
            Some(decimal) => decimal
                .to_positive_money(currency)
                .map_err(|e| Problem::invalid_field("amount", e.to_string()))?,
            None => Money::new(bill.refund_due_minor(), currency),
        };
        bill.accept_refund(amount)?;
        let refunds = self
            .refund(tx, &mut bill, amount.amount_minor, to, gateway, meta)
            .await?;
        self.save_bill(tx, &bill).await?;
        Ok(refunds)
    }

    /// The wallets service's answer to a wallet refund (`wallet.credit_completed` or
    /// `wallet.credit_failed`, whose `request_id` is the refund id): `Ok` with the ledger's
    /// transaction number, or `Err` with the reason. A completed credit completes the refund; a
    /// failed one fails it and its amount is held by the bill again, owed back until the clinic
    /// refunds it another way. Answers to credits billing did not ask for (trading's) match no
    /// refund and change nothing.
    pub async fn credit_answer(
        &self,
        tx: &mut WriteTx,
        refund_id: &str,
        outcome: Result<Option<&str>, &str>,
        meta: &EventMeta,
    ) -> Result<(), Failure> {
        let Some(row) = sqlx::query("SELECT bill_id FROM refunds WHERE id = $1")
            .bind(refund_id)
            .fetch_optional(&mut **tx)
            .await?
        else {
            return Ok(());
        };
        let bill_id: String = row.try_get(0)?;
        // The bill first, as every other change to a bill's refunds locks it.
        let mut bill = self
            .locked_bill(tx, "id", &bill_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("refund {refund_id} has no bill"))?;
        let sql = format!(
            "SELECT {REFUND_COLUMNS}, p.method FROM refunds r \
             JOIN payments p ON p.id = r.payment_id WHERE r.id = $1{}",
            self.db.for_update()
        );
        let row = sqlx::query(&sql)
            .bind(refund_id)
            .fetch_one(&mut **tx)
            .await?;
        let refund = refund_from_row(&row)?;
        if refund.status != "pending" {
            return Ok(());
        }
        let payment_method: String = row.try_get(12)?;
        let payment_method = Method::parse(&payment_method)
            .ok_or_else(|| anyhow::anyhow!("payment method {payment_method}"))?;
        let now = time::to_db(time::now());
        let event = match outcome {
            Ok(number) => {
                sqlx::query(
                    "UPDATE refunds SET status = 'completed', wallet_transaction = $1, \
                     settled_at = $2 WHERE id = $3",
                )
                .bind(number)
                .bind(&now)
                .bind(refund_id)
                .execute(&mut **tx)
                .await?;
                refund_event(PAYMENT_REFUNDED, &refund, &bill, payment_method, None)
            }
            Err(reason) => {
                sqlx::query(
                    "UPDATE refunds SET status = 'failed', failure_reason = $1, settled_at = $2 \
                     WHERE id = $3",
                )
                .bind(reason)
                .bind(&now)
                .bind(refund_id)
                .execute(&mut **tx)
                .await?;
                sqlx::query(
                    "UPDATE payments SET refunded_minor = refunded_minor - $1, updated_at = $2 \
                     WHERE id = $3",
                )
                .bind(refund.amount.amount_minor)
                .bind(&now)
                .bind(&refund.payment_id)
                .execute(&mut **tx)
                .await?;
                bill.refunded_minor -= refund.amount.amount_minor;
                self.save_bill(tx, &bill).await?;
                refund_event(
                    PAYMENT_REFUND_FAILED,
                    &refund,
                    &bill,
                    payment_method,
                    Some(reason),
                )
            }
        };
        outbox::publish(&self.db, tx, SERVICE, meta, &[event]).await?;
        Ok(())
    }

    /// Takes a payment. Cash and approved cards complete at once; a declined card is recorded as
    /// a failed payment; a wallet payment waits for the wallets service's answer.
    ///
    /// `amount` is read in the bill's currency, which `currency`, when given, must be.
    #[allow(clippy::too_many_arguments)]
    pub async fn pay(
        &self,
        tx: &mut WriteTx,
        bill_id: &str,
        amount: &Decimal,
        currency: Option<Currency>,
        means: &PaymentMeans,
        gateway: &dyn CardGateway,
        charge_key: &str,
        meta: &EventMeta,
    ) -> Result<(Bill, PaymentRow), Failure> {
        let mut bill = self
            .locked_bill(tx, "id", bill_id)
            .await?
            .ok_or_else(|| BillingError::BillNotFound(bill_id.to_owned()))?;
        let amount = amount
            .to_positive_money(currency.unwrap_or(bill.amount.currency))
            .map_err(|e| Problem::invalid_field("amount", e.to_string()))?;
        bill.accept_payment(amount)?;
        let payment_id = tally_kernel::id::new_v7().to_string();
        let (method, status, reason, last4, wallet_id, reference) = match means {
            PaymentMeans::Cash => (Method::Cash, "completed", None, None, None, None),
            PaymentMeans::Card(card) => match gateway
                .charge(card, amount, charge_key)
                .await
                .map_err(anyhow::Error::from)?
            {
                ChargeOutcome::Approved { reference } => (
                    Method::Card,
                    "completed",
                    None,
                    Some(card.last4().to_owned()),
                    None,
                    Some(reference),
                ),
                ChargeOutcome::Declined { reason } => (
                    Method::Card,
                    "failed",
                    Some(reason),
                    Some(card.last4().to_owned()),
                    None,
                    None,
                ),
            },
            PaymentMeans::Wallet(wallet) => {
                (Method::Wallet, "pending", None, None, Some(*wallet), None)
            }
        };
        let now = time::to_db(time::now());
        sqlx::query(
            "INSERT INTO payments (id, bill_id, patient_id, method, amount_minor, currency, status, \
             failure_reason, card_last4, wallet_id, gateway_reference, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)",
        )
        .bind(&payment_id)
        .bind(&bill.id)
        .bind(&bill.patient_id)
        .bind(method.as_str())
        .bind(amount.amount_minor)
        .bind(amount.currency.code())
        .bind(status)
        .bind(&reason)
        .bind(&last4)
        .bind(wallet_id)
        .bind(&reference)
        .bind(&now)
        .execute(&mut **tx)
        .await?;
        let mut events = Vec::new();
        match status {
            "completed" => {
                bill.paid_minor += amount.amount_minor;
                events.push(payment_event(
                    PAYMENT_COMPLETED,
                    &payment_id,
                    &bill,
                    method,
                    amount,
                    None,
                ));
                if bill.pending_minor == 0 && bill.is_covered() {
                    bill.status = BillStatus::Paid;
                    events.push(paid_event(&bill));
                }
            }
            "failed" => events.push(payment_event(
                PAYMENT_FAILED,
                &payment_id,
                &bill,
                method,
                amount,
                reason.clone(),
            )),
            _ => {
                bill.pending_minor += amount.amount_minor;
                events.push(BillingEvent::WalletRequest {
                    event_type: WALLET_DEBIT_REQUESTED,
                    request_id: payment_id.clone(),
                    wallet_id: wallet_id.unwrap_or_default(),
                    amount_minor: amount.amount_minor,
                    currency: amount.currency,
                    reference: bill.id.clone(),
                });
            }
        }
        self.save_bill(tx, &bill).await?;
        outbox::publish(&self.db, tx, SERVICE, meta, &events).await?;
        let payment = PaymentRow {
            id: payment_id,
            bill_id: bill.id.clone(),
            method,
            amount,
            status: status.to_owned(),
            refunded_minor: 0,
            failure_reason: reason,
            card_last4: last4,
            wallet_id,
            created_at: now,
        };
        Ok((bill, payment))
    }

    /// The wallets service's answer to a wallet payment: it completes, or fails with a reason.
    /// A payment completing on a bill voided meanwhile is refunded at once.
    pub async fn wallet_answer(
        &self,
        tx: &mut WriteTx,
        payment_id: &str,
        transaction_number: Option<&str>,
        reason: Option<&str>,
        gateway: &dyn CardGateway,
        meta: &EventMeta,
    ) -> Result<(), Failure> {
        let sql = format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1{}",
            self.db.for_update()
        );
        let Some(row) = sqlx::query(&sql)
            .bind(payment_id)
            .fetch_optional(&mut **tx)
            .await?
        else {
            return Err(Failure::Internal(anyhow::anyhow!(
                "no payment {payment_id} waits for a wallet"
            )));
        };
        let payment = payment_from_row(&row)?;
        if payment.status != "pending" {
            return Ok(());
        }
        let mut bill = self
            .locked_bill(tx, "id", &payment.bill_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("payment {payment_id} has no bill"))?;
        bill.pending_minor -= payment.amount.amount_minor;
        let completed = transaction_number.is_some();
        sqlx::query(
            "UPDATE payments SET status = $1, wallet_transaction = $2, failure_reason = $3, updated_at = $4 WHERE id = $5",
        )
        .bind(if completed { "completed" } else { "failed" })
        .bind(transaction_number)
        .bind(reason)
        .bind(time::to_db(time::now()))
        .bind(payment_id)
        .execute(&mut **tx)
        .await?;
        let mut events = Vec::new();
        if completed {
            bill.paid_minor += payment.amount.amount_minor;
            events.push(payment_event(
                PAYMENT_COMPLETED,
                payment_id,
                &bill,
                Method::Wallet,
                payment.amount,
                None,
            ));
        } else {
            events.push(payment_event(
                PAYMENT_FAILED,
                payment_id,
                &bill,
                Method::Wallet,
                payment.amount,
                reason.map(str::to_owned),
            ));
        }
        outbox::publish(&self.db, tx, SERVICE, meta, &events).await?;
        let settled = self.settle(tx, &mut bill, gateway, meta).await?;
        outbox::publish(&self.db, tx, SERVICE, meta, &settled).await?;
        self.save_bill(tx, &bill).await?;
        Ok(())
    }

    // Reads.

    pub async fn bill(&self, id: &str) -> Result<Option<BillRecord>, sqlx::Error> {
        let sql = format!("SELECT {BILL_COLUMNS} FROM bills WHERE id = $1");
        let Some(row) = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(self.db.reader())
            .await?
        else {
            return Ok(None);
        };
        let bill = bill_from_row(&row)?;
        let sql = format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE bill_id = $1 ORDER BY created_at, id"
        );
        let payments = sqlx::query(&sql)
            .bind(id)
            .fetch_all(self.db.reader())
            .await?
            .iter()
            .map(payment_from_row)
            .collect::<Result<_, _>>()?;
        let finance = sqlx::query(
            "SELECT physician_id, started_at, ended_at, duration_minutes, price_minor, currency \
             FROM finance_records WHERE bill_id = $1",
        )
        .bind(id)
        .fetch_optional(self.db.reader())
        .await?
        .map(|r| -> Result<FinanceRecord, sqlx::Error> {
            let currency: String = r.try_get(5)?;
            Ok(FinanceRecord {
                physician_id: r.try_get(0)?,
                started_at: r.try_get(1)?,
                ended_at: r.try_get(2)?,
                duration_minutes: r.try_get(3)?,
                price: Money::new(r.try_get(4)?, Currency::parse(&currency).map_err(decode)?),
            })
        })
        .transpose()?;
        let sql = format!(
            "SELECT {REFUND_COLUMNS} FROM refunds r JOIN payments p ON p.id = r.payment_id \
             WHERE r.bill_id = $1 ORDER BY r.created_at, r.id"
        );
        let refunds = sqlx::query(&sql)
            .bind(id)
            .fetch_all(self.db.reader())
            .await?
            .iter()
            .map(refund_from_row)
            .collect::<Result<_, _>>()?;
        Ok(Some(BillRecord {
            bill,
            payments,
            refunds,
            finance,
        }))
    }

    /// A patient's bills, newest first; `before` is a bill id from a previous page.
    pub async fn bills_of_patient(
        &self,
        patient_id: &str,
        limit: i64,
        before: Option<&str>,
    ) -> Result<Vec<Bill>, sqlx::Error> {
        let sql = format!(
            "SELECT {BILL_COLUMNS} FROM bills WHERE patient_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
        );
        sqlx::query(&sql)
            .bind(patient_id)
            .bind(before.unwrap_or("~"))
            .bind(limit)
            .fetch_all(self.db.reader())
            .await?
            .iter()
            .map(bill_from_row)
            .collect()
    }
}

fn paid_event(bill: &Bill) -> BillingEvent {
    BillingEvent::BillPaid {
        bill_id: bill.id.clone(),
        appointment_id: bill.appointment_id.clone(),
        patient_id: bill.patient_id.clone(),
        amount_minor: bill.amount.amount_minor,
        currency: bill.amount.currency,
    }
}

fn refund_event(
    event_type: &'static str,
    refund: &RefundRow,
    bill: &Bill,
    payment_method: Method,
    reason: Option<&str>,
) -> BillingEvent {
    BillingEvent::Refund {
        event_type,
        refund_id: refund.id.clone(),
        payment_id: refund.payment_id.clone(),
        bill_id: bill.id.clone(),
        patient_id: bill.patient_id.clone(),
        method: payment_method,
        refund_method: refund.method,
        amount_minor: refund.amount.amount_minor,
        currency: refund.amount.currency,
        reason: reason.map(str::to_owned),
    }
}

fn payment_event(
    event_type: &'static str,
    payment_id: &str,
    bill: &Bill,
    method: Method,
    amount: Money,
    reason: Option<String>,
) -> BillingEvent {
    BillingEvent::Payment {
        event_type,
        payment_id: payment_id.to_owned(),
        bill_id: bill.id.clone(),
        patient_id: bill.patient_id.clone(),
        method,
        amount_minor: amount.amount_minor,
        currency: amount.currency,
        reason,
    }
}
