//! The HTTP API as a client sees it: statuses, problem+json bodies naming rows and fields, exact
//! amounts, uploads, idempotency and the ranking's rate limit.

use axum::body::Body;
use axum::http::{header, Request};
use serde_json::json;
use tally_claims::{ClaimsApi, TopProvidersRate};
use tally_db::both_backends;
use tally_db::testing::TestBackend;
use tally_http::Caller;
use utoipa::OpenApi as _;

use crate::{
    app, claim_json, count, fixture, get, npi, outbox_events, post, post_json, send, SAMPLE_CSV,
    SAMPLE_NET_FEES,
};

/// The net fees of a 201 answer, as the exact JSON text the client reads.
fn net_fees_text(text: &str) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct View {
        net_fee: Box<serde_json::value::RawValue>,
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        claims: Vec<View>,
    }
    let answer: Answer = serde_json::from_str(text).unwrap();
    answer
        .claims
        .iter()
        .map(|c| c.net_fee.get().to_owned())
        .collect()
}

async fn json_claims_are_stored_with_ids_and_exact_net_fees(backend: TestBackend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let app = app(&f.db, TopProvidersRate::default());
    let rows = json!([
        {
            "service_date": "3/28/18 0:00",
            "submitted_procedure": "D4346",
            "quadrant": null,
            "plan_group_number": "GRP-1000",
            "subscriber_number": 3730189502u64,
            "provider_npi": 1497775530u64,
            "provider_fees": "$130.00 ",
            "allowed_fees": 65,
            "member_coinsurance": 16.25,
            "member_copay": "0.00"
        },
        claim_json(&npi(500_000_001), -1)
    ]);
    let answer = send(&app, post_json(&rows)).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    assert_eq!(net_fees_text(&answer.text), ["81.25", "-0.01"]);
    assert_eq!(answer.body["accepted"], 2);
    let first = &answer.body["claims"][0];
    assert_eq!(first["provider_npi"], "1497775530");
    assert_eq!(first["subscriber_number"], "3730189502");
    assert_eq!(first["service_date"], "2018-03-28T00:00:00Z");
    assert_eq!(first["currency"], "USD");
    let id = uuid::Uuid::parse_str(first["id"].as_str().unwrap()).unwrap();
    assert_eq!(id.get_version_num(), 7);
    assert_eq!(count(&f.db, "claims").await, 2);
}
both_backends!(json_claims_are_stored_with_ids_and_exact_net_fees);

async fn csv_bodies_and_multipart_uploads_are_accepted(backend: TestBackend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let app = app(&f.db, TopProvidersRate::default());
    let sample_fees: Vec<String> = SAMPLE_NET_FEES
        .iter()
        .map(|m| tally_kernel::Money::new(*m, tally_kernel::Currency::USD).to_decimal_string())
        .collect();

    let answer = send(&app, post("text/csv; charset=utf-8", SAMPLE_CSV)).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    assert_eq!(net_fees_text(&answer.text), sample_fees);

    let boundary = "X-TALLY-BOUNDARY";
    let multipart = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nMarch export\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"claims.csv\"\r\n\
         Content-Type: text/csv\r\n\r\n{SAMPLE_CSV}\r\n--{boundary}--\r\n"
    );
    let answer = send(
        &app,
        post(
            &format!("multipart/form-data; boundary={boundary}"),
            multipart,
        ),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    assert_eq!(net_fees_text(&answer.text), sample_fees);

    let json_file = json!([claim_json(&npi(500_000_002), 42)]).to_string();
    let multipart = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"claims.json\"\r\n\
         Content-Type: application/json\r\n\r\n{json_file}\r\n--{boundary}--\r\n"
    );
    let answer = send(
        &app,
        post(
            &format!("multipart/form-data; boundary={boundary}"),
            multipart,
        ),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    assert_eq!(net_fees_text(&answer.text), ["0.42"]);
    assert_eq!(count(&f.db, "claims").await, 9);
}
both_backends!(csv_bodies_and_multipart_uploads_are_accepted);

