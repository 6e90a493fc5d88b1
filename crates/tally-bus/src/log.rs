//! Reading a service's event log (its sequenced outbox) in order.

use sqlx::Row as _;
use tally_db::Db;
use tally_kernel::Envelope;

/// One event at its position in a log. An entry whose stored text is not a valid envelope is
/// still returned (with the parse error), so that a consumer can park it in its dead letters
/// instead of stopping there.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub seq: i64,
    pub id: String,
    pub topic: String,
    pub raw: String,
    pub envelope: Result<Envelope, String>,
}

/// Up to `limit` events after position `after`, in order.
pub async fn read_after(db: &Db, after: i64, limit: i64) -> Result<Vec<LogEntry>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, id, topic, envelope FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(db.reader())
    .await?;
    rows.into_iter()
        .map(|row| {
            let raw: String = row.try_get(3)?;
            let envelope =
                serde_json::from_str(&raw).map_err(|e| format!("not a valid envelope: {e}"));
            Ok(LogEntry {
                seq: row.try_get(0)?,
                id: row.try_get(1)?,
                topic: row.try_get(2)?,
                raw,
                envelope,
            })
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
