//! Dead letters: events a consumer gave up on, kept for inspection and redrive.

use serde::Serialize;
use sqlx::Row as _;
use tally_db::Db;
use tally_kernel::Envelope;

use crate::consumer::{save_position_in, Applied, Consumer};
use crate::log::LogEntry;

#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub id: String,
    pub consumer: String,
    pub source: String,
    pub event_id: String,
    pub event_type: String,
    pub error: String,
    pub attempts: i64,
    pub status: String,
    pub created_at: String,
    pub redriven_at: Option<String>,
}

/// Parks a log entry in the consumer's dead letters and moves its position past it, in one
/// transaction: the event is neither lost nor retried forever.
pub async fn bury(
    consumer: &Consumer,
    source: &str,
    entry: &LogEntry,
    error: &str,
    attempts: u32,
) -> Result<(), sqlx::Error> {
    let mut tx = consumer.db.begin_write().await?;
    sqlx::query(
        "INSERT INTO dead_letters (id, consumer, source, event_id, event_type, envelope, error, \
         attempts, status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'dead', $9)",
    )
    .bind(tally_kernel::id::new_v7().to_string())
    .bind(consumer.name)
    .bind(source)
    .bind(&entry.id)
    .bind(&entry.topic)
    .bind(&entry.raw)
    .bind(error)
    .bind(i64::from(attempts))
    .bind(tally_kernel::time::to_db(tally_kernel::time::now()))
    .execute(&mut *tx)
    .await?;
    save_position_in(&mut tx, consumer.name, source, entry.seq).await?;
    consumer.db.commit(tx).await
}

const COLUMNS: &str = "id, consumer, source, event_id, event_type, error, attempts, status, \
                       created_at, redriven_at";

fn from_row(row: &sqlx::any::AnyRow) -> Result<DeadLetter, sqlx::Error> {
    Ok(DeadLetter {
        id: row.try_get(0)?,
        consumer: row.try_get(1)?,
        source: row.try_get(2)?,
        event_id: row.try_get(3)?,
        event_type: row.try_get(4)?,
        error: row.try_get(5)?,
        attempts: row.try_get(6)?,
        status: row.try_get(7)?,
        created_at: row.try_get(8)?,
        redriven_at: row.try_get(9)?,
    })
}

/// Most dead letters listed at once.
pub const LIST_LIMIT: i64 = 1_000;

/// The first [`LIST_LIMIT`] dead letters of one database, oldest first; with `all`, redriven ones
/// too. [`list_page`] reads past them.
pub async fn list(db: &Db, all: bool) -> Result<Vec<DeadLetter>, sqlx::Error> {
    list_page(db, &Page::first(LIST_LIMIT), all).await
}

/// Where a page of dead letters starts and how long it is: pages follow each other by the
/// letters' `(created_at, id)`, so a letter redriven meanwhile shifts no other letter.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Only this consumer's letters (all consumers' when `None`).
    pub consumer: Option<String>,
    /// The `(created_at, id)` of the last letter of the page before.
    pub after: Option<(String, String)>,
    pub limit: i64,
}

impl Page {
    pub fn first(limit: i64) -> Page {
        Page {
            consumer: None,
            after: None,
            limit,
        }
    }

    /// The page after `letters` (the page this one read), or `None` when that was the last.
    pub fn next(&self, letters: &[DeadLetter]) -> Option<Page> {
        let last = letters.last()?;
        (letters.len() as i64 >= self.limit).then(|| Page {
            consumer: self.consumer.clone(),
            after: Some((last.created_at.clone(), last.id.clone())),
            limit: self.limit,
        })
    }
}

/// One page of the dead letters of one database, oldest first; with `all`, redriven ones too.
pub async fn list_page(db: &Db, page: &Page, all: bool) -> Result<Vec<DeadLetter>, sqlx::Error> {
    let mut filters = Vec::new();
    if !all {
        filters.push("status = 'dead'".to_owned());
    }
    let mut next = 1;
    let mut placeholder = || {
        let p = format!("${next}");
        next += 1;
        p
    };
    if page.consumer.is_some() {
        filters.push(format!("consumer = {}", placeholder()));
    }
    if page.after.is_some() {
        let (created, equal, id) = (placeholder(), placeholder(), placeholder());
        filters.push(format!(
            "(created_at > {created} OR (created_at = {equal} AND id > {id}))"
        ));
    }
    let filter = match filters.is_empty() {
        true => String::new(),
        false => format!("WHERE {}", filters.join(" AND ")),
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM dead_letters {filter} ORDER BY created_at, id LIMIT {}",
        placeholder()
    );
    let mut query = sqlx::query(&sql);
    if let Some(consumer) = &page.consumer {
        query = query.bind(consumer.as_str());
    }
    if let Some((created_at, id)) = &page.after {
        query = query
            .bind(created_at.as_str())
            .bind(created_at.as_str())
            .bind(id.as_str());
    }
    let rows = query.bind(page.limit.max(1)).fetch_all(db.reader()).await?;
    rows.iter().map(from_row).collect()
}

pub async fn count_dead(db: &Db, consumer: &str) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) FROM dead_letters WHERE consumer = $1 AND status = 'dead'")
        .bind(consumer)
        .fetch_one(db.reader())
        .await?
        .try_get(0)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedriveOutcome {
    /// The handler applied the event now.
    Applied,
    /// The event had been applied already (the inbox had it): marked redriven, nothing redone.
    AlreadyApplied,
    /// The handler failed again; the dead letter stays, with the new error.
    Failed(String),
    /// No dead letter with that id waits for redrive.
    NotFound,
}

/// Applies a dead letter's event again through its consumer, exactly once.
pub async fn redrive(consumer: &Consumer, id: &str) -> anyhow::Result<RedriveOutcome> {
    let mut tx = consumer.db.begin_write().await?;
    let sql = format!(
        "SELECT envelope FROM dead_letters WHERE id = $1 AND consumer = $2 AND status = 'dead'{}",
        consumer.db.for_update()
    );
    let Some(row) = sqlx::query(&sql)
        .bind(id)
        .bind(consumer.name)
        .fetch_optional(&mut *tx)
        .await?
    else {
        return Ok(RedriveOutcome::NotFound);
    };
    let text: String = row.try_get(0)?;
    let result = match serde_json::from_str::<Envelope>(&text) {
        Ok(event) => consumer.apply_in(&mut tx, &event).await,
        Err(e) => Err(crate::HandlerError::Permanent(anyhow::anyhow!(
            "not a valid envelope: {e}"
        ))),
    };
    let outcome = match result {
        Ok(Applied::Applied) => RedriveOutcome::Applied,
        Ok(Applied::Duplicate) => RedriveOutcome::AlreadyApplied,
        Err(e) => {
            drop(tx);
            let error = e.to_string();
            let mut tx = consumer.db.begin_write().await?;
            sqlx::query(
                "UPDATE dead_letters SET error = $1, attempts = attempts + 1 WHERE id = $2",
            )
            .bind(&error)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(RedriveOutcome::Failed(error));
        }
    };
    sqlx::query("UPDATE dead_letters SET status = 'redriven', redriven_at = $1 WHERE id = $2")
        .bind(tally_kernel::time::to_db(tally_kernel::time::now()))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    consumer.db.commit(tx).await?;
    Ok(outcome)
}
