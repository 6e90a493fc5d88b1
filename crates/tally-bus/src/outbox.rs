//! Appending events to a service's outbox, in the transaction of the change they describe.

use std::sync::LazyLock;

use sqlx::Row as _;
use tally_db::{Backend, Db, WriteTx};
use tally_kernel::event::DomainEvent;
use tally_kernel::{Envelope, EventMeta};

use crate::packed;
use crate::rows::RowEvents;
use uuid::Uuid;

/// Writes `events` to the outbox of `db` inside `tx`. They become visible to consumers when `tx`
/// commits, and never otherwise.
///
/// On SQLite the log position is taken here: the immediate transaction holds the only write lock,
/// so positions are handed out in commit order. On PostgreSQL concurrent transactions commit in
/// any order, so rows are left unsequenced and the sequencer numbers them once committed.
pub async fn append(db: &Db, tx: &mut WriteTx, events: &[Envelope]) -> Result<(), sqlx::Error> {
    prepare(db, events)?.append(tx).await
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
    prepare_publish(db, source, meta, events)?.append(tx).await
}

/// Events serialized for the outbox, not yet written. [`prepare`] does the work that needs no
/// database (serializing the envelopes and, on PostgreSQL, the statements' JSON), so that a
/// caller may do it outside its transaction, on another thread (the claims importer prepares a
/// batch while the previous one is written); [`Prepared::append`] then writes the rows.
pub struct Prepared {
    backend: Backend,
    /// SQLite, and packed rows on PostgreSQL: one row per event or per packed run.
    rows: Vec<Row>,
    /// PostgreSQL, one row per event: JSON arrays of rows, one per statement.
    chunks: Vec<String>,
}

/// One outbox row without its position.
struct Row {
    id: String,
    topic: String,
    partition_key: String,
    envelope: String,
    created_at: String,
    /// How many events the row holds (more than one only when packed).
    entries: i64,
}

impl Row {
    fn single(event: &Envelope) -> Result<Row, sqlx::Error> {
        Ok(Row {
            id: event.id.to_string(),
            topic: event.event_type.clone(),
            partition_key: event.aggregate_id.clone(),
            envelope: serde_json::to_string(event).map_err(encode_error)?,
            created_at: tally_kernel::time::to_db(event.occurred_at),
            entries: 1,
        })
    }
}

/// Serializes `events` for the outbox of `db`, one row per event; see [`Prepared`].
pub fn prepare(db: &Db, events: &[Envelope]) -> Result<Prepared, sqlx::Error> {
    let backend = db.backend();
    let mut prepared = Prepared {
        backend,
        rows: Vec::new(),
        chunks: Vec::new(),
    };
    match backend {
        Backend::Sqlite => {
            prepared.rows.reserve_exact(events.len());
            for event in events {
                prepared.rows.push(Row::single(event)?);
            }
        }
        Backend::Postgres => {
            let mut envelope = Vec::new();
            for chunk in events.chunks(ROWS_PER_STATEMENT) {
                let mut rows = Vec::new();
                rows.push(b'[');
                for (i, event) in chunk.iter().enumerate() {
                    envelope.clear();
                    serde_json::to_writer(&mut envelope, event).map_err(encode_error)?;
                    let envelope = std::str::from_utf8(&envelope).map_err(encode_error)?;
                    let row = (
                        event.id.hyphenated(),
                        &event.event_type,
                        &event.aggregate_id,
                        envelope,
                        tally_kernel::time::to_db(event.occurred_at),
                    );
                    if i > 0 {
                        rows.push(b',');
                    }
                    serde_json::to_writer(&mut rows, &row).map_err(encode_error)?;
                }
                rows.push(b']');
                prepared
                    .chunks
                    .push(String::from_utf8(rows).map_err(encode_error)?);
            }
        }
    }
    Ok(prepared)
}

/// Serializes `events` for the outbox of `db` with runs of events that share their type, source,
/// time and cause packed into one row each (see [`crate::PACKED_EVENTS`]): for bulk writes. The
/// log reader expands packed rows, so consumers see the same events either way, one per
/// position.
pub fn prepare_packed(db: &Db, events: &[Envelope]) -> Result<Prepared, sqlx::Error> {
    let mut rows = Vec::new();
    for run in packed::runs(events) {
        if run.len() == 1 {
            rows.push(Row::single(&run[0])?);
            continue;
        }
        let mut text = Vec::new();
        packed::encode(run, &mut text).map_err(encode_error)?;
        let first = &run[0];
        rows.push(Row {
            // The row's own id; each event keeps its id inside.
            id: tally_kernel::id::new_v7().to_string(),
            topic: first.event_type.clone(),
            partition_key: first.aggregate_id.clone(),
            envelope: String::from_utf8(text).map_err(encode_error)?,
            created_at: tally_kernel::time::to_db(first.occurred_at),
            entries: run.len() as i64,
        });
    }
    Ok(Prepared {
        backend: db.backend(),
        rows,
        chunks: Vec::new(),
    })
}

