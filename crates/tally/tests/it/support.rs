//! The harness of the black-box tests: starts the real `tally` binary on a fresh database (a SQLite
//! data folder, or a PostgreSQL database of its own), speaks HTTP to it, and reads money exactly:
//! amounts are taken from the raw JSON text and compared as minor units, never as binary floats.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use reqwest::header::{HeaderMap, CONTENT_TYPE};
use serde_json::value::RawValue;
use sqlx::{AnyConnection, Connection as _, Executor as _};
use tally_kernel::{Currency, Decimal, Money};

/// Where the PostgreSQL variant of each test creates its database (an admin connection URL).
pub const POSTGRES_URL_ENV: &str = "TALLY_TEST_POSTGRES_URL";
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Set to `1` (as CI does) to make an unreachable PostgreSQL a failure instead of a skip.
pub const REQUIRE_POSTGRES_ENV: &str = "TALLY_REQUIRE_POSTGRES";

/// How long the binary may take to print its listening line (first start runs migrations).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful stop (SIGTERM) may take before the process is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// A request that takes longer than this is a failure, not a slow pass.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Settings the binary reads from the environment, which must not leak in from the developer's.
const TALLY_ENV_VARS: [&str; 5] = [
    "TALLY_HOST",
    "TALLY_PORT",
    "TALLY_DATA_DIR",
    "TALLY_DATABASE_URL",
    "TALLY_NO_CONSUMERS",
];

