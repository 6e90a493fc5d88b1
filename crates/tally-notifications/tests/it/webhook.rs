//! Webhook delivery: signed, retried with backoff until a 2xx, failed after `max_attempts`,
//! carried on by a restarted worker, never sent twice at once by two workers, and taken over
//! from a worker that died mid-send.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use tally_db::both_backends;
use tally_db::testing::TestBackend;
use tally_kernel::time;
use tally_notifications::adapters::store::{self, Channels};
use uuid::Uuid;

use crate::{app, booked, eventually, fast, open, Answer, App, Receiver, Worker};

async fn delivery_status(app: &App) -> String {
    app.deliveries()
        .await
        .first()
        .map(|d| d.status.clone())
        .unwrap_or_default()
}

async fn a_receiver_that_fails_twice_then_accepts_gets_it_once(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    // A 500, then an answer slower than the send timeout, then 200.
    let receiver = Receiver::start(
        &[Answer::Status(500), Answer::Hang(Duration::from_secs(3))],
        Answer::Status(200),
    )
    .await;
    let patient = Uuid::now_v7();
    let event = booked(patient, 15_000);
    app.apply(&event).await;
    let mut settings = fast(vec![receiver.webhook()], None);
    settings.send_timeout = Duration::from_millis(300);
    let worker = Worker::start(&app.db, settings);
    eventually("the delivery to be sent", || async {
        delivery_status(&app).await == "sent"
    })
    .await;
    // Give a wrongly repeated send the time to happen before counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    worker.stop().await;

    let deliveries = app.deliveries().await;
    assert_eq!(deliveries.len(), 1);
    let delivery = &deliveries[0];
    assert_eq!(
        (delivery.channel.as_str(), delivery.attempts),
        ("webhook", 3)
    );
    assert_eq!(delivery.last_error.as_deref(), Some("timed out"));
    assert_eq!(receiver.accepted(), 1, "exactly one 2xx acceptance");
    let received = receiver.received();
    assert_eq!(received.len(), 3);
    let message_id = app.messages().await[0].0.clone();
    for (n, request) in received.iter().enumerate() {
        assert_eq!(
            request.notification_id, delivery.id,
            "the same id each time"
        );
        assert!(request.signature_ok, "attempt {} is signed", n + 1);
        assert_eq!(request.body["deliveryId"], delivery.id.as_str());
        assert_eq!(request.body["notificationId"], message_id.as_str());
        assert_eq!(request.body["eventId"], event.id.to_string());
        assert_eq!(request.body["eventType"], "appointment.booked");
        assert_eq!(request.body["patientId"], patient.to_string());
        assert_eq!(request.body["subject"], "Appointment booked");
        assert_eq!(request.body["attempt"], n + 1);
    }
    assert!(received[2].body["body"]
        .as_str()
        .unwrap()
        .contains("Scheduled price: 150.00 USD"));

    let events = app.events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].event_type, "notification.sent");
    assert_eq!(events[0].aggregate_id, message_id);
    assert_eq!(events[0].causation_id, event.id.to_string());
    assert_eq!(events[0].correlation_id, "flow-correlation");
    assert_eq!(
        events[0].data,
        json!({"notification_id": message_id, "event_id": event.id, "patient_id": patient,
            "channel": "webhook"})
    );
    assert_eq!(app.messages().await[0].2, "sent");
}
both_backends!(a_receiver_that_fails_twice_then_accepts_gets_it_once);

