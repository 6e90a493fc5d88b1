//! No patient data in logs: every log line written while care books through the HTTP directory
//! (whose answers hold a patient's details), cancels with a reason, refuses, meets a failing
//! directory and fails (a 500) is captured at TRACE level and searched for that data.

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::json;
use tally_care::{CareSettings, HttpPatientDirectory, PatientDirectory};
use tally_db::testing::TestBackend;

use crate::directory::{patients_server, ACTIVE, BROKEN, TOKEN};
use crate::{app_over, booking, FakeDirectory};

/// Values that must never appear in a log: the patient's details as the directory answers
/// them, and a cancellation reason.
const SECRETS: &[&str] = &[
    "Zuleika",
    "Quixaba",
    "1977-07-07",
    "zq.private",
    "981234567",
    "Xerxes",
    "oncology",
    TOKEN,
];

async fn the_service_logs_no_patient_data(backend: TestBackend) {
    let (base, _) = patients_server().await;
    let directory: Arc<dyn PatientDirectory> = Arc::new(HttpPatientDirectory::new(base, TOKEN));
    let fake = Arc::new(FakeDirectory::default());
    let Some(app) = app_over(backend, CareSettings::default(), directory, fake).await else {
        return;
    };
    // The runtime has one thread: the service's tasks run on the thread that captures.
    let capture = tally_http::testing::LogCapture::start();
    tracing::info!("capture started");

    let physician = app.physician().await;
    let slot = |patient: &str| {
        booking(
            patient,
            &physician,
            "2030-01-07T09:00:00Z",
            "2030-01-07T09:30:00Z",
        )
    };
    let booked = app.post("/appointments", &slot(&ACTIVE.to_string())).await;
    assert_eq!(booked.status, StatusCode::CREATED, "{}", booked.raw);
    let cancelled = app
        .post(
            &format!("/appointments/{}/cancel", booked.id()),
            &json!({"reason": "Xerxes referred to oncology"}),
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK);
    let refused = app
        .post(
            &format!("/appointments/{}/cancel", booked.id()),
            &json!({"reason": "Xerxes again, oncology"}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(
        app.post("/appointments", &slot(&BROKEN.to_string()))
            .await
            .status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // A failure inside the transaction: the 500's whole cause chain is logged.
    let mut tx = app.db.begin_write().await.unwrap();
    sqlx::query("ALTER TABLE appointments RENAME TO appointments_away")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        app.post("/appointments", &slot(&ACTIVE.to_string()))
            .await
            .status,
        StatusCode::INTERNAL_SERVER_ERROR
    );

    let logs = capture.text();
    assert!(logs.contains("capture started"), "the capture works");
    assert!(
        logs.contains("the patient directory failed"),
        "the 503 was logged: {logs}"
    );
    assert!(
        logs.contains("request failed"),
        "the 500 was logged: {logs}"
    );
    assert!(logs.contains(&BROKEN.to_string()), "ids are fine: {logs}");
    for secret in SECRETS {
        assert!(!logs.contains(secret), "{secret} is in the logs:\n{logs}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn sqlite() {
    the_service_logs_no_patient_data(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "current_thread")]
async fn postgres() {
    the_service_logs_no_patient_data(TestBackend::Postgres).await;
}
