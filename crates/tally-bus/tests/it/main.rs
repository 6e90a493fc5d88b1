//! The bus against real SQLite and PostgreSQL: the outbox log, exactly-once consumption,
//! retries, dead letters and redrive.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::Row as _;
use tally_bus::consumer::Applied;
use tally_bus::dead_letter::{self, RedriveOutcome};
use tally_bus::{outbox, BusSettings, Consumer, EmbeddedBus, Handler, HandlerError, RowEvents};
use tally_db::testing::{TestBackend, TestLocation};
use tally_db::{both_backends, Backend, Db, ServiceSchema, WriteTx};
use tally_kernel::event::{DomainEvent, EventMeta};
use tally_kernel::Envelope;
use tokio_util::sync::CancellationToken;

fn schema(name: &'static str) -> ServiceSchema {
    let migration = |sql: &'static str| Migrator {
        migrations: Cow::Owned(vec![Migration::new(
            500,
            Cow::Borrowed("effects"),
            MigrationType::Simple,
            Cow::Borrowed(sql),
            false,
        )]),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    };
    let sql = "CREATE TABLE effects (id TEXT PRIMARY KEY, n BIGINT NOT NULL); \
               CREATE TABLE notes (id TEXT PRIMARY KEY, n BIGINT NOT NULL)";
    ServiceSchema {
        name,
        sqlite: migration(sql),
        postgres: migration(sql),
    }
}

async fn open(loc: &TestLocation, name: &'static str) -> Db {
    Db::open_and_migrate(&loc.settings(), &schema(name))
        .await
        .expect("database opens")
}

struct Note(u32, bool);

impl DomainEvent for Note {
    fn event_type(&self) -> &'static str {
        "note.written"
    }
    fn aggregate_type(&self) -> &'static str {
        "note"
    }
    fn aggregate_id(&self) -> String {
        self.0.to_string()
    }
    fn data(&self) -> serde_json::Value {
        serde_json::json!({ "n": self.0, "poison": self.1 })
    }
}

fn event(n: u32, poison: bool) -> Envelope {
    Note(n, poison).to_envelope(
        "source",
        &EventMeta::from_request("test"),
        tally_kernel::time::now(),
    )
}

async fn publish(db: &Db, events: &[Envelope]) {
    let mut tx = db.begin_write().await.unwrap();
    outbox::append(db, &mut tx, events).await.unwrap();
    db.commit(tx).await.unwrap();
}

/// Numbers everything committed (PostgreSQL); a no-op on SQLite.
async fn sequence_all(db: &Db) {
    if db.backend() == Backend::Postgres {
        while outbox::sequence_pending(db).await.unwrap() > 0 {}
    }
}

/// Adds 1 to the counter `total`; fails when the event is poison and `cure` is not set, or
/// after writing when `crash_after_write` is set (the transaction never commits).
struct Counter {
    cure: AtomicBool,
    crash_after_write: AtomicBool,
    calls: AtomicU32,
}

impl Counter {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            cure: AtomicBool::new(false),
            crash_after_write: AtomicBool::new(false),
            calls: AtomicU32::new(0),
        })
    }
}

impl Handler for Counter {
    fn handle<'a>(
        &'a self,
        _db: &'a Db,
        tx: &'a mut WriteTx,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if event.data["poison"] == true && !self.cure.load(Ordering::SeqCst) {
                return Err(HandlerError::Transient(anyhow::anyhow!("poisoned")));
            }
            sqlx::query(
                "INSERT INTO effects (id, n) VALUES ('total', 1) \
                 ON CONFLICT (id) DO UPDATE SET n = effects.n + 1",
            )
            .execute(&mut **tx)
            .await?;
            if self.crash_after_write.load(Ordering::SeqCst) {
                return Err(HandlerError::Transient(anyhow::anyhow!(
                    "crashed before commit"
                )));
            }
            Ok(())
        })
    }
}

/// Runs the bus with one source log and one consumer until the consumer has reached `position`
/// (failing after 15 s), then shuts it down.
async fn run_until(source: &Db, consumer: &Consumer, settings: BusSettings, position: i64) {
    run_until_with(source, &[], consumer, settings, position).await;
}

