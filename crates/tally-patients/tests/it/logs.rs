//! No patient data in logs: every log line written while the service registers, refuses,
//! updates, searches, deactivates and fails (a 500) is captured at TRACE level and searched for
//! the details it handled.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use serde_json::json;
use tally_db::testing::TestBackend;

use crate::app;

/// Log output collected in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Values that must never appear in a log, as sent and as stored.
const SECRETS: &[&str] = &[
    "Zuleika",
    "zuleika",
    "Quixaba",
    "quixaba",
    "1977-07-07",
    "zq.private",
    "98123",
    "4567",
    "Xerxes",
];

async fn the_service_logs_no_patient_data(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The runtime has one thread: the service's tasks run where this default applies.
    let _guard = tracing::subscriber::set_default(subscriber);
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
    let bad = json!({"fullName": "Zuleika\u{1}", "dateOfBirth": "1977-07-07x", "phone": "98123"});
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

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
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
