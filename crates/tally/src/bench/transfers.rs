//! Wallet transfers over HTTP against a `tally serve` of this binary, with their pairs of wallets
//! drawn uniformly or skewed (Zipf: a few wallets in most transfers, as a few busy accounts are),
//! against the plain database doing the same kind of work in the same run: `pgbench`'s TPC-B
//! on the same PostgreSQL, and raw SQLite transactions (two balance updates and a history row,
//! durable as Tally's) for the embedded mode.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sqlx::{ConnectOptions as _, Connection as _};

use super::{on_each_backend, per_second, percentile_us, ratio, BenchServer, Rng};

/// How the two wallets of a transfer are picked.
#[derive(Clone, Copy)]
enum Pick {
    Uniform,
    /// Wallet k (from 1) is picked with a weight of 1/k.
    Zipf,
}

impl Pick {
    /// The prefix of this run's idempotency keys.
    fn key(self) -> &'static str {
        match self {
            Pick::Uniform => "uniform",
            Pick::Zipf => "zipf",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Pick::Uniform => "uniform",
            Pick::Zipf => "Zipf (s = 1)",
        }
    }
}

/// Picks wallet indexes: uniformly, or by 1/k weights kept as integers (a cumulative table
/// searched by bisection).
struct Picker {
    cumulative: Vec<u64>,
}

impl Picker {
    fn new(wallets: usize) -> Self {
        let mut total = 0u64;
        let cumulative = (1..=wallets as u64)
            .map(|k| {
                total += 1_000_000_000_000 / k;
                total
            })
            .collect();
        Self { cumulative }
    }

    fn one(&self, pick: Pick, rng: &mut Rng) -> usize {
        let n = self.cumulative.len() as u64;
        match pick {
            Pick::Uniform => (rng.next() % n) as usize,
            Pick::Zipf => {
                let total = *self.cumulative.last().unwrap_or(&1);
                let at = rng.next() % total;
                self.cumulative.partition_point(|&c| c <= at)
            }
        }
    }

    /// Two different wallets.
    fn pair(&self, pick: Pick, rng: &mut Rng) -> (usize, usize) {
        let from = self.one(pick, rng);
        loop {
            let to = self.one(pick, rng);
            if to != from {
                return (from, to);
            }
        }
    }
}

/// Transfers of 0.01 between `wallets` wallets, `in_flight` at a time for `seconds` each way of
/// picking them, against the plain database's own transactions in the same run.
pub async fn transfers(
    wallets: usize,
    seconds: u64,
    in_flight: usize,
    postgres: Option<&str>,
) -> anyhow::Result<()> {
    println!(
        "wallet transfers over HTTP, {wallets} wallets, {in_flight} in flight, {seconds} s a run"
    );
    let window = Duration::from_secs(seconds.max(1));
    on_each_backend("transfers", postgres, async |dir, url, label| {
        let baseline = match url {
            None => (
                raw_sqlite(&dir.join("raw.db"), wallets, window).await?,
                "raw SQLite transactions",
            ),
            Some(url) => (pgbench(url, window, in_flight).await?, "pgbench TPC-B"),
        };
        transfers_on(dir, url, label, wallets, window, in_flight, baseline).await
    })
    .await
}

