//! The `tally` commands around `serve`: graceful shutdown, `migrate`, `events tail`, and the
//! dead-letter workflow with `dlq list` and `dlq redrive`.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{Connection as _, Executor as _};

use crate::support::{Api, Backend, TestServer};

fn tally(server: &TestServer, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(server.db_args())
        .args(args)
        .output()
        .expect("failed to run tally")
}

/// A setting `serve` could not use stops it at start, naming the setting, before it opens a
/// database: nothing is created and no admin token is printed.
#[test]
fn serve_refuses_unusable_settings_before_opening_anything() {
    let root = tempfile::tempdir().expect("failed to create a temporary folder");
    let data = root.path().join("data");
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "--patients-url",
                "https://patients.example.com",
                "--patients-token",
                "t",
            ],
            "--patients-url https://patients.example.com is https, and this build has no TLS",
        ),
        (
            &[
                "--patients-url",
                "http://patients.internal/?x=1",
                "--patients-token",
                "t",
            ],
            "must not have a query or a fragment",
        ),
        (
            &[
                "--webhook",
                "https://hooks.example.com/tally",
                "--webhook-secret",
                "s",
            ],
            "notification settings",
        ),
        (
            &["--clinic-utc-offset", "3"],
            "--clinic-utc-offset must look like +03:00",
        ),
        (
            &["--default-currency", "usd1"],
            "--default-currency usd1 is not usable",
        ),
    ];
    for (args, says) in cases {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
            .env_remove("TALLY_DATABASE_URL")
            .arg("--data-dir")
            .arg(&data)
            .args(["serve", "--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("failed to run tally");
        // A server that accepted the setting would run until stopped.
        let deadline = Instant::now() + Duration::from_secs(20);
        while child
            .try_wait()
            .expect("failed to wait for tally")
            .is_none()
        {
            if Instant::now() > deadline {
                child.kill().ok();
                panic!("{args:?} was accepted: tally serve kept running");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child
            .wait_with_output()
            .expect("failed to read tally's output");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stdout.contains("admin token"), "{args:?}: {stdout}");
        assert!(!data.exists(), "{args:?} created {}", data.display());
    }
}

async fn graceful_shutdown_finishes_in_flight_requests(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let api = server.api();
    let wallet = api.create_client("Graceful").await.wallet_id;
    let answered = Arc::new(AtomicI64::new(0));
    let requests: Vec<_> = (0..150)
        .map(|_| {
            let (api, answered) = (api.clone(), answered.clone());
            tokio::spawn(async move {
                let body = format!(r#"{{"walletId":{wallet},"amount":"1.00"}}"#);
                let result = Api::try_send(api.post_request("/resupplies", &body)).await;
                if matches!(&result, Ok(r) if r.status == 200) {
                    answered.fetch_add(1, Ordering::SeqCst);
                }
                result
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while answered.load(Ordering::SeqCst) < 5 {
        assert!(Instant::now() < deadline, "no deposit was answered");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let status = server.stop().await.expect("the server was running");
    assert!(
        status.success(),
        "tally serve exited with {status:?} after SIGTERM"
    );
    let mut ok = 0;
    for request in requests {
        // An error: not accepted before the listener closed, never applied (checked below).
        if let Ok(response) = request.await.expect("the request task") {
            assert_eq!(
                response.status,
                200,
                "an answered request failed: {}",
                response.text()
            );
            ok += 1;
        }
    }
    server.restart(&[]).await;
    let balance = server.api().wallet(wallet).await.balance;
    assert_eq!(
        balance,
        ok * 100,
        "every answered deposit, and nothing else, is in the balance"
    );
}
on_both_backends!(graceful_shutdown_finishes_in_flight_requests: graceful_shutdown_sqlite, graceful_shutdown_postgres);

async fn migrate_creates_every_database(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let _ = server.stop().await;
    let output = tally(&server, &["migrate"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    for service in ["wallets", "reporting", "billing", "claims", "patients"] {
        assert!(stdout.contains(&format!("migrated {service}")), "{stdout}");
    }
}
on_both_backends!(migrate_creates_every_database: migrate_sqlite, migrate_postgres);

/// Writes an event that reporting cannot apply (a version it does not know) straight into the
/// wallets outbox, as a newer publisher would. Returns its id.
async fn publish_unknown_version(server: &TestServer) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    let envelope = serde_json::json!({
        "id": id, "type": "funds.deposited", "version": 2, "source": "wallets",
        "aggregate_type": "wallet", "aggregate_id": "1", "occurred_at": "2026-01-01T00:00:00Z",
        "correlation_id": "cli-test", "causation_id": "cli-test",
        "data": { "amount_minor": 1, "currency": "USD" }
    })
    .to_string();
    let values = format!(
        "'{id}', {{seq}}, 'funds.deposited', '1', '{envelope}', '2026-01-01T00:00:00.000000Z'"
    );
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&server.database_url("wallets"))
        .await
        .expect("connect to the wallets database");
    let sql = match server.backend() {
        // One writer at a time: take the next position in the same transaction.
        Backend::Sqlite => format!(
            "BEGIN IMMEDIATE; UPDATE log_head SET last_seq = last_seq + 1 WHERE id = 1; \
             INSERT INTO outbox (id, seq, topic, partition_key, envelope, created_at) VALUES ({}); COMMIT;",
            values.replace("{seq}", "(SELECT last_seq FROM log_head WHERE id = 1)")
        ),
        // The sequencer numbers it.
        Backend::Postgres => format!(
            "INSERT INTO wallets.outbox (id, seq, topic, partition_key, envelope, created_at) VALUES ({})",
            values.replace("{seq}", "NULL")
        ),
    };
    conn.execute(sql.as_str()).await.expect("write the event");
    id
}

async fn dead_letters_from_the_command_line(backend: Backend) {
    let server = TestServer::start(backend).await;
    let api = server.api();
    api.create_client("Dlq").await;
    let poisoned = publish_unknown_version(&server).await;

    let deadline = Instant::now() + Duration::from_secs(15);
    let listed = loop {
        let output = tally(&server, &["dlq", "list"]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if stdout.contains(&poisoned) {
            break stdout;
        }
        assert!(
            Instant::now() < deadline,
            "the event never reached the dead letters: {stdout}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let letter: serde_json::Value = serde_json::from_str(listed.lines().next().expect("one line"))
        .expect("dlq list prints JSON lines");
    assert_eq!(letter["consumer"], "reporting.statistics");
    assert_eq!(letter["event_type"], "funds.deposited");
    assert!(
        letter["error"].as_str().unwrap_or("").contains("version 2"),
        "{letter}"
    );

    // The consumer went on past it: the client created after it is counted, the event is not.
    api.create_client("After").await;
    let stats = crate::support::eventually(
        Duration::from_secs(15),
        Duration::from_millis(50),
        "statistics count the client created after the dead letter",
        || async {
            let stats = api.statistics().await;
            (stats.clients_created == 2).then_some(stats)
        },
    )
    .await;
    assert_eq!(
        stats.deposits.count, 0,
        "the unknown version was not applied: {stats:?}"
    );

    // It still cannot be applied: redrive says so and fails; the letter stays.
    let redrive = tally(&server, &["dlq", "redrive", "--all"]);
    assert!(
        !redrive.status.success(),
        "a redrive that failed again must fail"
    );
    assert!(String::from_utf8_lossy(&redrive.stderr).contains("failed again"));
    assert!(String::from_utf8_lossy(&tally(&server, &["dlq", "list"]).stdout).contains(&poisoned));
    let unknown = tally(&server, &["dlq", "redrive", "--id", "no-such-letter"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no dead letter"));

    // `events tail --from-start` prints every event of the logs, the poisoned one included.
    let mut tail = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(server.db_args())
        .args(["events", "tail", "--from-start"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start events tail");
    let stdout = tail.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    // Positions follow commit order, not the order of the test's writes: read until both the
    // poisoned event and a client.created have been printed.
    let done = |seen: &[String]| {
        seen.iter().any(|l| l.contains(&poisoned))
            && seen
                .iter()
                .any(|l| l.contains("\"type\":\"client.created\""))
    };
    while !done(&seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    let _ = tail.kill();
    let _ = tail.wait();
    assert!(
        seen.iter().any(|l| l.contains(&poisoned)),
        "tail did not print the event: {seen:?}"
    );
    let created = seen
        .iter()
        .filter(|l| l.contains("\"type\":\"client.created\""))
        .count();
    assert!(created >= 1, "tail printed no client.created: {seen:?}");
    for line in &seen {
        serde_json::from_str::<serde_json::Value>(line)
            .expect("each tail line is one JSON envelope");
    }
}
on_both_backends!(dead_letters_from_the_command_line: dead_letters_sqlite, dead_letters_postgres);

/// The output of `tally bench ARGS`, which must succeed; with `--postgres` when `backends` has
/// PostgreSQL. The servers it starts keep 2 connections per service, so that the benches leave
/// room on the shared PostgreSQL for the tests running beside them.
fn bench(args: &[&str], backends: &[Backend]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tally"));
    command
        .arg("bench")
        .args(args)
        .env("TALLY_DB_MAX_CONNECTIONS", "2");
    if backends.contains(&Backend::Postgres) {
        command
            .arg("--postgres")
            .arg(crate::support::postgres_admin_url());
    }
    let output = command.output().expect("failed to run tally bench");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `tally bench payments`, small: it runs a real server of this binary, checks every answer
/// (a replay gets the first answer back, a conflicting key is refused) and that the ledger
/// holds each new transfer once, and exits non-zero if any of that fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payments_bench_checks_its_answers_and_prints_the_replay_ratio() {
    let backends = crate::support::backends("cli::the_payments_bench").await;
    let stdout = bench(
        &[
            "payments",
            "--requests",
            "400",
            "--wallets",
            "5",
            "--concurrency",
            "4",
        ],
        &backends,
    );
    let runs = stdout
        .lines()
        .filter(|l| l.ends_with("the ledger balances and holds each new transfer once"))
        .count();
    assert_eq!(runs, backends.len(), "{stdout}");
    assert_eq!(
        stdout.matches("replays are answered ").count(),
        backends.len(),
        "{stdout}"
    );
}

/// `tally bench propagation`, small: it books and closes consultations on a real server of this
/// binary, checks that every bill was adjusted once to the closed price, each by its own
/// consultation's event, and prints the propagation's latencies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_propagation_bench_checks_every_bill_and_prints_its_latencies() {
    let backends = crate::support::backends("cli::the_propagation_bench").await;
    let stdout = bench(
        &["propagation", "--closures", "60", "--concurrency", "4"],
        &backends,
    );
    assert_eq!(
        stdout
            .matches("every bill adjusted once, to the closed price")
            .count(),
        backends.len(),
        "{stdout}"
    );
    assert_eq!(
        stdout
            .matches("(target at half of the peak: p99 under 20000 µs)")
            .count(),
        backends.len(),
        "{stdout}"
    );
}

/// `tally bench route`, short: it finds the peak rate of a route with no database work on a
/// real server of this binary, then prints the latency at half of it, and a bare server's at
/// the same rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_bench_prints_the_latency_at_half_the_peak() {
    let stdout = bench(&["route", "--seconds", "1", "--concurrency", "4"], &[]);
    assert!(stdout.contains("  tally serve: peak "), "{stdout}");
    assert!(
        stdout.contains("  a bare axum server of the route at the same rate: p50 "),
        "{stdout}"
    );
    assert!(stdout.contains("(target: p99 under 1000 µs)"), "{stdout}");
}

/// `tally bench transfers`, small: transfers over HTTP on a real server of this binary, against
/// raw SQLite transactions and `pgbench` on PostgreSQL; it checks that the ledger balances and
/// holds each answered transfer once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transfers_bench_checks_the_ledger_and_prints_ratios_to_its_baselines() {
    let backends = crate::support::backends("cli::the_transfers_bench").await;
    let stdout = bench(
        &[
            "transfers",
            "--wallets",
            "20",
            "--seconds",
            "1",
            "--concurrency",
            "4",
        ],
        &backends,
    );
    assert_eq!(
        stdout
            .matches("the ledger balances and holds each answered transfer once")
            .count(),
        backends.len(),
        "{stdout}"
    );
    assert_eq!(
        stdout.matches(" of the baseline (target 1.00x").count(),
        2 * backends.len(),
        "{stdout}"
    );
}
