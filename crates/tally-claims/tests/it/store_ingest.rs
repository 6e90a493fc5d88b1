//! Storing claims on SQLite and PostgreSQL: claims, the providers' aggregate, the ranking and the
//! outbox move together.

use std::collections::BTreeMap;

use futures_util::StreamExt as _;
use sqlx::Row as _;
use tally_claims::adapters::store::{ProviderTotal, TOP_PROVIDERS};
use tally_claims::{store_batch, BulkWriter, Store, TopProvidersRate};
use tally_db::testing::TestBackend;
use tally_db::{both_backends, Backend, Db};
use tally_kernel::event::DomainEvent as _;
use tally_kernel::{Currency, Envelope, EventMeta, Money};

use crate::{app, claim_json, claims, count, fixture, npi, outbox_events, post_json, send};

fn meta() -> EventMeta {
    EventMeta::from_request("test-import")
}

/// Every provider's (total, count) straight from the claims table.
async fn sums_from_claims(db: &Db) -> BTreeMap<String, (i64, i64)> {
    by_provider(
        db,
        "SELECT provider_npi, CAST(SUM(net_fee_minor) AS BIGINT), COUNT(*) FROM claims \
         GROUP BY provider_npi",
    )
    .await
}

/// The aggregate as stored: each provider's total net fee and claim count.
async fn stored_totals(db: &Db) -> BTreeMap<String, (i64, i64)> {
    by_provider(
        db,
        "SELECT provider_npi, total_net_fee_minor, claim_count FROM provider_totals",
    )
    .await
}

/// The rows of `sql`, `(provider_npi, net fee, claim count)`, by provider.
async fn by_provider(db: &Db, sql: &str) -> BTreeMap<String, (i64, i64)> {
    sqlx::query(sql)
        .fetch_all(db.reader())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect()
}

/// The service's log as its consumers read it: packed rows expanded and events read from the
/// claims' rows, one entry per position (sequenced first on PostgreSQL).
async fn log(db: &Db) -> Vec<tally_bus::log::LogEntry> {
    while tally_bus::outbox::sequence_pending(db).await.unwrap() > 0 {}
    tally_bus::log::read_after_with(db, &tally_claims::ROW_EVENTS, 0, 1_000_000)
        .await
        .unwrap()
}

async fn outbox(db: &Db) -> Vec<Envelope> {
    log(db)
        .await
        .into_iter()
        .map(|entry| {
            let envelope = entry.envelope.unwrap();
            assert_eq!(entry.topic, envelope.event_type);
            assert_eq!(entry.id, envelope.id.to_string());
            envelope
        })
        .collect()
}

async fn an_ingest_stores_the_claims_and_grows_the_aggregate(backend: TestBackend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let (a, b) = (npi(100_000_001), npi(100_000_002));
    let batch = claims(&[
        claim_json(&a, 8125),
        claim_json(&b, -250),
        claim_json(&a, 1),
    ]);
    let accepted = store_batch(&f.db, &batch, &meta()).await.unwrap();
    assert_eq!(accepted.len(), 3);
    assert_eq!(accepted[0].net_fee.amount_minor, 8125);
    assert_eq!(count(&f.db, "claims").await, 3);
    let stored: Vec<(String, i64)> =
        sqlx::query("SELECT CAST(id AS TEXT), net_fee_minor FROM claims ORDER BY id")
            .fetch_all(f.db.reader())
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    let mut expected: Vec<(String, i64)> = accepted
        .iter()
        .map(|c| (c.id.to_string(), c.net_fee.amount_minor))
        .collect();
    expected.sort();
    assert_eq!(stored, expected);
    assert_eq!(accepted[0].id.get_version_num(), 7, "ids are UUID v7");

    let top = Store::new(f.db.clone()).top_providers(10).await.unwrap();
    let as_rows: Vec<(&str, i64, i64)> = top
        .iter()
        .map(|p| {
            (
                p.provider_npi.as_str(),
                p.total_net_fee.amount_minor,
                p.claim_count,
            )
        })
        .collect();
    assert_eq!(as_rows, [(a.as_str(), 8126, 2), (b.as_str(), -250, 1)]);

    store_batch(&f.db, &claims(&[claim_json(&b, 10_000)]), &meta())
        .await
        .unwrap();
    let top = Store::new(f.db.clone()).top_providers(1).await.unwrap();
    assert_eq!(
        top,
        [ProviderTotal {
            provider_npi: b.clone(),
            total_net_fee: Money::new(9750, Currency::USD),
            claim_count: 2,
        }],
        "a later ingest adds to the provider's total"
    );
}
both_backends!(an_ingest_stores_the_claims_and_grows_the_aggregate);

