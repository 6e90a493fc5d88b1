//! The HTTP patient directory against a small patients server on 127.0.0.1:0: the bearer token,
//! 200 (active or deactivated), 404, 500 and garbage; then care booking through it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tally_care::{
    CareSettings, DirectoryError, HttpPatientDirectory, PatientDirectory, PatientStatus,
};
use tally_db::both_backends;
use tally_db::testing::TestBackend;
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::{app_over, assert_problem, booking, FakeDirectory};

pub const TOKEN: &str = "tally_care_secret-token";
pub const ACTIVE: Uuid = Uuid::from_u128(0x0190_c7a2_8f3e_7cc1_9a5b_3c2d_1e0f_4a01);
pub const DEACTIVATED: Uuid = Uuid::from_u128(0x0190_c7a2_8f3e_7cc1_9a5b_3c2d_1e0f_4a02);
pub const BROKEN: Uuid = Uuid::from_u128(0x0190_c7a2_8f3e_7cc1_9a5b_3c2d_1e0f_4a03);
pub const GARBLED: Uuid = Uuid::from_u128(0x0190_c7a2_8f3e_7cc1_9a5b_3c2d_1e0f_4a04);

/// A patient body as the patients service answers it, details and all.
fn patient(id: Uuid, status: &str) -> Response {
    Json(json!({
        "id": id,
        "fullName": "Zuleika Quixaba",
        "dateOfBirth": "1977-07-07",
        "email": "zuleika@zq.private.example",
        "phone": "+5521981234567",
        "status": status,
        "createdAt": "2026-01-01T00:00:00Z",
        "updatedAt": "2026-01-01T00:00:00Z",
    }))
    .into_response()
}

async fn get_patient(
    State(seen): State<Arc<std::sync::Mutex<Vec<String>>>>,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    seen.lock().unwrap().push(auth.clone());
    if auth != format!("Bearer {TOKEN}") {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match id {
        ACTIVE => patient(id, "active"),
        DEACTIVATED => patient(id, "deactivated"),
        BROKEN => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        GARBLED => patient(id, "removed"),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A patients server on a free port; returns its base URL and the Authorization headers seen.
pub async fn patients_server() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let router = Router::new()
        .route("/patients/{id}", get(get_patient))
        .with_state(seen.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn the_http_directory_reads_the_status_with_the_services_token() {
    let (base, seen) = patients_server().await;
    let directory = HttpPatientDirectory::new(base.clone(), TOKEN);
    assert_eq!(
        directory.status(ACTIVE).await.unwrap(),
        Some(PatientStatus::Active)
    );
    assert_eq!(
        directory.status(DEACTIVATED).await.unwrap(),
        Some(PatientStatus::Deactivated)
    );
    assert_eq!(directory.status(Uuid::new_v4()).await.unwrap(), None);
    assert!(matches!(
        directory.status(BROKEN).await,
        Err(DirectoryError::Status(500))
    ));
    assert!(matches!(
        directory.status(GARBLED).await,
        Err(DirectoryError::Malformed)
    ));
    assert!(seen
        .lock()
        .unwrap()
        .iter()
        .all(|auth| auth == &format!("Bearer {TOKEN}")));

    // A trailing slash on the base is fine; a wrong token is a failure, not an unknown patient.
    let slashed = HttpPatientDirectory::new(format!("{base}/"), TOKEN);
    assert_eq!(
        slashed.status(ACTIVE).await.unwrap(),
        Some(PatientStatus::Active)
    );
    let wrong = HttpPatientDirectory::new(base, "tally_other");
    assert!(matches!(
        wrong.status(ACTIVE).await,
        Err(DirectoryError::Status(401))
    ));
    assert!(
        !format!("{wrong:?}").contains("tally_other"),
        "no token in Debug"
    );
}

#[tokio::test]
async fn an_unreachable_directory_is_an_error() {
    // A port that was free a moment ago: nothing listens on it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let directory = HttpPatientDirectory::new(format!("http://{addr}"), TOKEN);
    let error = directory.status(ACTIVE).await.unwrap_err();
    assert!(matches!(error, DirectoryError::Unreachable(_)), "{error:?}");
}

async fn care_books_through_the_http_directory(backend: TestBackend) {
    let (base, _) = patients_server().await;
    let directory: Arc<dyn PatientDirectory> = Arc::new(HttpPatientDirectory::new(base, TOKEN));
    let fake = Arc::new(FakeDirectory::default());
    let Some(app) = app_over(backend, CareSettings::default(), directory, fake).await else {
        return;
    };
    let physician = app.physician().await;
    let (start, end) = ("2030-01-07T09:00:00Z", "2030-01-07T09:30:00Z");
    let slot = |patient: Uuid| booking(&patient.to_string(), &physician, start, end);

    let down = app.post("/appointments", &slot(BROKEN)).await;
    assert_problem(&down, StatusCode::SERVICE_UNAVAILABLE, &[]);
    let unknown = app.post("/appointments", &slot(Uuid::new_v4())).await;
    assert_problem(&unknown, StatusCode::UNPROCESSABLE_ENTITY, &["patientId"]);
    let deactivated = app.post("/appointments", &slot(DEACTIVATED)).await;
    assert_problem(
        &deactivated,
        StatusCode::UNPROCESSABLE_ENTITY,
        &["patientId"],
    );
    assert_eq!(app.outbox_count().await, 0);

    let booked = app.post("/appointments", &slot(ACTIVE)).await;
    assert_eq!(booked.status, StatusCode::CREATED, "{}", booked.raw);
    assert!(
        !booked.raw.contains("Zuleika"),
        "nothing of the patient is kept"
    );
    assert_eq!(app.appointment_count().await, 1);
}
both_backends!(care_books_through_the_http_directory);
