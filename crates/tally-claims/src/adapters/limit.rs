//! The request rate of `GET /providers/top`: a token bucket per client.
//!
//! A client is the API token the authentication layer put in the request (`Caller`); requests
//! without one (a process serving without authentication) share one bucket. Buckets are kept per
//! token, and tokens are a bounded set: those issued by the platform.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use tally_http::{Caller, Problem};
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;
use tower_governor::{GovernorError, GovernorLayer};

/// How often one client may ask for the top providers: a sustained rate and a burst.
/// `per_minute == 0` turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopProvidersRate {
    pub per_minute: u32,
    pub burst: u32,
}

impl Default for TopProvidersRate {
    /// Document 002: at most 10 requests a minute (a token every 6 s, a burst of 10).
    fn default() -> Self {
        Self {
            per_minute: 10,
            burst: 10,
        }
    }
}

/// The bucket a request draws from: its caller's token, or the shared one.
#[derive(Debug, Clone, Copy)]
pub struct CallerKey;

/// The bucket of requests that carry no caller.
const SHARED_KEY: &str = "";

impl KeyExtractor for CallerKey {
    type Key = String;

    fn extract<T>(&self, request: &Request<T>) -> Result<Self::Key, GovernorError> {
        Ok(request
            .extensions()
            .get::<Caller>()
            .map_or_else(|| SHARED_KEY.to_owned(), |c| c.token_id.clone()))
    }
}

type ApplyFn = dyn Fn(Router) -> Router + Send + Sync;

/// The limiter's shared buckets; no limit inside when the rate is off.
#[derive(Clone)]
pub struct Limiter {
    apply: Option<Arc<ApplyFn>>,
}

impl Limiter {
    pub fn new(rate: TopProvidersRate) -> Self {
        if rate.per_minute == 0 {
            return Self { apply: None };
        }
        let period_ms = (60_000 / u64::from(rate.per_minute)).max(1);
        let config = GovernorConfigBuilder::default()
            .key_extractor(CallerKey)
            .period(Duration::from_millis(period_ms))
            .burst_size(rate.burst.max(1))
            .finish()
            .map(Arc::new);
        let apply = config.map(|config| -> Arc<ApplyFn> {
            Arc::new(move |router: Router| {
                let layer = GovernorLayer::new(config.clone())
                    .error_handler(move |e| too_many(e, rate.per_minute));
                router.route_layer(layer)
            })
        });
        Self { apply }
    }

    /// Limits every route of `router`.
    pub fn apply(&self, router: Router) -> Router {
        match &self.apply {
            Some(apply) => apply(router),
            None => router,
        }
    }
}

fn too_many(error: GovernorError, per_minute: u32) -> Response<Body> {
    match error {
        GovernorError::TooManyRequests { wait_time, .. } => {
            // The limiter rounds the wait down to whole seconds; a client that waits the rounded
            // figure would be refused again.
            let wait_s = wait_time + 1;
            let mut response = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-requests",
                "Too many requests",
            )
            .with_detail(format!(
                "at most {per_minute} requests a minute per client; retry in {wait_s} s"
            ))
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait_s));
            response
        }
        GovernorError::UnableToExtractKey | GovernorError::Other { .. } => Problem::internal(
            &anyhow::anyhow!("the rate limiter of the top providers failed"),
        )
        .into_response(),
    }
}
