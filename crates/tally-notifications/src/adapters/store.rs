//! The notifications store: recipients, messages and deliveries, on SQLite or PostgreSQL through
//! one portable set of statements. Everything that publishes does it through the outbox in the
//! transaction of the change.

use sqlx::any::AnyRow;
use sqlx::Row as _;
use tally_bus::outbox;
use tally_db::{Backend, Db, ServiceSchema, WriteTx};
use tally_kernel::event::DomainEvent;
use tally_kernel::time::{self, Timestamp};
use tally_kernel::EventMeta;
use uuid::Uuid;

use crate::domain::{self, Channel, Contact, Decision, Message, NotificationEvent, Status};
use crate::SERVICE;

pub static SCHEMA: std::sync::LazyLock<ServiceSchema> =
    std::sync::LazyLock::new(|| ServiceSchema {
        name: SERVICE,
        sqlite: sqlx::migrate!("migrations/sqlite"),
        postgres: sqlx::migrate!("migrations/postgres"),
    });

/// Most messages returned in one page.
pub const MAX_PAGE: i64 = 100;

/// A stored value the service would not have written: named by column, never shown.
fn corrupt(column: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("notifications.{column} holds a value the service refuses").into())
}

fn uuid(row: &AnyRow, i: usize, column: &str) -> Result<Uuid, sqlx::Error> {
    Uuid::parse_str(&row.try_get::<String, _>(i)?).map_err(|_| corrupt(column))
}

fn timestamp(row: &AnyRow, i: usize, column: &str) -> Result<Timestamp, sqlx::Error> {
    time::from_db(&row.try_get::<String, _>(i)?).map_err(|_| corrupt(column))
}

fn status(row: &AnyRow, i: usize, column: &str) -> Result<Status, sqlx::Error> {
    Status::parse(&row.try_get::<String, _>(i)?).ok_or_else(|| corrupt(column))
}

fn channel(row: &AnyRow, i: usize) -> Result<Channel, sqlx::Error> {
    Channel::parse(&row.try_get::<String, _>(i)?).ok_or_else(|| corrupt("deliveries.channel"))
}

/// Claims rows without waiting for those another worker holds (PostgreSQL). SQLite needs none:
/// the immediate transaction holds the database's only write lock.
fn skip_locked(db: &Db) -> &'static str {
    match db.backend() {
        Backend::Sqlite => "",
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
    }
}

// ---- Recipients ------------------------------------------------------------------------------

/// Keeps a patient's contact details as of `as_of` (the event's time); an older event read late
/// changes nothing.
pub async fn save_contact(
    tx: &mut WriteTx,
    contact: &Contact,
    as_of: Timestamp,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO recipients (patient_id, full_name, email, phone, as_of, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (patient_id) DO UPDATE SET full_name = excluded.full_name, \
         email = excluded.email, phone = excluded.phone, as_of = excluded.as_of, \
         updated_at = excluded.updated_at WHERE recipients.as_of <= excluded.as_of",
    )
    .bind(contact.patient_id.to_string())
    .bind(&contact.full_name)
    .bind(contact.email.as_deref())
    .bind(contact.phone.as_deref())
    .bind(time::to_db(as_of))
    .bind(time::to_db(time::now()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The recipient's e-mail address, read when a mail is sent so that it is always the latest.
pub async fn recipient_email(db: &Db, patient_id: Uuid) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query("SELECT email FROM recipients WHERE patient_id = $1")
        .bind(patient_id.to_string())
        .fetch_optional(db.reader())
        .await?;
    Ok(row
        .map(|r| r.try_get::<Option<String>, _>(0))
        .transpose()?
        .flatten())
}

// ---- Messages --------------------------------------------------------------------------------

/// A message about to be stored.
pub struct NewMessage<'a> {
    pub event_id: Uuid,
    pub event_type: &'a str,
    pub patient_id: Uuid,
    pub correlation_id: &'a str,
    pub message: &'a Message,
}

/// Stores a pending message; does nothing if the event already has one for this recipient.
/// Returns whether it was stored.
pub async fn save_message(tx: &mut WriteTx, new: &NewMessage<'_>) -> Result<bool, sqlx::Error> {
    let now = time::to_db(time::now());
    let stored = sqlx::query(
        "INSERT INTO messages (id, event_id, event_type, patient_id, correlation_id, subject, \
         body, status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', \
         $8, $8) ON CONFLICT (event_id, patient_id) DO NOTHING",
    )
    .bind(tally_kernel::id::new_v7().to_string())
    .bind(new.event_id.to_string())
    .bind(new.event_type)
    .bind(new.patient_id.to_string())
    .bind(new.correlation_id)
    .bind(&new.message.subject)
    .bind(&new.message.body)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(stored == 1)
}

/// A stored message. No `Debug`: it holds the message text.
pub struct StoredMessage {
    pub seq: i64,
    pub id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub patient_id: Uuid,
    pub message: Message,
    pub status: Status,
    pub created_at: Timestamp,
}

const MESSAGE_COLUMNS: &str =
    "seq, id, event_id, event_type, patient_id, subject, body, status, created_at";

fn message_from_row(row: &AnyRow) -> Result<StoredMessage, sqlx::Error> {
    Ok(StoredMessage {
        seq: row.try_get(0)?,
        id: uuid(row, 1, "messages.id")?,
        event_id: uuid(row, 2, "messages.event_id")?,
        event_type: row.try_get(3)?,
        patient_id: uuid(row, 4, "messages.patient_id")?,
        message: Message {
            subject: row.try_get(5)?,
            body: row.try_get(6)?,
        },
        status: status(row, 7, "messages.status")?,
        created_at: timestamp(row, 8, "messages.created_at")?,
    })
}

/// Messages newest first, before the cursor `before`, of one patient when given. At most
/// `limit` (capped at [`MAX_PAGE`] + 1, so that a caller can learn whether a page follows).
pub async fn list(
    db: &Db,
    patient_id: Option<Uuid>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<StoredMessage>, sqlx::Error> {
    let before = before.unwrap_or(i64::MAX);
    let limit = limit.clamp(1, MAX_PAGE + 1);
    let rows = match patient_id {
        None => {
            let sql = format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE seq < $1 ORDER BY seq DESC LIMIT $2"
            );
            sqlx::query(&sql)
                .bind(before)
                .bind(limit)
                .fetch_all(db.reader())
                .await?
        }
        Some(patient) => {
            let sql = format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE patient_id = $3 AND seq < $1 \
                 ORDER BY seq DESC LIMIT $2"
            );
            sqlx::query(&sql)
                .bind(before)
                .bind(limit)
                .bind(patient.to_string())
                .fetch_all(db.reader())
                .await?
        }
    };
    rows.iter().map(message_from_row).collect()
}