/// Declares the two tests of one scenario (`async fn scenario(backend: Backend)`): the SQLite one
/// always runs; the PostgreSQL one runs when PostgreSQL is reachable, and says loudly when not.
macro_rules! on_both_backends {
    ($scenario:ident: $sqlite:ident, $postgres:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            $scenario($crate::support::Backend::Sqlite).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            let test = concat!(module_path!(), "::", stringify!($postgres));
            let backends = $crate::support::backends(test).await;
            if backends.contains(&$crate::support::Backend::Postgres) {
                $scenario($crate::support::Backend::Postgres).await;
            }
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn postgres_admin_url() -> String {
    std::env::var(POSTGRES_URL_ENV).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

/// The backends `test` runs on: SQLite always; PostgreSQL when reachable. An unreachable
/// PostgreSQL is a loud skip, or a failure when `TALLY_REQUIRE_POSTGRES=1`.
pub async fn backends(test: &str) -> Vec<Backend> {
    let mut backends = vec![Backend::Sqlite];
    let url = postgres_admin_url();
    match postgres_reachable(&url).await {
        Ok(()) => backends.push(Backend::Postgres),
        Err(why) => {
            if std::env::var(REQUIRE_POSTGRES_ENV).as_deref() == Ok("1") {
                panic!(
                    "{test}: PostgreSQL is required ({REQUIRE_POSTGRES_ENV}=1) but {url} is not \
                     reachable: {why}"
                );
            }
            // Straight to the process's stderr: the test harness captures `eprintln!` of
            // passing tests, and a skip must not pass unnoticed.
            let _ = writeln!(
                std::io::stderr(),
                "\n!!!!!!!! SKIPPED the PostgreSQL variant of {test}: {url} is not reachable \
                 ({why}). Set {POSTGRES_URL_ENV} to a reachable server, or \
                 {REQUIRE_POSTGRES_ENV}=1 to make this a failure. !!!!!!!!\n"
            );
        }
    }
    backends
}

async fn postgres_reachable(url: &str) -> Result<(), String> {
    sqlx::any::install_default_drivers();
    match tokio::time::timeout(Duration::from_secs(5), AnyConnection::connect(url)).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("connecting timed out after 5 s".to_owned()),
    }
}

/// A PostgreSQL database of one test's own, dropped (best effort) when the test ends.
struct PgDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDatabase {
    async fn create() -> Self {
        sqlx::any::install_default_drivers();
        let admin_url = postgres_admin_url();
        let name = format!("tally_t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = AnyConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("failed to connect to {admin_url}: {e}"));
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap_or_else(|e| panic!("failed to create database {name}: {e}"));
        let _ = conn.close().await;
        let mut url = reqwest::Url::parse(&admin_url)
            .unwrap_or_else(|e| panic!("{POSTGRES_URL_ENV} `{admin_url}` is not a URL: {e}"));
        url.set_path(&format!("/{name}"));
        Self {
            admin_url,
            name,
            url: url.to_string(),
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut conn = AnyConnection::connect(&admin_url).await.ok()?;
                let result = conn.execute(sql.as_str()).await;
                let _ = conn.close().await;
                result.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("note: could not drop test database {}", self.name);
        }
    }
}

/// A pooled client; with a token, it sends `Authorization: Bearer <token>` on every request.
pub fn http_client(token: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .expect("a token is a valid header value");
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(512)
        .default_headers(headers)
        .build()
        .expect("failed to build the HTTP client")
}

/// The real `tally serve` process, on port 0, with its own data folder (and PostgreSQL database).
pub struct TestServer {
    child: Option<Child>,
    port: u16,
    /// The admin token printed at the first start; the client sends it with every request.
    admin_token: Option<String>,
    client: reqwest::Client,
    root: tempfile::TempDir,
    database: Option<PgDatabase>,
}

impl TestServer {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, &[]).await
    }

    /// Starts the server with extra command-line arguments (such as `--no-consumers`).
    pub async fn start_with(backend: Backend, extra_args: &[&str]) -> Self {
        let root = tempfile::tempdir().expect("failed to create a temporary folder");
        let database = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(PgDatabase::create().await),
        };
        let mut server = Self {
            child: None,
            port: 0,
            admin_token: None,
            client: http_client(None),
            root,
            database,
        };
        server.spawn(extra_args).await;
        server
    }

    fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.root.path().join("tally-stderr.log")
    }

    async fn spawn(&mut self, extra_args: &[&str]) {
        assert!(self.child.is_none(), "the server is already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("failed to open the server log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_tally"));
        command
            .arg("serve")
            .arg("--port")
            .arg("0")
            .arg("--data-dir")
            .arg(self.data_dir());
        if let Some(database) = &self.database {
            command.arg("--database-url").arg(&database.url);
        }
        command.args(extra_args);
        for var in TALLY_ENV_VARS {
            command.env_remove(var);
        }
        // Four connections per service, not eight: the tests running side by side share one
        // PostgreSQL server and its limit of clients.
        command.env("TALLY_DB_MAX_CONNECTIONS", "4");
        command
            .current_dir(self.root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = command.spawn().expect("failed to start the tally binary");

        let stdout = child.stdout.take().expect("stdout is piped");
        let (port_tx, port_rx) = tokio::sync::oneshot::channel();
        let (token_tx, mut token_rx) = tokio::sync::oneshot::channel();
        // Reads stdout to its end, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut port_tx = Some(port_tx);
            let mut token_tx = Some(token_tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(token) = line.strip_prefix("admin token: ") {
                    if let Some(tx) = token_tx.take() {
                        let _ = tx.send(token.trim().to_owned());
                    }
                }
                if let Some(port) = line.strip_prefix("listening on http://127.0.0.1:") {
                    if let Some(tx) = port_tx.take() {
                        let _ = tx.send(port.trim().to_owned());
                    }
                }
            }
        });
        let port = match tokio::time::timeout(START_TIMEOUT, port_rx).await {
            Ok(Ok(port)) => port.parse::<u16>().ok(),
            Ok(Err(_)) | Err(_) => None,
        };
        let Some(port) = port else {
            let _ = child.kill();
            let status = child.wait();
            panic!(
                "tally serve did not print `listening on http://127.0.0.1:PORT` on stdout within \
                 {START_TIMEOUT:?} (exit: {status:?}); its stderr:\n{}",
                self.log_tail()
            );
        };
        self.port = port;
        self.child = Some(child);
        // Printed before the listening line, and only at the first start.
        if let Ok(token) = token_rx.try_recv() {
            self.client = http_client(Some(&token));
            self.admin_token = Some(token);
        }
        assert!(
            self.admin_token.is_some(),
            "the first start did not print `admin token: ...` on stdout"
        );
    }

    /// The admin token printed at the first start.
    pub fn admin_token(&self) -> &str {
        self.admin_token
            .as_deref()
            .expect("the server printed an admin token")
    }

    /// The data folder and database arguments, for running other `tally` commands on the same
    /// databases.
    pub fn backend(&self) -> Backend {
        if self.database.is_some() {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    /// The PostgreSQL database URL, or the SQLite file of `service`, as an sqlx URL.
    pub fn database_url(&self, service: &str) -> String {
        match &self.database {
            Some(database) => database.url.clone(),
            None => format!(
                "sqlite://{}?mode=rw",
                self.data_dir().join(format!("{service}.db")).display()
            ),
        }
    }

    pub fn db_args(&self) -> Vec<String> {
        let mut args = vec![
            "--data-dir".to_owned(),
            self.data_dir().display().to_string(),
        ];
        if let Some(database) = &self.database {
            args.push("--database-url".to_owned());
            args.push(database.url.clone());
        }
        args
    }

    /// Everything the server wrote on stderr, over all its starts.
    pub fn log_all(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The last part of the server's stderr (all its starts), for failure messages.
    pub fn log_tail(&self) -> String {
        const TAIL_BYTES: u64 = 16 * 1024;
        let Ok(mut file) = File::open(self.log_path()) else {
            return "(no log)".to_owned();
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)));
        let mut tail = Vec::new();
        let _ = file.read_to_end(&mut tail);
        String::from_utf8_lossy(&tail).into_owned()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// A cheap handle for requests to the server as it runs now (a restart changes the port).
    pub fn api(&self) -> Api {
        Api {
            client: self.client.clone(),
            base: self.url(""),
        }
    }

    /// SIGKILL: no graceful shutdown, whatever is in flight is cut.
    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
            signal::kill(pid, Signal::SIGKILL).expect("failed to send SIGKILL");
            child.wait().expect("failed to reap the killed server");
        }
    }

    /// SIGTERM, then waits for the graceful shutdown (killing the process if it takes too long).
    /// SIGTERM, then waits for the process to exit; its exit status (None if it was not running).
    pub async fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
        signal::kill(pid, Signal::SIGTERM).expect("failed to send SIGTERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("tally serve did not stop within {STOP_TIMEOUT:?} of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the server again on the same data folder / database (stopping it gracefully first
    /// if it still runs), with `extra_args` instead of the previous ones.
    pub async fn restart(&mut self, extra_args: &[&str]) {
        let _ = self.stop().await;
        self.spawn(extra_args).await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "----- tally serve stderr (tail) -----\n{}\n-----",
                self.log_tail()
            );
        }
    }
}

