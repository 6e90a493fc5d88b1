//! Consumers: named handlers of topics, applying each event's effect exactly once.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use sqlx::Row as _;
use tally_db::{Db, WriteTx};
use tally_kernel::Envelope;

/// Why a handler could not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// May succeed later (a database hiccup, a service not answering): retried with backoff.
    #[error("transient: {0:#}")]
    Transient(anyhow::Error),
    /// Will never succeed (an unknown event version, a payload that does not parse): goes to
    /// the dead letters at once.
    #[error("permanent: {0:#}")]
    Permanent(anyhow::Error),
}

impl From<sqlx::Error> for HandlerError {
    fn from(e: sqlx::Error) -> Self {
        HandlerError::Transient(e.into())
    }
}

/// The effect of one event on a consumer's own database, applied inside `tx`. The runtime records
/// the event in the inbox and advances the position in the same transaction, and commits it.
pub trait Handler: Send + Sync + 'static {
    fn handle<'a>(
        &'a self,
        db: &'a Db,
        tx: &'a mut WriteTx,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>>;
}

/// A named consumer: the topics it reads, the database it owns, and its handler.
#[derive(Clone)]
pub struct Consumer {
    /// Unique across the platform, e.g. `reporting.statistics`.
    pub name: &'static str,
    pub topics: &'static [&'static str],
    pub db: Db,
    pub handler: Arc<dyn Handler>,
}

/// What happened to one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The effect was applied now.
    Applied,
    /// The inbox already had the event: nothing was done again.
    Duplicate,
}

impl Consumer {
    pub fn wants(&self, topic: &str) -> bool {
        self.topics.contains(&topic)
    }

    /// Applies `event` (read at `seq` of `source`'s log) once: inbox row, effect and position in
    /// one transaction on the consumer's database.
    pub async fn apply(
        &self,
        source: &str,
        seq: i64,
        event: &Envelope,
    ) -> Result<Applied, HandlerError> {
        let mut tx = self.db.begin_write().await?;
        let applied = self.apply_in(&mut tx, event).await?;
        save_position_in(&mut tx, self.name, source, seq).await?;
        self.db.commit(tx).await?;
        Ok(applied)
    }

    /// Applies `events`, read in this order from `source`'s log, in one transaction: each once
    /// (inbox row and effect), then the position `through` (the last of them, or an event after
    /// them that this consumer does not read). One commit for the run instead of one per event:
    /// a consumer that fell behind catches up faster the further behind it is. Any failure
    /// rolls the whole run back; the caller then applies the events one by one.
    pub async fn apply_run(
        &self,
        source: &str,
        events: &[&Envelope],
        through: i64,
    ) -> Result<(), HandlerError> {
        let mut tx = self.db.begin_write().await?;
        for event in events {
            self.apply_in(&mut tx, event).await?;
        }
        save_position_in(&mut tx, self.name, source, through).await?;
        self.db.commit(tx).await?;
        Ok(())
    }

    /// Records `event` in the inbox and, if it was new there, applies its effect, in `tx`.
    pub(crate) async fn apply_in(
        &self,
        tx: &mut WriteTx,
        event: &Envelope,
    ) -> Result<Applied, HandlerError> {
        let inserted = sqlx::query(
            "INSERT INTO inbox (consumer, event_id, applied_at) VALUES ($1, $2, $3) \
             ON CONFLICT (consumer, event_id) DO NOTHING",
        )
        .bind(self.name)
        .bind(event.id.to_string())
        .bind(tally_kernel::time::to_db(tally_kernel::time::now()))
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(Applied::Duplicate);
        }
        self.handler.handle(&self.db, tx, event).await?;
        Ok(Applied::Applied)
    }

    /// The position this consumer has reached in `source`'s log (0 before the first event).
    pub async fn position(&self, source: &str) -> Result<i64, sqlx::Error> {
        let row = sqlx::query(
            "SELECT position FROM consumer_positions WHERE consumer = $1 AND source = $2",
        )
        .bind(self.name)
        .bind(source)
        .fetch_optional(self.db.reader())
        .await?;
        row.map(|r| r.try_get(0))
            .transpose()
            .map(|p| p.unwrap_or(0))
    }

    /// Moves the position past events this consumer does not read.
    pub async fn save_position(&self, source: &str, seq: i64) -> Result<(), sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        save_position_in(&mut tx, self.name, source, seq).await?;
        tx.commit().await
    }
}

pub(crate) async fn save_position_in(
    tx: &mut WriteTx,
    consumer: &str,
    source: &str,
    seq: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO consumer_positions (consumer, source, position, updated_at) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (consumer, source) DO UPDATE \
         SET position = excluded.position, updated_at = excluded.updated_at",
    )
    .bind(consumer)
    .bind(source)
    .bind(seq)
    .bind(tally_kernel::time::to_db(tally_kernel::time::now()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
