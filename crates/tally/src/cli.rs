//! The command line: every flag is also an environment variable.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use tally_db::{DbSettings, Location, SqliteSync};
use tally_kernel::Currency;
use tokio_util::sync::CancellationToken;

use crate::platform::{self, Platform};

#[derive(Debug, Parser)]
#[command(
    name = "tally",
    version,
    about = "Billing and payments platform: wallets, ledger, events"
)]
pub struct Cli {
    #[command(flatten)]
    pub db: DbArgs,
    /// Which logs to write, as tracing filter directives (`info`, `debug,sqlx=warn`, ...).
    #[arg(
        long,
        env = "TALLY_LOG",
        default_value = "info,sqlx=warn",
        global = true
    )]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct DbArgs {
    /// Folder of the SQLite databases (one file per service).
    #[arg(long, env = "TALLY_DATA_DIR", default_value = "data", global = true)]
    pub data_dir: PathBuf,
    /// A postgres:// URL: use PostgreSQL (one schema per service) instead of SQLite.
    #[arg(long, env = "TALLY_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Connections per service pool.
    #[arg(
        long,
        env = "TALLY_DB_MAX_CONNECTIONS",
        default_value_t = 8,
        global = true
    )]
    pub db_max_connections: u32,
    /// SQLite durability: `full` syncs every commit (survives power loss), `normal` survives a
    /// process crash only.
    #[arg(long, env = "TALLY_SQLITE_SYNCHRONOUS", value_enum, default_value_t = SyncArg::Full, global = true)]
    pub sqlite_synchronous: SyncArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SyncArg {
    Full,
    Normal,
}

