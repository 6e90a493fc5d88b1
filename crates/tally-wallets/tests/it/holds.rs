//! Holds asked for by another service (trading's BUY): `wallet.hold_requested` reserves money,
//! `wallet.capture_requested` takes it out of the ledger, each answered once.

use serde_json::{json, Value};
use tally_bus::consumer::Applied;
use tally_db::both_backends;
use tally_db::testing::TestBackend;
use tally_wallets::domain::HoldStatus;

use crate::{app, request, App};

impl App {
    /// Delivers a request to `wallets.payments` and returns its one answer on `answer_topic`.
    async fn ask(&self, topic: &str, data: Value, answer_topic: &str) -> Value {
        let event = request(topic, data);
        assert_eq!(self.deliver(&self.payments, &event).await, Applied::Applied);
        let answers: Vec<Value> = self
            .envelopes(answer_topic)
            .await
            .into_iter()
            .filter(|e| e.causation_id == event.id.to_string())
            .map(|e| e.data)
            .collect();
        assert_eq!(answers.len(), 1, "one {answer_topic} for the request");
        answers[0].clone()
    }

    /// A hold that is placed: its `wallet.hold_completed`.
    async fn hold(&self, request_id: &str, wallet_id: i64, amount_minor: i64) -> Value {
        self.ask(
            tally_wallets::HOLD_REQUESTED,
            json!({"request_id": request_id, "wallet_id": wallet_id, "amount_minor": amount_minor,
                   "currency": "USD", "reference": format!("order:{request_id}")}),
            tally_wallets::HOLD_COMPLETED,
        )
        .await
    }
}

async fn a_hold_reserves_available_money(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (_, wallet_id) = app.user_with("20.00").await;
    let answer = app.hold("o-1", wallet_id, 1_250).await;
    let hold_id = answer["hold_id"].as_str().unwrap().to_owned();
    assert_eq!(
        answer,
        json!({"request_id": "o-1", "wallet_id": wallet_id, "amount_minor": 1_250,
               "currency": "USD", "hold_id": hold_id})
    );
    let hold = app.store.hold(&hold_id).await.unwrap().unwrap();
    assert_eq!(
        (hold.wallet_id, hold.amount.amount_minor, hold.status),
        (wallet_id, 1_250, HoldStatus::Placed)
    );
    let wallet = app.wallet(wallet_id).await;
    assert_eq!(
        (
            wallet.balance_minor,
            wallet.held_minor,
            wallet.available_minor()
        ),
        (2_000, 1_250, 750)
    );
    assert_eq!(
        app.outbox("hold.placed").await,
        vec![
            json!({"hold_id": hold_id, "wallet_id": wallet_id, "amount_minor": 1_250,
                   "currency": "USD", "reference": "order:o-1"})
        ]
    );
    // The user sees the hold in what is available.
    let user_id = wallet.client_id.unwrap();
    let info = app
        .pay(json!({"id": 1, "type": "USER_INFO", "user_id": user_id}))
        .await;
    assert_eq!(
        (&info["amount"], &info["available"]),
        (&json!("20.00"), &json!("7.50"))
    );
}
both_backends!(a_hold_reserves_available_money);

async fn a_hold_beyond_what_is_available_is_refused_and_holds_nothing(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (_, wallet_id) = app.user_with("20.00").await;
    app.hold("o-1", wallet_id, 1_500).await;
    let refused = app
        .ask(
            tally_wallets::HOLD_REQUESTED,
            json!({"request_id": "o-2", "wallet_id": wallet_id, "amount_minor": 501,
                   "currency": "USD", "reference": "order:o-2"}),
            tally_wallets::HOLD_FAILED,
        )
        .await;
    assert_eq!(
        refused,
        json!({"request_id": "o-2", "wallet_id": wallet_id, "amount_minor": 501, "currency": "USD",
               "reason": format!("insufficient funds: wallet {wallet_id} has 5.00 USD available; 5.01 USD requested")})
    );
    let cases = [
        (
            json!({"request_id": "o-3", "wallet_id": 999_999, "amount_minor": 1, "currency": "USD"}),
            "wallet 999999 does not exist",
        ),
        (
            json!({"request_id": "o-4", "wallet_id": wallet_id, "amount_minor": 1, "currency": "EUR"}),
            "currency: wallet 1 holds USD, not EUR",
        ),
        (
            json!({"request_id": "o-5", "wallet_id": wallet_id, "amount_minor": 0, "currency": "USD"}),
            "amount: must be greater than zero",
        ),
    ];
    for (data, reason) in cases {
        let answer = app
            .ask(
                tally_wallets::HOLD_REQUESTED,
                data.clone(),
                tally_wallets::HOLD_FAILED,
            )
            .await;
        let reason = reason.replace("wallet 1 ", &format!("wallet {wallet_id} "));
        assert_eq!(answer["reason"], json!(reason), "{data}");
        assert!(answer.get("hold_id").is_none());
    }
    let wallet = app.wallet(wallet_id).await;
    assert_eq!((wallet.balance_minor, wallet.held_minor), (2_000, 1_500));
    assert_eq!(app.outbox("hold.placed").await.len(), 1);
}
both_backends!(a_hold_beyond_what_is_available_is_refused_and_holds_nothing);