async fn a_request_with_one_bad_row_stores_nothing(backend: TestBackend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let app = app(&f.db, TopProvidersRate::default());
    let good = claim_json(&npi(100_000_001), 100);
    let mut bad = claim_json(&npi(100_000_002), 100);
    bad["provider_npi"] = "1234567890".into();
    let answer = send(&app, post_json(&serde_json::json!([good, good, bad, good]))).await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert_eq!(answer.body["errors"][0]["field"], "rows[2].provider_npi");
    for table in ["claims", "provider_totals", "outbox"] {
        assert_eq!(count(&f.db, table).await, 0, "{table} is untouched");
    }
}
both_backends!(a_request_with_one_bad_row_stores_nothing);

async fn top_providers_match_the_sums_of_their_claims_with_ties_by_npi(backend: TestBackend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let providers: Vec<String> = (1..=7).map(|i| npi(200_000_000 + i * 7)).collect();
    // Three ingests; providers 0 and 4 end on the same total, as do 1 and 6 (negative).
    let batches: [&[(usize, i64)]; 3] = [
        &[(0, 5000), (1, -300), (2, 12_345), (3, 2500)],
        &[(3, 2500), (4, 7000), (0, -1), (5, 99)],
        &[(1, 0), (6, -300), (0, 2001), (2, 1), (5, 1)],
    ];
    let mut expected: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for batch in batches {
        let rows: Vec<_> = batch
            .iter()
            .map(|&(p, net)| claim_json(&providers[p], net))
            .collect();
        store_batch(&f.db, &claims(&rows), &meta()).await.unwrap();
        for &(p, net) in batch {
            let entry = expected.entry(providers[p].clone()).or_default();
            entry.0 += net;
            entry.1 += 1;
        }
    }
    assert_eq!(sums_from_claims(&f.db).await, expected);
    let mut ranking: Vec<(String, i64, i64)> = expected
        .into_iter()
        .map(|(npi, (total, n))| (npi, total, n))
        .collect();
    ranking.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    assert_eq!(ranking[1].1, ranking[2].1, "the top 3 holds a tie");

    let top = Store::new(f.db.clone()).top_providers(100).await.unwrap();
    let got: Vec<(String, i64, i64)> = top
        .into_iter()
        .map(|p| (p.provider_npi, p.total_net_fee.amount_minor, p.claim_count))
        .collect();
    assert_eq!(got, ranking);

    let answer = send(
        &app(&f.db, TopProvidersRate::default()),
        crate::get("/providers/top?limit=3"),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    // Amounts are read from their raw JSON text: they must be exact decimals.
    #[derive(serde::Deserialize)]
    struct Listed {
        provider_npi: String,
        total_net_fee: Box<serde_json::value::RawValue>,
        claim_count: i64,
    }
    #[derive(serde::Deserialize)]
    struct Top {
        providers: Vec<Listed>,
    }
    let top: Top = serde_json::from_str(&answer.text).unwrap();
    let listed: Vec<(String, String, i64)> = top
        .providers
        .into_iter()
        .map(|p| {
            (
                p.provider_npi,
                p.total_net_fee.get().to_owned(),
                p.claim_count,
            )
        })
        .collect();
    let money = |minor: i64| Money::new(minor, Currency::USD).to_decimal_string();
    let expected_top3: Vec<(String, String, i64)> = ranking[..3]
        .iter()
        .map(|(npi, total, n)| (npi.clone(), money(*total), *n))
        .collect();
    assert_eq!(listed, expected_top3);
}
both_backends!(top_providers_match_the_sums_of_their_claims_with_ties_by_npi);

async fn the_outbox_holds_one_claim_accepted_per_claim(backend: TestBackend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let a = npi(300_000_003);
    let mut row = claim_json(&a, 8125);
    row["quadrant"] = "UR".into();
    let first = store_batch(&f.db, &claims(&[row, claim_json(&a, -5)]), &meta())
        .await
        .unwrap();
    let second = store_batch(&f.db, &claims(&[claim_json(&a, 7)]), &meta())
        .await
        .unwrap();
    let events = outbox(&f.db).await;
    assert_eq!(events.len(), 3);
    let mut claim_ids: Vec<String> = first
        .iter()
        .chain(&second)
        .map(|c| c.id.to_string())
        .collect();
    let mut event_ids: Vec<String> = events
        .iter()
        .map(|e| e.data["claim_id"].as_str().unwrap().to_owned())
        .collect();
    claim_ids.sort();
    event_ids.sort();
    assert_eq!(event_ids, claim_ids, "one event per claim");
    let event = events
        .iter()
        .find(|e| e.data["claim_id"] == first[0].id.to_string())
        .unwrap();
    assert_eq!(event.event_type, "claim.accepted");
    assert_eq!(event.version, 1);
    assert_eq!(event.source, "claims");
    assert_eq!(event.aggregate_id, first[0].id.to_string());
    assert_eq!(event.correlation_id, "test-import");
    assert_eq!(
        event.data,
        serde_json::json!({
            "claim_id": first[0].id.to_string(),
            "provider_npi": a,
            "service_date": "2018-03-28T00:00:00Z",
            "submitted_procedure": "D0180",
            "quadrant": "UR",
            "net_fee_minor": 8125,
            "provider_fees_minor": 13125,
            "allowed_fees_minor": 5000,
            "member_coinsurance_minor": 0,
            "member_copay_minor": 0,
            "currency": "USD",
        })
    );
}
both_backends!(the_outbox_holds_one_claim_accepted_per_claim);

async fn the_ranking_reads_its_index_instead_of_sorting(backend: TestBackend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let rows: Vec<_> = (0..20)
        .map(|i| claim_json(&npi(400_000_000 + i), i64::from(i) * 10))
        .collect();
    store_batch(&f.db, &claims(&rows), &meta()).await.unwrap();
    let query = TOP_PROVIDERS.replace("$1", "10");
    let mut conn = f.db.reader().acquire().await.unwrap();
    let plan: Vec<String> = match f.db.backend() {
        Backend::Sqlite => sqlx::query(&format!("EXPLAIN QUERY PLAN {query}"))
            .fetch_all(&mut *conn)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>(3))
            .collect(),
        Backend::Postgres => {
            // Tiny tables make a sequential scan look cheapest; with it off, the planner shows
            // whether the index alone can answer in order.
            sqlx::query("SET enable_seqscan = off")
                .execute(&mut *conn)
                .await
                .unwrap();
            let plan = sqlx::query(&format!("EXPLAIN {query}"))
                .fetch_all(&mut *conn)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>(0))
                .collect();
            sqlx::query("RESET enable_seqscan")
                .execute(&mut *conn)
                .await
                .unwrap();
            plan
        }
    };
    let plan = plan.join("\n");
    assert!(plan.contains("provider_totals_rank"), "{plan}");
    assert!(
        !plan.contains("TEMP B-TREE") && !plan.contains("Sort"),
        "{plan}"
    );
}
both_backends!(the_ranking_reads_its_index_instead_of_sorting);

