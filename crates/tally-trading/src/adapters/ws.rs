//! The trading WebSocket: document 003's messages in, one `{id, status, message, ...}` reply per
//! message out.
//!
//! The token is checked at the upgrade (the route is behind the same bearer-token layer as every
//! other route, so a request without a valid token never becomes a WebSocket), and again for
//! each message against the scope that message needs: a token revoked while its connection is
//! open stops working within the token cache's lifetime, and the connection is closed.
//!
//! Limits per connection: the size of one message, messages per second (a token bucket), and
//! messages in flight. Messages are handled concurrently; their replies may come back in another
//! order than the messages, each carrying its message's `id`.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as Frame, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::future::BoxFuture;
use governor::{Quota, RateLimiter};
use serde_json::{json, Map, Value};
use tally_http::{Caller, Problem};
use tally_kernel::EventMeta;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::routes::Trading;
use super::store::Submitted;
use crate::domain::message::{self, error_reply, reply};

/// The subprotocol the server speaks. A browser, which cannot set an `Authorization` header on
/// a WebSocket, may offer its token as a second subprotocol `bearer.<token>` next to this one.
pub const PROTOCOL: &str = "tally.v1";

/// Limits of one WebSocket connection.
#[derive(Debug, Clone)]
pub struct WsSettings {
    /// Largest message (and frame), in bytes; a larger one closes the connection.
    pub max_message_bytes: usize,
    /// Sustained messages per second; beyond it a message is answered `ERROR` unprocessed.
    pub messages_per_second: u32,
    /// Messages that may arrive at once above the sustained rate.
    pub burst: u32,
    /// Messages handled at once; beyond it a message is answered `ERROR` unprocessed.
    pub max_in_flight: usize,
    /// How long a reply decided by another service (the wallets service) is waited for before
    /// the caller is told to ask again with the same id.
    pub reply_timeout: Duration,
}

impl Default for WsSettings {
    fn default() -> Self {
        Self {
            max_message_bytes: 64 * 1024,
            messages_per_second: 50,
            burst: 100,
            max_in_flight: 64,
            reply_timeout: Duration::from_secs(10),
        }
    }
}

/// What a token may still do, asked for each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    MissingScope,
    /// The token is revoked or gone: the connection closes.
    Revoked,
}

/// Checks a token's scopes (the platform's token store answers).
pub trait Permissions: Send + Sync + 'static {
    fn check<'a>(
        &'a self,
        token_id: &'a str,
        service: &'static str,
        write: bool,
    ) -> BoxFuture<'a, anyhow::Result<Verdict>>;
}

/// The open connections of a process, and the signal that closes them: on shutdown each one
/// stops reading, sends the replies of the messages it is handling, and closes with 1001.
#[derive(Clone)]
pub struct Connections {
    shutdown: CancellationToken,
    open: Arc<(AtomicUsize, Notify)>,
}

impl Connections {
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            shutdown,
            open: Arc::new((AtomicUsize::new(0), Notify::new())),
        }
    }

    /// Waits until every connection has closed, or `timeout`. Returns how many are still open.
    pub async fn closed(&self, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.open.1.notified();
            let open = self.open.0.load(Ordering::SeqCst);
            if open == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.open.0.load(Ordering::SeqCst);
            }
        }
    }

    fn enter(&self) -> OpenGuard {
        self.open.0.fetch_add(1, Ordering::SeqCst);
        OpenGuard(self.open.clone())
    }
}

struct OpenGuard(Arc<(AtomicUsize, Notify)>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::SeqCst);
        self.0 .1.notify_waiters();
    }
}

/// How long a closing connection waits for the replies of the messages it is handling.
const DRAIN: Duration = Duration::from_secs(5);

enum Outgoing {
    Reply(Value),
    /// The reply, then the connection closes (policy violation).
    Close(Value),
}

/// `GET /ws`: the upgrade. The bearer-token layer in front of it has already refused a request
/// without a valid `trading:read` token.
pub(crate) async fn upgrade(
    State(trading): State<Trading>,
    caller: Option<Extension<Caller>>,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(Extension(caller)) = caller else {
        return Problem::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
        )
        .with_detail("send an API token as `Authorization: Bearer <token>`")
        .into_response();
    };
    let limit = trading.ws.max_message_bytes;
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .protocols([PROTOCOL])
        .on_upgrade(move |socket| connection(trading, caller.token_id, socket))
}

