//! The claims HTTP API: document 002's claim ingestion (JSON, CSV or a multipart upload) and the
//! ranking of providers by total net fee.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tally_db::Db;
use tally_http::extract::parse_json;
use tally_http::{
    execute, AmountOutput, ApiQuery, FieldError, IdempotencyHeader, IdempotentRequest, Problem,
    RequestMeta,
};
use tally_kernel::time::Timestamp;
use tally_kernel::Currency;
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use super::limit::Limiter;
pub use super::limit::TopProvidersRate;
use super::store::{self, Store, MAX_BATCH_CLAIMS, MAX_TOP_PROVIDERS};
use crate::domain::{self, AcceptedClaim, Claim, ClaimError, RowRejection};

/// Most claims one request may carry; larger files go through `tally import-claims`.
pub const MAX_CLAIMS_PER_REQUEST: usize = MAX_BATCH_CLAIMS;

/// Most field errors listed in one 422 answer; its detail always gives the number of bad rows.
pub const MAX_LISTED_ERRORS: usize = 1_000;

/// Providers listed when `limit` is not given.
pub const DEFAULT_TOP_PROVIDERS: i64 = 10;

/// The claims service as the HTTP layer sees it.
#[derive(Clone)]
pub struct Claims {
    store: Store,
    limiter: Limiter,
}

impl Claims {
    pub fn new(db: Db, rate: TopProvidersRate) -> Self {
        Self {
            store: Store::new(db),
            limiter: Limiter::new(rate),
        }
    }

    fn db(&self) -> &Db {
        self.store.db()
    }
}

pub fn router(claims: Claims) -> Router {
    let top = Router::new()
        .route("/providers/top", get(top_providers))
        .with_state(claims.clone());
    Router::new()
        .route("/claims", post(ingest))
        .with_state(claims.clone())
        .merge(claims.limiter.apply(top))
}

#[derive(OpenApi)]
#[openapi(
    paths(ingest, top_providers),
    components(schemas(Problem, FieldError, AmountOutput, ClaimInput, ClaimsUpload)),
    tags((name = "claims", description = "Dental claims (document 002): ingestion, net fees, top providers"))
)]
pub struct ClaimsApi;

/// The one place claims errors become HTTP statuses.
pub(crate) fn problem(e: &ClaimError) -> Problem {
    use ClaimError as E;
    match e {
        E::InvalidRows { rejections, .. } => {
            let errors: Vec<FieldError> = rejections
                .iter()
                .flat_map(row_errors)
                .take(MAX_LISTED_ERRORS)
                .collect();
            let listed = if errors.len() == MAX_LISTED_ERRORS {
                format!(" (the first {MAX_LISTED_ERRORS} errors are listed)")
            } else {
                String::new()
            };
            Problem::validation(errors).with_detail(format!("{e}{listed}"))
        }
        E::NoClaims | E::TooManyClaims { .. } => Problem::invalid_field("rows", e.to_string()),
        E::LimitOutOfRange { .. } => Problem::invalid_field("limit", e.to_string()),
        E::NoHeader => Problem::invalid_field("header", e.to_string()),
        E::MissingColumns(fields) => Problem::validation(
            fields
                .iter()
                .map(|name| FieldError {
                    field: format!("header.{name}"),
                    detail: "has no column (names are matched ignoring case, spaces and \
                             punctuation; `#` reads as `number`)"
                        .into(),
                })
                .collect(),
        )
        .with_detail(e.to_string()),
        E::DuplicateColumn(name) => {
            Problem::invalid_field(format!("header.{name}"), "has more than one column")
        }
        E::Unreadable(_) => Problem::new(StatusCode::BAD_REQUEST, "malformed-csv", "Malformed CSV")
            .with_detail(e.to_string()),
    }
}

/// `rows[3].provider_npi: must be exactly 10 digits (line 5)`: the 0-based row, the field, why.
fn row_errors(rejection: &RowRejection) -> impl Iterator<Item = FieldError> + '_ {
    rejection.problems.iter().map(move |p| FieldError {
        field: match &p.field {
            Some(field) => format!("rows[{}].{field}", rejection.index),
            None => format!("rows[{}]", rejection.index),
        },
        detail: match rejection.line {
            Some(line) => format!("{} (line {line})", p.reason),
            None => p.reason.to_string(),
        },
    })
}

// ---- Ingestion -------------------------------------------------------------------------------

