//! Registering patients: by POST and by PUT with a chosen id, retries, refusals, reading back,
//! and the in-process lookup.

use axum::http::{Method, StatusCode};
use serde_json::json;
use tally_db::both_backends;
use tally_db::testing::TestBackend;
use tally_patients::PatientStatus;
use uuid::Uuid;

use crate::{app, assert_fields, assert_problem, maria, maria_stored};

async fn a_registered_patient_is_stored_announced_and_found(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };

    let created = app.register(&maria()).await;
    assert_eq!(created.content_type, "application/json");
    assert_fields(&created.body, &maria_stored());
    assert_eq!(created.body["status"], "active");
    assert_eq!(created.body["createdAt"], created.body["updatedAt"]);
    let id = Uuid::parse_str(&created.id()).unwrap();
    assert_eq!(id.get_version_num(), 7, "the server makes UUID v7 ids");

    let read = app.get(&format!("/patients/{id}")).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body, created.body, "read back exactly as answered");

    let events = app.events().await;
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(
        (e.event_type.as_str(), e.version, e.source.as_str()),
        ("patient.registered", 1, "patients")
    );
    assert_eq!(
        (e.aggregate_type.as_str(), e.aggregate_id.as_str()),
        ("patient", id.to_string().as_str())
    );
    assert_eq!(e.correlation_id, "test-request");
    assert_eq!(
        e.data,
        json!({
            "patient_id": id.to_string(),
            "full_name": "Maria da Silva",
            "email": "Maria.Silva@example.com",
            "phone": "+5511987654321",
        }),
        "contact details for notifications, and no date of birth"
    );

    assert_eq!(
        app.patients.lookup(id).await.unwrap(),
        Some(PatientStatus::Active)
    );
    assert_eq!(app.patients.lookup(Uuid::now_v7()).await.unwrap(), None);
}
both_backends!(a_registered_patient_is_stored_announced_and_found);

async fn email_and_phone_are_optional(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let bare = app
        .register(&json!({"fullName": "Ana", "dateOfBirth": "2001-05-17"}))
        .await;
    assert_eq!(
        (&bare.body["email"], &bare.body["phone"]),
        (&json!(null), &json!(null))
    );
    let nulls = app
        .register(
            &json!({"fullName": "Bia", "dateOfBirth": "2001-05-17", "email": null, "phone": null}),
        )
        .await;
    assert_eq!(nulls.body["email"], json!(null));
    assert_eq!(app.events().await[1].data["phone"], json!(null));
}
both_backends!(email_and_phone_are_optional);

async fn put_registers_once_and_answers_the_same_details_with_the_same_patient(
    backend: TestBackend,
) {
    let Some(app) = app(backend).await else {
        return;
    };
    let id = Uuid::new_v4();
    let uri = format!("/patients/{id}");

    let first = app.put(&uri, &maria()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.raw);
    assert_eq!(first.id(), id.to_string(), "the caller's id is kept");
    assert_fields(&first.body, &maria_stored());

    // The same details, spelled differently, are the same registration.
    let again = app.put(&uri, &maria_stored()).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.raw);
    assert_eq!(again.body, first.body, "the same patient, untouched");
    let third = app.put(&uri, &maria()).await;
    assert_eq!((third.status, &third.body), (StatusCode::OK, &first.body));

    let events = app.events().await;
    assert_eq!(events.len(), 1, "one patient.registered for three PUTs");
    assert_eq!(events[0].event_type, "patient.registered");
    assert_eq!(app.patient_count().await, 1);
}
both_backends!(put_registers_once_and_answers_the_same_details_with_the_same_patient);

async fn put_with_other_details_is_refused_and_changes_nothing(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let id = Uuid::new_v4();
    let uri = format!("/patients/{id}");
    let first = app.put(&uri, &maria()).await;
    assert_eq!(first.status, StatusCode::CREATED);

    let mut other = maria();
    other["dateOfBirth"] = json!("1985-03-01");
    other["phone"] = json!("+44 20 7946 0958");
    let refused = app.put(&uri, &other).await;
    assert_problem(&refused, StatusCode::CONFLICT, &["dateOfBirth", "phone"]);
    assert_eq!(
        refused.body["type"],
        "/problems/patient-registered-differently"
    );
    for value in ["1985-03-01", "1984-02-29", "7946", "98765", "Maria"] {
        assert!(
            !refused.raw.contains(value),
            "the refusal repeats a value: {}",
            refused.raw
        );
    }

    assert_eq!(app.get(&uri).await.body, first.body, "nothing changed");
    assert_eq!(app.events().await.len(), 1, "and nothing was published");

    // A patient registered by POST is protected the same way.
    let posted = app
        .register(&json!({"fullName": "Ana", "dateOfBirth": "2001-05-17"}))
        .await;
    let refused = app
        .put(
            &format!("/patients/{}", posted.id()),
            &json!({"fullName": "Ana Maria", "dateOfBirth": "2001-05-17"}),
        )
        .await;
    assert_problem(&refused, StatusCode::CONFLICT, &["fullName"]);
}
both_backends!(put_with_other_details_is_refused_and_changes_nothing);

