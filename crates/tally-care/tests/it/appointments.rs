//! Appointments: booking (the patient checked with the directory, the physician never double
//! booked), reading, listing, closing with its price, cancelling, no-shows, keys and refusals.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use chrono::FixedOffset;
use serde_json::json;
use tally_care::{CareSettings, PatientStatus};
use tally_db::both_backends;
use tally_db::testing::TestBackend;
use uuid::Uuid;

use crate::{app, app_with, assert_problem, booking};

const START: &str = "2030-01-07T09:00:00Z";
const END: &str = "2030-01-07T09:30:00Z";

async fn a_booking_is_priced_stored_and_announced(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (patient, physician) = (app.patient(), app.physician().await);
    let created = app.book(&patient, &physician, START, END).await;
    assert_eq!(created.content_type, "application/json");
    let id = Uuid::parse_str(&created.id()).unwrap();
    assert_eq!(id.get_version_num(), 7, "the server makes UUID v7 ids");
    let b = &created.body;
    assert_eq!(b["status"], "booked");
    assert_eq!(
        (b["patientId"].as_str(), b["physicianId"].as_str()),
        (Some(patient.as_str()), Some(physician.as_str()))
    );
    assert_eq!(
        (&b["scheduledStart"], &b["scheduledEnd"]),
        (&json!(START), &json!(END))
    );
    assert!(
        created.raw.contains(r#""scheduledPrice":100.00"#),
        "30 minutes are two 15-minute blocks at 50.00: {}",
        created.raw
    );
    assert_eq!(b["currency"], "USD");
    for unset in ["end", "durationMinutes", "price", "cancelReason"] {
        assert_eq!(b[unset], json!(null), "{unset}");
    }

    let read = app.get(&format!("/appointments/{id}")).await;
    assert_eq!((read.status, &read.body), (StatusCode::OK, &created.body));

    let events = app.events().await;
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(
        (e.event_type.as_str(), e.version, e.source.as_str()),
        ("appointment.booked", 1, "care")
    );
    assert_eq!(
        (e.aggregate_type.as_str(), e.aggregate_id.as_str()),
        ("appointment", id.to_string().as_str())
    );
    assert_eq!(e.correlation_id, "test-request");
    assert_eq!(
        e.data,
        json!({
            "appointment_id": id.to_string(),
            "patient_id": patient,
            "physician_id": physician,
            "scheduled_start": START,
            "scheduled_end": END,
            "scheduled_price_minor": 10000,
            "currency": "USD",
        })
    );
    assert_eq!(app.directory.calls(), 1, "the patient was checked once");
}
both_backends!(a_booking_is_priced_stored_and_announced);

async fn times_without_an_offset_are_read_in_the_clinic_zone(backend: TestBackend) {
    let settings = CareSettings {
        clinic_utc_offset: FixedOffset::west_opt(3 * 3600).unwrap(),
    };
    let Some(app) = app_with(backend, settings).await else {
        return;
    };
    let (patient, physician) = (app.patient(), app.physician().await);
    let local = app
        .book(
            &patient,
            &physician,
            "2030-01-07T09:00:00",
            "2030-01-07T09:20:00.000",
        )
        .await;
    assert_eq!(local.body["scheduledStart"], "2030-01-07T12:00:00Z");
    assert_eq!(local.body["scheduledEnd"], "2030-01-07T12:20:00Z");
    let offset = app
        .book(
            &patient,
            &physician,
            "2030-01-07T13:20:00+01:00",
            "2030-01-07T12:50:00Z",
        )
        .await;
    assert_eq!(
        offset.body["scheduledStart"], "2030-01-07T12:20:00Z",
        "offsets are honoured"
    );
}
both_backends!(times_without_an_offset_are_read_in_the_clinic_zone);

async fn closing_prices_the_real_duration_once(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (patient, physician) = (app.patient(), app.physician().await);
    let id = app.book(&patient, &physician, START, END).await.id();
    let uri = format!("/appointments/{id}/close");

    // 35 minutes and one second from the scheduled start: 36 minutes, three started blocks.
    let closed = app
        .post(&uri, &json!({"end": "2030-01-07T09:35:01Z"}))
        .await;
    assert_eq!(closed.status, StatusCode::OK, "{}", closed.raw);
    assert_eq!(closed.body["status"], "closed");
    assert_eq!(closed.body["end"], "2030-01-07T09:35:01Z");
    assert_eq!(closed.body["durationMinutes"], 36);
    assert!(closed.raw.contains(r#""price":150.00"#), "{}", closed.raw);
    assert!(
        closed.raw.contains(r#""scheduledPrice":100.00"#),
        "kept: {}",
        closed.raw
    );
    assert_eq!(
        app.get(&format!("/appointments/{id}")).await.body,
        closed.body
    );

    let events = app.events().await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].event_type, "consultation.closed");
    assert_eq!(events[1].aggregate_id, id);
    assert_eq!(
        events[1].data,
        json!({
            "appointment_id": id,
            "patient_id": patient,
            "physician_id": physician,
            "start": START,
            "end": "2030-01-07T09:35:01Z",
            "duration_minutes": 36,
            "price_minor": 15000,
            "currency": "USD",
        })
    );

    // Closing twice is a conflict and changes nothing.
    let twice = app
        .post(&uri, &json!({"end": "2030-01-07T09:40:00Z"}))
        .await;
    assert_problem(&twice, StatusCode::CONFLICT, &[]);
    assert_eq!(twice.body["type"], "/problems/appointment-not-booked");
    assert_eq!(
        app.get(&format!("/appointments/{id}")).await.body,
        closed.body
    );
    assert_eq!(app.outbox_count().await, 2);
}
both_backends!(closing_prices_the_real_duration_once);

async fn the_price_edges_exactly_a_block_and_one_second_over(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (patient, physician) = (app.patient(), app.physician().await);
    let slots = [
        ("2030-01-07T08:00:00Z", "2030-01-07T08:00:00Z", 0, "0.00"),
        ("2030-01-07T09:00:00Z", "2030-01-07T09:15:00Z", 15, "50.00"),
        ("2030-01-07T10:00:00Z", "2030-01-07T10:15:01Z", 16, "100.00"),
        ("2030-01-07T11:00:00Z", "2030-01-07T11:00:00.5Z", 1, "50.00"),
    ];
    for (start, end, minutes, price) in slots {
        let slot_end = "2030-01-07T23:00:00Z";
        let id = app.book(&patient, &physician, start, slot_end).await.id();
        // Each booking ends where the next starts, so close before booking the next.
        let closed = app
            .post(&format!("/appointments/{id}/close"), &json!({"end": end}))
            .await;
        assert_eq!(closed.status, StatusCode::OK, "{}", closed.raw);
        assert_eq!(closed.body["durationMinutes"], minutes, "{start} to {end}");
        assert!(
            closed.raw.contains(&format!(r#""price":{price}"#)),
            "{start} to {end}: {}",
            closed.raw
        );
    }
}
both_backends!(the_price_edges_exactly_a_block_and_one_second_over);

async fn bad_closes_are_refused_and_change_nothing(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (patient, physician) = (app.patient(), app.physician().await);
    let booked = app.book(&patient, &physician, START, END).await;
    let uri = format!("/appointments/{}/close", booked.id());
    let outbox = app.outbox_count().await;

    let before_start = app
        .post(&uri, &json!({"end": "2030-01-07T08:59:59Z"}))
        .await;
    assert_problem(&before_start, StatusCode::UNPROCESSABLE_ENTITY, &["end"]);
    let too_long = app
        .post(&uri, &json!({"end": "2030-01-08T09:00:01Z"}))
        .await;
    assert_problem(&too_long, StatusCode::UNPROCESSABLE_ENTITY, &["end"]);
    for bad in [
        json!({"end": "07/01/2030 10:00"}),
        json!({"end": 5}),
        json!({}),
        json!({"end": null}),
    ] {
        let refused = app.post(&uri, &bad).await;
        assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY, &["end"]);
    }
    let unknown = app
        .post(
            &format!("/appointments/{}/close", Uuid::now_v7()),
            &json!({"end": END}),
        )
        .await;
    assert_problem(&unknown, StatusCode::NOT_FOUND, &[]);

    assert_eq!(
        app.get(&format!("/appointments/{}", booked.id()))
            .await
            .body,
        booked.body
    );
    assert_eq!(app.outbox_count().await, outbox, "nothing was published");
}
both_backends!(bad_closes_are_refused_and_change_nothing);

async fn cancelling_and_no_shows_happen_only_to_booked_appointments(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (patient, physician) = (app.patient(), app.physician().await);
    let first = app.book(&patient, &physician, START, END).await.id();
    let cancelled = app
        .post(
            &format!("/appointments/{first}/cancel"),
            &json!({"reason": " Patient asked to reschedule "}),
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.raw);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!(
        cancelled.body["cancelReason"],
        "Patient asked to reschedule"
    );

    // The slot is free again.
    let second = app.book(&patient, &physician, START, END).await.id();
    let absent = app
        .send(
            Method::POST,
            &format!("/appointments/{second}/no-show"),
            None,
            None,
        )
        .await;
    assert_eq!(absent.status, StatusCode::OK, "{}", absent.raw);
    assert_eq!(absent.body["status"], "no_show");

    // Cancelling without a body, and with a null reason.
    let third = app.book(&patient, &physician, START, END).await.id();
    let quiet = app
        .send(
            Method::POST,
            &format!("/appointments/{third}/cancel"),
            None,
            None,
        )
        .await;
    assert_eq!(quiet.status, StatusCode::OK, "{}", quiet.raw);
    assert_eq!(quiet.body["cancelReason"], json!(null));

    let events = app.events().await;
    let summary: Vec<(&str, &serde_json::Value)> = events
        .iter()
        .map(|e| (e.event_type.as_str(), &e.data))
        .collect();
    assert_eq!(summary.len(), 6);
    assert_eq!(summary[1].0, "appointment.cancelled");
    assert_eq!(
        summary[1].1,
        &json!({
            "appointment_id": first,
            "patient_id": patient,
            "physician_id": physician,
            "reason": "Patient asked to reschedule",
        })
    );
    assert_eq!(summary[3].0, "appointment.no_show");
    assert_eq!(
        summary[3].1,
        &json!({"appointment_id": second, "patient_id": patient, "physician_id": physician})
    );
    assert_eq!(summary[5].0, "appointment.cancelled");
    assert_eq!(summary[5].1["reason"], json!(null));

    // Nothing more can happen to them.
    let outbox = app.outbox_count().await;
    for (id, action) in [
        (&first, "cancel"),
        (&first, "no-show"),
        (&second, "cancel"),
        (&second, "no-show"),
    ] {
        let refused = app
            .send(
                Method::POST,
                &format!("/appointments/{id}/{action}"),
                None,
                None,
            )
            .await;
        assert_problem(&refused, StatusCode::CONFLICT, &[]);
    }
    let refused = app
        .post(
            &format!("/appointments/{first}/close"),
            &json!({"end": END}),
        )
        .await;
    assert_problem(&refused, StatusCode::CONFLICT, &[]);

    let bad_reason = app
        .book(&patient, &physician, END, "2030-01-07T10:00:00Z")
        .await
        .id();
    for reason in [json!(""), json!("x".repeat(501)), json!(7)] {
        let refused = app
            .post(
                &format!("/appointments/{bad_reason}/cancel"),
                &json!({"reason": reason}),
            )
            .await;
        assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY, &["reason"]);
    }
    for uri in [
        format!("/appointments/{}/cancel", Uuid::now_v7()),
        format!("/appointments/{}/no-show", Uuid::now_v7()),
        "/appointments/nope/no-show".to_owned(),
    ] {
        let refused = app.send(Method::POST, &uri, None, None).await;
        assert_problem(&refused, StatusCode::NOT_FOUND, &[]);
    }
    assert_eq!(
        app.outbox_count().await,
        outbox + 1,
        "only the last booking"
    );
}
both_backends!(cancelling_and_no_shows_happen_only_to_booked_appointments);

async fn patients_the_directory_refuses_are_not_booked(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let physician = app.physician().await;
    let deactivated = Uuid::new_v4();
    app.directory.add(deactivated, PatientStatus::Deactivated);

    let unknown = app
        .post(
            "/appointments",
            &booking(&Uuid::new_v4().to_string(), &physician, START, END),
        )
        .await;
    assert_problem(&unknown, StatusCode::UNPROCESSABLE_ENTITY, &["patientId"]);
    assert_eq!(unknown.body["type"], "/problems/unknown-patient");

    let refused = app
        .post(
            "/appointments",
            &booking(&deactivated.to_string(), &physician, START, END),
        )
        .await;
    assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY, &["patientId"]);
    assert_eq!(refused.body["type"], "/problems/patient-deactivated");

    let no_physician = app
        .post(
            "/appointments",
            &booking(&app.patient(), &Uuid::new_v4().to_string(), START, END),
        )
        .await;
    assert_problem(
        &no_physician,
        StatusCode::UNPROCESSABLE_ENTITY,
        &["physicianId"],
    );
    assert_eq!(no_physician.body["type"], "/problems/unknown-physician");

    let neither = app
        .post(
            "/appointments",
            &booking(
                &Uuid::new_v4().to_string(),
                &Uuid::new_v4().to_string(),
                START,
                END,
            ),
        )
        .await;
    assert_problem(
        &neither,
        StatusCode::UNPROCESSABLE_ENTITY,
        &["patientId", "physicianId"],
    );

    app.directory.fail(true);
    let down = app
        .post(
            "/appointments",
            &booking(&app.patient(), &physician, START, END),
        )
        .await;
    assert_problem(&down, StatusCode::SERVICE_UNAVAILABLE, &[]);
    assert_eq!(down.body["type"], "/problems/patient-directory-unavailable");
    assert_eq!(down.header("retry-after"), Some("1"));
    assert!(
        !down.raw.contains("connection refused"),
        "no internals: {}",
        down.raw
    );

    assert_eq!(app.appointment_count().await, 0, "nothing was booked");
    assert_eq!(app.outbox_count().await, 0, "nothing was published");
}
both_backends!(patients_the_directory_refuses_are_not_booked);

async fn malformed_bookings_are_refused_before_asking_anyone(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (patient, physician) = (app.patient(), app.physician().await);
    let cases = [
        (
            booking(&patient, &physician, END, START),
            vec!["scheduledEnd"],
        ),
        (
            booking(&patient, &physician, START, START),
            vec!["scheduledEnd"],
        ),
        (
            booking(&patient, &physician, START, "2030-01-08T09:00:01Z"),
            vec!["scheduledEnd"],
        ),
        (
            booking(
                &patient,
                &physician,
                "2030-01-07 09:00:00",
                "2030-13-07T09:30:00",
            ),
            vec!["scheduledStart", "scheduledEnd"],
        ),
        (
            booking("not-a-uuid", "12345", START, END),
            vec!["patientId", "physicianId"],
        ),
        (
            json!({}),
            vec!["patientId", "physicianId", "scheduledStart", "scheduledEnd"],
        ),
        (
            json!({"patientId": 5, "physicianId": physician}),
            vec!["patientId"],
        ),
    ];
    for (body, fields) in cases {
        let refused = app.post("/appointments", &body).await;
        assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY, &fields);
    }
    let mut extra = booking(&patient, &physician, START, END);
    extra["price"] = json!(1);
    assert_eq!(
        app.post("/appointments", &extra).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.directory.calls(),
        0,
        "bad input never reaches the directory"
    );
    assert_eq!(app.appointment_count().await, 0);
    assert_eq!(app.outbox_count().await, 0);
}
both_backends!(malformed_bookings_are_refused_before_asking_anyone);

