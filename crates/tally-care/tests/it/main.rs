//! The care service against real SQLite and PostgreSQL, each test on a fresh database, driven
//! through its router in-process as a client would: status, body, and the events in the
//! service's log. The patients service is an in-memory directory, except in `directory`, where
//! the HTTP client meets a small server.

mod appointments;
mod consultation;
mod directory;
mod logs;
mod physicians;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use futures_util::future::BoxFuture;
use serde_json::{json, Value};
use sqlx::Row as _;
use tally_bus::{log, outbox};
use tally_care::{Care, CareSettings, DirectoryError, PatientDirectory, PatientStatus};
use tally_db::testing::{TestBackend, TestLocation};
use tally_db::{Backend, Db};
use tally_kernel::Envelope;
use tower::ServiceExt as _;
use uuid::Uuid;

/// The patients service as care sees it, in memory: patients by id, and a switch that makes
/// every answer fail.
#[derive(Default)]
pub struct FakeDirectory {
    patients: Mutex<HashMap<Uuid, PatientStatus>>,
    failing: AtomicBool,
    calls: AtomicUsize,
}

impl FakeDirectory {
    pub fn add(&self, id: Uuid, status: PatientStatus) {
        self.patients.lock().unwrap().insert(id, status);
    }

    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl PatientDirectory for FakeDirectory {
    fn status<'a>(
        &'a self,
        patient_id: Uuid,
    ) -> BoxFuture<'a, Result<Option<PatientStatus>, DirectoryError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let answer = if self.failing.load(Ordering::SeqCst) {
            Err(DirectoryError::Unreachable("connection refused".into()))
        } else {
            Ok(self.patients.lock().unwrap().get(&patient_id).copied())
        };
        Box::pin(async move { answer })
    }
}

/// The service on a fresh database.
pub struct App {
    _loc: TestLocation,
    pub db: Db,
    pub directory: Arc<FakeDirectory>,
    router: Router,
}

/// What a client sees of a response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub content_type: String,
    pub replayed: bool,
    pub raw: String,
    pub body: Value,
}

impl Reply {
    /// The names of the refused fields of a problem.
    pub fn fields(&self) -> Vec<&str> {
        self.body["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| e["field"].as_str().unwrap_or(""))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn id(&self) -> String {
        self.body["id"].as_str().expect("an id").to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

pub async fn app(backend: TestBackend) -> Option<App> {
    app_with(backend, CareSettings::default()).await
}

pub async fn app_with(backend: TestBackend, settings: CareSettings) -> Option<App> {
    let directory = Arc::new(FakeDirectory::default());
    app_over(backend, settings, directory.clone(), directory).await
}

/// The service with `directory` as its patients service (`fake` is kept for the helpers).
pub async fn app_over(
    backend: TestBackend,
    settings: CareSettings,
    directory: Arc<dyn PatientDirectory>,
    fake: Arc<FakeDirectory>,
) -> Option<App> {
    let loc = TestLocation::new(backend).await?;
    let db = Db::open_and_migrate(&loc.settings(), &tally_care::SCHEMA)
        .await
        .expect("the care database opens and migrates");
    let router = tally_care::router(Care::new(db.clone(), directory, settings));
    Some(App {
        _loc: loc,
        db,
        directory: fake,
        router,
    })
}

/// Document 000's patient and physician id (the document uses one UUID for both).
pub const DOC_000_ID: &str = "e6afa807-8705-43d8-ba48-40a421843248";

/// A tariff of 50.00 USD per started 15-minute block.
pub fn tariff() -> Value {
    json!({"kind": "per_block", "blockMinutes": 15, "feePerBlock": "50.00", "currency": "USD"})
}

impl App {
    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("x-request-id", "test-request");
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        let request = match body {
            Some(json) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(json.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let raw = String::from_utf8(bytes.to_vec()).unwrap();
        Reply {
            status,
            content_type: headers
                .get(header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default(),
            replayed: headers.contains_key("idempotent-replayed"),
            headers,
            body: serde_json::from_str(&raw).unwrap_or(Value::Null),
            raw,
        }
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.send(Method::GET, uri, None, None).await
    }

    pub async fn post(&self, uri: &str, body: &Value) -> Reply {
        self.send(Method::POST, uri, Some(body), None).await
    }

    pub async fn put(&self, uri: &str, body: &Value) -> Reply {
        self.send(Method::PUT, uri, Some(body), None).await
    }

    /// Registers a physician with [`tariff`] under `id`; panics unless it is 201.
    pub async fn physician_with_id(&self, id: &str) -> String {
        let reply = self
            .put(
                &format!("/physicians/{id}"),
                &json!({"name": "Dr. Ana Souza", "tariff": tariff()}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.raw);
        reply.id()
    }

    /// A new physician with [`tariff`].
    pub async fn physician(&self) -> String {
        self.physician_with_id(&Uuid::new_v4().to_string()).await
    }

    /// A new active patient, known to the directory.
    pub fn patient(&self) -> String {
        let id = Uuid::new_v4();
        self.directory.add(id, PatientStatus::Active);
        id.to_string()
    }

    /// Books an appointment; panics unless it is 201.
    pub async fn book(&self, patient: &str, physician: &str, start: &str, end: &str) -> Reply {
        let reply = self
            .post("/appointments", &booking(patient, physician, start, end))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.raw);
        reply
    }

    /// Every event in the service's log, in order.
    pub async fn events(&self) -> Vec<Envelope> {
        if self.db.backend() == Backend::Postgres {
            while outbox::sequence_pending(&self.db).await.unwrap() > 0 {}
        }
        log::read_after(&self.db, 0, 10_000)
            .await
            .unwrap()
            .into_iter()
            .map(|entry| entry.envelope.expect("a valid envelope"))
            .collect()
    }

    async fn count(&self, table: &str) -> i64 {
        sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(self.db.reader())
            .await
            .unwrap()
            .try_get(0)
            .unwrap()
    }

    /// Rows in the outbox, sequenced or not.
    pub async fn outbox_count(&self) -> i64 {
        self.count("outbox").await
    }

    pub async fn appointment_count(&self) -> i64 {
        self.count("appointments").await
    }

    pub async fn physician_count(&self) -> i64 {
        self.count("physicians").await
    }
}

pub fn booking(patient: &str, physician: &str, start: &str, end: &str) -> Value {
    json!({
        "patientId": patient,
        "physicianId": physician,
        "scheduledStart": start,
        "scheduledEnd": end,
    })
}

/// `value` without `field` (in an object, or in each object of an array): amounts are checked
/// in the raw text, exactly, never as JSON numbers (which would be binary floating point).
pub fn without(value: &Value, field: &str) -> Value {
    let mut value = value.clone();
    let objects: Vec<&mut Value> = match &mut value {
        Value::Array(items) => items.iter_mut().collect(),
        other => vec![other],
    };
    for object in objects {
        if let Some(map) = object.as_object_mut() {
            map.remove(field);
        }
    }
    value
}

/// A problem+json answer with this status, naming exactly these fields.
pub fn assert_problem(reply: &Reply, status: StatusCode, fields: &[&str]) {
    assert_eq!(reply.status, status, "{}", reply.raw);
    assert_eq!(
        reply.content_type, "application/problem+json",
        "{}",
        reply.raw
    );
    assert_eq!(reply.body["status"], status.as_u16());
    let mut named = reply.fields();
    named.sort_unstable();
    let mut expected = fields.to_vec();
    expected.sort_unstable();
    assert_eq!(named, expected, "{}", reply.raw);
}
