//! Latency at half of the peak rate, each against a `tally serve` of this binary: first the peak
//! is found with requests in flight back to back, then requests go out on a fixed schedule at
//! half of it (an open loop: a slow answer does not hold back the next request, and each latency
//! counts from when its request was due, so queueing shows in the latencies instead of hiding in
//! a slower schedule).
//!
//! - `route`: an HTTP route with no database work (`GET /health/live`).
//! - `propagation`: a consultation closed in care to its bill adjusted in billing, through the
//!   event log.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::future::BoxFuture;
use sqlx::Row as _;
use tally_db::{Db, DbSettings, Location};
use tally_kernel::Envelope;

use super::{on_each_backend, per_second, percentile_us, temp_dir, BenchServer};

/// How a latency distribution is printed: p50, p99 and the largest, in microseconds.
fn spread(times: &mut [Duration]) -> String {
    times.sort_unstable();
    let max = times.last().map_or(0, Duration::as_micros);
    format!(
        "p50 {} µs, p99 {} µs, max {max} µs",
        percentile_us(times, 50),
        percentile_us(times, 99)
    )
}

/// Runs `send(i)` for `i` in `range`, `in_flight` at a time back to back; the rate per second.
pub(super) async fn peak<F, Fut>(
    range: std::ops::Range<usize>,
    in_flight: usize,
    send: F,
) -> anyhow::Result<u128>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    use std::sync::atomic::{AtomicUsize, Ordering};
    let count = range.len();
    let next = Arc::new(AtomicUsize::new(range.start));
    let send = Arc::new(send);
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..in_flight.max(1) {
        let (next, send, end) = (next.clone(), send.clone(), range.end);
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    return anyhow::Ok(());
                }
                send(i).await?;
            }
        });
    }
    while let Some(joined) = workers.join_next().await {
        joined??;
    }
    Ok(per_second(count as u64, started.elapsed()))
}

/// Most requests of a paced run in flight at once.
const MAX_PACED_IN_FLIGHT: usize = 64;

/// Runs `send(i)` for `i` in `range` on a fixed schedule of `rate` a second, each in a task of
/// its own; the time each took from when it was due. A thread of its own keeps the schedule, to
/// the tens of microseconds (the runtime's timers tick by the millisecond, which would send the
/// requests in bursts).
async fn paced<F, Fut>(
    range: std::ops::Range<usize>,
    rate: u128,
    send: F,
) -> anyhow::Result<Vec<Duration>>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let interval_ns = 1_000_000_000 / rate.max(1);
    let (due_tx, mut due_rx) = tokio::sync::mpsc::unbounded_channel();
    let clock = std::thread::spawn(move || {
        let started = Instant::now();
        for (n, i) in range.enumerate() {
            let offset = u64::try_from(n as u128 * interval_ns).unwrap_or(u64::MAX);
            let due = started + Duration::from_nanos(offset);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if due_tx.send((i, due)).is_err() {
                return;
            }
        }
    });
    let send = Arc::new(send);
    // At most this many in flight (so at most this many connections, as a load generator with
    // a fixed set of connections has): a request due while all are busy waits for one, and the
    // wait counts in its latency.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_PACED_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    while let Some((i, due)) = due_rx.recv().await {
        let (send, in_flight) = (send.clone(), in_flight.clone());
        tasks.spawn(async move {
            let _permit = in_flight.acquire_owned().await?;
            send(i).await?;
            anyhow::Ok(due.elapsed())
        });
    }
    clock
        .join()
        .map_err(|_| anyhow::anyhow!("the schedule's thread panicked"))?;
    let mut times = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        times.push(joined??);
    }
    Ok(times)
}

/// `GET url` as a request of the route bench: answered with a success, read to its end.
fn getter(
    client: reqwest::Client,
    url: String,
) -> impl Fn(usize) -> BoxFuture<'static, anyhow::Result<()>> + Clone + Send + Sync + 'static {
    let url = Arc::new(url);
    move |_: usize| {
        let (client, url) = (client.clone(), url.clone());
        Box::pin(async move {
            let response = client.get(url.as_str()).send().await?;
            anyhow::ensure!(
                response.status().is_success(),
                "GET {url}: {}",
                response.status()
            );
            response.bytes().await?;
            anyhow::Ok(())
        })
    }
}

