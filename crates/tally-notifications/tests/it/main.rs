//! The notifications service against real SQLite and PostgreSQL, each test on a fresh database:
//! events applied through its consumers, the delivery worker sending to a webhook receiver and
//! an SMTP sink started by the test on 127.0.0.1:0, and the routes driven in-process. Tests
//! check what a user would: what the receiver got, the deliveries' state, the events in the
//! service's log, the API's answers.

mod consume;
mod email;
mod flow;
mod logs;
mod routes;
mod webhook;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use sqlx::Row as _;
use tally_bus::consumer::Applied;
use tally_bus::{log, outbox, Consumer};
use tally_db::testing::{TestBackend, TestLocation};
use tally_db::{Backend, Db};
use tally_kernel::Envelope;
use tally_notifications::{NotificationSettings, Notifications, Smtp, Webhook};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The service on a fresh database, with its two consumers.
pub struct App {
    pub loc: TestLocation,
    pub db: Db,
    pub recipients: Consumer,
    pub messages: Consumer,
    seq: AtomicI64,
}

pub async fn app(backend: TestBackend) -> Option<App> {
    let loc = TestLocation::new(backend).await?;
    let db = open(&loc).await;
    Some(App {
        recipients: tally_notifications::recipients_consumer(db.clone()),
        messages: tally_notifications::messages_consumer(db.clone()),
        loc,
        db,
        seq: AtomicI64::new(0),
    })
}

/// Another handle on the same database: its own pools, as another process would have.
pub async fn open(loc: &TestLocation) -> Db {
    Db::open_and_migrate(&loc.settings(), &tally_notifications::SCHEMA)
        .await
        .expect("the notifications database opens and migrates")
}

/// Settings for tests: retries in milliseconds.
pub fn fast(webhooks: Vec<Webhook>, smtp: Option<Smtp>) -> NotificationSettings {
    NotificationSettings {
        webhooks,
        smtp,
        max_attempts: 5,
        retry_base: Duration::from_millis(20),
        retry_max: Duration::from_millis(80),
        poll_interval: Duration::from_millis(10),
        send_timeout: Duration::from_secs(2),
        batch_size: 32,
        recipient_wait: Duration::from_secs(30),
    }
}

/// A running delivery worker.
pub struct Worker {
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Worker {
    pub fn start(db: &Db, settings: NotificationSettings) -> Worker {
        let shutdown = CancellationToken::new();
        let notifications = Notifications::new(db.clone(), settings);
        let task = tokio::spawn(tally_notifications::run_delivery(
            notifications,
            shutdown.clone(),
        ));
        Worker { shutdown, task }
    }

    /// Stops the worker and waits until it has.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the worker stops promptly")
            .expect("the worker does not panic");
    }
}

/// A delivery as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub message_id: String,
    pub channel: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub next_attempt_at: String,
}

impl App {
    /// Applies `event` through the consumer that reads its topic, as the bus would.
    pub async fn apply(&self, event: &Envelope) -> Applied {
        let consumer = if self.recipients.wants(&event.event_type) {
            &self.recipients
        } else {
            &self.messages
        };
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        consumer
            .apply("stand-in", seq, event)
            .await
            .expect("the event applies")
    }

    pub async fn deliveries(&self) -> Vec<Delivery> {
        sqlx::query(
            "SELECT id, message_id, channel, status, attempts, last_error, next_attempt_at \
             FROM deliveries ORDER BY created_at, id",
        )
        .fetch_all(self.db.reader())
        .await
        .unwrap()
        .iter()
        .map(|r| Delivery {
            id: r.try_get(0).unwrap(),
            message_id: r.try_get(1).unwrap(),
            channel: r.try_get(2).unwrap(),
            status: r.try_get(3).unwrap(),
            attempts: r.try_get(4).unwrap(),
            last_error: r.try_get(5).unwrap(),
            next_attempt_at: r.try_get(6).unwrap(),
        })
        .collect()
    }

    /// (id, event type, status, subject, body) of every message, oldest first.
    pub async fn messages(&self) -> Vec<(String, String, String, String, String)> {
        sqlx::query("SELECT id, event_type, status, subject, body FROM messages ORDER BY seq")
            .fetch_all(self.db.reader())
            .await
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.try_get(0).unwrap(),
                    r.try_get(1).unwrap(),
                    r.try_get(2).unwrap(),
                    r.try_get(3).unwrap(),
                    r.try_get(4).unwrap(),
                )
            })
            .collect()
    }

    /// Every event in the service's log, in order.
    pub async fn events(&self) -> Vec<Envelope> {
        events(&self.db).await
    }
}

