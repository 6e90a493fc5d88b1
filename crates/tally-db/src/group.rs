//! Group commit for SQLite: the write work of concurrent requests shares one transaction and one
//! commit.
//!
//! SQLite has one writer, so requests' transactions run one after another whatever happens; what
//! each of them pays alone is its commit: the log's pages written and synced. Here a task of its
//! own takes every piece of work that is waiting, runs each in a savepoint of one transaction,
//! and commits once. A piece whose work fails is rolled back to its savepoint, alone; the others
//! stay. No piece waits for company: a batch is whatever queued while the one before it ran, so
//! a lone request is a batch of one, and under load the batches grow by themselves.
//!
//! Every piece learns its outcome only after the batch's commit: what a piece read from earlier
//! pieces of its batch was never seen outside before it was durable.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;
use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot, watch};

use crate::WriteTx;

/// Pieces of work in one transaction at most, so that the first of a batch waits for at most this
/// many before its commit.
pub const MAX_BATCH: usize = 64;

/// Sets the savepoint each piece of work runs in.
pub(crate) const PIECE_SAVEPOINT: &str = "SAVEPOINT tally_piece";

/// How often a piece is submitted again when its batch was rolled back for another's fault.
const MAX_SUBMISSIONS: u32 = 3;

/// Work that writes in a transaction it shares: it must not commit or roll back, but may roll
/// its own writes back with [`roll_back_piece`]. It may run more than once, each time in a new
/// transaction.
pub type SharedWork<T> =
    Arc<dyn for<'t> Fn(&'t mut WriteTx) -> BoxFuture<'t, Result<T, sqlx::Error>> + Send + Sync>;

/// Wraps a closure as [`SharedWork`] (a function, so that the closure's lifetimes are inferred).
pub fn shared<T, F>(work: F) -> SharedWork<T>
where
    F: for<'t> Fn(&'t mut WriteTx) -> BoxFuture<'t, Result<T, sqlx::Error>> + Send + Sync + 'static,
{
    Arc::new(work)
}

/// How a batch ended, for each of its pieces.
#[derive(Debug, Clone)]
enum BatchEnd {
    Committed,
    /// The transaction was rolled back or its commit failed: nothing of the batch is stored.
    RolledBack(String),
}

/// A piece of work waiting in the queue, with where its outcome goes.
trait Piece: Send {
    /// Runs the work; true when it succeeded (its savepoint is kept).
    fn run<'t>(&'t mut self, tx: &'t mut WriteTx) -> BoxFuture<'t, bool>;
    /// Hands the outcome over once the batch has ended.
    fn finish(self: Box<Self>, end: BatchEnd);
}

/// What a piece's submitter receives: its value, its own error, or the batch's failure.
enum Outcome<T> {
    Done(Result<T, sqlx::Error>),
    BatchFailed(String),
}

struct Pending<T> {
    work: SharedWork<T>,
    result: Option<Result<T, sqlx::Error>>,
    done: oneshot::Sender<Outcome<T>>,
}

impl<T: Send + 'static> Piece for Pending<T> {
    fn run<'t>(&'t mut self, tx: &'t mut WriteTx) -> BoxFuture<'t, bool> {
        Box::pin(async move {
            let result = (self.work)(tx).await;
            let ok = result.is_ok();
            self.result = Some(result);
            ok
        })
    }

    fn finish(self: Box<Self>, end: BatchEnd) {
        let outcome = match (self.result, end) {
            // Its own error stands whatever became of the batch: nothing of it was kept.
            (Some(Err(e)), _) => Outcome::Done(Err(e)),
            (Some(Ok(value)), BatchEnd::Committed) => Outcome::Done(Ok(value)),
            (Some(Ok(_)), BatchEnd::RolledBack(why)) => Outcome::BatchFailed(why),
            // Its work panicked (a piece of a committed batch always ran).
            (None, BatchEnd::Committed) => Outcome::Done(Err(sqlx::Error::Protocol(
                "the request's work panicked".into(),
            ))),
            // Never run (the batch broke before it), or its work panicked.
            (None, BatchEnd::RolledBack(why)) => Outcome::BatchFailed(why),
        };
        // The submitter may have gone; the outcome is then nobody's.
        let _ = self.done.send(outcome);
    }
}

/// The queue of one SQLite database's writer, and the task that empties it.
pub(crate) struct Batcher {
    queue: mpsc::UnboundedSender<Box<dyn Piece>>,
}

