//! Database access shared by every service: SQLite or PostgreSQL behind one code path.
//!
//! A service gets a [`Db`]: its own SQLite file in the data folder, or its own schema in a
//! PostgreSQL database. Queries use portable SQL through sqlx's `Any` driver (`$1` placeholders,
//! integers for money, RFC 3339 text for time), so no service logic is written twice. This crate
//! also owns the infrastructure tables every service database has (outbox, inbox, consumer
//! positions, dead letters, idempotency records); it knows nothing about any one service.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, Connection as _, Executor as _, Transaction};

pub mod error;
pub mod group;
pub mod idempotency;
pub mod testing;

pub use error::{classify, DbErrorKind};
pub use group::SharedWork;

/// A write transaction on a service's database.
pub type WriteTx = Transaction<'static, Any>;

/// A write transaction through the native PostgreSQL driver (see [`Db::begin_postgres`]).
pub type PgTx = Transaction<'static, sqlx::Postgres>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where the databases live: a folder of SQLite files, or one PostgreSQL database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    SqliteDir(PathBuf),
    Postgres(String),
}

impl Location {
    /// A `postgres://` (or `postgresql://`) URL selects PostgreSQL; no URL, the data folder.
    /// Any other URL is refused rather than silently ignored.
    pub fn from_settings(database_url: Option<&str>, data_dir: &Path) -> anyhow::Result<Self> {
        match database_url {
            None | Some("") => Ok(Location::SqliteDir(data_dir.to_owned())),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Location::Postgres(url.to_owned()))
            }
            Some(_) => anyhow::bail!(
                "the database URL must start with postgres://; for SQLite give a data folder instead"
            ),
        }
    }
}

/// How SQLite makes commits durable. `Full` syncs the log at every commit: an acknowledged
/// operation survives a power cut. `Normal` survives a process crash but not a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqliteSync {
    Full,
    Normal,
}

#[derive(Debug, Clone)]
pub struct DbSettings {
    pub location: Location,
    /// Connections per service pool (readers on SQLite; everything on PostgreSQL).
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub sqlite_sync: SqliteSync,
}

impl DbSettings {
    pub fn new(location: Location) -> Self {
        Self {
            location,
            max_connections: 8,
            acquire_timeout: Duration::from_secs(10),
            sqlite_sync: SqliteSync::Full,
        }
    }
}

/// A service's schema: its name (file or PostgreSQL schema) and its own migrations per backend.
pub struct ServiceSchema {
    pub name: &'static str,
    pub sqlite: Migrator,
    pub postgres: Migrator,
}

static INFRA_SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static INFRA_POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// Set on every SQLite connection: the write-ahead log, the durability asked for, waiting up to
/// 5 s for another process's write lock, and foreign keys.
const SQLITE_PRAGMAS_FULL: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                                   PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;";
const SQLITE_PRAGMAS_NORMAL: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                     PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;";

/// The SQLite writer connection's page cache: 32 MiB (negative sizes are KiB).
const WRITER_CACHE_PRAGMA: &str = "PRAGMA cache_size = -32768";

/// One service's database handle. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    service: &'static str,
    backend: Backend,
    /// On SQLite a single connection: writers queue here, in the process, instead of spinning
    /// on the file lock. On PostgreSQL the same pool as `reader`.
    writer: AnyPool,
    reader: AnyPool,
    /// PostgreSQL only: the same schema through the native driver, connected on first use, for
    /// what the portable driver cannot do (binary `COPY`, array parameters): bulk writes.
    postgres: Option<sqlx::PgPool>,
    /// Bumped after every commit made through [`Db::commit`]; in-process log readers wait on it
    /// instead of polling.
    commits: Arc<tokio::sync::watch::Sender<u64>>,
    /// SQLite only: the queue of [`Db::write_shared`], started on first use.
    batcher: std::sync::OnceLock<group::Batcher>,
}