async fn a_physician_is_never_double_booked(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (patient, physician) = (app.patient(), app.physician().await);
    let first = app.book(&patient, &physician, START, END).await.id();

    for (start, end) in [
        (START, END),
        ("2030-01-07T09:29:59Z", "2030-01-07T10:00:00Z"),
        ("2030-01-07T08:00:00Z", "2030-01-07T09:00:01Z"),
        ("2030-01-07T09:10:00Z", "2030-01-07T09:20:00Z"),
        ("2030-01-07T08:00:00Z", "2030-01-07T11:00:00Z"),
    ] {
        let refused = app
            .post(
                "/appointments",
                &booking(&app.patient(), &physician, start, end),
            )
            .await;
        assert_problem(&refused, StatusCode::CONFLICT, &["scheduledStart"]);
        assert_eq!(refused.body["type"], "/problems/physician-double-booked");
        assert!(
            refused.raw.contains(&first),
            "names the clash: {}",
            refused.raw
        );
    }
    // Back to back is fine, and so is another physician at the same time.
    app.book(&patient, &physician, END, "2030-01-07T10:00:00Z")
        .await;
    app.book(&patient, &physician, "2030-01-07T08:30:00Z", START)
        .await;
    let other = app.physician().await;
    app.book(&app.patient(), &other, START, END).await;
    // A closed appointment no longer holds its slot.
    let closed = app
        .post(
            &format!("/appointments/{first}/close"),
            &json!({"end": END}),
        )
        .await;
    assert_eq!(closed.status, StatusCode::OK);
    app.book(&app.patient(), &physician, START, END).await;
    assert_eq!(app.appointment_count().await, 5);
}
both_backends!(a_physician_is_never_double_booked);