async fn a_captured_hold_leaves_the_ledger_once(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (_, wallet_id) = app.user_with("20.00").await;
    let hold_id = app.hold("o-1", wallet_id, 1_250).await["hold_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let capture = |request_id: &str| {
        request(
            tally_wallets::CAPTURE_REQUESTED,
            json!({"request_id": request_id, "hold_id": hold_id, "wallet_id": wallet_id,
                   "amount_minor": 1_250, "currency": "USD"}),
        )
    };
    let first = capture("c-1");
    assert_eq!(app.deliver(&app.payments, &first).await, Applied::Applied);
    // Redelivered: the inbox keeps it from moving money twice.
    assert_eq!(app.deliver(&app.payments, &first).await, Applied::Duplicate);
    let completed = app.outbox(tally_wallets::CAPTURE_COMPLETED).await;
    assert_eq!(completed.len(), 1);
    let transaction_number = completed[0]["transaction_number"].as_str().unwrap();
    assert_eq!(
        completed[0],
        json!({"request_id": "c-1", "hold_id": hold_id, "wallet_id": wallet_id,
               "amount_minor": 1_250, "currency": "USD", "transaction_number": transaction_number})
    );
    let captured = app.outbox("hold.captured").await;
    assert_eq!(
        (
            &captured[0]["transaction_number"],
            &captured[0]["captured_minor"]
        ),
        (&json!(transaction_number), &json!(1_250))
    );
    let wallet = app.wallet(wallet_id).await;
    assert_eq!((wallet.balance_minor, wallet.held_minor), (750, 0));
    assert_eq!(
        app.store.hold(&hold_id).await.unwrap().unwrap().status,
        HoldStatus::Captured
    );
    app.assert_ledger_balanced().await;

    // A second request for the same hold is refused: nothing moves.
    let second = app
        .ask(
            tally_wallets::CAPTURE_REQUESTED,
            json!({"request_id": "c-2", "hold_id": hold_id, "wallet_id": wallet_id,
                   "amount_minor": 1_250, "currency": "USD"}),
            tally_wallets::CAPTURE_FAILED,
        )
        .await;
    assert_eq!(
        second,
        json!({"request_id": "c-2", "hold_id": hold_id, "wallet_id": wallet_id,
               "amount_minor": 1_250, "currency": "USD",
               "reason": format!("hold {hold_id} is already captured")})
    );
    assert_eq!(app.wallet(wallet_id).await.balance_minor, 750);
    assert_eq!(app.outbox("hold.captured").await.len(), 1);
    app.assert_ledger_balanced().await;
}
both_backends!(a_captured_hold_leaves_the_ledger_once);

async fn a_capture_must_name_the_hold_as_placed(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (_, wallet_id) = app.user_with("20.00").await;
    let hold_id = app.hold("o-1", wallet_id, 1_250).await["hold_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cases = [
        (
            json!({"request_id": "c-1", "hold_id": hold_id, "wallet_id": wallet_id,
                   "amount_minor": 1_000, "currency": "USD"}),
            format!("hold {hold_id} is for 12.50 USD on wallet {wallet_id}, not 10.00 USD on wallet {wallet_id}"),
        ),
        (
            json!({"request_id": "c-2", "hold_id": "no-such-hold", "wallet_id": wallet_id,
                   "amount_minor": 1_250, "currency": "USD"}),
            String::from("hold no-such-hold does not exist"),
        ),
    ];
    for (data, reason) in cases {
        let answer = app
            .ask(
                tally_wallets::CAPTURE_REQUESTED,
                data,
                tally_wallets::CAPTURE_FAILED,
            )
            .await;
        assert_eq!(answer["reason"], json!(reason));
    }
    let wallet = app.wallet(wallet_id).await;
    assert_eq!((wallet.balance_minor, wallet.held_minor), (2_000, 1_250));
    assert!(app.outbox("hold.captured").await.is_empty());
    app.assert_ledger_balanced().await;
}
both_backends!(a_capture_must_name_the_hold_as_placed);

async fn billing_debits_are_answered_without_a_hold(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (_, wallet_id) = app.user_with("20.00").await;
    let completed = app
        .ask(
            "wallet.debit_requested",
            json!({"request_id": "p-1", "wallet_id": wallet_id, "amount_minor": 1_500, "currency": "USD"}),
            "wallet.debit_completed",
        )
        .await;
    assert_eq!(
        completed,
        json!({"request_id": "p-1", "wallet_id": wallet_id, "amount_minor": 1_500, "currency": "USD",
               "transaction_number": completed["transaction_number"]})
    );
    let failed = app
        .ask(
            "wallet.debit_requested",
            json!({"request_id": "p-2", "wallet_id": wallet_id, "amount_minor": 501, "currency": "USD"}),
            "wallet.debit_failed",
        )
        .await;
    assert_eq!(
        failed["reason"],
        json!(format!(
            "insufficient funds: wallet {wallet_id} has 5.00 USD available; 5.01 USD requested"
        ))
    );
    assert_eq!(app.wallet(wallet_id).await.balance_minor, 500);
    app.assert_ledger_balanced().await;
}
both_backends!(billing_debits_are_answered_without_a_hold);
