//! No patient data in logs: every log line written while the service reads contact details,
//! refuses a bad event, renders, delivers by webhook and e-mail (with a failure each, the SMTP
//! one repeating the address) and answers its routes is captured at TRACE level and searched
//! for the details and the message text it handled.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tally_db::testing::TestBackend;
use tally_notifications::Notifications;
use tower::ServiceExt as _;
use uuid::Uuid;

use crate::{
    app, cancelled, eventually, fast, registered, updated, Answer, Receiver, SmtpSink, Worker,
};

/// Values that must never appear in a log.
const SECRETS: &[&str] = &[
    "Zuleika",
    "Quixaba",
    "zq.private",
    // The phone's digits, whole or as people write them; not a fragment that a timestamp or a
    // duration in the log could hold by chance.
    "981234567",
    "98123-4567",
    "98123 4567",
    "Xerxes",
    "has been cancelled",
    "Appointment cancelled",
];

async fn the_service_logs_no_patient_data(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    // The runtime has one thread: the service's tasks run on the thread that captures.
    let capture = tally_http::testing::LogCapture::start();
    tracing::info!("capture started");

    let receiver = Receiver::start(&[Answer::Status(500)], Answer::Status(200)).await;
    let sink = SmtpSink::start().await;
    sink.refuse_next(1);
    let patient = Uuid::now_v7();
    let email = Some("Zuleika@zq.private.example");
    let phone = Some("+5521981234567");
    app.apply(&registered(patient, "Zuleika Quixaba", email, phone))
        .await;
    app.apply(&updated(patient, "Zuleika Quixaba", email, phone))
        .await;
    app.apply(&cancelled(patient, Some("Xerxes asked to move it")))
        .await;

    // A refused event is logged by the bus with its error: the error names no value.
    let mut bad = registered(patient, "Zuleika Quixaba", email, phone);
    bad.data["email"] = serde_json::json!(["Zuleika@zq.private.example"]);
    let error = app
        .recipients
        .apply("stand-in", 99, &bad)
        .await
        .unwrap_err();
    tracing::error!(error = %error, "event moved to the dead letters");

    let settings = fast(vec![receiver.webhook()], Some(sink.smtp()));
    let worker = Worker::start(&app.db, settings.clone());
    eventually("the message to go out", || async {
        app.messages().await.first().is_some_and(|m| m.2 == "sent")
    })
    .await;
    worker.stop().await;
    assert_eq!((receiver.accepted(), sink.mails().len()), (1, 1));

    let router = tally_notifications::router(Notifications::new(app.db.clone(), settings));
    let id = app.messages().await[0].0.clone();
    for uri in [
        format!("/notifications?patientId={patient}"),
        format!("/notifications/{id}"),
    ] {
        let request = Request::get(uri).body(Body::empty()).unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    let logs = capture.text();
    assert!(logs.contains("capture started"), "the capture works");
    assert!(logs.contains("notification delivered"), "{logs}");
    assert!(
        logs.contains("retrying"),
        "the failures were logged: {logs}"
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
