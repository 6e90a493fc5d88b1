//! Reading a service's event log (its sequenced outbox) in order.

use sqlx::Row as _;
use tally_db::Db;
use tally_kernel::Envelope;

use crate::packed::{self, Decoded};
use crate::rows::RowEvents;

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

/// Up to `limit` events after position `after`, in order, of a log whose events are all in it
/// (none read from rows): [`read_after_with`] without row sources.
pub async fn read_after(db: &Db, after: i64, limit: i64) -> Result<Vec<LogEntry>, sqlx::Error> {
    read_after_with(db, &[], after, limit).await
}

/// Up to `limit` events after position `after`, in order. Packed rows are expanded: each of
/// their events is an entry at its own position. Events read from rows (see [`crate::rows`])
/// are built from the rows of their source in `sources`; a log naming a source not given is an
/// error, so that a reader that cannot build those events stops before them instead of passing
/// them by.
pub async fn read_after_with(
    db: &Db,
    sources: &[RowEvents],
    after: i64,
    limit: i64,
) -> Result<Vec<LogEntry>, sqlx::Error> {
    // From the row holding position `after` (a packed row may hold positions past it too), then
    // the rows after it: each found by one probe of the `seq` index.
    let rows = sqlx::query(
        "SELECT seq, entries, id, topic, envelope FROM outbox \
         WHERE seq >= COALESCE((SELECT MAX(seq) FROM outbox WHERE seq <= $1), 0) \
         ORDER BY seq LIMIT $2",
    )
    .bind(after)
    .bind(limit.saturating_add(1))
    .fetch_all(db.reader())
    .await?;
    let limit = usize::try_from(limit).unwrap_or(0);
    let mut entries = Vec::new();
    for row in rows {
        if entries.len() >= limit {
            break;
        }
        let seq: i64 = row.try_get(0)?;
        let count: i64 = row.try_get(1)?;
        let id: String = row.try_get(2)?;
        let topic: String = row.try_get(3)?;
        let raw: String = row.try_get(4)?;
        if count <= 1 && !packed::is_packed(&raw) {
            if seq > after {
                let envelope =
                    serde_json::from_str(&raw).map_err(|e| format!("not a valid envelope: {e}"));
                entries.push(LogEntry {
                    seq,
                    id,
                    topic,
                    raw,
                    envelope,
                });
            }
            continue;
        }
        let wanted = |position: i64| position > after;
        let decoded = match packed::decode_any(&raw, count as usize) {
            Ok(Decoded::Rows { shared, rows }) => {
                // Only the rows of the positions wanted are read.
                let from =
                    usize::try_from(after.saturating_add(1).saturating_sub(seq)).unwrap_or(0);
                let to = (count as usize).min(from + (limit - entries.len()));
                if from >= to {
                    continue;
                }
                let source = sources
                    .iter()
                    .find(|s| s.source == rows.source)
                    .ok_or_else(|| {
                        sqlx::Error::Protocol(format!(
                            "the {} log holds events read from rows of {}, which this reader \
                             was not given",
                            db.service(),
                            rows.source
                        ))
                    })?;
                let first = seq + from as i64;
                source
                    .read(db, &shared, &rows, from, to)
                    .await?
                    .map(|events| (first, events))
            }
            Ok(Decoded::Events(events)) => Ok((seq, events)),
            Err(error) => Err(error),
        };
        match decoded {
            Ok((seq, events)) => {
                for (position, event) in (seq..).zip(events) {
                    if entries.len() >= limit {
                        break;
                    }
                    if !wanted(position) {
                        continue;
                    }
                    let raw = serde_json::to_string(&event).unwrap_or_default();
                    entries.push(LogEntry {
                        seq: position,
                        id: event.id.to_string(),
                        topic: topic.clone(),
                        raw,
                        envelope: Ok(event),
                    });
                }
            }
            // Every position of a row that cannot be read is an entry that says so, so that a
            // consumer parks each of them instead of stopping there.
            Err(error) => {
                for (i, position) in (seq..seq + count).enumerate() {
                    if wanted(position) && entries.len() < limit {
                        entries.push(LogEntry {
                            seq: position,
                            id: format!("{id}/{i}"),
                            topic: topic.clone(),
                            raw: raw.clone(),
                            envelope: Err(error.clone()),
                        });
                    }
                }
            }
        }
    }
    Ok(entries)
}

/// The last position handed out in the log (0 when empty).
pub async fn head(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT last_seq FROM log_head WHERE id = 1")
        .fetch_one(db.reader())
        .await?
        .try_get(0)
}
