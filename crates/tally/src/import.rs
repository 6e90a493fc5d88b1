//! `tally import-claims FILE`: streams a payer CSV of any size into the claims service.
//!
//! A blocking thread reads and validates rows, prepares them for storing in chunks of at most
//! 10,000 claims (ids, net fees, rows and events serialized) and hands the chunks to the async
//! side, so that preparing and storing overlap while memory stays constant (at most two
//! transactions' chunks in flight). A transaction holds `--batch-size` claims, written chunk by
//! chunk through a [`BulkWriter`], which grows each provider's total once, at the commit.
//! Transactions commit in file order, each only if every one before it did: what is stored is
//! always a prefix of the file's good rows, and each transaction records, in the same
//! transaction, how many of the file's rows it covers (see [`tally_claims::adapters::imports`]):
//! a file already imported stores nothing, and an import that stopped resumes after the rows its
//! transactions covered. On PostgreSQL a transaction's chunks are the rows of one `COPY`, sent
//! as they come ([`BulkWriter::write_all`]), and the next transaction writes its claims on a
//! second connection while the previous one finishes, so both cores can work.
//!
//! Unlike `POST /claims`, which stores nothing when a row is bad, the importer stores every good
//! row and writes the rejected ones, with their reasons, to a JSON-lines file.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tally_claims::adapters::imports;
use tally_claims::adapters::store::MAX_BATCH_CLAIMS;
use tally_claims::{file_sha256, BulkWriter, Claim, FileImport, PreparedBatch, RowRejection};
use tally_db::{Backend, Db};
use tally_kernel::EventMeta;
use tokio::sync::{mpsc, oneshot};

/// Most claims stored in one transaction.
pub const MAX_BATCH: usize = 1_000_000;

/// Most prepared chunks waiting for their transaction's writer (on PostgreSQL each about 1.5 MB
/// of `COPY` rows): how far the reader may run ahead of the database, whatever the
/// transaction's size. 25 holds a whole transaction of the PostgreSQL default, so that the
/// reader hands a transaction its last chunk, and the next transaction can start, as soon as the
/// one before commits. (Measured: with 16, a transaction spent part of its run waiting alone for
/// room for its last nine chunks, one core idle; 25 took the import from 2.90 s to 2.59 s,
/// medians of eight interleaved runs each, for 8 MiB more memory.)
const CHUNKS_AHEAD: usize = 25;

/// Claims stored per transaction unless told otherwise. SQLite: 100,000, so that each provider's
/// total grows ten times per million claims rather than a hundred (with 10,000 providers, a
/// transaction of 10,000 claims upserts more totals than it inserts claims), while the write
/// lock is held for well under a second at a time. (Measured: 10,000 took 1.6 times as long,
/// 50,000 about as long.) PostgreSQL: 250,000, so that each provider's
/// total, whose every update rewrites its entry in the ranking index, grows four times per
/// million claims rather than a hundred, while the reader's lead (see `CHUNKS_AHEAD`) still
/// reaches the next transaction before this one has written all its chunks: the next one then
/// writes on a second connection while this one finishes, and both cores work. (Measured with
/// `tally bench import-claims`: 100,000 was slower by a fifth, 500,000 no faster, and
/// 1,000,000, one transaction, leaves a core idle at its end.)
pub fn default_batch(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => 100_000,
        Backend::Postgres => 250_000,
    }
}

/// A prepared chunk of claims, whether its transaction commits after it, and how many of the
/// file's data rows (accepted or rejected) it covers from the file's start.
struct Chunk {
    batch: PreparedBatch,
    commits: bool,
    rows_through: u64,
}

pub struct ImportReport {
    /// Claims this run stored.
    pub accepted: u64,
    /// Rows this run rejected.
    pub rejected: u64,
    pub elapsed: Duration,
    /// Where the file's rejected rows were written (absent when every row was accepted).
    pub rejects: Option<PathBuf>,
    /// How an earlier import of the same file content had left it, if there was one: finished
    /// (this run stored nothing) or stopped part way (this run resumed after its rows).
    pub earlier: Option<FileImport>,
}

