//! Requests from other services and from callers of the `payment` channel, each applied once (the
//! bus's inbox) and answered with an event in the same transaction.
//!
//! `wallets.payments` moves or reserves a wallet's money for another service: billing's wallet
//! payments and their refunds, trading's holds and their capture. `wallets.payment-channel` is
//! document 003's Payment service: users and their money, asked for in messages on `payment`
//! and answered on `payment-response`.
//!
//! A refusal (too little money, an unknown wallet or user, a bad amount or field) is an answer,
//! not a failure: the requester learns why. Only a database error is retried, and only an event
//! this service cannot read at all (an unknown version, data of the wrong shape from a service)
//! goes to the dead letters.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tally_bus::{outbox, Consumer, Handler, HandlerError};
use tally_db::{Db, WriteTx};
use tally_http::{Failure, Problem};
use tally_kernel::{Currency, Decimal, Envelope, EventMeta, Money};

use super::store::{Direction, Store};
use crate::domain::events::{
    PaymentReply, ReplyStatus, WalletEvent, CAPTURE_COMPLETED, CAPTURE_FAILED, CAPTURE_REQUESTED,
    CREDIT_COMPLETED, CREDIT_FAILED, CREDIT_REQUESTED, DEBIT_COMPLETED, DEBIT_FAILED,
    DEBIT_REQUESTED, HOLD_COMPLETED, HOLD_FAILED, HOLD_REQUESTED, PAYMENT,
};
use crate::domain::payment::{self, PaymentCommand, PaymentMessage};
use crate::domain::{ClientName, Login};
use crate::SERVICE;

pub const PAYMENTS_CONSUMER: &str = "wallets.payments";
pub const PAYMENT_CHANNEL_CONSUMER: &str = "wallets.payment-channel";

/// Longest `reference` a hold request may give the hold.
pub const MAX_HOLD_REFERENCE_CHARS: usize = 200;

/// Debits a wallet for `wallet.debit_requested`, credits it for `wallet.credit_requested`, places
/// a hold for `wallet.hold_requested` and captures one for `wallet.capture_requested`.
pub fn payments_consumer(db: Db) -> Consumer {
    Consumer {
        name: PAYMENTS_CONSUMER,
        topics: &[
            DEBIT_REQUESTED,
            CREDIT_REQUESTED,
            HOLD_REQUESTED,
            CAPTURE_REQUESTED,
        ],
        handler: Arc::new(Payments {
            store: Store::new(db.clone()),
        }),
        db,
    }
}

/// Answers document 003's payment messages on `payment`; users added without a currency get
/// wallets in `default_currency`.
pub fn payment_channel_consumer(db: Db, default_currency: Currency) -> Consumer {
    Consumer {
        name: PAYMENT_CHANNEL_CONSUMER,
        topics: &[PAYMENT],
        handler: Arc::new(PaymentChannel {
            store: Store::new(db.clone()),
            default_currency,
        }),
        db,
    }
}

fn permanent(message: String) -> HandlerError {
    HandlerError::Permanent(anyhow::anyhow!(message))
}

fn check_version(event: &Envelope) -> Result<(), HandlerError> {
    if event.version != 1 {
        return Err(permanent(format!(
            "{} version {} is not known",
            event.event_type, event.version
        )));
    }
    Ok(())
}

/// The data of a request from another service. Data of another shape is a defect of the sender,
/// which no retry mends.
fn request_data<T: DeserializeOwned>(event: &Envelope) -> Result<T, HandlerError> {
    serde_json::from_value(event.data.clone())
        .map_err(|e| permanent(format!("{} data does not parse: {e}", event.event_type)))
}

fn currency_of(event: &Envelope, code: &str) -> Result<Currency, HandlerError> {
    Currency::parse(code).map_err(|e| permanent(format!("{} currency {e}", event.event_type)))
}

/// Minor units as the exact decimal the store's amount parameters take.
fn decimal_of(amount_minor: i64, currency: Currency) -> Decimal {
    Decimal::parse(&Money::new(amount_minor, currency).to_decimal_string())
        .expect("a formatted amount is a decimal")
}

