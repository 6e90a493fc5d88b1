//! The delivery worker: gives stored messages their deliveries, sends them, and records each
//! outcome.
//!
//! Each round it routes up to a batch of new messages (one delivery per configured webhook, an
//! e-mail when SMTP is configured and the recipient has an address, else `stored`), then claims
//! up to a batch of due deliveries and sends them at once. A claim is a lease written in a short
//! transaction: it counts the attempt and pushes the delivery's `next_attempt_at` to the end of
//! the lease, so several workers (processes) never send one delivery at the same time, and a
//! worker that dies mid-send leaves a delivery that another takes over when the lease ends.
//! Sending happens outside any transaction; the outcome is recorded only if the lease still
//! holds. A 2xx from a webhook, or an SMTP relay accepting the mail, marks the delivery sent and
//! publishes `notification.sent` in the same transaction; anything else (a timeout included) is
//! retried with exponential backoff, `attempts` and `next_attempt_at` persisted so that a
//! restarted worker carries on; after `max_attempts` the delivery is failed and
//! `notification.failed` published. A receiver may see one delivery twice (its 2xx lost, or a
//! worker stopped before recording it): it deduplicates on `Tally-Notification-Id`.
//!
//! A webhook request is `POST <url>` with `Content-Type: application/json`,
//! `Tally-Notification-Id: <delivery id>`, `Tally-Signature` (see [`crate::signature`]) and
//! this body:
//!
//! ```json
//! {"deliveryId": "…", "notificationId": "…", "eventId": "…", "eventType": "bill.generated",
//!  "patientId": "…", "subject": "Your bill", "body": "A bill has been issued…",
//!  "createdAt": "2026-03-02T09:00:00.123456Z", "attempt": 1}
//! ```
//!
//! Logs name deliveries, messages and events by id, channels and failure reasons; never a
//! recipient's details, a webhook URL or a message's text.

use std::time::Duration;

use anyhow::Context as _;
use futures_util::future::join_all;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};
use serde::Serialize;
use tally_kernel::time::{self, Timestamp};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::store::{self, Channels, Claimed};
use super::Notifications;
use crate::domain::{decide, Channel, Decision, Failure, RetryPolicy};
use crate::settings::NotificationSettings;
use crate::signature::{self, NOTIFICATION_ID_HEADER, SIGNATURE_HEADER};

