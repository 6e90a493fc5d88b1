//! Bills and payments against real SQLite and PostgreSQL: events from a stand-in care log and
//! wallets log, requests to the real router.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use sqlx::Row as _;
use tally_bus::consumer::Applied;
use tally_bus::Consumer;
use tally_db::testing::{TestBackend, TestLocation};
use tally_db::{both_backends, Db};
use tally_kernel::Envelope;
use tower::ServiceExt as _;

struct Fixture {
    _loc: TestLocation,
    db: Db,
    app: axum::Router,
    bills: Consumer,
    answers: Consumer,
    seq: std::sync::atomic::AtomicI64,
}

async fn fixture(backend: TestBackend) -> Option<Fixture> {
    let loc = TestLocation::new(backend).await?;
    let db = Db::open_and_migrate(&loc.settings(), &tally_billing::SCHEMA)
        .await
        .unwrap();
    let billing =
        tally_billing::Billing::new(db.clone(), Arc::new(tally_billing::TestGateway::new()));
    let consumers = billing.consumers();
    let find = |name: &str| consumers.iter().find(|c| c.name == name).unwrap().clone();
    Some(Fixture {
        bills: find("billing.bills"),
        answers: find("billing.wallet_answers"),
        app: tally_billing::router(billing),
        db,
        _loc: loc,
        seq: std::sync::atomic::AtomicI64::new(0),
    })
}

fn event(event_type: &str, data: Value) -> Envelope {
    Envelope {
        id: tally_kernel::id::new_v7(),
        event_type: event_type.into(),
        version: 1,
        source: "care".into(),
        aggregate_type: "appointment".into(),
        aggregate_id: data["appointment_id"].as_str().unwrap_or("x").into(),
        occurred_at: tally_kernel::time::now(),
        correlation_id: "test".into(),
        causation_id: "test".into(),
        data,
    }
}

fn booked(appointment: &str, patient: &str, price_minor: i64) -> Envelope {
    event(
        "appointment.booked",
        json!({
            "appointment_id": appointment, "patient_id": patient, "physician_id": "ph",
            "scheduled_start": "2026-01-05T09:00:00Z", "scheduled_end": "2026-01-05T09:30:00Z",
            "scheduled_price_minor": price_minor, "currency": "USD"
        }),
    )
}

fn closed(appointment: &str, patient: &str, price_minor: i64) -> Envelope {
    event(
        "consultation.closed",
        json!({
            "appointment_id": appointment, "patient_id": patient, "physician_id": "ph",
            "start": "2026-01-05T09:00:00Z", "end": "2026-01-05T09:40:00Z", "duration_minutes": 40,
            "price_minor": price_minor, "currency": "USD"
        }),
    )
}

