//! `tally bench`: measurements printed as ratios against a baseline run in the same process on
//! the same machine (these machines are shared and noisy; absolute numbers mean little).
//!
//! - `top-providers`: the ranking read from its aggregate, against the raw `GROUP BY` over every
//!   claim, as the number of claims grows. The aggregate's cost should stay flat.
//! - `import-claims`: `tally import-claims` of a generated payer file, against SQLite's `.import`
//!   (the `sqlite3` program) and PostgreSQL's `COPY` of the same file.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sqlx::{Connection as _, Executor as _};
use tally_db::{Db, DbSettings, Location};
use tally_kernel::EventMeta;

/// A deterministic stream of pseudo-random numbers (xorshift), so that runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// An NPI: nine digits and the Luhn check digit over `80840` and them.
fn npi(n: u64) -> String {
    let nine = format!("{:09}", 100_000_000 + n % 900_000_000);
    let check = tally_kernel::luhn::check_digit(&format!("80840{nine}"));
    format!("{nine}{check}")
}

const HEADER: &str = "\"service date\",\"submitted procedure\",quadrant,\"Plan/Group #\",\"Subscriber#\",\"Provider NPI\",\"provider fees\",\"Allowed fees\",\"member coinsurance\",\"member copay\"\n";

/// One payer-style CSV row; every `bad_every`-th row has a procedure code that is refused.
fn row(rng: &mut Rng, i: u64, providers: u64, bad_every: u64) -> String {
    let provider = npi(rng.next() % providers);
    let procedure = if bad_every > 0 && i % bad_every == bad_every - 1 {
        "X0180".to_owned()
    } else {
        format!("D{:04}", rng.next() % 10_000)
    };
    let fees = 5_000 + rng.next() % 50_000;
    let allowed = fees / 2;
    format!(
        "3/28/18 0:00,{procedure},UR,GRP-{},{},{provider},\"${}.{:02} \",\"${}.{:02} \",\"$0.00 \",\"$0.00 \"\n",
        1000 + i % 50,
        3_730_000_000 + i,
        fees / 100,
        fees % 100,
        allowed / 100,
        allowed % 100
    )
}

fn write_file(path: &Path, rows: u64, providers: u64, bad_every: u64) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    out.write_all(HEADER.as_bytes())?;
    let mut rng = Rng(0x5eed);
    for i in 0..rows {
        out.write_all(row(&mut rng, i, providers, bad_every).as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

fn temp_dir(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "tally-bench-{name}-{}",
        tally_kernel::id::new_v7().simple()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Percentile of sorted durations, in microseconds.
fn percentile_us(sorted: &[Duration], p: usize) -> u128 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)].as_micros()
}

/// A ratio with two decimals, from integers (no floating point).
fn ratio(numerator: u128, denominator: u128) -> String {
    let hundredths = numerator * 100 / denominator.max(1);
    format!("{}.{:02}x", hundredths / 100, hundredths % 100)
}

/// The process's resident memory now, and its peak, in KiB (Linux).
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Top providers from the aggregate against the raw aggregate query, at growing claim counts,
/// in a database of its own: a fresh SQLite folder, or a fresh database next to `postgres`
/// (an admin URL), created and dropped.
pub async fn top_providers(
    postgres: Option<&str>,
    sizes: &[u64],
    providers: u64,
    samples: usize,
) -> anyhow::Result<()> {
    match postgres {
        None => {
            let dir = temp_dir("top")?;
            let settings = DbSettings::new(Location::SqliteDir(dir.clone()));
            let result = top_providers_in(&settings, sizes, providers, samples).await;
            std::fs::remove_dir_all(&dir).ok();
            result
        }
        Some(admin) => {
            let (url, drop) = fresh_postgres(admin).await?;
            let settings = DbSettings::new(Location::Postgres(url));
            let result = top_providers_in(&settings, sizes, providers, samples).await;
            drop.await;
            result
        }
    }
}

/// A new PostgreSQL database next to `admin`: its URL, and a future that drops it.
async fn fresh_postgres(
    admin: &str,
) -> anyhow::Result<(String, impl std::future::Future<Output = ()>)> {
    let mut conn = sqlx::PgConnection::connect(admin)
        .await
        .context("PostgreSQL does not answer")?;
    let name = format!("tally_bench_{}", tally_kernel::id::new_v7().simple());
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await?;
    let base = admin
        .rsplit_once('/')
        .map(|(base, _)| base)
        .unwrap_or(admin);
    let url = format!("{base}/{name}");
    let drop = async move {
        conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
            .await
            .ok();
    };
    Ok((url, drop))
}