/// [`prepare`] for the envelopes of `events` published by `source` as `meta` says, stamped with
/// one time.
pub fn prepare_publish<E: DomainEvent>(
    db: &Db,
    source: &str,
    meta: &EventMeta,
    events: &[E],
) -> Result<Prepared, sqlx::Error> {
    prepare(db, &envelopes(source, meta, events))
}

/// The envelopes of `events` published by `source` as `meta` says, stamped with one time.
fn envelopes<E: DomainEvent>(source: &str, meta: &EventMeta, events: &[E]) -> Vec<Envelope> {
    let now = tally_kernel::time::now();
    events
        .iter()
        .map(|e| e.to_envelope(source, meta, now))
        .collect()
}

/// [`prepare_packed`] for the envelopes of `events` published by `source` as `meta` says,
/// stamped with one time (so that they pack). Writes each row's text from the events directly,
/// without making their envelopes: the same rows, at a fraction of the cost per event.
pub fn prepare_publish_packed<E: DomainEvent>(
    db: &Db,
    source: &str,
    meta: &EventMeta,
    events: &[E],
) -> Result<Prepared, sqlx::Error> {
    let now = tally_kernel::time::now();
    let created_at = tally_kernel::time::to_db(now);
    let mut rows = Vec::new();
    let mut ids = Vec::with_capacity(crate::PACKED_EVENTS);
    for run in packed::event_runs(events) {
        if let [event] = run {
            rows.push(Row::single(&event.to_envelope(source, meta, now))?);
            continue;
        }
        ids.clear();
        ids.extend(tally_kernel::id::new_v7_run(run.len()));
        let mut text = Vec::with_capacity(run.len() * 384);
        packed::encode_events(run, &ids, source, meta, now, &mut text).map_err(encode_error)?;
        rows.push(Row {
            id: tally_kernel::id::new_v7().to_string(),
            topic: run[0].event_type().to_owned(),
            partition_key: run[0].aggregate_id(),
            envelope: String::from_utf8(text).map_err(encode_error)?,
            created_at: created_at.clone(),
            entries: run.len() as i64,
        });
    }
    Ok(Prepared {
        backend: db.backend(),
        rows,
        chunks: Vec::new(),
    })
}

/// The outbox row of `count` events of `rows`' type published by `source` as `meta` says, read
/// from the rows with the ids from `first_row` on, which the same transaction writes (see
/// [`crate::rows`]): the run's ids must be consecutive, as [`tally_kernel::id::new_v7_run`]
/// makes them, and the rows must never change afterwards. The row holds no event data: the log
/// reader builds the events from the rows.
pub fn prepare_publish_rows(
    db: &Db,
    source: &str,
    meta: &EventMeta,
    rows: &RowEvents,
    first_row: Uuid,
    count: usize,
) -> Result<Prepared, sqlx::Error> {
    let mut prepared = Prepared {
        backend: db.backend(),
        rows: Vec::new(),
        chunks: Vec::new(),
    };
    if count == 0 {
        return Ok(prepared);
    }
    // The run's ids differ in their lowest 32 bits only (as `new_v7_run` makes them).
    let fits = first_row
        .as_u128()
        .checked_add(count as u128 - 1)
        .is_some_and(|last| last >> 32 == first_row.as_u128() >> 32);
    if !fits {
        return Err(sqlx::Error::Protocol(format!(
            "a run of {count} rows from {first_row} does not fit in its ids' counter"
        )));
    }
    let now = tally_kernel::time::now();
    let first_event = tally_kernel::id::new_v7_run(count)
        .next()
        .unwrap_or_else(tally_kernel::id::new_v7);
    let shared = packed::Shared {
        event_type: rows.event_type,
        version: rows.version,
        source,
        aggregate_type: rows.aggregate_type,
        occurred_at: now,
        correlation_id: meta.correlation_id.as_str(),
        causation_id: meta.causation_id.as_str(),
    };
    let reference = packed::RowsRef {
        source: rows.source,
        first_row,
        first_event,
    };
    prepared.rows.push(Row {
        id: tally_kernel::id::new_v7().to_string(),
        topic: rows.event_type.to_owned(),
        partition_key: first_row.to_string(),
        envelope: packed::encode_rows(shared, reference).map_err(encode_error)?,
        created_at: tally_kernel::time::to_db(now),
        entries: count as i64,
    });
    Ok(prepared)
}