impl Batcher {
    /// Starts the task that runs batches on `writer` (a pool of one connection) and bumps
    /// `commits` after each commit.
    pub(crate) fn start(writer: AnyPool, commits: Arc<watch::Sender<u64>>) -> Batcher {
        let (queue, pieces) = mpsc::unbounded_channel();
        tokio::spawn(run_batches(writer, commits, pieces));
        Batcher { queue }
    }

    /// Runs `work` in the next batch and returns its value once the batch has committed. A piece
    /// whose batch was rolled back for another piece's fault is submitted again, up to
    /// [`MAX_SUBMISSIONS`] times.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        work: SharedWork<T>,
    ) -> Result<T, sqlx::Error> {
        let mut submissions = 0;
        loop {
            submissions += 1;
            let (done, outcome) = oneshot::channel();
            let piece = Pending {
                work: work.clone(),
                result: None,
                done,
            };
            self.queue
                .send(Box::new(piece))
                .map_err(|_| sqlx::Error::PoolClosed)?;
            match outcome.await.map_err(|_| sqlx::Error::PoolClosed)? {
                Outcome::Done(result) => return result,
                Outcome::BatchFailed(why) if submissions >= MAX_SUBMISSIONS => {
                    return Err(sqlx::Error::Protocol(format!(
                        "the shared transaction failed {submissions} times, last: {why}"
                    )))
                }
                Outcome::BatchFailed(why) => {
                    tracing::debug!(why, "a shared transaction failed, submitting again");
                }
            }
        }
    }
}

async fn run_batches(
    writer: AnyPool,
    commits: Arc<watch::Sender<u64>>,
    mut pieces: mpsc::UnboundedReceiver<Box<dyn Piece>>,
) {
    let mut batch: Vec<Box<dyn Piece>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = pieces.recv().await {
        batch.push(first);
        let tx = writer.begin_with("BEGIN IMMEDIATE").await;
        // What queued while the connection was busy joins this batch.
        while batch.len() < MAX_BATCH {
            match pieces.try_recv() {
                Ok(piece) => batch.push(piece),
                Err(_) => break,
            }
        }
        let end = match tx {
            Ok(tx) => run_batch(tx, &mut batch).await,
            Err(e) => BatchEnd::RolledBack(e.to_string()),
        };
        if matches!(end, BatchEnd::Committed) {
            commits.send_modify(|n| *n = n.wrapping_add(1));
        }
        for piece in batch.drain(..) {
            piece.finish(end.clone());
        }
    }
}

/// Runs each piece in the savepoint `tally_piece` of `tx`, then commits. Each step between two
/// pieces is one statement sent: after a piece that failed, `ROLLBACK TO` leaves the savepoint
/// in place for the next; after one that succeeded, its savepoint is released and the next one's
/// set in one exchange; the last is released by the commit.
async fn run_batch(mut tx: WriteTx, batch: &mut [Box<dyn Piece>]) -> BatchEnd {
    if let Err(e) = statement(&mut tx, PIECE_SAVEPOINT).await {
        return BatchEnd::RolledBack(e.to_string());
    }
    let last = batch.len().saturating_sub(1);
    for (i, piece) in batch.iter_mut().enumerate() {
        let kept = AssertUnwindSafe(piece.run(&mut tx))
            .catch_unwind()
            .await
            .unwrap_or(false);
        let next = match (kept, i == last) {
            (true, true) => continue,
            (true, false) => statement(&mut tx, "RELEASE tally_piece; SAVEPOINT tally_piece").await,
            // A failed statement may have ended the whole transaction (SQLite does on a full disk
            // or an I/O error): the savepoint is then gone, and so is the batch.
            (false, _) => roll_back_piece(&mut tx).await,
        };
        if let Err(e) = next {
            return BatchEnd::RolledBack(e.to_string());
        }
    }
    match tx.commit().await {
        Ok(()) => BatchEnd::Committed,
        Err(e) => BatchEnd::RolledBack(e.to_string()),
    }
}

/// Rolls back what the running piece of work wrote (in [`crate::Db::write_shared`] on SQLite),
/// keeping the shared transaction; the piece may go on writing after it.
pub async fn roll_back_piece(tx: &mut WriteTx) -> Result<(), sqlx::Error> {
    statement(tx, "ROLLBACK TO tally_piece").await
}

async fn statement(tx: &mut WriteTx, sql: &'static str) -> Result<(), sqlx::Error> {
    sqlx::query(sql).execute(&mut **tx).await.map(|_| ())
}