impl Fixture {
    async fn deliver(&self, consumer: &Consumer, e: &Envelope) -> Applied {
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        consumer.apply("care", seq, e).await.unwrap()
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value, String) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let request = match body {
            Some(b) => request
                .header("content-type", "application/json")
                .body(Body::from(b.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        )
    }

    async fn bill_of(&self, patient: &str) -> Value {
        let (status, page, text) = self
            .call("GET", &format!("/bills?patientId={patient}"), None, None)
            .await;
        assert_eq!(status, 200, "{text}");
        let items = page["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "one bill: {text}");
        let id = items[0]["billId"].as_str().unwrap().to_owned();
        self.call("GET", &format!("/bills/{id}"), None, None)
            .await
            .1
    }

    async fn pay(&self, bill: &Value, body: Value) -> (StatusCode, Value, String) {
        let uri = format!("/bills/{}/payments", bill["billId"].as_str().unwrap());
        self.call("POST", &uri, None, Some(body)).await
    }

    /// Pays `major` units of the bill from `wallet`, and delivers the wallets service's
    /// completed debit.
    async fn pay_from_wallet(&self, bill: &Value, major: i64, wallet: i64) {
        let (_, debit, _) = self
            .pay(
                bill,
                json!({"amount": major, "method": "wallet", "walletId": wallet}),
            )
            .await;
        let done = wallet_answer(
            "wallet.debit_completed",
            &debit["paymentId"],
            json!({"wallet_id": wallet, "transaction_number": format!("t-{wallet}"), "amount_minor": major * 100, "currency": "USD"}),
        );
        self.deliver(&self.answers, &done).await;
    }

    async fn outbox(&self, topic: &str) -> Vec<Value> {
        sqlx::query("SELECT envelope FROM outbox WHERE topic = $1 ORDER BY created_at, id")
            .bind(topic)
            .fetch_all(self.db.reader())
            .await
            .unwrap()
            .iter()
            .map(|r| {
                serde_json::from_str::<Value>(&r.try_get::<String, _>(0).unwrap()).unwrap()["data"]
                    .clone()
            })
            .collect()
    }
}

/// Amounts are exact JSON numbers: compare their text.
fn text(v: &Value) -> String {
    v.to_string()
}

async fn a_bill_follows_its_appointment_and_payments_cover_it(backend: TestBackend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let b = booked("appt-1", "pat-1", 10_000);
    assert_eq!(f.deliver(&f.bills, &b).await, Applied::Applied);
    assert_eq!(f.deliver(&f.bills, &b).await, Applied::Duplicate);
    // The same booking announced again under another event id still makes one bill.
    f.deliver(&f.bills, &booked("appt-1", "pat-1", 10_000))
        .await;
    assert_eq!(f.outbox("bill.generated").await.len(), 1);
    let bill = f.bill_of("pat-1").await;
    assert_eq!(
        (text(&bill["amount"]), bill["status"].as_str()),
        ("100.0".into(), Some("open"))
    );

    f.deliver(&f.bills, &closed("appt-1", "pat-1", 12_000))
        .await;
    let bill = f.bill_of("pat-1").await;
    assert_eq!(text(&bill["amount"]), "120.0");
    assert_eq!(bill["financeRecord"]["durationMinutes"], 40);
    assert_eq!(
        f.outbox("bill.adjusted").await[0]["previous_amount_minor"],
        10_000
    );

    let (status, cash, _) = f
        .pay(&bill, json!({"amount": "50.00", "method": "cash"}))
        .await;
    assert_eq!(
        (status, cash["status"].as_str()),
        (StatusCode::CREATED, Some("completed"))
    );
    let (status, declined, _) = f
        .pay(
            &bill,
            json!({"amount": 10, "method": "card", "card": {"number": "4000 0000 0000 0002"}}),
        )
        .await;
    assert_eq!(
        (status, declined["status"].as_str()),
        (StatusCode::CREATED, Some("failed"))
    );
    assert_eq!(declined["failureReason"], "card_declined");
    assert_eq!(f.outbox("payment.failed").await.len(), 1);
    let (status, over, text_over) = f
        .pay(
            &bill,
            json!({"amount": "70.01", "method": "card", "card": {"number": "4242424242424242"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text_over}");
    assert!(over["type"].as_str().unwrap().ends_with("overpayment"));
    let (status, card, _) = f
        .pay(
            &bill,
            json!({"amount": "70.00", "method": "card", "card": {"number": "4242424242424242"}}),
        )
        .await;
    assert_eq!(
        (status, card["cardLast4"].as_str()),
        (StatusCode::CREATED, Some("4242"))
    );
    let bill = f.bill_of("pat-1").await;
    assert_eq!(
        (
            bill["status"].as_str(),
            text(&bill["paid"]),
            text(&bill["due"])
        ),
        (Some("paid"), "120.0".into(), "0.0".into())
    );
    assert_eq!(f.outbox("bill.paid").await.len(), 1);
    assert_eq!(f.outbox("payment.completed").await.len(), 2);
    let (status, _, _) = f.pay(&bill, json!({"amount": 1, "method": "cash"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "a paid bill takes no more");
    let (status, _, body) = f
        .pay(
            &bill,
            json!({"amount": 1, "method": "card", "card": {"number": "4242424242424241"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("card.number"), "{body}");
}
both_backends!(a_bill_follows_its_appointment_and_payments_cover_it);

async fn a_wallet_payment_waits_for_the_wallets_answer(backend: TestBackend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    f.deliver(&f.bills, &booked("appt-2", "pat-2", 8_000)).await;
    let bill = f.bill_of("pat-2").await;
    let (status, pending, _) = f
        .pay(
            &bill,
            json!({"amount": 80, "method": "wallet", "walletId": 7}),
        )
        .await;
    assert_eq!(
        (status, pending["status"].as_str()),
        (StatusCode::ACCEPTED, Some("pending"))
    );
    let request = f.outbox("wallet.debit_requested").await;
    assert_eq!(
        (
            request[0]["wallet_id"].as_i64(),
            request[0]["amount_minor"].as_i64()
        ),
        (Some(7), Some(8_000))
    );
    assert_eq!(request[0]["request_id"], pending["paymentId"]);
    let (status, _, _) = f
        .pay(&bill, json!({"amount": "0.01", "method": "cash"}))
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the pending wallet payment reserves what is due"
    );

    let refused = event(
        "wallet.debit_failed",
        json!({"request_id": pending["paymentId"], "wallet_id": 7, "amount_minor": 8_000, "currency": "USD", "reason": "wallet 7 has 10.00 USD available"}),
    );
    f.deliver(&f.answers, &refused).await;
    let bill = f.bill_of("pat-2").await;
    assert_eq!(
        (
            bill["status"].as_str(),
            text(&bill["pending"]),
            text(&bill["paid"])
        ),
        (Some("open"), "0.0".into(), "0.0".into())
    );
    assert_eq!(bill["payments"][0]["status"], "failed");
    assert_eq!(
        f.outbox("payment.failed").await[0]["reason"],
        "wallet 7 has 10.00 USD available"
    );

    let (_, second, _) = f
        .pay(
            &bill,
            json!({"amount": 80, "method": "wallet", "walletId": 8}),
        )
        .await;
    let done = event(
        "wallet.debit_completed",
        json!({"request_id": second["paymentId"], "wallet_id": 8, "transaction_number": "t-1", "amount_minor": 8_000, "currency": "USD"}),
    );
    f.deliver(&f.answers, &done).await;
    assert_eq!(f.deliver(&f.answers, &done).await, Applied::Duplicate);
    let bill = f.bill_of("pat-2").await;
    assert_eq!(
        (bill["status"].as_str(), text(&bill["paid"])),
        (Some("paid"), "80.0".into())
    );
    assert_eq!(f.outbox("bill.paid").await.len(), 1);
}
both_backends!(a_wallet_payment_waits_for_the_wallets_answer);

async fn cancelling_voids_the_unpaid_part_and_refunds_the_rest(backend: TestBackend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    f.deliver(&f.bills, &booked("appt-3", "pat-3", 10_000))
        .await;
    let bill = f.bill_of("pat-3").await;
    f.pay(&bill, json!({"amount": 30, "method": "cash"})).await;
    f.pay(
        &bill,
        json!({"amount": 20, "method": "card", "card": {"number": "4242424242424242"}}),
    )
    .await;
    f.deliver(&f.bills, &event("appointment.cancelled", json!({"appointment_id": "appt-3", "patient_id": "pat-3", "physician_id": "ph", "reason": null}))).await;
    let bill = f.bill_of("pat-3").await;
    assert_eq!(
        (bill["status"].as_str(), text(&bill["refunded"])),
        (Some("voided"), "50.0".into())
    );
    let voided = f.outbox("bill.voided").await;
    assert_eq!(
        (
            voided[0]["voided_minor"].as_i64(),
            voided[0]["refunded_minor"].as_i64()
        ),
        (Some(5_000), Some(5_000))
    );
    let refunds = f.outbox("payment.refunded").await;
    let mut amounts: Vec<i64> = refunds
        .iter()
        .map(|r| r["amount_minor"].as_i64().unwrap())
        .collect();
    amounts.sort_unstable();
    assert_eq!(amounts, [2_000, 3_000]);
    let (status, problem, _) = f.pay(&bill, json!({"amount": 1, "method": "cash"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(problem["type"].as_str().unwrap().ends_with("bill-voided"));
}
both_backends!(cancelling_voids_the_unpaid_part_and_refunds_the_rest);

async fn twenty_concurrent_payments_with_one_key_make_one(backend: TestBackend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    f.deliver(&f.bills, &booked("appt-4", "pat-4", 10_000))
        .await;
    let bill = f.bill_of("pat-4").await;
    let uri = format!("/bills/{}/payments", bill["billId"].as_str().unwrap());
    let f = Arc::new(f);
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let (f, uri) = (f.clone(), uri.clone());
            tokio::spawn(async move {
                f.call(
                    "POST",
                    &uri,
                    Some("pay-once"),
                    Some(json!({"amount": 10, "method": "cash"})),
                )
                .await
            })
        })
        .collect();
    let mut bodies = Vec::new();
    for call in calls {
        let (status, _, body) = call.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        bodies.push(body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "every retry gets the first payment back"
    );
    let bill = f.bill_of("pat-4").await;
    assert_eq!(bill["payments"].as_array().unwrap().len(), 1);
    assert_eq!(text(&bill["paid"]), "10.0");
}
both_backends!(twenty_concurrent_payments_with_one_key_make_one);

async fn a_bill_settles_whichever_way_its_amount_or_payments_move(backend: TestBackend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    // Paid in full before the consultation closes, then closed at a higher price: open again.
    f.deliver(&f.bills, &booked("appt-5", "pat-5", 5_000)).await;
    let bill = f.bill_of("pat-5").await;
    f.pay(&bill, json!({"amount": 50, "method": "cash"})).await;
    assert_eq!(f.bill_of("pat-5").await["status"], "paid");
    f.deliver(&f.bills, &closed("appt-5", "pat-5", 7_500)).await;
    let bill = f.bill_of("pat-5").await;
    assert_eq!(
        (bill["status"].as_str(), text(&bill["due"])),
        (Some("open"), "25.0".into())
    );
    let (status, _, body) = f.pay(&bill, json!({"amount": 25, "method": "cash"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(f.bill_of("pat-5").await["status"], "paid");

    // A wallet payment in flight when the consultation closes lower: the excess is refunded
    // when the debit completes.
    f.deliver(&f.bills, &booked("appt-6", "pat-6", 8_000)).await;
    let bill = f.bill_of("pat-6").await;
    let (_, pending, _) = f
        .pay(
            &bill,
            json!({"amount": 80, "method": "wallet", "walletId": 3}),
        )
        .await;
    f.deliver(&f.bills, &closed("appt-6", "pat-6", 6_000)).await;
    let done = event(
        "wallet.debit_completed",
        json!({"request_id": pending["paymentId"], "wallet_id": 3, "transaction_number": "t-6", "amount_minor": 8_000, "currency": "USD"}),
    );
    f.deliver(&f.answers, &done).await;
    let bill = f.bill_of("pat-6").await;
    assert_eq!(
        (
            bill["status"].as_str(),
            text(&bill["refunded"]),
            text(&bill["due"])
        ),
        (Some("paid"), "20.0".into(), "0.0".into())
    );
    let credit = f.outbox("wallet.credit_requested").await;
    assert_eq!(
        (
            credit[0]["wallet_id"].as_i64(),
            credit[0]["amount_minor"].as_i64()
        ),
        (Some(3), Some(2_000))
    );

    // Nothing is due on a voided bill.
    f.deliver(&f.bills, &booked("appt-7", "pat-7", 9_000)).await;
    f.deliver(&f.bills, &event("appointment.cancelled", json!({"appointment_id": "appt-7", "patient_id": "pat-7", "physician_id": "ph", "reason": null}))).await;
    let bill = f.bill_of("pat-7").await;
    assert_eq!(
        (bill["status"].as_str(), text(&bill["due"])),
        (Some("voided"), "0.0".into())
    );
}
both_backends!(a_bill_settles_whichever_way_its_amount_or_payments_move);

fn wallet_answer(event_type: &str, request_id: &Value, data: Value) -> Envelope {
    let mut data = data;
    data["request_id"] = request_id.clone();
    let mut e = event(event_type, data);
    e.source = "wallets".into();
    e
}

async fn a_refused_wallet_refund_is_owed_back_until_the_clinic_refunds_it(backend: TestBackend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    // 80 from wallet 5, then 20 in cash: paid. Cancelled: the cash is handed back at once,
    // the wallet's 80 is asked of the wallets service.
    f.deliver(&f.bills, &booked("appt-8", "pat-8", 10_000))
        .await;
    let bill = f.bill_of("pat-8").await;
    f.pay_from_wallet(&bill, 80, 5).await;
    f.pay(&bill, json!({"amount": 20, "method": "cash"})).await;
    f.deliver(&f.bills, &event("appointment.cancelled", json!({"appointment_id": "appt-8", "patient_id": "pat-8", "physician_id": "ph", "reason": null}))).await;
    let bill = f.bill_of("pat-8").await;
    assert_eq!(
        (
            bill["status"].as_str(),
            text(&bill["refunded"]),
            text(&bill["refundDue"])
        ),
        (Some("voided"), "100.0".into(), "0.0".into())
    );
    let statuses: Vec<_> = bill["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["method"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, [("cash", "completed"), ("wallet", "pending")]);
    // Only the cash has arrived.
    assert_eq!(f.outbox("payment.refunded").await.len(), 1);
    let credit = f.outbox("wallet.credit_requested").await;
    assert_eq!(
        (credit.len(), credit[0]["wallet_id"].as_i64()),
        (1, Some(5))
    );

    // The wallet was closed meanwhile: the credit fails, however often the answer arrives.
    // A second envelope of the same answer (a republished outbox row) gets a new id.
    let refusal = || {
        wallet_answer(
            "wallet.credit_failed",
            &credit[0]["request_id"],
            json!({"wallet_id": 5, "amount_minor": 8_000, "currency": "USD", "reason": "wallet 5 is closed"}),
        )
    };
    let refused = refusal();
    assert_eq!(f.deliver(&f.answers, &refused).await, Applied::Applied);
    assert_eq!(f.deliver(&f.answers, &refused).await, Applied::Duplicate);
    assert_eq!(f.deliver(&f.answers, &refusal()).await, Applied::Applied);
    let bill = f.bill_of("pat-8").await;
    assert_eq!(
        (text(&bill["refunded"]), text(&bill["refundDue"])),
        ("20.0".into(), "80.0".into())
    );
    assert_eq!(bill["refunds"][1]["status"], "failed");
    assert_eq!(bill["refunds"][1]["failureReason"], "wallet 5 is closed");
    assert_eq!(text(&bill["payments"][0]["refunded"]), "0.0");
    let failed = f.outbox("payment.refund_failed").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(
        (
            failed[0]["refund_id"].as_str(),
            failed[0]["amount_minor"].as_i64(),
            failed[0]["reason"].as_str()
        ),
        (
            credit[0]["request_id"].as_str(),
            Some(8_000),
            Some("wallet 5 is closed")
        )
    );

    // An answer to a credit billing never asked for (trading's) changes nothing.
    let foreign = wallet_answer(
        "wallet.credit_completed",
        &json!("order-1"),
        json!({"wallet_id": 5, "transaction_number": "t-x", "amount_minor": 8_000, "currency": "USD"}),
    );
    assert_eq!(f.deliver(&f.answers, &foreign).await, Applied::Applied);
    assert_eq!(text(&f.bill_of("pat-8").await["refundDue"]), "80.0");

    // Refused requests change nothing.
    let uri = format!("/bills/{}/refunds", bill["billId"].as_str().unwrap());
    for (body, status, field) in [
        (
            json!({"amount": 81, "method": "cash"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "amount",
        ),
        (
            json!({"method": "card"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "method",
        ),
        (
            json!({"method": "wallet"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "walletId",
        ),
        (
            json!({"method": "cash", "walletId": 6}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "walletId",
        ),
        (
            json!({"amount": 0, "method": "cash"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "amount",
        ),
        (
            json!({"method": "cash", "currency": "EUR"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "currency",
        ),
    ] {
        let (got, problem, raw) = f.call("POST", &uri, None, Some(body)).await;
        assert_eq!(got, status, "{raw}");
        assert_eq!(problem["errors"][0]["field"], field, "{raw}");
    }
    assert_eq!(text(&f.bill_of("pat-8").await["refundDue"]), "80.0");

    // Into another wallet, once however often the request is retried.
    let first = f
        .call(
            "POST",
            &uri,
            Some("give-back"),
            Some(json!({"method": "wallet", "walletId": 6})),
        )
        .await;
    assert_eq!(first.0, StatusCode::ACCEPTED, "{}", first.2);
    let retry = f
        .call(
            "POST",
            &uri,
            Some("give-back"),
            Some(json!({"method": "wallet", "walletId": 6})),
        )
        .await;
    assert_eq!((retry.0, &retry.2), (first.0, &first.2));
    let refund = &first.1[0];
    assert_eq!(
        (
            refund["status"].as_str(),
            refund["walletId"].as_i64(),
            text(&refund["amount"])
        ),
        (Some("pending"), Some(6), "80.0".into())
    );
    let credit = f.outbox("wallet.credit_requested").await;
    assert_eq!(credit.len(), 2);
    assert_eq!(credit[1]["request_id"], refund["refundId"]);
    let (status, problem, _) = f
        .call("POST", &uri, None, Some(json!({"method": "cash"})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(problem["type"].as_str().unwrap().ends_with("no-refund-due"));

    let arrived = wallet_answer(
        "wallet.credit_completed",
        &refund["refundId"],
        json!({"wallet_id": 6, "transaction_number": "t-9", "amount_minor": 8_000, "currency": "USD"}),
    );
    f.deliver(&f.answers, &arrived).await;
    let bill = f.bill_of("pat-8").await;
    assert_eq!(
        (text(&bill["refunded"]), text(&bill["refundDue"])),
        ("100.0".into(), "0.0".into())
    );
    assert_eq!(
        (
            bill["refunds"][2]["status"].as_str(),
            bill["refunds"][2]["walletTransaction"].as_str()
        ),
        (Some("completed"), Some("t-9"))
    );
    let (status, listed, _) = f.call("GET", &uri, None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        listed, bill["refunds"],
        "GET /bills/{{id}}/refunds lists the bill's refunds"
    );
    let refunded = f.outbox("payment.refunded").await;
    assert_eq!(
        (
            refunded.len(),
            refunded[1]["method"].as_str(),
            refunded[1]["refund_method"].as_str()
        ),
        (2, Some("wallet"), Some("wallet"))
    );
}
both_backends!(a_refused_wallet_refund_is_owed_back_until_the_clinic_refunds_it);

async fn an_excess_whose_wallet_refund_failed_is_handed_back_in_cash(backend: TestBackend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    // Paid 80 from a wallet; closed at 60: 20 is owed back and asked of the wallet.
    f.deliver(&f.bills, &booked("appt-9", "pat-9", 8_000)).await;
    let bill = f.bill_of("pat-9").await;
    f.pay_from_wallet(&bill, 80, 4).await;
    f.deliver(&f.bills, &closed("appt-9", "pat-9", 6_000)).await;
    let credit = f.outbox("wallet.credit_requested").await;
    let refused = wallet_answer(
        "wallet.credit_failed",
        &credit[0]["request_id"],
        json!({"wallet_id": 4, "amount_minor": 2_000, "currency": "USD", "reason": "wallet 4 is closed"}),
    );
    f.deliver(&f.answers, &refused).await;
    let bill = f.bill_of("pat-9").await;
    assert_eq!(
        (
            bill["status"].as_str(),
            text(&bill["refunded"]),
            text(&bill["refundDue"]),
            text(&bill["due"])
        ),
        (Some("paid"), "0.0".into(), "20.0".into(), "0.0".into())
    );

    // Part in cash now, the rest later.
    let uri = format!("/bills/{}/refunds", bill["billId"].as_str().unwrap());
    let (status, refunds, raw) = f
        .call(
            "POST",
            &uri,
            Some("desk-1"),
            Some(json!({"amount": "5.00", "method": "cash", "currency": "USD"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{raw}");
    assert_eq!(
        (refunds[0]["status"].as_str(), text(&refunds[0]["amount"])),
        (Some("completed"), "5.0".into())
    );
    let (status, _, raw) = f
        .call(
            "POST",
            &uri,
            Some("desk-2"),
            Some(json!({"method": "cash"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{raw}");
    let bill = f.bill_of("pat-9").await;
    assert_eq!(
        (
            bill["status"].as_str(),
            text(&bill["refunded"]),
            text(&bill["refundDue"])
        ),
        (Some("paid"), "20.0".into(), "0.0".into())
    );
    let refunded = f.outbox("payment.refunded").await;
    let cash: Vec<_> = refunded
        .iter()
        .map(|r| {
            (
                r["refund_method"].as_str().unwrap(),
                r["amount_minor"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(cash, [("cash", 500), ("cash", 1_500)]);
}
both_backends!(an_excess_whose_wallet_refund_failed_is_handed_back_in_cash);