/// [`run_until`] for a source log publishing events read from its `rows`.
async fn run_until_with(
    source: &Db,
    rows: &'static [RowEvents],
    consumer: &Consumer,
    settings: BusSettings,
    position: i64,
) {
    let mut bus = EmbeddedBus::new(settings);
    bus.add_log_with_rows(source.clone(), &["note.written"], rows);
    bus.add_consumer(consumer.clone());
    let shutdown = CancellationToken::new();
    let mut tasks = bus.spawn(true, shutdown.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while consumer.position("source").await.unwrap() < position {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the consumer did not reach {position}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
}

fn fast() -> BusSettings {
    BusSettings {
        poll_interval: Duration::from_millis(10),
        ..BusSettings::default()
    }
}

/// A source log, a sink database, and a counting consumer of the source's notes.
struct Fixture {
    _loc: TestLocation,
    source: Db,
    sink: Db,
    counter: Arc<Counter>,
    consumer: Consumer,
}

async fn fixture(backend: TestBackend) -> Option<Fixture> {
    let loc = TestLocation::new(backend).await?;
    let source = open(&loc, "source").await;
    let sink = open(&loc, "sink").await;
    let counter = Counter::new();
    let consumer = Consumer {
        name: "sink.counter",
        topics: &["note.written"],
        db: sink.clone(),
        handler: counter.clone(),
    };
    Some(Fixture {
        _loc: loc,
        source,
        sink,
        counter,
        consumer,
    })
}

async fn total(db: &Db) -> i64 {
    sqlx::query("SELECT n FROM effects WHERE id = 'total'")
        .fetch_optional(db.reader())
        .await
        .unwrap()
        .map(|r| r.try_get(0).unwrap())
        .unwrap_or(0)
}

async fn outbox_is_gap_free_in_commit_order_and_keeps_no_rolled_back_event(backend: TestBackend) {
    let Some(loc) = TestLocation::new(backend).await else {
        return;
    };
    let db = open(&loc, "source").await;
    let mut writers = Vec::new();
    for i in 0..40u32 {
        let db = db.clone();
        writers.push(tokio::spawn(async move {
            let mut tx = db.begin_write().await.unwrap();
            let events = [event(i, false), event(i, false)];
            outbox::append(&db, &mut tx, &events).await.unwrap();
            if i % 4 == 0 {
                tx.rollback().await.unwrap();
                Vec::new()
            } else {
                db.commit(tx).await.unwrap();
                events.iter().map(|e| e.id).collect()
            }
        }));
    }
    let mut committed = Vec::new();
    for w in writers {
        committed.extend(w.await.unwrap());
    }
    sequence_all(&db).await;
    let log = tally_bus::log::read_after(&db, 0, 1_000).await.unwrap();
    let seqs: Vec<i64> = log.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=60).collect::<Vec<_>>(),
        "positions are 1..=n with no gap"
    );
    let mut ids: Vec<_> = log
        .iter()
        .map(|e| e.envelope.as_ref().unwrap().id)
        .collect();
    ids.sort();
    committed.sort();
    assert_eq!(ids, committed, "exactly the committed events, each once");
    // Concurrent transactions may interleave (PostgreSQL numbers committed rows in the order
    // they were written); what holds is the order of each aggregate's own events.
    let mut last_seen: std::collections::HashMap<String, uuid::Uuid> = Default::default();
    for entry in &log {
        let envelope = entry.envelope.as_ref().unwrap();
        if let Some(previous) = last_seen.insert(envelope.aggregate_id.clone(), envelope.id) {
            assert!(
                previous < envelope.id,
                "an aggregate's events keep their order"
            );
        }
    }
    assert_eq!(tally_bus::log::head(&db).await.unwrap(), 60);
}
both_backends!(outbox_is_gap_free_in_commit_order_and_keeps_no_rolled_back_event);

async fn a_redelivered_event_or_a_crash_before_commit_applies_the_effect_once(
    backend: TestBackend,
) {
    let Some(Fixture {
        _loc,
        sink: db,
        counter,
        consumer,
        ..
    }) = fixture(backend).await
    else {
        return;
    };
    let e = event(1, false);

    counter.crash_after_write.store(true, Ordering::SeqCst);
    assert!(consumer.apply("source", 1, &e).await.is_err());
    assert_eq!(
        total(&db).await,
        0,
        "an effect whose transaction failed is not there"
    );
    assert_eq!(
        consumer.position("source").await.unwrap(),
        0,
        "nor is the position"
    );

    counter.crash_after_write.store(false, Ordering::SeqCst);
    assert_eq!(
        consumer.apply("source", 1, &e).await.unwrap(),
        Applied::Applied
    );
    assert_eq!(
        consumer.apply("source", 1, &e).await.unwrap(),
        Applied::Duplicate
    );
    assert_eq!(
        consumer.apply("source", 1, &e).await.unwrap(),
        Applied::Duplicate
    );
    assert_eq!(total(&db).await, 1);
    assert_eq!(consumer.position("source").await.unwrap(), 1);
}
both_backends!(a_redelivered_event_or_a_crash_before_commit_applies_the_effect_once);

