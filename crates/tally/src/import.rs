//! `tally import-claims FILE`: streams a payer CSV of any size into the claims service.
//!
//! A blocking thread reads and validates rows, prepares them for storing in chunks of at most
//! 10,000 claims (ids, net fees, rows and events serialized) and hands the chunks to the async
//! side, so that preparing and storing overlap while memory stays constant (at most two
//! transactions' chunks in flight). A transaction holds `--batch-size` claims, written chunk by
//! chunk through a [`BulkWriter`], which grows each provider's total once, at the commit.
//! Transactions commit in file order, each only if every one before it did: what is stored is
//! always a prefix of the file's good rows. On PostgreSQL the next transaction writes its claims
//! on a second connection while the previous one finishes, so both cores can work.
//!
//! Unlike `POST /claims`, which stores nothing when a row is bad, the importer stores every good
//! row and writes the rejected ones, with their reasons, to a JSON-lines file.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tally_claims::adapters::store::MAX_BATCH_CLAIMS;
use tally_claims::{BulkWriter, Claim, PreparedBatch, RowRejection};
use tally_db::{Backend, Db};
use tally_kernel::EventMeta;
use tokio::sync::{mpsc, oneshot};

/// Most claims stored in one transaction.
pub const MAX_BATCH: usize = 1_000_000;

/// Most prepared chunks waiting for their transaction's writer (each about 5 MB): how far the
/// reader may run ahead of the database, whatever the transaction's size.
const CHUNKS_AHEAD: usize = 16;

/// Claims stored per transaction unless told otherwise. SQLite: 10,000 (larger transactions
/// spill the writer's page cache and gain nothing). PostgreSQL: 100,000, so that each provider's
/// total, whose every update rewrites its entry in the ranking index, grows once per 100,000
/// claims rather than once per 10,000, while a whole transaction's chunks still fit in the
/// reader's lead (see `CHUNKS_AHEAD`): the next transaction then writes on a second connection
/// while this one finishes, and both cores work. (Measured with `tally bench import-claims`:
/// 250,000 and 500,000 were no faster, 1,000,000 slower, as one transaction leaves one core
/// idle.)
pub fn default_batch(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => 10_000,
        Backend::Postgres => 100_000,
    }
}

/// A prepared chunk of claims, and whether its transaction commits after it.
struct Chunk {
    batch: PreparedBatch,
    commits: bool,
}

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

/// Imports the claims CSV at `path`; `batch_size` claims a transaction (at most [`MAX_BATCH`];
/// `None`: [`default_batch`]).
pub async fn import_claims(
    db: &Db,
    path: &Path,
    batch_size: Option<usize>,
    rejects_path: &Path,
    show_progress: bool,
) -> anyhow::Result<ImportReport> {
    import_in_chunks(
        db,
        path,
        batch_size,
        MAX_BATCH_CLAIMS,
        rejects_path,
        show_progress,
    )
    .await
}

