//! The care HTTP API: physicians (register, also under a chosen id; read; list) and
//! appointments (book, read, list, close, cancel, no-show), plus document 000's consultation
//! routes ([`super::consultation`]) over the same records.
//!
//! Every write takes an optional `Idempotency-Key`. Bad input gets a 4xx problem naming the
//! field and changes nothing. A booking asks the patients service whether the patient may be
//! booked ([`PatientDirectory`]) before its transaction, never inside it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::FixedOffset;
use serde::{Deserialize, Serialize};
use tally_db::Db;
use tally_http::{
    execute, AmountInput, AmountOutput, ApiJson, ApiJsonOrEmpty, ApiQuery, Failure, FieldError,
    FieldErrors, IdempotencyHeader, IdempotentRequest, Problem, RequestMeta,
};
use tally_kernel::time::Timestamp;
use tally_kernel::{Currency, EventMeta};
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use super::consultation;
use super::directory::{PatientDirectory, DIRECTORY_TIMEOUT};
use super::store::{self, AppointmentFilter, Listed, Store, StoreError};
use crate::domain::physician::{check_default_minutes, DEFAULT_MINUTES};
use crate::domain::tariff::Rule;
use crate::domain::{
    dates, Appointment, Booking, CancelReason, CareError, Field, PatientStatus, Physician,
    PhysicianDetails, PhysicianField, PhysicianName, Schedule, Tariff, TariffError,
};

/// How the care service reads the clinic's local times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CareSettings {
    /// The offset a date without one is read at (document 000 sends `2021-07-01T08:30:00.000`).
    /// Default: UTC.
    pub clinic_utc_offset: FixedOffset,
}

impl Default for CareSettings {
    fn default() -> Self {
        Self {
            clinic_utc_offset: FixedOffset::east_opt(0).expect("0 is a valid offset"),
        }
    }
}

/// The care service as the HTTP layer sees it.
#[derive(Clone)]
pub struct Care {
    pub(super) store: Store,
    directory: Arc<dyn PatientDirectory>,
    pub(super) settings: CareSettings,
}

impl Care {
    pub fn new(db: Db, directory: Arc<dyn PatientDirectory>, settings: CareSettings) -> Self {
        Self {
            store: Store::new(db),
            directory,
            settings,
        }
    }

    pub(super) fn db(&self) -> &Db {
        self.store.db()
    }

    /// Books `booking` under a new id and answers `201` with `view` of the appointment.
    ///
    /// The patient is checked with the directory first, outside any transaction (a remote call
    /// must not hold the database's write lock). With an `Idempotency-Key`, the key is looked at
    /// before that: a retry of a booking made earlier gets the first response back, even if the
    /// directory is down or the patient has been deactivated since. `execute` offers no lookup
    /// on its own, so a first run stops before any work when the key is new, and a second run,
    /// after the directory answered, does the booking (a concurrent retry that committed in
    /// between is replayed by that second run).
    pub(super) async fn book<V>(
        &self,
        meta: EventMeta,
        request: Option<IdempotentRequest>,
        booking: Booking,
        api: Api,
        view: fn(&Appointment, &CareSettings) -> V,
    ) -> Response
    where
        V: Serialize + Send + 'static,
    {
        if request.is_some() {
            let fresh = Arc::new(AtomicBool::new(false));
            let flag = fresh.clone();
            let looked_up = execute(self.db(), request.clone(), StatusCode::CREATED, move |_| {
                flag.store(true, Ordering::SeqCst);
                Box::pin(async { Err::<(), _>(Failure::Refused(key_is_new())) })
            })
            .await;
            if !fresh.load(Ordering::SeqCst) {
                return looked_up;
            }
        }
        if let Err(response) = self.check_booking(&booking, api).await {
            return response;
        }
        // Made once: if the transaction is retried, it books the same id.
        let id = tally_kernel::id::new_v7();
        let care = self.clone();
        execute(self.db(), request, StatusCode::CREATED, move |tx| {
            let (care, booking, meta) = (care.clone(), booking.clone(), meta.clone());
            Box::pin(async move {
                let appointment = care
                    .store
                    .book(tx, id, &booking, &meta)
                    .await
                    .map_err(|e| failure(e, api))?;
                Ok(view(&appointment, &care.settings))
            })
        })
        .await
    }

    /// The checks a booking needs before its transaction: the patient may be booked (the
    /// directory says), and the physician exists (checked again, locked, in the transaction).
    /// Both are reported at once.
    async fn check_booking(&self, booking: &Booking, api: Api) -> Result<(), Response> {
        let mut refusals = Vec::new();
        match self.store.physician(booking.physician_id).await {
            Ok(Some(_)) => {}
            Ok(None) => refusals.push(CareError::PhysicianNotFound(booking.physician_id)),
            Err(e) => return Err(Problem::from(e).into_response()),
        }
        let patient_id = booking.patient_id;
        let status = tokio::time::timeout(DIRECTORY_TIMEOUT, self.directory.status(patient_id));
        match status.await {
            Ok(Ok(Some(PatientStatus::Active))) => {}
            Ok(Ok(Some(PatientStatus::Deactivated))) => {
                refusals.push(CareError::PatientDeactivated(patient_id))
            }
            Ok(Ok(None)) => refusals.push(CareError::PatientNotFound(patient_id)),
            Ok(Err(e)) => {
                tracing::warn!(%patient_id, error = %e, "the patient directory failed");
                return Err(directory_unavailable());
            }
            Err(_) => {
                tracing::warn!(%patient_id, "the patient directory did not answer in time");
                return Err(directory_unavailable());
            }
        }
        match refusals.as_slice() {
            [] => Ok(()),
            [one] => Err(problem(one, api).into_response()),
            several => Err(Problem::validation(
                several
                    .iter()
                    .flat_map(|e| problem(e, api).errors)
                    .collect(),
            )
            .into_response()),
        }
    }
}