impl DbArgs {
    fn settings(&self) -> anyhow::Result<DbSettings> {
        let location = Location::from_settings(self.database_url.as_deref(), &self.data_dir)?;
        let mut settings = DbSettings::new(location);
        settings.max_connections = self.db_max_connections;
        settings.sqlite_sync = match self.sqlite_synchronous {
            SyncArg::Full => SqliteSync::Full,
            SyncArg::Normal => SqliteSync::Normal,
        };
        Ok(settings)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start every service in this process on one port.
    Serve(Box<ServeArgs>),
    /// Create or upgrade every service's database, then exit.
    Migrate,
    /// Inspect and replay events that consumers gave up on.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Watch the event logs.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Stream a payer CSV of claims into the claims service: good rows are stored, bad rows are
    /// written with their reasons to a JSON-lines file.
    ImportClaims {
        /// The CSV file (any size).
        file: PathBuf,
        /// Claims stored per transaction, at most 1000000 [default: 100000 on SQLite, 250000
        /// on PostgreSQL].
        #[arg(long)]
        batch_size: Option<usize>,
        /// Where rejected rows go (default: FILE.rejected.jsonl).
        #[arg(long)]
        rejects: Option<PathBuf>,
    },
    /// Measure, against a baseline run in the same process, and print ratios.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Create, list and revoke API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// GET /providers/top's query against the raw aggregate over all claims, as claims grow.
    TopProviders {
        /// Claim counts to measure at (comma-separated, growing).
        #[arg(long, value_delimiter = ',', default_values_t = [10_000u64, 100_000])]
        claims: Vec<u64>,
        #[arg(long, default_value_t = 10_000)]
        providers: u64,
        /// Reads of the top providers at each size.
        #[arg(long, default_value_t = 500)]
        samples: usize,
        /// An admin PostgreSQL URL: measure in a database created and dropped there instead of
        /// a temporary SQLite folder.
        #[arg(long, env = "TALLY_BENCH_POSTGRES_URL")]
        postgres: Option<String>,
    },
    /// tally import-claims against SQLite's .import and PostgreSQL's COPY of the same file.
    ImportClaims {
        #[arg(long, default_value_t = 100_000)]
        rows: u64,
        #[arg(long, default_value_t = 10_000)]
        providers: u64,
        /// An admin PostgreSQL URL to compare with COPY (a database is created and dropped).
        #[arg(long, env = "TALLY_BENCH_POSTGRES_URL")]
        postgres: Option<String>,
        /// PostgreSQL rounds, each a COPY then an import; the median of their ratios is printed.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// Idempotent transfers over HTTP (80% new keys, 19% replays, 1% conflicting): replays
    /// against new transfers, on SQLite and PostgreSQL.
    Payments {
        #[arg(long, default_value_t = 5_000)]
        requests: usize,
        #[arg(long, default_value_t = 100)]
        wallets: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// An admin PostgreSQL URL: measure there too, in a database created and dropped.
        #[arg(long, env = "TALLY_BENCH_POSTGRES_URL")]
        postgres: Option<String>,
    },
    /// Wallet transfers over HTTP, wallets picked uniformly and skewed, against pgbench's TPC-B on
    /// the same PostgreSQL and raw SQLite transactions.
    Transfers {
        #[arg(long, default_value_t = 10_000)]
        wallets: usize,
        /// How long each run lasts (each way of picking wallets, and the baseline).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Transfers in flight at once (and pgbench's clients).
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// An admin PostgreSQL URL: measure there too, in a database created and dropped.
        #[arg(long, env = "TALLY_BENCH_POSTGRES_URL")]
        postgres: Option<String>,
    },
    /// An HTTP route with no database work (GET /health/live): its peak rate, then its latency
    /// at half of it.
    Route {
        /// How long each of the two phases lasts.
        #[arg(long, default_value_t = 3)]
        seconds: u64,
        /// Requests in flight at once while finding the peak.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// Consultations closed in care to their bills adjusted in billing: the peak rate of closes,
    /// then the propagation's latency at half of it, on SQLite and PostgreSQL.
    Propagation {
        /// Appointments booked, then closed (a third for the peak, the rest at half of it).
        #[arg(long, default_value_t = 1_500)]
        closures: usize,
        /// Closes in flight at once while finding the peak.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Closes a second after the peak, instead of half of the peak.
        #[arg(long)]
        rate: Option<u128>,
        /// An admin PostgreSQL URL: measure there too, in a database created and dropped.
        #[arg(long, env = "TALLY_BENCH_POSTGRES_URL")]
        postgres: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it once.
    Create {
        /// What the token is for (shown by `token list`).
        #[arg(long)]
        name: String,
        /// Comma-separated scopes: SERVICE:read, SERVICE:write (includes read), or admin.
        #[arg(long)]
        scopes: String,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id; it is refused within the token cache time.
    Revoke { id: String },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long, env = "TALLY_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// 0 picks a free port.
    #[arg(long, env = "TALLY_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Run no event consumers in this process (another process runs them).
    #[arg(long, env = "TALLY_NO_CONSUMERS", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_consumers: bool,
    /// Currency of wallets opened without one.
    #[arg(long, env = "TALLY_DEFAULT_CURRENCY", default_value = "USD")]
    pub default_currency: String,
    /// The clinic's offset from UTC, for dates given without one (document 000's), e.g. +03:00.
    #[arg(long, env = "TALLY_CLINIC_UTC_OFFSET", default_value = "+00:00")]
    pub clinic_utc_offset: String,
    /// Base URL (http://) of the patients service when another process serves it; care checks
    /// patients there instead of in this process.
    #[arg(long, env = "TALLY_PATIENTS_URL", requires = "patients_token")]
    pub patients_url: Option<String>,
    /// Care's own token for the patients service (scope patients:read), with --patients-url.
    #[arg(long, env = "TALLY_PATIENTS_TOKEN", hide_env_values = true)]
    pub patients_token: Option<String>,
    /// A URL every notification is posted to, signed (repeatable; comma-separated in the
    /// environment variable).
    #[arg(
        long = "webhook",
        env = "TALLY_WEBHOOKS",
        value_delimiter = ',',
        requires = "webhook_secret"
    )]
    pub webhooks: Vec<String>,
    /// The secret webhook bodies are signed with (HMAC-SHA256).
    #[arg(long, env = "TALLY_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// SMTP server notifications are mailed through (plain SMTP; none: no e-mail).
    #[arg(long, env = "TALLY_SMTP_HOST")]
    pub smtp_host: Option<String>,
    #[arg(long, env = "TALLY_SMTP_PORT", default_value_t = 25)]
    pub smtp_port: u16,
    /// The sender of notification e-mails.
    #[arg(long, env = "TALLY_SMTP_FROM", default_value = "tally@localhost")]
    pub smtp_from: String,
    /// Attempts at delivering a notification before it is marked failed.
    #[arg(long, env = "TALLY_NOTIFICATION_MAX_ATTEMPTS", default_value_t = 5)]
    pub notification_max_attempts: u32,
    /// Wait after a failed delivery, doubling after each further one, in milliseconds.
    #[arg(
        long,
        env = "TALLY_NOTIFICATION_RETRY_BASE_MS",
        default_value_t = 30_000
    )]
    pub notification_retry_base_ms: u64,
    /// Longest wait between two delivery attempts, in milliseconds.
    #[arg(
        long,
        env = "TALLY_NOTIFICATION_RETRY_MAX_MS",
        default_value_t = 1_800_000
    )]
    pub notification_retry_max_ms: u64,
    /// Requests to GET /providers/top per minute per token (0: no limit).
    #[arg(long, env = "TALLY_TOP_PROVIDERS_PER_MINUTE", default_value_t = 10)]
    pub top_providers_per_minute: u32,
    /// Largest POST /claims body, in bytes (larger files: `tally import-claims`).
    #[arg(long, env = "TALLY_CLAIMS_BODY_LIMIT_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub claims_body_limit_bytes: usize,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "TALLY_BODY_LIMIT_BYTES", default_value_t = 64 * 1024)]
    pub body_limit_bytes: usize,
    /// Longest a request may run before it is answered 408, in milliseconds.
    #[arg(long, env = "TALLY_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,
    /// How long an Idempotency-Key is remembered, in hours.
    #[arg(long, env = "TALLY_IDEMPOTENCY_RETENTION_HOURS", default_value_t = 24)]
    pub idempotency_retention_hours: u32,
    /// Attempts at an event before it goes to the dead letters.
    #[arg(long, env = "TALLY_CONSUMER_MAX_ATTEMPTS", default_value_t = 5)]
    pub consumer_max_attempts: u32,
    /// Most connections served at once.
    #[arg(long, env = "TALLY_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Sustained writes (POST, PUT, PATCH, DELETE) per minute per API token; 0 turns the limit off.
    #[arg(long, env = "TALLY_WRITE_RATE_PER_MINUTE", default_value_t = 6000)]
    pub write_rate_per_minute: u32,
    /// Writes a token may make at once above the sustained rate.
    #[arg(long, env = "TALLY_WRITE_BURST", default_value_t = 1000)]
    pub write_burst: u32,
    /// How long a verified token is trusted before it is read again (a revocation takes effect
    /// within it), in milliseconds.
    #[arg(long, env = "TALLY_TOKEN_CACHE_MS", default_value_t = 2000)]
    pub token_cache_ms: u64,
    /// Require a token with `metrics:read` (or admin) for /metrics.
    #[arg(long, env = "TALLY_PROTECT_METRICS", value_parser = clap::builder::BoolishValueParser::new())]
    pub protect_metrics: bool,
    /// Largest message on the trading WebSocket, in bytes; a larger one closes the connection.
    #[arg(long, env = "TALLY_WS_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub ws_max_message_bytes: usize,
    /// Sustained messages per second on one trading WebSocket connection.
    #[arg(long, env = "TALLY_WS_MESSAGES_PER_SECOND", default_value_t = 50)]
    pub ws_messages_per_second: u32,
    /// Messages a trading WebSocket connection may send at once above the sustained rate.
    #[arg(long, env = "TALLY_WS_BURST", default_value_t = 100)]
    pub ws_burst: u32,
    /// Messages of one trading WebSocket connection handled at once.
    #[arg(long, env = "TALLY_WS_MAX_IN_FLIGHT", default_value_t = 64)]
    pub ws_max_in_flight: usize,
    /// How long a trading message waits for the wallets service's answer before its caller is
    /// told to ask again with the same id, in milliseconds.
    #[arg(long, env = "TALLY_WS_REPLY_TIMEOUT_MS", default_value_t = 10_000)]
    pub ws_reply_timeout_ms: u64,
    /// Logs as JSON lines instead of text.
    #[arg(long, env = "TALLY_LOG_JSON", value_parser = clap::builder::BoolishValueParser::new())]
    pub log_json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters (oldest first).
    List {
        /// Include dead letters already redriven.
        #[arg(long)]
        all: bool,
    },
    /// Apply dead letters again through their consumers, each effect at most once.
    Redrive {
        /// The dead letter to redrive.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        id: Option<String>,
        /// Redrive every dead letter (the default when no --id is given is an error).
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Print events as JSON lines as they commit, until interrupted.
    Tail {
        /// Start from the first event instead of the end of the logs.
        #[arg(long)]
        from_start: bool,
        /// Only this service's log.
        #[arg(long)]
        service: Option<String>,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = cli.db.settings()?;
    let log = cli.log.clone();
    match cli.command {
        Command::Serve(args) => serve(settings, &log, *args).await,
        Command::Migrate => {
            init_logs(&log, false);
            let platform = Platform::open(&settings).await?;
            for db in platform.databases() {
                println!("migrated {}", db.service());
            }
            platform.close().await;
            Ok(())
        }
        Command::Dlq(cmd) => {
            init_logs(&log, false);
            let mut platform = Platform::open(&settings).await?;
            // A redriven ADD_USER opens its wallet in the currency `serve` would have used.
            if let Ok(code) = std::env::var("TALLY_DEFAULT_CURRENCY") {
                platform.default_currency = Currency::parse(&code)
                    .with_context(|| format!("TALLY_DEFAULT_CURRENCY {code} is not usable"))?;
            }
            let result = dlq(&platform, cmd).await;
            platform.close().await;
            result
        }
        Command::ImportClaims {
            file,
            batch_size,
            rejects,
        } => {
            init_logs(&log, false);
            let db = tally_db::Db::open_and_migrate(&settings, &tally_claims::SCHEMA).await?;
            let rejects = rejects.unwrap_or_else(|| {
                let mut name = file.clone().into_os_string();
                name.push(".rejected.jsonl");
                PathBuf::from(name)
            });
            let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let report =
                crate::import::import_claims(&db, &file, batch_size, &rejects, progress).await;
            db.close().await;
            let report = report?;
            match &report.earlier {
                Some(earlier) if earlier.is_finished() => {
                    println!(
                        "already imported (started {}): accepted {}, rejected {}; nothing stored \
                         now",
                        earlier.started_at,
                        earlier.accepted,
                        earlier.rejected()
                    );
                    return Ok(());
                }
                Some(earlier) => println!(
                    "resumed after row {} of an earlier import, which had accepted {}",
                    earlier.rows_done, earlier.accepted
                ),
                None => {}
            }
            println!(
                "accepted {}, rejected {} in {:.1?} ({} rows/s)",
                report.accepted,
                report.rejected,
                report.elapsed,
                report.rows_per_second()
            );
            if report.earlier.is_some() {
                println!(
                    "the whole file: accepted {}, rejected {}",
                    report.accepted_in_all(),
                    report.rejected_in_all()
                );
            }
            if let Some(path) = report.rejects {
                println!("rejected rows: {}", path.display());
            }
            Ok(())
        }
        Command::Bench(BenchCommand::TopProviders {
            claims,
            providers,
            samples,
            postgres,
        }) => {
            init_logs(&log, false);
            let postgres = postgres.as_deref();
            crate::bench::top_providers(postgres, &claims, providers.max(1), samples.max(1)).await
        }
        Command::Bench(BenchCommand::ImportClaims {
            rows,
            providers,
            postgres,
            rounds,
        }) => {
            init_logs(&log, false);
            crate::bench::import_claims(rows, providers.max(1), postgres.as_deref(), rounds).await
        }
        Command::Bench(BenchCommand::Payments {
            requests,
            wallets,
            concurrency,
            postgres,
        }) => {
            init_logs(&log, false);
            let (wallets, concurrency) = (wallets.max(2), concurrency.max(1));
            crate::bench::payments(requests, wallets, concurrency, postgres.as_deref()).await
        }
        Command::Bench(BenchCommand::Transfers {
            wallets,
            seconds,
            concurrency,
            postgres,
        }) => {
            init_logs(&log, false);
            let (wallets, concurrency) = (wallets.max(2), concurrency.max(1));
            crate::bench::transfers(wallets, seconds.max(1), concurrency, postgres.as_deref()).await
        }
        Command::Bench(BenchCommand::Route {
            seconds,
            concurrency,
        }) => {
            init_logs(&log, false);
            crate::bench::route(seconds.max(1), concurrency.max(1)).await
        }
        Command::Bench(BenchCommand::Propagation {
            closures,
            concurrency,
            rate,
            postgres,
        }) => {
            init_logs(&log, false);
            let (closures, concurrency) = (closures.max(3), concurrency.max(1));
            crate::bench::propagation(closures, concurrency, rate, postgres.as_deref()).await
        }
        Command::Token(cmd) => {
            init_logs(&log, false);
            let auth = tally_db::Db::open_and_migrate(&settings, &tally_auth::SCHEMA).await?;
            let result = token(&auth, cmd).await;
            auth.close().await;
            result
        }
        Command::Events(EventsCommand::Tail {
            from_start,
            service,
        }) => {
            init_logs(&log, false);
            let platform = Platform::open(&settings).await?;
            tail(&platform, from_start, service.as_deref()).await
        }
    }
}

fn init_logs(directives: &str, json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(directives).unwrap_or_else(|e| {
        eprintln!("warning: --log {directives:?} is not a valid filter ({e}); using info");
        EnvFilter::new("info,sqlx=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init();
    } else {
        builder.with_ansi(false).init();
    }
}

async fn serve(settings: DbSettings, log: &str, args: ServeArgs) -> anyhow::Result<()> {
    init_logs(log, args.log_json);
    let default_currency = Currency::parse(&args.default_currency)
        .with_context(|| format!("--default-currency {} is not usable", args.default_currency))?;
    // Every setting is checked before any database is opened: a typo stops here, with nothing
    // created and no admin token printed.
    let clinic_utc_offset: chrono::FixedOffset = args.clinic_utc_offset.parse().map_err(|_| {
        anyhow::anyhow!(
            "--clinic-utc-offset must look like +03:00, not {}",
            args.clinic_utc_offset
        )
    })?;
    let secret = args.webhook_secret.clone().unwrap_or_default();
    let notifications = tally_notifications::NotificationSettings {
        webhooks: args
            .webhooks
            .iter()
            .map(|url| tally_notifications::Webhook {
                url: url.clone(),
                secret: secret.clone(),
            })
            .collect(),
        smtp: args
            .smtp_host
            .clone()
            .map(|host| tally_notifications::Smtp {
                host,
                port: args.smtp_port,
                from: args.smtp_from.clone(),
            }),
        max_attempts: args.notification_max_attempts.max(1),
        retry_base: Duration::from_millis(args.notification_retry_base_ms),
        retry_max: Duration::from_millis(args.notification_retry_max_ms),
        ..Default::default()
    };
    notifications
        .validate()
        .map_err(|e| anyhow::anyhow!("notification settings: {e}"))?;
    if let Some(url) = &args.patients_url {
        tally_care::HttpPatientDirectory::check_base_url(url)
            .map_err(|e| anyhow::anyhow!("--patients-url {url} {e}"))?;
    }
    let mut platform = Platform::open(&settings).await?;
    platform.default_currency = default_currency;
    if let Some(token) = tally_auth::store::first_admin_token(&platform.auth).await? {
        // Shown once, on standard output only: it is never logged or stored.
        println!("admin token: {}", token.text);
        tracing::info!(token_id = %token.id, "created the first admin token (printed once on stdout)");
    }
    let shutdown = CancellationToken::new();
    let bus = platform.bus(args.consumer_max_attempts);
    let mut tasks = bus.spawn(!args.no_consumers, shutdown.clone());
    tasks.spawn(platform::purge_idempotency_keys(
        platform.databases(),
        Duration::from_secs(u64::from(args.idempotency_retention_hours) * 3600),
        shutdown.clone(),
    ));
    let http = tally_http::HttpSettings {
        body_limit_bytes: args.body_limit_bytes,
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        max_connections: args.max_connections,
    };
    let limiter = tally_auth::WriteLimiter::new(tally_auth::WriteRate {
        per_minute: args.write_rate_per_minute,
        burst: args.write_burst,
    });
    tasks.spawn(platform::forget_idle_buckets(
        limiter.clone(),
        shutdown.clone(),
    ));
    let security = platform::Security {
        auth: tally_auth::AuthState::new(
            platform.auth.clone(),
            platform::SCOPE_SERVICES,
            Duration::from_millis(args.token_cache_ms),
        ),
        limiter,
        protect_metrics: args.protect_metrics,
    };
    if !args.no_consumers {
        tasks.spawn(tally_notifications::run_delivery(
            platform.notifications(notifications.clone()),
            shutdown.clone(),
        ));
    }
    let trading_connections = tally_trading::Connections::new(shutdown.clone());
    let api = platform::ApiSettings {
        patients: match (args.patients_url.clone(), args.patients_token.clone()) {
            (Some(url), Some(token)) => platform::PatientsAt::Http { url, token },
            _ => platform::PatientsAt::InProcess,
        },
        care: tally_care::CareSettings { clinic_utc_offset },
        notifications,
        default_currency,
        top_providers: tally_claims::TopProvidersRate {
            per_minute: args.top_providers_per_minute,
            burst: args.top_providers_per_minute.max(1),
        },
        claims_body_limit_bytes: args.claims_body_limit_bytes,
        trading_ws: tally_trading::WsSettings {
            max_message_bytes: args.ws_max_message_bytes,
            messages_per_second: args.ws_messages_per_second,
            burst: args.ws_burst,
            max_in_flight: args.ws_max_in_flight,
            reply_timeout: Duration::from_millis(args.ws_reply_timeout_ms),
        },
        trading_connections: trading_connections.clone(),
    };
    let app = tally_http::app::router(platform.http(api, security), &http);
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("failed to listen on {}:{}", args.host, args.port))?;
    let address = listener
        .local_addr()
        .context("failed to read the bound address")?;
    tracing::info!(%address, consumers = !args.no_consumers, "tally is serving");
    println!("listening on http://{address}");
    std::io::stdout().flush().ok();

    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        signal.cancel();
    });
    tally_http::app::serve(listener, app, http.max_connections, shutdown.clone())
        .await
        .context("the HTTP server failed")?;
    shutdown.cancel();
    // WebSocket connections outlive the HTTP server: each sends its last replies and closes.
    let still_open = trading_connections.closed(Duration::from_secs(10)).await;
    if still_open > 0 {
        tracing::warn!(still_open, "trading connections did not close in time");
    }
    while tasks.join_next().await.is_some() {}
    platform.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}

