//! The wallets service's consumers against real SQLite and PostgreSQL, each test on a fresh
//! database: requests delivered through the consumers' inbox as the bus delivers them, and
//! checked as their senders would: the answer on its topic, the balances after, the events in
//! the service's log, and a ledger that still sums to zero.

mod holds;
mod payment_channel;

use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::{json, Value};
use sqlx::Row as _;
use tally_bus::consumer::Applied;
use tally_bus::{Consumer, HandlerError};
use tally_db::testing::{TestBackend, TestLocation};
use tally_db::Db;
use tally_kernel::{Currency, Envelope};
use tally_wallets::adapters::store::Store;
use tally_wallets::domain::Account;

/// The service on a fresh database, with both consumers.
pub struct App {
    _loc: TestLocation,
    pub db: Db,
    pub store: Store,
    pub channel: Consumer,
    pub payments: Consumer,
    seq: AtomicI64,
}

pub async fn app(backend: TestBackend) -> Option<App> {
    let loc = TestLocation::new(backend).await?;
    let db = Db::open_and_migrate(&loc.settings(), &tally_wallets::SCHEMA)
        .await
        .expect("the wallets database opens and migrates");
    Some(App {
        _loc: loc,
        store: Store::new(db.clone()),
        channel: tally_wallets::payment_channel_consumer(db.clone(), Currency::USD),
        payments: tally_wallets::payments_consumer(db.clone()),
        db,
        seq: AtomicI64::new(0),
    })
}

/// A request as another service publishes it.
pub fn request(topic: &str, data: Value) -> Envelope {
    Envelope {
        id: tally_kernel::id::new_v7(),
        event_type: topic.into(),
        version: 1,
        source: "trading".into(),
        aggregate_type: "request".into(),
        aggregate_id: "test".into(),
        occurred_at: tally_kernel::time::now(),
        correlation_id: "corr-1".into(),
        causation_id: "test".into(),
        data,
    }
}

impl App {
    /// Delivers `event` to `consumer` as the bus would, at the next position of trading's log.
    pub async fn deliver(&self, consumer: &Consumer, event: &Envelope) -> Applied {
        self.try_deliver(consumer, event)
            .await
            .expect("the request is answered, not failed")
    }

    pub async fn try_deliver(
        &self,
        consumer: &Consumer,
        event: &Envelope,
    ) -> Result<Applied, HandlerError> {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        consumer.apply("trading", seq, event).await
    }

    /// Sends one payment message and returns its reply.
    pub async fn pay(&self, message: Value) -> Value {
        let event = request(tally_wallets::PAYMENT, message);
        assert_eq!(self.deliver(&self.channel, &event).await, Applied::Applied);
        let reply = self.reply_to(&event).await;
        assert_eq!(reply["request_id"], json!(event.id.to_string()));
        reply
    }

    /// The one reply to a payment request.
    pub async fn reply_to(&self, event: &Envelope) -> Value {
        let replies: Vec<Envelope> = self
            .envelopes(tally_wallets::PAYMENT_RESPONSE)
            .await
            .into_iter()
            .filter(|e| e.aggregate_id == event.id.to_string())
            .collect();
        assert_eq!(replies.len(), 1, "one reply per request");
        replies[0].data.clone()
    }

    /// A new user with `deposit` (decimal text) in their USD wallet: (user id, wallet id).
    pub async fn user_with(&self, deposit: &str) -> (i64, i64) {
        let added = self.pay(json!({"id": "add", "type": "ADD_USER"})).await;
        assert_eq!(added["status"], "OK", "{added}");
        let user_id = added["user_id"].as_i64().unwrap();
        let deposited = self
            .pay(json!({"id": "dep", "type": "DEPOSIT", "user_id": user_id, "amount": deposit}))
            .await;
        assert_eq!(deposited["status"], "OK", "{deposited}");
        (user_id, added["wallet_id"].as_i64().unwrap())
    }

    /// Every event of `topic` in the service's log, oldest first.
    pub async fn envelopes(&self, topic: &str) -> Vec<Envelope> {
        sqlx::query("SELECT envelope FROM outbox WHERE topic = $1 ORDER BY created_at, id")
            .bind(topic)
            .fetch_all(self.db.reader())
            .await
            .unwrap()
            .iter()
            .map(|r| serde_json::from_str(&r.try_get::<String, _>(0).unwrap()).unwrap())
            .collect()
    }

    /// The data of every event of `topic`, oldest first.
    pub async fn outbox(&self, topic: &str) -> Vec<Value> {
        self.envelopes(topic)
            .await
            .into_iter()
            .map(|e| e.data)
            .collect()
    }

    pub async fn wallet(&self, wallet_id: i64) -> Account {
        self.store.wallet(wallet_id).await.unwrap().unwrap()
    }

    pub async fn transfer_count(&self) -> i64 {
        sqlx::query("SELECT COUNT(*) FROM transfers")
            .fetch_one(self.db.reader())
            .await
            .unwrap()
            .try_get(0)
            .unwrap()
    }

    /// Conservation: per currency, wallets and the external account sum to zero and every
    /// account's balance is the sum of its entries.
    pub async fn assert_ledger_balanced(&self) {
        for currency in self.store.summary().await.unwrap() {
            assert_eq!(
                currency.wallets_minor + currency.external_minor,
                0,
                "{} does not sum to zero",
                currency.currency
            );
            assert_eq!(currency.unbalanced_accounts, 0, "{}", currency.currency);
        }
    }
}