/// Internal to [`Care::book`]: the key was not used yet. Never answered to a client and never
/// stored (only a 409 is stored for a key).
fn key_is_new() -> Problem {
    Problem::new(StatusCode::ACCEPTED, "key-is-new", "Key is new")
}

fn directory_unavailable() -> Response {
    let mut response = Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "patient-directory-unavailable",
        "Patient directory unavailable",
    )
    .with_detail("the patients service could not confirm the patient; nothing was booked; retry")
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

pub fn router(care: Care) -> Router {
    Router::new()
        .route("/physicians", post(register_physician).get(list_physicians))
        .route("/physicians/{id}", get(get_physician).put(put_physician))
        .route("/appointments", post(book).get(list_appointments))
        .route("/appointments/{id}", get(get_appointment))
        .route("/appointments/{id}/close", post(close))
        .route("/appointments/{id}/cancel", post(cancel))
        .route("/appointments/{id}/no-show", post(no_show))
        .merge(consultation::routes())
        .with_state(care)
}

#[derive(OpenApi)]
#[openapi(
    paths(register_physician, put_physician, get_physician, list_physicians, book,
        get_appointment, list_appointments, close, cancel, no_show,
        consultation::create, consultation::close, consultation::get_one, consultation::list),
    components(schemas(Problem, FieldError, AmountInput, AmountOutput, PhysicianRequest,
        TariffRequest, PhysicianView, TariffView, PhysicianPage, BookAppointmentRequest, CloseAppointmentRequest,
        CancelAppointmentRequest, AppointmentView, AppointmentPage, consultation::CreateConsultation,
        consultation::CloseConsultation, consultation::ConsultationView,
        consultation::CreatedConsultation)),
    tags((name = "care", description = "Physicians, their tariffs, and appointments"),
        (name = "consultation", description = "Document 000's consultation routes"))
)]
pub struct CareApi;

// ---- Refusals --------------------------------------------------------------------------------

/// Which API a refusal is answered in: each names fields its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Api {
    /// camelCase bodies; an unknown appointment in the path is a 404.
    Appointments,
    /// Document 000's snake_case bodies; the consultation id is a body field, so an unknown one
    /// is a 422 naming `id`.
    Consultation,
}

impl Api {
    fn name(self, field: Field) -> &'static str {
        match (self, field) {
            (_, Field::Id) => "id",
            (Api::Appointments, Field::PatientId) => "patientId",
            (Api::Appointments, Field::PhysicianId) => "physicianId",
            (Api::Appointments, Field::ScheduledStart) => "scheduledStart",
            (Api::Appointments, Field::ScheduledEnd) => "scheduledEnd",
            (Api::Appointments, Field::End) => "end",
            (Api::Consultation, Field::PatientId) => "patient_id",
            (Api::Consultation, Field::PhysicianId) => "physician_id",
            (Api::Consultation, Field::ScheduledStart) => "start_date",
            (Api::Consultation, Field::ScheduledEnd | Field::End) => "end_date",
        }
    }
}

fn physician_field(field: PhysicianField) -> &'static str {
    match field {
        PhysicianField::Name => "name",
        PhysicianField::Tariff => "tariff",
        PhysicianField::DefaultMinutes => "defaultMinutes",
    }
}

/// The one place care refusals become HTTP statuses.
///
/// - 404: an appointment named in the path does not exist.
/// - 409: the state forbids it: the appointment is not booked any more (closing twice,
///   cancelling a closed one), the physician is booked at that time, a physician id is
///   registered with other details.
/// - 422: the request names something that does not exist or cannot be booked (an unknown
///   patient or physician, a deactivated patient, an unknown consultation id in a body), an end
///   before the start, or, in document 000's close, ids that are not the consultation's.
pub(super) fn problem(e: &CareError, api: Api) -> Problem {
    let detail = e.to_string();
    let unprocessable = |slug: &str, title: &str| {
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, slug, title).with_detail(detail.clone())
    };
    let conflict = |slug: &str, title: &str| {
        Problem::new(StatusCode::CONFLICT, slug, title).with_detail(detail.clone())
    };
    match e {
        CareError::AppointmentNotFound(_) => match api {
            Api::Appointments => Problem::not_found("the appointment").with_detail(detail),
            Api::Consultation => unprocessable("unknown-consultation", "Unknown consultation")
                .with_field("id", "does not name a consultation"),
        },
        CareError::PhysicianNotFound(_) => unprocessable("unknown-physician", "Unknown physician")
            .with_field(
                api.name(Field::PhysicianId),
                "does not name a registered physician",
            ),
        CareError::PatientNotFound(_) => unprocessable("unknown-patient", "Unknown patient")
            .with_field(
                api.name(Field::PatientId),
                "does not name a registered patient",
            ),
        CareError::PatientDeactivated(_) => {
            unprocessable("patient-deactivated", "Patient deactivated").with_field(
                api.name(Field::PatientId),
                "names a deactivated patient, who cannot be booked",
            )
        }
        CareError::PhysicianRegisteredDifferently { differing, .. } => differing.iter().fold(
            conflict(
                "physician-registered-differently",
                "Physician already registered with other details",
            ),
            |p, field| {
                p.with_field(
                    physician_field(*field),
                    "differs from the registered physician",
                )
            },
        ),
        CareError::NotBooked { .. } => conflict("appointment-not-booked", "Appointment not booked"),
        CareError::DoubleBooked { .. } => {
            conflict("physician-double-booked", "Physician already booked").with_field(
                api.name(Field::ScheduledStart),
                "overlaps another booked appointment of the physician",
            )
        }
        CareError::Duration { field, error } => {
            Problem::invalid_field(api.name(*field), error.to_string())
        }
        CareError::Mismatch { fields, .. } => Problem::validation(
            fields
                .iter()
                .map(|f| FieldError {
                    field: api.name(*f).into(),
                    detail: "differs from the consultation's".into(),
                })
                .collect(),
        ),
    }
}

