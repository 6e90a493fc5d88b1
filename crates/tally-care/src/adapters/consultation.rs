//! Document 000's consultation routes, working exactly as that document shows them: snake_case
//! bodies, dates without an offset (read in the clinic's time zone), a redirect after create.
//! A consultation is an appointment: the same records, rules and events as the appointments
//! API.
//!
//! - `POST /consultation/v1/create {patient_id, physician_id, start_date}` books the physician
//!   for their default minutes (30 unless registered otherwise) from `start_date`, and answers
//!   303 See Other to `/consultation/v1/consultation/{id}` with `{"id": ...}`.
//! - `POST /consultation/v1/close {end_date, id, patient_id, physician_id, start_date}` closes
//!   and prices it; the ids and start must be the consultation's (422 naming each that is not).
//! - `GET /consultation/v1/consultation/{id}` and `GET /consultation/v1/consultation` show
//!   `{id, patient_id, physician_id, start_date, end_date, price, currency, status}`.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tally_http::{
    execute, AmountOutput, ApiJson, ApiQuery, IdempotencyHeader, IdempotentRequest, Problem,
    RequestMeta,
};
use tally_kernel::Currency;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::routes::{failure, paged, scope, Api, Care, CareFields, CareSettings, Fields};
use super::store::AppointmentFilter;
use crate::domain::{dates, Appointment, Booking};

pub(super) fn routes() -> Router<Care> {
    Router::new()
        .route("/consultation/v1/create", post(create))
        .route("/consultation/v1/close", post(close))
        .route("/consultation/v1/consultation", get(list))
        .route("/consultation/v1/consultation/{id}", get(get_one))
}

const LOCATION_PREFIX: &str = "/consultation/v1/consultation/";

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConsultation {
    #[schema(value_type = Uuid, required = true, example = "e6afa807-8705-43d8-ba48-40a421843248")]
    patient_id: Option<String>,
    #[schema(value_type = Uuid, required = true, example = "e6afa807-8705-43d8-ba48-40a421843248")]
    physician_id: Option<String>,
    /// Without an offset it is read in the clinic's time zone.
    #[schema(value_type = String, required = true, example = "2021-07-01T08:30:00.000")]
    start_date: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseConsultation {
    /// The real end: not before `start_date`, at most 24 hours after it.
    #[schema(value_type = String, required = true, example = "2021-07-01T13:40:00.000")]
    end_date: Option<String>,
    /// The consultation id (the id `create` redirected to).
    #[schema(value_type = Uuid, required = true, example = "4baa39f8-f414-4ac4-9720-64fdfe09998b")]
    id: Option<String>,
    /// Must be the consultation's.
    #[schema(value_type = Uuid, required = true, example = "e6afa807-8705-43d8-ba48-40a421843248")]
    patient_id: Option<String>,
    /// Must be the consultation's.
    #[schema(value_type = Uuid, required = true, example = "e6afa807-8705-43d8-ba48-40a421843248")]
    physician_id: Option<String>,
    /// Must be the consultation's start (the same instant, however written).
    #[schema(value_type = String, required = true, example = "2021-07-01T08:30:00.000")]
    start_date: Option<String>,
}

/// What `create` answers, with the redirect to the consultation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedConsultation {
    id: Uuid,
}

impl CreatedConsultation {
    fn of(a: &Appointment, _: &CareSettings) -> Self {
        Self { id: a.id }
    }
}

/// A consultation as document 000 shows it. Dates are in the clinic's time zone, with its
/// offset.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsultationView {
    id: Uuid,
    patient_id: Uuid,
    physician_id: Uuid,
    #[schema(example = "2021-07-01T08:30:00.000Z")]
    start_date: String,
    /// The real end once closed; the scheduled end before.
    #[schema(example = "2021-07-01T13:40:00.000Z")]
    end_date: String,
    /// The final price once closed; the scheduled price before.
    price: AmountOutput,
    #[schema(value_type = String, example = "USD")]
    currency: Currency,
    /// `booked`, `closed`, `cancelled` or `no_show`.
    #[schema(example = "closed")]
    status: &'static str,
}