impl Db {
    /// Opens (creating if needed) the service's database; does not migrate.
    pub async fn open(settings: &DbSettings, service: &'static str) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        match &settings.location {
            Location::SqliteDir(dir) => open_sqlite(settings, dir, service).await,
            Location::Postgres(url) => open_postgres(settings, url, service).await,
        }
    }

    /// Opens the service's database and applies the infrastructure and service migrations.
    pub async fn open_and_migrate(
        settings: &DbSettings,
        schema: &ServiceSchema,
    ) -> anyhow::Result<Db> {
        let db = Db::open(settings, schema.name).await?;
        db.migrate(schema).await?;
        Ok(db)
    }

    pub async fn migrate(&self, schema: &ServiceSchema) -> anyhow::Result<()> {
        let (infra, own) = match self.backend() {
            Backend::Sqlite => (&INFRA_SQLITE, &schema.sqlite),
            Backend::Postgres => (&INFRA_POSTGRES, &schema.postgres),
        };
        let mut migrations: Vec<_> = infra.iter().chain(own.iter()).cloned().collect();
        migrations.sort_by_key(|m| m.version);
        let migrator = Migrator {
            migrations: Cow::Owned(migrations),
            ignore_missing: false,
            locking: true,
            no_tx: false,
        };
        migrator
            .run(&self.inner.writer)
            .await
            .with_context(|| format!("failed to migrate the {} database", self.service()))
    }

    fn from_parts(
        service: &'static str,
        backend: Backend,
        writer: AnyPool,
        reader: AnyPool,
        postgres: Option<sqlx::PgPool>,
    ) -> Db {
        let commits = Arc::new(tokio::sync::watch::channel(0).0);
        Db {
            inner: Arc::new(Inner {
                service,
                backend,
                writer,
                reader,
                postgres,
                commits,
                batcher: std::sync::OnceLock::new(),
            }),
        }
    }

    pub fn service(&self) -> &'static str {
        self.inner.service
    }

    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// The pool for reads that need no write lock.
    pub fn reader(&self) -> &AnyPool {
        &self.inner.reader
    }

    /// On PostgreSQL, the service's schema through the native driver (see [`PgTx`]); `None` on
    /// SQLite. Its connections count against the same server, not against the pool of
    /// [`Db::reader`]: it opens them only when first used.
    fn postgres(&self) -> Option<&sqlx::PgPool> {
        self.inner.postgres.as_ref()
    }

    /// Starts a write transaction through the native PostgreSQL driver, for bulk writes (binary
    /// `COPY`, array parameters); `None` on SQLite. Commit it with [`Db::commit_postgres`].
    pub async fn begin_postgres(&self) -> Option<Result<PgTx, sqlx::Error>> {
        Some(self.postgres()?.begin().await)
    }

    /// Commits a native PostgreSQL write transaction and wakes this process's log readers.
    pub async fn commit_postgres(&self, tx: PgTx) -> Result<(), sqlx::Error> {
        tx.commit().await?;
        self.signal_commit();
        Ok(())
    }

    /// Starts a write transaction. On SQLite it is `BEGIN IMMEDIATE`: the write lock is taken at
    /// the start, so two writers never discover each other halfway through.
    pub async fn begin_write(&self) -> Result<WriteTx, sqlx::Error> {
        match self.backend() {
            Backend::Sqlite => self.inner.writer.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.inner.writer.begin().await,
        }
    }

    /// Commits a write transaction and wakes this process's readers of the service's log.
    pub async fn commit(&self, tx: WriteTx) -> Result<(), sqlx::Error> {
        tx.commit().await?;
        self.signal_commit();
        Ok(())
    }

    /// Runs `work` in a write transaction and commits it; returns its value once committed.
    /// On SQLite the transaction is shared with the work of other callers waiting at the same
    /// time, each in a savepoint of its own, and committed once for all (group commit, see
    /// [`group`]). On PostgreSQL, whose writers run side by side, it has the transaction alone,
    /// in the same savepoint. `work` must not commit or roll back, but may roll back its own
    /// writes with [`group::roll_back_piece`]; it may run more than once.
    pub async fn write_shared<T: Send + 'static>(
        &self,
        work: SharedWork<T>,
    ) -> Result<T, sqlx::Error> {
        match self.backend() {
            Backend::Sqlite => {
                let batcher = self.inner.batcher.get_or_init(|| {
                    group::Batcher::start(self.inner.writer.clone(), self.inner.commits.clone())
                });
                batcher.write(work).await
            }
            Backend::Postgres => {
                let mut tx = self.begin_write().await?;
                sqlx::query(group::PIECE_SAVEPOINT)
                    .execute(&mut *tx)
                    .await?;
                let value = work(&mut tx).await?;
                self.commit(tx).await?;
                Ok(value)
            }
        }
    }

    /// Wakes the readers of this service's log (after a commit made some other way).
    pub fn signal_commit(&self) {
        self.inner.commits.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that changes after each commit made through [`Db::commit`].
    pub fn subscribe_commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.commits.subscribe()
    }

    /// How many rows of `params_per_row` parameters one multi-row statement should carry.
    /// PostgreSQL gains from few round trips, up to a few thousand parameters. On SQLite two
    /// costs pull apart: binding looks each parameter up among the statement's parameters (a
    /// cost growing with the square of their count), while each statement is a hand-off to
    /// the connection's thread. About 256 parameters was the fastest for imports (measured
    /// with `tally bench import-claims`: 64 and 512 were slower).
    pub fn rows_per_statement(&self, params_per_row: usize) -> usize {
        let params = match self.backend() {
            Backend::Sqlite => 256,
            Backend::Postgres => 2_000,
        };
        (params / params_per_row.max(1)).max(1)
    }

    /// The row-locking suffix for a `SELECT` inside a write transaction. SQLite needs none: the
    /// immediate transaction already holds the database's only write lock.
    pub fn for_update(&self) -> &'static str {
        match self.backend() {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
    }

    /// Checks the database answers; used by `/health/ready`.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(self.reader())
            .await
            .map(|_| ())
    }

    pub async fn close(&self) {
        self.inner.writer.close().await;
        self.inner.reader.close().await;
        if let Some(postgres) = self.postgres() {
            postgres.close().await;
        }
    }
}