/// A bare axum server answering `GET /health/live` as Tally does, with no middleware, on a
/// runtime of its own with as many workers as `tally serve` has (one per core): what this
/// machine and this client allow a route at best. Its base URL; dropping the sender stops it.
fn bare_server() -> anyhow::Result<(String, tokio::sync::oneshot::Sender<()>)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        runtime.block_on(async move {
            let app = axum::Router::new().route(
                "/health/live",
                axum::routing::get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
            );
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
    });
    Ok((base, stop))
}

/// `GET /health/live`, a route with no database work: its peak rate with `in_flight` requests
/// back to back for `seconds`, then its latency at half of that rate for as long; and the same
/// against a bare axum server of the same route, the floor this machine and client set.
pub async fn route(seconds: u64, in_flight: usize) -> anyhow::Result<()> {
    let dir = temp_dir("route")?;
    let window = Duration::from_secs(seconds.max(1));
    let result = async {
        let server = BenchServer::start(&dir, None).await?;
        let get = getter(
            server.client.clone(),
            format!("{}/health/live", server.base),
        );
        // A short warm-up opens the connections; a probe sizes the peak's run to the window.
        peak(0..200, in_flight, get.clone()).await?;
        let probe = peak(0..2_000, in_flight, get.clone()).await?;
        let count = usize::try_from(probe * window.as_millis() / 1_000).unwrap_or(usize::MAX);
        let top = peak(0..count.max(1), in_flight, get.clone()).await?;
        let half = (top / 2).max(1);
        let sent = usize::try_from(half * window.as_millis() / 1_000).unwrap_or(usize::MAX);
        let mut times = paced(0..sent.max(1), half, get).await?;
        server.stop().await;

        let (base, stop) = bare_server()?;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()?;
        let bare = getter(client, format!("{base}/health/live"));
        let bare_times = async {
            peak(0..200, in_flight, bare.clone()).await?;
            paced(0..sent.max(1), half, bare).await
        }
        .await;
        drop(stop);
        let mut bare_times = bare_times?;
        println!("GET /health/live (no database work), client and server on this machine:");
        println!("  tally serve: peak {top} requests/s with {in_flight} in flight");
        println!(
            "  at half of it, {half} requests/s for {} s: {} (target: p99 under 1000 µs)",
            window.as_secs(),
            spread(&mut times)
        );
        println!(
            "  a bare axum server of the route at the same rate: {}",
            spread(&mut bare_times)
        );
        anyhow::Ok(())
    }
    .await;
    std::fs::remove_dir_all(&dir).ok();
    result
}

/// The physician's tariff: 50.00 a started quarter hour. Booked for 30 minutes (100.00),
/// closed after 40 (150.00).
const PHYSICIAN: &str = r#"{"name":"Dr. Bench","tariff":{"kind":"per_block","blockMinutes":15,"feePerBlock":"50.00","currency":"USD"}}"#;
const BOOKED_MINOR: i64 = 10_000;
const CLOSED_MINOR: i64 = 15_000;

/// An appointment's slot: an hour each from 2030-01-01, so that none overlaps another.
fn slot(i: usize) -> (String, String, String) {
    let start = chrono::DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
        .expect("a valid instant")
        .to_utc()
        + chrono::Duration::hours(i64::try_from(i).unwrap_or(i64::MAX));
    let at = |minutes: i64| tally_kernel::time::to_db(start + chrono::Duration::minutes(minutes));
    (at(0), at(30), at(40))
}

/// Consultations closed in care to their bills adjusted in billing: `closures` appointments are
/// booked first; a third of them are closed `in_flight` at a time for the peak rate, the rest at
/// half of it. Each propagation is read from the two events' times: `consultation.closed`
/// written in care's transaction, `bill.adjusted` written in billing's, the second naming the
/// first as its cause. Every bill must end adjusted once, to the closed price.
/// `rate`, when given, replaces half of the peak as the paced part's rate.
pub async fn propagation(
    closures: usize,
    in_flight: usize,
    rate: Option<u128>,
    postgres: Option<&str>,
) -> anyhow::Result<()> {
    println!("consultation closed to bill adjusted (event propagation), {closures} consultations");
    on_each_backend("propagation", postgres, async |dir, url, label| {
        propagation_on(dir, url, label, closures, in_flight, rate).await
    })
    .await
}