pub(super) fn failure(e: StoreError, api: Api) -> Failure {
    match e {
        StoreError::Refused(e) => Failure::Refused(problem(&e, api)),
        StoreError::Db(e) => Failure::Db(e),
    }
}

pub(super) fn scope(route: &str) -> String {
    format!("care:{route}")
}

// ---- Parsing ---------------------------------------------------------------------------------

pub(super) type Fields = FieldErrors;

/// Care's own field parsers, on top of the shared collector.
pub(super) trait CareFields {
    fn required<'a>(&mut self, field: &str, value: Option<&'a str>) -> Option<&'a str>;
    fn uuid(&mut self, field: &str, value: Option<&str>) -> Option<Uuid>;
    fn date_time(
        &mut self,
        field: &str,
        value: Option<&str>,
        settings: &CareSettings,
    ) -> Option<Timestamp>;
    fn page(
        &mut self,
        limit: Option<i64>,
        before: Option<&str>,
        default: i64,
    ) -> Option<(i64, Option<i64>)>;
}

impl CareFields for FieldErrors {
    fn required<'a>(&mut self, field: &str, value: Option<&'a str>) -> Option<&'a str> {
        self.check(field, value.ok_or("is required"))
    }

    fn uuid(&mut self, field: &str, value: Option<&str>) -> Option<Uuid> {
        let raw = self.required(field, value)?;
        self.check(
            field,
            Uuid::parse_str(raw)
                .map_err(|_| "must be a UUID, like 0190c7a2-8f3e-7cc1-9a5b-3c2d1e0f4a6b"),
        )
    }

    fn date_time(
        &mut self,
        field: &str,
        value: Option<&str>,
        settings: &CareSettings,
    ) -> Option<Timestamp> {
        let raw = self.required(field, value)?;
        self.check(field, dates::parse(raw, settings.clinic_utc_offset))
    }

    /// `limit` (1 to 100, default `default`) and `before` (a cursor of this API).
    fn page(
        &mut self,
        limit: Option<i64>,
        before: Option<&str>,
        default: i64,
    ) -> Option<(i64, Option<i64>)> {
        let limit = limit.unwrap_or(default);
        let limit = self.check(
            "limit",
            if (1..=store::MAX_PAGE).contains(&limit) {
                Ok(limit)
            } else {
                Err("must be between 1 and 100")
            },
        );
        let before = match before {
            None => Some(None),
            Some(cursor) => self
                .check(
                    "before",
                    cursor
                        .parse::<i64>()
                        .ok()
                        .filter(|c| *c > 0)
                        .ok_or("is not a cursor from this API"),
                )
                .map(Some),
        };
        limit.zip(before)
    }
}

/// An id in a path: anything but a UUID names nothing.
fn path_id(raw: &str, what: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(raw).map_err(|_| Problem::not_found(what))
}

/// Splits `limit + 1` items into a page and the cursor of the next one.
pub(super) fn paged<T>(items: Vec<Listed<T>>, limit: i64) -> (Vec<T>, Option<String>) {
    let more = items.len() as i64 > limit;
    let items: Vec<_> = items.into_iter().take(limit as usize).collect();
    let next_cursor = if more {
        items.last().map(|i| i.cursor.to_string())
    } else {
        None
    };
    (items.into_iter().map(|i| i.item).collect(), next_cursor)
}

// ---- Physicians ------------------------------------------------------------------------------

/// A physician to register.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PhysicianRequest {
    /// 1 to 200 characters, no control characters; surrounding spaces are dropped.
    #[schema(example = "Dr. Ana Souza")]
    name: String,
    tariff: TariffRequest,
    /// How long an appointment booked with a start only lasts (document 000's create), 1 to
    /// 1440 minutes. Default 30.
    #[schema(example = 30)]
    default_minutes: Option<i64>,
}