/// An HTTP response, read to its end.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    /// Asserts the status and parses the body as a JSON object.
    pub fn expect(&self, status: u16, what: &str) -> Obj {
        assert_eq!(
            self.status,
            status,
            "{what}: unexpected status; body: {}",
            self.text()
        );
        Obj::parse(&self.text())
    }

    /// Asserts an RFC 9457 problem: the status, the media type, and `status` in the body.
    pub fn problem(&self, status: u16, what: &str) -> Obj {
        assert_eq!(
            self.status,
            status,
            "{what}: unexpected status; body: {}",
            self.text()
        );
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/problem+json"),
            "{what}: content type must be application/problem+json, got `{content_type}`; body: {}",
            self.text()
        );
        let problem = Obj::parse(&self.text());
        assert_eq!(
            problem.i64("status"),
            i64::from(status),
            "{what}: `status` in the body"
        );
        problem.str("type");
        problem.str("title");
        problem
    }

    /// Asserts a problem whose `errors[].field` names `field`.
    pub fn problem_naming(&self, status: u16, field: &str, what: &str) -> Obj {
        let problem = self.problem(status, what);
        let fields: Vec<String> = if problem.is_null("errors") {
            Vec::new()
        } else {
            problem
                .list("errors")
                .iter()
                .map(|e| e.str("field"))
                .collect()
        };
        assert!(
            fields.iter().any(|f| f == field),
            "{what}: the problem must name field `{field}` in errors[].field; body: {}",
            self.text()
        );
        problem
    }

    /// Asserts a problem whose `type` ends with `suffix` (such as `insufficient-funds`).
    pub fn problem_of_type(&self, status: u16, suffix: &str, what: &str) -> Obj {
        let problem = self.problem(status, what);
        let kind = problem.str("type");
        assert!(
            kind.ends_with(suffix),
            "{what}: problem type `{kind}` must end with `{suffix}`"
        );
        problem
    }
}

/// A JSON object whose values are kept as raw text, so amounts are read exactly.
#[derive(Debug)]
pub struct Obj {
    map: HashMap<String, Box<RawValue>>,
    text: String,
}