async fn concurrent_puts_of_one_patient_register_it_once(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let app = std::sync::Arc::new(app);
    let uri = format!("/patients/{}", Uuid::new_v4());
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (app, uri) = (app.clone(), uri.clone());
        tasks.push(tokio::spawn(async move { app.put(&uri, &maria()).await }));
    }
    let mut statuses = Vec::new();
    let mut bodies = Vec::new();
    for task in tasks {
        let reply = task.await.unwrap();
        statuses.push(reply.status);
        bodies.push(reply.body);
    }
    statuses.sort();
    let mut expected = vec![StatusCode::OK; 7];
    expected.push(StatusCode::CREATED);
    assert_eq!(statuses, expected, "exactly one PUT registered");
    assert!(
        bodies.iter().all(|b| *b == bodies[0]),
        "all saw one patient"
    );
    assert_eq!(app.events().await.len(), 1);
    assert_eq!(app.patient_count().await, 1);
}
both_backends!(concurrent_puts_of_one_patient_register_it_once);

async fn an_idempotency_key_makes_a_post_register_once(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let first = app
        .send(Method::POST, "/patients", Some(&maria()), Some("reg-1"))
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let retry = app
        .send(
            Method::POST,
            "/patients",
            Some(&maria_stored()),
            Some("reg-1"),
        )
        .await;
    assert_eq!(retry.status, StatusCode::CREATED);
    assert!(retry.replayed);
    assert_eq!(retry.body, first.body, "the first answer, the same patient");

    let mut other = maria();
    other["fullName"] = json!("Someone Else");
    let reused = app
        .send(Method::POST, "/patients", Some(&other), Some("reg-1"))
        .await;
    assert_problem(
        &reused,
        StatusCode::UNPROCESSABLE_ENTITY,
        &["Idempotency-Key"],
    );
    assert_eq!(app.events().await.len(), 1);
    assert_eq!(app.patient_count().await, 1);

    // Without a key, a POST is a new registration each time.
    app.register(&maria()).await;
    assert_eq!(app.patient_count().await, 2);
}
both_backends!(an_idempotency_key_makes_a_post_register_once);

async fn bad_fields_are_all_named_and_never_repeated(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let bad = json!({
        "fullName": "Maria\u{7}Secret",
        "dateOfBirth": "2999-01-01",
        "email": "maria.secret.example.com",
        "phone": "+55 (11) 5550-SECRET",
    });
    let refused = app.post("/patients", &bad).await;
    assert_problem(
        &refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        &["fullName", "dateOfBirth", "email", "phone"],
    );
    assert_eq!(refused.body["type"], "/problems/validation");
    for value in ["Secret", "secret", "2999", "5550", "SECRET"] {
        assert!(
            !refused.raw.contains(value),
            "repeats a value: {}",
            refused.raw
        );
    }

    let cases = [
        (json!({"dateOfBirth": "1984-02-29"}), "fullName"),
        (
            json!({"fullName": "   ", "dateOfBirth": "1984-02-29"}),
            "fullName",
        ),
        (
            json!({"fullName": "x".repeat(201), "dateOfBirth": "1984-02-29"}),
            "fullName",
        ),
        (json!({"fullName": "Ana"}), "dateOfBirth"),
        (
            json!({"fullName": "Ana", "dateOfBirth": "1899-12-31"}),
            "dateOfBirth",
        ),
        (
            json!({"fullName": "Ana", "dateOfBirth": "29/02/1984"}),
            "dateOfBirth",
        ),
        (
            json!({"fullName": "Ana", "dateOfBirth": "1984-02-29", "email": ""}),
            "email",
        ),
        (
            json!({"fullName": "Ana", "dateOfBirth": "1984-02-29", "phone": "11987654321"}),
            "phone",
        ),
        (
            json!({"fullName": "Ana", "dateOfBirth": "1984-02-29", "phone": "+1234567"}),
            "phone",
        ),
        (
            json!({"fullName": "Ana", "dateOfBirth": "1984-02-29", "status": "active"}),
            "status",
        ),
    ];
    for (body, field) in cases {
        let refused = app.post("/patients", &body).await;
        assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY, &[field]);
    }

    // Values of the wrong type, and missing fields: all named, no value repeated.
    let typed = json!({"fullName": null, "dateOfBirth": 19840229, "phone": 5511987654321_i64});
    let refused = app.post("/patients", &typed).await;
    assert_problem(
        &refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        &["fullName", "dateOfBirth", "phone"],
    );
    for value in ["19840229", "5511987654321"] {
        assert!(!refused.raw.contains(value), "{}", refused.raw);
    }
    let refused = app.post("/patients", &json!({})).await;
    assert_problem(
        &refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        &["fullName", "dateOfBirth"],
    );

    let refused = app
        .put("/patients/not-a-uuid", &json!({"fullName": ""}))
        .await;
    assert_problem(
        &refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        &["id", "fullName", "dateOfBirth"],
    );
    assert!(!refused.raw.contains("not-a-uuid"), "{}", refused.raw);

    assert_eq!(app.patient_count().await, 0, "nothing was registered");
    assert!(app.events().await.is_empty(), "nothing was published");
}
both_backends!(bad_fields_are_all_named_and_never_repeated);

async fn unknown_or_malformed_ids_are_404(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let unknown = Uuid::now_v7();
    for reply in [
        app.get(&format!("/patients/{unknown}")).await,
        app.get("/patients/12345").await,
        app.patch(&format!("/patients/{unknown}"), &json!({"fullName": "Ana"}))
            .await,
        app.patch("/patients/nope", &json!({"fullName": "Ana"}))
            .await,
        app.deactivate(&unknown.to_string()).await,
        app.deactivate("nope").await,
    ] {
        assert_problem(&reply, StatusCode::NOT_FOUND, &[]);
    }
    assert!(app.events().await.is_empty());
}
both_backends!(unknown_or_malformed_ids_are_404);