pub async fn events(db: &Db) -> Vec<Envelope> {
    if db.backend() == Backend::Postgres {
        while outbox::sequence_pending(db).await.unwrap() > 0 {}
    }
    log::read_after(db, 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.envelope.expect("a valid envelope"))
        .collect()
}

/// Waits up to 15 s for `check` to hold.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---- Events from the other services ----------------------------------------------------------

pub fn event(event_type: &str, aggregate_id: &str, data: Value) -> Envelope {
    Envelope {
        id: Uuid::now_v7(),
        event_type: event_type.into(),
        version: 1,
        source: "stand-in".into(),
        aggregate_type: event_type.split('.').next().unwrap_or("").into(),
        aggregate_id: aggregate_id.into(),
        occurred_at: tally_kernel::time::now(),
        correlation_id: "flow-correlation".into(),
        causation_id: "test".into(),
        data,
    }
}

pub fn registered(patient: Uuid, name: &str, email: Option<&str>, phone: Option<&str>) -> Envelope {
    event(
        "patient.registered",
        &patient.to_string(),
        json!({"patient_id": patient, "full_name": name, "email": email, "phone": phone}),
    )
}

pub fn updated(patient: Uuid, name: &str, email: Option<&str>, phone: Option<&str>) -> Envelope {
    event(
        "patient.updated",
        &patient.to_string(),
        json!({"patient_id": patient, "full_name": name, "email": email, "phone": phone,
            "changed": ["email"]}),
    )
}

pub fn booked(patient: Uuid, price_minor: i64) -> Envelope {
    let appointment = Uuid::now_v7();
    event(
        "appointment.booked",
        &appointment.to_string(),
        json!({"appointment_id": appointment, "patient_id": patient, "physician_id": Uuid::now_v7(),
            "scheduled_start": "2026-03-02T09:00:00Z", "scheduled_end": "2026-03-02T09:30:00Z",
            "scheduled_price_minor": price_minor, "currency": "USD"}),
    )
}

pub fn cancelled(patient: Uuid, reason: Option<&str>) -> Envelope {
    let appointment = Uuid::now_v7();
    event(
        "appointment.cancelled",
        &appointment.to_string(),
        json!({"appointment_id": appointment, "patient_id": patient,
            "physician_id": Uuid::now_v7(), "reason": reason}),
    )
}

pub fn bill(event_type: &str, patient: Uuid, amount_minor: i64, currency: &str) -> Envelope {
    let bill = Uuid::now_v7();
    event(
        event_type,
        &bill.to_string(),
        json!({"bill_id": bill, "appointment_id": Uuid::now_v7(), "patient_id": patient,
            "amount_minor": amount_minor, "currency": currency}),
    )
}

pub fn payment(
    event_type: &str,
    patient: Uuid,
    amount_minor: i64,
    reason: Option<&str>,
) -> Envelope {
    let payment = Uuid::now_v7();
    let mut data = json!({"payment_id": payment, "bill_id": Uuid::now_v7(), "patient_id": patient,
        "method": "card", "amount_minor": amount_minor, "currency": "USD"});
    if let Some(reason) = reason {
        data["reason"] = json!(reason);
    }
    event(event_type, &payment.to_string(), data)
}

// ---- A webhook receiver ----------------------------------------------------------------------

/// What the receiver answers to one request.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    Status(u16),
    /// Waits this long, then answers 503: by then the sender has given up.
    Hang(Duration),
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub notification_id: String,
    /// Whether `Tally-Signature` checked out, computed here from the documented scheme.
    pub signature_ok: bool,
    pub body: Value,
    pub accepted: bool,
}

struct ReceiverState {
    secret: String,
    script: Mutex<VecDeque<Answer>>,
    otherwise: Mutex<Answer>,
    received: Mutex<Vec<Received>>,
    accepted: AtomicU32,
}

/// A webhook receiver on 127.0.0.1:0: answers from a script, then `otherwise`.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<ReceiverState>,
}

pub const SECRET: &str = "whsec-test-secret";

