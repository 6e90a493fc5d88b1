//! Document 000's routes with the document's exact requests: create (a redirect), close (the
//! price), the two reads; then its refusals and the clinic's time zone.

use axum::http::{Method, StatusCode};
use chrono::FixedOffset;
use serde_json::{json, Value};
use tally_care::{CareSettings, PatientStatus};
use tally_db::both_backends;
use tally_db::testing::TestBackend;
use uuid::Uuid;

use crate::{app, app_with, assert_problem, without, App, Reply, DOC_000_ID};

/// The document's create request, verbatim.
const CREATE: &str = r#"{
    "patient_id": "e6afa807-8705-43d8-ba48-40a421843248",
    "physician_id": "e6afa807-8705-43d8-ba48-40a421843248",
    "start_date": "2021-07-01T08:30:00.000"
}"#;

/// The document's close request, verbatim (its id is the one the document's run made).
const CLOSE: &str = r#"{
    "end_date": "2021-07-01T13:40:00.000",
    "id": "4baa39f8-f414-4ac4-9720-64fdfe09998b",
    "patient_id": "e6afa807-8705-43d8-ba48-40a421843248",
    "physician_id": "e6afa807-8705-43d8-ba48-40a421843248",
    "start_date": "2021-07-01T08:30:00.000"
}"#;

/// The document's close request for the consultation `id`.
fn close_for(id: &str) -> Value {
    let mut close: Value = serde_json::from_str(CLOSE).unwrap();
    close["id"] = json!(id);
    close
}

/// The document's patient (active) and physician (50.00 per started 15 minutes, 30 minutes by
/// default).
async fn document_000_world(app: &App) {
    app.directory
        .add(Uuid::parse_str(DOC_000_ID).unwrap(), PatientStatus::Active);
    app.physician_with_id(DOC_000_ID).await;
}

/// Creates the document's consultation; returns the redirect.
async fn create(app: &App) -> Reply {
    let reply = app
        .post(
            "/consultation/v1/create",
            &serde_json::from_str(CREATE).unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.raw);
    reply
}

