//! `tally import-claims FILE`: streams a payer CSV of any size into the claims service.
//!
//! A blocking thread reads and validates rows, prepares each batch for storing (ids, net fees,
//! rows and events serialized) and hands it to the async side over a bounded channel, so memory
//! stays constant (a few batches in flight at most) while preparing and storing overlap. Each
//! batch is one transaction, and batches commit in file order. Unlike `POST /claims`, which
//! stores nothing when a row is bad, the importer stores every good row and writes the rejected
//! ones, with their reasons, to a JSON-lines file.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tally_claims::{Claim, PreparedBatch, RowRejection};
use tally_db::{Backend, Db};
use tally_kernel::EventMeta;

/// Most claims stored in one transaction.
pub const MAX_BATCH: usize = 10_000;

pub struct ImportReport {
    pub accepted: u64,
    pub rejected: u64,
    pub elapsed: Duration,
    /// Where the rejected rows were written (absent when every row was accepted).
    pub rejects: Option<PathBuf>,
}

impl ImportReport {
    pub fn rows_per_second(&self) -> u64 {
        let rows = u128::from(self.accepted + self.rejected);
        let micros = self.elapsed.as_micros().max(1);
        u64::try_from(rows * 1_000_000 / micros).unwrap_or(u64::MAX)
    }
}

pub async fn import_claims(
    db: &Db,
    path: &Path,
    batch_size: usize,
    rejects_path: &Path,
    show_progress: bool,
) -> anyhow::Result<ImportReport> {
    let started = Instant::now();
    let file = File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = if show_progress {
        ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .context("failed to build the progress bar")?,
    );
    let reader = bar.wrap_read(BufReader::with_capacity(1 << 20, file));
    let batch_size = batch_size.clamp(1, MAX_BATCH);
    let (batches, mut incoming) = tokio::sync::mpsc::channel::<PreparedBatch>(2);
    let rejects_file = rejects_path.to_owned();
    let meta = EventMeta::from_request(&format!("import-{}", tally_kernel::id::new_v7()));
    let (reader_db, reader_meta) = (db.clone(), meta.clone());
    // The reader thread also prepares each batch (ids, net fees, every row and event
    // serialized), so that the next batch is ready while the database writes this one.
    let parser = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
        let prepare =
            |claims: &[Claim]| tally_claims::prepare_batch(&reader_db, claims, &reader_meta);
        let rows = tally_claims::csv_rows(reader).context("the file is not a claims CSV")?;
        let mut rejects = BufWriter::new(
            File::create(&rejects_file)
                .with_context(|| format!("failed to create {}", rejects_file.display()))?,
        );
        let mut rejected = 0;
        let mut batch = Vec::with_capacity(batch_size);
        for row in rows {
            match row.context("the file could not be read to its end")? {
                Ok(claim) => {
                    batch.push(claim);
                    if batch.len() == batch_size {
                        let prepared = prepare(&batch)?;
                        batch.clear();
                        if batches.blocking_send(prepared).is_err() {
                            // The storing side stopped on an error; it reports it.
                            return Ok(rejected);
                        }
                    }
                }
                Err(rejection) => {
                    rejected += 1;
                    writeln!(rejects, "{}", rejection_json(&rejection))?;
                }
            }
        }
        if !batch.is_empty() {
            let _ = batches.blocking_send(prepare(&batch)?);
        }
        rejects.flush()?;
        Ok(rejected)
    });

    let mut accepted = 0;
    if db.backend() == Backend::Postgres {
        // Two batches in flight on two connections: the next one writes its claims and events
        // while the previous one grows the totals and commits, and commits only after it (see
        // `store_prepared_after`), so batches still commit in file order, each only if every
        // batch before it did.
        let mut in_flight: Option<tokio::task::JoinHandle<anyhow::Result<u64>>> = None;
        let mut previous_done: Option<tokio::sync::oneshot::Receiver<bool>> = None;
        while let Some(batch) = incoming.recv().await {
            let n = batch.len() as u64;
            let (done, done_rx) = tokio::sync::oneshot::channel();
            let turn = previous_done.replace(done_rx);
            let db = db.clone();
            let task = tokio::spawn(async move {
                let turn = async move {
                    match turn {
                        Some(previous) => previous.await.unwrap_or(false),
                        None => true,
                    }
                };
                let stored = tally_claims::store_prepared_after(&db, batch, turn).await;
                let _ = done.send(stored.is_ok());
                stored.map(|_| n)
            });
            if let Some(previous) = in_flight.replace(task) {
                accepted += stored(previous, accepted).await?;
            }
        }
        if let Some(last) = in_flight {
            accepted += stored(last, accepted).await?;
        }
    } else {
        // SQLite has one writer: batches are stored one after the other.
        while let Some(batch) = incoming.recv().await {
            let n = batch.len() as u64;
            tally_claims::store_prepared(db, batch)
                .await
                .with_context(|| format!("failed to store claims after {accepted} were stored"))?;
            accepted += n;
        }
    }
    let rejected = parser.await.context("the reader thread failed")??;
    bar.finish_and_clear();
    let rejects = if rejected > 0 {
        Some(rejects_path.to_owned())
    } else {
        std::fs::remove_file(rejects_path).ok();
        None
    };
    Ok(ImportReport {
        accepted,
        rejected,
        elapsed: started.elapsed(),
        rejects,
    })
}

/// How many claims a batch's task stored.
async fn stored(
    task: tokio::task::JoinHandle<anyhow::Result<u64>>,
    accepted: u64,
) -> anyhow::Result<u64> {
    task.await
        .context("a storing task failed")?
        .with_context(|| format!("failed to store claims after {accepted} were stored"))
}

fn rejection_json(rejection: &RowRejection) -> serde_json::Value {
    let problems: Vec<_> = rejection
        .problems
        .iter()
        .map(|p| serde_json::json!({ "field": p.field.as_deref(), "reason": p.reason.to_string() }))
        .collect();
    serde_json::json!({ "index": rejection.index, "line": rejection.line, "problems": problems })
}
