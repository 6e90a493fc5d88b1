//! Reading a service's event log (its sequenced outbox) in order.

use sqlx::Row as _;
use tally_db::Db;
use tally_kernel::Envelope;

/// One event at its position in a log.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub seq: i64,
    pub envelope: Envelope,
}

/// Up to `limit` events after position `after`, in order.
pub async fn read_after(db: &Db, after: i64, limit: i64) -> anyhow::Result<Vec<LogEntry>> {
    let rows = sqlx::query("SELECT seq, envelope FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2")
        .bind(after)
        .bind(limit)
        .fetch_all(db.reader())
        .await?;
    rows.into_iter()
        .map(|row| {
            let seq: i64 = row.try_get(0)?;
            let text: String = row.try_get(1)?;
            let envelope = serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!(
                    "event at {} #{seq} is not a valid envelope: {e}",
                    db.service()
                )
            })?;
            Ok(LogEntry { seq, envelope })
        })
        .collect()
}

/// The last position handed out in the log (0 when empty).
pub async fn head(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT last_seq FROM log_head WHERE id = 1")
        .fetch_one(db.reader())
        .await?
        .try_get(0)
}