impl Prepared {
    /// Writes the rows inside `tx` (see [`append`]). The same prepared events may be appended
    /// again in a new transaction after this one rolled back.
    pub async fn append(&self, tx: &mut WriteTx) -> Result<(), sqlx::Error> {
        match self.backend {
            Backend::Sqlite if !self.rows.is_empty() => {
                let count: i64 = self.rows.iter().map(|r| r.entries).sum();
                let last: i64 = sqlx::query(
                    "UPDATE log_head SET last_seq = last_seq + $1 WHERE id = 1 RETURNING last_seq",
                )
                .bind(count)
                .fetch_one(&mut **tx)
                .await?
                .try_get(0)?;
                append_sqlite(tx, &self.rows, last - count + 1).await
            }
            Backend::Sqlite => Ok(()),
            Backend::Postgres => {
                for json in &self.chunks {
                    sqlx::query(INSERT_JSON)
                        .bind(json.as_str())
                        .execute(&mut **tx)
                        .await?;
                }
                append_postgres_rows(tx, &self.rows).await
            }
        }
    }
}

impl Prepared {
    /// Writes the rows inside a transaction of the native PostgreSQL driver (see
    /// [`tally_db::Db::begin_postgres`]): the same rows [`Prepared::append`] writes, with each
    /// column bound as one array, however many rows there are.
    pub async fn append_postgres(&self, conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
        if self.backend != Backend::Postgres {
            return Err(sqlx::Error::Protocol(
                "outbox rows prepared for SQLite cannot be written to PostgreSQL".into(),
            ));
        }
        for json in &self.chunks {
            sqlx::query(INSERT_JSON)
                .bind(json.as_str())
                .execute(&mut *conn)
                .await?;
        }
        if self.rows.is_empty() {
            return Ok(());
        }
        let column = |f: fn(&Row) -> &str| self.rows.iter().map(f).collect::<Vec<&str>>();
        sqlx::query(
            "INSERT INTO outbox (id, topic, partition_key, envelope, created_at, entries) \
             SELECT * FROM unnest(CAST($1 AS TEXT[]), CAST($2 AS TEXT[]), CAST($3 AS TEXT[]), \
             CAST($4 AS TEXT[]), CAST($5 AS TEXT[]), CAST($6 AS BIGINT[]))",
        )
        .bind(column(|r| &r.id))
        .bind(column(|r| &r.topic))
        .bind(column(|r| &r.partition_key))
        .bind(column(|r| &r.envelope))
        .bind(column(|r| &r.created_at))
        .bind(self.rows.iter().map(|r| r.entries).collect::<Vec<i64>>())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

/// The multi-row `INSERT` of `rows` outbox rows on SQLite.
fn insert_rows_sqlite(rows: usize) -> String {
    format!(
        "INSERT INTO outbox (id, seq, topic, partition_key, envelope, created_at, entries) \
         VALUES {}",
        tally_db::sqlite_values(rows, 7)
    )
}

/// SQLite: multi-row statements (see [`tally_db::sqlite_values`]), the positions from
/// `first_seq` on.
async fn append_sqlite(tx: &mut WriteTx, rows: &[Row], first_seq: i64) -> Result<(), sqlx::Error> {
    static FULL: LazyLock<(usize, String)> = LazyLock::new(|| {
        let rows = tally_db::sqlite_rows_per_statement(7);
        (rows, insert_rows_sqlite(rows))
    });
    let sizes: Vec<usize> = tally_db::sqlite_statement_sizes(rows.len(), 7).collect();
    let mut rows = rows.iter();
    let mut seq = first_seq;
    for size in sizes {
        let sql = tally_db::sqlite_statement(size, &FULL, insert_rows_sqlite);
        let mut query = sqlx::query(&sql);
        for row in rows.by_ref().take(size) {
            query = query
                .bind(row.id.as_str())
                .bind(seq)
                .bind(row.topic.as_str())
                .bind(row.partition_key.as_str())
                .bind(row.envelope.as_str())
                .bind(row.created_at.as_str())
                .bind(row.entries);
            seq += row.entries;
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// PostgreSQL: rows written with their own parameters (packed rows: few, each large), left
/// unsequenced.
async fn append_postgres_rows(tx: &mut WriteTx, rows: &[Row]) -> Result<(), sqlx::Error> {
    const PER_STATEMENT: usize = 100;
    for chunk in rows.chunks(PER_STATEMENT) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let params: Vec<String> =
                    (i * 6 + 1..=i * 6 + 6).map(|p| format!("${p}")).collect();
                format!("({})", params.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO outbox (id, topic, partition_key, envelope, created_at, entries) VALUES {}",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for row in chunk {
            query = query
                .bind(row.id.as_str())
                .bind(row.topic.as_str())
                .bind(row.partition_key.as_str())
                .bind(row.envelope.as_str())
                .bind(row.created_at.as_str())
                .bind(row.entries);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Most outbox rows written by one statement on PostgreSQL.
const ROWS_PER_STATEMENT: usize = 10_000;

/// `INSERT INTO outbox ... SELECT` over the rows of a JSON array bound as `$1`, each row
/// `[id, topic, partition_key, envelope, created_at]`, unsequenced (PostgreSQL).
const INSERT_JSON: &str = "INSERT INTO outbox (id, topic, partition_key, envelope, created_at) \
     SELECT r ->> 0, r ->> 1, r ->> 2, r ->> 3, r ->> 4 \
     FROM jsonb_array_elements(CAST($1 AS JSONB)) AS r";

fn encode_error(e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Encode(Box::new(e))
}

/// Most unsequenced rows numbered in one sequencer transaction. Small enough that PostgreSQL
/// reads them in order from the `outbox_unsequenced` index even before it has statistics (with
/// 4,000 and more it sorted the whole backlog instead: 300 ms a round instead of 10 ms).
pub const SEQUENCE_BATCH: i64 = 1_000;

/// Numbers committed but unsequenced outbox rows (PostgreSQL), in the order they were written
/// (`created_at`, then `id`), with one set-based `UPDATE`. Locking `log_head` makes sequencers of
/// several processes take turns. Returns how many rows were numbered (0 on SQLite, whose rows
/// are numbered when written).
pub async fn sequence_pending(db: &Db) -> Result<u64, sqlx::Error> {
    if db.backend() == Backend::Sqlite {
        // SQLite rows are numbered when written.
        return Ok(0);
    }
    let mut tx = db.begin_write().await?;
    // Locks the head (on PostgreSQL the row lock is held until the end of the transaction).
    let head: i64 =
        sqlx::query("UPDATE log_head SET last_seq = last_seq WHERE id = 1 RETURNING last_seq")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
    // In (created_at, id) order, each row takes the positions after the ones before it: a row of
    // n entries (packed) takes n of them. The running sum counts without gaps, and each chosen
    // row is updated once (ids are unique). The oldest rows are chosen first, then numbered.
    let numbered = sqlx::query(
        "WITH pending AS (\
           SELECT id, entries, SUM(entries) OVER (ORDER BY created_at, id) AS upto FROM (\
             SELECT id, entries, created_at FROM outbox WHERE seq IS NULL \
             ORDER BY created_at, id LIMIT $2) AS oldest), \
         numbered AS (\
           UPDATE outbox SET seq = $1 + pending.upto - pending.entries + 1 FROM pending \
           WHERE outbox.id = pending.id RETURNING outbox.entries) \
         SELECT COUNT(*), CAST(COALESCE(SUM(entries), 0) AS BIGINT) FROM numbered",
    )
    .bind(head)
    .bind(SEQUENCE_BATCH)
    .fetch_one(&mut *tx)
    .await?;
    let (numbered, positions): (i64, i64) = (numbered.try_get(0)?, numbered.try_get(1)?);
    if numbered == 0 {
        tx.rollback().await?;
        return Ok(0);
    }
    sqlx::query("UPDATE log_head SET last_seq = $1 WHERE id = 1")
        .bind(head + positions)
        .execute(&mut *tx)
        .await?;
    db.commit(tx).await?;
    Ok(numbered as u64)
}

/// How many committed events still wait for a position (always 0 on SQLite).
pub async fn unsequenced(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT CAST(COALESCE(SUM(entries), 0) AS BIGINT) FROM outbox WHERE seq IS NULL")
        .fetch_one(db.reader())
        .await?
        .try_get(0)
}