/// How long a claim lasts beyond the longest a send may take, for recording the outcome.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// Runs until `shutdown` is cancelled: routes new messages and sends due deliveries, waking on
/// every commit to this service's database made in this process and at least every
/// `poll_interval`. Deliveries in flight when `shutdown` comes are handed back unattempted.
/// Returns at once, logging why, if the settings are invalid.
pub async fn run_delivery(notifications: Notifications, shutdown: CancellationToken) {
    let worker = match Worker::new(notifications) {
        Ok(worker) => worker,
        Err(e) => {
            tracing::error!(
                error = format!("{e:#}"),
                "notification delivery not started"
            );
            return;
        }
    };
    let db = worker.notifications.db().clone();
    let settings = worker.notifications.settings();
    tracing::info!(
        webhooks = settings.webhooks.len(),
        smtp = settings.smtp.is_some(),
        "notification delivery started"
    );
    let mut commits = db.subscribe_commits();
    loop {
        commits.borrow_and_update();
        let busy = match worker.round(&shutdown).await {
            Ok(done) => done > 0,
            Err(e) => {
                tracing::warn!(error = %e, "notification delivery round failed");
                false
            }
        };
        if shutdown.is_cancelled() {
            return;
        }
        if busy {
            continue;
        }
        tokio::select! {
            _ = commits.changed() => {}
            _ = tokio::time::sleep(settings.poll_interval) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

struct Worker {
    notifications: Notifications,
    http: reqwest::Client,
    smtp: Option<SmtpSender>,
}

struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

/// The body POSTed to webhooks.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WebhookPayload<'a> {
    delivery_id: Uuid,
    notification_id: Uuid,
    event_id: Uuid,
    event_type: &'a str,
    patient_id: Uuid,
    subject: &'a str,
    body: &'a str,
    created_at: String,
    attempt: u32,
}

fn after(now: Timestamp, wait: Duration) -> Timestamp {
    let wait = chrono::TimeDelta::from_std(wait).unwrap_or(chrono::TimeDelta::MAX);
    now.checked_add_signed(wait).unwrap_or(now)
}

fn before(now: Timestamp, wait: Duration) -> Timestamp {
    let wait = chrono::TimeDelta::from_std(wait).unwrap_or(chrono::TimeDelta::MAX);
    now.checked_sub_signed(wait).unwrap_or(now)
}

impl Worker {
    fn new(notifications: Notifications) -> anyhow::Result<Worker> {
        let settings = notifications.settings();
        settings
            .validate()
            .context("invalid notification settings")?;
        let http = reqwest::Client::builder()
            .timeout(settings.send_timeout)
            .connect_timeout(settings.send_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("tally-notifications")
            .build()
            .context("failed to build the webhook client")?;
        let smtp = match &settings.smtp {
            None => None,
            Some(smtp) => Some(SmtpSender {
                transport: AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
                    .port(smtp.port)
                    .timeout(Some(settings.send_timeout))
                    .build(),
                from: smtp.from.parse().context("invalid SMTP sender")?,
            }),
        };
        Ok(Worker {
            notifications,
            http,
            smtp,
        })
    }

    fn settings(&self) -> &NotificationSettings {
        self.notifications.settings()
    }

    fn policy(&self) -> RetryPolicy {
        let s = self.settings();
        RetryPolicy {
            max_attempts: s.max_attempts,
            base: s.retry_base,
            max: s.retry_max,
        }
    }

    /// Routes new messages, then sends due deliveries. Returns how many of each it handled.
    async fn round(&self, shutdown: &CancellationToken) -> Result<usize, sqlx::Error> {
        let db = self.notifications.db();
        let s = self.settings();
        let batch = i64::from(s.batch_size);
        let now = time::now();
        let channels = Channels {
            webhook_urls: s.webhooks.iter().map(|w| w.url.as_str()).collect(),
            smtp: s.smtp.is_some(),
            wait_for_recipients_after: before(now, s.recipient_wait),
        };
        let routed = store::route(db, &channels, batch).await?;
        let lease = s.send_timeout.saturating_add(LEASE_MARGIN);
        let claimed = store::claim(db, after(time::now(), lease), batch).await?;
        let sent = claimed.len();
        join_all(claimed.iter().map(|c| self.deliver(c, shutdown))).await;
        Ok(routed + sent)
    }

    /// Makes one claimed attempt and records its outcome.
    async fn deliver(&self, claimed: &Claimed, shutdown: &CancellationToken) {
        let db = self.notifications.db();
        let policy = self.policy();
        let (attempts, result) = if claimed.attempts > policy.max_attempts {
            // The last attempt was claimed by a worker that stopped before recording it.
            let unknown = Failure::permanent("the outcome of the last attempt is unknown");
            (policy.max_attempts, Err(unknown))
        } else {
            let result = tokio::select! {
                result = self.attempt(claimed) => result,
                _ = shutdown.cancelled() => {
                    if let Err(e) = store::release(db, claimed).await {
                        tracing::warn!(delivery_id = %claimed.delivery_id, error = %e,
                            "failed to hand back a delivery; it is retried when its lease ends");
                    }
                    return;
                }
            };
            (claimed.attempts, result)
        };
        let decision = decide(&policy, attempts, result, time::now());
        log(claimed, attempts, &decision);
        match store::record(db, claimed, attempts, &decision).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                delivery_id = %claimed.delivery_id,
                "another worker took this delivery over; its outcome here is not recorded"
            ),
            Err(e) => tracing::warn!(
                delivery_id = %claimed.delivery_id, error = %e,
                "failed to record a delivery's outcome; it is retried when its lease ends"
            ),
        }
    }

    async fn attempt(&self, claimed: &Claimed) -> Result<(), Failure> {
        let send = async {
            match claimed.channel {
                Channel::Webhook => self.send_webhook(claimed).await,
                Channel::Email => self.send_email(claimed).await,
                Channel::Stored => Ok(()),
            }
        };
        tokio::time::timeout(self.settings().send_timeout, send)
            .await
            .unwrap_or_else(|_| Err(Failure::retryable("timed out")))
    }

    async fn send_webhook(&self, claimed: &Claimed) -> Result<(), Failure> {
        let Some(hook) = self.settings().webhook(&claimed.target) else {
            return Err(Failure::permanent("the webhook is no longer configured"));
        };
        let payload = WebhookPayload {
            delivery_id: claimed.delivery_id,
            notification_id: claimed.about.notification_id,
            event_id: claimed.about.event_id,
            event_type: &claimed.event_type,
            patient_id: claimed.about.patient_id,
            subject: &claimed.message.subject,
            body: &claimed.message.body,
            created_at: time::to_db(claimed.created_at),
            attempt: claimed.attempts,
        };
        let body = serde_json::to_vec(&payload)
            .map_err(|_| Failure::permanent("the message could not be encoded"))?;
        let signature = signature::sign(hook.secret.as_bytes(), time::now().timestamp(), &body);
        let response = self
            .http
            .post(&hook.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header(NOTIFICATION_ID_HEADER, claimed.delivery_id.to_string())
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::retryable(http_failure(&e)))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(Failure::retryable(format!(
                "the webhook answered HTTP {status}"
            )))
        }
    }

    async fn send_email(&self, claimed: &Claimed) -> Result<(), Failure> {
        let Some(smtp) = &self.smtp else {
            return Err(Failure::permanent("SMTP is no longer configured"));
        };
        let address = store::recipient_email(self.notifications.db(), claimed.about.patient_id)
            .await
            .map_err(|_| Failure::retryable("the recipient could not be read"))?
            .ok_or_else(|| Failure::permanent("the recipient has no e-mail address"))?;
        let to: Mailbox = address
            .parse()
            .map_err(|_| Failure::permanent("the recipient's e-mail address is not usable"))?;
        let id = claimed.delivery_id.to_string();
        let mut email = lettre::Message::builder()
            .from(smtp.from.clone())
            .to(to)
            .subject(claimed.message.subject.as_str())
            .message_id(Some(format!("<{id}@tally.notifications>")))
            .header(ContentType::TEXT_PLAIN)
            .body(claimed.message.body.clone())
            .map_err(|_| Failure::permanent("the e-mail could not be built"))?;
        email.headers_mut().insert_raw(HeaderValue::new(
            HeaderName::new_from_ascii_str(NOTIFICATION_ID_HEADER),
            id,
        ));
        smtp.transport.send(email).await.map(|_| ()).map_err(|e| {
            // A permanent (5xx) reply would come again: the delivery fails now.
            if e.is_permanent() {
                Failure::permanent(smtp_failure(&e))
            } else {
                Failure::retryable(smtp_failure(&e))
            }
        })
    }
}