impl Obj {
    pub fn parse(text: &str) -> Self {
        let map = serde_json::from_str::<HashMap<String, Box<RawValue>>>(text)
            .unwrap_or_else(|e| panic!("expected a JSON object ({e}), got: {text}"));
        Self {
            map,
            text: text.to_owned(),
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn raw(&self, key: &str) -> &str {
        self.map
            .get(key)
            .unwrap_or_else(|| panic!("field `{key}` missing in {}", self.text))
            .get()
    }

    pub fn is_null(&self, key: &str) -> bool {
        self.map.get(key).is_none_or(|v| v.get() == "null")
    }

    pub fn i64(&self, key: &str) -> i64 {
        serde_json::from_str(self.raw(key))
            .unwrap_or_else(|e| panic!("field `{key}` must be an integer ({e}) in {}", self.text))
    }

    pub fn opt_i64(&self, key: &str) -> Option<i64> {
        (!self.is_null(key)).then(|| self.i64(key))
    }

    pub fn str(&self, key: &str) -> String {
        serde_json::from_str(self.raw(key))
            .unwrap_or_else(|e| panic!("field `{key}` must be a string ({e}) in {}", self.text))
    }

    pub fn opt_str(&self, key: &str) -> Option<String> {
        (!self.is_null(key)).then(|| self.str(key))
    }

    /// An amount in USD minor units; asserts the wire format (a JSON number with 2 decimals).
    pub fn minor(&self, key: &str) -> i64 {
        let raw = self.raw(key);
        minor_units(raw).unwrap_or_else(|why| panic!("field `{key}`: {why}, in {}", self.text))
    }

    pub fn obj(&self, key: &str) -> Obj {
        Obj::parse(self.raw(key))
    }

    pub fn list(&self, key: &str) -> Vec<Obj> {
        let items: Vec<Box<RawValue>> = serde_json::from_str(self.raw(key))
            .unwrap_or_else(|e| panic!("field `{key}` must be an array ({e}) in {}", self.text));
        items.iter().map(|item| Obj::parse(item.get())).collect()
    }
}

/// Reads a USD amount from its raw JSON text as minor units, checking the contract's wire
/// format: a JSON number (not a string) with exactly two decimals.
pub fn minor_units(raw: &str) -> Result<i64, String> {
    if raw.starts_with('"') {
        return Err(format!("amount {raw} must be a JSON number, not a string"));
    }
    let decimals = raw.split_once('.').map(|(_, frac)| frac);
    if !decimals.is_some_and(|d| d.len() == 2 && d.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!(
            "amount {raw} must be written with exactly 2 decimals"
        ));
    }
    Decimal::parse(raw)
        .and_then(|d| d.to_money(Currency::USD))
        .map(|m| m.amount_minor)
        .map_err(|e| format!("amount {raw} is not an exact USD amount: {e}"))
}

/// A USD amount as JSON number text: `money(50050)` is `500.50`.
pub fn money(minor: i64) -> String {
    Money::new(minor, Currency::USD).to_decimal_string()
}

/// A USD amount as a JSON string: `"500.50"`.
pub fn money_str(minor: i64) -> String {
    format!("\"{}\"", money(minor))
}

pub fn assert_uuid(text: &str, what: &str) {
    assert!(
        uuid::Uuid::parse_str(text).is_ok(),
        "{what}: `{text}` must be a UUID"
    );
}

/// A client created by `POST /clients`, with its first wallet.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub id: i64,
    pub wallet_id: i64,
    pub login: String,
    pub name: String,
}

/// `GET /wallets/{id}`, amounts in minor units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wallet {
    pub wallet_id: i64,
    pub client_id: i64,
    pub currency: String,
    pub balance: i64,
    pub held: i64,
    pub available: i64,
}

impl Wallet {
    pub fn from_obj(obj: &Obj) -> Self {
        let wallet = Self {
            wallet_id: obj.i64("walletId"),
            client_id: obj.i64("clientId"),
            currency: obj.str("currency"),
            balance: obj.minor("balance"),
            held: obj.minor("heldAmount"),
            available: obj.minor("availableBalance"),
        };
        assert_eq!(
            wallet.available,
            wallet.balance - wallet.held,
            "availableBalance must be balance - heldAmount: {}",
            obj.text()
        );
        wallet
    }
}

/// One history item, amounts in minor units (`amount` signed: + in, - out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub transaction_number: String,
    pub kind: String,
    pub amount: i64,
    pub balance_after: i64,
    pub counterparty: Option<i64>,
    pub created_at: String,
}