async fn dlq(platform: &Platform, cmd: DlqCommand) -> anyhow::Result<()> {
    let bus = platform.bus(1);
    match cmd {
        DlqCommand::List { all } => {
            let mut count = 0;
            for consumer in bus.consumers() {
                for letter in dead_letters(consumer, all).await? {
                    println!("{}", serde_json::to_string(&letter)?);
                    count += 1;
                }
            }
            eprintln!("{count} dead letter(s)");
        }
        DlqCommand::Redrive { id, all: _ } => {
            use tally_bus::dead_letter::RedriveOutcome;
            let mut failed = 0;
            let mut done = 0;
            for consumer in bus.consumers() {
                let ids: Vec<String> = match &id {
                    Some(id) => vec![id.clone()],
                    None => dead_letters(consumer, false)
                        .await?
                        .into_iter()
                        .map(|l| l.id)
                        .collect(),
                };
                for letter in ids {
                    let outcome = tally_bus::dead_letter::redrive(consumer, &letter).await?;
                    match &outcome {
                        RedriveOutcome::NotFound => continue,
                        RedriveOutcome::Failed(_) => failed += 1,
                        RedriveOutcome::Applied | RedriveOutcome::AlreadyApplied => done += 1,
                    }
                    println!("{letter} {} {outcome:?}", consumer.name);
                }
            }
            if done + failed == 0 {
                anyhow::bail!(
                    "no dead letter waits for redrive{}",
                    id.map(|i| format!(" with id {i}")).unwrap_or_default()
                );
            }
            if failed > 0 {
                anyhow::bail!("{failed} dead letter(s) failed again");
            }
        }
    }
    Ok(())
}