fn signature_ok(secret: &str, header: Option<&str>, body: &[u8]) -> bool {
    let Some(header) = header else { return false };
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = Some(value.to_owned()),
            Some(("v1", value)) => v1 = Some(value.to_owned()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let now = tally_kernel::time::now().timestamp();
    if t.parse::<i64>().map_or(true, |t| (now - t).abs() > 60) {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::decode(v1).is_ok_and(|sig| mac.verify_slice(&sig).is_ok())
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let answer = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(*state.otherwise.lock().unwrap());
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let accepted = matches!(answer, Answer::Status(s) if (200..300).contains(&s));
    state.received.lock().unwrap().push(Received {
        notification_id: header("tally-notification-id").unwrap_or("").to_owned(),
        signature_ok: signature_ok(&state.secret, header("tally-signature"), &body),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        accepted,
    });
    match answer {
        Answer::Status(status) => {
            if accepted {
                state.accepted.fetch_add(1, Ordering::SeqCst);
            }
            StatusCode::from_u16(status).unwrap()
        }
        Answer::Hang(wait) => {
            tokio::time::sleep(wait).await;
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

impl Receiver {
    pub async fn start(script: &[Answer], otherwise: Answer) -> Receiver {
        let state = Arc::new(ReceiverState {
            secret: SECRET.into(),
            script: Mutex::new(script.iter().copied().collect()),
            otherwise: Mutex::new(otherwise),
            received: Mutex::new(Vec::new()),
            accepted: AtomicU32::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/tally", listener.local_addr().unwrap());
        let router = axum::Router::new()
            .route("/hooks/tally", axum::routing::post(receive))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Receiver { url, state }
    }

    pub fn webhook(&self) -> Webhook {
        Webhook {
            url: self.url.clone(),
            secret: SECRET.into(),
        }
    }

    pub fn set_otherwise(&self, answer: Answer) {
        *self.state.otherwise.lock().unwrap() = answer;
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// How many requests it answered with a 2xx.
    pub fn accepted(&self) -> u32 {
        self.state.accepted.load(Ordering::SeqCst)
    }
}

// ---- An SMTP sink ----------------------------------------------------------------------------

/// One mail the sink accepted.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

/// A minimal SMTP server on 127.0.0.1:0 that keeps every mail it accepts. It can refuse the
/// first recipients with a transient or a permanent error that repeats the address, as real
/// relays do.
#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
    refusals: Arc<Refusals>,
}

/// How many recipients to refuse yet, with a transient 451 and with a permanent 550.
#[derive(Default)]
struct Refusals {
    transient: AtomicU32,
    permanent: AtomicU32,
}

/// Takes one from `count` if it is not zero yet.
fn take_one(count: &AtomicU32) -> bool {
    count
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

async fn smtp_session(
    stream: tokio::net::TcpStream,
    mails: Arc<Mutex<Vec<Mail>>>,
    refusals: Arc<Refusals>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 sink.test ESMTP ready\r\n").await?;
    let mut mail = Mail {
        from: String::new(),
        to: Vec::new(),
        data: String::new(),
    };
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let verb = command.get(..4).unwrap_or("").to_ascii_uppercase();
        let reply: String = match verb.as_str() {
            "EHLO" | "HELO" => "250 sink.test\r\n".into(),
            "MAIL" => {
                mail.from = command[10..].to_owned();
                "250 2.1.0 OK\r\n".into()
            }
            "RCPT" => {
                let address = command[8..].to_owned();
                if take_one(&refusals.permanent) {
                    format!("550 5.1.1 {address} no such mailbox\r\n")
                } else if take_one(&refusals.transient) {
                    format!("451 4.2.0 {address} mailbox busy, try later\r\n")
                } else {
                    mail.to.push(address);
                    "250 2.1.5 OK\r\n".into()
                }
            }
            "DATA" => {
                write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    mail.data.push_str(&line);
                }
                mails.lock().unwrap().push(mail.clone());
                "250 2.0.0 queued\r\n".into()
            }
            "RSET" | "NOOP" => "250 OK\r\n".into(),
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => "500 unknown command\r\n".into(),
        };
        write.write_all(reply.as_bytes()).await?;
    }
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = SmtpSink {
            port: listener.local_addr().unwrap().port(),
            mails: Arc::default(),
            refusals: Arc::default(),
        };
        let (mails, refuse) = (sink.mails.clone(), sink.refusals.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(smtp_session(stream, mails.clone(), refuse.clone()));
            }
        });
        sink
    }

    pub fn smtp(&self) -> Smtp {
        Smtp {
            host: "127.0.0.1".into(),
            port: self.port,
            from: "Clinic <notify@clinic.example>".into(),
        }
    }

    /// Refuses the next `n` recipients with a transient 451.
    pub fn refuse_next(&self, n: u32) {
        self.refusals.transient.store(n, Ordering::SeqCst);
    }

    /// Refuses the next `n` recipients with a permanent 550 (no such mailbox).
    pub fn refuse_next_permanently(&self, n: u32) {
        self.refusals.permanent.store(n, Ordering::SeqCst);
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}