/// The baseline's transactions a second, and what it was.
type Baseline = (u128, &'static str);

async fn transfers_on(
    dir: &Path,
    database_url: Option<&str>,
    label: &str,
    wallets: usize,
    window: Duration,
    in_flight: usize,
    (baseline, baseline_name): Baseline,
) -> anyhow::Result<()> {
    let server = Arc::new(BenchServer::start(dir, database_url).await?);
    // The wallets, each with 1,000.00, made over the API as a client would.
    let ids = Arc::new(Mutex::new(vec![0i64; wallets.max(2)]));
    {
        let (server, ids) = (server.clone(), ids.clone());
        let count = ids.lock().map_or(0, |ids| ids.len());
        super::latency::peak(0..count, in_flight, move |w| {
            let (server, ids) = (server.clone(), ids.clone());
            async move {
                let id = server.funded_wallet(w).await?;
                if let Ok(mut ids) = ids.lock() {
                    ids[w] = id;
                }
                anyhow::Ok(())
            }
        })
        .await?;
    }
    let ids: Arc<Vec<i64>> = Arc::new(ids.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone());
    let picker = Arc::new(Picker::new(ids.len()));
    let before = super::balanced_transfer_count(&server).await?;

    println!("  {label} (baseline: {baseline_name}, {baseline} transactions/s)");
    let mut sent = 0i64;
    for pick in [Pick::Uniform, Pick::Zipf] {
        let done = Arc::new(AtomicU64::new(0));
        let times = Arc::new(Mutex::new(Vec::new()));
        let deadline = Instant::now() + window;
        let started = Instant::now();
        let mut workers = tokio::task::JoinSet::new();
        for worker in 0..in_flight.max(1) {
            let (server, ids, picker, done, times) = (
                server.clone(),
                ids.clone(),
                picker.clone(),
                done.clone(),
                times.clone(),
            );
            workers.spawn(async move {
                let mut rng = Rng(0x7a11 + worker as u64 * 7919);
                let mut mine = Vec::new();
                while Instant::now() < deadline {
                    let (from, to) = picker.pair(pick, &mut rng);
                    let body = format!(
                        r#"{{"walletFromId":{},"walletToId":{},"amount":"0.01"}}"#,
                        ids[from], ids[to]
                    );
                    let key = format!("{}-{worker}-{}", pick.key(), mine.len());
                    let sent = Instant::now();
                    let (status, answer) = server.post("/transfers", &key, body).await?;
                    anyhow::ensure!(status == 200, "POST /transfers: {status} {answer}");
                    mine.push(sent.elapsed());
                    done.fetch_add(1, Ordering::Relaxed);
                }
                if let Ok(mut times) = times.lock() {
                    times.extend(mine);
                }
                anyhow::Ok(())
            });
        }
        while let Some(joined) = workers.join_next().await {
            joined??;
        }
        let elapsed = started.elapsed();
        let count = done.load(Ordering::Relaxed);
        sent += i64::try_from(count).unwrap_or(i64::MAX);
        let mut times = times
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .clone();
        times.sort_unstable();
        let rate = per_second(count, elapsed);
        println!(
            "    {:<13} {rate} transfers/s, p50 {} µs, p99 {} µs: {} of the baseline \
             (target 1.00x; p99 under 50000 µs)",
            pick.name(),
            percentile_us(&times, 50),
            percentile_us(&times, 99),
            ratio(rate, baseline)
        );
    }
    let transfers = super::balanced_transfer_count(&server).await? - before;
    anyhow::ensure!(
        transfers == sent,
        "the ledger holds {transfers} transfers for {sent} answered"
    );
    println!("    the ledger balances and holds each answered transfer once");
    if let Ok(server) = Arc::try_unwrap(server) {
        server.stop().await;
    }
    Ok(())
}

/// Raw SQLite transactions in a file of `wallets` accounts, durable as Tally's (WAL,
/// `synchronous = FULL`): one writer, each transaction two balance updates and a history row,
/// back to back for `window`. Transactions a second.
async fn raw_sqlite(file: &Path, wallets: usize, window: Duration) -> anyhow::Result<u128> {
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(file)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
        .connect()
        .await?;
    sqlx::raw_sql(
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL); \
         CREATE TABLE history (id INTEGER PRIMARY KEY, from_id INTEGER, to_id INTEGER, \
         amount INTEGER, at TEXT)",
    )
    .execute(&mut conn)
    .await?;
    let mut tx = conn.begin().await?;
    for id in 0..wallets as i64 {
        sqlx::query("INSERT INTO accounts (id, balance) VALUES ($1, 100000)")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    let picker = Picker::new(wallets.max(2));
    let mut rng = Rng(0x5c1e);
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed() < window {
        let (from, to) = picker.pair(Pick::Uniform, &mut rng);
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        for (id, delta) in [(from, -1i64), (to, 1)] {
            sqlx::query("UPDATE accounts SET balance = balance + $1 WHERE id = $2")
                .bind(delta)
                .bind(id as i64)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("INSERT INTO history (from_id, to_id, amount, at) VALUES ($1, $2, 1, $3)")
            .bind(from as i64)
            .bind(to as i64)
            .bind(tally_kernel::time::to_db(tally_kernel::time::now()))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        count += 1;
    }
    let rate = per_second(count, started.elapsed());
    conn.close().await?;
    Ok(rate)
}

/// `pgbench`'s TPC-B (scale 1) in the database `url`, `clients` at once for `window`, before
/// Tally's schemas are made there. Transactions a second.
async fn pgbench(url: &str, window: Duration, clients: usize) -> anyhow::Result<u128> {
    let run = |args: Vec<String>| async move {
        let output = tokio::process::Command::new("pgbench")
            .args(&args)
            .output()
            .await
            .context("running pgbench (PostgreSQL's client tools)")?;
        anyhow::ensure!(
            output.status.success(),
            "pgbench {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        anyhow::Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    run(vec![
        "-i".into(),
        "-q".into(),
        "-s".into(),
        "1".into(),
        url.into(),
    ])
    .await?;
    let out = run(vec![
        "-n".into(),
        "-c".into(),
        clients.to_string(),
        "-j".into(),
        "2".into(),
        "-T".into(),
        window.as_secs().to_string(),
        url.into(),
    ])
    .await?;
    let tps = out
        .lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split(['.', ' ']).next())
        .and_then(|whole| whole.parse().ok())
        .with_context(|| format!("pgbench printed no tps:\n{out}"))?;
    Ok(tps)
}