/// Every dead letter of `consumer`, oldest first, read page by page (with `all`, redriven ones
/// too).
async fn dead_letters(
    consumer: &tally_bus::Consumer,
    all: bool,
) -> anyhow::Result<Vec<tally_bus::dead_letter::DeadLetter>> {
    use tally_bus::dead_letter::{list_page, Page, LIST_LIMIT};
    let mut letters = Vec::new();
    let mut page = Some(Page {
        consumer: Some(consumer.name.to_owned()),
        after: None,
        limit: LIST_LIMIT,
    });
    while let Some(current) = page {
        let read = list_page(&consumer.db, &current, all).await?;
        page = current.next(&read);
        letters.extend(read);
    }
    Ok(letters)
}

async fn token(auth: &tally_db::Db, cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create { name, scopes } => {
            let scopes = tally_auth::Scopes::parse(&scopes, platform::SCOPE_SERVICES)?;
            let token = tally_auth::store::create(auth, &name, &scopes).await?;
            eprintln!(
                "created token {} ({name}, {scopes}); it is shown once:",
                token.id
            );
            println!("{}", token.text);
        }
        TokenCommand::List => {
            for info in tally_auth::store::list(auth).await? {
                println!("{}", serde_json::to_string(&info)?);
            }
        }
        TokenCommand::Revoke { id } => {
            if !tally_auth::store::revoke(auth, &id).await? {
                anyhow::bail!("no active token has id {id}");
            }
            eprintln!("revoked token {id}");
        }
    }
    Ok(())
}

async fn tail(platform: &Platform, from_start: bool, service: Option<&str>) -> anyhow::Result<()> {
    // The bus's logs: each with the row sources its events by reference are read from.
    let logs: Vec<_> = platform
        .bus(1)
        .logs()
        .iter()
        .filter(|log| service.is_none_or(|s| s == log.db.service()))
        .cloned()
        .collect();
    if logs.is_empty() {
        anyhow::bail!("no service named {}", service.unwrap_or_default());
    }
    let mut positions = Vec::with_capacity(logs.len());
    for log in &logs {
        positions.push(if from_start {
            0
        } else {
            tally_bus::log::head(&log.db).await?
        });
    }
    let mut out = std::io::stdout();
    loop {
        let mut idle = true;
        for (log, position) in logs.iter().zip(positions.iter_mut()) {
            for entry in tally_bus::log::read_after_with(&log.db, log.rows, *position, 500).await? {
                writeln!(out, "{}", entry.raw)?;
                *position = entry.seq;
                idle = false;
            }
        }
        out.flush()?;
        if idle {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    }
}