impl ConsultationView {
    fn of(a: &Appointment, settings: &CareSettings) -> Self {
        let offset = settings.clinic_utc_offset;
        let (end, price) = match a.closing {
            Some(closing) => (closing.end, closing.price),
            None => (a.schedule.end(), a.scheduled_price),
        };
        Self {
            id: a.id,
            patient_id: a.patient_id,
            physician_id: a.physician_id,
            start_date: dates::to_clinic_text(a.schedule.start(), offset),
            end_date: dates::to_clinic_text(end, offset),
            price: AmountOutput(price),
            currency: price.currency,
            status: a.status.as_str(),
        }
    }
}

/// Largest body `create` answers with (`{"id": "<uuid>"}`), read back to build the redirect.
const CREATED_BODY_LIMIT: usize = 1024;

/// Turns a 201 of the booking (new or replayed) into document 000's redirect: 303 See Other to
/// the consultation, with the same `{"id"}` body. Refusals pass through.
async fn redirect(response: Response) -> Response {
    if response.status() != StatusCode::CREATED {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, CREATED_BODY_LIMIT).await {
        Ok(bytes) => bytes,
        Err(e) => return internal("failed to read the booking's answer", e),
    };
    let created: CreatedConsultation = match serde_json::from_slice(&bytes) {
        Ok(created) => created,
        Err(e) => return internal("failed to parse the booking's answer", e),
    };
    let location = format!("{LOCATION_PREFIX}{}", created.id);
    parts.status = StatusCode::SEE_OTHER;
    match HeaderValue::from_str(&location) {
        Ok(value) => parts.headers.insert(header::LOCATION, value),
        Err(e) => return internal("failed to build the Location header", e),
    };
    Response::from_parts(parts, Body::from(bytes))
}

fn internal(context: &'static str, e: impl std::fmt::Display) -> Response {
    Problem::internal(&anyhow::anyhow!("{e}").context(context)).into_response()
}

