//! The patients HTTP API (document 004's patient service): register, read, search, update and
//! deactivate patients; and [`Patients::lookup`] for services in the same process.
//!
//! Bad input gets a 422 naming every bad field; the details say what is wrong with the value
//! and never repeat it (not even serde's "invalid type: integer `5551234`"). Request and
//! response bodies hold patient details and have no `Debug`, so that they cannot be logged by
//! accident.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Deserializer, Serialize};
use tally_db::Db;
use tally_http::{
    execute, ApiJson, ApiQuery, Failure, FieldError, FieldErrors, IdempotencyHeader,
    IdempotentRequest, Problem, RequestMeta,
};
use tally_kernel::time::{self, Timestamp};
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use super::store::{self, Store};
use crate::domain::{
    latest_today, DateOfBirth, Email, Field, Patient, PatientChanges, PatientDetails, PatientError,
    PatientName, PatientStatus, Phone, SearchTerm,
};

/// The patients service as the HTTP layer and the other services of the process see it.
#[derive(Clone)]
pub struct Patients {
    store: Store,
}

impl Patients {
    pub fn new(db: Db) -> Self {
        Self {
            store: Store::new(db),
        }
    }

    fn db(&self) -> &Db {
        self.store.db()
    }

    /// Whether `id` is a registered patient, and whether it is active: what the care service
    /// checks before booking. `None` for an unknown id.
    pub async fn lookup(&self, id: Uuid) -> Result<Option<PatientStatus>, sqlx::Error> {
        self.store.status(id).await
    }
}

pub fn router(patients: Patients) -> Router {
    Router::new()
        .route("/patients", post(register).get(list))
        .route(
            "/patients/{id}",
            get(get_patient).put(put_patient).patch(update),
        )
        .route("/patients/{id}/deactivate", post(deactivate))
        .with_state(patients)
}

#[derive(OpenApi)]
#[openapi(
    paths(register, put_patient, get_patient, list, update, deactivate),
    components(schemas(Problem, FieldError, PatientView, PatientPage, RegisterPatientRequest,
        UpdatePatientRequest)),
    tags((name = "patients", description = "Patient registration and management"))
)]
pub struct PatientsApi;

/// A field as the API names it.
fn api_name(field: Field) -> &'static str {
    match field {
        Field::FullName => "fullName",
        Field::DateOfBirth => "dateOfBirth",
        Field::Email => "email",
        Field::Phone => "phone",
    }
}

/// The one place patient errors become HTTP statuses.
pub(crate) fn problem(e: &PatientError) -> Problem {
    let detail = e.to_string();
    match e {
        PatientError::NotFound(_) => Problem::not_found("the patient").with_detail(detail),
        PatientError::RegisteredDifferently { differing, .. } => differing.iter().fold(
            Problem::new(
                StatusCode::CONFLICT,
                "patient-registered-differently",
                "Patient already registered with other details",
            )
            .with_detail(detail),
            |p, field| p.with_field(api_name(*field), "differs from the registered patient"),
        ),
        PatientError::Deactivated(_) => Problem::new(
            StatusCode::CONFLICT,
            "patient-deactivated",
            "Patient deactivated",
        )
        .with_detail(detail),
    }
}

fn scope(route: &str) -> String {
    format!("patients:{route}")
}

/// A string field of a body as it was sent. Reading one never fails, so that a body with several
/// bad fields gets all of them named at once (serde would stop at the first), and a value of the
/// wrong type is refused without being repeated (serde would say "invalid type: integer
/// `5511987654321`").
#[derive(Default)]
enum Sent {
    #[default]
    Absent,
    Null,
    Text(String),
    NotText,
}

impl<'de> Deserialize<'de> for Sent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match serde_json::Value::deserialize(d)? {
            serde_json::Value::Null => Sent::Null,
            serde_json::Value::String(s) => Sent::Text(s),
            _ => Sent::NotText,
        })
    }
}

const NOT_TEXT: &str = "must be a string";

type Fields = FieldErrors;

/// The patients' own field parsers, on top of the shared collector: they tell a field left
/// out from one sent as `null` or as something other than text.
trait PatientFields {
    fn optional_str<T>(
        &mut self,
        field: &str,
        raw: Option<&str>,
        parse: impl Fn(&str) -> Result<T, &'static str>,
    ) -> Option<Option<T>>;
    fn required<T>(
        &mut self,
        field: &str,
        sent: &Sent,
        parse: impl Fn(&str) -> Result<T, &'static str>,
    ) -> Option<T>;
    fn optional<T>(
        &mut self,
        field: &str,
        sent: &Sent,
        parse: impl Fn(&str) -> Result<T, &'static str>,
    ) -> Option<Option<T>>;
    fn kept_or_set<T>(
        &mut self,
        field: &str,
        sent: &Sent,
        parse: impl Fn(&str) -> Result<T, &'static str>,
    ) -> Option<Option<T>>;
    fn kept_removed_or_set<T>(
        &mut self,
        field: &str,
        sent: &Sent,
        parse: impl Fn(&str) -> Result<T, &'static str>,
    ) -> Option<Option<Option<T>>>;
}

