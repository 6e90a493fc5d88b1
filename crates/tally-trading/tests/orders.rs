//! Trading's orders against real SQLite and PostgreSQL: the wallets service's answers delivered
//! through the consumer's inbox as the bus delivers them, once, twice, or as two distinct events;
//! and SELLs racing for the same units.

use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::{json, Value};
use sqlx::Row as _;
use tally_bus::consumer::Applied;
use tally_bus::Consumer;
use tally_db::both_backends;
use tally_db::testing::{TestBackend, TestLocation};
use tally_db::Db;
use tally_kernel::{Envelope, EventMeta};
use tally_trading::adapters::store::{Store, Submitted};
use tally_trading::domain::message;

struct App {
    _loc: TestLocation,
    db: Db,
    store: Store,
    consumer: Consumer,
    seq: AtomicI64,
}

async fn app(backend: TestBackend) -> Option<App> {
    let loc = TestLocation::new(backend).await?;
    let db = Db::open_and_migrate(&loc.settings(), &tally_trading::SCHEMA)
        .await
        .expect("the trading database opens and migrates");
    Some(App {
        _loc: loc,
        store: Store::new(db.clone()),
        consumer: tally_trading::wallets_consumer(db.clone()),
        db,
        seq: AtomicI64::new(0),
    })
}

/// An event of the wallets service.
fn wallets_event(topic: &str, data: Value) -> Envelope {
    Envelope {
        id: tally_kernel::id::new_v7(),
        event_type: topic.into(),
        version: 1,
        source: "wallets".into(),
        aggregate_type: "wallet".into(),
        aggregate_id: "70".into(),
        occurred_at: tally_kernel::time::now(),
        correlation_id: "corr".into(),
        causation_id: "cause".into(),
        data,
    }
}

impl App {
    async fn deliver(&self, event: &Envelope) -> Applied {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        self.consumer
            .apply("wallets", seq, event)
            .await
            .expect("the event is applied")
    }

    /// User 7 with wallet 70 in USD, as wallets' `client.created` tells trading.
    async fn user(&self) {
        let created = wallets_event(
            "client.created",
            json!({"client_id": 7, "login": "ann", "name": "Ann", "wallet_id": 70, "currency": "USD"}),
        );
        assert_eq!(self.deliver(&created).await, Applied::Applied);
    }

    async fn submit(&self, caller: &str, text: &str) -> Submitted {
        let message = message::parse(text).expect("a valid message");
        self.store
            .submit(caller, &message, &EventMeta::from_request("req"))
            .await
            .expect("the message is stored")
    }

    /// The data of every event of `topic` in trading's log, oldest first.
    async fn outbox(&self, topic: &str) -> Vec<Value> {
        sqlx::query("SELECT envelope FROM outbox WHERE topic = $1 ORDER BY created_at, id")
            .bind(topic)
            .fetch_all(self.db.reader())
            .await
            .unwrap()
            .iter()
            .map(|r| {
                serde_json::from_str::<Envelope>(&r.try_get::<String, _>(0).unwrap())
                    .unwrap()
                    .data
            })
            .collect()
    }

    async fn count(&self, table: &str) -> i64 {
        sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(self.db.reader())
            .await
            .unwrap()
            .try_get(0)
            .unwrap()
    }

    async fn held(&self, symbol: &str) -> i64 {
        self.store
            .holdings(7)
            .await
            .unwrap()
            .into_iter()
            .find(|h| h.symbol == symbol)
            .map_or(0, |h| h.quantity)
    }

    /// Buys `units` of `symbol` at 1.00 and answers its hold: the units are held after.
    async fn buy(&self, id: &str, symbol: &str, units: i64) {
        let text = json!({"id": id, "type": "BUY", "user_id": 7, "symbol": symbol, "price": "1.00", "amount": units}).to_string();
        let Submitted::Pending(order_id) = self.submit("token-a", &text).await else {
            panic!("a BUY waits for its hold");
        };
        let held = wallets_event(
            "wallet.hold_completed",
            json!({"request_id": order_id, "wallet_id": 70, "amount_minor": units * 100, "currency": "USD", "hold_id": format!("hold-{id}")}),
        );
        assert_eq!(self.deliver(&held).await, Applied::Applied);
    }
}