/// [`import_claims`], preparing chunks of at most `max_chunk` claims.
async fn import_in_chunks(
    db: &Db,
    path: &Path,
    batch_size: Option<usize>,
    max_chunk: usize,
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
    let batch_size = batch_size
        .unwrap_or_else(|| default_batch(db.backend()))
        .clamp(1, MAX_BATCH);
    let (chunks, mut incoming) = mpsc::channel::<Chunk>(2);
    // A whole transaction's chunks may wait for their writer (up to `CHUNKS_AHEAD`), so that the
    // reader reaches the next transaction, and a second connection starts on it, while this one
    // still writes.
    let ahead = batch_size.div_ceil(max_chunk).clamp(1, CHUNKS_AHEAD);
    let rejects_file = rejects_path.to_owned();
    let meta = EventMeta::from_request(&format!("import-{}", tally_kernel::id::new_v7()));
    let (reader_db, reader_meta) = (db.clone(), meta.clone());
    // The reader thread also prepares each chunk (ids, net fees, every row and event
    // serialized), so that the next one is ready while the database writes this one.
    let parser = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
        let rows = tally_claims::csv_rows(reader).context("the file is not a claims CSV")?;
        let mut rejects = BufWriter::new(
            File::create(&rejects_file)
                .with_context(|| format!("failed to create {}", rejects_file.display()))?,
        );
        let mut rejected = 0;
        // Claims of the current transaction already in earlier chunks.
        let mut in_transaction = 0;
        let mut chunk_size = max_chunk.min(batch_size);
        let mut chunk = Vec::with_capacity(chunk_size);
        let send = |claims: Vec<Claim>, commits: bool| -> anyhow::Result<bool> {
            let mut batch = tally_claims::prepare_batch(&reader_db, claims, &reader_meta)?;
            batch.release_claims();
            // An error means the storing side stopped on an error, which it reports.
            Ok(chunks.blocking_send(Chunk { batch, commits }).is_ok())
        };
        for row in rows {
            match row.context("the file could not be read to its end")? {
                Ok(claim) => {
                    chunk.push(claim);
                    if chunk.len() == chunk_size {
                        in_transaction += chunk_size;
                        let commits = in_transaction == batch_size;
                        if commits {
                            in_transaction = 0;
                        }
                        chunk_size = max_chunk.min(batch_size - in_transaction);
                        let full = std::mem::replace(&mut chunk, Vec::with_capacity(chunk_size));
                        if !send(full, commits)? {
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
        if !chunk.is_empty() {
            send(chunk, true)?;
        }
        rejects.flush()?;
        Ok(rejected)
    });

    let mut accepted = 0;
    // One task per transaction. The next transaction starts writing while the previous one
    // finishes (on SQLite it waits for it to end instead), and commits only after it: with
    // `false` from its turn, it rolls back.
    let mut in_flight: Option<tokio::task::JoinHandle<anyhow::Result<u64>>> = None;
    let mut previous_done: Option<oneshot::Receiver<bool>> = None;
    while let Some(first) = incoming.recv().await {
        let (feed, mut batches) = mpsc::channel::<PreparedBatch>(ahead);
        let (done, done_rx) = oneshot::channel();
        let turn = previous_done.replace(done_rx);
        let task_db = db.clone();
        let task = tokio::spawn(async move {
            let stored = async {
                let mut turn = turn;
                const NOT_STORED: &str = "a transaction before this one was not stored";
                // SQLite has one write connection: waiting for it while the transaction before
                // still writes could outlast the pool's acquire timeout, so wait for the turn
                // before asking for it.
                if task_db.backend() == Backend::Sqlite {
                    anyhow::ensure!(take_turn(&mut turn).await, NOT_STORED);
                }
                let mut writer = BulkWriter::begin(&task_db).await?;
                while let Some(batch) = batches.recv().await {
                    writer.write(&batch).await?;
                }
                if !take_turn(&mut turn).await {
                    writer.rollback().await?;
                    anyhow::bail!(NOT_STORED);
                }
                Ok(writer.commit().await? as u64)
            }
            .await;
            let _ = done.send(stored.is_ok());
            stored
        });
        let mut commits = first.commits;
        let mut open = feed.send(first.batch).await.is_ok();
        while open && !commits {
            let Some(chunk) = incoming.recv().await else {
                break;
            };
            commits = chunk.commits;
            open = feed.send(chunk.batch).await.is_ok();
        }
        drop(feed);
        if let Some(previous) = in_flight.replace(task) {
            accepted += stored(previous, accepted).await?;
        }
        if !open {
            // The transaction failed before it had all its chunks: report why.
            if let Some(current) = in_flight.take() {
                accepted += stored(current, accepted).await?;
            }
        }
    }
    if let Some(last) = in_flight {
        accepted += stored(last, accepted).await?;
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

/// Waits for the transaction before (if any, and if not waited for already) to end: `true` if it
/// committed.
async fn take_turn(turn: &mut Option<oneshot::Receiver<bool>>) -> bool {
    match turn.take() {
        Some(previous) => previous.await.unwrap_or(false),
        None => true,
    }
}

/// How many claims a transaction's task stored.
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sqlx::Row as _;
    use tally_db::testing::{TestBackend, TestLocation};

    use super::*;

    const HEADER: &str = "service date,submitted procedure,quadrant,Plan/Group #,Subscriber#,\
                          Provider NPI,provider fees,Allowed fees,member coinsurance,member copay\n";

    /// An NPI: nine digits and the Luhn check digit over `80840` and them.
    fn npi(n: u64) -> String {
        let nine = format!("{:09}", 100_000_000 + n);
        let check = tally_kernel::luhn::check_digit(&format!("80840{nine}"));
        format!("{nine}{check}")
    }

    /// 2,503 rows, every 100th refused, imported 1,000 claims a transaction in chunks of 100:
    /// transactions of many chunks, the last one partial. Every good row is stored once, each
    /// provider's total is the sum over its claims, and the log holds one event per claim.
    async fn transactions_of_many_chunks_store_every_good_row_once(backend: TestBackend) {
        let Some(location) = TestLocation::new(backend).await else {
            return;
        };
        let db = Db::open_and_migrate(&location.settings(), &tally_claims::SCHEMA)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("claims.csv");
        let mut csv = String::from(HEADER);
        let rows = 2_503u64;
        for i in 0..rows {
            let procedure = if i % 100 == 42 { "X0100" } else { "D0120" };
            csv.push_str(&format!(
                "3/28/18 0:00,{procedure},UR,G{i},S{i},{},${}.{:02},$1.00,$0.00,$0.00\n",
                npi(i % 7),
                1 + i % 50,
                i % 100
            ));
        }
        std::fs::write(&path, csv).unwrap();
        let report = import_in_chunks(
            &db,
            &path,
            Some(1_000),
            100,
            &dir.path().join("rejects.jsonl"),
            false,
        )
        .await
        .unwrap();
        let rejected = rows.div_ceil(100) - u64::from(rows % 100 <= 42);
        assert_eq!(report.rejected, rejected);
        assert_eq!(report.accepted, rows - rejected);

        let count = |sql: &'static str| {
            let db = db.clone();
            async move {
                sqlx::query(sql)
                    .fetch_one(db.reader())
                    .await
                    .unwrap()
                    .get::<i64, _>(0)
            }
        };
        let accepted = report.accepted as i64;
        assert_eq!(count("SELECT COUNT(*) FROM claims").await, accepted);
        assert_eq!(
            count("SELECT CAST(SUM(entries) AS BIGINT) FROM outbox").await,
            accepted
        );
        let by_provider = |sql: &'static str| {
            let db = db.clone();
            async move {
                sqlx::query(sql)
                    .fetch_all(db.reader())
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| (r.get(0), (r.get(1), r.get(2))))
                    .collect::<BTreeMap<String, (i64, i64)>>()
            }
        };
        let totals = by_provider(
            "SELECT provider_npi, total_net_fee_minor, claim_count FROM provider_totals",
        )
        .await;
        let sums = by_provider(
            "SELECT provider_npi, CAST(SUM(net_fee_minor) AS BIGINT), COUNT(*) FROM claims \
             GROUP BY provider_npi",
        )
        .await;
        assert_eq!(totals.len(), 7);
        assert_eq!(totals, sums);
        db.close().await;
    }
    tally_db::both_backends!(transactions_of_many_chunks_store_every_good_row_once);
}