impl PatientFields for FieldErrors {
    /// A value that may be left out (`None`), parsed when given.
    fn optional_str<T>(
        &mut self,
        field: &str,
        raw: Option<&str>,
        parse: impl Fn(&str) -> Result<T, &'static str>,
    ) -> Option<Option<T>> {
        match raw {
            None => Some(None),
            Some(raw) => self.check(field, parse(raw)).map(Some),
        }
    }

    fn required<T>(
        &mut self,
        field: &str,
        sent: &Sent,
        parse: impl Fn(&str) -> Result<T, &'static str>,
    ) -> Option<T> {
        let result = match sent {
            Sent::Absent => Err("is required"),
            Sent::Null => Err("must not be null"),
            Sent::NotText => Err(NOT_TEXT),
            Sent::Text(raw) => parse(raw),
        };
        self.check(field, result)
    }

    /// Left out or `null`: `None`.
    fn optional<T>(
        &mut self,
        field: &str,
        sent: &Sent,
        parse: impl Fn(&str) -> Result<T, &'static str>,
    ) -> Option<Option<T>> {
        match sent {
            Sent::Absent | Sent::Null => Some(None),
            Sent::NotText => self.check(field, Err(NOT_TEXT)),
            Sent::Text(raw) => self.check(field, parse(raw)).map(Some),
        }
    }

    /// A field of a partial update that cannot be removed: left out keeps it (`None`), `null` is
    /// refused.
    fn kept_or_set<T>(
        &mut self,
        field: &str,
        sent: &Sent,
        parse: impl Fn(&str) -> Result<T, &'static str>,
    ) -> Option<Option<T>> {
        match sent {
            Sent::Absent => Some(None),
            Sent::Null => self.check(field, Err("must not be null; leave it out to keep it")),
            other => self.required(field, other, parse).map(Some),
        }
    }

    /// A field of a partial update that can be removed: left out keeps it (`None`), `null`
    /// removes it (`Some(None)`).
    fn kept_removed_or_set<T>(
        &mut self,
        field: &str,
        sent: &Sent,
        parse: impl Fn(&str) -> Result<T, &'static str>,
    ) -> Option<Option<Option<T>>> {
        match sent {
            Sent::Absent => Some(None),
            other => self.optional(field, other, parse).map(Some),
        }
    }
}

/// A patient id in a path: anything but a UUID names no patient.
fn path_id(raw: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(raw).map_err(|_| Problem::not_found("the patient"))
}

// ---- Requests --------------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterPatientRequest {
    /// 1 to 200 characters, no control characters; surrounding spaces are dropped.
    #[schema(value_type = String, required = true, example = "Maria da Silva")]
    #[serde(default)]
    full_name: Sent,
    /// `YYYY-MM-DD`, from 1900-01-01 to today.
    #[schema(value_type = String, required = true, format = Date, example = "1984-02-29")]
    #[serde(default)]
    date_of_birth: Sent,
    /// Optional: left out or `null` when unknown. The domain is lowercased.
    #[schema(value_type = Option<String>, format = Email, example = "maria@example.com")]
    #[serde(default)]
    email: Sent,
    /// Optional: `+`, the country code and the number, 8 to 15 digits; spaces and dashes are
    /// dropped.
    #[schema(value_type = Option<String>, example = "+55 11 98765-4321")]
    #[serde(default)]
    phone: Sent,
}

impl RegisterPatientRequest {
    /// The details, or `None` with every refused field recorded in `f`.
    fn parse(&self, f: &mut Fields) -> Option<PatientDetails> {
        let today = latest_today(time::now());
        let full_name = f.required("fullName", &self.full_name, PatientName::parse);
        let date_of_birth = f.required("dateOfBirth", &self.date_of_birth, |d| {
            DateOfBirth::parse(d, today)
        });
        let email = f.optional("email", &self.email, Email::parse);
        let phone = f.optional("phone", &self.phone, Phone::parse);
        let ((full_name, date_of_birth), (email, phone)) =
            full_name.zip(date_of_birth).zip(email.zip(phone))?;
        Some(PatientDetails {
            full_name,
            date_of_birth,
            email,
            phone,
        })
    }
}

