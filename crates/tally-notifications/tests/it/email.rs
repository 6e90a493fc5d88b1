//! E-mail delivery through an SMTP sink the test runs: to the recipient's address, retried on a
//! transient refusal without keeping what the relay said; stored when the recipient has no
//! address; and a message waits for its recipient's details when the booking is read first.

use std::time::Duration;

use tally_db::both_backends;
use tally_db::testing::TestBackend;
use uuid::Uuid;

use crate::{app, bill, booked, eventually, fast, registered, Answer, Receiver, SmtpSink, Worker};

async fn mail_goes_to_the_recipients_address(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let sink = SmtpSink::start().await;
    // The relay first refuses the recipient with a reply that repeats the address.
    sink.refuse_next(1);
    let (maria, joao) = (Uuid::now_v7(), Uuid::now_v7());
    app.apply(&registered(
        maria,
        "Maria da Silva",
        Some("maria.silva@example.com"),
        None,
    ))
    .await;
    app.apply(&registered(
        joao,
        "João Souza",
        None,
        Some("+5511987654321"),
    ))
    .await;
    app.apply(&bill("bill.generated", maria, 15_000, "USD"))
        .await;
    app.apply(&booked(joao, 9_000)).await;

    let worker = Worker::start(&app.db, fast(vec![], Some(sink.smtp())));
    eventually("both messages to go out", || async {
        let messages = app.messages().await;
        messages.len() == 2 && messages.iter().all(|m| m.2 == "sent")
    })
    .await;
    worker.stop().await;

    let deliveries = app.deliveries().await;
    let mailed = deliveries.iter().find(|d| d.channel == "email").unwrap();
    assert_eq!((mailed.status.as_str(), mailed.attempts), ("sent", 2));
    assert_eq!(
        mailed.last_error.as_deref(),
        Some("the SMTP relay refused the mail: 451 (transient)"),
        "the reply code, not the reply text with the address"
    );
    let stored = deliveries.iter().find(|d| d.channel == "stored").unwrap();
    assert_eq!((stored.status.as_str(), stored.attempts), ("sent", 0));
    assert_eq!(
        deliveries.len(),
        2,
        "João has no address: stored, not mailed"
    );

    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.to, ["<maria.silva@example.com>"]);
    assert!(
        mail.from.starts_with("<notify@clinic.example>"),
        "{}",
        mail.from
    );
    for expected in [
        "To: maria.silva@example.com",
        "Subject: Your bill",
        "Amount due: 150.00 USD",
        &format!("Tally-Notification-Id: {}", mailed.id),
    ] {
        assert!(
            mail.data.contains(expected),
            "{expected:?} in\n{}",
            mail.data
        );
    }

    let channels: Vec<(String, String)> = app
        .events()
        .await
        .iter()
        .map(|e| {
            (
                e.event_type.clone(),
                e.data["channel"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(channels.len(), 2);
    for expected in [
        ("notification.sent", "email"),
        ("notification.sent", "stored"),
    ] {
        assert!(
            channels.contains(&(expected.0.into(), expected.1.into())),
            "{channels:?}"
        );
    }
}
both_backends!(mail_goes_to_the_recipients_address);

/// A relay's permanent refusal (5xx) ends the delivery at once: another attempt would be refused
/// the same way, so it is not made, and `notification.failed` says so.
async fn a_permanent_refusal_fails_the_mail_at_once(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let sink = SmtpSink::start().await;
    sink.refuse_next_permanently(1);
    let maria = Uuid::now_v7();
    app.apply(&registered(
        maria,
        "Maria da Silva",
        Some("maria.silva@example.com"),
        None,
    ))
    .await;
    app.apply(&bill("bill.generated", maria, 15_000, "USD"))
        .await;

    let worker = Worker::start(&app.db, fast(vec![], Some(sink.smtp())));
    eventually("the mail to fail", || async {
        app.deliveries().await.iter().any(|d| d.status == "failed")
    })
    .await;
    // Long enough for a retry of the fast settings, had there been one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    worker.stop().await;

    let deliveries = app.deliveries().await;
    assert_eq!(deliveries.len(), 1);
    let mailed = &deliveries[0];
    assert_eq!(
        (
            mailed.channel.as_str(),
            mailed.status.as_str(),
            mailed.attempts
        ),
        ("email", "failed", 1)
    );
    assert_eq!(
        mailed.last_error.as_deref(),
        Some("the SMTP relay refused the mail: 550 (permanent)")
    );
    assert!(sink.mails().is_empty());
    let events: Vec<String> = app
        .events()
        .await
        .iter()
        .map(|e| e.event_type.clone())
        .collect();
    assert_eq!(events, ["notification.failed"]);
}
both_backends!(a_permanent_refusal_fails_the_mail_at_once);

async fn a_booking_read_before_the_registration_waits_for_the_address(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let sink = SmtpSink::start().await;
    let receiver = Receiver::start(&[], Answer::Status(200)).await;
    let patient = Uuid::now_v7();
    app.apply(&booked(patient, 15_000)).await;
    let worker = Worker::start(&app.db, fast(vec![receiver.webhook()], Some(sink.smtp())));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.deliveries().await.is_empty(), "nothing routed yet");
    assert!(receiver.received().is_empty() && sink.mails().is_empty());

    app.apply(&registered(
        patient,
        "Ana Lima",
        Some("ana.lima@example.com"),
        None,
    ))
    .await;
    eventually("the message to go out on both channels", || async {
        app.messages().await.first().is_some_and(|m| m.2 == "sent")
    })
    .await;
    worker.stop().await;

    let mut channels: Vec<String> = app
        .deliveries()
        .await
        .into_iter()
        .map(|d| d.channel)
        .collect();
    channels.sort();
    assert_eq!(channels, ["email", "webhook"]);
    assert_eq!(receiver.accepted(), 1);
    assert_eq!(sink.mails().len(), 1);
    assert_eq!(sink.mails()[0].to, ["<ana.lima@example.com>"]);
}
both_backends!(a_booking_read_before_the_registration_waits_for_the_address);