async fn top_providers_in(
    settings: &DbSettings,
    sizes: &[u64],
    providers: u64,
    samples: usize,
) -> anyhow::Result<()> {
    let db = Db::open_and_migrate(settings, &tally_claims::SCHEMA).await?;
    let store = tally_claims::Store::new(db.clone());
    let meta = EventMeta::from_request("bench");

    println!("top providers, {providers} providers; {samples} reads each (raw: a tenth as many)");
    println!(
        "{:>10} {:>12} {:>12} {:>12} {:>12} {:>10}",
        "claims", "top p50 us", "top p99 us", "raw p50 us", "raw p99 us", "raw/top"
    );
    let mut rng = Rng(0xbe4c);
    let (mut loaded, mut first_p99, mut last_p99) = (0u64, 0u128, 0u128);
    for &size in sizes {
        while loaded < size {
            let n = (size - loaded).min(5_000);
            let mut csv = String::from(HEADER);
            for i in 0..n {
                csv.push_str(&row(&mut rng, loaded + i, providers, 0));
            }
            let claims: Vec<_> = tally_claims::csv_rows(csv.as_bytes())?
                .filter_map(|r| r.ok().and_then(Result::ok))
                .collect();
            tally_claims::store_batch(&db, &claims, &meta).await?;
            loaded += n;
        }
        let mut top = Vec::with_capacity(samples);
        for _ in 0..samples {
            let started = Instant::now();
            store.top_providers(10).await?;
            top.push(started.elapsed());
        }
        let mut scans = Vec::new();
        for _ in 0..(samples / 10).max(3) {
            let started = Instant::now();
            store.top_providers_by_scan(10).await?;
            scans.push(started.elapsed());
        }
        top.sort();
        scans.sort();
        let (top_p99, raw_p50) = (percentile_us(&top, 99), percentile_us(&scans, 50));
        if first_p99 == 0 {
            first_p99 = top_p99.max(1);
        }
        last_p99 = top_p99;
        println!(
            "{:>10} {:>12} {:>12} {:>12} {:>12} {:>10}",
            size,
            percentile_us(&top, 50),
            top_p99,
            raw_p50,
            percentile_us(&scans, 99),
            ratio(raw_p50, percentile_us(&top, 50).max(1))
        );
    }
    println!(
        "top p99 at {} claims / at {} claims: {} (flat: the aggregate is read, not the claims)",
        sizes.last().copied().unwrap_or(0),
        sizes.first().copied().unwrap_or(0),
        ratio(last_p99, first_p99)
    );
    db.close().await;
    Ok(())
}

/// Samples the process's resident memory while `work` runs; returns its result and the
/// highest resident memory seen above where it started, in KiB.
async fn with_memory<T>(work: impl std::future::Future<Output = T>) -> (T, u64) {
    let (before, _) = memory_kib();
    let done = tokio_util::sync::CancellationToken::new();
    let watch = done.clone();
    let sampler = tokio::spawn(async move {
        let mut high = 0;
        loop {
            high = high.max(memory_kib().0);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = watch.cancelled() => return high,
            }
        }
    });
    let out = work.await;
    done.cancel();
    let high = sampler.await.unwrap_or(before);
    (out, high.saturating_sub(before))
}