async fn the_documents_happy_flow_works_as_written(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    document_000_world(&app).await;

    // 1. Create: a redirect to the consultation, with its id.
    let created = create(&app).await;
    let id = created.id();
    assert_eq!(Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    let location = created
        .header("location")
        .expect("a Location header")
        .to_owned();
    assert_eq!(location, format!("/consultation/v1/consultation/{id}"));
    assert_eq!(created.content_type, "application/json");
    assert_eq!(created.body, json!({"id": id}));

    let booked = app.get(&location).await;
    assert_eq!(booked.status, StatusCode::OK, "{}", booked.raw);
    assert!(booked.raw.contains(r#""price":100.00,"#), "{}", booked.raw);
    assert_eq!(
        without(&booked.body, "price"),
        json!({
            "id": id,
            "patient_id": DOC_000_ID,
            "physician_id": DOC_000_ID,
            "start_date": "2021-07-01T08:30:00.000Z",
            "end_date": "2021-07-01T09:00:00.000Z",
            "currency": "USD",
            "status": "booked",
        }),
        "the physician's default 30 minutes, two blocks"
    );

    // 2. Close with the document's request (and this run's id): 5 h 10 min, 21 blocks.
    let closed = app.post("/consultation/v1/close", &close_for(&id)).await;
    assert_eq!(closed.status, StatusCode::OK, "{}", closed.raw);
    assert!(closed.raw.contains(r#""price":1050.00"#), "{}", closed.raw);
    let expected = json!({
        "id": id,
        "patient_id": DOC_000_ID,
        "physician_id": DOC_000_ID,
        "start_date": "2021-07-01T08:30:00.000Z",
        "end_date": "2021-07-01T13:40:00.000Z",
        "currency": "USD",
        "status": "closed",
    });
    assert_eq!(without(&closed.body, "price"), expected);

    // 3. The two reads.
    let one = app
        .get(&format!("/consultation/v1/consultation/{id}"))
        .await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(without(&one.body, "price"), expected);
    assert!(one.raw.contains(r#""price":1050.00,"#), "{}", one.raw);
    let all = app.get("/consultation/v1/consultation").await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(without(&all.body, "price"), json!([expected]));
    assert!(all.raw.contains(r#""price":1050.00,"#), "{}", all.raw);
    assert_eq!(all.header("x-next-cursor"), None);

    // The same consultation through the appointments API, and its events.
    let appointment = app.get(&format!("/appointments/{id}")).await;
    assert_eq!(appointment.body["durationMinutes"], 310);
    let events = app.events().await;
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["appointment.booked", "consultation.closed"]);
    assert_eq!(
        events[0].data,
        json!({
            "appointment_id": id,
            "patient_id": DOC_000_ID,
            "physician_id": DOC_000_ID,
            "scheduled_start": "2021-07-01T08:30:00Z",
            "scheduled_end": "2021-07-01T09:00:00Z",
            "scheduled_price_minor": 10000,
            "currency": "USD",
        })
    );
    assert_eq!(
        events[1].data,
        json!({
            "appointment_id": id,
            "patient_id": DOC_000_ID,
            "physician_id": DOC_000_ID,
            "start": "2021-07-01T08:30:00Z",
            "end": "2021-07-01T13:40:00Z",
            "duration_minutes": 310,
            "price_minor": 105000,
            "currency": "USD",
        })
    );
}
both_backends!(the_documents_happy_flow_works_as_written);

async fn the_documents_close_as_written_names_an_unknown_consultation(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    document_000_world(&app).await;
    create(&app).await;
    let outbox = app.outbox_count().await;
    // The document's id was made by the document's own run: here it names nothing.
    let refused = app
        .post(
            "/consultation/v1/close",
            &serde_json::from_str(CLOSE).unwrap(),
        )
        .await;
    assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY, &["id"]);
    assert_eq!(refused.body["type"], "/problems/unknown-consultation");
    assert_eq!(app.outbox_count().await, outbox);
}
both_backends!(the_documents_close_as_written_names_an_unknown_consultation);

async fn bad_closes_are_refused_naming_the_field_and_change_nothing(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    document_000_world(&app).await;
    let id = create(&app).await.id();
    let outbox = app.outbox_count().await;
    let change = |field: &str, value: Value| {
        let mut body = close_for(&id);
        body[field] = value;
        body
    };
    let other = Uuid::new_v4().to_string();
    let cases = [
        (change("patient_id", json!(other)), vec!["patient_id"]),
        (change("physician_id", json!(other)), vec!["physician_id"]),
        (
            change("start_date", json!("2021-07-01T08:31:00.000")),
            vec!["start_date"],
        ),
        (
            change("end_date", json!("2021-07-01T08:29:59.999")),
            vec!["end_date"],
        ),
        (
            change("end_date", json!("2021-07-01 13:40")),
            vec!["end_date"],
        ),
        (change("start_date", json!("yesterday")), vec!["start_date"]),
        (change("id", json!("4baa39f8")), vec!["id"]),
        (
            json!({"id": id}),
            vec!["end_date", "patient_id", "physician_id", "start_date"],
        ),
    ];
    for (body, fields) in cases {
        let refused = app.post("/consultation/v1/close", &body).await;
        assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY, &fields);
    }
    let mut both = close_for(&id);
    both["patient_id"] = json!(other);
    both["physician_id"] = json!(other);
    let refused = app.post("/consultation/v1/close", &both).await;
    assert_problem(
        &refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        &["patient_id", "physician_id"],
    );
    let mut extra = close_for(&id);
    extra["price"] = json!(1);
    assert_eq!(
        app.post("/consultation/v1/close", &extra).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // The same start written with an offset is the same start.
    let mut offset = close_for(&id);
    offset["start_date"] = json!("2021-07-01T05:30:00-03:00");
    let read = app
        .get(&format!("/consultation/v1/consultation/{id}"))
        .await;
    assert_eq!(read.body["status"], "booked", "nothing changed");
    assert_eq!(app.outbox_count().await, outbox, "nothing was published");
    assert_eq!(
        app.post("/consultation/v1/close", &offset).await.status,
        StatusCode::OK
    );

    // Closing twice.
    let twice = app.post("/consultation/v1/close", &close_for(&id)).await;
    assert_problem(&twice, StatusCode::CONFLICT, &[]);
    assert_eq!(app.outbox_count().await, outbox + 1);
}
both_backends!(bad_closes_are_refused_naming_the_field_and_change_nothing);

async fn bad_creates_are_refused_naming_the_field(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    document_000_world(&app).await;
    let base: Value = serde_json::from_str(CREATE).unwrap();
    let change = |field: &str, value: Value| {
        let mut body = base.clone();
        body[field] = value;
        body
    };
    let cases = [
        (
            change("start_date", json!("01/07/2021 08:30")),
            "start_date",
        ),
        (
            change("start_date", json!("2021-07-01T08:30:00.0000001")),
            "start_date",
        ),
        (
            change("patient_id", json!(Uuid::new_v4().to_string())),
            "patient_id",
        ),
        (
            change("physician_id", json!(Uuid::new_v4().to_string())),
            "physician_id",
        ),
        (change("patient_id", json!("e6afa807")), "patient_id"),
    ];
    for (body, field) in cases {
        let refused = app.post("/consultation/v1/create", &body).await;
        assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY, &[field]);
        assert_eq!(refused.header("location"), None);
    }
    create(&app).await;
    // The physician is busy from 08:30 to 09:00.
    let busy = app
        .post(
            "/consultation/v1/create",
            &change("start_date", json!("2021-07-01T08:45:00.000")),
        )
        .await;
    assert_problem(&busy, StatusCode::CONFLICT, &["start_date"]);
    assert_eq!(app.appointment_count().await, 1);
    assert_eq!(app.outbox_count().await, 1);
}
both_backends!(bad_creates_are_refused_naming_the_field);

async fn dates_are_read_and_shown_in_the_clinic_zone(backend: TestBackend) {
    let settings = CareSettings {
        clinic_utc_offset: FixedOffset::west_opt(3 * 3600).unwrap(),
    };
    let Some(app) = app_with(backend, settings).await else {
        return;
    };
    document_000_world(&app).await;
    let id = create(&app).await.id();
    let appointment = app.get(&format!("/appointments/{id}")).await;
    assert_eq!(appointment.body["scheduledStart"], "2021-07-01T11:30:00Z");
    let consultation = app
        .get(&format!("/consultation/v1/consultation/{id}"))
        .await;
    assert_eq!(
        consultation.body["start_date"],
        "2021-07-01T08:30:00.000-03:00"
    );
    assert_eq!(
        consultation.body["end_date"],
        "2021-07-01T09:00:00.000-03:00"
    );

    // An offset is honoured: 14:00 UTC is 11:00 at the clinic.
    let closed = app
        .post(
            "/consultation/v1/close",
            &json!({
                "end_date": "2021-07-01T14:00:00Z",
                "id": id,
                "patient_id": DOC_000_ID,
                "physician_id": DOC_000_ID,
                "start_date": "2021-07-01T08:30:00.000",
            }),
        )
        .await;
    assert_eq!(closed.status, StatusCode::OK, "{}", closed.raw);
    assert_eq!(closed.body["end_date"], "2021-07-01T11:00:00.000-03:00");
    assert!(
        closed.raw.contains(r#""price":500.00"#),
        "150 minutes, 10 blocks: {}",
        closed.raw
    );
}
both_backends!(dates_are_read_and_shown_in_the_clinic_zone);

async fn a_keyed_create_redirects_to_the_same_consultation(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    document_000_world(&app).await;
    let body: Value = serde_json::from_str(CREATE).unwrap();
    let first = app
        .send(
            Method::POST,
            "/consultation/v1/create",
            Some(&body),
            Some("c-1"),
        )
        .await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.raw);
    let retry = app
        .send(
            Method::POST,
            "/consultation/v1/create",
            Some(&body),
            Some("c-1"),
        )
        .await;
    assert_eq!(retry.status, StatusCode::SEE_OTHER, "{}", retry.raw);
    assert!(retry.replayed);
    assert_eq!(retry.header("location"), first.header("location"));
    assert_eq!(retry.body, first.body);
    assert_eq!(app.appointment_count().await, 1);
}
both_backends!(a_keyed_create_redirects_to_the_same_consultation);

async fn all_consultations_are_listed_newest_first(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    document_000_world(&app).await;
    let mut ids = Vec::new();
    for hour in ["08", "09", "10"] {
        let mut body: Value = serde_json::from_str(CREATE).unwrap();
        body["start_date"] = json!(format!("2021-07-01T{hour}:30:00.000"));
        let reply = app.post("/consultation/v1/create", &body).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.raw);
        ids.push(reply.id());
    }
    let listed = |reply: &Reply| -> Vec<String> {
        reply
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = app.get("/consultation/v1/consultation").await;
    assert_eq!(
        listed(&all),
        [ids[2].as_str(), ids[1].as_str(), ids[0].as_str()]
    );
    let first = app.get("/consultation/v1/consultation?limit=2").await;
    assert_eq!(listed(&first), [ids[2].as_str(), ids[1].as_str()]);
    let cursor = first.header("x-next-cursor").expect("a next cursor");
    let rest = app
        .get(&format!(
            "/consultation/v1/consultation?limit=2&before={cursor}"
        ))
        .await;
    assert_eq!(listed(&rest), [ids[0].as_str()]);
    assert_problem(
        &app.get("/consultation/v1/consultation?limit=0").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        &["limit"],
    );
    for uri in [
        format!("/consultation/v1/consultation/{}", Uuid::now_v7()),
        "/consultation/v1/consultation/1".to_owned(),
    ] {
        assert_problem(&app.get(&uri).await, StatusCode::NOT_FOUND, &[]);
    }
}
both_backends!(all_consultations_are_listed_newest_first);