/// Fields left out keep their values.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdatePatientRequest {
    /// `null` is refused: a patient always has a name.
    #[schema(value_type = Option<String>, example = "Maria Souza")]
    #[serde(default)]
    full_name: Sent,
    /// `null` is refused.
    #[schema(value_type = Option<String>, format = Date, example = "1984-02-29")]
    #[serde(default)]
    date_of_birth: Sent,
    /// `null` removes the address.
    #[schema(value_type = Option<String>, format = Email, example = "maria.souza@example.com")]
    #[serde(default)]
    email: Sent,
    /// `null` removes the number.
    #[schema(value_type = Option<String>, example = "+5511987654321")]
    #[serde(default)]
    phone: Sent,
}

impl UpdatePatientRequest {
    fn parse(&self) -> Result<PatientChanges, Problem> {
        let today = latest_today(time::now());
        let mut f = Fields::default();
        let full_name = f.kept_or_set("fullName", &self.full_name, PatientName::parse);
        let date_of_birth = f.kept_or_set("dateOfBirth", &self.date_of_birth, |d| {
            DateOfBirth::parse(d, today)
        });
        let email = f.kept_removed_or_set("email", &self.email, Email::parse);
        let phone = f.kept_removed_or_set("phone", &self.phone, Phone::parse);
        let parsed = full_name.zip(date_of_birth).zip(email.zip(phone));
        f.finish(parsed).map(
            |((full_name, date_of_birth), (email, phone))| PatientChanges {
                full_name,
                date_of_birth,
                email,
                phone,
            },
        )
    }
}

// ---- Responses -------------------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatientView {
    id: Uuid,
    #[schema(example = "Maria da Silva")]
    full_name: String,
    #[schema(example = "1984-02-29")]
    date_of_birth: String,
    #[schema(example = "maria@example.com")]
    email: Option<String>,
    #[schema(example = "+5511987654321")]
    phone: Option<String>,
    /// `active` or `deactivated`.
    #[schema(example = "active")]
    status: &'static str,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Timestamp,
}

impl From<&Patient> for PatientView {
    fn from(p: &Patient) -> Self {
        let d = &p.details;
        Self {
            id: p.id,
            full_name: d.full_name.as_str().to_owned(),
            date_of_birth: d.date_of_birth.to_iso(),
            email: d.email.as_ref().map(|e| e.as_str().to_owned()),
            phone: d.phone.as_ref().map(|p| p.as_str().to_owned()),
            status: p.status.as_str(),
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatientPage {
    items: Vec<PatientView>,
    /// Pass as `before` for the next (older) page; null on the last page.
    next_cursor: Option<String>,
}

// ---- Writes ----------------------------------------------------------------------------------

/// Registers a patient under an id the server makes (UUID v7).
///
/// Without an `Idempotency-Key` every call registers another patient; to retry safely send one,
/// or choose the id yourself with `PUT /patients/{id}`.
#[utoipa::path(post, path = "/patients", tag = "patients", request_body = RegisterPatientRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses(
        (status = 201, body = PatientView),
        (status = 422, description = "Invalid fields, each named", body = Problem, content_type = "application/problem+json"),
    ))]
async fn register(
    State(p): State<Patients>,
    RequestMeta(meta): RequestMeta,
    idem: IdempotencyHeader,
    ApiJson(body): ApiJson<RegisterPatientRequest>,
) -> Response {
    let mut f = Fields::default();
    let details = body.parse(&mut f);
    let details = match f.finish(details) {
        Ok(details) => details,
        Err(problem) => return problem.into_response(),
    };
    let request = IdempotentRequest::new(idem, &scope("POST /patients"), &details);
    // Made once: if the transaction is retried, it registers the same id.
    let id = tally_kernel::id::new_v7();
    let db = p.db().clone();
    execute(&db, request, StatusCode::CREATED, move |tx| {
        let (p, details, meta) = (p.clone(), details.clone(), meta.clone());
        Box::pin(async move {
            let (patient, _) = p.store.register(tx, id, &details, &meta).await?;
            Ok(PatientView::from(&patient))
        })
    })
    .await
}

/// Internal to `PUT`: its transaction found the patient registered when it expected to register
/// it (a concurrent registration committed in between), or the reverse. The transaction is
/// rolled back and run again with the other status; the refusal is not a 409, so it is never
/// stored for a key. A client would only see it if the rerun raced too, which cannot happen:
/// patients are never deleted.
fn registration_raced() -> Failure {
    Failure::Refused(
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "registration-raced",
            "Concurrent registration",
        )
        .with_detail("the patient was registered concurrently; retry the request"),
    )
}