async fn ten_concurrent_overlapping_bookings_make_one_appointment(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let physician = app.physician().await;
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (app, physician) = (app.clone(), physician.clone());
        let patient = app.patient();
        // Every slot overlaps every other: they all contain 09:10 to 09:20.
        let start = format!("2030-01-07T09:0{i}:00Z");
        let end = format!("2030-01-07T09:2{i}:00Z");
        tasks.push(tokio::spawn(async move {
            app.post(
                "/appointments",
                &booking(&patient, &physician, &start, &end),
            )
            .await
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        let reply = task.await.unwrap();
        assert!(
            reply.status == StatusCode::CREATED || reply.status == StatusCode::CONFLICT,
            "{}",
            reply.raw
        );
        statuses.push(reply.status);
    }
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "exactly one booking won: {statuses:?}");
    assert_eq!(app.appointment_count().await, 1);
    let events = app.events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "appointment.booked");
}
both_backends!(ten_concurrent_overlapping_bookings_make_one_appointment);

async fn appointments_are_listed_by_patient_and_physician(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (ana, bia) = (app.patient(), app.patient());
    let (house, grey) = (app.physician().await, app.physician().await);
    let a1 = app
        .book(&ana, &house, "2030-01-07T09:00:00Z", "2030-01-07T09:30:00Z")
        .await
        .id();
    let a2 = app
        .book(&ana, &grey, "2030-01-07T10:00:00Z", "2030-01-07T10:30:00Z")
        .await
        .id();
    let b1 = app
        .book(&bia, &house, "2030-01-07T11:00:00Z", "2030-01-07T11:30:00Z")
        .await
        .id();

    let ids = |reply: &crate::Reply| -> Vec<String> {
        reply.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(&app.get("/appointments").await),
        [b1.as_str(), a2.as_str(), a1.as_str()]
    );
    assert_eq!(
        ids(&app.get(&format!("/appointments?patientId={ana}")).await),
        [a2.as_str(), a1.as_str()]
    );
    assert_eq!(
        ids(&app.get(&format!("/appointments?physicianId={house}")).await),
        [b1.as_str(), a1.as_str()]
    );
    assert_eq!(
        ids(&app
            .get(&format!(
                "/appointments?patientId={ana}&physicianId={house}"
            ))
            .await),
        [a1.as_str()]
    );
    assert_eq!(
        ids(&app.get("/appointments?patientId=&physicianId=").await),
        [b1.as_str(), a2.as_str(), a1.as_str()],
        "empty filters filter nothing"
    );
    let none = app
        .get(&format!("/appointments?patientId={}", Uuid::new_v4()))
        .await;
    assert_eq!((none.status, ids(&none).len()), (StatusCode::OK, 0));

    let page = app.get("/appointments?limit=2").await;
    assert_eq!(ids(&page), [b1.as_str(), a2.as_str()]);
    let cursor = page.body["nextCursor"].as_str().unwrap();
    let rest = app
        .get(&format!("/appointments?limit=2&before={cursor}"))
        .await;
    assert_eq!(ids(&rest), [a1.as_str()]);
    assert_eq!(rest.body["nextCursor"], json!(null));

    for (query, field) in [
        ("patientId=nope", "patientId"),
        ("physicianId=1", "physicianId"),
        ("limit=500", "limit"),
        ("before=-3", "before"),
    ] {
        let refused = app.get(&format!("/appointments?{query}")).await;
        assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY, &[field]);
    }
    for uri in [
        format!("/appointments/{}", Uuid::now_v7()),
        "/appointments/x".into(),
    ] {
        assert_problem(&app.get(&uri).await, StatusCode::NOT_FOUND, &[]);
    }
}
both_backends!(appointments_are_listed_by_patient_and_physician);