async fn a_batch_of_many_statements_is_stored_whole(backend: TestBackend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let rows: Vec<_> = (0..123)
        .map(|i| claim_json(&npi(700_000_000 + i % 5), i64::from(i) - 60))
        .collect();
    let accepted = store_batch(&f.db, &claims(&rows), &meta()).await.unwrap();
    assert_eq!(accepted.len(), 123);
    assert_eq!(count(&f.db, "claims").await, 123);
    assert_eq!(outbox_events(&f.db).await, 123);
    let aggregate = stored_totals(&f.db).await;
    assert_eq!(aggregate.len(), 5);
    assert_eq!(aggregate, sums_from_claims(&f.db).await);
    let too_many =
        vec![accepted[0].claim.clone(); tally_claims::adapters::store::MAX_BATCH_CLAIMS + 1];
    assert!(store_batch(&f.db, &too_many, &meta()).await.is_err());
    assert_eq!(count(&f.db, "claims").await, 123);
}
both_backends!(a_batch_of_many_statements_is_stored_whole);

/// A full batch (more rows than any one statement carries on either backend, so that full and
/// partial statements both run) with text that needs escaping, unicode and absent quadrants:
/// every value is stored exactly, and the outbox holds one event per claim with gap-free
/// positions in the order of the claims.
async fn a_full_batch_with_awkward_text_round_trips_exactly(backend: TestBackend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let groups = ["G'1\"x\\y", "Ünïcødé ✓ 😀", "a;b--c, \"d\"", "plain"];
    let make = |n: usize, offset: usize| -> Vec<_> {
        (offset..offset + n)
            .map(|i| {
                let mut row = claim_json(&npi(500_000_000 + (i % 37) as u32), i as i64 % 900 - 300);
                row["plan_group_number"] = groups[i % groups.len()].into();
                row["subscriber_number"] = format!("S\\u{{}}'\"{i}").into();
                match i % 3 {
                    0 => {}
                    1 => row["quadrant"] = "UR".into(),
                    _ => row["quadrant"] = "1–3 «x»".into(),
                }
                row
            })
            .collect()
    };
    let full = tally_claims::adapters::store::MAX_BATCH_CLAIMS;
    let first = store_batch(&f.db, &claims(&make(full, 0)), &meta())
        .await
        .unwrap();
    let second = store_batch(&f.db, &claims(&make(1_001, full)), &meta())
        .await
        .unwrap();
    let accepted: Vec<_> = first.iter().chain(&second).collect();
    assert_eq!(count(&f.db, "claims").await, accepted.len() as i64);

    // PostgreSQL keeps ids and times in its own types (binary COPY writes them), SQLite as text:
    // both are read back here as text and seconds since the Unix epoch.
    let epoch = match f.db.backend() {
        Backend::Postgres => "CAST(EXTRACT(EPOCH FROM service_date) AS BIGINT)",
        Backend::Sqlite => "unixepoch(service_date)",
    };
    let stored: BTreeMap<String, (Option<String>, String, String, i64)> = sqlx::query(&format!(
        "SELECT CAST(id AS TEXT), quadrant, plan_group_number, subscriber_number, net_fee_minor, \
         {epoch}, provider_npi, submitted_procedure, provider_fees_minor, allowed_fees_minor, \
         member_coinsurance_minor, member_copay_minor FROM claims"
    ))
    .fetch_all(f.db.reader())
    .await
    .unwrap()
    .iter()
    .map(|r| {
        let id: String = r.get(0);
        let accepted = accepted.iter().find(|a| a.id.to_string() == id).unwrap();
        let c = &accepted.claim;
        assert_eq!(r.get::<i64, _>(5), c.service_date().timestamp(), "{id}");
        assert_eq!(r.get::<String, _>(6), c.provider_npi().as_str(), "{id}");
        assert_eq!(
            r.get::<String, _>(7),
            c.submitted_procedure().as_str(),
            "{id}"
        );
        let amounts: [i64; 4] = [r.get(8), r.get(9), r.get(10), r.get(11)];
        let expected = [
            c.provider_fees(),
            c.allowed_fees(),
            c.member_coinsurance(),
            c.member_copay(),
        ]
        .map(|m| m.amount_minor);
        assert_eq!(amounts, expected, "{id}");
        (id, (r.get(1), r.get(2), r.get(3), r.get(4)))
    })
    .collect();
    assert_eq!(stored.len(), accepted.len());
    for a in &accepted {
        let c = &a.claim;
        let expected = (
            c.quadrant().map(str::to_owned),
            c.plan_group_number().to_owned(),
            c.subscriber_number().to_owned(),
            a.net_fee.amount_minor,
        );
        assert_eq!(stored[&a.id.to_string()], expected);
    }
    assert!(stored.values().any(|v| v.0.is_none()));
    assert!(stored.values().any(|v| v.1 == "Ünïcødé ✓ 😀"));
    assert_eq!(stored_totals(&f.db).await, sums_from_claims(&f.db).await);

    let log = log(&f.db).await;
    assert_eq!(log.len(), accepted.len());
    let positions: Vec<i64> = log.iter().map(|entry| entry.seq).collect();
    assert_eq!(positions, (1..=accepted.len() as i64).collect::<Vec<_>>());
    // A batch's events are one outbox row naming its claims, read back from them.
    assert_eq!(count(&f.db, "outbox").await, 2);
    for (entry, a) in log.iter().zip(&accepted) {
        // One event per claim, in the order of the claims (on PostgreSQL too: one batch's
        // events share their time and their ids grow).
        let envelope = entry.envelope.as_ref().unwrap();
        assert_eq!(
            serde_json::from_str::<Envelope>(&entry.raw).unwrap(),
            *envelope
        );
        assert_eq!(envelope.aggregate_id, a.id.to_string());
        assert_eq!(envelope.data["claim_id"], a.id.to_string());
        assert_eq!(envelope.data["net_fee_minor"], a.net_fee.amount_minor);
        assert_eq!(
            envelope.data["quadrant"],
            serde_json::to_value(a.claim.quadrant()).unwrap()
        );
        // The very data the event would have carried written whole.
        assert_eq!(envelope.data, a.event().data());
    }
    // Pages of the log start and end anywhere inside a batch's run of claims, and read the
    // same events; a reader not given the claims' rows stops instead of passing them by.
    let mut paged = Vec::new();
    while paged.len() < log.len() {
        let after = paged.last().map_or(0, |e: &tally_bus::log::LogEntry| e.seq);
        let page = tally_bus::log::read_after_with(&f.db, &tally_claims::ROW_EVENTS, after, 777)
            .await
            .unwrap();
        assert!(!page.is_empty());
        paged.extend(page);
    }
    let ids = |entries: &[tally_bus::log::LogEntry]| -> Vec<(i64, String, String)> {
        entries
            .iter()
            .map(|e| (e.seq, e.id.clone(), e.raw.clone()))
            .collect()
    };
    assert_eq!(ids(&paged), ids(&log));
    let event_ids: std::collections::BTreeSet<&str> = log.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(event_ids.len(), log.len(), "every event has its own id");
    assert!(tally_bus::log::read_after(&f.db, 0, 10).await.is_err());
    let head: i64 = sqlx::query("SELECT last_seq FROM log_head WHERE id = 1")
        .fetch_one(f.db.reader())
        .await
        .unwrap()
        .get(0);
    assert_eq!(head, accepted.len() as i64);
}
both_backends!(a_full_batch_with_awkward_text_round_trips_exactly);

