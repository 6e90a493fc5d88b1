//! The patients service against real SQLite and PostgreSQL, each test on a fresh database,
//! driven through its router in-process as a client would: status, body, and the events in the
//! service's log.

mod logs;
mod register;
mod search;
mod update;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tally_bus::{log, outbox};
use tally_db::testing::{TestBackend, TestLocation};
use tally_db::{Backend, Db};
use tally_kernel::Envelope;
use tally_patients::Patients;
use tower::ServiceExt as _;

/// The service on a fresh database.
pub struct App {
    _loc: TestLocation,
    pub db: Db,
    pub patients: Patients,
    router: Router,
}

/// What a client sees of a response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
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
        self.body["id"].as_str().expect("a patient id").to_owned()
    }
}

pub async fn app(backend: TestBackend) -> Option<App> {
    let loc = TestLocation::new(backend).await?;
    let db = Db::open_and_migrate(&loc.settings(), &tally_patients::SCHEMA)
        .await
        .expect("the patients database opens and migrates");
    let patients = Patients::new(db.clone());
    let router = tally_patients::router(patients.clone());
    Some(App {
        _loc: loc,
        db,
        patients,
        router,
    })
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

    pub async fn patch(&self, uri: &str, body: &Value) -> Reply {
        self.send(Method::PATCH, uri, Some(body), None).await
    }

    pub async fn deactivate(&self, id: &str) -> Reply {
        self.send(
            Method::POST,
            &format!("/patients/{id}/deactivate"),
            None,
            None,
        )
        .await
    }

    /// Registers a patient; panics unless it is 201.
    pub async fn register(&self, body: &Value) -> Reply {
        let reply = self.post("/patients", body).await;
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

    /// How many patients the service holds, straight from its table.
    pub async fn patient_count(&self) -> i64 {
        use sqlx::Row as _;
        sqlx::query("SELECT COUNT(*) FROM patients")
            .fetch_one(self.db.reader())
            .await
            .unwrap()
            .try_get(0)
            .unwrap()
    }
}

pub fn maria() -> Value {
    json!({
        "fullName": "  Maria da Silva ",
        "dateOfBirth": "1984-02-29",
        "email": "Maria.Silva@Example.COM",
        "phone": "+55 11 98765-4321",
    })
}

/// `maria()` as the service keeps it.
pub fn maria_stored() -> Value {
    json!({
        "fullName": "Maria da Silva",
        "dateOfBirth": "1984-02-29",
        "email": "Maria.Silva@example.com",
        "phone": "+5511987654321",
    })
}

/// Checks that every field of `expected` has that value in `body`.
pub fn assert_fields(body: &Value, expected: &Value) {
    for (field, value) in expected.as_object().unwrap() {
        assert_eq!(&body[field], value, "field {field} of {body}");
    }
}

/// A problem+json answer with this status, naming exactly these fields.
pub fn assert_problem(reply: &Reply, status: StatusCode, fields: &[&str]) {
    assert_eq!(reply.status, status, "{}", reply.raw);
    assert_eq!(reply.content_type, "application/problem+json");
    assert_eq!(reply.body["status"], status.as_u16());
    let mut named = reply.fields();
    named.sort_unstable();
    let mut expected = fields.to_vec();
    expected.sort_unstable();
    assert_eq!(named, expected, "{}", reply.raw);
}
