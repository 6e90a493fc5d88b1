//! Fresh databases for tests of the crates built on this one: a temporary SQLite folder, or a
//! new PostgreSQL database per test.
//!
//! PostgreSQL is found at `TALLY_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). When it does not answer, the PostgreSQL
//! variant of a test is skipped with a loud message, unless `TALLY_REQUIRE_POSTGRES=1`, when it
//! fails: CI sets that, so that a skipped variant never passes for a run one.

use std::path::PathBuf;

use anyhow::Context as _;
use sqlx::{Connection as _, Executor as _};

use crate::{DbSettings, Location};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestBackend {
    Sqlite,
    Postgres,
}

/// A database location that lives as long as the value: a temporary folder or a PostgreSQL
/// database, dropped at the end.
pub struct TestLocation {
    pub location: Location,
    _dir: Option<TempDir>,
    postgres: Option<(String, String)>,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn admin_url() -> String {
    std::env::var("TALLY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| String::from("postgres://postgres@127.0.0.1:5432/postgres"))
}

fn postgres_required() -> bool {
    std::env::var("TALLY_REQUIRE_POSTGRES").is_ok_and(|v| v == "1" || v == "true")
}

impl TestLocation {
    /// A fresh location on `backend`; `None` when PostgreSQL is not reachable and not required.
    pub async fn new(backend: TestBackend) -> Option<TestLocation> {
        match backend {
            TestBackend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("tally-test-{}", uuid_like()));
                Some(TestLocation {
                    location: Location::SqliteDir(dir.clone()),
                    _dir: Some(TempDir(dir)),
                    postgres: None,
                })
            }
            TestBackend::Postgres => match create_postgres().await {
                Ok((url, name)) => Some(TestLocation {
                    location: Location::Postgres(url),
                    _dir: None,
                    postgres: Some((admin_url(), name)),
                }),
                Err(e) if !postgres_required() => {
                    eprintln!(
                        "\n*** SKIPPED the PostgreSQL variant: {e:#}. Set TALLY_TEST_POSTGRES_URL \
                         or start PostgreSQL; TALLY_REQUIRE_POSTGRES=1 makes this a failure. ***\n"
                    );
                    None
                }
                Err(e) => panic!("PostgreSQL is required (TALLY_REQUIRE_POSTGRES=1): {e:#}"),
            },
        }
    }

    pub fn settings(&self) -> DbSettings {
        DbSettings::new(self.location.clone())
    }

    /// The `--database-url` or `--data-dir` argument pair for the `tally` binary.
    pub fn cli_args(&self) -> [String; 2] {
        match &self.location {
            Location::SqliteDir(dir) => ["--data-dir".into(), dir.display().to_string()],
            Location::Postgres(url) => ["--database-url".into(), url.clone()],
        }
    }
}

impl Drop for TestLocation {
    fn drop(&mut self) {
        let Some((admin, name)) = self.postgres.take() else {
            return;
        };
        // Best effort, on a thread of its own: Drop may run inside or outside a runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = sqlx::AnyConnection::connect(&admin).await {
                    let _ = conn
                        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                        .await;
                }
            });
        })
        .join();
    }
}

async fn create_postgres() -> anyhow::Result<(String, String)> {
    sqlx::any::install_default_drivers();
    let admin = admin_url();
    let mut conn = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        sqlx::AnyConnection::connect(&admin),
    )
    .await
    .context("PostgreSQL did not answer within 5 s")?
    .with_context(|| format!("cannot connect to {admin}"))?;
    let name = format!("tally_t_{}", uuid_like());
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .context("CREATE DATABASE failed")?;
    let base = admin
        .rsplit_once('/')
        .map(|(base, _)| base)
        .unwrap_or(&admin);
    Ok((format!("{base}/{name}"), name))
}

fn uuid_like() -> String {
    tally_kernel::id::new_v7().simple().to_string()
}

/// Runs `scenario` on SQLite and on PostgreSQL (when reachable or required).
#[macro_export]
macro_rules! both_backends {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario($crate::testing::TestBackend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$scenario($crate::testing::TestBackend::Postgres).await;
            }
        }
    };
}