async fn a_buy_executes_once_however_often_its_hold_is_answered(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    app.user().await;
    let buy = r#"{"id":"b1","type":"BUY","user_id":7,"symbol":"ACME","price":"12.50","amount":3}"#;
    let Submitted::Pending(order_id) = app.submit("token-a", buy).await else {
        panic!("a BUY waits for its hold");
    };
    let requested = app.outbox("wallet.hold_requested").await;
    assert_eq!(
        requested,
        vec![
            json!({"request_id": order_id, "wallet_id": 70, "amount_minor": 3750, "currency": "USD", "reference": format!("order:{order_id}")})
        ]
    );
    // The message sent again before the answer: the same pending request, no second hold.
    assert_eq!(
        app.submit("token-a", buy).await,
        Submitted::Pending(order_id.clone())
    );
    assert_eq!(app.outbox("wallet.hold_requested").await.len(), 1);

    let answer = wallets_event(
        "wallet.hold_completed",
        json!({"request_id": order_id, "wallet_id": 70, "amount_minor": 3750, "currency": "USD", "hold_id": "h-1"}),
    );
    assert_eq!(app.deliver(&answer).await, Applied::Applied);
    assert_eq!(app.deliver(&answer).await, Applied::Duplicate);
    // The same answer published twice (a distinct event): the order is no longer pending.
    let again = wallets_event("wallet.hold_completed", answer.data.clone());
    assert_eq!(app.deliver(&again).await, Applied::Applied);

    assert_eq!(app.held("ACME").await, 3);
    assert_eq!(app.count("trades").await, 1);
    let executed = app.outbox("trade.executed").await;
    assert_eq!(executed.len(), 1);
    assert_eq!(executed[0]["total_minor"], 3750);
    assert_eq!(executed[0]["side"], "BUY");
    let capture = app.outbox("wallet.capture_requested").await;
    assert_eq!(
        capture,
        vec![
            json!({"request_id": order_id, "hold_id": "h-1", "wallet_id": 70, "amount_minor": 3750, "currency": "USD"})
        ]
    );
    let Submitted::Decided(reply) = app.submit("token-a", buy).await else {
        panic!("the BUY is decided");
    };
    assert_eq!(reply["status"], "OK");
    assert_eq!(reply["id"], "b1");
    assert_eq!(reply["total"], "37.50");
    // Another token's message with the same id is another request.
    assert!(matches!(
        app.submit("token-b", buy).await,
        Submitted::Pending(other) if other != order_id
    ));

    let captured = wallets_event(
        "wallet.capture_completed",
        json!({"request_id": order_id, "hold_id": "h-1", "wallet_id": 70, "amount_minor": 3750, "currency": "USD", "transaction_number": "t"}),
    );
    app.deliver(&captured).await;
    let order = app
        .store
        .order(&order_id)
        .await
        .unwrap()
        .expect("the order");
    assert_eq!(order.status, "executed");
    assert!(order.settled);
}

both_backends!(a_buy_executes_once_however_often_its_hold_is_answered);