/// Starts one request's effect inside the consumer's transaction; [`settle`] ends it.
async fn begin_effect(tx: &mut WriteTx) -> Result<(), HandlerError> {
    sqlx::query("SAVEPOINT wallets_request")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Keeps the effect, or undoes it when the store refused: whatever it wrote before refusing
/// (and, on PostgreSQL, the failed statement of a taken login, which would otherwise abort the
/// whole transaction) is rolled back, so the answer commits alone. A database error is retried.
async fn settle<T>(
    tx: &mut WriteTx,
    result: Result<T, Failure>,
) -> Result<Result<T, Problem>, HandlerError> {
    let outcome = match result {
        Ok(value) => Ok(value),
        Err(Failure::Refused(problem)) => {
            sqlx::query("ROLLBACK TO SAVEPOINT wallets_request")
                .execute(&mut **tx)
                .await?;
            Err(problem)
        }
        Err(Failure::Db(e)) => return Err(HandlerError::Transient(e.into())),
        Err(Failure::Internal(e)) => return Err(HandlerError::Transient(e)),
    };
    sqlx::query("RELEASE SAVEPOINT wallets_request")
        .execute(&mut **tx)
        .await?;
    Ok(outcome)
}

/// A refusal in one sentence: its detail (`client 12 does not exist`, `amount: has more
/// decimals than USD allows (2)`), or its title and the refused field's detail
/// (`insufficient funds: wallet 3 has 1.00 USD available; 2.00 USD requested`).
fn sentence(problem: Problem) -> String {
    if let Some(detail) = problem.detail {
        return detail;
    }
    let title = problem.title.to_lowercase();
    match problem.errors.into_iter().next() {
        Some(field) => format!("{title}: {}", field.detail),
        None => title,
    }
}

fn is_problem(problem: &Problem, slug: &str) -> bool {
    problem.type_uri.rsplit('/').next() == Some(slug)
}

#[derive(Debug, Deserialize)]
struct MoneyRequest {
    request_id: String,
    wallet_id: i64,
    amount_minor: i64,
    currency: String,
}

#[derive(Debug, Deserialize)]
struct HoldRequest {
    request_id: String,
    wallet_id: i64,
    amount_minor: i64,
    currency: String,
    #[serde(default)]
    reference: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CaptureRequest {
    request_id: String,
    hold_id: String,
    wallet_id: i64,
    amount_minor: i64,
    currency: String,
}

/// What every answer to another service's request says: which request, which wallet, how much.
struct Asked {
    request_id: String,
    wallet_id: i64,
    amount_minor: i64,
    currency: Currency,
}

impl Asked {
    fn answer(
        self,
        event_type: &'static str,
        hold_id: Option<String>,
        transaction_number: Option<String>,
        reason: Option<String>,
    ) -> WalletEvent {
        WalletEvent::RequestAnswered {
            event_type,
            request_id: self.request_id,
            hold_id,
            wallet_id: self.wallet_id,
            amount_minor: self.amount_minor,
            currency: self.currency,
            transaction_number,
            reason,
        }
    }
}

struct Payments {
    store: Store,
}

impl Payments {
    async fn apply(&self, tx: &mut WriteTx, event: &Envelope) -> Result<(), HandlerError> {
        check_version(event)?;
        let meta = EventMeta::caused_by(event);
        let answer = match event.event_type.as_str() {
            HOLD_REQUESTED => self.hold(tx, event, &meta).await?,
            CAPTURE_REQUESTED => self.capture(tx, event, &meta).await?,
            DEBIT_REQUESTED => {
                self.move_money(tx, event, Direction::Withdrawal, &meta)
                    .await?
            }
            CREDIT_REQUESTED => {
                self.move_money(tx, event, Direction::Deposit, &meta)
                    .await?
            }
            other => {
                return Err(permanent(format!(
                    "{other} is not a topic of {PAYMENTS_CONSUMER}"
                )))
            }
        };
        outbox::publish(self.store.db(), tx, SERVICE, &meta, &[answer]).await?;
        Ok(())
    }

    /// Withdraws from (debit) or deposits into (credit) the wallet.
    async fn move_money(
        &self,
        tx: &mut WriteTx,
        event: &Envelope,
        direction: Direction,
        meta: &EventMeta,
    ) -> Result<WalletEvent, HandlerError> {
        let request: MoneyRequest = request_data(event)?;
        let currency = currency_of(event, &request.currency)?;
        let (completed, failed) = match direction {
            Direction::Withdrawal => (DEBIT_COMPLETED, DEBIT_FAILED),
            Direction::Deposit => (CREDIT_COMPLETED, CREDIT_FAILED),
        };
        let amount = decimal_of(request.amount_minor, currency);
        begin_effect(tx).await?;
        let moved = self
            .store
            .move_external(
                tx,
                direction,
                request.wallet_id,
                &amount,
                Some(currency),
                meta,
            )
            .await;
        let asked = Asked {
            request_id: request.request_id,
            wallet_id: request.wallet_id,
            amount_minor: request.amount_minor,
            currency,
        };
        Ok(match settle(tx, moved).await? {
            Ok(movement) => asked.answer(completed, None, Some(movement.transaction_number), None),
            Err(problem) => asked.answer(failed, None, None, Some(sentence(problem))),
        })
    }

    /// Reserves the amount of the wallet's available balance (`hold.placed`).
    async fn hold(
        &self,
        tx: &mut WriteTx,
        event: &Envelope,
        meta: &EventMeta,
    ) -> Result<WalletEvent, HandlerError> {
        let request: HoldRequest = request_data(event)?;
        let currency = currency_of(event, &request.currency)?;
        let asked = Asked {
            request_id: request.request_id,
            wallet_id: request.wallet_id,
            amount_minor: request.amount_minor,
            currency,
        };
        let reference = request.reference.as_deref();
        if reference.is_some_and(|r| r.chars().count() > MAX_HOLD_REFERENCE_CHARS) {
            let reason = format!("reference is longer than {MAX_HOLD_REFERENCE_CHARS} characters");
            return Ok(asked.answer(HOLD_FAILED, None, None, Some(reason)));
        }
        let amount = decimal_of(asked.amount_minor, currency);
        begin_effect(tx).await?;
        let placed = self
            .store
            .place_hold(
                tx,
                asked.wallet_id,
                &amount,
                Some(currency),
                reference,
                meta,
            )
            .await;
        Ok(match settle(tx, placed).await? {
            Ok(receipt) => asked.answer(HOLD_COMPLETED, Some(receipt.hold.id), None, None),
            Err(problem) => asked.answer(HOLD_FAILED, None, None, Some(sentence(problem))),
        })
    }

    /// Captures the whole hold into the currency's external account (`hold.captured`): the
    /// money leaves the ledger. The request must name the hold as it was placed (its wallet,
    /// amount and currency); a hold no longer placed is refused, so no hold is captured twice.
    async fn capture(
        &self,
        tx: &mut WriteTx,
        event: &Envelope,
        meta: &EventMeta,
    ) -> Result<WalletEvent, HandlerError> {
        let request: CaptureRequest = request_data(event)?;
        let currency = currency_of(event, &request.currency)?;
        let hold_id = request.hold_id;
        let asked = Asked {
            request_id: request.request_id,
            wallet_id: request.wallet_id,
            amount_minor: request.amount_minor,
            currency,
        };
        let requested = Money::new(asked.amount_minor, currency);
        begin_effect(tx).await?;
        let captured = async {
            let hold = self.store.hold_in(tx, &hold_id).await?;
            if hold.wallet_id != asked.wallet_id || hold.amount != requested {
                return Ok(Err(format!(
                    "hold {hold_id} is for {} on wallet {}, not {requested} on wallet {}",
                    hold.amount, hold.wallet_id, asked.wallet_id
                )));
            }
            self.store
                .capture_hold(tx, &hold_id, None, None, meta)
                .await
                .map(Ok)
        }
        .await;
        Ok(match settle(tx, captured).await? {
            Ok(Ok(receipt)) => asked.answer(
                CAPTURE_COMPLETED,
                Some(hold_id),
                receipt.transaction_number,
                None,
            ),
            Ok(Err(reason)) => asked.answer(CAPTURE_FAILED, Some(hold_id), None, Some(reason)),
            Err(problem) => {
                asked.answer(CAPTURE_FAILED, Some(hold_id), None, Some(sentence(problem)))
            }
        })
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

struct PaymentChannel {
    store: Store,
    default_currency: Currency,
}

impl PaymentChannel {
    async fn apply(&self, tx: &mut WriteTx, event: &Envelope) -> Result<(), HandlerError> {
        check_version(event)?;
        let request_id = event.id.to_string();
        let meta = EventMeta::caused_by(event);
        let message = payment::parse(&event.data);
        let reply = match message.command.clone() {
            Err(reason) => base_reply(&request_id, &message, ReplyStatus::Error, reason),
            Ok(command) => {
                begin_effect(tx).await?;
                let done = self
                    .execute(tx, &request_id, &message, command, &meta)
                    .await;
                match settle(tx, done).await? {
                    Ok(reply) => reply,
                    Err(problem) => {
                        let reason = if is_problem(&problem, "login-taken") {
                            String::from("login is already taken")
                        } else {
                            sentence(problem)
                        };
                        base_reply(&request_id, &message, ReplyStatus::Error, reason)
                    }
                }
            }
        };
        let reply = WalletEvent::PaymentReplied(reply);
        outbox::publish(self.store.db(), tx, SERVICE, &meta, &[reply]).await?;
        Ok(())
    }

    /// Carries out one command through the same store functions as the HTTP API, so the usual
    /// events (`client.created`, `funds.deposited`...) are published too.
    async fn execute(
        &self,
        tx: &mut WriteTx,
        request_id: &str,
        message: &PaymentMessage,
        command: PaymentCommand,
        meta: &EventMeta,
    ) -> Result<PaymentReply, Failure> {
        let ok = |text: String| base_reply(request_id, message, ReplyStatus::Ok, text);
        match command {
            PaymentCommand::AddUser {
                login,
                name,
                currency,
            } => {
                let login = match login {
                    Some(login) => login,
                    None => Login::parse(&format!("trader-{request_id}"))
                        .map_err(|e| anyhow::anyhow!("the default login {e}"))?,
                };
                let name = match name {
                    Some(name) => name,
                    None => ClientName::parse("Trading user")
                        .map_err(|e| anyhow::anyhow!("the default name {e}"))?,
                };
                let currency = currency.unwrap_or(self.default_currency);
                let (client, wallet) = self
                    .store
                    .create_client(tx, &login, &name, currency, meta)
                    .await?;
                Ok(PaymentReply {
                    user_id: Some(client.id),
                    wallet_id: Some(wallet.id),
                    currency: Some(currency),
                    ..ok(format!(
                        "user {} added with wallet {} in {currency}",
                        client.id, wallet.id
                    ))
                })
            }
            PaymentCommand::RemoveUser { user_id } => {
                // Removing a removed client is a no-op over HTTP; here it is a refusal, as is
                // anything else asked of a removed user.
                self.store.active_client(tx, user_id).await?;
                self.store.remove_client(tx, user_id, meta).await?;
                Ok(ok(format!("user {user_id} removed")))
            }
            PaymentCommand::Deposit { user_id, amount } => {
                self.move_money(tx, Direction::Deposit, user_id, &amount, meta, ok)
                    .await
            }
            PaymentCommand::Withdraw { user_id, amount } => {
                self.move_money(tx, Direction::Withdrawal, user_id, &amount, meta, ok)
                    .await
            }
            PaymentCommand::UserInfo { user_id } => {
                let wallet = self.store.primary_wallet(tx, user_id).await?;
                let balance = wallet.money(wallet.balance_minor);
                let available = wallet.money(wallet.available_minor());
                Ok(PaymentReply {
                    wallet_id: Some(wallet.id),
                    currency: Some(wallet.currency),
                    amount: Some(balance.to_decimal_string()),
                    available: Some(available.to_decimal_string()),
                    ..ok(format!(
                        "wallet {} holds {balance}, {available} available",
                        wallet.id
                    ))
                })
            }
        }
    }

    /// A deposit into, or a withdrawal from, the user's primary wallet, in its currency.
    async fn move_money(
        &self,
        tx: &mut WriteTx,
        direction: Direction,
        user_id: i64,
        amount: &Decimal,
        meta: &EventMeta,
        ok: impl FnOnce(String) -> PaymentReply,
    ) -> Result<PaymentReply, Failure> {
        let wallet = self.store.primary_wallet(tx, user_id).await?;
        let movement = self
            .store
            .move_external(tx, direction, wallet.id, amount, None, meta)
            .await?;
        let balance = movement.wallet.money(movement.wallet.balance_minor);
        let text = match direction {
            Direction::Deposit => format!(
                "deposited {} into wallet {}; balance {balance}",
                movement.amount, wallet.id
            ),
            Direction::Withdrawal => format!(
                "withdrew {} from wallet {}; balance {balance}",
                movement.amount, wallet.id
            ),
        };
        Ok(PaymentReply {
            wallet_id: Some(wallet.id),
            currency: Some(wallet.currency),
            amount: Some(balance.to_decimal_string()),
            transaction_number: Some(movement.transaction_number),
            ..ok(text)
        })
    }
}

/// A reply echoing the message's `id`, `type` and `user_id`, with nothing else filled in.
fn base_reply(
    request_id: &str,
    message: &PaymentMessage,
    status: ReplyStatus,
    text: String,
) -> PaymentReply {
    PaymentReply {
        request_id: request_id.to_owned(),
        id: message.id.clone(),
        request_type: message.request_type.clone(),
        status,
        message: text,
        user_id: message.user_id,
        wallet_id: None,
        currency: None,
        amount: None,
        available: None,
        transaction_number: None,
    }
}

impl Handler for PaymentChannel {
    fn handle<'a>(
        &'a self,
        _db: &'a Db,
        tx: &'a mut WriteTx,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(self.apply(tx, event))
    }
}
