//! Provider payables against real SQLite and PostgreSQL: one per claim, whatever the deliveries,
//! and a failing payable goes to the dead letters and is recorded once after redrive.

mod bills;

use std::borrow::Cow;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::Row as _;
use tally_bus::consumer::Applied;
use tally_bus::dead_letter::{self, RedriveOutcome};
use tally_bus::{outbox, BusSettings, EmbeddedBus};
use tally_db::testing::{TestBackend, TestLocation};
use tally_db::{both_backends, Db, ServiceSchema};
use tally_kernel::Envelope;
use tokio_util::sync::CancellationToken;

/// A stand-in claims log: only the infrastructure tables.
fn claims_schema() -> ServiceSchema {
    let none = || Migrator {
        migrations: Cow::Owned(Vec::new()),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    };
    ServiceSchema {
        name: "claims",
        sqlite: none(),
        postgres: none(),
    }
}

fn claim_accepted(claim_id: &str, npi: &str, net_fee_minor: i64) -> Envelope {
    Envelope {
        id: tally_kernel::id::new_v7(),
        event_type: tally_billing::CLAIM_ACCEPTED.into(),
        version: 1,
        source: "claims".into(),
        aggregate_type: "claim".into(),
        aggregate_id: claim_id.into(),
        occurred_at: tally_kernel::time::now(),
        correlation_id: "test".into(),
        causation_id: "test".into(),
        data: serde_json::json!({
            "claim_id": claim_id, "provider_npi": npi, "net_fee_minor": net_fee_minor,
            "currency": "USD", "service_date": "2018-03-28T00:00:00Z", "submitted_procedure": "D0180"
        }),
    }
}

async fn payables(db: &Db) -> Vec<(String, i64)> {
    sqlx::query("SELECT claim_id, amount_minor FROM provider_payables ORDER BY claim_id")
        .fetch_all(db.reader())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.try_get(0).unwrap(), r.try_get(1).unwrap()))
        .collect()
}

async fn one_payable_per_claim_however_often_it_arrives(backend: TestBackend) {
    let Some(loc) = TestLocation::new(backend).await else {
        return;
    };
    let billing = Db::open_and_migrate(&loc.settings(), &tally_billing::SCHEMA)
        .await
        .unwrap();
    let consumer = tally_billing::payables_consumer(billing.clone());
    let event = claim_accepted("c-1", "1234567893", -2_500);
    assert_eq!(
        consumer.apply("claims", 1, &event).await.unwrap(),
        Applied::Applied
    );
    assert_eq!(
        consumer.apply("claims", 1, &event).await.unwrap(),
        Applied::Duplicate
    );
    // The same claim announced again under a new event id (a republished outbox row).
    let again = claim_accepted("c-1", "1234567893", -2_500);
    assert_eq!(
        consumer.apply("claims", 2, &again).await.unwrap(),
        Applied::Applied
    );
    assert_eq!(payables(&billing).await, vec![("c-1".to_owned(), -2_500)]);
}
both_backends!(one_payable_per_claim_however_often_it_arrives);

async fn a_failing_payable_is_dead_lettered_then_recorded_once_after_redrive(backend: TestBackend) {
    let Some(loc) = TestLocation::new(backend).await else {
        return;
    };
    let claims = Db::open_and_migrate(&loc.settings(), &claims_schema())
        .await
        .unwrap();
    let billing = Db::open_and_migrate(&loc.settings(), &tally_billing::SCHEMA)
        .await
        .unwrap();
    let consumer = tally_billing::payables_consumer(billing.clone());

    // The payables table is out of reach: every attempt fails.
    let mut tx = billing.begin_write().await.unwrap();
    sqlx::query("ALTER TABLE provider_payables RENAME TO provider_payables_away")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let event = claim_accepted("c-9", "1234567893", 12_000);
    let mut tx = claims.begin_write().await.unwrap();
    outbox::append(&claims, &mut tx, std::slice::from_ref(&event))
        .await
        .unwrap();
    claims.commit(tx).await.unwrap();

    let settings = BusSettings {
        max_attempts: 3,
        retry_base: Duration::from_millis(1),
        retry_max: Duration::from_millis(5),
        poll_interval: Duration::from_millis(10),
        ..BusSettings::default()
    };
    let mut bus = EmbeddedBus::new(settings);
    bus.add_log(claims.clone(), &[tally_billing::CLAIM_ACCEPTED]);
    bus.add_consumer(consumer.clone());
    let shutdown = CancellationToken::new();
    let mut tasks = bus.spawn(true, shutdown.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while dead_letter::list(&billing, false).await.unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the failing payable never reached the dead letters"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    let dead = dead_letter::list(&billing, false).await.unwrap();
    assert_eq!((dead.len(), dead[0].attempts), (1, 3));

    // The table is back: redrive records the payable once, and only once.
    let mut tx = billing.begin_write().await.unwrap();
    sqlx::query("ALTER TABLE provider_payables_away RENAME TO provider_payables")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        dead_letter::redrive(&consumer, &dead[0].id).await.unwrap(),
        RedriveOutcome::Applied
    );
    assert_eq!(
        dead_letter::redrive(&consumer, &dead[0].id).await.unwrap(),
        RedriveOutcome::NotFound
    );
    assert_eq!(
        consumer.apply("claims", 1, &event).await.unwrap(),
        Applied::Duplicate
    );
    assert_eq!(payables(&billing).await, vec![("c-9".to_owned(), 12_000)]);
}
both_backends!(a_failing_payable_is_dead_lettered_then_recorded_once_after_redrive);
