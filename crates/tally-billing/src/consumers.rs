//! What billing does with other services' events: bills from appointments, and the answers to
//! its wallet payments and wallet refunds.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::Deserialize;
use tally_bus::{Consumer, Handler, HandlerError};
use tally_db::{Db, WriteTx};
use tally_http::Failure;
use tally_kernel::{Currency, Envelope, EventMeta, Money};

use crate::gateway::CardGateway;
use crate::store::{BillStore, Closed};

pub const BILLS_CONSUMER: &str = "billing.bills";
pub const WALLET_ANSWERS_CONSUMER: &str = "billing.wallet_answers";

pub const APPOINTMENT_BOOKED: &str = "appointment.booked";
pub const APPOINTMENT_CANCELLED: &str = "appointment.cancelled";
pub const CONSULTATION_CLOSED: &str = "consultation.closed";
pub const WALLET_DEBIT_COMPLETED: &str = "wallet.debit_completed";
pub const WALLET_DEBIT_FAILED: &str = "wallet.debit_failed";
pub const WALLET_CREDIT_COMPLETED: &str = "wallet.credit_completed";
pub const WALLET_CREDIT_FAILED: &str = "wallet.credit_failed";

/// Bills: generated on `appointment.booked`, adjusted on `consultation.closed`, voided on
/// `appointment.cancelled`.
pub fn bills_consumer(db: Db, gateway: Arc<dyn CardGateway>) -> Consumer {
    Consumer {
        name: BILLS_CONSUMER,
        topics: &[
            APPOINTMENT_BOOKED,
            CONSULTATION_CLOSED,
            APPOINTMENT_CANCELLED,
        ],
        handler: Arc::new(Bills {
            store: BillStore::new(db.clone()),
            gateway,
        }),
        db,
    }
}

/// Wallet payments and wallet refunds: completed or failed on the wallets service's answer.
pub fn wallet_answers_consumer(db: Db, gateway: Arc<dyn CardGateway>) -> Consumer {
    Consumer {
        name: WALLET_ANSWERS_CONSUMER,
        topics: &[
            WALLET_DEBIT_COMPLETED,
            WALLET_DEBIT_FAILED,
            WALLET_CREDIT_COMPLETED,
            WALLET_CREDIT_FAILED,
        ],
        handler: Arc::new(WalletAnswers {
            store: BillStore::new(db.clone()),
            gateway,
        }),
        db,
    }
}

fn permanent(message: String) -> HandlerError {
    HandlerError::Permanent(anyhow::anyhow!(message))
}

fn data<T: serde::de::DeserializeOwned>(event: &Envelope) -> Result<T, HandlerError> {
    if event.version != 1 {
        return Err(permanent(format!(
            "{} version {} is not known to billing",
            event.event_type, event.version
        )));
    }
    serde_json::from_value(event.data.clone())
        .map_err(|e| permanent(format!("{} data does not parse: {e}", event.event_type)))
}

fn handler_error(failure: Failure) -> HandlerError {
    match failure {
        Failure::Refused(problem) => permanent(problem.detail.unwrap_or(problem.title)),
        Failure::Db(e) => HandlerError::Transient(e.into()),
        Failure::Internal(e) => HandlerError::Transient(e),
    }
}

#[derive(Debug, Deserialize)]
struct Booked {
    appointment_id: String,
    patient_id: String,
    scheduled_price_minor: i64,
    currency: String,
}

#[derive(Debug, Deserialize)]
struct Cancelled {
    appointment_id: String,
}

struct Bills {
    store: BillStore,
    gateway: Arc<dyn CardGateway>,
}

impl Bills {
    async fn apply(&self, tx: &mut WriteTx, event: &Envelope) -> Result<(), HandlerError> {
        let meta = EventMeta::caused_by(event);
        match event.event_type.as_str() {
            APPOINTMENT_BOOKED => {
                let booked: Booked = data(event)?;
                let currency =
                    Currency::parse(&booked.currency).map_err(|e| permanent(e.to_string()))?;
                let amount = Money::new(booked.scheduled_price_minor, currency);
                self.store
                    .generate(
                        tx,
                        &booked.appointment_id,
                        &booked.patient_id,
                        amount,
                        &meta,
                    )
                    .await?;
                Ok(())
            }
            CONSULTATION_CLOSED => {
                let closed: Closed = data(event)?;
                self.store
                    .close(tx, &closed, self.gateway.as_ref(), &meta)
                    .await
                    .map_err(handler_error)
            }
            _ => {
                let cancelled: Cancelled = data(event)?;
                self.store
                    .cancel(tx, &cancelled.appointment_id, self.gateway.as_ref(), &meta)
                    .await
                    .map_err(handler_error)
            }
        }
    }
}

impl Handler for Bills {
    fn handle<'a>(
        &'a self,
        _db: &'a Db,
        tx: &'a mut WriteTx,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(self.apply(tx, event))
    }
}

#[derive(Debug, Deserialize)]
struct Answer {
    request_id: String,
    transaction_number: Option<String>,
    reason: Option<String>,
}

struct WalletAnswers {
    store: BillStore,
    gateway: Arc<dyn CardGateway>,
}

impl Handler for WalletAnswers {
    fn handle<'a>(
        &'a self,
        _db: &'a Db,
        tx: &'a mut WriteTx,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let answer: Answer = data(event)?;
            let meta = EventMeta::caused_by(event);
            let (id, number) = (&answer.request_id, answer.transaction_number.as_deref());
            let reason = |default| answer.reason.as_deref().unwrap_or(default);
            let gateway = self.gateway.as_ref();
            let result = match event.event_type.as_str() {
                WALLET_CREDIT_COMPLETED => {
                    self.store.credit_answer(tx, id, Ok(number), &meta).await
                }
                WALLET_CREDIT_FAILED => {
                    let refused = Err(reason("the wallet refused the credit"));
                    self.store.credit_answer(tx, id, refused, &meta).await
                }
                WALLET_DEBIT_COMPLETED => {
                    self.store
                        .wallet_answer(tx, id, number, None, gateway, &meta)
                        .await
                }
                _ => {
                    let refused = Some(reason("the wallet refused the debit"));
                    self.store
                        .wallet_answer(tx, id, None, refused, gateway, &meta)
                        .await
                }
            };
            result.map_err(handler_error)
        })
    }
}
