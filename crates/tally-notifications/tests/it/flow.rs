//! Flow 1 from notifications' side, through the embedded bus: events written into stand-in
//! patients, care and billing logs are read by both consumers and go out once per channel, even
//! when an event is published twice.

use std::borrow::Cow;
use std::time::Duration;

use sqlx::migrate::Migrator;
use tally_bus::{outbox, BusSettings, EmbeddedBus};
use tally_db::testing::{TestBackend, TestLocation};
use tally_db::{both_backends, Db, ServiceSchema};
use tally_kernel::Envelope;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    app, bill, booked, events, eventually, fast, payment, registered, Answer, Receiver, SmtpSink,
    Worker,
};

/// A stand-in service log: only the infrastructure tables.
async fn stand_in(loc: &TestLocation, name: &'static str) -> Db {
    let none = || Migrator {
        migrations: Cow::Owned(Vec::new()),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    };
    let schema = ServiceSchema {
        name,
        sqlite: none(),
        postgres: none(),
    };
    Db::open_and_migrate(&loc.settings(), &schema)
        .await
        .unwrap()
}

async fn publish(db: &Db, events: &[&Envelope]) {
    let events: Vec<Envelope> = events.iter().map(|e| (*e).clone()).collect();
    let mut tx = db.begin_write().await.unwrap();
    outbox::append(db, &mut tx, &events).await.unwrap();
    db.commit(tx).await.unwrap();
}

async fn booking_bill_and_payment_go_out_once_per_channel(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let patients = stand_in(&app.loc, "patients").await;
    let care = stand_in(&app.loc, "care").await;
    let billing = stand_in(&app.loc, "billing").await;
    let receiver = Receiver::start(&[], Answer::Status(200)).await;
    let sink = SmtpSink::start().await;

    let settings = BusSettings {
        poll_interval: Duration::from_millis(10),
        retry_base: Duration::from_millis(1),
        retry_max: Duration::from_millis(5),
        ..BusSettings::default()
    };
    let mut bus = EmbeddedBus::new(settings);
    bus.add_log(patients.clone(), tally_notifications::RECIPIENT_TOPICS);
    bus.add_log(
        care.clone(),
        &["appointment.booked", "appointment.cancelled"],
    );
    bus.add_log(
        billing.clone(),
        &[
            "bill.generated",
            "bill.paid",
            "payment.completed",
            "payment.failed",
        ],
    );
    bus.add_log(app.db.clone(), tally_notifications::PUBLISHES);
    bus.add_consumer(tally_notifications::recipients_consumer(app.db.clone()));
    bus.add_consumer(tally_notifications::messages_consumer(app.db.clone()));
    let shutdown = CancellationToken::new();
    let mut tasks = bus.spawn(true, shutdown.clone());
    let worker = Worker::start(&app.db, fast(vec![receiver.webhook()], Some(sink.smtp())));

    let patient = Uuid::now_v7();
    let booking = booked(patient, 15_000);
    let generated = bill("bill.generated", patient, 15_000, "USD");
    let paid = payment("payment.completed", patient, 15_000, None);
    publish(
        &patients,
        &[&registered(
            patient,
            "Maria da Silva",
            Some("maria@example.com"),
            None,
        )],
    )
    .await;
    publish(&care, &[&booking]).await;
    // Billing republishes the booking it read (a second delivery of the same event).
    publish(&billing, &[&generated, &booking, &paid]).await;

    eventually("three messages out on both channels", || async {
        receiver.accepted() == 3 && sink.mails().len() == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    worker.stop().await;
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}

    assert_eq!(
        receiver.received().len(),
        3,
        "one webhook request per message"
    );
    assert_eq!(sink.mails().len(), 3, "one mail per message");
    // Care's and billing's logs are read concurrently: messages come in either order.
    let mut types: Vec<String> = app.messages().await.into_iter().map(|m| m.1).collect();
    types.sort();
    assert_eq!(
        types,
        ["appointment.booked", "bill.generated", "payment.completed"]
    );
    let sent = events(&app.db)
        .await
        .into_iter()
        .filter(|e| e.event_type == "notification.sent")
        .count();
    assert_eq!(sent, 6, "one notification.sent per delivery");
}
both_backends!(booking_bill_and_payment_go_out_once_per_channel);