async fn failing_events_are_retried_dead_lettered_and_redriven_once(backend: TestBackend) {
    let Some(Fixture {
        _loc,
        source,
        sink,
        counter,
        consumer,
    }) = fixture(backend).await
    else {
        return;
    };
    let settings = BusSettings {
        max_attempts: 3,
        retry_base: Duration::from_millis(1),
        retry_max: Duration::from_millis(5),
        poll_interval: Duration::from_millis(20),
        ..BusSettings::default()
    };
    publish(&source, &[event(1, false), event(2, true), event(3, false)]).await;
    run_until(&source, &consumer, settings, 3).await;

    assert_eq!(
        total(&sink).await,
        2,
        "the two good events applied once each"
    );
    let dead = dead_letter::list(&sink, false).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].attempts, dead[0].event_type.as_str()),
        (3, "note.written")
    );
    assert_eq!(
        counter.calls.load(Ordering::SeqCst),
        2 + 2 + 3,
        "the three tried as one run (the first two called before the run failed), then one by \
         one: three attempts at the poison event"
    );

    assert!(matches!(
        dead_letter::redrive(&consumer, &dead[0].id).await.unwrap(),
        RedriveOutcome::Failed(_)
    ));
    assert_eq!(
        dead_letter::list(&sink, false).await.unwrap()[0].attempts,
        4
    );
    counter.cure.store(true, Ordering::SeqCst);
    assert_eq!(
        dead_letter::redrive(&consumer, &dead[0].id).await.unwrap(),
        RedriveOutcome::Applied
    );
    assert_eq!(
        dead_letter::redrive(&consumer, &dead[0].id).await.unwrap(),
        RedriveOutcome::NotFound
    );
    assert_eq!(total(&sink).await, 3);
    assert!(dead_letter::list(&sink, false).await.unwrap().is_empty());
    assert_eq!(
        dead_letter::list(&sink, true).await.unwrap()[0].status,
        "redriven"
    );
}
both_backends!(failing_events_are_retried_dead_lettered_and_redriven_once);

async fn a_backlog_applies_in_runs_each_event_once(backend: TestBackend) {
    let Some(Fixture {
        _loc,
        source,
        sink,
        counter,
        consumer,
    }) = fixture(backend).await
    else {
        return;
    };
    // 150 events waiting: with runs of 64, three transactions of the sink's.
    let events: Vec<Envelope> = (1..=150).map(|n| event(n, false)).collect();
    publish(&source, &events).await;
    sequence_all(&source).await;
    let mut commits = sink.subscribe_commits();
    commits.borrow_and_update();
    run_until(&source, &consumer, fast(), 150).await;
    assert_eq!(total(&sink).await, 150);
    assert_eq!(counter.calls.load(Ordering::SeqCst), 150);
    let sink_commits = *commits.borrow_and_update();
    assert!(
        sink_commits <= 3,
        "{sink_commits} commits on the sink for 150 events"
    );

    // Some of them delivered again in a run, one of them twice in it, with a new one: only the
    // new one applies.
    let new = event(151, false);
    let mut again: Vec<&Envelope> = events[100..].iter().collect();
    again.extend([&events[120], &new]);
    consumer.apply_run("source", &again, 151).await.unwrap();
    assert_eq!(total(&sink).await, 151, "only the new event applied");
    assert_eq!(consumer.position("source").await.unwrap(), 151);
    assert_eq!(
        sqlx::query("SELECT COUNT(*) FROM inbox")
            .fetch_one(sink.reader())
            .await
            .unwrap()
            .try_get::<i64, _>(0)
            .unwrap(),
        151
    );
}
both_backends!(a_backlog_applies_in_runs_each_event_once);

