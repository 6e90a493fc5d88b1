//! The routes: messages newest first, paged and by patient; one message with its deliveries;
//! bad parameters named in a 422, unknown ids a 404.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::Value;
use tally_db::both_backends;
use tally_db::testing::TestBackend;
use tally_notifications::Notifications;
use tower::ServiceExt as _;
use uuid::Uuid;

use crate::{app, bill, booked, eventually, fast, Worker};

struct Reply {
    status: StatusCode,
    content_type: String,
    body: Value,
}

async fn get(router: &axum::Router, uri: &str) -> Reply {
    let request = Request::get(uri).body(Body::empty()).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    Reply {
        status,
        content_type,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["eventId"].as_str().unwrap().to_owned())
        .collect()
}

async fn lists_page_newest_first_and_get_shows_deliveries(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (ana, bia) = (Uuid::now_v7(), Uuid::now_v7());
    let mut events = Vec::new();
    for n in 0..5 {
        events.push(booked(ana, 1_000 + n));
    }
    events.push(bill("bill.generated", bia, 2_500, "USD"));
    events.push(bill("bill.paid", bia, 2_500, "USD"));
    for event in &events {
        app.apply(event).await;
    }
    let newest_first: Vec<String> = events.iter().rev().map(|e| e.id.to_string()).collect();
    let router =
        tally_notifications::router(Notifications::new(app.db.clone(), fast(vec![], None)));

    let all = get(&router, "/notifications").await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(ids(&all.body), newest_first);
    assert_eq!(all.body["nextCursor"], Value::Null);
    let first = &all.body["items"][0];
    assert_eq!(first["eventType"], "bill.paid");
    assert_eq!(first["patientId"], bia.to_string());
    assert_eq!(first["subject"], "Bill paid");
    assert!(first["body"]
        .as_str()
        .unwrap()
        .contains("Amount paid: 25.00 USD"));
    assert_eq!(first["status"], "pending");

    let mut pages = Vec::new();
    let mut uri = String::from("/notifications?limit=3");
    loop {
        let page = get(&router, &uri).await;
        assert_eq!(page.status, StatusCode::OK);
        pages.push(ids(&page.body));
        match page.body["nextCursor"].as_str() {
            Some(cursor) => uri = format!("/notifications?limit=3&before={cursor}"),
            None => break,
        }
        assert!(pages.len() < 5, "paging ends");
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    assert_eq!(pages.concat(), newest_first);

    let bias = get(&router, &format!("/notifications?patientId={bia}")).await;
    assert_eq!(ids(&bias.body), newest_first[..2]);
    let anas = get(&router, &format!("/notifications?patientId={ana}&limit=2")).await;
    assert_eq!(ids(&anas.body), newest_first[2..4]);
    assert!(anas.body["nextCursor"].is_string());

    // Routed and sent (stored: no channel configured), it shows its delivery.
    let worker = Worker::start(&app.db, fast(vec![], None));
    eventually("every message to be stored", || async {
        app.messages().await.iter().all(|m| m.2 == "sent")
    })
    .await;
    worker.stop().await;
    let id = first["id"].as_str().unwrap();
    let one = get(&router, &format!("/notifications/{id}")).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.body["id"], id);
    assert_eq!(one.body["status"], "sent");
    assert_eq!(one.body["subject"], "Bill paid");
    let deliveries = one.body["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0]["channel"], "stored");
    assert_eq!(deliveries[0]["status"], "sent");
    assert_eq!(deliveries[0]["attempts"], 0);
    assert_eq!(deliveries[0]["lastError"], Value::Null);
    assert_eq!(deliveries[0]["nextAttemptAt"], Value::Null);
    assert!(deliveries[0].get("target").is_none());
}
both_backends!(lists_page_newest_first_and_get_shows_deliveries);

async fn bad_parameters_are_named_and_unknown_ids_not_found(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let router =
        tally_notifications::router(Notifications::new(app.db.clone(), fast(vec![], None)));
    for (uri, field) in [
        ("/notifications?patientId=maria", Some("patientId")),
        ("/notifications?limit=0", Some("limit")),
        ("/notifications?limit=101", Some("limit")),
        ("/notifications?limit=ten", Some("limit")),
        ("/notifications?before=-3", Some("before")),
        ("/notifications?before=abc", Some("before")),
        ("/notifications?sort=asc", None),
    ] {
        let reply = get(&router, uri).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}");
        assert_eq!(reply.content_type, "application/problem+json");
        let named: Vec<&str> = reply.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        if let Some(field) = field {
            assert_eq!(named, [field], "{uri}: {}", reply.body);
        }
    }
    let both = get(&router, "/notifications?patientId=x&limit=0").await;
    assert_eq!(both.body["errors"].as_array().unwrap().len(), 2);

    for uri in [
        format!("/notifications/{}", Uuid::now_v7()),
        String::from("/notifications/not-an-id"),
    ] {
        let reply = get(&router, &uri).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(reply.content_type, "application/problem+json");
    }
}
both_backends!(bad_parameters_are_named_and_unknown_ids_not_found);