/// The events of `topic` in a service's log.
async fn events(db: &Db, topic: &str) -> anyhow::Result<Vec<Envelope>> {
    let rows = sqlx::query("SELECT envelope FROM outbox WHERE topic = $1")
        .bind(topic)
        .fetch_all(db.reader())
        .await?;
    rows.iter()
        .map(|row| Ok(serde_json::from_str(&row.try_get::<String, _>(0)?)?))
        .collect()
}

/// Waits until the log of `db` holds `count` events of `topic`.
async fn until_events(db: &Db, topic: &str, count: usize) -> anyhow::Result<Vec<Envelope>> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let found = events(db, topic).await?;
        if found.len() >= count {
            return Ok(found);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} of {count} {topic} events after two minutes",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn propagation_on(
    dir: &Path,
    database_url: Option<&str>,
    label: &str,
    closures: usize,
    in_flight: usize,
    rate: Option<u128>,
) -> anyhow::Result<()> {
    let server = Arc::new(BenchServer::start(dir, database_url).await?);
    let location = match database_url {
        Some(url) => Location::Postgres(url.to_owned()),
        None => Location::SqliteDir(dir.join("data")),
    };
    let settings = DbSettings::new(location);
    let care = Db::open_and_migrate(&settings, &tally_care::SCHEMA).await?;
    let billing = Db::open_and_migrate(&settings, &tally_billing::SCHEMA).await?;

    let patient = r#"{"fullName":"Bench Patient","dateOfBirth":"1980-04-02"}"#;
    let (status, body) = server.post("/patients", "patient", patient.into()).await?;
    anyhow::ensure!(status == 201, "POST /patients: {status} {body}");
    let patient_id = serde_json::from_str::<serde_json::Value>(&body)?["id"]
        .as_str()
        .context("POST /patients answered no id")?
        .to_owned();
    let (status, body) = server
        .post("/physicians", "physician", PHYSICIAN.into())
        .await?;
    anyhow::ensure!(status == 201, "POST /physicians: {status} {body}");
    let physician_id = serde_json::from_str::<serde_json::Value>(&body)?["id"]
        .as_str()
        .context("POST /physicians answered no id")?
        .to_owned();

    // Book every appointment (care learns of the patient from its event: wait for it).
    let book = move |i: usize| {
        let (start, end, _) = slot(i);
        format!(
            r#"{{"patientId":"{patient_id}","physicianId":"{physician_id}","scheduledStart":"{start}","scheduledEnd":"{end}"}}"#
        )
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        let (status, body) = server.post("/appointments", "book-0", book(0)).await?;
        if status == 201 {
            break body;
        }
        anyhow::ensure!(
            status == 422 && Instant::now() < deadline,
            "POST /appointments: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut appointments = vec![String::new(); closures.max(3)];
    appointments[0] = serde_json::from_str::<serde_json::Value>(&first)?["id"]
        .as_str()
        .context("POST /appointments answered no id")?
        .to_owned();
    let booked = Arc::new(std::sync::Mutex::new(appointments));
    {
        let (server, booked) = (server.clone(), booked.clone());
        let count = booked.lock().map_or(0, |b| b.len());
        peak(1..count, in_flight, move |i| {
            let (server, booked, body) = (server.clone(), booked.clone(), book(i));
            async move {
                let (status, body) = server
                    .post("/appointments", &format!("book-{i}"), body)
                    .await?;
                anyhow::ensure!(status == 201, "POST /appointments: {status} {body}");
                let id = serde_json::from_str::<serde_json::Value>(&body)?["id"]
                    .as_str()
                    .context("POST /appointments answered no id")?
                    .to_owned();
                if let Ok(mut booked) = booked.lock() {
                    booked[i] = id;
                }
                anyhow::Ok(())
            }
        })
        .await?;
    }
    let appointments: Arc<Vec<String>> = Arc::new(
        booked
            .lock()
            .map_err(|_| anyhow::anyhow!("a booking task panicked"))?
            .clone(),
    );
    let count = appointments.len();
    until_events(&billing, tally_billing::domain::BILL_GENERATED, count).await?;

    let close = {
        let (server, appointments) = (server.clone(), appointments.clone());
        move |i: usize| {
            let (server, appointments) = (server.clone(), appointments.clone());
            async move {
                let (_, _, end) = slot(i);
                let path = format!("/appointments/{}/close", appointments[i]);
                let (status, body) = server
                    .post(
                        &path,
                        &format!("close-{i}"),
                        format!(r#"{{"end":"{end}"}}"#),
                    )
                    .await?;
                anyhow::ensure!(status == 200, "POST {path}: {status} {body}");
                anyhow::Ok(())
            }
        }
    };
    let third = count / 3;
    let top = peak(0..third, in_flight, close.clone()).await?;
    // The paced part starts once billing has caught up with the peak's closes.
    until_events(&billing, tally_billing::domain::BILL_ADJUSTED, third).await?;
    let half = (top / 2).max(1);
    let (paced_rate, what) = match rate {
        Some(rate) => (rate.max(1), "at the rate asked for"),
        None => (half, "at half of it"),
    };
    paced(third..count, paced_rate, close).await?;
    let adjusted = until_events(&billing, tally_billing::domain::BILL_ADJUSTED, count).await?;

    // Every bill adjusted once, to the closed price, each caused by its consultation's close.
    let closed: HashMap<String, Envelope> =
        events(&care, tally_care::domain::events::CONSULTATION_CLOSED)
            .await?
            .into_iter()
            .map(|e| (e.id.to_string(), e))
            .collect();
    anyhow::ensure!(
        closed.len() == count && adjusted.len() == count,
        "{} consultations closed and {} bills adjusted, not {count} each",
        closed.len(),
        adjusted.len()
    );
    // When billing's consumer took each event in (its inbox row): the part of the propagation
    // spent reaching billing, the rest spent applying it.
    let taken_in: HashMap<String, String> =
        sqlx::query("SELECT event_id, applied_at FROM inbox WHERE consumer = $1")
            .bind(tally_billing::consumers::BILLS_CONSUMER)
            .fetch_all(billing.reader())
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()?;
    let mut propagated: Vec<(chrono::DateTime<chrono::Utc>, Duration, Duration)> = Vec::new();
    let mut appointments_adjusted = std::collections::HashSet::new();
    for event in &adjusted {
        let cause = closed
            .get(&event.causation_id)
            .with_context(|| format!("bill.adjusted {} names no closed consultation", event.id))?;
        anyhow::ensure!(
            event.data["amount_minor"] == CLOSED_MINOR
                && event.data["previous_amount_minor"] == BOOKED_MINOR,
            "a bill adjusted wrongly: {}",
            event.data
        );
        appointments_adjusted.insert(cause.data["appointment_id"].to_string());
        let took = (event.occurred_at - cause.occurred_at)
            .to_std()
            .unwrap_or_default();
        let reached = taken_in
            .get(&cause.id.to_string())
            .and_then(|at| tally_kernel::time::from_db(at).ok())
            .and_then(|at| (at - cause.occurred_at).to_std().ok())
            .unwrap_or_default();
        propagated.push((cause.occurred_at, took, reached));
    }
    anyhow::ensure!(
        appointments_adjusted.len() == count,
        "{} distinct bills adjusted, not {count}",
        appointments_adjusted.len()
    );
    propagated.sort_unstable_by_key(|(at, _, _)| *at);
    let paced_part = &propagated[third..];
    let thirds = paced_part.len() / 3;
    let mut all: Vec<Duration> = paced_part.iter().map(|(_, t, _)| *t).collect();
    let mut reaching: Vec<Duration> = paced_part.iter().map(|(_, _, r)| *r).collect();
    let mut early: Vec<Duration> = paced_part[..thirds].iter().map(|(_, t, _)| *t).collect();
    let mut late: Vec<Duration> = paced_part[paced_part.len() - thirds..]
        .iter()
        .map(|(_, t, _)| *t)
        .collect();
    println!("  {label}: peak {top} closes/s with {in_flight} in flight");
    println!(
        "    {what}, {paced_rate} closes/s ({} consultations): {} (target at half of the peak: \
         p99 under 20000 µs)",
        count - third,
        spread(&mut all)
    );
    println!(
        "    of which reaching billing's consumer (its inbox row): {}",
        spread(&mut reaching)
    );
    println!(
        "    first third {}; last third {} (a growing backlog would show as a later p99)",
        spread(&mut early),
        spread(&mut late)
    );
    println!("    every bill adjusted once, to the closed price");
    care.close().await;
    billing.close().await;
    if let Ok(server) = Arc::try_unwrap(server) {
        server.stop().await;
    }
    Ok(())
}