/// Stored claims never change: an import's events are read back from them, so the table refuses
/// every update and delete (and, on PostgreSQL, truncation), and the events stay as written.
async fn stored_claims_are_never_updated_or_deleted(backend: TestBackend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let stored = store_batch(
        &f.db,
        &claims(&[claim_json(&npi(700_000_007), 42)]),
        &meta(),
    )
    .await
    .unwrap();
    let mut changes = vec!["UPDATE claims SET net_fee_minor = 0", "DELETE FROM claims"];
    if f.db.backend() == Backend::Postgres {
        changes.push("TRUNCATE claims");
    }
    for sql in changes {
        let mut tx = f.db.begin_write().await.unwrap();
        let refused = sqlx::query(sql).execute(&mut *tx).await;
        tx.rollback().await.unwrap();
        let error = refused.expect_err(sql).to_string();
        assert!(error.contains("claims are immutable"), "{sql}: {error}");
    }
    assert_eq!(count(&f.db, "claims").await, 1);
    let events = outbox(&f.db).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data, stored[0].event().data());
}
both_backends!(stored_claims_are_never_updated_or_deleted);

/// A bulk writer's batches are one transaction: rolled back, they store nothing (no claim,
/// total, event or log position); committed, all of them at once, with each provider's total
/// grown by the sum over every batch. On PostgreSQL another transaction commits meanwhile and
/// sees none of the writer's batches until its commit.
async fn a_bulk_writer_stores_its_batches_whole_at_its_commit(backend: TestBackend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let rows = |n: u32| -> Vec<_> {
        (0..n)
            .map(|i| claim_json(&npi(600_000_000 + i % 3), 100 + i64::from(i)))
            .collect()
    };
    let mut refused = BulkWriter::begin(&f.db).await.unwrap();
    for n in [40, 7] {
        let batch = tally_claims::prepare_batch(&f.db, claims(&rows(n)), &meta()).unwrap();
        refused.write(&batch).await.unwrap();
    }
    assert_eq!(refused.claims(), 47);
    refused.rollback().await.unwrap();
    for table in ["claims", "provider_totals", "outbox"] {
        assert_eq!(count(&f.db, table).await, 0, "{table}");
    }
    assert_eq!(tally_bus::log::head(&f.db).await.unwrap(), 0);

    let mut writer = BulkWriter::begin(&f.db).await.unwrap();
    for n in [30, 11] {
        let batch = tally_claims::prepare_batch(&f.db, claims(&rows(n)), &meta()).unwrap();
        writer.write(&batch).await.unwrap();
    }
    if backend == TestBackend::Postgres {
        store_batch(&f.db, &claims(&rows(20)), &meta())
            .await
            .unwrap();
        assert_eq!(count(&f.db, "claims").await, 20);
        assert_eq!(outbox_events(&f.db).await, 20);
    }
    let before = count(&f.db, "claims").await;
    assert_eq!(writer.commit().await.unwrap(), 41);
    assert_eq!(count(&f.db, "claims").await, before + 41);
    assert_eq!(outbox_events(&f.db).await, before + 41);
    let aggregate = stored_totals(&f.db).await;
    assert_eq!(aggregate, sums_from_claims(&f.db).await);
}
both_backends!(a_bulk_writer_stores_its_batches_whole_at_its_commit);