/// How the physician's consultations are priced. `per_block` (the default kind): `feePerBlock`
/// for every STARTED block of `blockMinutes`. `per_minute`: `feePerMinute` for each minute, at
/// least `minimumMinutes` (default 0). Durations are whole minutes, rounded up.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"kind": "per_block", "blockMinutes": 15, "feePerBlock": "50.00", "currency": "USD"}))]
pub struct TariffRequest {
    /// `per_block` (default) or `per_minute`.
    #[schema(example = "per_block")]
    kind: Option<String>,
    /// per_block: the block length, 1 to 1440 minutes.
    block_minutes: Option<i64>,
    /// per_block: the fee per started block, greater than zero.
    fee_per_block: Option<AmountInput>,
    /// per_minute: the fee per minute, greater than zero.
    fee_per_minute: Option<AmountInput>,
    /// per_minute: the fewest minutes billed, 0 to 1440 (default 0).
    minimum_minutes: Option<i64>,
    /// ISO 4217 code of the fees and of every price.
    #[schema(example = "USD")]
    currency: String,
}

const NOT_IN_KIND: &str = "is not part of a tariff of this kind";

impl TariffRequest {
    fn parse(&self, f: &mut Fields) -> Option<Tariff> {
        let currency = f.check(
            "tariff.currency",
            Currency::parse(&self.currency)
                .map_err(|_| "must be an ISO 4217 code with minor units, like USD"),
        );
        let (rule, fee_field, fee, stray) = match self.kind.as_deref().unwrap_or("per_block") {
            "per_block" => {
                let block_minutes = f.check(
                    "tariff.blockMinutes",
                    self.block_minutes.ok_or("is required"),
                );
                (
                    block_minutes.map(|block_minutes| Rule::PerBlock { block_minutes }),
                    "tariff.feePerBlock",
                    &self.fee_per_block,
                    [
                        ("tariff.feePerMinute", self.fee_per_minute.is_some()),
                        ("tariff.minimumMinutes", self.minimum_minutes.is_some()),
                    ],
                )
            }
            "per_minute" => (
                Some(Rule::PerMinute {
                    minimum_minutes: self.minimum_minutes.unwrap_or(0),
                }),
                "tariff.feePerMinute",
                &self.fee_per_minute,
                [
                    ("tariff.feePerBlock", self.fee_per_block.is_some()),
                    ("tariff.blockMinutes", self.block_minutes.is_some()),
                ],
            ),
            _ => {
                f.check(
                    "tariff.kind",
                    Err::<(), _>("must be per_block or per_minute"),
                );
                return None;
            }
        };
        let rule = rule.and_then(|rule| match rule.check() {
            Ok(rule) => Some(rule),
            Err(e) => {
                let field = match e {
                    TariffError::MinimumMinutes => "tariff.minimumMinutes",
                    _ => "tariff.blockMinutes",
                };
                f.check(field, Err::<(), _>(e));
                None
            }
        });
        for (field, sent) in stray {
            if sent {
                f.check(field, Err::<(), _>(NOT_IN_KIND));
            }
        }
        let fee = match fee {
            None => f.check(fee_field, Err::<(), _>("is required")).and(None),
            Some(amount) => f.take(amount.positive_decimal(fee_field)),
        };
        let fee = fee
            .zip(currency)
            .and_then(|(fee, currency)| f.check(fee_field, fee.to_positive_money(currency)));
        let (rule, fee) = rule.zip(fee)?;
        // The rule was checked above: only the fee can still be refused.
        f.check(fee_field, Tariff::new(rule, fee))
    }
}

impl PhysicianRequest {
    /// The details, or `None` with every refused field recorded in `f`.
    fn parse(&self, f: &mut Fields) -> Option<PhysicianDetails> {
        let name = f.check("name", PhysicianName::parse(&self.name));
        let default_minutes = f.check(
            "defaultMinutes",
            check_default_minutes(self.default_minutes.unwrap_or(DEFAULT_MINUTES)),
        );
        let tariff = self.tariff.parse(f);
        let ((name, default_minutes), tariff) = name.zip(default_minutes).zip(tariff)?;
        Some(PhysicianDetails {
            name,
            tariff,
            default_minutes,
        })
    }
}

/// A tariff as shown: the fields of its kind only.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TariffView {
    #[schema(example = "per_block")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 15)]
    block_minutes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fee_per_block: Option<AmountOutput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fee_per_minute: Option<AmountOutput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    minimum_minutes: Option<i64>,
    #[schema(value_type = String, example = "USD")]
    currency: Currency,
}