async fn connection(trading: Trading, token_id: String, mut socket: WebSocket) {
    let _open = trading.connections.enter();
    let shutdown = trading.connections.shutdown.clone();
    let settings = trading.ws.clone();
    let rate = NonZeroU32::new(settings.messages_per_second.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(settings.burst.max(1)).unwrap_or(NonZeroU32::MIN);
    let limiter = RateLimiter::direct(Quota::per_second(rate).allow_burst(burst));
    let max_in_flight = settings.max_in_flight.max(1);
    let in_flight = Arc::new(Semaphore::new(max_in_flight));
    let (outgoing, mut replies) = mpsc::channel::<Outgoing>(max_in_flight + 1);
    let mut draining: Option<tokio::time::Instant> = None;
    tracing::debug!("trading connection opened");
    loop {
        if let Some(deadline) = draining {
            // Shutting down: every handled message has sent its reply (or the wait is over).
            if in_flight.available_permits() == max_in_flight
                || tokio::time::Instant::now() >= deadline
            {
                while let Ok(out) = replies.try_recv() {
                    let (Outgoing::Reply(value) | Outgoing::Close(value)) = out;
                    let _ = send(&mut socket, &value).await;
                }
                let _ = socket
                    .send(Frame::Close(Some(CloseFrame {
                        code: 1001,
                        reason: "the server is shutting down".into(),
                    })))
                    .await;
                break;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled(), if draining.is_none() => {
                draining = Some(tokio::time::Instant::now() + DRAIN);
            }
            _ = tokio::time::sleep(Duration::from_millis(20)), if draining.is_some() => {}
            frame = socket.recv(), if draining.is_none() => {
                let text = match frame {
                    None | Some(Err(_)) | Some(Ok(Frame::Close(_))) => break,
                    Some(Ok(Frame::Text(text))) => text,
                    Some(Ok(Frame::Binary(_))) => {
                        let refusal = error_reply(&Value::Null, "send messages as text frames of JSON");
                        if send(&mut socket, &refusal).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    Some(Ok(_)) => continue,
                };
                if limiter.check().is_err() {
                    let refusal = reply(
                        &message::id_of(&text),
                        false,
                        &format!(
                            "rate limited: at most {} messages a second on one connection; \
                             this one was not processed",
                            settings.messages_per_second
                        ),
                        Map::new(),
                    );
                    if send(&mut socket, &refusal).await.is_err() {
                        break;
                    }
                    continue;
                }
                let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                    let refusal = error_reply(
                        &message::id_of(&text),
                        &format!(
                            "too many messages in flight (at most {}); this one was not processed",
                            settings.max_in_flight
                        ),
                    );
                    if send(&mut socket, &refusal).await.is_err() {
                        break;
                    }
                    continue;
                };
                tokio::spawn(handle(trading.clone(), token_id.clone(), text.to_string(), outgoing.clone(), permit));
            }
            Some(out) = replies.recv() => match out {
                Outgoing::Reply(value) => {
                    if send(&mut socket, &value).await.is_err() {
                        break;
                    }
                }
                Outgoing::Close(value) => {
                    let _ = send(&mut socket, &value).await;
                    let _ = socket
                        .send(Frame::Close(Some(CloseFrame {
                            code: 1008,
                            reason: "the token is unknown or revoked".into(),
                        })))
                        .await;
                    break;
                }
            },
        }
    }
    tracing::debug!("trading connection closed");
}

async fn send(socket: &mut WebSocket, value: &Value) -> Result<(), axum::Error> {
    socket.send(Frame::Text(value.to_string().into())).await
}

async fn handle(
    trading: Trading,
    token_id: String,
    text: String,
    outgoing: mpsc::Sender<Outgoing>,
    _permit: OwnedSemaphorePermit,
) {
    let out = respond(&trading, &token_id, &text).await;
    let _ = outgoing.send(out).await;
}

async fn respond(trading: &Trading, token_id: &str, text: &str) -> Outgoing {
    let message = match message::parse(text) {
        Ok(message) => message,
        Err(refusal) => return Outgoing::Reply(error_reply(&refusal.id, &refusal.message)),
    };
    let id = message.id.clone();
    let retry_later = |what: &str| {
        Outgoing::Reply(error_reply(
            &id,
            &format!("{what}; send the same message with the same id again"),
        ))
    };
    let (service, write) = message.kind.scope();
    match trading.permissions.check(token_id, service, write).await {
        Ok(Verdict::Allowed) => {}
        Ok(Verdict::MissingScope) => {
            let access = if write { "write" } else { "read" };
            return Outgoing::Reply(error_reply(
                &id,
                &format!("forbidden: this token lacks the scope {service}:{access}"),
            ));
        }
        Ok(Verdict::Revoked) => {
            return Outgoing::Close(error_reply(
                &id,
                "unauthorized: the token is unknown or revoked",
            ))
        }
        Err(e) => {
            tracing::warn!(error = %e, "failed to check a token's scopes");
            return retry_later("the token could not be checked now");
        }
    }
    let meta = EventMeta::from_request(&tally_kernel::id::new_v7().to_string());
    let submitted = match trading.store.submit(token_id, &message, &meta).await {
        Ok(submitted) => submitted,
        Err(e) => {
            tracing::warn!(kind = message.kind.as_str(), error = %e, "failed to store a trading message");
            return retry_later("the message could not be stored now");
        }
    };
    let answer = match submitted {
        Submitted::Decided(answer) => answer,
        Submitted::Pending(request_id) => {
            match trading
                .replies
                .wait(&request_id, trading.ws.reply_timeout)
                .await
            {
                Ok(Some(answer)) => answer,
                Ok(None) => {
                    let mut extra = Map::new();
                    extra.insert("request_id".into(), json!(request_id));
                    return Outgoing::Reply(reply(
                        &id,
                        false,
                        "still being processed; send the same message with the same id to get \
                         its outcome",
                        extra,
                    ));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "failed to read a trading reply");
                    return retry_later("the outcome could not be read now");
                }
            }
        }
    };
    tracing::debug!(
        kind = message.kind.as_str(),
        status = answer
            .get("status")
            .and_then(serde_json::Value::as_str)
            .unwrap_or(""),
        "trading message answered"
    );
    Outgoing::Reply(answer)
}