/// An importer's batch stores what a batch that keeps its claims stores (the claims, each
/// provider's total grown by the sum over its claims, one event per claim), and leaves the
/// importer's vector empty: on PostgreSQL with its memory kept for the next chunk, on SQLite
/// taken into the batch, whose writes bind the claims.
async fn an_import_batch_stores_its_claims_and_empties_the_chunk(backend: TestBackend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let rows: Vec<_> = (0..250)
        .map(|i: u32| claim_json(&npi(640_000_000 + i % 7), 50 + i64::from(i)))
        .collect();
    let mut writer = BulkWriter::begin(&f.db).await.unwrap();
    let mut chunk = claims(&rows[..200]);
    let capacity = chunk.capacity();
    let batch = tally_claims::prepare_import_batch(&f.db, &mut chunk, &meta()).unwrap();
    assert_eq!(batch.len(), 200);
    assert!(chunk.is_empty());
    match backend {
        TestBackend::Postgres => assert_eq!(chunk.capacity(), capacity),
        TestBackend::Sqlite => assert_eq!(chunk.capacity(), 0),
    }
    writer.write(&batch).await.unwrap();
    chunk.extend(claims(&rows[200..]));
    let batch = tally_claims::prepare_import_batch(&f.db, &mut chunk, &meta()).unwrap();
    writer.write(&batch).await.unwrap();
    assert_eq!(writer.commit().await.unwrap(), 250);
    assert_stored(&f.db, 250, (0..250).map(|i| 50 + i).sum()).await;
}

