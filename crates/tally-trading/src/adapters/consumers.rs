//! Trading's consumer of the wallets service's events: users from client events, replies to
//! payment messages, and the answers to its holds, captures and credits. One consumer reads them
//! all, in the wallets log's order, so a user is known before the reply that created it.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};
use tally_bus::{Consumer, Handler, HandlerError};
use tally_db::{Db, WriteTx};
use tally_kernel::{Currency, Envelope, EventMeta};

use super::store::Store;
use crate::domain::events::*;
use crate::domain::Side;

pub const WALLETS_CONSUMER: &str = "trading.wallets";

/// The topics of [`wallets_consumer`].
pub const CONSUMES: &[&str] = &[
    CLIENT_CREATED,
    CLIENT_REMOVED,
    PAYMENT_RESPONSE,
    HOLD_COMPLETED,
    HOLD_FAILED,
    CAPTURE_COMPLETED,
    CAPTURE_FAILED,
    CREDIT_COMPLETED,
    CREDIT_FAILED,
];

pub fn wallets_consumer(db: Db) -> Consumer {
    Consumer {
        name: WALLETS_CONSUMER,
        topics: CONSUMES,
        handler: Arc::new(WalletEvents {
            store: Store::new(db.clone()),
        }),
        db,
    }
}

#[derive(Deserialize)]
struct ClientCreated {
    client_id: i64,
    wallet_id: i64,
    currency: String,
}

#[derive(Deserialize)]
struct ClientRemoved {
    client_id: i64,
}

#[derive(Deserialize)]
struct Answer {
    request_id: String,
    hold_id: Option<String>,
    reason: Option<String>,
}

struct WalletEvents {
    store: Store,
}

fn data<T: DeserializeOwned>(event: &Envelope) -> Result<T, HandlerError> {
    serde_json::from_value(event.data.clone()).map_err(|e| {
        HandlerError::Permanent(anyhow::anyhow!(
            "{} data does not parse: {e}",
            event.event_type
        ))
    })
}

/// The side of the orders a capture (BUY) or credit (SELL) answer settles. Answers to other
/// services' requests (billing's refunds) match no order and change nothing.
fn side_of(event: &Envelope) -> Side {
    match event.event_type.as_str() {
        CAPTURE_COMPLETED | CAPTURE_FAILED => Side::Buy,
        _ => Side::Sell,
    }
}

impl WalletEvents {
    async fn apply(&self, tx: &mut WriteTx, event: &Envelope) -> Result<(), HandlerError> {
        if event.version != 1 {
            return Err(HandlerError::Permanent(anyhow::anyhow!(
                "{} version {} is not known to trading",
                event.event_type,
                event.version
            )));
        }
        let meta = EventMeta::caused_by(event);
        match event.event_type.as_str() {
            CLIENT_CREATED => {
                let created: ClientCreated = data(event)?;
                let currency = Currency::parse(&created.currency)
                    .map_err(|e| HandlerError::Permanent(e.into()))?;
                self.store
                    .user_created(tx, created.client_id, created.wallet_id, currency)
                    .await?;
            }
            CLIENT_REMOVED => {
                let removed: ClientRemoved = data(event)?;
                self.store.user_removed(tx, removed.client_id).await?;
            }
            PAYMENT_RESPONSE => {
                let answer: Map<String, Value> = data(event)?;
                let Some(request_id) = answer.get("request_id").and_then(Value::as_str) else {
                    return Err(HandlerError::Permanent(anyhow::anyhow!(
                        "payment-response without a request_id"
                    )));
                };
                let request_id = request_id.to_owned();
                self.store.payment_answered(tx, &request_id, answer).await?;
            }
            HOLD_COMPLETED => {
                let answer: Answer = data(event)?;
                let Some(hold_id) = answer.hold_id else {
                    return Err(HandlerError::Permanent(anyhow::anyhow!(
                        "{HOLD_COMPLETED} without a hold_id"
                    )));
                };
                self.store
                    .hold_placed(tx, &answer.request_id, &hold_id, &meta)
                    .await?;
            }
            HOLD_FAILED => {
                let answer: Answer = data(event)?;
                let reason = answer
                    .reason
                    .unwrap_or_else(|| "the wallet refused the hold".to_owned());
                self.store
                    .hold_refused(tx, &answer.request_id, &reason, &meta)
                    .await?;
            }
            CAPTURE_COMPLETED | CREDIT_COMPLETED => {
                let answer: Answer = data(event)?;
                self.store
                    .money_moved(tx, &answer.request_id, side_of(event), &meta)
                    .await?;
            }
            CAPTURE_FAILED | CREDIT_FAILED => {
                let answer: Answer = data(event)?;
                let reason = answer
                    .reason
                    .unwrap_or_else(|| "the wallets service refused it".to_owned());
                self.store
                    .money_refused(tx, &answer.request_id, side_of(event), &reason, &meta)
                    .await?;
            }
            other => {
                return Err(HandlerError::Permanent(anyhow::anyhow!(
                    "trading does not consume {other}"
                )))
            }
        }
        Ok(())
    }
}

impl Handler for WalletEvents {
    fn handle<'a>(
        &'a self,
        _db: &'a Db,
        tx: &'a mut WriteTx,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(self.apply(tx, event))
    }
}
