//! The consumers: one message per event and recipient, rendered per event type; recipients kept
//! from the patients' events; unusable events refused for good.

use sqlx::Row as _;
use tally_bus::consumer::Applied;
use tally_bus::HandlerError;
use tally_db::both_backends;
use tally_db::testing::TestBackend;
use uuid::Uuid;

use crate::{app, bill, booked, cancelled, payment, registered, updated};

async fn every_event_type_becomes_one_pending_message(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let patient = Uuid::now_v7();
    app.apply(&registered(
        patient,
        "Maria da Silva",
        Some("maria@example.com"),
        None,
    ))
    .await;
    let events = [
        booked(patient, 15_000),
        cancelled(patient, Some("physician unavailable")),
        bill("bill.generated", patient, 15_050, "USD"),
        payment("payment.completed", patient, 5, None),
        payment("payment.failed", patient, 2_500, Some("card declined")),
        bill("bill.paid", patient, 1_500, "JPY"),
    ];
    for event in &events {
        assert_eq!(app.apply(event).await, Applied::Applied);
    }
    let messages = app.messages().await;
    let got: Vec<(&str, &str, &str)> = messages
        .iter()
        .map(|(_, t, status, subject, _)| (t.as_str(), status.as_str(), subject.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("appointment.booked", "pending", "Appointment booked"),
            ("appointment.cancelled", "pending", "Appointment cancelled"),
            ("bill.generated", "pending", "Your bill"),
            ("payment.completed", "pending", "Payment received"),
            ("payment.failed", "pending", "Payment failed"),
            ("bill.paid", "pending", "Bill paid"),
        ]
    );
    let bodies: Vec<&str> = messages.iter().map(|m| m.4.as_str()).collect();
    let expect = [
        vec![
            "Starts: 2026-03-02T09:00:00Z\n",
            "Ends: 2026-03-02T09:30:00Z\n",
            "Scheduled price: 150.00 USD\n",
        ],
        vec!["Reason: physician unavailable\n"],
        vec!["Amount due: 150.50 USD\n"],
        vec!["Method: card\n", "Amount: 0.05 USD\n"],
        vec!["Amount: 25.00 USD\n", "Reason: card declined\n"],
        vec!["Amount paid: 1500 JPY\n"],
    ];
    for ((body, lines), event) in bodies.iter().zip(expect).zip(&events) {
        for line in lines {
            assert!(body.contains(line), "{line:?} in {body:?}");
        }
        // Each message names what it is about by the event's own ids.
        let about = event.aggregate_id.as_str();
        assert!(body.contains(about), "{about} in {body:?}");
    }
    // No message is about the patient's own details.
    assert!(bodies.iter().all(|b| !b.contains("Maria")));
}
both_backends!(every_event_type_becomes_one_pending_message);

async fn the_same_booking_delivered_twice_makes_one_message(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let event = booked(Uuid::now_v7(), 15_000);
    assert_eq!(app.apply(&event).await, Applied::Applied);
    assert_eq!(app.apply(&event).await, Applied::Duplicate);
    assert_eq!(app.messages().await.len(), 1);

    // Even with the inbox row gone (a redrive of an event already applied), the unique
    // (event, recipient) key keeps it to one message.
    sqlx::query("DELETE FROM inbox")
        .execute(app.db.reader())
        .await
        .unwrap();
    assert_eq!(app.apply(&event).await, Applied::Applied);
    assert_eq!(app.messages().await.len(), 1);
}
both_backends!(the_same_booking_delivered_twice_makes_one_message);

async fn unknown_versions_and_unparseable_data_are_permanent(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let mut v2 = booked(Uuid::now_v7(), 100);
    v2.version = 2;
    let mut bad_amount = bill("bill.generated", Uuid::now_v7(), 100, "USD");
    bad_amount.data["amount_minor"] = serde_json::json!("1.00");
    let mut bad_patient = registered(Uuid::now_v7(), "Ana", None, None);
    bad_patient.data["patient_id"] = serde_json::json!("not-a-uuid");
    for (consumer, event) in [
        (&app.messages, &v2),
        (&app.messages, &bad_amount),
        (&app.recipients, &bad_patient),
    ] {
        match consumer.apply("stand-in", 1, event).await {
            Err(HandlerError::Permanent(e)) => {
                assert!(e.to_string().contains(&event.event_type), "{e:#}")
            }
            other => panic!("{} should be refused for good: {other:?}", event.event_type),
        }
    }
    assert!(app.messages().await.is_empty());
}
both_backends!(unknown_versions_and_unparseable_data_are_permanent);

async fn recipients_keep_the_latest_contact_details(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let patient = Uuid::now_v7();
    let first = registered(
        patient,
        "Ana Souza",
        Some("ana@old.example"),
        Some("+5511999990000"),
    );
    let mut late = updated(patient, "Ana S.", Some("ana@late.example"), None);
    let mut newer = updated(patient, "Ana Souza", Some("ana@new.example"), None);
    // `late` happened before `newer` but is read after it.
    late.occurred_at = first.occurred_at + chrono::TimeDelta::seconds(1);
    newer.occurred_at = first.occurred_at + chrono::TimeDelta::seconds(2);
    for event in [&first, &newer, &late] {
        assert_eq!(app.apply(event).await, Applied::Applied);
    }
    let row = sqlx::query("SELECT full_name, email, phone FROM recipients WHERE patient_id = $1")
        .bind(patient.to_string())
        .fetch_one(app.db.reader())
        .await
        .unwrap();
    let got: (String, Option<String>, Option<String>) = (
        row.try_get(0).unwrap(),
        row.try_get(1).unwrap(),
        row.try_get(2).unwrap(),
    );
    assert_eq!(
        got,
        ("Ana Souza".into(), Some("ana@new.example".into()), None)
    );
    assert!(
        app.messages().await.is_empty(),
        "patient events make no messages"
    );
}
both_backends!(recipients_keep_the_latest_contact_details);
