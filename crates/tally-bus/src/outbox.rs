//! Appending events to a service's outbox, in the transaction of the change they describe.

use sqlx::Row as _;
use tally_db::{Backend, Db, WriteTx};
use tally_kernel::event::DomainEvent;
use tally_kernel::{Envelope, EventMeta};

/// Writes `events` to the outbox of `db` inside `tx`. They become visible to consumers when `tx`
/// commits, and never otherwise.
///
/// On SQLite the log position is taken here: the immediate transaction holds the only write lock,
/// so positions are handed out in commit order. On PostgreSQL concurrent transactions commit in
/// any order, so rows are left unsequenced and the sequencer numbers them once committed.
pub async fn append(db: &Db, tx: &mut WriteTx, events: &[Envelope]) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let first_seq = match db.backend() {
        Backend::Sqlite => {
            let row = sqlx::query(
                "UPDATE log_head SET last_seq = last_seq + $1 WHERE id = 1 RETURNING last_seq",
            )
            .bind(events.len() as i64)
            .fetch_one(&mut **tx)
            .await?;
            let last: i64 = row.try_get(0)?;
            Some(last - events.len() as i64 + 1)
        }
        Backend::Postgres => None,
    };
    // Many events (an import's batch) go in multi-row statements.
    let rows_per_statement = db.rows_per_statement(6);
    for (chunk_index, chunk) in events.chunks(rows_per_statement).enumerate() {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p = i * 6;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${})",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5,
                    p + 6
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO outbox (id, seq, topic, partition_key, envelope, created_at) VALUES {}",
            rows.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for (i, event) in chunk.iter().enumerate() {
            let envelope =
                serde_json::to_string(event).map_err(|e| sqlx::Error::Encode(e.into()))?;
            let position = (chunk_index * rows_per_statement + i) as i64;
            query = query
                .bind(event.id.to_string())
                .bind(first_seq.map(|s| s + position))
                .bind(&event.event_type)
                .bind(&event.aggregate_id)
                .bind(envelope)
                .bind(tally_kernel::time::to_db(event.occurred_at));
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Publishes `events` of the service `source`, caused as `meta` says: the events become
/// envelopes stamped with one time and are appended to the outbox in `tx` (see [`append`]).
pub async fn publish<E: DomainEvent>(
    db: &Db,
    tx: &mut WriteTx,
    source: &str,
    meta: &EventMeta,
    events: &[E],
) -> Result<(), sqlx::Error> {
    let now = tally_kernel::time::now();
    let envelopes: Vec<Envelope> = events
        .iter()
        .map(|e| e.to_envelope(source, meta, now))
        .collect();
    append(db, tx, &envelopes).await
}

/// Most unsequenced rows numbered in one sequencer transaction.
pub const SEQUENCE_BATCH: i64 = 1_000;

/// Numbers committed but unsequenced outbox rows (PostgreSQL), in the order they were written.
/// Locking `log_head` makes sequencers of several processes take turns. Returns how many rows
/// were numbered.
pub async fn sequence_pending(db: &Db) -> Result<u64, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    let head: i64 =
        sqlx::query("UPDATE log_head SET last_seq = last_seq WHERE id = 1 RETURNING last_seq")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
    let pending =
        sqlx::query("SELECT id FROM outbox WHERE seq IS NULL ORDER BY created_at, id LIMIT $1")
            .bind(SEQUENCE_BATCH)
            .fetch_all(&mut *tx)
            .await?;
    if pending.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    let mut seq = head;
    for row in &pending {
        seq += 1;
        let id: String = row.try_get(0)?;
        sqlx::query("UPDATE outbox SET seq = $1 WHERE id = $2")
            .bind(seq)
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("UPDATE log_head SET last_seq = $1 WHERE id = 1")
        .bind(seq)
        .execute(&mut *tx)
        .await?;
    db.commit(tx).await?;
    Ok(pending.len() as u64)
}

/// How many committed events still wait for a position (always 0 on SQLite).
pub async fn unsequenced(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) FROM outbox WHERE seq IS NULL")
        .fetch_one(db.reader())
        .await?
        .try_get(0)
}