impl ImportReport {
    /// Claims of the file stored, by this run and the earlier ones.
    pub fn accepted_in_all(&self) -> u64 {
        self.accepted + self.earlier.as_ref().map_or(0, |e| e.accepted)
    }

    /// Rows of the file rejected, by this run and the earlier ones.
    pub fn rejected_in_all(&self) -> u64 {
        self.rejected + self.earlier.as_ref().map_or(0, FileImport::rejected)
    }

    pub fn rows_per_second(&self) -> u64 {
        let rows = u128::from(self.accepted + self.rejected);
        let micros = self.elapsed.as_micros().max(1);
        u64::try_from(rows * 1_000_000 / micros).unwrap_or(u64::MAX)
    }
}

/// Imports the claims CSV at `path`; `batch_size` claims a transaction (at most [`MAX_BATCH`];
/// `None`: [`default_batch`]). A file whose content was imported already stores nothing; one
/// whose import stopped part way resumes after the rows done (see
/// [`tally_claims::adapters::imports`]).
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
    let hashed = path.to_owned();
    let digest = tokio::task::spawn_blocking(move || file_sha256(&hashed))
        .await
        .context("the hashing thread failed")?
        .with_context(|| format!("failed to read {}", path.display()))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let record = imports::begin(db, &digest, &name).await?;
    let earlier = (record.rows_done > 0 || record.is_finished()).then(|| record.clone());
    if record.is_finished() {
        return Ok(ImportReport {
            accepted: 0,
            rejected: 0,
            elapsed: started.elapsed(),
            rejects: None,
            earlier,
        });
    }
    let skip = record.rows_done;
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
    // Returns the rows it rejected, all the file's rows, and whether the rejects file has any.
    let parser = tokio::task::spawn_blocking(move || -> anyhow::Result<(u64, u64, bool)> {
        let mut rows = tally_claims::csv_rows(reader).context("the file is not a claims CSV")?;
        let (rejects, kept) = open_rejects(&rejects_file, skip)?;
        let mut rejects = BufWriter::new(rejects);
        // The rows an earlier import did: their claims are stored, their rejects kept.
        let mut row_count = 0;
        while row_count < skip {
            if rows.next().is_none() {
                anyhow::bail!("the file has fewer rows than an earlier import of it did");
            }
            row_count += 1;
        }
        let mut rejected = 0;
        // Claims of the current transaction already in earlier chunks.
        let mut in_transaction = 0;
        let mut chunk_size = max_chunk.min(batch_size);
        let mut chunk = Vec::with_capacity(chunk_size);
        // Empties `claims` (on PostgreSQL keeping its memory for the next chunk).
        let send = |claims: &mut Vec<Claim>, commits: bool, rows_through: u64| {
            let batch = tally_claims::prepare_import_batch(&reader_db, claims, &reader_meta)?;
            let chunk = Chunk {
                batch,
                commits,
                rows_through,
            };
            // An error means the storing side stopped on an error, which it reports.
            anyhow::Ok(chunks.blocking_send(chunk).is_ok())
        };
        for row in rows {
            row_count += 1;
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
                        if !send(&mut chunk, commits, row_count)? {
                            return Ok((rejected, row_count, kept + rejected > 0));
                        }
                        chunk.reserve(chunk_size);
                    }
                }
                Err(rejection) => {
                    rejected += 1;
                    writeln!(rejects, "{}", rejection_json(&rejection))?;
                }
            }
        }
        if !chunk.is_empty() {
            send(&mut chunk, true, row_count)?;
        }
        rejects.flush()?;
        Ok((rejected, row_count, kept + rejected > 0))
    });

    let mut accepted = 0;
    // One task per transaction. The next transaction starts writing while the previous one
    // finishes (on SQLite it waits for it to end instead), and commits only after it: with
    // `false` from its turn, it rolls back.
    // Each transaction also moves the file's record from the rows the one before covered to
    // its own last row.
    let mut in_flight: Option<tokio::task::JoinHandle<anyhow::Result<u64>>> = None;
    let mut previous_done: Option<oneshot::Receiver<bool>> = None;
    let mut rows_fed = skip;
    while let Some(first) = incoming.recv().await {
        let (feed, mut batches) = mpsc::channel::<(PreparedBatch, u64)>(ahead);
        let (done, done_rx) = oneshot::channel();
        let turn = previous_done.replace(done_rx);
        let task_db = db.clone();
        let (digest, rows_from) = (digest.clone(), rows_fed);
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
                let mut rows_to = rows_from;
                let chunks = futures_util::stream::poll_fn(|cx| {
                    batches.poll_recv(cx).map(|chunk| {
                        chunk.map(|(batch, rows_through)| {
                            rows_to = rows_through;
                            batch
                        })
                    })
                });
                writer.write_all(chunks).await?;
                if !take_turn(&mut turn).await {
                    writer.rollback().await?;
                    anyhow::bail!(NOT_STORED);
                }
                if !writer.advance_import(&digest, rows_from, rows_to).await? {
                    writer.rollback().await?;
                    anyhow::bail!(MOVED);
                }
                Ok(writer.commit().await? as u64)
            }
            .await;
            let _ = done.send(stored.is_ok());
            stored
        });
        let mut commits = first.commits;
        rows_fed = first.rows_through;
        let mut open = feed.send((first.batch, rows_fed)).await.is_ok();
        while open && !commits {
            let Some(chunk) = incoming.recv().await else {
                break;
            };
            commits = chunk.commits;
            rows_fed = chunk.rows_through;
            open = feed.send((chunk.batch, rows_fed)).await.is_ok();
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
    let (rejected, rows, any_rejects) = parser.await.context("the reader thread failed")??;
    // The rows after the last claim were all rejected: the file is done.
    anyhow::ensure!(imports::finish(db, &digest, rows_fed, rows).await?, MOVED);
    bar.finish_and_clear();
    let rejects = if any_rejects {
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
        earlier,
    })
}

