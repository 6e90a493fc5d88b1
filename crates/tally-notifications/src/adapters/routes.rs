//! The notifications HTTP API: messages newest first, paged and optionally of one patient, and
//! one message with its deliveries. Read only: messages are made from events.
//!
//! Deliveries show their channel, status, attempts and last error; never their target (a
//! webhook URL may hold a token) nor the recipient's address.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tally_http::{ApiQuery, FieldError, Problem};
use tally_kernel::time;
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use super::store::{self, StoredDelivery, StoredMessage};
use super::Notifications;
use crate::domain::Status;

pub fn router(notifications: Notifications) -> Router {
    Router::new()
        .route("/notifications", get(list))
        .route("/notifications/{id}", get(get_notification))
        .with_state(notifications)
}

#[derive(OpenApi)]
#[openapi(
    paths(list, get_notification),
    components(schemas(Problem, FieldError, NotificationView, NotificationDetail, DeliveryView,
        NotificationPage)),
    tags((name = "notifications", description = "Messages to patients and their delivery"))
)]
pub struct NotificationsApi;

/// A message. No `Debug`: it holds the message text.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationView {
    id: Uuid,
    /// The event the message is about.
    event_id: Uuid,
    #[schema(example = "bill.generated")]
    event_type: String,
    /// The recipient.
    patient_id: Uuid,
    subject: String,
    body: String,
    /// `pending` until every delivery has ended; then `sent`, or `failed` if any delivery
    /// failed.
    #[schema(example = "sent")]
    status: String,
    created_at: String,
}

impl From<&StoredMessage> for NotificationView {
    fn from(m: &StoredMessage) -> Self {
        Self {
            id: m.id,
            event_id: m.event_id,
            event_type: m.event_type.clone(),
            patient_id: m.patient_id,
            subject: m.message.subject.clone(),
            body: m.message.body.clone(),
            status: m.status.as_str().to_owned(),
            created_at: time::to_db(m.created_at),
        }
    }
}

/// One delivery of a message over one channel.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    /// The `Tally-Notification-Id` a webhook receiver sees.
    id: Uuid,
    /// `webhook`, `email` or `stored`.
    #[schema(example = "webhook")]
    channel: String,
    /// `pending`, `sent` or `failed`.
    #[schema(example = "pending")]
    status: String,
    /// Attempts made so far.
    attempts: i64,
    /// When the next attempt is due, while pending.
    next_attempt_at: Option<String>,
    /// Why the last failed attempt failed (no patient data), if one did.
    #[schema(example = "the webhook answered HTTP 503 Service Unavailable")]
    last_error: Option<String>,
    created_at: String,
    updated_at: String,
}

impl From<&StoredDelivery> for DeliveryView {
    fn from(d: &StoredDelivery) -> Self {
        Self {
            id: d.id,
            channel: d.channel.as_str().to_owned(),
            status: d.status.as_str().to_owned(),
            attempts: d.attempts,
            next_attempt_at: (d.status == Status::Pending).then(|| time::to_db(d.next_attempt_at)),
            last_error: d.last_error.clone(),
            created_at: time::to_db(d.created_at),
            updated_at: time::to_db(d.updated_at),
        }
    }
}

/// A message with its deliveries (none until the worker has routed it).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationDetail {
    #[serde(flatten)]
    notification: NotificationView,
    deliveries: Vec<DeliveryView>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationPage {
    items: Vec<NotificationView>,
    /// Pass as `before` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// Messages per page by default.
const DEFAULT_PAGE: i64 = 20;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListQuery {
    /// Only this patient's messages.
    #[param(value_type = Option<Uuid>)]
    patient_id: Option<String>,
    /// Messages per page, 1 to 100 (default 20).
    limit: Option<i64>,
    /// `nextCursor` of the previous page.
    before: Option<String>,
}

/// A message id in a path: anything but a UUID names no message.
fn path_id(raw: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(raw).map_err(|_| Problem::not_found("the notification"))
}

/// Messages, newest first, paged; optionally only one patient's.
#[utoipa::path(get, path = "/notifications", tag = "notifications", params(ListQuery),
    responses((status = 200, body = NotificationPage),
        (status = 422, description = "Invalid parameters, each named", body = Problem, content_type = "application/problem+json")))]
async fn list(
    State(n): State<Notifications>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<NotificationPage>, Problem> {
    let mut errors = Vec::new();
    let mut refuse = |field: &str, detail: &str| {
        errors.push(FieldError {
            field: field.into(),
            detail: detail.into(),
        })
    };
    let patient_id = match query.patient_id.as_deref() {
        None | Some("") => None,
        Some(raw) => Uuid::parse_str(raw)
            .map_err(|_| refuse("patientId", "must be a patient id (a UUID)"))
            .ok(),
    };
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=store::MAX_PAGE).contains(&limit) {
        refuse("limit", "must be between 1 and 100");
    }
    let before = match query.before.as_deref() {
        None => None,
        Some(raw) => raw.parse::<i64>().ok().filter(|c| *c > 0).or_else(|| {
            refuse("before", "is not a cursor from this API");
            None
        }),
    };
    if !errors.is_empty() {
        return Err(Problem::validation(errors));
    }
    let items = store::list(n.db(), patient_id, before, limit + 1).await?;
    let more = items.len() as i64 > limit;
    let items: Vec<_> = items.into_iter().take(limit as usize).collect();
    let next_cursor = if more {
        items.last().map(|m| m.seq.to_string())
    } else {
        None
    };
    Ok(Json(NotificationPage {
        items: items.iter().map(NotificationView::from).collect(),
        next_cursor,
    }))
}

/// A message and its deliveries.
#[utoipa::path(get, path = "/notifications/{id}", tag = "notifications",
    params(("id" = Uuid, Path, description = "The notification id")),
    responses((status = 200, body = NotificationDetail),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_notification(
    State(n): State<Notifications>,
    Path(id): Path<String>,
) -> Result<Json<NotificationDetail>, Problem> {
    let id = path_id(&id)?;
    let message = store::message(n.db(), id)
        .await?
        .ok_or_else(|| Problem::not_found("the notification"))?;
    let deliveries = store::deliveries_of(n.db(), id).await?;
    Ok(Json(NotificationDetail {
        notification: NotificationView::from(&message),
        deliveries: deliveries.iter().map(DeliveryView::from).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi as _;

    use super::*;

    #[test]
    fn the_api_document_describes_both_routes() {
        let doc = serde_json::to_value(NotificationsApi::openapi()).unwrap();
        let paths = &doc["paths"];
        assert!(paths["/notifications"]["get"].is_object());
        assert!(paths["/notifications/{id}"]["get"]["responses"]["404"].is_object());
        let params = paths["/notifications"]["get"]["parameters"]
            .as_array()
            .unwrap();
        let names: Vec<&str> = params.iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["patientId", "limit", "before"]);
        let detail = &doc["components"]["schemas"]["NotificationDetail"];
        assert!(detail.is_object(), "{doc}");
    }
}
