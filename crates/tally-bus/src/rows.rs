//! Events read from rows: a bulk write whose events carry only what its own rows hold writes one
//! outbox row naming the run of rows instead of the events, and the log reader builds the events
//! from the rows when it reads them. The transaction then writes each event's data once, in its
//! table, instead of twice.
//!
//! A run is the rows whose ids are consecutive (as [`tally_kernel::id::new_v7_run`] makes them),
//! all written by the transaction that writes the outbox row: the ids from the first to the
//! first plus the count hold exactly those rows, since any other row with one of those ids would
//! have been refused by the table's key. The rows must never change or go away afterwards (the
//! table should refuse updates and deletes), so that the events read are always the events
//! written.

use sqlx::any::AnyRow;
use tally_db::{Backend, Db};
use tally_kernel::Envelope;
use uuid::Uuid;

use crate::packed::{RowsRef, Shared};

/// How the events of one type are read from a service's rows.
#[derive(Debug)]
pub struct RowEvents {
    /// The name the outbox rows give the source by.
    pub source: &'static str,
    pub event_type: &'static str,
    pub version: u32,
    pub aggregate_type: &'static str,
    /// SQLite: the rows whose ids are in `[$1, $2)` (bound as hyphenated text), in id order.
    pub sqlite: &'static str,
    /// PostgreSQL: the same query.
    pub postgres: &'static str,
    /// One row's event: its aggregate id and its data (the same JSON the event had when written).
    pub event: RowEvent,
}

/// Builds one event from one row: its aggregate id and its data.
pub type RowEvent = fn(&AnyRow, Backend) -> Result<(String, serde_json::Value), sqlx::Error>;

impl RowEvents {
    /// The events at indexes `from..to` of `run`, published as `shared` says. `Ok(Err(..))` when
    /// rows of the run are missing: those events cannot be read.
    pub(crate) async fn read(
        &self,
        db: &Db,
        shared: &Shared<String>,
        run: &RowsRef<String>,
        from: usize,
        to: usize,
    ) -> Result<Result<Vec<Envelope>, String>, sqlx::Error> {
        let at = |base: Uuid, index: usize| Uuid::from_u128(base.as_u128() + index as u128);
        let sql = match db.backend() {
            Backend::Sqlite => self.sqlite,
            Backend::Postgres => self.postgres,
        };
        let rows = sqlx::query(sql)
            .bind(at(run.first_row, from).hyphenated().to_string())
            .bind(at(run.first_row, to).hyphenated().to_string())
            .fetch_all(db.reader())
            .await?;
        if rows.len() != to - from {
            return Ok(Err(format!(
                "{} of the {} rows of {} from {} are missing",
                to - from - rows.len().min(to - from),
                to - from,
                self.source,
                at(run.first_row, from)
            )));
        }
        let mut events = Vec::with_capacity(rows.len());
        for (index, row) in (from..).zip(&rows) {
            let (aggregate_id, data) = (self.event)(row, db.backend())?;
            events.push(shared.envelope(at(run.first_event, index), aggregate_id, data));
        }
        Ok(Ok(events))
    }
}