async fn an_idempotency_key_books_once_and_replays_even_when_the_directory_is_down(
    backend: TestBackend,
) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (patient, physician) = (app.patient(), app.physician().await);
    let body = booking(&patient, &physician, START, END);
    let first = app
        .send(Method::POST, "/appointments", Some(&body), Some("book-1"))
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.raw);
    assert_eq!(app.directory.calls(), 1);

    app.directory.fail(true);
    // Spelled differently, the same booking: the first answer comes back, without asking the
    // directory.
    let same = booking(
        &patient,
        &physician,
        "2030-01-07T10:00:00+01:00",
        "2030-01-07T09:30:00.000Z",
    );
    let retry = app
        .send(Method::POST, "/appointments", Some(&same), Some("book-1"))
        .await;
    assert!(retry.replayed, "{}", retry.raw);
    assert_eq!(
        (retry.status, &retry.body),
        (StatusCode::CREATED, &first.body)
    );
    assert_eq!(
        app.directory.calls(),
        1,
        "a replay does not ask the directory"
    );

    let other = booking(&patient, &physician, START, "2030-01-07T09:45:00Z");
    let reused = app
        .send(Method::POST, "/appointments", Some(&other), Some("book-1"))
        .await;
    assert_problem(
        &reused,
        StatusCode::UNPROCESSABLE_ENTITY,
        &["Idempotency-Key"],
    );

    // A new key while the directory is down: 503, nothing stored for the key; once it is back,
    // the same key books.
    let down = app
        .send(Method::POST, "/appointments", Some(&other), Some("book-2"))
        .await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    app.directory.fail(false);
    let refused = app
        .send(Method::POST, "/appointments", Some(&other), Some("book-2"))
        .await;
    assert_problem(&refused, StatusCode::CONFLICT, &["scheduledStart"]);
    // A conflict is the state's answer: it is kept for the key, even once the slot is free.
    let closed = app
        .post(
            &format!("/appointments/{}/close", first.id()),
            &json!({"end": END}),
        )
        .await;
    assert_eq!(closed.status, StatusCode::OK);
    let again = app
        .send(Method::POST, "/appointments", Some(&other), Some("book-2"))
        .await;
    assert!(again.replayed);
    assert_eq!(again.status, StatusCode::CONFLICT);

    assert_eq!(app.appointment_count().await, 1);
    assert_eq!(app.events().await.len(), 2, "booked, closed");
}
both_backends!(an_idempotency_key_books_once_and_replays_even_when_the_directory_is_down);

