//! `tally bench`: measurements printed as ratios against a baseline run in the same process on
//! the same machine (these machines are shared and noisy; absolute numbers mean little).
//!
//! - `top-providers`: the ranking read from its aggregate, against the raw `GROUP BY` over every
//!   claim, as the number of claims grows. The aggregate's cost should stay flat.
//! - `import-claims`: `tally import-claims` of a generated payer file, against SQLite's `.import`
//!   (the `sqlite3` program) and PostgreSQL's `COPY` of the same file.
//! - `payments`: idempotent transfers over HTTP, replays and conflicting keys mixed with new
//!   ones, against a `tally serve` of this binary: replays against new transfers.
//! - `route` and `propagation`: latencies at half of the peak rate (see [`latency`]).
//! - `transfers`: wallet transfers over HTTP against `pgbench` and raw SQLite (see
//!   [`transfers`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sqlx::{Connection as _, Executor as _};
use tally_db::{Db, DbSettings, Location};
use tally_kernel::EventMeta;

mod latency;
mod transfers;
pub use latency::{propagation, route};
pub use transfers::transfers;

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

/// What one request of the payments bench is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A transfer under a key never used.
    New,
    /// A transfer sent again with the key and body of an earlier one.
    Replay,
    /// An earlier key with another body.
    Conflict,
}

/// One planned request: its kind, key and body.
struct Planned {
    kind: Kind,
    key: String,
    body: String,
    /// For a replay, the new request it repeats.
    of: Option<usize>,
}

/// The requests of the payments bench, the same for every run: 80% new keys, 19% replays and
/// 1% conflicts, the last two of requests at least `distance` places earlier (so that, with
/// fewer workers than that, the earlier one has been answered).
fn plan_payments(requests: usize, wallets: &[i64], distance: usize) -> Vec<Planned> {
    let mut rng = Rng(0x9a1d);
    let mut news: Vec<usize> = Vec::new();
    let mut plan: Vec<Planned> = Vec::with_capacity(requests);
    for i in 0..requests {
        let roll = rng.next() % 100;
        // Only requests far enough back may be repeated.
        let ready = news.partition_point(|&n| n + distance <= i);
        let kind = match roll {
            _ if ready == 0 => Kind::New,
            0..80 => Kind::New,
            80..99 => Kind::Replay,
            _ => Kind::Conflict,
        };
        if kind == Kind::New {
            // Two different wallets: the second is 1 to n - 1 places after the first.
            let n = wallets.len() as u64;
            let first = rng.next() % n;
            let second = (first + 1 + rng.next() % (n - 1).max(1)) % n;
            let (from, to) = (wallets[first as usize], wallets[second as usize]);
            let cents = 1 + rng.next() % 100;
            plan.push(Planned {
                kind,
                key: format!("bench-{i}"),
                body: format!(
                    r#"{{"walletFromId":{from},"walletToId":{to},"amount":"0.{cents:02}"}}"#
                ),
                of: None,
            });
            news.push(i);
            continue;
        }
        let earlier = news[(rng.next() % ready as u64) as usize];
        let (key, body) = (plan[earlier].key.clone(), plan[earlier].body.clone());
        let body = match kind {
            Kind::Conflict => body.replace(r#""amount":"0."#, r#""amount":"1."#),
            _ => body,
        };
        plan.push(Planned {
            kind,
            key,
            body,
            of: Some(earlier),
        });
    }
    plan
}

/// A `tally serve` of this very binary, on a free port, in `dir` (and `database_url`).
struct BenchServer {
    child: tokio::process::Child,
    base: String,
    client: reqwest::Client,
}

impl BenchServer {
    async fn start(dir: &Path, database_url: Option<&str>) -> anyhow::Result<BenchServer> {
        use tokio::io::AsyncBufReadExt as _;
        let mut command = tokio::process::Command::new(std::env::current_exe()?);
        // The server's settings are the bench's own, but for the size of its pools.
        for (name, _) in std::env::vars() {
            if name.starts_with("TALLY_") && name != "TALLY_DB_MAX_CONNECTIONS" {
                command.env_remove(name);
            }
        }
        command
            .args(["serve", "--port", "0", "--write-rate-per-minute", "0"])
            .args(["--log", "warn"])
            .arg("--data-dir")
            .arg(dir.join("data"));
        if let Some(url) = database_url {
            command.arg("--database-url").arg(url);
        }
        let log = std::fs::File::create(dir.join("serve.log"))?;
        command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        let mut child = command.spawn().context("starting tally serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let mut token = None;
        let base = loop {
            let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
                .await
                .context("tally serve did not start within a minute")??
                .with_context(|| {
                    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
                    format!("tally serve stopped before listening:\n{log}")
                })?;
            if let Some(t) = line.strip_prefix("admin token: ") {
                token = Some(t.trim().to_owned());
            }
            if let Some(url) = line.strip_prefix("listening on ") {
                break url.trim().to_owned();
            }
        };
        // Drains the rest, so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let token = token.context("tally serve printed no admin token")?;
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse()?,
        );
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .pool_max_idle_per_host(256)
            .build()?;
        Ok(BenchServer {
            child,
            base,
            client,
        })
    }

    /// A client with a wallet holding 1,000.00, made over the API as a client would (its
    /// requests keyed by `w`): the wallet's id.
    async fn funded_wallet(&self, w: usize) -> anyhow::Result<i64> {
        let client = format!(r#"{{"name":"Bench {w}","login":"bench-{w}"}}"#);
        let (status, body) = self
            .post("/clients", &format!("client-{w}"), client)
            .await?;
        anyhow::ensure!(status == 201, "POST /clients: {status} {body}");
        let id = serde_json::from_str::<serde_json::Value>(&body)?["walletId"]
            .as_i64()
            .context("POST /clients answered no walletId")?;
        let deposit = format!(r#"{{"walletId":{id},"amount":"1000.00"}}"#);
        let (status, body) = self
            .post("/resupplies", &format!("deposit-{w}"), deposit)
            .await?;
        anyhow::ensure!(status == 200, "POST /resupplies: {status} {body}");
        Ok(id)
    }

    /// Sends a POST; the status and body.
    async fn post(&self, path: &str, key: &str, body: String) -> anyhow::Result<(u16, String)> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await?))
    }

    async fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        Ok(response.json().await?)
    }

    /// The server's data is thrown away with its folder: no need to stop it gracefully.
    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Idempotent transfers over HTTP against a `tally serve` of this binary: 80% new keys, 19%
