//! Changing a patient's details, and deactivating a patient.

use axum::http::{Method, StatusCode};
use serde_json::json;
use tally_db::both_backends;
use tally_db::testing::TestBackend;
use tally_patients::PatientStatus;
use uuid::Uuid;

use crate::{app, assert_fields, assert_problem, maria, maria_stored};

async fn an_update_changes_the_given_fields_and_announces_which(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let created = app.register(&maria()).await;
    let uri = format!("/patients/{}", created.id());

    let updated = app
        .patch(
            &uri,
            &json!({"fullName": "Maria Souza", "email": null, "phone": "+1 202-555-0143"}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.raw);
    assert_fields(
        &updated.body,
        &json!({
            "id": created.id(),
            "fullName": "Maria Souza",
            "dateOfBirth": "1984-02-29",
            "email": null,
            "phone": "+12025550143",
            "status": "active",
            "createdAt": created.body["createdAt"],
        }),
    );
    assert_ne!(updated.body["updatedAt"], created.body["updatedAt"]);
    assert_eq!(app.get(&uri).await.body, updated.body, "stored as answered");

    let events = app.events().await;
    assert_eq!(events.len(), 2);
    let e = &events[1];
    assert_eq!(e.event_type, "patient.updated");
    assert_eq!(e.aggregate_id, created.id());
    assert_eq!(
        e.data,
        json!({
            "patient_id": created.id(),
            "changed": ["full_name", "email", "phone"],
            "full_name": "Maria Souza",
            "email": null,
            "phone": "+12025550143",
        })
    );

    // Only the date of birth: the event names it alone.
    let dob = app.patch(&uri, &json!({"dateOfBirth": "1985-01-31"})).await;
    assert_eq!(dob.body["dateOfBirth"], "1985-01-31");
    assert_eq!(dob.body["fullName"], "Maria Souza", "other fields kept");
    assert_eq!(
        app.events().await[2].data["changed"],
        json!(["date_of_birth"])
    );
}
both_backends!(an_update_changes_the_given_fields_and_announces_which);

async fn an_update_to_the_current_values_writes_and_publishes_nothing(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let created = app.register(&maria()).await;
    let uri = format!("/patients/{}", created.id());
    for same in [
        json!({}),
        maria_stored(),
        json!({"email": "Maria.Silva@EXAMPLE.com"}),
    ] {
        let reply = app.patch(&uri, &same).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.raw);
        assert_eq!(reply.body, created.body, "not even updatedAt moved");
    }
    assert_eq!(app.events().await.len(), 1, "only patient.registered");
}
both_backends!(an_update_to_the_current_values_writes_and_publishes_nothing);

async fn a_bad_update_names_its_fields_and_changes_nothing(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let created = app.register(&maria()).await;
    let uri = format!("/patients/{}", created.id());
    let refused = app
        .patch(
            &uri,
            &json!({"fullName": null, "dateOfBirth": "2999-12-31", "email": "nobody", "phone": 5511}),
        )
        .await;
    assert_problem(
        &refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        &["fullName", "dateOfBirth", "email", "phone"],
    );
    for value in ["2999", "nobody", "5511"] {
        assert!(!refused.raw.contains(value), "{}", refused.raw);
    }
    let refused = app.patch(&uri, &json!({"status": "deactivated"})).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.get(&uri).await.body, created.body);
    assert_eq!(app.events().await.len(), 1);
}
both_backends!(a_bad_update_names_its_fields_and_changes_nothing);

async fn deactivating_announces_once_and_closes_the_record(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let created = app.register(&maria()).await;
    let id = created.id();
    let uuid = Uuid::parse_str(&id).unwrap();

    let first = app.deactivate(&id).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.raw);
    assert_eq!(first.body["status"], "deactivated");
    assert_fields(&first.body, &maria_stored());
    let second = app.deactivate(&id).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(
        second.body, first.body,
        "the second deactivation changed nothing"
    );
    assert_eq!(app.get(&format!("/patients/{id}")).await.body, first.body);

    let events = app.events().await;
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["patient.registered", "patient.deactivated"]);
    assert_eq!(events[1].data, json!({"patient_id": id}));
    assert_eq!(events[1].aggregate_type, "patient");

    assert_eq!(
        app.patients.lookup(uuid).await.unwrap(),
        Some(PatientStatus::Deactivated)
    );

    let refused = app
        .patch(&format!("/patients/{id}"), &json!({"fullName": "Someone"}))
        .await;
    assert_problem(&refused, StatusCode::CONFLICT, &[]);
    assert_eq!(refused.body["type"], "/problems/patient-deactivated");

    // A PUT of the registered details still answers the (deactivated) patient.
    let put = app.put(&format!("/patients/{id}"), &maria()).await;
    assert_eq!((put.status, &put.body), (StatusCode::OK, &first.body));
    assert_eq!(app.events().await.len(), 2);
}
both_backends!(deactivating_announces_once_and_closes_the_record);

async fn keyed_updates_and_deactivations_replay_their_first_answer(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let created = app.register(&maria()).await;
    let uri = format!("/patients/{}", created.id());
    let body = json!({"fullName": "Maria Souza"});

    let first = app
        .send(Method::PATCH, &uri, Some(&body), Some("k-1"))
        .await;
    assert_eq!(first.status, StatusCode::OK);
    // Someone else changes the name back; the retry still gets the first answer.
    app.patch(&uri, &json!({"fullName": "Maria da Silva"}))
        .await;
    let retry = app
        .send(Method::PATCH, &uri, Some(&body), Some("k-1"))
        .await;
    assert!(retry.replayed);
    assert_eq!(retry.body, first.body);
    let other = app
        .send(
            Method::PATCH,
            &uri,
            Some(&json!({"email": null})),
            Some("k-1"),
        )
        .await;
    assert_problem(
        &other,
        StatusCode::UNPROCESSABLE_ENTITY,
        &["Idempotency-Key"],
    );

    let deactivate = format!("{uri}/deactivate");
    let first = app.send(Method::POST, &deactivate, None, Some("k-2")).await;
    let retry = app.send(Method::POST, &deactivate, None, Some("k-2")).await;
    assert!(retry.replayed);
    assert_eq!((first.status, &first.body), (retry.status, &retry.body));

    let types: Vec<String> = app
        .events()
        .await
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        types,
        [
            "patient.registered",
            "patient.updated",
            "patient.updated",
            "patient.deactivated"
        ]
    );
}
both_backends!(keyed_updates_and_deactivations_replay_their_first_answer);
