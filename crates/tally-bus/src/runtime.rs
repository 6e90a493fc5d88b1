//! The embedded bus: sequencers and consumer loops over the outboxes of this process's services.

use std::time::Duration;

use tally_db::{Backend, Db};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::consumer::{Consumer, HandlerError};
use crate::rows::RowEvents;
use crate::{dead_letter, log, outbox};

#[derive(Debug, Clone)]
pub struct BusSettings {
    /// How often readers look at a log when no in-process commit woke them (writers in other
    /// processes, sequencing on PostgreSQL).
    pub poll_interval: Duration,
    /// Most events read from a log at once.
    pub batch_size: i64,
    /// Most events a consumer applies in one transaction (1: a transaction per event).
    pub run_size: usize,
    /// Attempts at one event before it goes to the dead letters.
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// How often the lag, backlog and dead-letter gauges are refreshed.
    pub metrics_interval: Duration,
}

impl Default for BusSettings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(250),
            batch_size: 256,
            run_size: 64,
            max_attempts: 5,
            retry_base: Duration::from_millis(50),
            retry_max: Duration::from_secs(5),
            metrics_interval: Duration::from_secs(5),
        }
    }
}

/// A service's log as the bus sees it: its database, the topics it publishes and how the
/// events it publishes by reference are read from its rows (see [`crate::rows`]).
#[derive(Clone)]
pub struct Log {
    pub db: Db,
    pub publishes: &'static [&'static str],
    pub rows: &'static [RowEvents],
}

/// The bus of one process. Built by the binary from the services it runs.
pub struct EmbeddedBus {
    settings: BusSettings,
    logs: Vec<Log>,
    consumers: Vec<Consumer>,
}

impl EmbeddedBus {
    pub fn new(settings: BusSettings) -> Self {
        Self {
            settings,
            logs: Vec::new(),
            consumers: Vec::new(),
        }
    }

    pub fn add_log(&mut self, db: Db, publishes: &'static [&'static str]) {
        self.add_log_with_rows(db, publishes, &[]);
    }

    /// [`EmbeddedBus::add_log`] for a service that publishes events by reference to its rows.
    pub fn add_log_with_rows(
        &mut self,
        db: Db,
        publishes: &'static [&'static str],
        rows: &'static [RowEvents],
    ) {
        self.logs.push(Log {
            db,
            publishes,
            rows,
        });
    }

    pub fn add_consumer(&mut self, consumer: Consumer) {
        self.consumers.push(consumer);
    }

    pub fn logs(&self) -> &[Log] {
        &self.logs
    }

    pub fn consumers(&self) -> &[Consumer] {
        &self.consumers
    }

    /// The logs a consumer reads: those of the services publishing any of its topics.
    pub fn sources_of<'a>(&'a self, consumer: &'a Consumer) -> impl Iterator<Item = &'a Log> {
        self.logs
            .iter()
            .filter(|log| log.publishes.iter().any(|t| consumer.wants(t)))
    }

    /// Starts the sequencers (PostgreSQL), one loop per consumer and source, and the gauges.
    /// Everything stops when `shutdown` is cancelled, leaving unapplied events for next time.
    pub fn spawn(&self, run_consumers: bool, shutdown: CancellationToken) -> JoinSet<()> {
        let mut tasks = JoinSet::new();
        for log in &self.logs {
            if log.db.backend() == Backend::Postgres {
                tasks.spawn(sequence_loop(
                    log.db.clone(),
                    self.settings.clone(),
                    shutdown.clone(),
                ));
            }
        }
        if run_consumers {
            for consumer in &self.consumers {
                for log in self.sources_of(consumer) {
                    tasks.spawn(consume_loop(
                        consumer.clone(),
                        log.clone(),
                        self.settings.clone(),
                        shutdown.clone(),
                    ));
                }
            }
        }
        let gauges = Gauges {
            logs: self.logs.clone(),
            consumers: self.consumers.clone(),
        };
        tasks.spawn(gauges.run(self.settings.metrics_interval, shutdown));
        tasks
    }
}