#[tokio::test]
async fn every_bad_row_is_named_with_its_index_and_field() {
    let f = fixture(TestBackend::Sqlite).await.unwrap();
    let app = app(&f.db, TopProvidersRate::default());
    let good = claim_json(&npi(500_000_003), 100);
    let mut bad_npi = good.clone();
    bad_npi["provider_npi"] = "1234567890".into();
    let mut bad_two = good.clone();
    bad_two["submitted_procedure"] = "X0180".into();
    bad_two["service_date"] = "2/30/18 0:00".into();
    bad_two["net_fee"] = 5.into();
    let answer = send(
        &app,
        post_json(&json!([good, bad_npi, good, bad_two, "not a row", {"quadrant": {}}])),
    )
    .await;
    assert_eq!(answer.status, 422);
    assert_eq!(
        answer.headers[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let fields: Vec<&str> = answer.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields[..6],
        [
            "rows[1].provider_npi",
            "rows[3].service_date",
            "rows[3].submitted_procedure",
            "rows[3].net_fee",
            "rows[4]",
            "rows[5].service_date",
        ]
    );
    assert!(fields.contains(&"rows[5].quadrant"));
    assert_eq!(
        answer.body["errors"][0]["detail"],
        "is not a valid NPI: its check digit is wrong (Luhn check with prefix 80840)"
    );
    assert_eq!(
        answer.body["detail"],
        "4 of 6 rows are invalid; nothing was stored"
    );
    assert_eq!(count(&f.db, "claims").await, 0);

    let csv = SAMPLE_CSV.replacen("$108.00 ,", "$108.001,", 1);
    let answer = send(&app, post("text/csv", csv)).await;
    assert_eq!(answer.status, 422);
    assert_eq!(answer.body["errors"][0]["field"], "rows[1].provider_fees");
    assert_eq!(
        answer.body["errors"][0]["detail"],
        "has more than two decimals: amounts are in dollars and cents (line 3)"
    );
}

#[tokio::test]
async fn bodies_that_hold_no_claims_are_refused_without_a_5xx() {
    let f = fixture(TestBackend::Sqlite).await.unwrap();
    let app = app(&f.db, TopProvidersRate::default());
    let cases: [(&str, Vec<u8>, u16, &str); 8] = [
        ("application/json", b"[]".to_vec(), 422, "rows"),
        ("application/json", b"{\"rows\": []}".to_vec(), 422, "body"),
        ("application/json", b"[{".to_vec(), 400, ""),
        ("text/plain", b"hello".to_vec(), 415, ""),
        ("text/csv", b"".to_vec(), 422, "header"),
        (
            "text/csv",
            b"service date,Provider NPI\n3/28/18,1497775530\n".to_vec(),
            422,
            "header.submitted_procedure",
        ),
        (
            "text/csv",
            SAMPLE_CSV.lines().next().unwrap().into(),
            422,
            "rows",
        ),
        (
            "multipart/form-data; boundary=B",
            b"--B\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--B--\r\n".to_vec(),
            422,
            "file",
        ),
    ];
    for (content_type, body, status, field) in cases {
        let answer = send(&app, post(content_type, body)).await;
        assert_eq!(answer.status, status, "{content_type}: {}", answer.text);
        assert_eq!(
            answer.headers[header::CONTENT_TYPE],
            "application/problem+json"
        );
        if !field.is_empty() {
            assert_eq!(answer.body["errors"][0]["field"], field, "{}", answer.text);
        }
    }
    let too_many: Vec<_> = (0..=tally_claims::adapters::routes::MAX_CLAIMS_PER_REQUEST)
        .map(|_| json!({}))
        .collect();
    let answer = send(&app, post_json(&json!(too_many))).await;
    assert_eq!(answer.status, 422);
    assert_eq!(answer.body["errors"][0]["field"], "rows");
    assert_eq!(count(&f.db, "claims").await, 0);
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_stores_nothing_twice() {
    let f = fixture(TestBackend::Sqlite).await.unwrap();
    let app = app(&f.db, TopProvidersRate::default());
    let keyed = |body: &str| {
        Request::post("/claims")
            .header(header::CONTENT_TYPE, "text/csv")
            .header("Idempotency-Key", "import-2018-03")
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    let first = send(&app, keyed(SAMPLE_CSV)).await;
    assert_eq!(first.status, 201);
    let again = send(&app, keyed(SAMPLE_CSV)).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.text, first.text);
    assert_eq!(count(&f.db, "claims").await, 4);
    assert_eq!(outbox_events(&f.db).await, 4);
    let other = send(&app, keyed(&SAMPLE_CSV.replace("D0180", "D0120"))).await;
    assert_eq!(other.status, 422, "the same key with another file");
    assert_eq!(count(&f.db, "claims").await, 4);
}

#[tokio::test]
async fn the_ranking_takes_a_limit_from_1_to_100() {
    let f = fixture(TestBackend::Sqlite).await.unwrap();
    let app = app(
        &f.db,
        TopProvidersRate {
            per_minute: 0,
            burst: 0,
        },
    );
    let rows: Vec<_> = (0..12)
        .map(|i| claim_json(&npi(600_000_000 + i), i64::from(i)))
        .collect();
    assert_eq!(send(&app, post_json(&json!(rows))).await.status, 201);
    let listed = |answer: &crate::Answer| answer.body["providers"].as_array().unwrap().len();
    let answer = send(&app, get("/providers/top")).await;
    assert_eq!((answer.status.as_u16(), listed(&answer)), (200, 10));
    assert_eq!(
        answer.body["providers"][0]["provider_npi"],
        npi(600_000_011)
    );
    let answer = send(&app, get("/providers/top?limit=100")).await;
    assert_eq!((answer.status.as_u16(), listed(&answer)), (200, 12));
    for bad in ["0", "101", "-1", "ten", "1.5"] {
        let answer = send(&app, get(&format!("/providers/top?limit={bad}"))).await;
        assert_eq!(answer.status, 422, "limit={bad}");
        assert_eq!(answer.body["errors"][0]["field"], "limit");
    }
    let answer = send(&app, get("/providers/top?top=3")).await;
    assert_eq!(answer.status, 422, "unknown parameters are refused");
}

fn as_caller(uri: &str, token_id: &str) -> Request<Body> {
    let mut request = get(uri);
    request.extensions_mut().insert(Caller {
        token_id: token_id.to_owned(),
    });
    request
}

#[tokio::test]
async fn the_ranking_allows_10_requests_a_minute_per_client_then_429() {
    let f = fixture(TestBackend::Sqlite).await.unwrap();
    let app = app(&f.db, TopProvidersRate::default());
    for i in 0..10 {
        let answer = send(&app, as_caller("/providers/top", "token-a")).await;
        assert_eq!(answer.status, 200, "request {i}");
    }
    let refused = send(&app, as_caller("/providers/top?limit=1", "token-a")).await;
    assert_eq!(refused.status, 429);
    assert_eq!(
        refused.headers[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_eq!(refused.body["type"], "/problems/too-many-requests");
    let retry_after: u64 = refused.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=7).contains(&retry_after), "{retry_after}");

    let other = send(&app, as_caller("/providers/top", "token-b")).await;
    assert_eq!(other.status, 200, "another client has its own bucket");
    let posted = send(&app, post_json(&json!([claim_json(&npi(1), 1)]))).await;
    assert_eq!(posted.status, 201, "ingestion is not limited here");

    // Without a caller (no authentication layer) every request shares one bucket.
    for _ in 0..10 {
        assert_eq!(send(&app, get("/providers/top")).await.status, 200);
    }
    assert_eq!(send(&app, get("/providers/top")).await.status, 429);
}

#[tokio::test]
async fn the_rate_is_configurable() {
    let f = fixture(TestBackend::Sqlite).await.unwrap();
    let app = app(
        &f.db,
        TopProvidersRate {
            per_minute: 1,
            burst: 2,
        },
    );
    for _ in 0..2 {
        assert_eq!(send(&app, get("/providers/top")).await.status, 200);
    }
    let refused = send(&app, get("/providers/top")).await;
    assert_eq!(refused.status, 429);
    let retry_after: u64 = refused.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((50..=61).contains(&retry_after), "{retry_after}");
}

#[test]
fn the_openapi_document_declares_both_routes_and_the_429() {
    let doc = serde_json::to_value(ClaimsApi::openapi()).unwrap();
    let post = &doc["paths"]["/claims"]["post"];
    for content_type in ["application/json", "text/csv", "multipart/form-data"] {
        assert!(
            post["requestBody"]["content"][content_type].is_object(),
            "{content_type}"
        );
    }
    assert!(post["responses"]["422"].is_object());
    let top = &doc["paths"]["/providers/top"]["get"];
    assert!(top["responses"]["429"]["headers"]["Retry-After"].is_object());
    assert_eq!(top["parameters"][0]["name"], "limit");
}