pub async fn message(db: &Db, id: Uuid) -> Result<Option<StoredMessage>, sqlx::Error> {
    let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1");
    let row = sqlx::query(&sql)
        .bind(id.to_string())
        .fetch_optional(db.reader())
        .await?;
    row.as_ref().map(message_from_row).transpose()
}

// ---- Deliveries ------------------------------------------------------------------------------

/// A delivery as the API shows it: never its target (a webhook URL may hold a token).
#[derive(Debug, Clone)]
pub struct StoredDelivery {
    pub id: Uuid,
    pub channel: Channel,
    pub status: Status,
    pub attempts: i64,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

pub async fn deliveries_of(db: &Db, message_id: Uuid) -> Result<Vec<StoredDelivery>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, channel, status, attempts, next_attempt_at, last_error, created_at, \
         updated_at FROM deliveries WHERE message_id = $1 ORDER BY created_at, id",
    )
    .bind(message_id.to_string())
    .fetch_all(db.reader())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(StoredDelivery {
                id: uuid(row, 0, "deliveries.id")?,
                channel: channel(row, 1)?,
                status: status(row, 2, "deliveries.status")?,
                attempts: row.try_get(3)?,
                next_attempt_at: timestamp(row, 4, "deliveries.next_attempt_at")?,
                last_error: row.try_get(5)?,
                created_at: timestamp(row, 6, "deliveries.created_at")?,
                updated_at: timestamp(row, 7, "deliveries.updated_at")?,
            })
        })
        .collect()
}

/// What the router needs to know of the channels configured now.
pub struct Channels<'a> {
    pub webhook_urls: Vec<&'a str>,
    pub smtp: bool,
    /// With SMTP, messages whose recipient is still unknown and that were made after this wait
    /// for the recipient's contact details.
    pub wait_for_recipients_after: Timestamp,
}