/// Waits for a commit signal, the poll interval, or shutdown. Returns false on shutdown.
async fn idle(
    commits: &mut tokio::sync::watch::Receiver<u64>,
    poll: Duration,
    shutdown: &CancellationToken,
) -> bool {
    tokio::select! {
        _ = commits.changed() => true,
        _ = tokio::time::sleep(poll) => true,
        _ = shutdown.cancelled() => false,
    }
}

async fn sequence_loop(db: Db, settings: BusSettings, shutdown: CancellationToken) {
    let mut commits = db.subscribe_commits();
    loop {
        commits.borrow_and_update();
        match outbox::sequence_pending(&db).await {
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(service = db.service(), error = %e, "sequencing failed"),
        }
        if !idle(&mut commits, settings.poll_interval, &shutdown).await {
            return;
        }
    }
}

async fn consume_loop(
    consumer: Consumer,
    source_log: Log,
    settings: BusSettings,
    shutdown: CancellationToken,
) {
    let source = &source_log.db;
    let source_name = source.service();
    let mut commits = source.subscribe_commits();
    let mut position = loop {
        match consumer.position(source_name).await {
            Ok(p) => break p,
            Err(e) => {
                tracing::warn!(consumer = consumer.name, error = %e, "failed to read position");
                if !idle(&mut commits, settings.poll_interval, &shutdown).await {
                    return;
                }
            }
        }
    };
    tracing::debug!(
        consumer = consumer.name,
        source = source_name,
        position,
        "consumer started"
    );
    loop {
        commits.borrow_and_update();
        let batch = match log::read_after_with(
            source,
            source_log.rows,
            position,
            settings.batch_size,
        )
        .await
        {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(consumer = consumer.name, error = %e, "failed to read the log");
                Vec::new()
            }
        };
        if batch.is_empty() {
            if !idle(&mut commits, settings.poll_interval, &shutdown).await {
                return;
            }
            continue;
        }
        let mut skipped_to = None;
        let mut entries = &batch[..];
        while !entries.is_empty() {
            let (applied, span) = apply_run(&consumer, source_name, entries, &settings).await;
            if applied {
                skipped_to = None;
                position = entries[span - 1].seq;
                entries = &entries[span..];
                continue;
            }
            // The run's entries one by one, with retries and dead letters.
            let (one_by_one, rest) = entries.split_at(span.max(1));
            for entry in one_by_one {
                if !consumer.wants(&entry.topic) {
                    skipped_to = Some(entry.seq);
                    position = entry.seq;
                    continue;
                }
                match deliver(&consumer, source_name, entry, &settings, &shutdown).await {
                    Some(()) => {
                        skipped_to = None;
                        position = entry.seq;
                    }
                    None => return,
                }
            }
            entries = rest;
        }
        if let Some(seq) = skipped_to {
            if let Err(e) = consumer.save_position(source_name, seq).await {
                tracing::warn!(consumer = consumer.name, error = %e, "failed to save position");
            }
        }
    }
}

/// Applies the first events of `entries` together, in one transaction, when more than one of
/// them is for `consumer`: up to `settings.run_size` of them, stopping before one that cannot be
/// read. Returns whether the run was applied, and how many entries it spans (0 when the first
/// cannot be read). When it was not (too few events for a run, or one of them failed), the
/// caller applies the spanned entries one by one, with retries and dead letters.
async fn apply_run(
    consumer: &Consumer,
    source: &str,
    entries: &[log::LogEntry],
    settings: &BusSettings,
) -> (bool, usize) {
    let mut events = Vec::new();
    let mut span = 0;
    for entry in entries {
        let Ok(event) = &entry.envelope else {
            break;
        };
        if consumer.wants(&entry.topic) {
            if events.len() == settings.run_size.max(1) {
                break;
            }
            events.push(event);
        }
        span += 1;
    }
    if events.len() < 2 {
        return (false, span);
    }
    match consumer
        .apply_run(source, &events, entries[span - 1].seq)
        .await
    {
        Ok(()) => {
            metrics::counter!("tally_events_applied_total", "consumer" => consumer.name)
                .increment(events.len() as u64);
            (true, span)
        }
        Err(e) => {
            tracing::debug!(
                consumer = consumer.name, events = events.len(), error = %e,
                "a run of events failed together; applying them one by one"
            );
            (false, span)
        }
    }
}