/// `tally import-claims` of one generated file against `.import` and `COPY` of the same file.
pub async fn import_claims(
    rows: u64,
    providers: u64,
    postgres: Option<&str>,
    rounds: usize,
) -> anyhow::Result<()> {
    let dir = temp_dir("import")?;
    let file = dir.join("claims.csv");
    write_file(&file, rows, providers, 100)?;
    let size_mib = std::fs::metadata(&file)?.len() / (1 << 20);
    println!("import of {rows} rows ({size_mib} MiB, 1% bad), {providers} providers");

    let sqlite = DbSettings::new(Location::SqliteDir(dir.join("data")));
    let db = Db::open_and_migrate(&sqlite, &tally_claims::SCHEMA).await?;
    let ((ours, ours_elapsed), memory) = with_memory(timed_import(&db, &file, &dir)).await;
    db.close().await;
    let ours = ours?;
    println!(
        "  tally import-claims (SQLite): {} rows/s, {} accepted, memory grew by at most {} MiB",
        per_second(rows, ours_elapsed),
        ours.accepted,
        memory / 1024
    );

    match sqlite_import(&dir, &file) {
        Ok(elapsed) => println!(
            "  sqlite3 .import of the file:  {} rows/s; tally is {} of it (target 0.30x)",
            per_second(rows, elapsed),
            ratio(elapsed.as_micros(), ours_elapsed.as_micros())
        ),
        Err(e) => println!("  sqlite3 .import: not measured ({e:#})"),
    }

    if let Some(admin) = postgres {
        match postgres_rounds(admin, &file, &dir, rounds.max(1)).await {
            Ok(rounds) => {
                // Each round's ratio, slowest import first.
                let mut ratios: Vec<u128> = rounds
                    .iter()
                    .map(|(ours, copy)| copy.as_micros() * 10_000 / ours.as_micros().max(1))
                    .collect();
                ratios.sort_unstable();
                let median = ratios[ratios.len() / 2];
                let best = |pick: fn(&(Duration, Duration)) -> Duration| {
                    rounds.iter().map(pick).min().unwrap_or_default()
                };
                println!(
                    "  tally import-claims (PostgreSQL): {} rows/s; COPY: {} rows/s (the fastest of {} rounds each)",
                    per_second(rows, best(|r| r.0)),
                    per_second(rows, best(|r| r.1)),
                    rounds.len()
                );
                println!(
                    "  tally is {} of COPY, the median of the rounds' ratios ({} to {}; target 0.50x)",
                    ratio(median, 10_000),
                    ratio(ratios[0], 10_000),
                    ratio(ratios[ratios.len() - 1], 10_000)
                );
            }
            Err(e) => println!("  PostgreSQL: not measured ({e:#})"),
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

fn per_second(rows: u64, elapsed: Duration) -> u128 {
    u128::from(rows) * 1_000_000 / elapsed.as_micros().max(1)
}

/// `tally import-claims` of `file` into `db`, whose schema is made already (as the baselines'
/// tables are made before they are timed).
async fn timed_import(
    db: &Db,
    file: &Path,
    dir: &Path,
) -> (anyhow::Result<crate::import::ImportReport>, Duration) {
    let started = Instant::now();
    let result =
        crate::import::import_claims(db, file, None, &dir.join("rejected.jsonl"), false).await;
    (result, started.elapsed())
}

fn sqlite_import(dir: &Path, file: &Path) -> anyhow::Result<Duration> {
    let db = dir.join("raw.db");
    let create = "CREATE TABLE claims_raw (service_date TEXT, submitted_procedure TEXT, quadrant TEXT, \
                  plan_group_number TEXT, subscriber_number TEXT, provider_npi TEXT, provider_fees TEXT, \
                  allowed_fees TEXT, member_coinsurance TEXT, member_copay TEXT);";
    let started = Instant::now();
    let output = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg(create)
        .arg(".mode csv")
        .arg(format!(".import --skip 1 {} claims_raw", file.display()))
        .output()
        .context("the sqlite3 program is not installed")?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        output.status.success(),
        "sqlite3 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(elapsed)
}

/// `rounds` rounds of a `COPY` of `file` into a table of text columns, then a `tally
/// import-claims` of it into a fresh database with the claims schema made: each round's import
/// time and `COPY` time. Each run starts after a `CHECKPOINT`, so that none pays for writing out
/// the pages of the one before. A round's two runs are next to each other, so that their ratio
/// holds while the machine's speed drifts between rounds.
async fn postgres_rounds(
    admin: &str,
    file: &Path,
    dir: &Path,
    rounds: usize,
) -> anyhow::Result<Vec<(Duration, Duration)>> {
    let (url, drop) = fresh_postgres(admin).await?;
    let result = async {
        let mut target = sqlx::PgConnection::connect(&url).await?;
        target
            .execute(
                "CREATE TABLE claims_raw (service_date TEXT, submitted_procedure TEXT, \
                 quadrant TEXT, plan_group_number TEXT, subscriber_number TEXT, \
                 provider_npi TEXT, provider_fees TEXT, allowed_fees TEXT, \
                 member_coinsurance TEXT, member_copay TEXT)",
            )
            .await?;
        let bytes = std::fs::read(file)?;
        let copy_once = async |target: &mut sqlx::PgConnection| -> anyhow::Result<Duration> {
            target.execute("TRUNCATE claims_raw").await?;
            checkpoint(target).await;
            let started = Instant::now();
            let mut copy = target
                .copy_in_raw("COPY claims_raw FROM STDIN WITH (FORMAT csv, HEADER true)")
                .await?;
            copy.send(bytes.as_slice()).await?;
            copy.finish().await?;
            Ok(started.elapsed())
        };
        let mut times = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let copy = copy_once(&mut target).await?;
            let (into, drop_into) = fresh_postgres(admin).await?;
            let ours = async {
                let settings = DbSettings::new(Location::Postgres(into));
                let db = Db::open_and_migrate(&settings, &tally_claims::SCHEMA).await?;
                checkpoint(&mut target).await;
                let (ours, elapsed) = timed_import(&db, file, dir).await;
                db.close().await;
                ours.map(|_| elapsed)
            }
            .await;
            drop_into.await;
            times.push((ours?, copy));
        }
        target.close().await.ok();
        anyhow::Ok(times)
    }
    .await;
    drop.await;
    result
}

/// Writes out every dirty page now, if the bench's role may (it needs superuser or
/// `pg_checkpoint`); a run then does not pay for the pages of the run before it.
async fn checkpoint(conn: &mut sqlx::PgConnection) {
    if let Err(e) = conn.execute("CHECKPOINT").await {
        tracing::debug!(error = %e, "CHECKPOINT refused; runs may pay for each other's pages");
    }
}