/// Most parameters one multi-row statement binds on SQLite (its limit is 32,766).
pub const SQLITE_PARAMS_PER_STATEMENT: usize = 8_192;

/// How many rows of `params_per_row` parameters a full multi-row statement carries on SQLite.
pub fn sqlite_rows_per_statement(params_per_row: usize) -> usize {
    (SQLITE_PARAMS_PER_STATEMENT / params_per_row.max(1)).max(1)
}

/// How `rows` rows of `params_per_row` parameters are split into multi-row statements on
/// SQLite: full statements of [`sqlite_rows_per_statement`] rows, then the rest in powers of
/// two, so that only a few distinct statements are ever prepared (and stay in the connection's
/// statement cache).
pub fn sqlite_statement_sizes(rows: usize, params_per_row: usize) -> impl Iterator<Item = usize> {
    let per_statement = sqlite_rows_per_statement(params_per_row);
    let rest = rows % per_statement;
    std::iter::repeat_n(per_statement, rows / per_statement).chain(
        (0..usize::BITS)
            .rev()
            .map(|bit| 1usize << bit)
            .filter(move |size| rest & size != 0),
    )
}

/// The SQL of a multi-row statement of `rows` rows on SQLite: `full`, the statement of
/// [`sqlite_rows_per_statement`] rows that the caller built once, when it has that many rows,
/// else `build(rows)`.
pub fn sqlite_statement(
    rows: usize,
    full: &(usize, String),
    build: impl Fn(usize) -> String,
) -> Cow<'_, str> {
    if rows == full.0 {
        Cow::Borrowed(&full.1)
    } else {
        Cow::Owned(build(rows))
    }
}

/// The `VALUES` list of a multi-row statement for SQLite: `rows` groups of `params_per_row`
/// anonymous parameters, `(?, ?), (?, ?)`. sqlx binds anonymous parameters in order without
/// asking SQLite their names, which costs a search through the statement's named parameters
/// (with `$1` ... `$N`, binding a statement is quadratic in its number of parameters).
pub fn sqlite_values(rows: usize, params_per_row: usize) -> String {
    let mut group = String::from("(?");
    for _ in 1..params_per_row {
        group.push_str(", ?");
    }
    group.push(')');
    let mut sql = String::with_capacity(rows * (group.len() + 2));
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&group);
    }
    sql
}