/// Applies one event with retries; buries it after the last attempt. None on shutdown.
async fn deliver(
    consumer: &Consumer,
    source: &str,
    entry: &log::LogEntry,
    settings: &BusSettings,
    shutdown: &CancellationToken,
) -> Option<()> {
    let mut attempt = 1;
    let event = match &entry.envelope {
        Ok(event) => event,
        Err(error) => {
            return bury_until_done(consumer, source, entry, error, 0, settings, shutdown).await
        }
    };
    loop {
        let error = match consumer.apply(source, entry.seq, event).await {
            Ok(_) => {
                metrics::counter!("tally_events_applied_total", "consumer" => consumer.name)
                    .increment(1);
                return Some(());
            }
            Err(HandlerError::Permanent(e)) => format!("permanent: {e:#}"),
            Err(e @ HandlerError::Transient(_)) if attempt >= settings.max_attempts => {
                e.to_string()
            }
            Err(e) => {
                let backoff = settings
                    .retry_base
                    .saturating_mul(1 << (attempt - 1).min(16))
                    .min(settings.retry_max);
                tracing::warn!(
                    consumer = consumer.name, event_id = %event.id, event_type = %event.event_type,
                    attempt, error = %e, "event failed, retrying"
                );
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => return None,
                }
                attempt += 1;
                continue;
            }
        };
        return bury_until_done(consumer, source, entry, &error, attempt, settings, shutdown).await;
    }
}

/// Parks an entry in the dead letters, retrying the write until it succeeds. None on shutdown.
async fn bury_until_done(
    consumer: &Consumer,
    source: &str,
    entry: &log::LogEntry,
    error: &str,
    attempts: u32,
    settings: &BusSettings,
    shutdown: &CancellationToken,
) -> Option<()> {
    tracing::error!(
        consumer = consumer.name, event_id = %entry.id, event_type = %entry.topic,
        attempts, error = %error, "event moved to the dead letters"
    );
    loop {
        match dead_letter::bury(consumer, source, entry, error, attempts).await {
            Ok(()) => {
                metrics::counter!("tally_dead_letters_total", "consumer" => consumer.name)
                    .increment(1);
                return Some(());
            }
            Err(e) => {
                tracing::warn!(consumer = consumer.name, error = %e, "failed to bury event");
                tokio::select! {
                    _ = tokio::time::sleep(settings.retry_max) => {}
                    _ = shutdown.cancelled() => return None,
                }
            }
        }
    }
}

struct Gauges {
    logs: Vec<Log>,
    consumers: Vec<Consumer>,
}

impl Gauges {
    async fn run(self, every: Duration, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.refresh().await {
                tracing::debug!(error = %e, "failed to refresh bus gauges");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    async fn refresh(&self) -> Result<(), sqlx::Error> {
        for log in &self.logs {
            let service = log.db.service();
            let backlog = outbox::unsequenced(&log.db).await?;
            metrics::gauge!("tally_outbox_backlog", "service" => service).set(gauge(backlog));
            let head = log::head(&log.db).await?;
            metrics::gauge!("tally_log_head", "service" => service).set(gauge(head));
            for consumer in self
                .consumers
                .iter()
                .filter(|c| log.publishes.iter().any(|t| c.wants(t)))
            {
                let lag = head - consumer.position(service).await?;
                metrics::gauge!("tally_consumer_lag", "consumer" => consumer.name, "source" => service)
                    .set(gauge(lag));
            }
        }
        for consumer in &self.consumers {
            let dead = dead_letter::count_dead(&consumer.db, consumer.name).await?;
            metrics::gauge!("tally_dead_letters", "consumer" => consumer.name).set(gauge(dead));
        }
        Ok(())
    }
}

/// Gauges take small integers exactly; counts past `u32::MAX` saturate.
fn gauge(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}