/// Registers a patient under an id the caller chose: the safe way to retry a registration.
///
/// 201 when this call registered the patient. The same details again (as the patient now has
/// them) answer 200 with the patient, change nothing and publish nothing. Other details under a
/// registered id are refused with 409, naming the fields that differ; use `PATCH` to change a
/// patient.
#[utoipa::path(put, path = "/patients/{id}", tag = "patients", request_body = RegisterPatientRequest,
    params(("id" = Uuid, Path, description = "The patient id, chosen by the caller"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses(
        (status = 201, description = "Registered", body = PatientView),
        (status = 200, description = "Already registered with these details", body = PatientView),
        (status = 409, description = "Already registered with other details", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or an id that is not a UUID", body = Problem, content_type = "application/problem+json"),
    ))]
async fn put_patient(
    State(p): State<Patients>,
    RequestMeta(meta): RequestMeta,
    idem: IdempotencyHeader,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RegisterPatientRequest>,
) -> Response {
    let mut f = Fields::default();
    let id = f.check(
        "id",
        Uuid::parse_str(&id)
            .map_err(|_| "must be a UUID, like 0190c7a2-8f3e-7cc1-9a5b-3c2d1e0f4a6b"),
    );
    let details = body.parse(&mut f);
    let (id, details) = match f.finish(id.zip(details)) {
        Ok(parsed) => parsed,
        Err(problem) => return problem.into_response(),
    };
    let request = IdempotentRequest::new(idem, &scope("PUT /patients"), &(id, &details));
    // The status must be fixed before the transaction (it is stored with the response for the
    // key): guess it from a read, and if the transaction finds otherwise, run it again.
    let mut creates = match p.store.patient(id).await {
        Ok(found) => found.is_none(),
        Err(e) => return Problem::from(e).into_response(),
    };
    let db = p.db().clone();
    let mut attempts = 2;
    loop {
        let raced = Arc::new(AtomicBool::new(false));
        let success = if creates {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        let (p, details, meta, flag) = (p.clone(), details.clone(), meta.clone(), raced.clone());
        let response = execute(&db, request.clone(), success, move |tx| {
            let (p, details, meta, raced) =
                (p.clone(), details.clone(), meta.clone(), flag.clone());
            Box::pin(async move {
                let (patient, created) = p.store.register(tx, id, &details, &meta).await?;
                if created != creates {
                    raced.store(true, Ordering::SeqCst);
                    return Err(registration_raced());
                }
                Ok(PatientView::from(&patient))
            })
        })
        .await;
        attempts -= 1;
        if !raced.load(Ordering::SeqCst) || attempts == 0 {
            return response;
        }
        creates = !creates;
    }
}

/// Changes the given fields of a patient; fields left out keep their values.
///
/// Publishes `patient.updated` with the names of the fields whose values changed; when none
/// did, nothing is written or published. A deactivated patient cannot be changed (409).
#[utoipa::path(patch, path = "/patients/{id}", tag = "patients", request_body = UpdatePatientRequest,
    params(("id" = Uuid, Path, description = "The patient id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses(
        (status = 200, body = PatientView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Patient deactivated", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, each named", body = Problem, content_type = "application/problem+json"),
    ))]
async fn update(
    State(p): State<Patients>,
    RequestMeta(meta): RequestMeta,
    idem: IdempotencyHeader,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdatePatientRequest>,
) -> Response {
    let id = match path_id(&id) {
        Ok(id) => id,
        Err(problem) => return problem.into_response(),
    };
    let changes = match body.parse() {
        Ok(changes) => changes,
        Err(problem) => return problem.into_response(),
    };
    let request = IdempotentRequest::new(idem, &scope("PATCH /patients"), &(id, &changes));
    let db = p.db().clone();
    execute(&db, request, StatusCode::OK, move |tx| {
        let (p, changes, meta) = (p.clone(), changes.clone(), meta.clone());
        Box::pin(async move {
            let patient = p.store.update(tx, id, &changes, &meta).await?;
            Ok(PatientView::from(&patient))
        })
    })
    .await
}

/// Deactivates a patient: care refuses new appointments for them. Deactivating a deactivated
/// patient answers 200 and changes nothing.
#[utoipa::path(post, path = "/patients/{id}/deactivate", tag = "patients",
    params(("id" = Uuid, Path, description = "The patient id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses(
        (status = 200, body = PatientView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn deactivate(
    State(p): State<Patients>,
    RequestMeta(meta): RequestMeta,
    idem: IdempotencyHeader,
    Path(id): Path<String>,
) -> Response {
    let id = match path_id(&id) {
        Ok(id) => id,
        Err(problem) => return problem.into_response(),
    };
    let request = IdempotentRequest::new(idem, &scope("POST /patients/deactivate"), &id);
    let db = p.db().clone();
    execute(&db, request, StatusCode::OK, move |tx| {
        let (p, meta) = (p.clone(), meta.clone());
        Box::pin(async move {
            let patient = p.store.deactivate(tx, id, &meta).await?;
            Ok(PatientView::from(&patient))
        })
    })
    .await
}

// ---- Reads -----------------------------------------------------------------------------------

/// A patient.
#[utoipa::path(get, path = "/patients/{id}", tag = "patients",
    params(("id" = Uuid, Path, description = "The patient id")),
    responses((status = 200, body = PatientView), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_patient(
    State(p): State<Patients>,
    Path(id): Path<String>,
) -> Result<Json<PatientView>, Problem> {
    let id = path_id(&id)?;
    let patient = p
        .store
        .patient(id)
        .await?
        .ok_or_else(|| problem(&PatientError::NotFound(id)))?;
    Ok(Json(PatientView::from(&patient)))
}

/// Patients per page by default.
const DEFAULT_PAGE: i64 = 20;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Finds patients whose name, or a word in it, starts with this, ignoring case: `sil` and
    /// `da silva` both find "Maria da Silva". At most 200 characters; blank means no filter.
    search: Option<String>,
    /// Patients per page, 1 to 100 (default 20).
    limit: Option<i64>,
    /// `nextCursor` of the previous page.
    before: Option<String>,
}

/// Patients, newest registration first, paged; optionally only those whose name matches
/// `search`.
#[utoipa::path(get, path = "/patients", tag = "patients", params(ListQuery),
    responses((status = 200, body = PatientPage),
        (status = 422, description = "Invalid parameters, each named", body = Problem, content_type = "application/problem+json")))]
async fn list(
    State(p): State<Patients>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<PatientPage>, Problem> {
    let mut f = Fields::default();
    let search = f.optional_str("search", query.search.as_deref(), SearchTerm::parse);
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    let limit = f.check(
        "limit",
        if (1..=store::MAX_PAGE).contains(&limit) {
            Ok(limit)
        } else {
            Err("must be between 1 and 100")
        },
    );
    let before = f.optional_str("before", query.before.as_deref(), |c| {
        c.parse::<i64>()
            .ok()
            .filter(|c| *c > 0)
            .ok_or("is not a cursor from this API")
    });
    let (search, (limit, before)) = f.finish(search.zip(limit.zip(before)))?;
    let search = search.flatten();
    let items = p.store.list(search.as_ref(), before, limit + 1).await?;
    let more = items.len() as i64 > limit;
    let items: Vec<_> = items.into_iter().take(limit as usize).collect();
    let next_cursor = if more {
        items.last().map(|i| i.cursor.to_string())
    } else {
        None
    };
    Ok(Json(PatientPage {
        items: items
            .iter()
            .map(|i| PatientView::from(&i.patient))
            .collect(),
        next_cursor,
    }))
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi as _;

    use super::*;

    #[test]
    fn the_api_document_describes_every_route_and_body() {
        let doc = serde_json::to_value(PatientsApi::openapi()).unwrap();
        let paths = &doc["paths"];
        for (path, method) in [
            ("/patients", "post"),
            ("/patients", "get"),
            ("/patients/{id}", "get"),
            ("/patients/{id}", "put"),
            ("/patients/{id}", "patch"),
            ("/patients/{id}/deactivate", "post"),
        ] {
            assert!(
                paths[path][method].is_object(),
                "{method} {path} is documented"
            );
        }
        let put = &paths["/patients/{id}"]["put"]["responses"];
        for status in ["200", "201", "409", "422"] {
            assert!(put[status].is_object(), "PUT documents {status}");
        }
        let list = paths["/patients"]["get"]["parameters"].as_array().unwrap();
        let query: Vec<(&str, &str)> = list
            .iter()
            .map(|p| (p["name"].as_str().unwrap(), p["in"].as_str().unwrap()))
            .collect();
        assert_eq!(
            query,
            [("search", "query"), ("limit", "query"), ("before", "query")]
        );
        let register = &doc["components"]["schemas"]["RegisterPatientRequest"];
        assert_eq!(
            register["required"],
            serde_json::json!(["fullName", "dateOfBirth"])
        );
        assert_eq!(register["properties"]["fullName"]["type"], "string");
    }
}