async fn a_consumer_resumes_from_its_position_after_a_restart(backend: TestBackend) {
    let Some(Fixture {
        _loc,
        source,
        sink,
        counter,
        consumer,
    }) = fixture(backend).await
    else {
        return;
    };
    let batch: Vec<_> = (0..20).map(|i| event(i, false)).collect();
    publish(&source, &batch).await;
    run_until(&source, &consumer, fast(), 20).await;
    let more: Vec<_> = (0..5).map(|i| event(100 + i, false)).collect();
    publish(&source, &more).await;
    run_until(&source, &consumer, fast(), 25).await;
    assert_eq!(
        total(&sink).await,
        25,
        "each event applied once across restarts"
    );
    assert_eq!(
        counter.calls.load(Ordering::SeqCst),
        25,
        "nothing before the saved position was re-read"
    );
}
both_backends!(a_consumer_resumes_from_its_position_after_a_restart);

async fn an_unreadable_event_goes_to_the_dead_letters_instead_of_blocking(backend: TestBackend) {
    let Some(Fixture {
        _loc,
        source,
        sink,
        consumer,
        ..
    }) = fixture(backend).await
    else {
        return;
    };
    let broken = event(1, false);
    publish(&source, &[broken.clone(), event(2, false)]).await;
    let mut tx = source.begin_write().await.unwrap();
    sqlx::query("UPDATE outbox SET envelope = '{not json' WHERE id = $1")
        .bind(broken.id.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    run_until(&source, &consumer, fast(), 2).await;
    assert_eq!(total(&sink).await, 1, "the readable event was applied");
    let dead = dead_letter::list(&sink, false).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].event_id, broken.id.to_string());
    assert!(
        dead[0].error.contains("not a valid envelope"),
        "{}",
        dead[0].error
    );
    assert!(matches!(
        dead_letter::redrive(&consumer, &dead[0].id).await.unwrap(),
        RedriveOutcome::Failed(_)
    ));
}
both_backends!(an_unreadable_event_goes_to_the_dead_letters_instead_of_blocking);

/// Large appends (more rows than one statement carries) and a sequencer that numbers more than
/// one round's worth: every event once, positions 1..=n in the order the rows were written, the
/// envelopes exactly as serialized, and the head at n; two sequencers racing leave no gap.
async fn large_appends_are_numbered_gap_free_in_written_order(backend: TestBackend) {
    let Some(loc) = TestLocation::new(backend).await else {
        return;
    };
    let db = open(&loc, "source").await;
    let big = outbox::SEQUENCE_BATCH as u32 + 2_345;
    let mut written = Vec::new();
    for (from, n) in [(0, 3u32), (3, big), (3 + big, 1)] {
        let events: Vec<_> = (from..from + n).map(|i| event(i, false)).collect();
        publish(&db, &events).await;
        written.extend(events);
    }
    if backend == TestBackend::Postgres {
        assert_eq!(
            outbox::unsequenced(&db).await.unwrap(),
            written.len() as i64
        );
        let (a, b) = tokio::join!(outbox::sequence_pending(&db), outbox::sequence_pending(&db));
        let first_round = a.unwrap() + b.unwrap();
        assert!(first_round <= 2 * outbox::SEQUENCE_BATCH as u64);
        sequence_all(&db).await;
        assert_eq!(outbox::unsequenced(&db).await.unwrap(), 0);
    }
    let log = tally_bus::log::read_after(&db, 0, written.len() as i64 + 10)
        .await
        .unwrap();
    let seqs: Vec<i64> = log.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=written.len() as i64).collect::<Vec<_>>());
    let read: Vec<&Envelope> = log.iter().map(|e| e.envelope.as_ref().unwrap()).collect();
    // The order the rows were written in: by time, then id.
    let mut expected: Vec<&Envelope> = written.iter().collect();
    expected.sort_by_key(|e| (tally_kernel::time::to_db(e.occurred_at), e.id));
    assert_eq!(read, expected);
    for (entry, envelope) in log.iter().zip(&expected) {
        assert_eq!(entry.raw, serde_json::to_string(envelope).unwrap());
        assert_eq!(entry.topic, envelope.event_type);
    }
    assert_eq!(
        tally_bus::log::head(&db).await.unwrap(),
        written.len() as i64
    );
}
both_backends!(large_appends_are_numbered_gap_free_in_written_order);

/// `n` notes from `from` on that share their time and cause, so that they pack.
fn run_of(from: u32, n: u32) -> Vec<Envelope> {
    let meta = EventMeta::from_request("bulk");
    let now = tally_kernel::time::now();
    (from..from + n)
        .map(|i| Note(i, false).to_envelope("source", &meta, now))
        .collect()
}

