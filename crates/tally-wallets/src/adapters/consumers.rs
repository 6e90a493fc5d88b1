//! Requests from other services to move a wallet's money: billing's wallet payments and their
//! refunds. Each is applied once (the bus's inbox) and answered with an event.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::Deserialize;
use tally_bus::{outbox, Consumer, Handler, HandlerError};
use tally_db::{Db, WriteTx};
use tally_http::Failure;
use tally_kernel::{Currency, Decimal, Envelope, EventMeta, Money};

use super::store::{Direction, Store};
use crate::domain::events::{
    WalletEvent, CREDIT_COMPLETED, CREDIT_FAILED, CREDIT_REQUESTED, DEBIT_COMPLETED, DEBIT_FAILED,
    DEBIT_REQUESTED,
};
use crate::SERVICE;

pub const PAYMENTS_CONSUMER: &str = "wallets.payments";

/// Debits a wallet for `wallet.debit_requested` and credits it for `wallet.credit_requested`.
pub fn payments_consumer(db: Db) -> Consumer {
    Consumer {
        name: PAYMENTS_CONSUMER,
        topics: &[DEBIT_REQUESTED, CREDIT_REQUESTED],
        handler: Arc::new(Payments {
            store: Store::new(db.clone()),
        }),
        db,
    }
}

#[derive(Debug, Deserialize)]
struct MoneyRequest {
    request_id: String,
    wallet_id: i64,
    amount_minor: i64,
    currency: String,
}

struct Payments {
    store: Store,
}

impl Payments {
    async fn apply(&self, tx: &mut WriteTx, event: &Envelope) -> Result<(), HandlerError> {
        let permanent = |e: String| HandlerError::Permanent(anyhow::anyhow!(e));
        if event.version != 1 {
            return Err(permanent(format!(
                "{} version {} is not known",
                event.event_type, event.version
            )));
        }
        let request: MoneyRequest = serde_json::from_value(event.data.clone())
            .map_err(|e| permanent(format!("{} data does not parse: {e}", event.event_type)))?;
        let currency = Currency::parse(&request.currency).map_err(|e| permanent(e.to_string()))?;
        let (direction, completed, failed) = if event.event_type == DEBIT_REQUESTED {
            (Direction::Withdrawal, DEBIT_COMPLETED, DEBIT_FAILED)
        } else {
            (Direction::Deposit, CREDIT_COMPLETED, CREDIT_FAILED)
        };
        let amount =
            Decimal::parse(&Money::new(request.amount_minor, currency).to_decimal_string())
                .map_err(|e| permanent(format!("amount_minor {e}")))?;
        let meta = EventMeta::caused_by(event);
        let moved = self
            .store
            .move_external(
                tx,
                direction,
                request.wallet_id,
                &amount,
                Some(currency),
                &meta,
            )
            .await;
        // A refusal (insufficient funds, unknown or closed wallet, a bad amount) is an answer,
        // not a failure: the requester learns why. Anything else is retried.
        let (event_type, transaction_number, reason) = match moved {
            Ok(movement) => (completed, Some(movement.transaction_number), None),
            Err(Failure::Refused(problem)) => {
                let reason = problem
                    .errors
                    .first()
                    .map(|e| e.detail.clone())
                    .or(problem.detail);
                (failed, None, Some(reason.unwrap_or(problem.title)))
            }
            Err(Failure::Db(e)) => return Err(HandlerError::Transient(e.into())),
            Err(Failure::Internal(e)) => return Err(HandlerError::Transient(e)),
        };
        let answer = WalletEvent::RequestAnswered {
            event_type,
            request_id: request.request_id,
            wallet_id: request.wallet_id,
            amount_minor: request.amount_minor,
            currency,
            transaction_number,
            reason,
        };
        outbox::publish(self.store.db(), tx, SERVICE, &meta, &[answer]).await?;
        Ok(())
    }
}

impl Handler for Payments {
    fn handle<'a>(
        &'a self,
        _db: &'a Db,
        tx: &'a mut WriteTx,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(self.apply(tx, event))
    }
}