impl Item {
    fn from_obj(obj: &Obj) -> Self {
        let item = Self {
            transaction_number: obj.str("transactionNumber"),
            kind: obj.str("kind"),
            amount: obj.minor("amount"),
            balance_after: obj.minor("balanceAfter"),
            counterparty: obj.opt_i64("counterpartyWalletId"),
            created_at: obj.str("createdAt"),
        };
        assert_uuid(&item.transaction_number, "history transactionNumber");
        assert!(
            chrono::DateTime::parse_from_rfc3339(&item.created_at).is_ok(),
            "createdAt must be RFC 3339: {}",
            obj.text()
        );
        item
    }
}

/// The USD line of `GET /ledger/summary` (all zero when the ledger has no USD yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    pub wallets_total: i64,
    pub external_total: i64,
    pub sum: i64,
    pub transfer_count: i64,
}

/// `count` and `total` of one kind of movement in USD, from `GET /reporting/v1/statistics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub count: i64,
    pub total: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub events_applied: i64,
    pub clients_created: i64,
    pub clients_removed: i64,
    pub deposits: Tally,
    pub withdrawals: Tally,
    pub transfers: Tally,
}

fn usd_tally(stats: &Obj, key: &str) -> Tally {
    let lines: Vec<Obj> = stats
        .list(key)
        .into_iter()
        .filter(|l| l.str("currency") == "USD")
        .collect();
    assert!(
        lines.len() <= 1,
        "statistics `{key}` has more than one USD line: {}",
        stats.text()
    );
    lines
        .first()
        .map(|l| Tally {
            count: l.i64("count"),
            total: l.minor("total"),
        })
        .unwrap_or_default()
}