async fn publish_packed(db: &Db, events: &[Envelope]) {
    let mut tx = db.begin_write().await.unwrap();
    outbox::prepare_packed(db, events)
        .unwrap()
        .append(&mut tx)
        .await
        .unwrap();
    db.commit(tx).await.unwrap();
}

/// Packed rows between single ones: the log reads one event per position, gap-free, from any
/// position with any page size, and a consumer starting in the middle of a packed row applies
/// exactly the events after its position.
async fn packed_rows_read_as_one_event_per_position(backend: TestBackend) {
    let Some(Fixture {
        _loc,
        source,
        sink,
        counter,
        consumer,
    }) = fixture(backend).await
    else {
        return;
    };
    let mut written = Vec::new();
    for events in [
        vec![event(0, false)],
        run_of(1, 600),
        vec![event(601, false)],
        run_of(602, 2),
    ] {
        if events.len() == 1 {
            publish(&source, &events).await;
        } else {
            publish_packed(&source, &events).await;
        }
        written.extend(events);
    }
    let n = written.len() as i64;
    let rows: i64 = sqlx::query("SELECT COUNT(*) FROM outbox")
        .fetch_one(source.reader())
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        rows,
        1 + 3 + 1 + 1,
        "600 events take three rows, two take one"
    );
    if backend == TestBackend::Postgres {
        assert_eq!(outbox::unsequenced(&source).await.unwrap(), n);
    }
    sequence_all(&source).await;
    assert_eq!(tally_bus::log::head(&source).await.unwrap(), n);

    let log = tally_bus::log::read_after(&source, 0, n + 10)
        .await
        .unwrap();
    assert_eq!(
        log.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>()
    );
    for (entry, event) in log.iter().zip(&written) {
        assert_eq!(entry.envelope.as_ref().unwrap(), event);
        assert_eq!(entry.id, event.id.to_string());
        assert_eq!(entry.raw, serde_json::to_string(event).unwrap());
    }
    for after in 0..=n {
        for limit in [1, 7, 300] {
            let page = tally_bus::log::read_after(&source, after, limit)
                .await
                .unwrap();
            let expected: Vec<i64> = (after + 1..=n).take(limit as usize).collect();
            assert_eq!(
                page.iter().map(|e| e.seq).collect::<Vec<_>>(),
                expected,
                "after {after}, {limit} at most"
            );
        }
    }

    consumer.save_position("source", 300).await.unwrap();
    run_until(&source, &consumer, fast(), n).await;
    assert_eq!(total(&sink).await, n - 300);
    assert_eq!(counter.calls.load(Ordering::SeqCst) as i64, n - 300);
}
both_backends!(packed_rows_read_as_one_event_per_position);

/// A packed row that cannot be read parks each of its events in the dead letters and the
/// consumer carries on after it.
async fn an_unreadable_packed_row_parks_each_of_its_events(backend: TestBackend) {
    let Some(Fixture {
        _loc,
        source,
        sink,
        consumer,
        ..
    }) = fixture(backend).await
    else {
        return;
    };
    publish_packed(&source, &run_of(0, 3)).await;
    let mut tx = source.begin_write().await.unwrap();
    sqlx::query("UPDATE outbox SET envelope = '{not json'")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    publish(&source, &[event(3, false)]).await;
    sequence_all(&source).await;

    run_until(&source, &consumer, fast(), 4).await;
    assert_eq!(total(&sink).await, 1, "the readable event was applied");
    let dead = dead_letter::list(&sink, false).await.unwrap();
    assert_eq!(dead.len(), 3);
    assert!(dead
        .iter()
        .all(|d| d.error.contains("not a valid packed row")));
}
both_backends!(an_unreadable_packed_row_parks_each_of_its_events);

/// Notes read from the `notes` table: a note's id is its row's, its data `{n, poison: false}`.
static NOTE_ROWS: [RowEvents; 1] = [RowEvents {
    source: "notes",
    event_type: "note.written",
    version: 1,
    aggregate_type: "note",
    sqlite: "SELECT n FROM notes WHERE id >= $1 AND id < $2 ORDER BY id",
    postgres: "SELECT n FROM notes WHERE id >= $1 AND id < $2 ORDER BY id",
    event: note_from_row,
}];