/// replays, 1% conflicting keys, on SQLite and, given an admin URL, on a PostgreSQL database
/// created and dropped there. Prints how much faster a replay is answered than a new transfer.
pub async fn payments(
    requests: usize,
    wallets: usize,
    concurrency: usize,
    postgres: Option<&str>,
) -> anyhow::Result<()> {
    println!(
        "idempotent transfers over HTTP: {requests} requests (80% new keys, 19% replays, 1% \
         conflicting), {wallets} wallets, {concurrency} at once"
    );
    on_each_backend("payments", postgres, async |dir, url, label| {
        payments_on(dir, url, label, requests, wallets, concurrency).await
    })
    .await
}

/// Runs `run` (its folder, its database URL, the backend's name) in a fresh folder on SQLite,
/// then, given an admin URL, on a PostgreSQL database created there for it and dropped after.
/// The temporary folder is removed whatever happens.
async fn on_each_backend(
    name: &str,
    postgres: Option<&str>,
    run: impl AsyncFn(&Path, Option<&str>, &'static str) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let dir = temp_dir(name)?;
    let result = async {
        let sqlite = dir.join("sqlite");
        std::fs::create_dir_all(&sqlite)?;
        run(&sqlite, None, "SQLite").await?;
        if let Some(admin) = postgres {
            let (url, drop) = fresh_postgres(admin).await?;
            let pg = dir.join("postgres");
            let result = async {
                std::fs::create_dir_all(&pg)?;
                run(&pg, Some(&url), "PostgreSQL").await
            }
            .await;
            drop.await;
            result?;
        }
        anyhow::Ok(())
    }
    .await;
    std::fs::remove_dir_all(&dir).ok();
    result
}

/// The ledger's transfer count, after checking it balances.
async fn balanced_transfer_count(server: &BenchServer) -> anyhow::Result<i64> {
    let summary = server.get("/ledger/summary").await?;
    let currencies = summary["currencies"]
        .as_array()
        .context("the ledger summary has no currencies")?;
    let mut count = 0;
    for entry in currencies {
        let code = &entry["currency"];
        let sum = entry["sum"].to_string();
        anyhow::ensure!(
            sum.chars().all(|c| matches!(c, '0' | '.' | '-')),
            "the {code} ledger sums to {sum}, not 0"
        );
        anyhow::ensure!(
            entry["unbalancedAccounts"] == 0,
            "the {code} ledger has unbalanced accounts: {entry}"
        );
        count += entry["transferCount"].as_i64().unwrap_or_default();
    }
    Ok(count)
}

async fn payments_on(
    dir: &Path,
    database_url: Option<&str>,
    label: &str,
    requests: usize,
    wallets: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, OnceLock};

    let server = Arc::new(BenchServer::start(dir, database_url).await?);
    let mut ids = Vec::with_capacity(wallets);
    for w in 0..wallets {
        ids.push(server.funded_wallet(w).await?);
    }
    let transfers_before = balanced_transfer_count(&server).await?;

    let plan = Arc::new(plan_payments(requests, &ids, concurrency * 4));
    let answers: Arc<Vec<OnceLock<(u16, String)>>> =
        Arc::new((0..requests).map(|_| OnceLock::new()).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (server, plan, answers, next) =
            (server.clone(), plan.clone(), answers.clone(), next.clone());
        workers.spawn(async move {
            let mut timings: Vec<(Kind, Duration)> = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(request) = plan.get(i) else {
                    break;
                };
                let sent = Instant::now();
                let answer = server
                    .post("/transfers", &request.key, request.body.clone())
                    .await?;
                timings.push((request.kind, sent.elapsed()));
                let _ = answers[i].set(answer);
            }
            anyhow::Ok(timings)
        });
    }
    let mut timings = Vec::with_capacity(requests);
    while let Some(joined) = workers.join_next().await {
        timings.extend(joined??);
    }
    let elapsed = started.elapsed();

    // Every answer is what it must be: a new key transfers, a replay gets the first answer
    // back, a conflicting key is refused; and the ledger holds each new transfer once.
    let mut new_count = 0;
    for (i, request) in plan.iter().enumerate() {
        let (status, body) = answers[i].get().context("a request went unanswered")?;
        match request.kind {
            Kind::New => {
                anyhow::ensure!(*status == 200, "a new transfer: {status} {body}");
                new_count += 1;
            }
            Kind::Replay => {
                let first = answers[request.of.unwrap_or_default()].get();
                anyhow::ensure!(
                    first == Some(&(*status, body.clone())),
                    "a replay answered {status} {body}, not the first answer {first:?}"
                );
            }
            Kind::Conflict => anyhow::ensure!(
                *status == 422 && body.contains("idempotency-key-reuse"),
                "a conflicting key: {status} {body}"
            ),
        }
    }
    let transfers = balanced_transfer_count(&server).await? - transfers_before;
    anyhow::ensure!(
        transfers == new_count,
        "the ledger holds {transfers} transfers for {new_count} new keys"
    );

    let stats = |kind: Kind| {
        let mut times: Vec<Duration> = timings
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, t)| *t)
            .collect();
        times.sort_unstable();
        let mean = times.iter().sum::<Duration>().as_micros() / (times.len().max(1) as u128);
        (times.len(), mean, times)
    };
    println!(
        "  {label}: {} requests/s; the ledger balances and holds each new transfer once",
        per_second(requests as u64, elapsed)
    );
    let mut means = Vec::new();
    for (kind, name) in [
        (Kind::New, "new keys"),
        (Kind::Replay, "replays"),
        (Kind::Conflict, "conflicts"),
    ] {
        let (count, mean, times) = stats(kind);
        println!(
            "    {name:<10} {count:>6}: mean {mean} µs, p50 {} µs, p99 {} µs",
            percentile_us(&times, 50),
            percentile_us(&times, 99)
        );
        means.push(mean);
    }
    println!(
        "    replays are answered {} faster than new transfers, by mean latency (target 2.00x)",
        ratio(means[0], means[1])
    );
    if let Ok(server) = Arc::try_unwrap(server) {
        server.stop().await;
    }
    Ok(())
}
