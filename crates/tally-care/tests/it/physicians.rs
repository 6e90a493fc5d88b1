//! Physicians: registering (also under a chosen id), tariffs, reading, paging and refusals.

use axum::http::{Method, StatusCode};
use serde_json::json;
use tally_db::both_backends;
use tally_db::testing::TestBackend;
use uuid::Uuid;

use crate::{app, assert_problem, tariff, without};

async fn a_registered_physician_is_stored_and_found(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let created = app
        .post(
            "/physicians",
            &json!({"name": " Dr. Ana Souza ", "tariff": tariff()}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    assert_eq!(created.content_type, "application/json");
    let id = Uuid::parse_str(&created.id()).unwrap();
    assert_eq!(id.get_version_num(), 7, "the server makes UUID v7 ids");
    assert_eq!(created.body["name"], "Dr. Ana Souza");
    assert_eq!(created.body["defaultMinutes"], 30, "the default length");
    assert!(
        created.raw.contains(r#""feePerBlock":50.00"#),
        "an exact amount: {}",
        created.raw
    );
    assert_eq!(
        without(&created.body["tariff"], "feePerBlock"),
        json!({"kind": "per_block", "blockMinutes": 15, "currency": "USD"})
    );

    let read = app.get(&format!("/physicians/{id}")).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body, created.body, "read back exactly as answered");
    assert!(app.events().await.is_empty(), "physicians publish nothing");
}
both_backends!(a_registered_physician_is_stored_and_found);

async fn per_block_is_the_default_kind_and_per_minute_is_supported(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let defaulted = app
        .post(
            "/physicians",
            &json!({"name": "Dr. Block", "tariff": {"blockMinutes": 20, "feePerBlock": 80, "currency": "EUR"}}),
        )
        .await;
    assert_eq!(defaulted.status, StatusCode::CREATED, "{}", defaulted.raw);
    assert_eq!(defaulted.body["tariff"]["kind"], "per_block");
    assert!(
        defaulted.raw.contains(r#""feePerBlock":80.00"#),
        "{}",
        defaulted.raw
    );

    let per_minute = app
        .post(
            "/physicians",
            &json!({
                "name": "Dr. Minute",
                "tariff": {"kind": "per_minute", "feePerMinute": "2.00", "minimumMinutes": 10, "currency": "USD"},
                "defaultMinutes": 45,
            }),
        )
        .await;
    assert_eq!(per_minute.status, StatusCode::CREATED, "{}", per_minute.raw);
    assert_eq!(
        without(&per_minute.body["tariff"], "feePerMinute"),
        json!({"kind": "per_minute", "minimumMinutes": 10, "currency": "USD"})
    );
    assert!(
        per_minute.raw.contains(r#""feePerMinute":2.00"#),
        "{}",
        per_minute.raw
    );
    assert_eq!(per_minute.body["defaultMinutes"], 45);
    let yen = app
        .post(
            "/physicians",
            &json!({"name": "Dr. Yen", "tariff": {"kind": "per_minute", "feePerMinute": 300, "currency": "JPY"}}),
        )
        .await;
    assert_eq!(yen.status, StatusCode::CREATED, "{}", yen.raw);
    assert_eq!(yen.body["tariff"]["minimumMinutes"], 0);
    assert!(yen.raw.contains(r#""feePerMinute":300,"#), "{}", yen.raw);
}
both_backends!(per_block_is_the_default_kind_and_per_minute_is_supported);

async fn put_registers_once_and_refuses_other_details(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let id = Uuid::new_v4();
    let uri = format!("/physicians/{id}");
    let body = json!({"name": "Dr. Ana Souza", "tariff": tariff()});

    let first = app.put(&uri, &body).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.raw);
    assert_eq!(first.id(), id.to_string(), "the caller's id is kept");

    // The same body, spelled differently, is the same registration.
    let same = json!({
        "name": " Dr. Ana Souza",
        "tariff": {"blockMinutes": 15, "feePerBlock": 50, "currency": "USD"},
        "defaultMinutes": 30,
    });
    let again = app.put(&uri, &same).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.raw);
    assert_eq!(again.body, first.body, "the same physician, untouched");

    let other = json!({
        "name": "Dr. Ana Souza",
        "tariff": {"blockMinutes": 15, "feePerBlock": "55.00", "currency": "USD"},
        "defaultMinutes": 20,
    });
    let refused = app.put(&uri, &other).await;
    assert_problem(
        &refused,
        StatusCode::CONFLICT,
        &["tariff", "defaultMinutes"],
    );
    assert_eq!(
        refused.body["type"],
        "/problems/physician-registered-differently"
    );
    assert_eq!(app.get(&uri).await.body, first.body, "nothing changed");
    assert_eq!(app.physician_count().await, 1);
}
both_backends!(put_registers_once_and_refuses_other_details);

async fn concurrent_puts_of_one_physician_register_it_once(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let app = std::sync::Arc::new(app);
    let uri = format!("/physicians/{}", Uuid::new_v4());
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (app, uri) = (app.clone(), uri.clone());
        tasks.push(tokio::spawn(async move {
            app.put(&uri, &json!({"name": "Dr. Ana", "tariff": tariff()}))
                .await
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap().status);
    }
    statuses.sort();
    let mut expected = vec![StatusCode::OK; 5];
    expected.push(StatusCode::CREATED);
    assert_eq!(statuses, expected, "exactly one PUT registered");
    assert_eq!(app.physician_count().await, 1);
}
both_backends!(concurrent_puts_of_one_physician_register_it_once);

async fn an_idempotency_key_makes_a_post_register_once(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let body = json!({"name": "Dr. Ana", "tariff": tariff()});
    let first = app
        .send(Method::POST, "/physicians", Some(&body), Some("phys-1"))
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let retry = app
        .send(Method::POST, "/physicians", Some(&body), Some("phys-1"))
        .await;
    assert!(retry.replayed);
    assert_eq!(
        (retry.status, &retry.body),
        (StatusCode::CREATED, &first.body)
    );
    let other = json!({"name": "Dr. Bia", "tariff": tariff()});
    let reused = app
        .send(Method::POST, "/physicians", Some(&other), Some("phys-1"))
        .await;
    assert_problem(
        &reused,
        StatusCode::UNPROCESSABLE_ENTITY,
        &["Idempotency-Key"],
    );
    assert_eq!(app.physician_count().await, 1);
}
both_backends!(an_idempotency_key_makes_a_post_register_once);

async fn bad_physicians_are_refused_naming_every_field(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let all_bad = json!({
        "name": "  ",
        "tariff": {"kind": "per_block", "blockMinutes": 0, "feePerBlock": "50.001", "currency": "usd"},
        "defaultMinutes": 0,
    });
    let refused = app.post("/physicians", &all_bad).await;
    assert_problem(
        &refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        &[
            "name",
            "tariff.currency",
            "defaultMinutes",
            "tariff.blockMinutes",
        ],
    );

    let cases = [
        (
            json!({"kind": "hourly", "currency": "USD"}),
            vec!["tariff.kind"],
        ),
        (
            json!({"feePerBlock": "50.00", "currency": "USD"}),
            vec!["tariff.blockMinutes"],
        ),
        (
            json!({"blockMinutes": 15, "currency": "USD"}),
            vec!["tariff.feePerBlock"],
        ),
        (
            json!({"blockMinutes": 15, "feePerBlock": "50.001", "currency": "USD"}),
            vec!["tariff.feePerBlock"],
        ),
        (
            json!({"blockMinutes": 15, "feePerBlock": 0, "currency": "USD"}),
            vec!["tariff.feePerBlock"],
        ),
        (
            json!({"blockMinutes": 15, "feePerBlock": "-5", "currency": "USD"}),
            vec!["tariff.feePerBlock"],
        ),
        (
            json!({"blockMinutes": 15, "feePerBlock": "1e30", "currency": "USD"}),
            vec!["tariff.feePerBlock"],
        ),
        (
            json!({"blockMinutes": 1441, "feePerBlock": 1, "currency": "USD"}),
            vec!["tariff.blockMinutes"],
        ),
        (
            json!({"blockMinutes": 15, "feePerBlock": 1, "feePerMinute": 1, "currency": "USD"}),
            vec!["tariff.feePerMinute"],
        ),
        (
            json!({"kind": "per_minute", "feePerMinute": 2, "blockMinutes": 15, "minimumMinutes": -1, "currency": "USD"}),
            vec!["tariff.blockMinutes", "tariff.minimumMinutes"],
        ),
        (
            json!({"kind": "per_minute", "feePerMinute": "2.5", "currency": "JPY"}),
            vec!["tariff.feePerMinute"],
        ),
        (
            json!({"blockMinutes": 15, "feePerBlock": 1, "currency": "XAU"}),
            vec!["tariff.currency"],
        ),
    ];
    for (tariff, fields) in cases {
        let refused = app
            .post("/physicians", &json!({"name": "Dr. Ana", "tariff": tariff}))
            .await;
        assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY, &fields);
    }

    // Missing and unknown fields, and an id that is not a UUID.
    let refused = app.post("/physicians", &json!({"name": "Dr. Ana"})).await;
    assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY, &["tariff"]);
    let refused = app
        .post(
            "/physicians",
            &json!({"name": "Dr. Ana", "tariff": tariff(), "specialty": "x"}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let refused = app
        .put(
            "/physicians/not-a-uuid",
            &json!({"name": "", "tariff": tariff()}),
        )
        .await;
    assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY, &["id", "name"]);

    assert_eq!(app.physician_count().await, 0, "nothing was registered");
}
both_backends!(bad_physicians_are_refused_naming_every_field);

async fn physicians_are_listed_newest_first_in_pages(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(app.physician().await);
    }
    let first = app.get("/physicians?limit=2").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.raw);
    let listed: Vec<&str> = first.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[2].as_str(), ids[1].as_str()]);
    let cursor = first.body["nextCursor"].as_str().unwrap();
    let second = app
        .get(&format!("/physicians?limit=2&before={cursor}"))
        .await;
    assert_eq!(second.body["items"][0]["id"], ids[0].as_str());
    assert_eq!(second.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(second.body["nextCursor"], json!(null));

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("before=abc", "before"),
        ("limit=x", "limit"),
    ] {
        let refused = app.get(&format!("/physicians?{query}")).await;
        assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY, &[field]);
    }
}
both_backends!(physicians_are_listed_newest_first_in_pages);

async fn unknown_or_malformed_physician_ids_are_404(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    for uri in [
        format!("/physicians/{}", Uuid::now_v7()),
        "/physicians/12345".to_owned(),
    ] {
        assert_problem(&app.get(&uri).await, StatusCode::NOT_FOUND, &[]);
    }
}
both_backends!(unknown_or_malformed_physician_ids_are_404);