/// Why a transaction, or the end of an import, stored nothing although the database worked.
const MOVED: &str = "another import of the same file moved its progress meanwhile";

/// The rejects file, ready to append to: when an earlier import did the first `rows_done` rows,
/// it keeps the rejects of those (and how many), and drops any of later rows, which this run
/// reads again.
fn open_rejects(path: &Path, rows_done: u64) -> anyhow::Result<(File, u64)> {
    let failed = || format!("failed to write {}", path.display());
    let mut kept = Vec::new();
    if rows_done > 0 {
        if let Ok(earlier) = std::fs::read_to_string(path) {
            for line in earlier.lines() {
                let index = serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v.get("index").and_then(serde_json::Value::as_u64));
                if index.is_some_and(|i| i < rows_done) {
                    kept.push(line.to_owned());
                }
            }
        }
    }
    let mut file = File::create(path).with_context(failed)?;
    for line in &kept {
        writeln!(file, "{line}").with_context(failed)?;
    }
    Ok((file, kept.len() as u64))
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

    /// A payer file of `rows` rows over 7 providers, row `i` with subscriber `S{i}`; the rows
    /// with `i % 100 == 42` have a refused procedure code.
    fn write_rows(path: &Path, rows: u64) {
        let mut csv = String::from(HEADER);
        for i in 0..rows {
            let procedure = if i % 100 == 42 { "X0100" } else { "D0120" };
            csv.push_str(&format!(
                "3/28/18 0:00,{procedure},UR,G{i},S{i},{},${}.{:02},$1.00,$0.00,$0.00\n",
                npi(i % 7),
                1 + i % 50,
                i % 100
            ));
        }
        std::fs::write(path, csv).unwrap();
    }

    /// A migrated claims database on `backend` (dropped with its location) and a folder for the
    /// files.
    async fn claims_db(backend: TestBackend) -> Option<(TestLocation, Db, tempfile::TempDir)> {
        let location = TestLocation::new(backend).await?;
        let db = Db::open_and_migrate(&location.settings(), &tally_claims::SCHEMA)
            .await
            .unwrap();
        Some((location, db, tempfile::tempdir().unwrap()))
    }

    /// The refused rows among the first `rows` of [`write_rows`].
    fn refused_in(rows: u64) -> u64 {
        rows.div_ceil(100) - u64::from(rows % 100 <= 42)
    }

    /// 2,503 rows, every 100th refused, imported 1,000 claims a transaction in chunks of 100:
    /// transactions of many chunks, the last one partial. Every good row is stored once, each
    /// provider's total is the sum over its claims, and the log holds one event per claim.
    async fn transactions_of_many_chunks_store_every_good_row_once(backend: TestBackend) {
        let Some((_location, db, dir)) = claims_db(backend).await else {
            return;
        };
        let path = dir.path().join("claims.csv");
        let rows = 2_503u64;
        write_rows(&path, rows);
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
        let rejected = refused_in(rows);
        assert_eq!(report.rejected, rejected);
        assert_eq!(report.accepted, rows - rejected);

        let accepted = report.accepted as i64;
        assert_eq!(count(&db, "SELECT COUNT(*) FROM claims").await, accepted);
        assert_eq!(
            count(&db, "SELECT CAST(SUM(entries) AS BIGINT) FROM outbox").await,
            accepted
        );
        let totals = by_provider(
            &db,
            "SELECT provider_npi, total_net_fee_minor, claim_count FROM provider_totals",
        )
        .await;
        let sums = by_provider(
            &db,
            "SELECT provider_npi, CAST(SUM(net_fee_minor) AS BIGINT), COUNT(*) FROM claims \
             GROUP BY provider_npi",
        )
        .await;
        assert_eq!(totals.len(), 7);
        assert_eq!(totals, sums);
        db.close().await;
    }
    tally_db::both_backends!(transactions_of_many_chunks_store_every_good_row_once);

    async fn count(db: &Db, sql: &str) -> i64 {
        sqlx::query(sql)
            .fetch_one(db.reader())
            .await
            .unwrap()
            .get::<i64, _>(0)
    }

    /// The rows of `sql`, `(provider_npi, net fee, claim count)`, by provider.
    async fn by_provider(db: &Db, sql: &str) -> BTreeMap<String, (i64, i64)> {
        sqlx::query(sql)
            .fetch_all(db.reader())
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect()
    }

    /// An import whose second transaction fails (a trigger refuses one claim) keeps its first
    /// transaction and records the rows it covered; the next import of the file resumes after
    /// them and stores every other good row once; a third one stores nothing. A transaction that
    /// finds the record moved stores nothing.
    async fn a_stopped_import_resumes_and_a_finished_one_is_not_repeated(backend: TestBackend) {
        let Some((_location, db, dir)) = claims_db(backend).await else {
            return;
        };
        let path = dir.path().join("claims.csv");
        let rejects = dir.path().join("rejects.jsonl");
        let rows = 2_503u64;
        write_rows(&path, rows);
        let rejected = refused_in(rows);
        let good = rows - rejected;
        let refuse = match db.backend() {
            Backend::Sqlite => {
                "CREATE TRIGGER refuse BEFORE INSERT ON claims WHEN NEW.subscriber_number = 'S1500' \
                 BEGIN SELECT RAISE(ABORT, 'refused'); END"
            }
            Backend::Postgres => {
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 IF NEW.subscriber_number = 'S1500' THEN RAISE EXCEPTION 'refused'; END IF; \
                 RETURN NEW; END $$; CREATE TRIGGER refuse BEFORE INSERT ON claims FOR EACH ROW \
                 EXECUTE FUNCTION refuse()"
            }
        };
        sqlx::raw_sql(refuse).execute(db.reader()).await.unwrap();

        let import = || import_in_chunks(&db, &path, Some(1_000), 100, &rejects, false);
        let failed = import().await;
        assert!(failed.is_err(), "the refused claim stops the import");
        // The first transaction held 1,000 claims: rows 0 to 1,009, ten of them rejected.
        assert_eq!(count(&db, "SELECT COUNT(*) FROM claims").await, 1_000);
        let digest = file_sha256(&path).unwrap();
        let record = imports::find(&db, &digest).await.unwrap().unwrap();
        assert_eq!((record.rows_done, record.accepted), (1_010, 1_000));
        assert!(!record.is_finished());

        // A transaction that expects another starting point moves nothing.
        let mut writer = BulkWriter::begin(&db).await.unwrap();
        assert!(!writer.advance_import(&digest, 0, 5).await.unwrap());
        writer.rollback().await.unwrap();

        let drop = match db.backend() {
            Backend::Sqlite => "DROP TRIGGER refuse",
            Backend::Postgres => "DROP TRIGGER refuse ON claims",
        };
        sqlx::raw_sql(drop).execute(db.reader()).await.unwrap();
        let resumed = import().await.unwrap();
        assert_eq!(resumed.earlier.as_ref(), Some(&record));
        assert_eq!(resumed.accepted, good - 1_000);
        assert_eq!(resumed.rejected, rejected - 10);
        assert_eq!(resumed.accepted_in_all(), good);
        assert_eq!(resumed.rejected_in_all(), rejected);
        let good = good as i64;
        assert_eq!(count(&db, "SELECT COUNT(*) FROM claims").await, good);
        assert_eq!(
            count(&db, "SELECT COUNT(DISTINCT subscriber_number) FROM claims").await,
            good
        );
        assert_eq!(
            count(&db, "SELECT CAST(SUM(entries) AS BIGINT) FROM outbox").await,
            good
        );
        assert_eq!(
            count(
                &db,
                "SELECT CAST(SUM(total_net_fee_minor) AS BIGINT) FROM provider_totals"
            )
            .await,
            count(&db, "SELECT CAST(SUM(net_fee_minor) AS BIGINT) FROM claims").await
        );
        let finished = imports::find(&db, &digest).await.unwrap().unwrap();
        assert_eq!((finished.rows_done, finished.accepted), (rows, good as u64));
        assert!(finished.is_finished());
        // The rejects file lists every rejected row of the file once.
        let listed: Vec<u64> = std::fs::read_to_string(&rejects)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["index"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        let expected: Vec<u64> = (0..rows).filter(|i| i % 100 == 42).collect();
        assert_eq!(listed, expected);

        let again = import().await.unwrap();
        assert_eq!(again.accepted, 0);
        assert_eq!(again.earlier, Some(finished));
        assert_eq!(count(&db, "SELECT COUNT(*) FROM claims").await, good);
        assert_eq!(
            count(&db, "SELECT CAST(SUM(entries) AS BIGINT) FROM outbox").await,
            good
        );
        db.close().await;
    }
    tally_db::both_backends!(a_stopped_import_resumes_and_a_finished_one_is_not_repeated);

    /// A record saying more rows were done than the file holds (its content is the same, so
    /// the record is wrong) stops the import before it stores anything, rather than finishing
    /// the file with rows it never read.
    async fn a_record_past_the_files_end_stops_the_import(backend: TestBackend) {
        let Some((_location, db, dir)) = claims_db(backend).await else {
            return;
        };
        let path = dir.path().join("claims.csv");
        write_rows(&path, 300);
        let digest = file_sha256(&path).unwrap();
        imports::begin(&db, &digest, "claims.csv").await.unwrap();
        sqlx::raw_sql(&format!(
            "UPDATE claim_imports SET rows_done = 301 WHERE file_sha256 = '{digest}'"
        ))
        .execute(db.reader())
        .await
        .unwrap();
        let rejects = dir.path().join("rejects.jsonl");
        let error = import_claims(&db, &path, None, &rejects, false)
            .await
            .err()
            .expect("the record is past the file's end");
        assert!(
            format!("{error:#}").contains("fewer rows than an earlier import"),
            "{error:#}"
        );
        assert_eq!(count(&db, "SELECT COUNT(*) FROM claims").await, 0);
        let record = imports::find(&db, &digest).await.unwrap().unwrap();
        assert_eq!((record.rows_done, record.accepted), (301, 0));
        assert!(!record.is_finished());
        db.close().await;
    }
    tally_db::both_backends!(a_record_past_the_files_end_stops_the_import);
}
