//! Listing patients: newest first, paged by cursor, filtered by name.

use axum::http::StatusCode;
use serde_json::{json, Value};
use tally_db::both_backends;
use tally_db::testing::TestBackend;

use crate::{app, assert_problem, App};

const NAMES: [&str; 7] = [
    "Maria da Silva",
    "João Silva",
    "Ana Maria Braga",
    "Pedro Álvares Cabral",
    "SILVANA Mar",
    "Jean-Pierre O'Brien",
    "Marta Silveira",
];

/// Registers `NAMES` in order; returns their ids.
async fn register_all(app: &App) -> Vec<String> {
    let mut ids = Vec::new();
    for name in NAMES {
        let reply = app
            .register(&json!({"fullName": name, "dateOfBirth": "1990-01-01"}))
            .await;
        ids.push(reply.id());
    }
    ids
}

fn names(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["fullName"].as_str().unwrap().to_owned())
        .collect()
}

/// Follows `nextCursor` from `uri` to the last page; returns each page's names.
async fn pages(app: &App, uri: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut next = uri.to_owned();
    loop {
        let reply = app.get(&next).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.raw);
        pages.push(names(&reply.body));
        match reply.body["nextCursor"].as_str() {
            Some(cursor) => next = format!("{uri}&before={cursor}"),
            None => return pages,
        }
        assert!(pages.len() <= NAMES.len(), "paging does not end");
    }
}

fn newest_first(names: &[&str]) -> Vec<String> {
    names.iter().rev().map(|n| n.to_string()).collect()
}

async fn the_list_pages_newest_first_through_every_patient(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let ids = register_all(&app).await;

    let all = app.get("/patients").await;
    assert_eq!(
        names(&all.body),
        newest_first(&NAMES),
        "default page holds all 7"
    );
    assert_eq!(all.body["nextCursor"], Value::Null);
    assert_eq!(all.body["items"][0]["id"], ids[6].as_str());
    assert_eq!(all.body["items"][0]["status"], "active");

    let paged = pages(&app, "/patients?limit=3").await;
    assert_eq!(paged.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    assert_eq!(
        paged.concat(),
        newest_first(&NAMES),
        "each patient once, in order"
    );

    // A page that ends exactly at the last patient says so.
    let exact = pages(&app, "/patients?limit=7").await;
    assert_eq!(exact.len(), 1);
}
both_backends!(the_list_pages_newest_first_through_every_patient);

async fn search_finds_names_from_any_word_ignoring_case(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    register_all(&app).await;
    let found = |search: &'static str| {
        let app = &app;
        async move {
            let reply = app.get(&format!("/patients?search={search}")).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.raw);
            names(&reply.body)
        }
    };
    assert_eq!(
        found("silva").await,
        ["SILVANA Mar", "João Silva", "Maria da Silva"],
        "the start of a word, in any case"
    );
    assert_eq!(
        found("SIL").await,
        [
            "Marta Silveira",
            "SILVANA Mar",
            "João Silva",
            "Maria da Silva"
        ]
    );
    assert_eq!(
        found("mar").await,
        [
            "Marta Silveira",
            "SILVANA Mar",
            "Ana Maria Braga",
            "Maria da Silva"
        ]
    );
    assert_eq!(found("da%20sil").await, ["Maria da Silva"]);
    assert_eq!(found("maria%20%20B").await, ["Ana Maria Braga"]);
    assert_eq!(found("%C3%A1lvares").await, ["Pedro Álvares Cabral"]);
    assert_eq!(found("%C3%81LVARES").await, ["Pedro Álvares Cabral"]);
    assert_eq!(found("pierre").await, ["Jean-Pierre O'Brien"]);
    assert_eq!(found("brien").await, ["Jean-Pierre O'Brien"]);
    assert_eq!(found("ilva").await, Vec::<String>::new());
    assert_eq!(found("zzz").await, Vec::<String>::new());
    assert_eq!(found("%25").await, Vec::<String>::new(), "no wildcards");
    assert_eq!(found("%20").await.len(), NAMES.len(), "blank: no filter");
}
both_backends!(search_finds_names_from_any_word_ignoring_case);

async fn search_pages_and_follows_renames(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let ids = register_all(&app).await;

    let paged = pages(&app, "/patients?search=sil&limit=1").await;
    assert_eq!(
        paged.concat(),
        [
            "Marta Silveira",
            "SILVANA Mar",
            "João Silva",
            "Maria da Silva"
        ]
    );
    assert!(paged.iter().all(|p| p.len() == 1));

    // João Silva becomes João Santos: found by the new name only.
    let renamed = app
        .patch(
            &format!("/patients/{}", ids[1]),
            &json!({"fullName": "João Santos"}),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK);
    let silva = app.get("/patients?search=silva").await;
    assert_eq!(names(&silva.body), ["SILVANA Mar", "Maria da Silva"]);
    let santos = app.get("/patients?search=santos").await;
    assert_eq!(names(&santos.body), ["João Santos"]);
}
both_backends!(search_pages_and_follows_renames);

async fn bad_list_parameters_are_named(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    for (uri, field) in [
        ("/patients?limit=0", "limit"),
        ("/patients?limit=101", "limit"),
        ("/patients?limit=ten", "limit"),
        ("/patients?before=abc", "before"),
        ("/patients?before=-1", "before"),
    ] {
        assert_problem(
            &app.get(uri).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            &[field],
        );
    }
    let long = "a".repeat(201);
    let refused = app.get(&format!("/patients?search={long}&limit=0")).await;
    assert_problem(
        &refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        &["search", "limit"],
    );
    assert!(!refused.raw.contains(&long));
    let most = app.get("/patients?limit=100").await;
    assert_eq!(most.status, StatusCode::OK);
}
both_backends!(bad_list_parameters_are_named);
