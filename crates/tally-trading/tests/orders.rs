//! Trading's orders against real SQLite and PostgreSQL: the wallets service's answers delivered
//! through the consumer's inbox as the bus delivers them, once, twice, or as two distinct events;
//! refused captures and credits; and SELLs racing for the same units.

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

    /// Buys `units` of `symbol` at 1.00 and answers its hold and capture: the units are held
    /// after.
    async fn buy(&self, id: &str, symbol: &str, units: i64) {
        let text = json!({"id": id, "type": "BUY", "user_id": 7, "symbol": symbol, "price": "1.00", "amount": units}).to_string();
        let Submitted::Pending(order_id) = self.submit("token-a", &text).await else {
            panic!("a BUY waits for its hold");
        };
        let hold_id = format!("hold-{id}");
        for topic in ["wallet.hold_completed", "wallet.capture_completed"] {
            let answer = answer(topic, &order_id, units * 100, json!({"hold_id": hold_id}));
            assert_eq!(self.deliver(&answer).await, Applied::Applied);
        }
    }

    /// The order's status and whether it is settled.
    async fn order(&self, order_id: &str) -> (String, bool) {
        let order = self
            .store
            .order(order_id)
            .await
            .unwrap()
            .expect("the order");
        (order.status, order.settled)
    }

    /// The reply to `text`, which is decided.
    async fn reply(&self, text: &str) -> Value {
        match self.submit("token-a", text).await {
            Submitted::Decided(reply) => reply,
            Submitted::Pending(id) => panic!("{id} is still pending"),
        }
    }
}

