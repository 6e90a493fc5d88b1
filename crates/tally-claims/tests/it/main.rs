//! The claims service against real SQLite and PostgreSQL: CSV as payers export it, all-or-nothing
//! ingestion, the providers' aggregate and ranking, the outbox, and the HTTP API (422 per row,
//! CSV and multipart uploads, idempotency, the rate limit of the ranking).

mod csv_import;
mod http_api;
mod store_ingest;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use sqlx::Row as _;
use tally_claims::{Claim, Claims, TopProvidersRate};
use tally_db::testing::{TestBackend, TestLocation};
use tally_db::Db;
use tower::ServiceExt as _;

/// Document 002's sample file as payers export it: headers with spaces, `#` and `/`, amounts with
/// a trailing space, dates as `M/D/YY H:MM`.
pub const SAMPLE_CSV: &str = "\
service date,submitted procedure,quadrant,Plan/Group #,Subscriber#,Provider NPI,provider fees,Allowed fees,member coinsurance,member copay
3/28/18 0:00,D0180,,GRP-1000,3730189502,1497775530,$100.00 ,$100.00 ,$0.00 ,$0.00 
3/28/18 0:00,D0210,,GRP-1000,3730189502,1497775530,$108.00 ,$108.00 ,$0.00 ,$0.00 
3/28/18 0:00,D4346,,GRP-1000,3730189502,1497775530,$130.00 ,$65.00 ,$16.25 ,$0.00 
3/28/18 0:00,D4211,UR,GRP-1000,3730189502,1497775530,$178.00 ,$178.00 ,$35.60 ,$0.00 
";

/// The net fees of [`SAMPLE_CSV`]'s rows, in cents.
pub const SAMPLE_NET_FEES: [i64; 4] = [0, 0, 8125, 3560];

pub struct Fixture {
    _loc: TestLocation,
    pub db: Db,
}

pub async fn fixture(backend: TestBackend) -> Option<Fixture> {
    let loc = TestLocation::new(backend).await?;
    let db = Db::open_and_migrate(&loc.settings(), &tally_claims::SCHEMA)
        .await
        .expect("the claims database opens and migrates");
    Some(Fixture { _loc: loc, db })
}

/// A valid NPI starting with the nine digits of `base` (the check digit computed).
pub fn npi(base: u32) -> String {
    let nine = format!("{base:09}");
    let check = tally_kernel::luhn::check_digit(&format!("80840{nine}"));
    format!("{nine}{check}")
}

/// A claim row of `npi` whose net fee is `net_minor` cents (positive or negative).
pub fn claim_json(npi: &str, net_minor: i64) -> serde_json::Value {
    let (provider, allowed) = if net_minor >= 0 {
        (net_minor + 5000, 5000)
    } else {
        (1000, 1000 - net_minor)
    };
    let dollars = |minor: i64| format!("${}.{:02}", minor / 100, minor % 100);
    serde_json::json!({
        "service_date": "3/28/18 0:00",
        "submitted_procedure": "D0180",
        "plan_group_number": "GRP-1000",
        "subscriber_number": 3730189502u64,
        "provider_npi": npi,
        "provider_fees": dollars(provider),
        "allowed_fees": dollars(allowed),
        "member_coinsurance": "$0.00",
        "member_copay": 0,
    })
}

/// Claims parsed from JSON rows, as an importer would have them.
pub fn claims(rows: &[serde_json::Value]) -> Vec<Claim> {
    let raw: Vec<Box<serde_json::value::RawValue>> = rows
        .iter()
        .map(|r| serde_json::value::to_raw_value(r).unwrap())
        .collect();
    tally_claims::json_rows(&raw)
        .collect::<Result<_, _>>()
        .expect("the rows are valid")
}

pub async fn count(db: &Db, table: &str) -> i64 {
    sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(db.reader())
        .await
        .unwrap()
        .try_get(0)
        .unwrap()
}

/// How many events the outbox holds, committed, sequenced or not (a packed row holds several).
pub async fn outbox_events(db: &Db) -> i64 {
    sqlx::query("SELECT CAST(COALESCE(SUM(entries), 0) AS BIGINT) FROM outbox")
        .fetch_one(db.reader())
        .await
        .unwrap()
        .try_get(0)
        .unwrap()
}

/// The service's routes on `db`.
pub fn app(db: &Db, rate: TopProvidersRate) -> axum::Router {
    tally_claims::router(Claims::new(db.clone(), rate))
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: serde_json::Value,
    pub text: String,
}

pub async fn send(app: &axum::Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    Answer {
        status,
        headers,
        body,
        text,
    }
}

pub fn post(content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post("/claims")
        .header(header::CONTENT_TYPE, content_type)
        .body(body.into())
        .unwrap()
}

pub fn post_json(rows: &serde_json::Value) -> Request<Body> {
    post("application/json", rows.to_string())
}

pub fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}