/// Gives up to `limit` messages without deliveries their deliveries, as [`domain::routes`]
/// decides; a message with no channel is stored: its `stored` delivery is sent at once and
/// `notification.sent` published. Returns how many messages were routed.
pub async fn route(db: &Db, channels: &Channels<'_>, limit: i64) -> Result<usize, sqlx::Error> {
    let now = time::now();
    let mut tx = db.begin_write().await?;
    let waiting = if channels.smtp {
        " AND (m.created_at <= $2 OR EXISTS \
         (SELECT 1 FROM recipients r WHERE r.patient_id = m.patient_id))"
    } else {
        ""
    };
    let sql = format!(
        "SELECT m.id, m.event_id, m.patient_id, m.correlation_id, \
         (SELECT COUNT(*) FROM recipients r WHERE r.patient_id = m.patient_id \
          AND r.email IS NOT NULL) \
         FROM messages m WHERE m.routed_at IS NULL{waiting} ORDER BY m.seq LIMIT $1{}",
        skip_locked(db)
    );
    let mut query = sqlx::query(&sql).bind(limit);
    if channels.smtp {
        query = query.bind(time::to_db(channels.wait_for_recipients_after));
    }
    let rows = query.fetch_all(&mut *tx).await?;
    if rows.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    let now_db = time::to_db(now);
    let mut events = Vec::new();
    for row in &rows {
        let message_id: String = row.try_get(0)?;
        let has_email = row.try_get::<i64, _>(4)? > 0;
        let routes = domain::routes(
            channels.webhook_urls.iter().copied(),
            channels.smtp,
            has_email,
        );
        let stored = routes.iter().all(|r| r.channel == Channel::Stored);
        for route in &routes {
            let status = if stored {
                Status::Sent
            } else {
                Status::Pending
            };
            sqlx::query(
                "INSERT INTO deliveries (id, message_id, channel, target, status, attempts, \
                 next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 0, $6, $6, \
                 $6) ON CONFLICT (message_id, channel, target) DO NOTHING",
            )
            .bind(tally_kernel::id::new_v7().to_string())
            .bind(&message_id)
            .bind(route.channel.as_str())
            .bind(&route.target)
            .bind(status.as_str())
            .bind(&now_db)
            .execute(&mut *tx)
            .await?;
        }
        let message_status = if stored {
            Status::Sent
        } else {
            Status::Pending
        };
        sqlx::query(
            "UPDATE messages SET routed_at = $1, status = $2, updated_at = $1 WHERE id = $3",
        )
        .bind(&now_db)
        .bind(message_status.as_str())
        .bind(&message_id)
        .execute(&mut *tx)
        .await?;
        if stored {
            let about = About {
                notification_id: uuid(row, 0, "messages.id")?,
                event_id: uuid(row, 1, "messages.event_id")?,
                patient_id: uuid(row, 2, "messages.patient_id")?,
                correlation_id: row.try_get(3)?,
            };
            events.extend(about.event(Channel::Stored, &Decision::Sent, now));
        }
    }
    outbox::append(db, &mut tx, &events).await?;
    db.commit(tx).await?;
    Ok(rows.len())
}

/// The message a delivery belongs to, as its events name it.
#[derive(Debug, Clone)]
pub struct About {
    pub notification_id: Uuid,
    pub event_id: Uuid,
    pub patient_id: Uuid,
    pub correlation_id: String,
}

impl About {
    /// The event that ends a delivery with `decision`; none while it is retried.
    fn event(
        &self,
        channel: Channel,
        decision: &Decision,
        now: Timestamp,
    ) -> Option<tally_kernel::Envelope> {
        let event = match decision {
            Decision::Sent => NotificationEvent::Sent {
                notification_id: self.notification_id,
                event_id: self.event_id,
                patient_id: self.patient_id,
                channel,
            },
            Decision::Failed { reason } => NotificationEvent::Failed {
                notification_id: self.notification_id,
                event_id: self.event_id,
                patient_id: self.patient_id,
                channel,
                reason: reason.clone(),
            },
            Decision::RetryAt { .. } => return None,
        };
        // Caused by the event the message is about, in its correlation.
        let meta = EventMeta {
            correlation_id: self.correlation_id.clone(),
            causation_id: self.event_id.to_string(),
        };
        Some(event.to_envelope(SERVICE, &meta, now))
    }
}

/// A delivery claimed by one worker for one attempt. No `Debug`: it holds the message text.
pub struct Claimed {
    pub delivery_id: Uuid,
    pub lease_id: Uuid,
    pub channel: Channel,
    pub target: String,
    /// Attempts including this one.
    pub attempts: u32,
    pub about: About,
    pub event_type: String,
    pub message: Message,
    pub created_at: Timestamp,
}