/// The wallets service's answer `topic` to the request `order_id` for `amount_minor` on wallet
/// 70, with `extra` fields.
fn answer(topic: &str, order_id: &str, amount_minor: i64, extra: Value) -> Envelope {
    let mut data = json!({"request_id": order_id, "wallet_id": 70, "amount_minor": amount_minor, "currency": "USD"});
    let fields = data.as_object_mut().unwrap();
    fields.extend(extra.as_object().unwrap().clone());
    wallets_event(topic, data)
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

    let held = answer(
        "wallet.hold_completed",
        &order_id,
        3750,
        json!({"hold_id": "h-1"}),
    );
    assert_eq!(app.deliver(&held).await, Applied::Applied);
    assert_eq!(app.deliver(&held).await, Applied::Duplicate);
    // The same answer published twice (a distinct event): the hold is captured once.
    let again = wallets_event("wallet.hold_completed", held.data.clone());
    assert_eq!(app.deliver(&again).await, Applied::Applied);
    let capture = app.outbox("wallet.capture_requested").await;
    assert_eq!(
        capture,
        vec![
            json!({"request_id": order_id, "hold_id": "h-1", "wallet_id": 70, "amount_minor": 3750, "currency": "USD"})
        ]
    );
    // Until the money is captured, nothing is bought.
    assert_eq!(app.held("ACME").await, 0);
    assert_eq!(app.count("trades").await, 0);
    assert_eq!(app.order(&order_id).await, ("pending".to_owned(), false));
    assert_eq!(
        app.submit("token-a", buy).await,
        Submitted::Pending(order_id.clone())
    );

    let captured = answer(
        "wallet.capture_completed",
        &order_id,
        3750,
        json!({"hold_id": "h-1", "transaction_number": "t"}),
    );
    assert_eq!(app.deliver(&captured).await, Applied::Applied);
    assert_eq!(app.deliver(&captured).await, Applied::Duplicate);
    let again = wallets_event("wallet.capture_completed", captured.data.clone());
    assert_eq!(app.deliver(&again).await, Applied::Applied);

    assert_eq!(app.held("ACME").await, 3);
    assert_eq!(app.count("trades").await, 1);
    let executed = app.outbox("trade.executed").await;
    assert_eq!(executed.len(), 1);
    assert_eq!(executed[0]["total_minor"], 3750);
    assert_eq!(executed[0]["side"], "BUY");
    assert_eq!(app.order(&order_id).await, ("executed".to_owned(), true));
    let reply = app.reply(buy).await;
    assert_eq!(reply["status"], "OK");
    assert_eq!(reply["id"], "b1");
    assert_eq!(reply["total"], "37.50");
    // Another token's message with the same id is another request.
    assert!(matches!(
        app.submit("token-b", buy).await,
        Submitted::Pending(other) if other != order_id
    ));
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
    let refused = answer(
        "wallet.hold_failed",
        &order_id,
        50_000,
        json!({"reason": "insufficient funds: wallet 70 has 0.00 USD available; 500.00 USD requested"}),
    );
    app.deliver(&refused).await;
    // A late success for a rejected order changes nothing.
    let late = answer(
        "wallet.hold_completed",
        &order_id,
        50_000,
        json!({"hold_id": "h"}),
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
    let reply = app.reply(buy).await;
    assert_eq!(reply["status"], "ERROR");
    assert_eq!(reply["id"], 9);
    assert_eq!(reply["order_id"], json!(order_id));
}

both_backends!(a_refused_hold_rejects_the_order);

async fn a_refused_capture_rejects_the_buy_and_nothing_is_bought(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    app.user().await;
    let buy = r#"{"id":"b","type":"BUY","user_id":7,"symbol":"ACME","price":"2","amount":4}"#;
    let Submitted::Pending(order_id) = app.submit("token-a", buy).await else {
        panic!("a BUY waits for its hold");
    };
    let held = answer(
        "wallet.hold_completed",
        &order_id,
        800,
        json!({"hold_id": "h-9"}),
    );
    app.deliver(&held).await;
    // The hold was released (POST /holds/h-9/release) before the capture reached the wallet.
    let refused = answer(
        "wallet.capture_failed",
        &order_id,
        800,
        json!({"hold_id": "h-9", "reason": "hold h-9 is already released"}),
    );
    assert_eq!(app.deliver(&refused).await, Applied::Applied);
    assert_eq!(app.deliver(&refused).await, Applied::Duplicate);
    let again = wallets_event("wallet.capture_failed", refused.data.clone());
    assert_eq!(app.deliver(&again).await, Applied::Applied);
    // A late capture of a rejected order changes nothing either.
    let late = answer(
        "wallet.capture_completed",
        &order_id,
        800,
        json!({"hold_id": "h-9", "transaction_number": "t"}),
    );
    app.deliver(&late).await;

    assert_eq!(app.held("ACME").await, 0);
    assert_eq!(app.count("trades").await, 0);
    assert!(app.outbox("trade.executed").await.is_empty());
    let rejected = app.outbox("trade.rejected").await;
    assert_eq!(rejected.len(), 1);
    assert_eq!(
        rejected[0]["reason"],
        "the payment could not be taken: hold h-9 is already released"
    );
    assert_eq!(app.order(&order_id).await, ("rejected".to_owned(), false));
    let reply = app.reply(buy).await;
    assert_eq!(reply["status"], "ERROR");
    assert_eq!(reply["order_id"], json!(order_id));
}

both_backends!(a_refused_capture_rejects_the_buy_and_nothing_is_bought);

async fn a_refused_credit_gives_the_units_back_once(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    app.user().await;
    app.buy("b", "ACME", 5).await;
    let sell = r#"{"id":"s","type":"SELL","user_id":7,"symbol":"ACME","price":"3","amount":2}"#;
    let Submitted::Pending(order_id) = app.submit("token-a", sell).await else {
        panic!("a SELL waits for its proceeds");
    };
    // The units are set aside at once: no other SELL can take them.
    assert_eq!(app.held("ACME").await, 3);
    assert_eq!(
        app.outbox("wallet.credit_requested").await,
        vec![
            json!({"request_id": order_id, "wallet_id": 70, "amount_minor": 600, "currency": "USD"})
        ]
    );
    assert_eq!(app.order(&order_id).await, ("pending".to_owned(), false));

    // The user was removed, its wallet closed, before the proceeds reached it.
    let refused = answer(
        "wallet.credit_failed",
        &order_id,
        600,
        json!({"reason": "wallet 70 is closed"}),
    );
    assert_eq!(app.deliver(&refused).await, Applied::Applied);
    assert_eq!(app.deliver(&refused).await, Applied::Duplicate);
    let again = wallets_event("wallet.credit_failed", refused.data.clone());
    assert_eq!(app.deliver(&again).await, Applied::Applied);
    let late = answer(
        "wallet.credit_completed",
        &order_id,
        600,
        json!({"transaction_number": "t"}),
    );
    app.deliver(&late).await;

    assert_eq!(app.held("ACME").await, 5, "the units are back, once");
    assert_eq!(app.count("trades").await, 1, "the BUY's trade only");
    let rejected = app.outbox("trade.rejected").await;
    assert_eq!(rejected.len(), 1);
    assert_eq!(
        rejected[0]["reason"],
        "the proceeds could not be paid: wallet 70 is closed"
    );
    assert_eq!(app.order(&order_id).await, ("rejected".to_owned(), false));
    let reply = app.reply(sell).await;
    assert_eq!(reply["status"], "ERROR");
    assert_eq!(reply["message"], rejected[0]["reason"]);
}

both_backends!(a_refused_credit_gives_the_units_back_once);

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
                Submitted::Decided(reply) => {
                    assert_eq!(reply["status"], "ERROR", "{reply}");
                    None
                }
                Submitted::Pending(order_id) => Some(order_id),
            }
        }
    });
    let selling: Vec<String> = futures_util::future::join_all(sells)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(selling.len(), 5, "exactly the units held are set aside");
    assert_eq!(app.held("ZED").await, 0);
    let credits = app.outbox("wallet.credit_requested").await;
    assert_eq!(credits.len(), 5);
    assert!(credits.iter().all(|c| c["amount_minor"] == 200));
    assert_eq!(app.outbox("trade.rejected").await.len(), 15);
    for order_id in &selling {
        let paid = answer(
            "wallet.credit_completed",
            order_id,
            200,
            json!({"transaction_number": "t"}),
        );
        app.deliver(&paid).await;
        assert_eq!(app.order(order_id).await, ("executed".to_owned(), true));
    }
    let sold = app.outbox("trade.executed").await;
    assert_eq!(sold.iter().filter(|t| t["side"] == "SELL").count(), 5);
    assert_eq!(app.count("trades").await, 6, "the BUY and five SELLs");
    assert_eq!(app.held("ZED").await, 0);
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
    let reply = app.reply(sell).await;
    assert!(reply["message"].as_str().unwrap().contains("was removed"));
    assert_eq!(app.count("orders").await, 0);
}

both_backends!(answers_meant_for_others_change_nothing);