async fn keyed_closes_cancels_and_no_shows_replay(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (patient, physician) = (app.patient(), app.physician().await);
    let id = app.book(&patient, &physician, START, END).await.id();
    let close = json!({"end": "2030-01-07T09:40:00Z"});
    let uri = format!("/appointments/{id}/close");
    let first = app
        .send(Method::POST, &uri, Some(&close), Some("close-1"))
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let retry = app
        .send(Method::POST, &uri, Some(&close), Some("close-1"))
        .await;
    assert!(retry.replayed);
    assert_eq!((retry.status, &retry.body), (StatusCode::OK, &first.body));

    let id = app.book(&patient, &physician, START, END).await.id();
    let uri = format!("/appointments/{id}/cancel");
    let first = app.send(Method::POST, &uri, None, Some("cancel-1")).await;
    let retry = app.send(Method::POST, &uri, None, Some("cancel-1")).await;
    assert!(retry.replayed);
    assert_eq!((retry.status, &retry.body), (StatusCode::OK, &first.body));

    let id = app.book(&patient, &physician, START, END).await.id();
    let uri = format!("/appointments/{id}/no-show");
    let first = app.send(Method::POST, &uri, None, Some("absent-1")).await;
    let retry = app.send(Method::POST, &uri, None, Some("absent-1")).await;
    assert!(retry.replayed);
    assert_eq!((retry.status, &retry.body), (StatusCode::OK, &first.body));

    let types: Vec<String> = app
        .events()
        .await
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        types,
        [
            "appointment.booked",
            "consultation.closed",
            "appointment.booked",
            "appointment.cancelled",
            "appointment.booked",
            "appointment.no_show"
        ]
    );
}
both_backends!(keyed_closes_cancels_and_no_shows_replay);