/// Claims up to `limit` due deliveries for one attempt each: counts the attempt and moves
/// `next_attempt_at` to `lease_until`, when another worker may take over a delivery whose
/// outcome this one never recorded.
pub async fn claim(
    db: &Db,
    lease_until: Timestamp,
    limit: i64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let lease_id = tally_kernel::id::new_v7();
    let now = time::to_db(time::now());
    let mut tx = db.begin_write().await?;
    let sql = format!(
        "UPDATE deliveries SET lease_id = $1, attempts = attempts + 1, next_attempt_at = $2, \
         updated_at = $3 WHERE id IN (SELECT id FROM deliveries WHERE status = 'pending' \
         AND next_attempt_at <= $3 ORDER BY next_attempt_at, id LIMIT $4{})",
        skip_locked(db)
    );
    let claimed = sqlx::query(&sql)
        .bind(lease_id.to_string())
        .bind(time::to_db(lease_until))
        .bind(&now)
        .bind(limit)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if claimed == 0 {
        tx.rollback().await?;
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT d.id, d.channel, d.target, d.attempts, m.id, m.event_id, m.patient_id, \
         m.correlation_id, m.event_type, m.subject, m.body, m.created_at \
         FROM deliveries d JOIN messages m ON m.id = d.message_id WHERE d.lease_id = $1 \
         ORDER BY d.next_attempt_at, d.id",
    )
    .bind(lease_id.to_string())
    .fetch_all(&mut *tx)
    .await?;
    // Nothing was published: a plain commit, no wake-up of the log's readers.
    tx.commit().await?;
    rows.iter()
        .map(|row| {
            Ok(Claimed {
                delivery_id: uuid(row, 0, "deliveries.id")?,
                lease_id,
                channel: channel(row, 1)?,
                target: row.try_get(2)?,
                attempts: u32::try_from(row.try_get::<i64, _>(3)?)
                    .map_err(|_| corrupt("deliveries.attempts"))?,
                about: About {
                    notification_id: uuid(row, 4, "messages.id")?,
                    event_id: uuid(row, 5, "messages.event_id")?,
                    patient_id: uuid(row, 6, "messages.patient_id")?,
                    correlation_id: row.try_get(7)?,
                },
                event_type: row.try_get(8)?,
                message: Message {
                    subject: row.try_get(9)?,
                    body: row.try_get(10)?,
                },
                created_at: timestamp(row, 11, "messages.created_at")?,
            })
        })
        .collect()
}

/// Records the outcome of a claimed attempt, counted as `attempts`: the delivery's new state,
/// its event when it ended (through the outbox, in this transaction), and the message's status
/// once none of its deliveries is pending. Returns false, changing nothing, when the lease was
/// lost (another worker took the delivery over after it expired).
pub async fn record(
    db: &Db,
    claimed: &Claimed,
    attempts: u32,
    decision: &Decision,
) -> Result<bool, sqlx::Error> {
    let now = time::now();
    let (new_status, next_attempt_at, error) = match decision {
        Decision::Sent => (Status::Sent, now, None),
        Decision::RetryAt { at, reason } => (Status::Pending, *at, Some(reason.as_str())),
        Decision::Failed { reason } => (Status::Failed, now, Some(reason.as_str())),
    };
    let message_id = claimed.about.notification_id.to_string();
    let mut tx = db.begin_write().await?;
    // Deliveries of one message may end at once in two workers: the message row makes them take
    // turns, so that the second sees the first's outcome when it sets the message's status.
    let lock = format!("SELECT id FROM messages WHERE id = $1{}", db.for_update());
    sqlx::query(&lock)
        .bind(&message_id)
        .fetch_optional(&mut *tx)
        .await?;
    let updated = sqlx::query(
        "UPDATE deliveries SET status = $1, attempts = $2, next_attempt_at = $3, lease_id = NULL, \
         last_error = COALESCE($4, last_error), updated_at = $5 \
         WHERE id = $6 AND lease_id = $7 AND status = 'pending'",
    )
    .bind(new_status.as_str())
    .bind(i64::from(attempts))
    .bind(time::to_db(next_attempt_at))
    .bind(error)
    .bind(time::to_db(now))
    .bind(claimed.delivery_id.to_string())
    .bind(claimed.lease_id.to_string())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    if let Some(event) = claimed.about.event(claimed.channel, decision, now) {
        outbox::append(db, &mut tx, std::slice::from_ref(&event)).await?;
        let rows = sqlx::query("SELECT status FROM deliveries WHERE message_id = $1")
            .bind(&message_id)
            .fetch_all(&mut *tx)
            .await?;
        let statuses = rows
            .iter()
            .map(|r| status(r, 0, "deliveries.status"))
            .collect::<Result<Vec<_>, _>>()?;
        let overall = Status::of_message(statuses);
        if overall != Status::Pending {
            sqlx::query("UPDATE messages SET status = $1, updated_at = $2 WHERE id = $3")
                .bind(overall.as_str())
                .bind(time::to_db(now))
                .bind(&message_id)
                .execute(&mut *tx)
                .await?;
        }
    }
    db.commit(tx).await?;
    Ok(true)
}

/// Hands a claimed delivery back unattempted (the worker is stopping): due now, the attempt
/// not counted.
pub async fn release(db: &Db, claimed: &Claimed) -> Result<(), sqlx::Error> {
    let now = time::to_db(time::now());
    let mut tx = db.begin_write().await?;
    sqlx::query(
        "UPDATE deliveries SET lease_id = NULL, attempts = attempts - 1, next_attempt_at = $1, \
         updated_at = $1 WHERE id = $2 AND lease_id = $3 AND status = 'pending'",
    )
    .bind(&now)
    .bind(claimed.delivery_id.to_string())
    .bind(claimed.lease_id.to_string())
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
