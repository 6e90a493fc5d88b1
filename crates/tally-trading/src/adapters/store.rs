//! Trading's tables: requests with their replies, users (from wallets' events), orders, trades
//! and holdings. Every change and the events it causes commit in one transaction.
//!
//! An order executes only once its money has moved, so no units change hands without their
//! money: a BUY's hold is placed and then captured before the units join the holdings; a SELL's
//! units are set aside at once (no other SELL can take them) and the trade is written when the
//! wallets service has credited the proceeds. A refused capture or credit rejects the order, and
//! a SELL's units go back to the holdings.

use serde_json::{json, Map, Value};
use sqlx::Row as _;
use tally_bus::outbox;
use tally_db::{classify, Db, DbErrorKind, ServiceSchema, WriteTx};
use tally_kernel::{time, Currency, Envelope, EventMeta, Money};

use crate::domain::events::TradingEvent;
use crate::domain::message::{error_reply, reply};
use crate::domain::{self, events, Body, Message, OrderRequest, Side};
use crate::SERVICE;

pub static SCHEMA: std::sync::LazyLock<ServiceSchema> =
    std::sync::LazyLock::new(|| ServiceSchema {
        name: SERVICE,
        sqlite: sqlx::migrate!("migrations/sqlite"),
        postgres: sqlx::migrate!("migrations/postgres"),
    });

/// Attempts at a submission that lost a race for its message id (PostgreSQL).
const MAX_SUBMIT_ATTEMPTS: u32 = 3;

/// What became of a submitted message.
#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    /// Its reply is known.
    Decided(Value),
    /// Another service decides it (the wallets service answers): wait for the reply of this
    /// request.
    Pending(String),
}

/// A trading user as trading knows it: a wallets client and its wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
struct User {
    wallet_id: i64,
    currency: Currency,
    active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    pub symbol: String,
    pub quantity: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: String,
    pub user_id: i64,
    pub wallet_id: i64,
    pub side: Side,
    pub symbol: String,
    pub quantity: i64,
    pub price: Money,
    pub total: Money,
    pub status: String,
    pub reason: Option<String>,
    /// The hold of a BUY, once the wallets service placed it.
    pub hold_id: Option<String>,
    pub settled: bool,
}

const ORDER_COLUMNS: &str = "id, user_id, wallet_id, side, symbol, quantity, price_minor, \
                             total_minor, currency, status, reason, hold_id, settled";

fn order_from_row(row: &sqlx::any::AnyRow) -> Result<Order, sqlx::Error> {
    let currency: String = row.try_get(8)?;
    let currency = Currency::parse(&currency).map_err(|e| sqlx::Error::Decode(e.into()))?;
    let side: String = row.try_get(3)?;
    Ok(Order {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        wallet_id: row.try_get(2)?,
        side: Side::parse(&side)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown side {side}").into()))?,
        symbol: row.try_get(4)?,
        quantity: row.try_get(5)?,
        price: Money::new(row.try_get(6)?, currency),
        total: Money::new(row.try_get(7)?, currency),
        status: row.try_get(9)?,
        reason: row.try_get(10)?,
        hold_id: row.try_get(11)?,
        settled: row.try_get::<i64, _>(12)? != 0,
    })
}

/// The reply to an executed order.
fn executed_reply(id: &Value, order: &Order, trade_id: &str) -> Value {
    let verb = match order.side {
        Side::Buy => "bought",
        Side::Sell => "sold",
    };
    let mut extra = Map::new();
    extra.insert("order_id".into(), json!(order.id));
    extra.insert("trade_id".into(), json!(trade_id));
    extra.insert("user_id".into(), json!(order.user_id));
    extra.insert("symbol".into(), json!(order.symbol));
    extra.insert("amount".into(), json!(order.quantity.to_string()));
    extra.insert("price".into(), json!(order.price.to_decimal_string()));
    extra.insert("total".into(), json!(order.total.to_decimal_string()));
    extra.insert("currency".into(), json!(order.total.currency.code()));
    let message = format!(
        "{verb} {} {} at {} {}",
        order.quantity,
        order.symbol,
        order.price.to_decimal_string(),
        order.price.currency
    );
    reply(id, true, &message, extra)
}