fn note_from_row(
    row: &sqlx::any::AnyRow,
    _: Backend,
) -> Result<(String, serde_json::Value), sqlx::Error> {
    let n: i64 = row.try_get(0)?;
    let note = Note(u32::try_from(n).unwrap(), false);
    Ok((note.aggregate_id(), note.data()))
}

/// Writes notes `from..from + n` (consecutive ids) and the outbox row naming them in one
/// transaction, committed or not. Returns the notes' first id.
async fn write_note_rows(db: &Db, from: u32, n: u32, commit: bool) -> uuid::Uuid {
    let ids: Vec<uuid::Uuid> = tally_kernel::id::new_v7_run(n as usize).collect();
    let mut tx = db.begin_write().await.unwrap();
    for (id, note) in ids.iter().zip(from..) {
        sqlx::query("INSERT INTO notes (id, n) VALUES ($1, $2)")
            .bind(id.to_string())
            .bind(i64::from(note))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    let meta = EventMeta::from_request("rows");
    outbox::prepare_publish_rows(db, "source", &meta, &NOTE_ROWS[0], ids[0], ids.len())
        .unwrap()
        .append(&mut tx)
        .await
        .unwrap();
    if commit {
        db.commit(tx).await.unwrap();
    } else {
        tx.rollback().await.unwrap();
    }
    ids[0]
}

/// Events read from rows: one outbox row names a run of rows written by its transaction (none
/// when it rolls back), and the log reads one event per row and position, with ids of its own
/// that read the same every time, from any position with any page size. A reader not given the
/// rows' source fails instead of passing the events by; a consumer applies each event once, and
/// again nothing when the events are delivered a second time.
async fn events_read_from_rows_are_one_per_row_and_applied_once(backend: TestBackend) {
    let Some(Fixture {
        _loc,
        source,
        sink,
        counter,
        consumer,
    }) = fixture(backend).await
    else {
        return;
    };
    write_note_rows(&source, 0, 300, true).await;
    write_note_rows(&source, 5_000, 50, false).await;
    publish(&source, &[event(300, false)]).await;
    write_note_rows(&source, 301, 5, true).await;
    let n = 306;
    let rows: i64 = sqlx::query("SELECT COUNT(*) FROM outbox")
        .fetch_one(source.reader())
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 3, "a run of rows takes one outbox row");
    sequence_all(&source).await;
    assert_eq!(tally_bus::log::head(&source).await.unwrap(), n);

    let log = tally_bus::log::read_after_with(&source, &NOTE_ROWS, 0, n + 10)
        .await
        .unwrap();
    assert_eq!(
        log.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>()
    );
    let mut ids = std::collections::HashSet::new();
    for (entry, note) in log.iter().zip(0u32..) {
        let envelope = entry.envelope.as_ref().unwrap();
        assert_eq!(envelope.event_type, "note.written");
        assert_eq!(envelope.source, "source");
        assert_eq!(envelope.aggregate_id, note.to_string());
        assert_eq!(envelope.data, Note(note, false).data());
        assert_eq!(entry.id, envelope.id.to_string());
        assert_eq!(entry.raw, serde_json::to_string(envelope).unwrap());
        assert!(ids.insert(envelope.id), "every event has its own id");
    }
    for after in [0, 1, 150, 299, 300, 301, 303, 306] {
        for limit in [1, 7, 300] {
            let page = tally_bus::log::read_after_with(&source, &NOTE_ROWS, after, limit)
                .await
                .unwrap();
            let expected: Vec<_> = log
                .iter()
                .skip(after as usize)
                .take(limit as usize)
                .map(|e| (e.seq, e.raw.clone()))
                .collect();
            let got: Vec<_> = page.iter().map(|e| (e.seq, e.raw.clone())).collect();
            assert_eq!(got, expected, "after {after}, {limit} at most");
        }
    }
    assert!(tally_bus::log::read_after(&source, 0, 10).await.is_err());
    // A run's ids differ in their lowest 32 bits only: one that would carry past them is refused.
    let edge = uuid::Uuid::from_u128(0xffff_ffff);
    let meta = EventMeta::from_request("rows");
    assert!(outbox::prepare_publish_rows(&source, "source", &meta, &NOTE_ROWS[0], edge, 1).is_ok());
    assert!(
        outbox::prepare_publish_rows(&source, "source", &meta, &NOTE_ROWS[0], edge, 2).is_err()
    );
    assert_eq!(
        tally_bus::log::read_after(&source, 300, 1).await.unwrap()[0].seq,
        301,
        "a reader without the rows' source still reads the events held whole"
    );

    consumer.save_position("source", 150).await.unwrap();
    run_until_with(&source, &NOTE_ROWS, &consumer, fast(), n).await;
    assert_eq!(total(&sink).await, n - 150);
    consumer.save_position("source", 0).await.unwrap();
    run_until_with(&source, &NOTE_ROWS, &consumer, fast(), n).await;
    // The first 150 are new to the consumer; the other 156 come again and change nothing.
    assert_eq!(total(&sink).await, n, "delivered again, applied once");
    assert_eq!(counter.calls.load(Ordering::SeqCst) as i64, n);
}
both_backends!(events_read_from_rows_are_one_per_row_and_applied_once);

