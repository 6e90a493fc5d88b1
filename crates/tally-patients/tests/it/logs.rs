//! No patient data in logs: every log line written while the service registers, refuses,
//! updates, searches, deactivates and fails (a 500) is captured at TRACE level and searched for
//! the details it handled.

use axum::http::StatusCode;
use serde_json::json;
use tally_db::testing::TestBackend;

use crate::app;

/// Values that must never appear in a log, as sent and as stored.
const SECRETS: &[&str] = &[
    "Zuleika",
    "zuleika",
    "Quixaba",
    "quixaba",
    "1977-07-07",
    "zq.private",
    // The phone's digits, whole or as people write them; not a fragment that a timestamp or a
    // duration in the log could hold by chance.
    "981234567",
    "98123-4567",
    "98123 4567",
    "Xerxes",
];

async fn the_service_logs_no_patient_data(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    // The runtime has one thread: the service's tasks run on the thread that captures.
    let capture = tally_http::testing::LogCapture::start();
    tracing::info!("capture started");

    let body = json!({
        "fullName": "Zuleika Quixaba",
        "dateOfBirth": "1977-07-07",
        "email": "Zuleika@ZQ.Private.example",
        "phone": "+55 21 98123-4567",
    });
    let created = app.register(&body).await;
    let uri = format!("/patients/{}", created.id());
    let mut other = body.clone();
    other["fullName"] = json!("Xerxes Quixaba");
    assert_eq!(app.put(&uri, &other).await.status, StatusCode::CONFLICT);
    let bad =
        json!({"fullName": "Zuleika\u{1}", "dateOfBirth": "1977-07-07x", "phone": "98123-4567x"});
    assert_eq!(
        app.post("/patients", &bad).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.patch(&uri, &json!({"fullName": "Xerxes Quixaba"}))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/patients?search=quixaba").await.status,
        StatusCode::OK
    );
    assert_eq!(app.deactivate(&created.id()).await.status, StatusCode::OK);

    // A failure inside the transaction: the 500's whole cause chain is logged.
    let mut tx = app.db.begin_write().await.unwrap();
    sqlx::query("ALTER TABLE patient_name_keys RENAME TO patient_name_keys_away")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        app.post("/patients", &body).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );

    let logs = capture.text();
    assert!(logs.contains("capture started"), "the capture works");
    assert!(
        logs.contains("request failed"),
        "the 500 was logged: {logs}"
    );
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