async fn a_refused_hold_rejects_the_order(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    app.user().await;
    let buy = r#"{"id":9,"type":"BUY","user_id":7,"symbol":"ACME","price":"10","amount":"50"}"#;
    let Submitted::Pending(order_id) = app.submit("token-a", buy).await else {
        panic!("a BUY waits for its hold");
    };
    let refused = wallets_event(
        "wallet.hold_failed",
        json!({"request_id": order_id, "wallet_id": 70, "amount_minor": 50_000, "currency": "USD", "reason": "insufficient funds: wallet 70 has 0.00 USD available; 500.00 USD requested"}),
    );
    app.deliver(&refused).await;
    // A late success for a rejected order changes nothing.
    let late = wallets_event(
        "wallet.hold_completed",
        json!({"request_id": order_id, "wallet_id": 70, "amount_minor": 50_000, "currency": "USD", "hold_id": "h"}),
    );
    app.deliver(&late).await;
    assert_eq!(app.held("ACME").await, 0);
    assert_eq!(app.count("trades").await, 0);
    assert!(app.outbox("wallet.capture_requested").await.is_empty());
    let rejected = app.outbox("trade.rejected").await;
    assert_eq!(rejected.len(), 1);
    assert!(rejected[0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("insufficient funds"));
    let Submitted::Decided(reply) = app.submit("token-a", buy).await else {
        panic!("the BUY is decided");
    };
    assert_eq!(reply["status"], "ERROR");
    assert_eq!(reply["id"], 9);
    assert_eq!(reply["order_id"], json!(order_id));
}

both_backends!(a_refused_hold_rejects_the_order);

async fn sells_racing_for_units_never_oversell(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    app.user().await;
    app.buy("b", "ZED", 5).await;
    assert_eq!(app.held("ZED").await, 5);
    let sells = (0..20).map(|i| {
        let app = &app;
        async move {
            let text = json!({"id": format!("s{i}"), "type": "SELL", "user_id": 7, "symbol": "ZED", "price": "2.00", "amount": 1}).to_string();
            match app.submit("token-a", &text).await {
                Submitted::Decided(reply) => reply["status"] == "OK",
                Submitted::Pending(_) => panic!("a SELL is decided at once"),
            }
        }
    });
    let sold = futures_util::future::join_all(sells)
        .await
        .into_iter()
        .filter(|ok| *ok)
        .count();
    assert_eq!(sold, 5, "exactly the units held are sold");
    assert_eq!(app.held("ZED").await, 0);
    let credits = app.outbox("wallet.credit_requested").await;
    assert_eq!(credits.len(), 5);
    assert!(credits.iter().all(|c| c["amount_minor"] == 200));
    assert_eq!(app.outbox("trade.rejected").await.len(), 15);
}

both_backends!(sells_racing_for_units_never_oversell);

async fn answers_meant_for_others_change_nothing(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    app.user().await;
    // Billing's refunds are credited too; their answers name no order of trading's.
    let refund = wallets_event(
        "wallet.credit_completed",
        json!({"request_id": "billing-payment-1", "wallet_id": 70, "amount_minor": 100, "currency": "USD", "transaction_number": "t"}),
    );
    assert_eq!(app.deliver(&refund).await, Applied::Applied);
    let failed = wallets_event(
        "wallet.credit_failed",
        json!({"request_id": "billing-payment-2", "wallet_id": 70, "amount_minor": 100, "currency": "USD", "reason": "closed"}),
    );
    assert_eq!(app.deliver(&failed).await, Applied::Applied);
    // A reply to a payment message an integrator published on the topic itself.
    let reply = wallets_event(
        "payment-response",
        json!({"request_id": "someone-else", "id": 1, "type": "USER_INFO", "status": "OK", "message": "m"}),
    );
    assert_eq!(app.deliver(&reply).await, Applied::Applied);
    assert_eq!(app.count("orders").await, 0);
    assert_eq!(app.count("requests").await, 0);

    // A removed user's orders are refused at once.
    let removed = wallets_event("client.removed", json!({"client_id": 7}));
    app.deliver(&removed).await;
    let sell = r#"{"id":"s","type":"SELL","user_id":7,"symbol":"ZED","price":"1","amount":1}"#;
    let Submitted::Decided(reply) = app.submit("token-a", sell).await else {
        panic!("refused at once");
    };
    assert!(reply["message"].as_str().unwrap().contains("was removed"));
    assert_eq!(app.count("orders").await, 0);
}

both_backends!(answers_meant_for_others_change_nothing);