/// One claim row of a JSON body (document 002's fields). Amounts are dollars with at most two
/// decimals, `$` optional; numbers may be JSON numbers where noted.
#[derive(Debug, ToSchema)]
pub struct ClaimInput {
    /// `M/D/YY H:MM` (two-digit years are 20YY), `M/D/YYYY`, `YYYY-MM-DD[ H:MM[:SS]]` or RFC
    /// 3339; read as UTC when it has no offset.
    #[schema(example = "3/28/18 0:00")]
    pub service_date: String,
    /// A CDT code: `D` and four digits.
    #[schema(example = "D0180")]
    pub submitted_procedure: String,
    #[schema(example = "UR")]
    pub quadrant: Option<String>,
    /// A string or a number.
    #[schema(example = "GRP-1000")]
    pub plan_group_number: String,
    /// A string or a number.
    #[schema(example = "3730189502")]
    pub subscriber_number: String,
    /// 10 digits with a valid check digit; a string or a number.
    #[schema(example = "1497775530")]
    pub provider_npi: String,
    /// A string such as `$150.00` or a JSON number.
    #[schema(example = "$100.00")]
    pub provider_fees: String,
    #[schema(example = "$100.00")]
    pub allowed_fees: String,
    #[schema(example = "$0.00")]
    pub member_coinsurance: String,
    #[schema(example = "$0.00")]
    pub member_copay: String,
}

/// A claims file uploaded as `multipart/form-data`: the first part with a file name (or named
/// `file`). CSV unless the part is `application/json` or its name ends in `.json`.
#[derive(Debug, ToSchema)]
pub struct ClaimsUpload {
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimView {
    #[schema(value_type = String, format = Uuid)]
    id: Uuid,
    #[schema(value_type = String, format = DateTime)]
    service_date: Timestamp,
    submitted_procedure: String,
    quadrant: Option<String>,
    plan_group_number: String,
    subscriber_number: String,
    provider_npi: String,
    provider_fees: AmountOutput,
    allowed_fees: AmountOutput,
    member_coinsurance: AmountOutput,
    member_copay: AmountOutput,
    /// `provider_fees + member_coinsurance + member_copay - allowed_fees`; may be negative.
    net_fee: AmountOutput,
    #[schema(value_type = String, example = "USD")]
    currency: Currency,
}

impl From<&AcceptedClaim> for ClaimView {
    fn from(a: &AcceptedClaim) -> Self {
        let c = &a.claim;
        Self {
            id: a.id,
            service_date: c.service_date(),
            submitted_procedure: c.submitted_procedure().as_str().to_owned(),
            quadrant: c.quadrant().map(str::to_owned),
            plan_group_number: c.plan_group_number().to_owned(),
            subscriber_number: c.subscriber_number().to_owned(),
            provider_npi: c.provider_npi().as_str().to_owned(),
            provider_fees: AmountOutput(c.provider_fees()),
            allowed_fees: AmountOutput(c.allowed_fees()),
            member_coinsurance: AmountOutput(c.member_coinsurance()),
            member_copay: AmountOutput(c.member_copay()),
            net_fee: AmountOutput(a.net_fee),
            currency: a.net_fee.currency,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IngestResponse {
    /// How many claims were stored (all of the request's).
    accepted: usize,
    /// The stored claims, in the request's order.
    claims: Vec<ClaimView>,
}

/// Validates and stores a list of claims, all or nothing.
///
/// The body is a JSON list of rows, a CSV file (`text/csv`) as payers export it, or a
/// `multipart/form-data` upload of such a file. CSV headers are matched ignoring case, spaces, line
/// breaks and punctuation (`Plan/Group #`, `Subscriber#`); other columns are ignored. If any row is
/// invalid the answer is 422 naming every bad row (`rows[i]`, 0-based, the CSV header not counted)
/// and field, and nothing is stored. Each stored claim gets an id and its net fee, and publishes
/// `claim.accepted`.
#[utoipa::path(post, path = "/claims", tag = "claims",
    request_body(description = "Claims as JSON, CSV or a multipart upload", content(
        (Vec<ClaimInput> = "application/json"),
        (String = "text/csv", example = "service date,submitted procedure,quadrant,Plan/Group #,Subscriber#,Provider NPI,provider fees,Allowed fees,member coinsurance,member copay\n3/28/18 0:00,D0180,,GRP-1000,3730189502,1497775530,$100.00 ,$100.00 ,$0.00 ,$0.00 \n"),
        (ClaimsUpload = "multipart/form-data"),
    )),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses(
        (status = 201, body = IngestResponse),
        (status = 400, description = "Malformed JSON or CSV", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON, CSV or multipart", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid rows (each named with its field), a bad CSV header, no claims or too many", body = Problem, content_type = "application/problem+json"),
    ))]
async fn ingest(
    State(c): State<Claims>,
    RequestMeta(meta): RequestMeta,
    idem: IdempotencyHeader,
    request: Request,
) -> Response {
    let claims = match read_claims(request).await {
        Ok(claims) => Arc::new(claims),
        Err(p) => return p.into_response(),
    };
    let request = IdempotentRequest::new(idem, "claims:POST /claims", &*claims);
    let db = c.db().clone();
    execute(&db, request, StatusCode::CREATED, move |tx| {
        let (c, claims, meta) = (c.clone(), claims.clone(), meta.clone());
        Box::pin(async move {
            let accepted = domain::accept(claims.iter().cloned());
            c.store.insert(tx, &accepted, &meta).await?;
            Ok(IngestResponse {
                accepted: accepted.len(),
                claims: accepted.iter().map(ClaimView::from).collect(),
            })
        })
    })
    .await
}

#[derive(Debug, Clone, Copy)]
enum Format {
    Json,
    Csv,
}

async fn read_claims(request: Request) -> Result<Vec<Claim>, Problem> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let (format, body) = match essence.as_str() {
        "text/csv" | "application/csv" => (Format::Csv, body_bytes(request).await?),
        "multipart/form-data" => upload(request).await?,
        json if json == "application/json" || json.ends_with("+json") => {
            (Format::Json, body_bytes(request).await?)
        }
        _ => {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            )
            .with_detail("send claims as application/json, text/csv or multipart/form-data"))
        }
    };
    let claims = match format {
        Format::Json => {
            let rows: Vec<Box<RawValue>> = parse_json(&body)?;
            collect(crate::json_rows(&rows).map(Ok))
        }
        Format::Csv => crate::csv_rows(&body[..]).and_then(collect),
    };
    claims.map_err(|e| problem(&e))
}