/// A cheap, cloneable handle to one running server.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends a request and reads the whole response; a transport error is an `Err`.
    pub async fn try_send(request: reqwest::RequestBuilder) -> Result<Resp, reqwest::Error> {
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await?.to_vec();
        Ok(Resp {
            status,
            headers,
            body,
        })
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Resp {
        Self::try_send(request)
            .await
            .unwrap_or_else(|e| panic!("request failed: {e:?}"))
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.client.get(self.url(path))).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.client.delete(self.url(path))).await
    }

    pub fn post_request(&self, path: &str, body: &str) -> reqwest::RequestBuilder {
        self.client
            .post(self.url(path))
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_owned())
    }

    pub async fn post(&self, path: &str, body: &str) -> Resp {
        self.send(self.post_request(path, body)).await
    }

    pub async fn post_keyed(&self, path: &str, key: &str, body: &str) -> Resp {
        self.send(self.post_request(path, body).header("Idempotency-Key", key))
            .await
    }

    /// A POST with arbitrary bytes and content type (`None`: no content type header at all).
    pub async fn post_bytes(&self, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Resp {
        let mut request = self.client.post(self.url(path)).body(body);
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        self.send(request).await
    }

    pub async fn create_client(&self, name: &str) -> NewClient {
        let login = format!("{}-{}", name.to_lowercase(), uuid::Uuid::new_v4().simple());
        let body = format!(r#"{{"name":"{name}","login":"{login}"}}"#);
        let created = self
            .post("/clients", &body)
            .await
            .expect(201, "POST /clients");
        assert_eq!(created.str("login"), login, "created client's login");
        assert_eq!(created.str("name"), name, "created client's name");
        NewClient {
            id: created.i64("id"),
            wallet_id: created.i64("walletId"),
            login,
            name: name.to_owned(),
        }
    }

    pub async fn resupply(&self, wallet: i64, amount_json: &str) -> Resp {
        self.post(
            "/resupplies",
            &format!(r#"{{"walletId":{wallet},"amount":{amount_json}}}"#),
        )
        .await
    }

    pub async fn withdraw(&self, wallet: i64, amount_json: &str) -> Resp {
        self.post(
            "/withdrawals",
            &format!(r#"{{"walletId":{wallet},"amount":{amount_json}}}"#),
        )
        .await
    }

    pub async fn transfer(&self, from: i64, to: i64, amount_json: &str) -> Resp {
        let body = format!(r#"{{"walletFromId":{from},"walletToId":{to},"amount":{amount_json}}}"#);
        self.post("/transfers", &body).await
    }

    /// Deposits `minor` and asserts the response; returns the transaction number.
    pub async fn deposit(&self, wallet: i64, minor: i64) -> String {
        let done = self
            .resupply(wallet, &money(minor))
            .await
            .expect(200, "POST /resupplies");
        assert_eq!(done.i64("walletId"), wallet);
        assert_eq!(done.minor("amount"), minor);
        let number = done.str("transactionNumber");
        assert_uuid(&number, "resupply transactionNumber");
        number
    }

    pub async fn wallet(&self, id: i64) -> Wallet {
        let wallet = Wallet::from_obj(
            &self
                .get(&format!("/wallets/{id}"))
                .await
                .expect(200, "GET /wallets/{id}"),
        );
        assert_eq!(
            wallet.wallet_id, id,
            "GET /wallets/{id} answers for another wallet"
        );
        wallet
    }

    /// The whole history of a wallet, newest first, read in pages of `limit`.
    pub async fn history_paged(&self, wallet: i64, limit: usize) -> Vec<Item> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        let mut seen_cursors = HashSet::new();
        loop {
            let mut request = self
                .client
                .get(self.url(&format!("/wallets/{wallet}/history")))
                .query(&[("limit", limit.to_string())]);
            if let Some(cursor) = &cursor {
                request = request.query(&[("before", cursor)]);
            }
            let page = self
                .send(request)
                .await
                .expect(200, "GET /wallets/{id}/history");
            let page_items = page.list("items");
            assert!(
                page_items.len() <= limit,
                "a history page has more than limit={limit} items: {}",
                page.text()
            );
            items.extend(page_items.iter().map(Item::from_obj));
            match page.opt_str("nextCursor") {
                None => break,
                Some(next) => {
                    assert!(
                        !page_items.is_empty(),
                        "an empty history page must not have a nextCursor"
                    );
                    assert!(
                        seen_cursors.insert(next.clone()),
                        "history cursor {next} repeats"
                    );
                    cursor = Some(next);
                }
            }
        }
        items
    }

    pub async fn history(&self, wallet: i64) -> Vec<Item> {
        self.history_paged(wallet, 500).await
    }

    pub async fn ledger(&self) -> Ledger {
        let summary = self
            .get("/ledger/summary")
            .await
            .expect(200, "GET /ledger/summary");
        let lines: Vec<Obj> = summary
            .list("currencies")
            .into_iter()
            .filter(|l| l.str("currency") == "USD")
            .collect();
        assert!(
            lines.len() <= 1,
            "ledger summary has more than one USD line: {}",
            summary.text()
        );
        let Some(line) = lines.first() else {
            return Ledger::default();
        };
        Ledger {
            wallets_total: line.minor("walletsTotal"),
            external_total: line.minor("externalTotal"),
            sum: line.minor("sum"),
            transfer_count: line.i64("transferCount"),
        }
    }

    /// Asserts the ledger's conservation law and returns the USD line.
    pub async fn ledger_balanced(&self) -> Ledger {
        let ledger = self.ledger().await;
        assert_eq!(ledger.sum, 0, "the ledger must sum to zero: {ledger:?}");
        assert_eq!(
            ledger.wallets_total + ledger.external_total,
            0,
            "walletsTotal + externalTotal must be zero: {ledger:?}"
        );
        ledger
    }

    pub async fn statistics(&self) -> Stats {
        let stats = self
            .get("/reporting/v1/statistics")
            .await
            .expect(200, "GET /reporting/v1/statistics");
        let clients = stats.obj("clients");
        Stats {
            events_applied: stats.i64("eventsApplied"),
            clients_created: clients.i64("created"),
            clients_removed: clients.i64("removed"),
            deposits: usd_tally(&stats, "deposits"),
            withdrawals: usd_tally(&stats, "withdrawals"),
            transfers: usd_tally(&stats, "transfers"),
        }
    }
}

/// Everything a user can see of some wallets' money: compared before and after requests that
/// must change nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub wallets: Vec<Wallet>,
    pub histories: Vec<Vec<Item>>,
    pub ledger: Ledger,
}

impl Api {
    pub async fn snapshot(&self, wallets: &[i64]) -> Snapshot {
        let mut snapshot = Snapshot {
            wallets: Vec::new(),
            histories: Vec::new(),
            ledger: self.ledger().await,
        };
        for &wallet in wallets {
            snapshot.wallets.push(self.wallet(wallet).await);
            snapshot.histories.push(self.history(wallet).await);
        }
        snapshot
    }
}

/// Asserts what must hold of any wallet's history (newest first): transaction numbers are unique,
/// each balanceAfter is the previous one plus the item's amount (from zero), none is negative, and
/// the newest equals the wallet's balance now.
pub fn assert_history_consistent(wallet: i64, items: &[Item], balance: i64) {
    let mut numbers = HashSet::new();
    for item in items {
        assert!(
            numbers.insert(item.transaction_number.as_str()),
            "wallet {wallet}: transaction {} appears twice in its history",
            item.transaction_number
        );
        assert!(
            item.balance_after >= 0,
            "wallet {wallet}: negative balanceAfter in {item:?}"
        );
    }
    for pair in items.windows(2) {
        let (newer, older) = (&pair[0], &pair[1]);
        assert_eq!(
            newer.balance_after - newer.amount,
            older.balance_after,
            "wallet {wallet}: balanceAfter chain broken between {older:?} and the newer {newer:?}"
        );
    }
    let opening = items
        .last()
        .map_or(0, |oldest| oldest.balance_after - oldest.amount);
    assert_eq!(
        opening, 0,
        "wallet {wallet}: the oldest item does not start from a zero balance"
    );
    let newest = items.first().map_or(0, |item| item.balance_after);
    assert_eq!(
        newest, balance,
        "wallet {wallet}: newest balanceAfter differs from the balance"
    );
}

/// A small deterministic generator (xorshift64*), so a failing run can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Polls `probe` every `every` until it returns `Some`, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(
    timeout: Duration,
    every: Duration,
    what: &str,
    mut probe: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(every).await;
    }
}