async fn open_sqlite(
    settings: &DbSettings,
    dir: &Path,
    service: &'static str,
) -> anyhow::Result<Db> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("failed to create the data folder {}", dir.display()))?;
    let path = dir.join(format!("{service}.db"));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let pragmas = match settings.sqlite_sync {
        SqliteSync::Full => SQLITE_PRAGMAS_FULL,
        SqliteSync::Normal => SQLITE_PRAGMAS_NORMAL,
    };
    let options: AnyConnectOptions = url.parse().context("failed to parse the SQLite path")?;
    let pool = |max: u32, writer: bool| {
        AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(settings.acquire_timeout)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    conn.execute(pragmas).await?;
                    if writer {
                        conn.execute(WRITER_CACHE_PRAGMA).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options.clone())
    };
    // The writer's page cache holds a whole batch's dirty pages (an import writes up to about
    // 10 MB per transaction): with the default 2 MB SQLite spills them to the log before the
    // commit and writes many of them twice.
    let writer = pool(1, true)
        .await
        .with_context(|| format!("failed to open {}", path.display()))?;
    let reader = pool(settings.max_connections.max(1), false)
        .await
        .with_context(|| format!("failed to open {}", path.display()))?;
    Ok(Db::from_parts(
        service,
        Backend::Sqlite,
        writer,
        reader,
        None,
    ))
}

async fn open_postgres(
    settings: &DbSettings,
    url: &str,
    service: &'static str,
) -> anyhow::Result<Db> {
    let options: AnyConnectOptions = url.parse().context("failed to parse the database URL")?;
    let mut conn = sqlx::AnyConnection::connect_with(&options)
        .await
        .context("failed to connect to PostgreSQL")?;
    // Schema names are the services' own constant names, never user input.
    let create = format!("CREATE SCHEMA IF NOT EXISTS {service}");
    if let Err(e) = sqlx::raw_sql(&create).execute(&mut conn).await {
        // Two processes creating the same schema at once: one wins, the other sees a duplicate.
        if classify(&e) != DbErrorKind::UniqueViolation {
            return Err(e).with_context(|| format!("failed to create schema {service}"));
        }
    }
    conn.close().await.ok();
    let search_path: Arc<str> = format!("SET search_path TO {service}").into();
    let native_search_path = search_path.clone();
    let pool = AnyPoolOptions::new()
        .max_connections(settings.max_connections.max(2))
        .acquire_timeout(settings.acquire_timeout)
        .after_connect(move |conn, _| {
            let search_path = search_path.clone();
            Box::pin(async move { conn.execute(&*search_path).await.map(|_| ()) })
        })
        .connect_with(options)
        .await
        .context("failed to connect to PostgreSQL")?;
    let native_options: sqlx::postgres::PgConnectOptions =
        url.parse().context("failed to parse the database URL")?;
    let native = sqlx::postgres::PgPoolOptions::new()
        .max_connections(settings.max_connections.max(2))
        .min_connections(0)
        .acquire_timeout(settings.acquire_timeout)
        .after_connect(move |conn, _| {
            let search_path = native_search_path.clone();
            Box::pin(async move { conn.execute(&*search_path).await.map(|_| ()) })
        })
        .connect_lazy_with(native_options);
    Ok(Db::from_parts(
        service,
        Backend::Postgres,
        pool.clone(),
        pool,
        Some(native),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_statements_cover_every_row_with_few_distinct_sizes() {
        let full = sqlite_rows_per_statement(14);
        assert_eq!(full, SQLITE_PARAMS_PER_STATEMENT / 14);
        for rows in [0, 1, 2, 3, full - 1, full, full + 1, 5_000, 10_000] {
            let sizes: Vec<usize> = sqlite_statement_sizes(rows, 14).collect();
            assert_eq!(sizes.iter().sum::<usize>(), rows);
            assert!(sizes
                .iter()
                .all(|&s| s == full || (s.is_power_of_two() && s < full)));
        }
        assert_eq!(sqlite_rows_per_statement(100_000), 1);
    }

    #[test]
    fn sqlite_values_has_one_anonymous_parameter_per_value() {
        assert_eq!(sqlite_values(1, 1), "(?)");
        assert_eq!(sqlite_values(2, 3), "(?, ?, ?), (?, ?, ?)");
    }
}