/// What went wrong with a webhook request; never the URL, which may hold a token.
fn http_failure(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect to the webhook"
    } else {
        "the webhook request failed"
    }
}

/// What went wrong with an SMTP session: the reply code, never the reply text (which may repeat
/// the recipient's address).
fn smtp_failure(e: &lettre::transport::smtp::Error) -> String {
    match e.status() {
        Some(code) if e.is_permanent() => {
            format!("the SMTP relay refused the mail: {code} (permanent)")
        }
        Some(code) => format!("the SMTP relay refused the mail: {code} (transient)"),
        None if e.is_timeout() => String::from("timed out"),
        None => String::from("could not talk to the SMTP relay"),
    }
}

fn log(claimed: &Claimed, attempt: u32, decision: &Decision) {
    let channel = claimed.channel.as_str();
    let outcome = match decision {
        Decision::Sent => {
            tracing::info!(
                delivery_id = %claimed.delivery_id, notification_id = %claimed.about.notification_id,
                channel, attempt, "notification delivered"
            );
            "sent"
        }
        Decision::RetryAt { at, reason } => {
            tracing::warn!(
                delivery_id = %claimed.delivery_id, notification_id = %claimed.about.notification_id,
                channel, attempt, reason = %reason, retry_at = %time::to_db(*at),
                "notification delivery failed, retrying"
            );
            "retry"
        }
        Decision::Failed { reason } => {
            tracing::error!(
                delivery_id = %claimed.delivery_id, notification_id = %claimed.about.notification_id,
                channel, attempt, reason = %reason, "notification delivery failed for good"
            );
            "failed"
        }
    };
    metrics::counter!("tally_notification_attempts_total", "channel" => channel, "outcome" => outcome)
        .increment(1);
}