/// Books a consultation from `start_date` for the physician's default minutes, priced by the
/// physician's tariff (the same booking as `POST /appointments`: the patient must be registered
/// and active, the physician free). Answers 303 See Other to the consultation.
#[utoipa::path(post, path = "/consultation/v1/create", tag = "consultation",
    request_body = CreateConsultation,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses(
        (status = 303, description = "Booked: see the consultation", body = CreatedConsultation,
            headers(("Location" = String, description = "/consultation/v1/consultation/{id}"))),
        (status = 409, description = "The physician is booked at that time", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, an unknown or deactivated patient, an unknown physician; each named", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The patients service did not answer; nothing was booked", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn create(
    State(c): State<Care>,
    RequestMeta(meta): RequestMeta,
    idem: IdempotencyHeader,
    ApiJson(body): ApiJson<CreateConsultation>,
) -> Response {
    let mut f = Fields::default();
    let patient_id = f.uuid("patient_id", body.patient_id.as_deref());
    let physician_id = f.uuid("physician_id", body.physician_id.as_deref());
    let start = f.date_time("start_date", body.start_date.as_deref(), &c.settings);
    let booking = match f.finish(patient_id.zip(physician_id).zip(start)) {
        Ok(((patient_id, physician_id), start)) => Booking {
            patient_id,
            physician_id,
            start,
            end: None,
        },
        Err(problem) => return problem.into_response(),
    };
    let request = IdempotentRequest::new(idem, &scope("POST /consultation/v1/create"), &booking);
    let response = c
        .book(
            meta,
            request,
            booking,
            Api::Consultation,
            CreatedConsultation::of,
        )
        .await;
    redirect(response).await
}

/// Closes the consultation at `end_date` and prices it by the physician's tariff for the
/// minutes from its start to `end_date`, rounded up. Publishes `consultation.closed`.
#[utoipa::path(post, path = "/consultation/v1/close", tag = "consultation",
    request_body = CloseConsultation,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses(
        (status = 200, body = ConsultationView),
        (status = 409, description = "Not booked (already closed, cancelled or a no-show)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields; an unknown id; ids or start that are not the consultation's; an end before the start", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn close(
    State(c): State<Care>,
    RequestMeta(meta): RequestMeta,
    idem: IdempotencyHeader,
    ApiJson(body): ApiJson<CloseConsultation>,
) -> Response {
    let mut f = Fields::default();
    let end = f.date_time("end_date", body.end_date.as_deref(), &c.settings);
    let id = f.uuid("id", body.id.as_deref());
    let patient_id = f.uuid("patient_id", body.patient_id.as_deref());
    let physician_id = f.uuid("physician_id", body.physician_id.as_deref());
    let start = f.date_time("start_date", body.start_date.as_deref(), &c.settings);
    let parsed = end.zip(id).zip(patient_id.zip(physician_id).zip(start));
    let ((end, id), claimed) = match f.finish(parsed) {
        Ok(((end, id), ((patient_id, physician_id), start))) => {
            ((end, id), (patient_id, physician_id, start))
        }
        Err(problem) => return problem.into_response(),
    };
    let request = IdempotentRequest::new(
        idem,
        &scope("POST /consultation/v1/close"),
        &(id, end, claimed),
    );
    let care = c.clone();
    execute(c.db(), request, StatusCode::OK, move |tx| {
        let (care, meta) = (care.clone(), meta.clone());
        Box::pin(async move {
            let appointment = care
                .store
                .close(tx, id, end, Some(claimed), &meta)
                .await
                .map_err(|e| failure(e, Api::Consultation))?;
            Ok(ConsultationView::of(&appointment, &care.settings))
        })
    })
    .await
}

/// A consultation.
#[utoipa::path(get, path = "/consultation/v1/consultation/{id}", tag = "consultation",
    params(("id" = Uuid, Path, description = "The consultation id")),
    responses((status = 200, body = ConsultationView), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn get_one(
    State(c): State<Care>,
    Path(id): Path<String>,
) -> Result<Json<ConsultationView>, Problem> {
    let id = Uuid::parse_str(&id).map_err(|_| Problem::not_found("the consultation"))?;
    let appointment = c
        .store
        .appointment(id)
        .await?
        .ok_or_else(|| Problem::not_found("the consultation"))?;
    Ok(Json(ConsultationView::of(&appointment, &c.settings)))
}

/// Consultations per answer by default (and at most).
const DEFAULT_PAGE: i64 = 100;

/// The name of the header with the cursor of the next page: document 000's list is a bare
/// array, so the cursor cannot travel in the body.
pub const NEXT_CURSOR: &str = "x-next-cursor";

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ConsultationQuery {
    /// Consultations per answer, 1 to 100 (default 100).
    limit: Option<i64>,
    /// The `x-next-cursor` header of the previous answer.
    before: Option<String>,
}

/// All consultations, newest first, as an array: up to `limit` (default and at most 100); when
/// more follow, the `x-next-cursor` header gives the `before` of the next answer.
#[utoipa::path(get, path = "/consultation/v1/consultation", tag = "consultation",
    params(ConsultationQuery),
    responses((status = 200, body = Vec<ConsultationView>,
            headers(("x-next-cursor" = Option<String>, description = "Pass as `before` for the next (older) consultations; absent on the last"))),
        (status = 422, description = "Invalid parameters, each named", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn list(
    State(c): State<Care>,
    ApiQuery(query): ApiQuery<ConsultationQuery>,
) -> Result<Response, Problem> {
    let mut f = Fields::default();
    let page = f.page(query.limit, query.before.as_deref(), DEFAULT_PAGE);
    let (limit, before) = f.finish(page)?;
    let found = c
        .store
        .appointments(AppointmentFilter::default(), before, limit + 1)
        .await?;
    let (items, next_cursor) = paged(found, limit);
    let views: Vec<_> = items
        .iter()
        .map(|a| ConsultationView::of(a, &c.settings))
        .collect();
    let mut response = Json(views).into_response();
    if let Some(cursor) = next_cursor.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(NEXT_CURSOR, cursor);
    }
    Ok(response)
}