async fn a_receiver_that_always_fails_ends_in_notification_failed(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let receiver = Receiver::start(&[], Answer::Status(503)).await;
    let patient = Uuid::now_v7();
    let event = booked(patient, 15_000);
    app.apply(&event).await;
    let mut settings = fast(vec![receiver.webhook()], None);
    settings.max_attempts = 3;
    let worker = Worker::start(&app.db, settings);
    eventually("the delivery to fail", || async {
        delivery_status(&app).await == "failed"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    worker.stop().await;

    let delivery = &app.deliveries().await[0];
    assert_eq!(delivery.attempts, 3);
    let reason = "the webhook answered HTTP 503 Service Unavailable";
    assert_eq!(delivery.last_error.as_deref(), Some(reason));
    assert_eq!(
        receiver.received().len(),
        3,
        "max_attempts requests, no more"
    );
    assert_eq!(receiver.accepted(), 0);

    let message_id = app.messages().await[0].0.clone();
    let events = app.events().await;
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["notification.failed"]);
    assert_eq!(
        events[0].data,
        json!({"notification_id": message_id, "event_id": event.id, "patient_id": patient,
            "channel": "webhook", "reason": reason})
    );
    assert_eq!(app.messages().await[0].2, "failed");
}
both_backends!(a_receiver_that_always_fails_ends_in_notification_failed);

async fn a_restarted_worker_carries_on_with_pending_retries(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let receiver = Receiver::start(&[], Answer::Status(500)).await;
    app.apply(&booked(Uuid::now_v7(), 100)).await;
    let mut settings = fast(vec![receiver.webhook()], None);
    settings.max_attempts = 50;
    let first = Worker::start(&app.db, settings.clone());
    eventually("two failed attempts", || async {
        app.deliveries()
            .await
            .first()
            .is_some_and(|d| d.attempts >= 2)
    })
    .await;
    first.stop().await;

    let stopped = app.deliveries().await[0].clone();
    assert_eq!(stopped.status, "pending");
    assert!(stopped.attempts >= 1, "{stopped:?}");
    assert!(stopped.last_error.is_some());
    assert!(time::from_db(&stopped.next_attempt_at).is_ok());

    // A new process: its own database handle, the receiver healthy again.
    receiver.set_otherwise(Answer::Status(200));
    let db = open(&app.loc).await;
    let second = Worker::start(&db, settings);
    eventually("the delivery to be sent", || async {
        delivery_status(&app).await == "sent"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    second.stop().await;

    let done = &app.deliveries().await[0];
    assert_eq!(
        done.attempts,
        stopped.attempts + 1,
        "attempts carry on, not restart"
    );
    assert_eq!(receiver.accepted(), 1);
    let ids: BTreeSet<String> = receiver
        .received()
        .into_iter()
        .map(|r| r.notification_id)
        .collect();
    assert_eq!(ids, BTreeSet::from([done.id.clone()]));
}
both_backends!(a_restarted_worker_carries_on_with_pending_retries);

async fn two_workers_never_send_one_delivery_twice(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let receiver = Receiver::start(&[], Answer::Status(204)).await;
    for _ in 0..12 {
        app.apply(&booked(Uuid::now_v7(), 100)).await;
    }
    let mut settings = fast(vec![receiver.webhook()], None);
    settings.batch_size = 3;
    let other = open(&app.loc).await;
    let one = Worker::start(&app.db, settings.clone());
    let two = Worker::start(&other, settings);
    eventually("every delivery to be sent", || async {
        let deliveries = app.deliveries().await;
        deliveries.len() == 12 && deliveries.iter().all(|d| d.status == "sent")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    one.stop().await;
    two.stop().await;

    let received = receiver.received();
    let ids: BTreeSet<&str> = received
        .iter()
        .map(|r| r.notification_id.as_str())
        .collect();
    assert_eq!(
        (received.len(), ids.len()),
        (12, 12),
        "each delivery sent once"
    );
    assert!(app.deliveries().await.iter().all(|d| d.attempts == 1));
    let sent = app
        .events()
        .await
        .iter()
        .filter(|e| e.event_type == "notification.sent")
        .count();
    assert_eq!(sent, 12);
}
both_backends!(two_workers_never_send_one_delivery_twice);

/// Routes the stored messages to `url` and claims them as a worker would, with a lease ending at
/// `lease_until`: a worker that then died.
async fn claim_and_die(app: &App, url: &str, lease_until: time::Timestamp) -> usize {
    let channels = Channels {
        webhook_urls: vec![url],
        smtp: false,
        wait_for_recipients_after: time::now(),
    };
    store::route(&app.db, &channels, 10).await.unwrap();
    store::claim(&app.db, lease_until, 1).await.unwrap().len()
}

async fn a_dead_workers_delivery_is_taken_over_when_its_lease_ends(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let receiver = Receiver::start(&[], Answer::Status(200)).await;
    app.apply(&booked(Uuid::now_v7(), 100)).await;
    app.apply(&booked(Uuid::now_v7(), 200)).await;
    // Two workers claimed one delivery each and died: one lease still runs, one is over.
    let running = time::now() + chrono::TimeDelta::hours(1);
    assert_eq!(claim_and_die(&app, &receiver.url, running).await, 1);
    let over = time::now() - chrono::TimeDelta::seconds(1);
    assert_eq!(claim_and_die(&app, &receiver.url, over).await, 1);

    let worker = Worker::start(&app.db, fast(vec![receiver.webhook()], None));
    eventually("the expired claim to be taken over", || async {
        app.deliveries().await.iter().any(|d| d.status == "sent")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    worker.stop().await;

    let deliveries = app.deliveries().await;
    assert_eq!(
        (deliveries[0].status.as_str(), deliveries[0].attempts),
        ("pending", 1),
        "a running lease is left alone"
    );
    assert_eq!(
        (deliveries[1].status.as_str(), deliveries[1].attempts),
        ("sent", 2),
        "the dead worker's attempt counts"
    );
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].notification_id, deliveries[1].id);
    assert_eq!(received[0].body["attempt"], 2);
}
both_backends!(a_dead_workers_delivery_is_taken_over_when_its_lease_ends);

async fn deliveries_that_cannot_succeed_fail_without_sending(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let receiver = Receiver::start(&[], Answer::Status(200)).await;
    let over = time::now() - chrono::TimeDelta::seconds(1);
    // The only attempt allowed was claimed by a worker that died: its outcome is unknown.
    app.apply(&booked(Uuid::now_v7(), 100)).await;
    assert_eq!(claim_and_die(&app, &receiver.url, over).await, 1);
    // Routed to a webhook that is no longer in the settings.
    app.apply(&booked(Uuid::now_v7(), 100)).await;
    store::route(
        &app.db,
        &Channels {
            webhook_urls: vec!["http://127.0.0.1:9/removed"],
            smtp: false,
            wait_for_recipients_after: time::now(),
        },
        10,
    )
    .await
    .unwrap();

    let mut settings = fast(vec![receiver.webhook()], None);
    settings.max_attempts = 1;
    let worker = Worker::start(&app.db, settings);
    eventually("both deliveries to fail", || async {
        let d = app.deliveries().await;
        d.len() == 2 && d.iter().all(|d| d.status == "failed")
    })
    .await;
    worker.stop().await;

    let deliveries = app.deliveries().await;
    let got: Vec<(i64, Option<&str>)> = deliveries
        .iter()
        .map(|d| (d.attempts, d.last_error.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            (1, Some("the outcome of the last attempt is unknown")),
            (1, Some("the webhook is no longer configured")),
        ]
    );
    assert!(receiver.received().is_empty());
    let failed = app
        .events()
        .await
        .iter()
        .filter(|e| e.event_type == "notification.failed")
        .count();
    assert_eq!(failed, 2);
}
both_backends!(deliveries_that_cannot_succeed_fail_without_sending);