/// Rows named by the outbox that are gone (which the tables that publish so forbid) make events
/// that cannot be read: each is parked in the dead letters and the consumer carries on.
async fn events_of_missing_rows_are_parked(backend: TestBackend) {
    let Some(Fixture {
        _loc,
        source,
        sink,
        consumer,
        ..
    }) = fixture(backend).await
    else {
        return;
    };
    let first = write_note_rows(&source, 0, 3, true).await;
    let mut tx = source.begin_write().await.unwrap();
    sqlx::query("DELETE FROM notes WHERE id = $1")
        .bind(first.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    publish(&source, &[event(3, false)]).await;
    sequence_all(&source).await;

    run_until_with(&source, &NOTE_ROWS, &consumer, fast(), 4).await;
    assert_eq!(total(&sink).await, 1, "the readable event was applied");
    let dead = dead_letter::list(&sink, false).await.unwrap();
    assert_eq!(dead.len(), 3);
    assert!(dead.iter().all(|d| d.error.contains("missing")), "{dead:?}");
}
both_backends!(events_of_missing_rows_are_parked);

/// Dead letters are read page by page past any number of them: 1,203 of one consumer (many
/// sharing a time, so that ties are broken by id) and 5 of another, with pages of 100. Every
/// letter of the consumer comes once, in order; the other consumer's never; a redriven letter
/// only with `all`.
async fn dead_letters_are_listed_page_by_page_past_any_number(backend: TestBackend) {
    let Some(loc) = TestLocation::new(backend).await else {
        return;
    };
    let db = open(&loc, "letters").await;
    let mut tx = db.begin_write().await.unwrap();
    for (consumer, n) in [("a", 1_203), ("b", 5)] {
        for i in 0..n {
            sqlx::query(
                "INSERT INTO dead_letters (id, consumer, source, event_id, event_type, envelope, \
                 error, attempts, status, created_at) \
                 VALUES ($1, $2, 'source', $3, 'note.written', '{}', 'failed', 3, $4, $5)",
            )
            .bind(tally_kernel::id::new_v7().to_string())
            .bind(consumer)
            .bind(format!("event-{consumer}-{i}"))
            .bind(if i == 7 { "redriven" } else { "dead" })
            .bind(format!("2026-11-21T10:00:{:02}.000000Z", i / 100))
            .execute(&mut *tx)
            .await
            .unwrap();
        }
    }
    db.commit(tx).await.unwrap();

    let read_all = |all: bool| {
        let db = db.clone();
        async move {
            let mut letters = Vec::new();
            let mut page = Some(dead_letter::Page {
                consumer: Some("a".to_owned()),
                after: None,
                limit: 100,
            });
            while let Some(current) = page {
                let read = dead_letter::list_page(&db, &current, all).await.unwrap();
                assert!(read.len() <= 100);
                page = current.next(&read);
                letters.extend(read);
            }
            letters
        }
    };
    let dead = read_all(false).await;
    assert_eq!(dead.len(), 1_202);
    assert!(dead.iter().all(|l| l.consumer == "a" && l.status == "dead"));
    let keys: Vec<_> = dead.iter().map(|l| (&l.created_at, &l.id)).collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "oldest first, no repeats"
    );
    let every = read_all(true).await;
    assert_eq!(every.len(), 1_203);
    assert_eq!(every.iter().filter(|l| l.status == "redriven").count(), 1);
    assert_eq!(dead_letter::list(&db, false).await.unwrap().len(), 1_000);
}
both_backends!(dead_letters_are_listed_page_by_page_past_any_number);
