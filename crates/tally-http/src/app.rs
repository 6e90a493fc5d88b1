//! The HTTP application every process serves: service routes plus health, metrics and docs,
//! wrapped in the shared layers.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tally_db::Db;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa_swagger_ui::SwaggerUi;

use crate::extract::REQUEST_ID;
use crate::problem::{Problem, PROBLEM_JSON};

#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest request body accepted; larger ones get 413.
    pub body_limit_bytes: usize,
    /// Longest a request may take before it is answered 408.
    pub request_timeout: Duration,
    /// Most connections served at once; more wait in the kernel's backlog until one closes.
    pub max_connections: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            body_limit_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// What a process serves: the routes of its services, their OpenAPI document, and the
/// databases `/health/ready` checks.
pub struct Platform {
    pub api: Router,
    pub openapi: utoipa::openapi::OpenApi,
    pub readiness: Vec<Db>,
    pub metrics: PrometheusHandle,
    /// Wraps the `/metrics` route (to require a token), or leaves it open when `None`.
    pub guard_metrics: Option<Box<dyn FnOnce(Router) -> Router + Send>>,
}

pub fn router(platform: Platform, settings: &HttpSettings) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID);
    let metrics = Router::new().route("/metrics", get(render_metrics).with_state(platform.metrics));
    let metrics = match platform.guard_metrics {
        Some(guard) => guard(metrics),
        None => metrics,
    };
    let ops = Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .with_state(platform.readiness)
        .merge(metrics);
    let docs = SwaggerUi::new("/docs").url("/openapi.json", platform.openapi);
    Router::new()
        .merge(platform.api)
        .merge(ops)
        .merge(docs)
        .fallback(|| async { Problem::from_status(StatusCode::NOT_FOUND) })
        .layer(
            ServiceBuilder::new()
                .layer(CatchPanicLayer::custom(|_| {
                    Problem::internal(&anyhow::anyhow!("a request handler panicked"))
                        .into_response()
                }))
                .layer(middleware::from_fn(drop_unusable_request_id))
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestV7))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(TraceLayer::new_for_http().make_span_with(request_span))
                .layer(middleware::from_fn(crate::metrics::track))
                .layer(middleware::from_fn(problemize))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    settings.request_timeout,
                ))
                .layer(DefaultBodyLimit::max(settings.body_limit_bytes)),
        )
}

/// Request ids Tally makes: UUID v7.
#[derive(Clone, Copy)]
struct MakeRequestV7;

impl MakeRequestId for MakeRequestV7 {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let id = tally_kernel::id::new_v7().to_string();
        axum::http::HeaderValue::from_str(&id)
            .ok()
            .map(RequestId::new)
    }
}

/// Longest client-sent request id kept; longer ones are replaced by one Tally makes.
const MAX_REQUEST_ID_LEN: usize = 128;

/// A client may send its own `x-request-id` to correlate its logs with Tally's; one that is too
/// long or not plain visible ASCII is dropped (and replaced) so that it cannot flood logs.
async fn drop_unusable_request_id(mut request: Request, next: Next) -> Response {
    let unusable = request.headers().get(REQUEST_ID).is_some_and(|v| {
        v.len() > MAX_REQUEST_ID_LEN || !v.as_bytes().iter().all(|b| b.is_ascii_graphic())
    });
    if unusable {
        request.headers_mut().remove(REQUEST_ID);
    }
    next.run(request).await
}

/// The span of one request: method, route template and request id; never bodies or queries.
fn request_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| String::from("unmatched"));
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("request", method = %request.method(), route = %route, request_id = %request_id)
}

/// Turns any error the framework or a layer answered on its own (405, 408, a plain-text
/// rejection) into problem+json, so that clients see one error format.
async fn problemize(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let status = response.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        // The rest of the oversized body was never read: the connection cannot carry another
        // request, so say so instead of letting a keep-alive client reuse it.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == PROBLEM_JSON.as_bytes());
    if status.as_u16() < 400 || is_problem {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let problem = Problem::from_status(status).into_response();
    let (problem_parts, body) = problem.into_parts();
    parts.headers.extend(problem_parts.headers);
    Response::from_parts(parts, body)
}

async fn live() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn ready(State(dbs): State<Vec<Db>>) -> Response {
    for db in &dbs {
        if let Err(e) = db.ping().await {
            tracing::warn!(service = db.service(), error = %e, "database not ready");
            return Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", "Not ready")
                .with_detail(format!("the {} database does not answer", db.service()))
                .into_response();
        }
    }
    Json(serde_json::json!({ "status": "ok" })).into_response()
}

async fn render_metrics(State(handle): State<PrometheusHandle>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}

/// Serves `app` on `listener` until `shutdown`, then lets in-flight requests finish. At most
/// `max_connections` connections are open at once.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    max_connections: usize,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = LimitedListener {
        inner: listener,
        permits: Arc::new(Semaphore::new(max_connections.max(1))),
    };
    axum::serve(listener, app.into_make_service())
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// A listener that accepts a connection only while fewer than its permits are open.
struct LimitedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
}

impl axum::serve::Listener for LimitedListener {
    type Io = LimitedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let permit = match self.permits.clone().acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => unreachable!("the semaphore is never closed"),
        };
        let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        (
            LimitedStream {
                io,
                _permit: permit,
            },
            addr,
        )
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection holding its permit until it closes.
struct LimitedStream {
    io: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
