//! The middleware that checks a request's bearer token against the scope its route needs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tally_db::Db;
use tally_http::{Caller, Problem};

use crate::scope::{Access, Scopes};
use crate::store::{self, StoredToken};
use crate::token;

/// Most tokens remembered between database reads.
const CACHE_CAPACITY: usize = 10_000;

/// Tokens by id, with when they were read (`None`: no such token).
type TokenCache = HashMap<String, (Instant, Option<StoredToken>)>;

/// Token verification shared by every route of a process.
#[derive(Clone)]
pub struct AuthState {
    db: Db,
    services: &'static [&'static str],
    /// How long a token read from the database is trusted: a revocation takes effect within it.
    cache_ttl: Duration,
    cache: Arc<Mutex<TokenCache>>,
}

impl AuthState {
    pub fn new(db: Db, services: &'static [&'static str], cache_ttl: Duration) -> Self {
        Self {
            db,
            services,
            cache_ttl,
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn services(&self) -> &'static [&'static str] {
        self.services
    }

    async fn stored(&self, id: &str) -> Result<Option<StoredToken>, sqlx::Error> {
        if !self.cache_ttl.is_zero() {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, stored)) = cache.get(id) {
                if at.elapsed() < self.cache_ttl {
                    return Ok(stored.clone());
                }
            }
        }
        let stored = store::find(&self.db, id).await?;
        if !self.cache_ttl.is_zero() {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(id.to_owned(), (Instant::now(), stored.clone()));
        }
        Ok(stored)
    }
}

/// Where a token stands for one use of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Allowed,
    MissingScope,
    /// Unknown or revoked.
    Revoked,
}

impl AuthState {
    /// Whether the token `token_id` (already authenticated once, as on a WebSocket) may still
    /// use `service` with `access`. A revocation shows within the cache's lifetime.
    pub async fn standing(
        &self,
        token_id: &str,
        service: &str,
        access: Access,
    ) -> Result<Standing, sqlx::Error> {
        let Some(stored) = self.stored(token_id).await?.filter(|s| !s.revoked) else {
            return Ok(Standing::Revoked);
        };
        let scopes = Scopes::parse(&stored.scopes, self.services).unwrap_or_default();
        Ok(if scopes.allows(service, access) {
            Standing::Allowed
        } else {
            Standing::MissingScope
        })
    }
}

/// The prefix of a token offered as a WebSocket subprotocol (`Sec-WebSocket-Protocol:
/// tally.v1, bearer.<token>`), for browsers, which cannot set headers on a WebSocket.
pub const BEARER_PROTOCOL_PREFIX: &str = "bearer.";

/// The token a request presents: its `Authorization: Bearer` header, or else a `bearer.<token>`
/// WebSocket subprotocol.
fn presented_token(request: &Request) -> Option<String> {
    let headers = request.headers();
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        return value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(|v| v.trim().to_owned());
    }
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(BEARER_PROTOCOL_PREFIX))
        .map(str::to_owned)
}

/// The state of one service's routes: the shared verifier and the service's name.
#[derive(Clone)]
pub struct RouteAuth {
    auth: AuthState,
    service: &'static str,
}

/// Protects a service's routes: `GET` and `HEAD` need `SERVICE:read`, anything else
/// `SERVICE:write` (or `admin`).
pub fn require(router: Router, auth: AuthState, service: &'static str) -> Router {
    router.route_layer(axum::middleware::from_fn_with_state(
        RouteAuth { auth, service },
        check,
    ))
}

fn unauthorized(detail: &str) -> Response {
    let mut response = Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized")
        .with_detail(detail)
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"tally\", error=\"invalid_token\""),
    );
    response
}

async fn check(State(route): State<RouteAuth>, mut request: Request, next: Next) -> Response {
    let access = match *request.method() {
        Method::GET | Method::HEAD => Access::Read,
        _ => Access::Write,
    };
    let Some(presented) = presented_token(&request) else {
        return unauthorized("send an API token as `Authorization: Bearer <token>`");
    };
    let Some((id, secret)) = token::parse(&presented) else {
        return unauthorized("the token is not a Tally API token");
    };
    let stored = match route.auth.stored(id).await {
        Ok(stored) => stored,
        Err(e) => return Problem::from(e).into_response(),
    };
    let Some(stored) =
        stored.filter(|s| !s.revoked && token::secret_matches(secret, &s.secret_sha256))
    else {
        return unauthorized("the token is unknown or revoked");
    };
    // Scopes naming a service this build does not have grant nothing.
    let scopes = Scopes::parse(&stored.scopes, route.auth.services).unwrap_or_default();
    if !scopes.allows(route.service, access) {
        return Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden")
            .with_detail(format!(
                "this token lacks the scope {}:{}",
                route.service,
                access.as_str()
            ))
            .into_response();
    }
    request.extensions_mut().insert(Caller {
        token_id: id.to_owned(),
    });
    next.run(request).await
}
