//! Request rate per API token on write routes: a token bucket per token.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use tally_http::{Caller, Problem};
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;
use tower_governor::{GovernorError, GovernorLayer};

/// Rate limits keyed by the caller's token (set by the authentication layer, which runs first).
#[derive(Debug, Clone, Copy)]
struct TokenKey;

impl KeyExtractor for TokenKey {
    type Key = String;

    fn extract<T>(&self, request: &Request<T>) -> Result<Self::Key, GovernorError> {
        request
            .extensions()
            .get::<Caller>()
            .map(|c| c.token_id.clone())
            .ok_or(GovernorError::UnableToExtractKey)
    }
}

/// How fast one token may write: a sustained rate and a burst.
#[derive(Debug, Clone, Copy)]
pub struct WriteRate {
    pub per_minute: u32,
    pub burst: u32,
}

type ApplyFn = dyn Fn(Router) -> Router + Send + Sync;
type ForgetFn = dyn Fn() + Send + Sync;

/// Shared per-token buckets for every service of a process. `None` inside: no limit.
#[derive(Clone)]
pub struct WriteLimiter {
    limit: Option<(Arc<ApplyFn>, Arc<ForgetFn>)>,
}

impl WriteLimiter {
    /// `per_minute == 0` turns the limit off.
    pub fn new(rate: WriteRate) -> Self {
        if rate.per_minute == 0 {
            return Self { limit: None };
        }
        let period_ms = (60_000 / u64::from(rate.per_minute)).max(1);
        let config = GovernorConfigBuilder::default()
            .key_extractor(TokenKey)
            .period(Duration::from_millis(period_ms))
            .burst_size(rate.burst.max(1))
            .methods(vec![
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .finish()
            .map(Arc::new);
        let Some(config) = config else {
            return Self { limit: None };
        };
        let for_layer = config.clone();
        let apply: Arc<ApplyFn> = Arc::new(move |router: Router| {
            router.route_layer(GovernorLayer::new(for_layer.clone()).error_handler(too_many))
        });
        let forget: Arc<ForgetFn> = Arc::new(move || config.limiter().retain_recent());
        Self {
            limit: Some((apply, forget)),
        }
    }

    /// Forgets the buckets of tokens not seen lately, so memory stays bounded; run it
    /// periodically.
    pub fn forget_idle(&self) {
        if let Some((_, forget)) = &self.limit {
            forget();
        }
    }

    /// Applies the limit to a service's routes. Call before [`crate::require`], so that the
    /// token is checked first and the caller known.
    pub fn apply(&self, router: Router) -> Router {
        match &self.limit {
            Some((apply, _)) => apply(router),
            None => router,
        }
    }
}

fn too_many(error: GovernorError) -> Response<Body> {
    match error {
        GovernorError::TooManyRequests { wait_time, .. } => {
            let wait_s = wait_time.max(1);
            let mut response = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-requests",
                "Too many requests",
            )
            .with_detail(format!("this token writes too fast; retry in {wait_s} s"))
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&wait_s.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        GovernorError::UnableToExtractKey | GovernorError::Other { .. } => Problem::internal(
            &anyhow::anyhow!("the rate limiter could not identify the caller"),
        )
        .into_response(),
    }
}