/// One history item a test expects, from what an operation returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub number: String,
    pub kind: &'static str,
    pub amount: i64,
    pub counterparty: Option<i64>,
}

impl Entry {
    fn matches(&self, item: &Item) -> bool {
        item.transaction_number == self.number
            && item.kind == self.kind
            && item.amount == self.amount
            && item.counterparty == self.counterparty
    }
}

/// The history items each wallet must have, recorded from successful responses (oldest first).
#[derive(Debug, Default)]
pub struct Book {
    entries: HashMap<i64, Vec<Entry>>,
}

impl Book {
    fn push(&mut self, wallet: i64, entry: Entry) {
        self.entries.entry(wallet).or_default().push(entry);
    }

    pub fn deposit(&mut self, wallet: i64, amount: i64, number: &str) {
        let entry = Entry {
            number: number.to_owned(),
            kind: "deposit",
            amount,
            counterparty: None,
        };
        self.push(wallet, entry);
    }

    pub fn withdrawal(&mut self, wallet: i64, amount: i64, number: &str) {
        let entry = Entry {
            number: number.to_owned(),
            kind: "withdrawal",
            amount: -amount,
            counterparty: None,
        };
        self.push(wallet, entry);
    }

    pub fn transfer(&mut self, from: i64, to: i64, amount: i64, number: &str) {
        let out = Entry {
            number: number.to_owned(),
            kind: "transfer_out",
            amount: -amount,
            counterparty: Some(to),
        };
        let into = Entry {
            number: number.to_owned(),
            kind: "transfer_in",
            amount,
            counterparty: Some(from),
        };
        self.push(from, out);
        self.push(to, into);
    }

    pub fn entries(&self, wallet: i64) -> &[Entry] {
        self.entries.get(&wallet).map_or(&[], Vec::as_slice)
    }

    /// The balance the recorded operations add up to.
    pub fn balance(&self, wallet: i64) -> i64 {
        self.entries(wallet).iter().map(|e| e.amount).sum()
    }

    /// Asserts the history (newest first) is exactly the recorded operations, newest first.
    pub fn assert_history_in_order(&self, wallet: i64, items: &[Item]) {
        let expected = self.entries(wallet);
        assert_eq!(
            items.len(),
            expected.len(),
            "wallet {wallet}: history has {} items, expected {}: {items:#?}",
            items.len(),
            expected.len()
        );
        for (item, entry) in items.iter().zip(expected.iter().rev()) {
            assert!(
                entry.matches(item),
                "wallet {wallet}: history item {item:?} should be {entry:?}"
            );
        }
    }