fn rejected_reply(id: &Value, order_id: Option<&str>, reason: &str) -> Value {
    let mut extra = Map::new();
    if let Some(order_id) = order_id {
        extra.insert("order_id".into(), json!(order_id));
    }
    reply(id, false, reason, extra)
}

#[derive(Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Stores a checked message from `caller` (a token id) and does what it asks, or finds the
    /// earlier message with the same id and returns its reply. A payment message is published
    /// on the `payment` topic for the wallets service; a BUY asks the wallets service for a
    /// hold; a SELL sets its units aside and asks for its proceeds, or is refused at once.
    pub async fn submit(
        &self,
        caller: &str,
        message: &Message,
        meta: &EventMeta,
    ) -> Result<Submitted, sqlx::Error> {
        let canonical = message.canonical();
        let key = message.id_key();
        let mut attempt = 1;
        loop {
            let mut tx = self.db.begin_write().await?;
            if let Some(key) = &key {
                let earlier = sqlx::query(
                    "SELECT id, message, reply FROM requests WHERE caller = $1 AND message_id = $2",
                )
                .bind(caller)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(row) = earlier {
                    tx.rollback().await?;
                    let id: String = row.try_get(0)?;
                    let stored: String = row.try_get(1)?;
                    let stored_reply: Option<String> = row.try_get(2)?;
                    if stored != canonical {
                        return Ok(Submitted::Decided(error_reply(
                            &message.id,
                            "id: already used for a different message; send a new id",
                        )));
                    }
                    return Ok(match stored_reply {
                        Some(text) => Submitted::Decided(parse_reply(&text)?),
                        None => Submitted::Pending(id),
                    });
                }
            }
            let request_id = tally_kernel::id::new_v7();
            let inserted = sqlx::query(
                "INSERT INTO requests (id, caller, message_id, kind, message, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(request_id.to_string())
            .bind(caller)
            .bind(key.as_deref())
            .bind(message.kind.as_str())
            .bind(&canonical)
            .bind(time::to_db(time::now()))
            .execute(&mut *tx)
            .await;
            match inserted {
                Err(e)
                    if classify(&e) == DbErrorKind::UniqueViolation
                        && attempt < MAX_SUBMIT_ATTEMPTS =>
                {
                    // The same id arrived twice at once; the other one won: read its reply.
                    tx.rollback().await?;
                    attempt += 1;
                    continue;
                }
                other => other?,
            };
            let submitted = match &message.body {
                Body::Payment(data) => {
                    let envelope = Envelope {
                        id: request_id,
                        event_type: events::PAYMENT.to_owned(),
                        version: 1,
                        source: SERVICE.to_owned(),
                        aggregate_type: "request".to_owned(),
                        aggregate_id: request_id.to_string(),
                        occurred_at: time::now(),
                        correlation_id: meta.correlation_id.clone(),
                        causation_id: meta.causation_id.clone(),
                        data: Value::Object(data.clone()),
                    };
                    outbox::append(&self.db, &mut tx, &[envelope]).await?;
                    Submitted::Pending(request_id.to_string())
                }
                Body::Order(order) => {
                    self.place(&mut tx, &request_id.to_string(), &message.id, order, meta)
                        .await?
                }
            };
            self.db.commit(tx).await?;
            return Ok(submitted);
        }
    }

    /// Places an order in `tx`. Its id is its request's.
    async fn place(
        &self,
        tx: &mut WriteTx,
        order_id: &str,
        id: &Value,
        request: &OrderRequest,
        meta: &EventMeta,
    ) -> Result<Submitted, sqlx::Error> {
        let decided = match self.user_in(tx, request.user_id).await? {
            None => Err(format!(
                "user_id: no user {} is known to trading (ADD_USER creates one)",
                request.user_id
            )),
            Some(user) if !user.active => {
                Err(format!("user_id: user {} was removed", request.user_id))
            }
            Some(user) => match request.price.to_positive_money(user.currency) {
                Err(e) => Err(format!("price: {e}")),
                Ok(price) => match domain::order_total(price.amount_minor, request.quantity) {
                    None => Err("amount: price × amount is past what a wallet can hold".to_owned()),
                    Some(total) => Ok(Order {
                        id: order_id.to_owned(),
                        user_id: request.user_id,
                        wallet_id: user.wallet_id,
                        side: request.side,
                        symbol: request.symbol.clone(),
                        quantity: request.quantity,
                        price,
                        total: Money::new(total, user.currency),
                        status: "pending".to_owned(),
                        reason: None,
                        hold_id: None,
                        settled: false,
                    }),
                },
            },
        };
        let mut order = match decided {
            Ok(order) => order,
            Err(reason) => {
                let answer = rejected_reply(id, None, &reason);
                self.set_reply(tx, order_id, &answer).await?;
                return Ok(Submitted::Decided(answer));
            }
        };
        self.insert_order(tx, &order).await?;
        match order.side {
            Side::Buy => {
                let hold = TradingEvent::HoldRequested {
                    request_id: order.id.clone(),
                    wallet_id: order.wallet_id,
                    amount_minor: order.total.amount_minor,
                    currency: order.total.currency,
                    reference: format!("order:{}", order.id),
                };
                outbox::publish(&self.db, tx, SERVICE, meta, &[hold]).await?;
                Ok(Submitted::Pending(order.id))
            }
            Side::Sell => {
                let now = time::to_db(time::now());
                let taken = sqlx::query(
                    "UPDATE holdings SET quantity = quantity - $1, updated_at = $2 \
                     WHERE user_id = $3 AND symbol = $4 AND quantity >= $1",
                )
                .bind(order.quantity)
                .bind(&now)
                .bind(order.user_id)
                .bind(&order.symbol)
                .execute(&mut **tx)
                .await?;
                if taken.rows_affected() == 0 {
                    let held = self.held_in(tx, order.user_id, &order.symbol).await?;
                    let reason = format!(
                        "insufficient holdings: user {} holds {held} {}, not {}",
                        order.user_id, order.symbol, order.quantity
                    );
                    self.reject(tx, &mut order, id, &reason, meta).await
                } else {
                    // The units are set aside; the trade is written once the proceeds arrive.
                    let credit = TradingEvent::CreditRequested {
                        request_id: order.id.clone(),
                        wallet_id: order.wallet_id,
                        amount_minor: order.total.amount_minor,
                        currency: order.total.currency,
                    };
                    outbox::publish(&self.db, tx, SERVICE, meta, &[credit]).await?;
                    Ok(Submitted::Pending(order.id))
                }
            }
        }
    }

    async fn user_in(&self, tx: &mut WriteTx, user_id: i64) -> Result<Option<User>, sqlx::Error> {
        let row = sqlx::query("SELECT wallet_id, currency, status FROM users WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&mut **tx)
            .await?;
        row.map(|row| {
            let currency: String = row.try_get(1)?;
            let status: String = row.try_get(2)?;
            Ok(User {
                wallet_id: row.try_get(0)?,
                currency: Currency::parse(&currency).map_err(|e| sqlx::Error::Decode(e.into()))?,
                active: status == "active",
            })
        })
        .transpose()
    }

    async fn held_in(
        &self,
        tx: &mut WriteTx,
        user_id: i64,
        symbol: &str,
    ) -> Result<i64, sqlx::Error> {
        let row = sqlx::query("SELECT quantity FROM holdings WHERE user_id = $1 AND symbol = $2")
            .bind(user_id)
            .bind(symbol)
            .fetch_optional(&mut **tx)
            .await?;
        row.map(|r| r.try_get(0))
            .transpose()
            .map(|q| q.unwrap_or(0))
    }

    async fn insert_order(&self, tx: &mut WriteTx, order: &Order) -> Result<(), sqlx::Error> {
        let now = time::to_db(time::now());
        sqlx::query(
            "INSERT INTO orders (id, user_id, wallet_id, side, symbol, quantity, price_minor, \
             total_minor, currency, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $10)",
        )
        .bind(&order.id)
        .bind(order.user_id)
        .bind(order.wallet_id)
        .bind(order.side.as_str())
        .bind(&order.symbol)
        .bind(order.quantity)
        .bind(order.price.amount_minor)
        .bind(order.total.amount_minor)
        .bind(order.total.currency.code())
        .bind(&now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Executes `order`, whose money has moved: a trade, the order executed and settled,
    /// `trade.executed`, and the caller's reply.
    async fn execute(
        &self,
        tx: &mut WriteTx,
        order: &mut Order,
        id: &Value,
        meta: &EventMeta,
    ) -> Result<Submitted, sqlx::Error> {
        let now = time::to_db(time::now());
        let trade_id = tally_kernel::id::new_v7().to_string();
        sqlx::query(
            "INSERT INTO trades (id, order_id, user_id, side, symbol, quantity, price_minor, \
             total_minor, currency, executed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&trade_id)
        .bind(&order.id)
        .bind(order.user_id)
        .bind(order.side.as_str())
        .bind(&order.symbol)
        .bind(order.quantity)
        .bind(order.price.amount_minor)
        .bind(order.total.amount_minor)
        .bind(order.total.currency.code())
        .bind(&now)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "UPDATE orders SET status = 'executed', settled = 1, updated_at = $1 WHERE id = $2",
        )
        .bind(&now)
        .bind(&order.id)
        .execute(&mut **tx)
        .await?;
        order.status = "executed".to_owned();
        order.settled = true;
        let executed = TradingEvent::TradeExecuted {
            trade_id: trade_id.clone(),
            order_id: order.id.clone(),
            user_id: order.user_id,
            wallet_id: order.wallet_id,
            side: order.side.as_str(),
            symbol: order.symbol.clone(),
            quantity: order.quantity,
            price_minor: order.price.amount_minor,
            total_minor: order.total.amount_minor,
            currency: order.total.currency,
        };
        outbox::publish(&self.db, tx, SERVICE, meta, &[executed]).await?;
        let answer = executed_reply(id, order, &trade_id);
        self.set_reply(tx, &order.id, &answer).await?;
        Ok(Submitted::Decided(answer))
    }

    async fn reject(
        &self,
        tx: &mut WriteTx,
        order: &mut Order,
        id: &Value,
        reason: &str,
        meta: &EventMeta,
    ) -> Result<Submitted, sqlx::Error> {
        sqlx::query(
            "UPDATE orders SET status = 'rejected', reason = $1, updated_at = $2 WHERE id = $3",
        )
        .bind(reason)
        .bind(time::to_db(time::now()))
        .bind(&order.id)
        .execute(&mut **tx)
        .await?;
        order.status = "rejected".to_owned();
        let rejected = TradingEvent::TradeRejected {
            order_id: order.id.clone(),
            user_id: order.user_id,
            side: order.side.as_str(),
            symbol: order.symbol.clone(),
            quantity: order.quantity,
            price_minor: order.price.amount_minor,
            total_minor: order.total.amount_minor,
            currency: order.total.currency,
            reason: reason.to_owned(),
        };
        outbox::publish(&self.db, tx, SERVICE, meta, &[rejected]).await?;
        let answer = rejected_reply(id, Some(&order.id), reason);
        self.set_reply(tx, &order.id, &answer).await?;
        Ok(Submitted::Decided(answer))
    }

    /// Records a request's reply, unless it has one already. Returns whether it was recorded.
    async fn set_reply(
        &self,
        tx: &mut WriteTx,
        request_id: &str,
        answer: &Value,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE requests SET reply = $1, decided_at = $2 WHERE id = $3 AND reply IS NULL",
        )
        .bind(answer.to_string())
        .bind(time::to_db(time::now()))
        .bind(request_id)
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn message_id_of(
        &self,
        tx: &mut WriteTx,
        request_id: &str,
    ) -> Result<Value, sqlx::Error> {
        let row = sqlx::query("SELECT message_id FROM requests WHERE id = $1")
            .bind(request_id)
            .fetch_optional(&mut **tx)
            .await?;
        let key: Option<String> = match row {
            Some(row) => row.try_get(0)?,
            None => None,
        };
        Ok(key
            .and_then(|k| serde_json::from_str(&k).ok())
            .unwrap_or(Value::Null))
    }

    async fn pending_order_in(
        &self,
        tx: &mut WriteTx,
        order_id: &str,
    ) -> Result<Option<Order>, sqlx::Error> {
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1{}",
            self.db.for_update()
        );
        let row = sqlx::query(&sql)
            .bind(order_id)
            .fetch_optional(&mut **tx)
            .await?;
        Ok(row
            .map(|r| order_from_row(&r))
            .transpose()?
            .filter(|o| o.status == "pending"))
    }

    // What the wallets service says, applied by trading's consumer.

    /// A wallets client became a trading user.
    pub async fn user_created(
        &self,
        tx: &mut WriteTx,
        user_id: i64,
        wallet_id: i64,
        currency: Currency,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO users (user_id, wallet_id, currency, status, updated_at) \
             VALUES ($1, $2, $3, 'active', $4) ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user_id)
        .bind(wallet_id)
        .bind(currency.code())
        .bind(time::to_db(time::now()))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    pub async fn user_removed(&self, tx: &mut WriteTx, user_id: i64) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE users SET status = 'removed', updated_at = $1 WHERE user_id = $2")
            .bind(time::to_db(time::now()))
            .bind(user_id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// The wallets service's reply to a payment message becomes the caller's reply.
    pub async fn payment_answered(
        &self,
        tx: &mut WriteTx,
        request_id: &str,
        mut answer: Map<String, Value>,
    ) -> Result<(), sqlx::Error> {
        answer.remove("request_id");
        answer.remove("type");
        self.set_reply(tx, request_id, &Value::Object(answer))
            .await?;
        Ok(())
    }

    /// The hold for a BUY is in place: it is captured. The order stays pending until the
    /// capture is answered.
    pub async fn hold_placed(
        &self,
        tx: &mut WriteTx,
        order_id: &str,
        hold_id: &str,
        meta: &EventMeta,
    ) -> Result<(), sqlx::Error> {
        let Some(order) = self.pending_order_in(tx, order_id).await? else {
            return Ok(());
        };
        if order.side != Side::Buy || order.hold_id.is_some() {
            return Ok(());
        }
        sqlx::query("UPDATE orders SET hold_id = $1, updated_at = $2 WHERE id = $3")
            .bind(hold_id)
            .bind(time::to_db(time::now()))
            .bind(order_id)
            .execute(&mut **tx)
            .await?;
        let capture = TradingEvent::CaptureRequested {
            request_id: order.id.clone(),
            hold_id: hold_id.to_owned(),
            wallet_id: order.wallet_id,
            amount_minor: order.total.amount_minor,
            currency: order.total.currency,
        };
        outbox::publish(&self.db, tx, SERVICE, meta, &[capture]).await?;
        Ok(())
    }

    /// The wallet refused the hold for a BUY: the order is rejected.
    pub async fn hold_refused(
        &self,
        tx: &mut WriteTx,
        order_id: &str,
        reason: &str,
        meta: &EventMeta,
    ) -> Result<(), sqlx::Error> {
        let Some(mut order) = self.pending_order_in(tx, order_id).await? else {
            return Ok(());
        };
        if order.side != Side::Buy || order.hold_id.is_some() {
            return Ok(());
        }
        let id = self.message_id_of(tx, order_id).await?;
        self.reject(tx, &mut order, &id, reason, meta).await?;
        Ok(())
    }

    /// The pending order `order_id` whose money the wallets service was asked to move for
    /// `side`: a BUY whose hold is to be captured, or a SELL whose proceeds are to be credited.
    /// Answers to other services' requests (billing's refunds) name no such order.
    async fn settling_order_in(
        &self,
        tx: &mut WriteTx,
        order_id: &str,
        side: Side,
    ) -> Result<Option<Order>, sqlx::Error> {
        Ok(self
            .pending_order_in(tx, order_id)
            .await?
            .filter(|o| o.side == side && (side == Side::Sell || o.hold_id.is_some())))
    }

    /// The money of an order moved (its hold captured, or its proceeds credited): the order
    /// executes. A BUY's units join the holdings; a SELL's were taken when it was placed.
    pub async fn money_moved(
        &self,
        tx: &mut WriteTx,
        order_id: &str,
        side: Side,
        meta: &EventMeta,
    ) -> Result<(), sqlx::Error> {
        let Some(mut order) = self.settling_order_in(tx, order_id, side).await? else {
            return Ok(());
        };
        if side == Side::Buy {
            self.add_units(tx, &order).await?;
        }
        let id = self.message_id_of(tx, order_id).await?;
        self.execute(tx, &mut order, &id, meta).await?;
        Ok(())
    }

    /// The wallets service refused to move an order's money: the order is rejected with its
    /// reason, and a SELL's units go back to the holdings. Nothing changed hands.
    pub async fn money_refused(
        &self,
        tx: &mut WriteTx,
        order_id: &str,
        side: Side,
        reason: &str,
        meta: &EventMeta,
    ) -> Result<(), sqlx::Error> {
        let Some(mut order) = self.settling_order_in(tx, order_id, side).await? else {
            return Ok(());
        };
        let reason = match side {
            Side::Buy => format!("the payment could not be taken: {reason}"),
            Side::Sell => {
                self.add_units(tx, &order).await?;
                format!("the proceeds could not be paid: {reason}")
            }
        };
        let id = self.message_id_of(tx, order_id).await?;
        self.reject(tx, &mut order, &id, &reason, meta).await?;
        Ok(())
    }

    /// Adds an order's units to its user's holdings.
    async fn add_units(&self, tx: &mut WriteTx, order: &Order) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO holdings (user_id, symbol, quantity, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, symbol) DO UPDATE SET \
             quantity = holdings.quantity + excluded.quantity, updated_at = excluded.updated_at",
        )
        .bind(order.user_id)
        .bind(&order.symbol)
        .bind(order.quantity)
        .bind(time::to_db(time::now()))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    // Reads: no transaction.

    /// The replies among `request_ids` that are decided.
    pub async fn replies_of(
        &self,
        request_ids: &[String],
    ) -> Result<Vec<(String, Value)>, sqlx::Error> {
        let mut decided = Vec::new();
        for chunk in request_ids.chunks(self.db.rows_per_statement(1)) {
            let params: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT id, reply FROM requests WHERE reply IS NOT NULL AND id IN ({})",
                params.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(self.db.reader()).await? {
                let text: String = row.try_get(1)?;
                decided.push((row.try_get(0)?, parse_reply(&text)?));
            }
        }
        Ok(decided)
    }

    pub async fn holdings(&self, user_id: i64) -> Result<Vec<Holding>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT symbol, quantity FROM holdings WHERE user_id = $1 AND quantity > 0 ORDER BY symbol",
        )
        .bind(user_id)
        .fetch_all(self.db.reader())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Holding {
                    symbol: r.try_get(0)?,
                    quantity: r.try_get(1)?,
                })
            })
            .collect()
    }

    pub async fn order(&self, order_id: &str) -> Result<Option<Order>, sqlx::Error> {
        let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(order_id)
            .fetch_optional(self.db.reader())
            .await?;
        row.map(|r| order_from_row(&r)).transpose()
    }
}

fn parse_reply(text: &str) -> Result<Value, sqlx::Error> {
    serde_json::from_str(text).map_err(|e| sqlx::Error::Decode(e.into()))
}