/// `claims` claims and their events are stored, the providers' totals are the sums over the
/// claims, and together they come to `net_minor`.
async fn assert_stored(db: &Db, claims: i64, net_minor: i64) {
    assert_eq!(count(db, "claims").await, claims);
    assert_eq!(outbox_events(db).await, claims);
    let totals = stored_totals(db).await;
    assert_eq!(totals, sums_from_claims(db).await);
    let total: i64 = totals.values().map(|(fee, _)| fee).sum();
    assert_eq!(total, net_minor);
}
both_backends!(an_import_batch_stores_its_claims_and_empties_the_chunk);

/// A bulk writer stores a stream of batches as it stores them one by one (on PostgreSQL as the
/// rows of one `COPY`); an empty stream stores nothing. On PostgreSQL a stream that fails part
/// way, after a batch of it went to the server, ends its `COPY` and leaves the transaction to
/// roll back with nothing stored.
async fn a_bulk_writer_stores_a_stream_of_batches(backend: TestBackend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let rows: Vec<_> = (0..300)
        .map(|i: u32| claim_json(&npi(650_000_000 + i % 5), 10 + i64::from(i)))
        .collect();
    // Batches of the rows from `from` on, of the sizes given.
    let batches = |db: &Db, from: usize, sizes: &[usize]| {
        let mut start = from;
        let prepared: Vec<_> = sizes
            .iter()
            .map(|size| {
                let mut chunk = claims(&rows[start..start + size]);
                start += size;
                tally_claims::prepare_import_batch(db, &mut chunk, &meta()).unwrap()
            })
            .collect();
        futures_util::stream::iter(prepared)
    };
    if backend == TestBackend::Postgres {
        let sqlite = fixture(TestBackend::Sqlite).await.unwrap();
        let mut failing = BulkWriter::begin(&f.db).await.unwrap();
        let stream = batches(&f.db, 0, &[100]).chain(batches(&sqlite.db, 100, &[50]));
        let refused = failing.write_all(stream).await.unwrap_err();
        assert!(
            refused.to_string().contains("another database"),
            "{refused}"
        );
        failing.rollback().await.unwrap();
        for table in ["claims", "provider_totals", "outbox"] {
            assert_eq!(count(&f.db, table).await, 0, "{table}");
        }
    }
    let mut writer = BulkWriter::begin(&f.db).await.unwrap();
    writer.write_all(batches(&f.db, 0, &[])).await.unwrap();
    assert_eq!(writer.claims(), 0);
    writer
        .write_all(batches(&f.db, 0, &[120, 1, 179]))
        .await
        .unwrap();
    assert_eq!(writer.claims(), 300);
    assert_eq!(writer.commit().await.unwrap(), 300);
    assert_stored(&f.db, 300, (0..300).map(|i| 10 + i).sum()).await;
}
both_backends!(a_bulk_writer_stores_a_stream_of_batches);