    /// Asserts each recorded operation is in the history (any order) exactly once, and that the
    /// history has nothing else.
    pub fn assert_history_exactly(&self, wallet: i64, items: &[Item]) {
        let expected = self.entries(wallet);
        for entry in expected {
            let found: Vec<&Item> = items
                .iter()
                .filter(|i| i.transaction_number == entry.number)
                .collect();
            assert_eq!(
                found.len(),
                1,
                "wallet {wallet}: acknowledged transaction {} must be in the history exactly once",
                entry.number
            );
            assert!(
                entry.matches(found[0]),
                "wallet {wallet}: history item {:?} should be {entry:?}",
                found[0]
            );
        }
        let known: HashSet<&str> = expected.iter().map(|e| e.number.as_str()).collect();
        for item in items {
            assert!(
                known.contains(item.transaction_number.as_str()),
                "wallet {wallet}: history has an item no successful operation returned: {item:?}"
            );
        }
    }
}

/// One money movement a load test sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Deposit { wallet: i64, amount: i64 },
    Withdrawal { wallet: i64, amount: i64 },
    Transfer { from: i64, to: i64, amount: i64 },
}

impl Op {
    pub fn request(&self, api: &Api) -> reqwest::RequestBuilder {
        match *self {
            Op::Deposit { wallet, amount } => api.post_request(
                "/resupplies",
                &format!(r#"{{"walletId":{wallet},"amount":{}}}"#, money(amount)),
            ),
            Op::Withdrawal { wallet, amount } => api.post_request(
                "/withdrawals",
                &format!(r#"{{"walletId":{wallet},"amount":{}}}"#, money_str(amount)),
            ),
            Op::Transfer { from, to, amount } => api.post_request(
                "/transfers",
                &format!(
                    r#"{{"walletFromId":{from},"walletToId":{to},"amount":{}}}"#,
                    money(amount)
                ),
            ),
        }
    }

    /// Checks a 200 response against the operation, records it in `book`, and returns its
    /// transaction number with the balances it reported, as `(wallet, balance after)`.
    pub fn record(&self, done: &Obj, book: &mut Book) -> (String, Vec<(i64, i64)>) {
        let number = done.str("transactionNumber");
        assert_uuid(&number, "transactionNumber");
        let reported = match *self {
            Op::Deposit { wallet, amount } | Op::Withdrawal { wallet, amount } => {
                assert_eq!(done.i64("walletId"), wallet, "{self:?}: {}", done.text());
                assert_eq!(done.minor("amount"), amount, "{self:?}: {}", done.text());
                if matches!(self, Op::Deposit { .. }) {
                    book.deposit(wallet, amount, &number);
                } else {
                    book.withdrawal(wallet, amount, &number);
                }
                vec![(wallet, done.minor("walletBalance"))]
            }
            Op::Transfer { from, to, amount } => {
                assert_eq!(done.i64("walletFromId"), from, "{self:?}: {}", done.text());
                assert_eq!(done.i64("walletToId"), to, "{self:?}: {}", done.text());
                assert_eq!(done.minor("amount"), amount, "{self:?}: {}", done.text());
                book.transfer(from, to, amount, &number);
                vec![
                    (from, done.minor("walletFromBalance")),
                    (to, done.minor("walletToBalance")),
                ]
            }
        };
        for &(wallet, balance) in &reported {
            assert!(
                balance >= 0,
                "{self:?} reported a negative balance for wallet {wallet}: {}",
                done.text()
            );
        }
        (number, reported)
    }
}

/// Asserts each history item's balanceAfter is the balance its operation's response reported.
pub fn assert_reported_balances(
    wallet: i64,
    items: &[Item],
    reported: &HashMap<String, Vec<(i64, i64)>>,
) {
    for item in items {
        let Some(balances) = reported.get(&item.transaction_number) else {
            continue;
        };
        for &(reported_wallet, balance) in balances {
            if reported_wallet == wallet {
                assert_eq!(
                    item.balance_after, balance,
                    "wallet {wallet}: balanceAfter of {} differs from the balance its response reported",
                    item.transaction_number
                );
            }
        }
    }
}

/// Runs `tally` on the server's databases and returns its standard output.
pub fn tally(server: &TestServer, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(server.db_args())
        .args(args)
        .output()
        .expect("failed to run tally");
    assert!(
        output.status.success(),
        "tally {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("tally prints UTF-8")
}

/// A new token with `scopes`: (id, token text).
pub fn create_token(server: &TestServer, scopes: &str) -> (String, String) {
    let text = tally(
        server,
        &["token", "create", "--name", "test", "--scopes", scopes],
    )
    .trim()
    .to_owned();
    let id = text
        .split('_')
        .nth(1)
        .expect("tally_<id>_<secret>")
        .to_owned();
    (id, text)
}