impl From<&Tariff> for TariffView {
    fn from(t: &Tariff) -> Self {
        let fee = Some(AmountOutput(t.fee()));
        let mut view = TariffView {
            kind: t.rule().kind(),
            block_minutes: None,
            fee_per_block: None,
            fee_per_minute: None,
            minimum_minutes: None,
            currency: t.fee().currency,
        };
        match t.rule() {
            Rule::PerBlock { block_minutes } => {
                view.block_minutes = Some(block_minutes);
                view.fee_per_block = fee;
            }
            Rule::PerMinute { minimum_minutes } => {
                view.minimum_minutes = Some(minimum_minutes);
                view.fee_per_minute = fee;
            }
        }
        view
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhysicianView {
    id: Uuid,
    #[schema(example = "Dr. Ana Souza")]
    name: String,
    tariff: TariffView,
    #[schema(example = 30)]
    default_minutes: i64,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
}

impl From<&Physician> for PhysicianView {
    fn from(p: &Physician) -> Self {
        Self {
            id: p.id,
            name: p.details.name.as_str().to_owned(),
            tariff: TariffView::from(&p.details.tariff),
            default_minutes: p.details.default_minutes,
            created_at: p.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhysicianPage {
    items: Vec<PhysicianView>,
    /// Pass as `before` for the next (older) page; null on the last page.
    next_cursor: Option<String>,
}

/// Registers a physician under an id the server makes (UUID v7).
///
/// Without an `Idempotency-Key` every call registers another physician; to retry safely send
/// one, or choose the id yourself with `PUT /physicians/{id}`.
#[utoipa::path(post, path = "/physicians", tag = "care", request_body = PhysicianRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses(
        (status = 201, body = PhysicianView),
        (status = 422, description = "Invalid fields, each named", body = Problem, content_type = "application/problem+json"),
    ))]
async fn register_physician(
    State(c): State<Care>,
    idem: IdempotencyHeader,
    ApiJson(body): ApiJson<PhysicianRequest>,
) -> Response {
    let mut f = Fields::default();
    let details = body.parse(&mut f);
    let details = match f.finish(details) {
        Ok(details) => details,
        Err(problem) => return problem.into_response(),
    };
    let request = IdempotentRequest::new(idem, &scope("POST /physicians"), &details);
    // Made once: if the transaction is retried, it registers the same id.
    let id = tally_kernel::id::new_v7();
    let care = c.clone();
    execute(c.db(), request, StatusCode::CREATED, move |tx| {
        let (care, details) = (care.clone(), details.clone());
        Box::pin(async move {
            let (physician, _) = care
                .store
                .register_physician(tx, id, &details)
                .await
                .map_err(|e| failure(e, Api::Appointments))?;
            Ok(PhysicianView::from(&physician))
        })
    })
    .await
}

/// Internal to `PUT`: its transaction found the physician registered when it expected to
/// register it (a concurrent registration committed in between), or the reverse. The
/// transaction is rolled back and run again with the other status; the refusal is not a 409,
/// so it is never stored for a key. Physicians are never deleted, so the rerun cannot race.
fn registration_raced() -> Failure {
    Failure::Refused(
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "registration-raced",
            "Concurrent registration",
        )
        .with_detail("the physician was registered concurrently; retry the request"),
    )
}

/// Registers a physician under an id the caller chose: the safe way to retry a registration.
///
/// 201 when this call registered the physician. The same body again answers 200 with the
/// physician and changes nothing. Other details under a registered id are refused with 409,
/// naming the fields that differ.
#[utoipa::path(put, path = "/physicians/{id}", tag = "care", request_body = PhysicianRequest,
    params(("id" = Uuid, Path, description = "The physician id, chosen by the caller"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses(
        (status = 201, description = "Registered", body = PhysicianView),
        (status = 200, description = "Already registered with these details", body = PhysicianView),
        (status = 409, description = "Already registered with other details", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or an id that is not a UUID", body = Problem, content_type = "application/problem+json"),
    ))]
async fn put_physician(
    State(c): State<Care>,
    idem: IdempotencyHeader,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PhysicianRequest>,
) -> Response {
    let mut f = Fields::default();
    let id = f.uuid("id", Some(&id));
    let details = body.parse(&mut f);
    let (id, details) = match f.finish(id.zip(details)) {
        Ok(parsed) => parsed,
        Err(problem) => return problem.into_response(),
    };
    let request = IdempotentRequest::new(idem, &scope("PUT /physicians"), &(id, &details));
    // The status must be fixed before the transaction (it is stored with the response for the
    // key): guess it from a read, and if the transaction finds otherwise, run it again.
    let mut creates = match c.store.physician(id).await {
        Ok(found) => found.is_none(),
        Err(e) => return Problem::from(e).into_response(),
    };
    let mut attempts = 2;
    loop {
        let raced = Arc::new(AtomicBool::new(false));
        let success = if creates {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        let (care, details, flag) = (c.clone(), details.clone(), raced.clone());
        let response = execute(c.db(), request.clone(), success, move |tx| {
            let (care, details, raced) = (care.clone(), details.clone(), flag.clone());
            Box::pin(async move {
                let (physician, created) = care
                    .store
                    .register_physician(tx, id, &details)
                    .await
                    .map_err(|e| failure(e, Api::Appointments))?;
                if created != creates {
                    raced.store(true, Ordering::SeqCst);
                    return Err(registration_raced());
                }
                Ok(PhysicianView::from(&physician))
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

/// A physician.
#[utoipa::path(get, path = "/physicians/{id}", tag = "care",
    params(("id" = Uuid, Path, description = "The physician id")),
    responses((status = 200, body = PhysicianView), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_physician(
    State(c): State<Care>,
    Path(id): Path<String>,
) -> Result<Json<PhysicianView>, Problem> {
    let id = path_id(&id, "the physician")?;
    let physician = c
        .store
        .physician(id)
        .await?
        .ok_or_else(|| Problem::not_found("the physician"))?;
    Ok(Json(PhysicianView::from(&physician)))
}

/// Items per page by default.
const DEFAULT_PAGE: i64 = 20;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PhysicianQuery {
    /// Physicians per page, 1 to 100 (default 20).
    limit: Option<i64>,
    /// `nextCursor` of the previous page.
    before: Option<String>,
}

/// Physicians, newest registration first, paged.
#[utoipa::path(get, path = "/physicians", tag = "care", params(PhysicianQuery),
    responses((status = 200, body = PhysicianPage),
        (status = 422, description = "Invalid parameters, each named", body = Problem, content_type = "application/problem+json")))]
async fn list_physicians(
    State(c): State<Care>,
    ApiQuery(query): ApiQuery<PhysicianQuery>,
) -> Result<Json<PhysicianPage>, Problem> {
    let mut f = Fields::default();
    let page = f.page(query.limit, query.before.as_deref(), DEFAULT_PAGE);
    let (limit, before) = f.finish(page)?;
    let (items, next_cursor) = paged(c.store.physicians(before, limit + 1).await?, limit);
    Ok(Json(PhysicianPage {
        items: items.iter().map(PhysicianView::from).collect(),
        next_cursor,
    }))
}

// ---- Appointments ----------------------------------------------------------------------------

/// An appointment to book. Times are RFC 3339; without an offset they are read in the clinic's
/// time zone.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BookAppointmentRequest {
    #[schema(value_type = Uuid, required = true)]
    patient_id: Option<String>,
    #[schema(value_type = Uuid, required = true)]
    physician_id: Option<String>,
    #[schema(value_type = String, format = DateTime, required = true, example = "2021-07-01T08:30:00Z")]
    scheduled_start: Option<String>,
    /// After the start, at most 24 hours later.
    #[schema(value_type = String, format = DateTime, required = true, example = "2021-07-01T09:00:00Z")]
    scheduled_end: Option<String>,
}

impl BookAppointmentRequest {
    fn parse(&self, settings: &CareSettings) -> Result<Booking, Problem> {
        let mut f = Fields::default();
        let patient_id = f.uuid("patientId", self.patient_id.as_deref());
        let physician_id = f.uuid("physicianId", self.physician_id.as_deref());
        let start = f.date_time("scheduledStart", self.scheduled_start.as_deref(), settings);
        let end = f.date_time("scheduledEnd", self.scheduled_end.as_deref(), settings);
        let slot = start
            .zip(end)
            .and_then(|(start, end)| f.check("scheduledEnd", Schedule::new(start, end)));
        let parsed = patient_id.zip(physician_id).zip(slot);
        f.finish(parsed)
            .map(|((patient_id, physician_id), slot)| Booking {
                patient_id,
                physician_id,
                start: slot.start(),
                end: Some(slot.end()),
            })
    }
}

/// The real end of the consultation.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseAppointmentRequest {
    /// Not before the scheduled start, at most 24 hours after it.
    #[schema(value_type = String, format = DateTime, required = true, example = "2021-07-01T09:05:00Z")]
    end: Option<String>,
}

#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelAppointmentRequest {
    /// Optional, 1 to 500 characters. Kept with the appointment and published with
    /// `appointment.cancelled`; never logged.
    #[schema(example = "The patient asked to reschedule")]
    reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppointmentView {
    id: Uuid,
    patient_id: Uuid,
    physician_id: Uuid,
    /// `booked`, `closed`, `cancelled` or `no_show`.
    #[schema(example = "booked")]
    status: &'static str,
    #[schema(value_type = String, format = DateTime)]
    scheduled_start: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    scheduled_end: Timestamp,
    /// The price of the scheduled slot by the physician's tariff.
    scheduled_price: AmountOutput,
    #[schema(value_type = String, example = "USD")]
    currency: Currency,
    /// The real end, once closed.
    #[schema(value_type = Option<String>, format = DateTime)]
    end: Option<Timestamp>,
    /// The minutes billed (from the scheduled start to the real end, rounded up), once closed.
    duration_minutes: Option<i64>,
    /// The final price, once closed.
    price: Option<AmountOutput>,
    cancel_reason: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Timestamp,
}

impl AppointmentView {
    fn of(a: &Appointment, _: &CareSettings) -> Self {
        Self::from(a)
    }
}

impl From<&Appointment> for AppointmentView {
    fn from(a: &Appointment) -> Self {
        Self {
            id: a.id,
            patient_id: a.patient_id,
            physician_id: a.physician_id,
            status: a.status.as_str(),
            scheduled_start: a.schedule.start(),
            scheduled_end: a.schedule.end(),
            scheduled_price: AmountOutput(a.scheduled_price),
            currency: a.scheduled_price.currency,
            end: a.closing.map(|c| c.end),
            duration_minutes: a.closing.map(|c| c.minutes.get()),
            price: a.closing.map(|c| AmountOutput(c.price)),
            cancel_reason: a.cancel_reason.as_ref().map(|r| r.as_str().to_owned()),
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppointmentPage {
    items: Vec<AppointmentView>,
    /// Pass as `before` for the next (older) page; null on the last page.
    next_cursor: Option<String>,
}

/// Books an appointment, priced from the scheduled duration by the physician's tariff.
///
/// The patient must be registered and active in the patients service (422 naming `patientId`
/// otherwise; 503 when that service does not answer, and nothing is booked). The physician must
/// exist (422 naming `physicianId`) and have no booked appointment overlapping the slot (409).
/// Publishes `appointment.booked`.
#[utoipa::path(post, path = "/appointments", tag = "care", request_body = BookAppointmentRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses(
        (status = 201, body = AppointmentView),
        (status = 409, description = "The physician is booked at that time", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, an unknown or deactivated patient, an unknown physician; each named", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The patients service did not answer; nothing was booked", body = Problem, content_type = "application/problem+json"),
    ))]
async fn book(
    State(c): State<Care>,
    RequestMeta(meta): RequestMeta,
    idem: IdempotencyHeader,
    ApiJson(body): ApiJson<BookAppointmentRequest>,
) -> Response {
    let booking = match body.parse(&c.settings) {
        Ok(booking) => booking,
        Err(problem) => return problem.into_response(),
    };
    let request = IdempotentRequest::new(idem, &scope("POST /appointments"), &booking);
    c.book(
        meta,
        request,
        booking,
        Api::Appointments,
        AppointmentView::of,
    )
    .await
}

/// An appointment.
#[utoipa::path(get, path = "/appointments/{id}", tag = "care",
    params(("id" = Uuid, Path, description = "The appointment id")),
    responses((status = 200, body = AppointmentView), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_appointment(
    State(c): State<Care>,
    Path(id): Path<String>,
) -> Result<Json<AppointmentView>, Problem> {
    let id = path_id(&id, "the appointment")?;
    let appointment = c
        .store
        .appointment(id)
        .await?
        .ok_or_else(|| Problem::not_found("the appointment"))?;
    Ok(Json(AppointmentView::from(&appointment)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppointmentQuery {
    /// Only this patient's appointments (empty: no filter).
    patient_id: Option<String>,
    /// Only this physician's appointments (empty: no filter).
    physician_id: Option<String>,
    /// Appointments per page, 1 to 100 (default 20).
    limit: Option<i64>,
    /// `nextCursor` of the previous page.
    before: Option<String>,
}

/// Appointments, newest booking first, paged; optionally only a patient's, a physician's, or
/// both.
#[utoipa::path(get, path = "/appointments", tag = "care", params(AppointmentQuery),
    responses((status = 200, body = AppointmentPage),
        (status = 422, description = "Invalid parameters, each named", body = Problem, content_type = "application/problem+json")))]
async fn list_appointments(
    State(c): State<Care>,
    ApiQuery(query): ApiQuery<AppointmentQuery>,
) -> Result<Json<AppointmentPage>, Problem> {
    let mut f = Fields::default();
    // `?patientId=` (empty, as a form sends an unset field) is no filter.
    let optional_id = |f: &mut Fields, field: &str, raw: Option<&str>| match raw {
        None | Some("") => Some(None),
        Some(raw) => f.uuid(field, Some(raw)).map(Some),
    };
    let patient_id = optional_id(&mut f, "patientId", query.patient_id.as_deref());
    let physician_id = optional_id(&mut f, "physicianId", query.physician_id.as_deref());
    let page = f.page(query.limit, query.before.as_deref(), DEFAULT_PAGE);
    let ((patient_id, physician_id), (limit, before)) =
        f.finish(patient_id.zip(physician_id).zip(page))?;
    let filter = AppointmentFilter {
        patient_id,
        physician_id,
    };
    let found = c.store.appointments(filter, before, limit + 1).await?;
    let (items, next_cursor) = paged(found, limit);
    Ok(Json(AppointmentPage {
        items: items.iter().map(AppointmentView::from).collect(),
        next_cursor,
    }))
}

/// Closes the consultation at its real end and prices it: the physician's tariff applied to
/// the minutes from the scheduled start to `end`, rounded up. Publishes `consultation.closed`.
/// Only a booked appointment can be closed (409 otherwise, e.g. closing twice); an `end` before
/// the scheduled start is a 422.
#[utoipa::path(post, path = "/appointments/{id}/close", tag = "care", request_body = CloseAppointmentRequest,
    params(("id" = Uuid, Path, description = "The appointment id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses(
        (status = 200, body = AppointmentView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not booked (closed, cancelled or a no-show)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An end before the start, or not a date and time", body = Problem, content_type = "application/problem+json"),
    ))]
async fn close(
    State(c): State<Care>,
    RequestMeta(meta): RequestMeta,
    idem: IdempotencyHeader,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CloseAppointmentRequest>,
) -> Response {
    let id = match path_id(&id, "the appointment") {
        Ok(id) => id,
        Err(problem) => return problem.into_response(),
    };
    let mut f = Fields::default();
    let end = f.date_time("end", body.end.as_deref(), &c.settings);
    let end = match f.finish(end) {
        Ok(end) => end,
        Err(problem) => return problem.into_response(),
    };
    let request = IdempotentRequest::new(idem, &scope("POST /appointments/close"), &(id, end));
    let care = c.clone();
    execute(c.db(), request, StatusCode::OK, move |tx| {
        let (care, meta) = (care.clone(), meta.clone());
        Box::pin(async move {
            let appointment = care
                .store
                .close(tx, id, end, None, &meta)
                .await
                .map_err(|e| failure(e, Api::Appointments))?;
            Ok(AppointmentView::from(&appointment))
        })
    })
    .await
}

/// Cancels a booked appointment (409 otherwise), with an optional reason. Publishes
/// `appointment.cancelled`. The body may be left out.
#[utoipa::path(post, path = "/appointments/{id}/cancel", tag = "care", request_body = CancelAppointmentRequest,
    params(("id" = Uuid, Path, description = "The appointment id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses(
        (status = 200, body = AppointmentView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not booked", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An invalid reason", body = Problem, content_type = "application/problem+json"),
    ))]
async fn cancel(
    State(c): State<Care>,
    RequestMeta(meta): RequestMeta,
    idem: IdempotencyHeader,
    Path(id): Path<String>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<CancelAppointmentRequest>,
) -> Response {
    let id = match path_id(&id, "the appointment") {
        Ok(id) => id,
        Err(problem) => return problem.into_response(),
    };
    let mut f = Fields::default();
    let reason = match body.reason.as_deref() {
        None => Some(None),
        Some(raw) => f.check("reason", CancelReason::parse(raw)).map(Some),
    };
    let reason = match f.finish(reason) {
        Ok(reason) => reason,
        Err(problem) => return problem.into_response(),
    };
    let request = IdempotentRequest::new(idem, &scope("POST /appointments/cancel"), &(id, &reason));
    let care = c.clone();
    execute(c.db(), request, StatusCode::OK, move |tx| {
        let (care, meta, reason) = (care.clone(), meta.clone(), reason.clone());
        Box::pin(async move {
            let appointment = care
                .store
                .cancel(tx, id, reason, &meta)
                .await
                .map_err(|e| failure(e, Api::Appointments))?;
            Ok(AppointmentView::from(&appointment))
        })
    })
    .await
}

/// Records that the patient did not come: only a booked appointment (409 otherwise). Publishes
/// `appointment.no_show`.
#[utoipa::path(post, path = "/appointments/{id}/no-show", tag = "care",
    params(("id" = Uuid, Path, description = "The appointment id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses(
        (status = 200, body = AppointmentView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not booked", body = Problem, content_type = "application/problem+json"),
    ))]
async fn no_show(
    State(c): State<Care>,
    RequestMeta(meta): RequestMeta,
    idem: IdempotencyHeader,
    Path(id): Path<String>,
) -> Response {
    let id = match path_id(&id, "the appointment") {
        Ok(id) => id,
        Err(problem) => return problem.into_response(),
    };
    let request = IdempotentRequest::new(idem, &scope("POST /appointments/no-show"), &id);
    let care = c.clone();
    execute(c.db(), request, StatusCode::OK, move |tx| {
        let (care, meta) = (care.clone(), meta.clone());
        Box::pin(async move {
            let appointment = care
                .store
                .no_show(tx, id, &meta)
                .await
                .map_err(|e| failure(e, Api::Appointments))?;
            Ok(AppointmentView::from(&appointment))
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi as _;

    use super::*;

    #[test]
    fn the_api_document_describes_every_route() {
        let doc = serde_json::to_value(CareApi::openapi()).unwrap();
        let paths = &doc["paths"];
        for (path, method) in [
            ("/physicians", "post"),
            ("/physicians", "get"),
            ("/physicians/{id}", "get"),
            ("/physicians/{id}", "put"),
            ("/appointments", "post"),
            ("/appointments", "get"),
            ("/appointments/{id}", "get"),
            ("/appointments/{id}/close", "post"),
            ("/appointments/{id}/cancel", "post"),
            ("/appointments/{id}/no-show", "post"),
            ("/consultation/v1/create", "post"),
            ("/consultation/v1/close", "post"),
            ("/consultation/v1/consultation/{id}", "get"),
            ("/consultation/v1/consultation", "get"),
        ] {
            assert!(
                paths[path][method].is_object(),
                "{method} {path} is documented"
            );
        }
        let query: Vec<&str> = paths["/appointments"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(query, ["patientId", "physicianId", "limit", "before"]);
        let create = &paths["/consultation/v1/create"]["post"]["responses"];
        assert!(create["303"].is_object(), "the redirect is documented");
        let book = &doc["components"]["schemas"]["BookAppointmentRequest"];
        assert_eq!(
            book["required"],
            serde_json::json!(["patientId", "physicianId", "scheduledStart", "scheduledEnd"])
        );
    }

    #[test]
    fn every_refusal_names_its_field_in_the_words_of_its_api() {
        let id = Uuid::nil();
        let cases = [
            (
                CareError::PhysicianNotFound(id),
                422,
                "physicianId",
                "physician_id",
            ),
            (
                CareError::PatientNotFound(id),
                422,
                "patientId",
                "patient_id",
            ),
            (
                CareError::PatientDeactivated(id),
                422,
                "patientId",
                "patient_id",
            ),
            (
                CareError::Duration {
                    field: Field::End,
                    error: crate::domain::DurationError::EndBeforeStart,
                },
                422,
                "end",
                "end_date",
            ),
            (
                CareError::DoubleBooked {
                    physician_id: id,
                    clash: id,
                },
                409,
                "scheduledStart",
                "start_date",
            ),
        ];
        for (error, status, camel, snake) in cases {
            for (api, name) in [(Api::Appointments, camel), (Api::Consultation, snake)] {
                let p = problem(&error, api);
                assert_eq!(p.status, status, "{error:?}");
                assert_eq!(p.errors[0].field, name, "{error:?}");
            }
        }
        let not_booked = CareError::NotBooked {
            id,
            status: crate::domain::AppointmentStatus::Closed,
        };
        assert_eq!(problem(&not_booked, Api::Appointments).status, 409);
        assert_eq!(
            problem(&CareError::AppointmentNotFound(id), Api::Appointments).status,
            404
        );
        let unknown = problem(&CareError::AppointmentNotFound(id), Api::Consultation);
        assert_eq!(
            (unknown.status, unknown.errors[0].field.as_str()),
            (422, "id")
        );
    }
}