/// Every row's claim, or every bad row; at most [`MAX_CLAIMS_PER_REQUEST`] rows.
fn collect(
    rows: impl Iterator<Item = Result<Result<Claim, RowRejection>, ClaimError>>,
) -> Result<Vec<Claim>, ClaimError> {
    let mut claims = Vec::new();
    let mut rejections = Vec::new();
    let mut count = 0;
    for row in rows {
        count += 1;
        if count > MAX_CLAIMS_PER_REQUEST {
            return Err(ClaimError::TooManyClaims {
                max: MAX_CLAIMS_PER_REQUEST,
            });
        }
        match row? {
            Ok(claim) if rejections.is_empty() => claims.push(claim),
            Ok(_) => {}
            Err(rejection) => rejections.push(rejection),
        }
    }
    if !rejections.is_empty() {
        return Err(ClaimError::InvalidRows {
            rejections,
            rows: count as u64,
        });
    }
    if claims.is_empty() {
        return Err(ClaimError::NoClaims);
    }
    Ok(claims)
}

fn too_large() -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload-too-large",
        "Body too large",
    )
    .with_detail("the request body is larger than this server accepts")
}

async fn body_bytes(request: Request) -> Result<Bytes, Problem> {
    Bytes::from_request(request, &())
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                Problem::new(StatusCode::BAD_REQUEST, "bad-request", "Unreadable body")
            }
        })
}

/// The uploaded file of a multipart body: the first part with a file name, or named `file`.
async fn upload(request: Request) -> Result<(Format, Bytes), Problem> {
    let unreadable = |status: StatusCode| {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed-multipart",
                "Malformed multipart body",
            )
        }
    };
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|r| unreadable(r.status()))?;
    while let Some(part) = multipart
        .next_field()
        .await
        .map_err(|e| unreadable(e.status()))?
    {
        let file_name = part.file_name().map(str::to_ascii_lowercase);
        if file_name.is_none() && part.name() != Some("file") {
            continue;
        }
        let json = part
            .content_type()
            .is_some_and(|t| t.starts_with("application/json"))
            || file_name.is_some_and(|n| n.ends_with(".json"));
        let format = if json { Format::Json } else { Format::Csv };
        let bytes = part.bytes().await.map_err(|e| unreadable(e.status()))?;
        return Ok((format, bytes));
    }
    Err(Problem::invalid_field(
        "file",
        "is required: send the claims file as a part with a file name",
    ))
}

// ---- Top providers ---------------------------------------------------------------------------

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TopQuery {
    /// How many providers, 1 to 100 (default 10).
    limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderView {
    provider_npi: String,
    /// The sum of the net fees of the provider's claims.
    total_net_fee: AmountOutput,
    claim_count: i64,
    #[schema(value_type = String, example = "USD")]
    currency: Currency,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TopProviders {
    /// Highest total net fee first; equal totals in NPI order.
    providers: Vec<ProviderView>,
}

/// The providers with the highest total net fee, from a maintained aggregate (not a scan of the
/// claims). Rate limited per client (API token): by default 10 requests a minute.
#[utoipa::path(get, path = "/providers/top", tag = "claims", params(TopQuery),
    responses(
        (status = 200, body = TopProviders),
        (status = 422, description = "limit is not an integer from 1 to 100", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests from this client", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before the next request"))),
    ))]
async fn top_providers(
    State(c): State<Claims>,
    ApiQuery(query): ApiQuery<TopQuery>,
) -> Result<Json<TopProviders>, Problem> {
    let limit = query.limit.unwrap_or(DEFAULT_TOP_PROVIDERS);
    if !(1..=MAX_TOP_PROVIDERS).contains(&limit) {
        return Err(problem(&ClaimError::LimitOutOfRange {
            max: MAX_TOP_PROVIDERS,
        }));
    }
    let providers = c.store.top_providers(limit).await?;
    Ok(Json(TopProviders {
        providers: providers
            .into_iter()
            .map(|p: store::ProviderTotal| ProviderView {
                provider_npi: p.provider_npi,
                total_net_fee: AmountOutput(p.total_net_fee),
                claim_count: p.claim_count,
                currency: p.total_net_fee.currency,
            })
            .collect(),
    }))
}
