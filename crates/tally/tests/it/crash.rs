//! SIGKILL in the middle of load, with the event consumers behind: after a restart, every
//! acknowledged operation is there exactly once, retries with the same Idempotency-Key have one
//! effect, the consumers catch up, and the reporting statistics count each event exactly once,
//! however often the process restarts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::support::{
    assert_history_consistent, assert_reported_balances, eventually, Api, Backend, Book, Item, Op,
    Resp, Rng, Stats, Tally, TestServer,
};

on_both_backends!(sigkill_under_load: sigkill_under_load_sqlite, sigkill_under_load_postgres);

const CLIENTS: usize = 6;
const OPENING_MINOR: i64 = 50_000;
const OPERATIONS: usize = 400;
/// The kill comes once this many operations are acknowledged; the rest are still in flight.
const ACKNOWLEDGED_BEFORE_KILL: usize = 60;
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(20);
const POLL_EVERY: Duration = Duration::from_millis(50);
/// How long the statistics must stay the same to count as settled.
const SETTLE_FOR: Duration = Duration::from_millis(1000);

fn operations(wallets: &[i64]) -> Vec<Op> {
    let mut rng = Rng::new(0xdead_5157);
    let pick = |rng: &mut Rng| wallets[rng.below(wallets.len() as u64) as usize];
    (0..OPERATIONS)
        .map(|_| {
            let amount = 100 + rng.below(5000) as i64;
            let from = pick(&mut rng);
            if rng.below(2) == 0 {
                Op::Deposit {
                    wallet: from,
                    amount,
                }
            } else {
                let mut to = pick(&mut rng);
                while to == from {
                    to = pick(&mut rng);
                }
                Op::Transfer { from, to, amount }
            }
        })
        .collect()
}

/// What one operation got before the kill: a response, or nothing (a transport error).
struct Outcome {
    op: Op,
    key: String,
    response: Option<Resp>,
}

async fn send_keyed(api: &Api, op: Op, key: &str) -> Result<Resp, reqwest::Error> {
    Api::try_send(op.request(api).header("Idempotency-Key", key)).await
}

/// Polls the statistics until they stop changing for [`SETTLE_FOR`] (or the timeout passes).
async fn settled_statistics(api: &Api, expected_events: i64) -> Stats {
    let deadline = Instant::now() + CATCH_UP_TIMEOUT;
    let mut last = api.statistics().await;
    let mut stable_since = Instant::now();
    loop {
        tokio::time::sleep(POLL_EVERY).await;
        let now = api.statistics().await;
        if now != last {
            last = now;
            stable_since = Instant::now();
        } else if last.events_applied >= expected_events && stable_since.elapsed() >= SETTLE_FOR {
            return last;
        }
        assert!(
            Instant::now() < deadline,
            "the consumers did not settle at {expected_events} events within {CATCH_UP_TIMEOUT:?}; \
             last statistics: {last:?}"
        );
    }
}

async fn sigkill_under_load(backend: Backend) {
    let mut server = TestServer::start_with(backend, &["--no-consumers"]).await;
    let api = server.api();
    let mut book = Book::default();
    let mut wallets = Vec::new();
    for i in 0..CLIENTS {
        let wallet = api.create_client(&format!("Crash{i}")).await.wallet_id;
        let number = api.deposit(wallet, OPENING_MINOR).await;
        book.deposit(wallet, OPENING_MINOR, &number);
        wallets.push(wallet);
    }
    assert_eq!(
        api.statistics().await,
        Stats::default(),
        "with --no-consumers no event may be applied"
    );

    // Load, then SIGKILL while most of it is in flight.
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = operations(&wallets)
        .into_iter()
        .map(|op| {
            let (api, acknowledged) = (api.clone(), Arc::clone(&acknowledged));
            let key = uuid::Uuid::new_v4().to_string();
            tokio::spawn(async move {
                let response = send_keyed(&api, op, &key).await.ok();
                if response.is_some() {
                    acknowledged.fetch_add(1, Ordering::SeqCst);
                }
                Outcome { op, key, response }
            })
        })
        .collect();
    eventually(
        Duration::from_secs(60),
        Duration::from_millis(2),
        "the first acknowledgements",
        || {
            let count = acknowledged.load(Ordering::SeqCst);
            async move { (count >= ACKNOWLEDGED_BEFORE_KILL).then_some(()) }
        },
    )
    .await;
    server.kill_9();
    let outcomes: Vec<Outcome> = join_all(tasks)
        .await
        .into_iter()
        .map(|joined| joined.expect("a request task panicked"))
        .collect();

    let mut reported = HashMap::new();
    let mut unanswered = Vec::new();
    let mut answered = Vec::new();
    for outcome in &outcomes {
        match &outcome.response {
            None => unanswered.push(outcome),
            Some(response) => {
                match response.status {
                    200 => {
                        let (number, balances) = outcome
                            .op
                            .record(&response.expect(200, "a movement"), &mut book);
                        reported.insert(number, balances);
                    }
                    409 if matches!(outcome.op, Op::Transfer { .. }) => {
                        response.problem_of_type(409, "insufficient-funds", "a refused transfer");
                    }
                    status => panic!(
                        "{:?}: unexpected status {status}: {}",
                        outcome.op,
                        response.text()
                    ),
                }
                answered.push(outcome);
            }
        }
    }
    eprintln!(
        "crash test: {} operations answered before the SIGKILL, {} in flight",
        answered.len(),
        unanswered.len()
    );

    // Restart with the consumers on.
    server.restart(&[]).await;
    let api = server.api();

    // A retry of an answered operation replays its response, byte for byte.
    let replays = join_all(
        answered
            .iter()
            .map(|outcome| send_keyed(&api, outcome.op, &outcome.key)),
    )
    .await;
    for (outcome, replay) in answered.iter().zip(replays) {
        let replay = replay.unwrap_or_else(|e| panic!("replay of {:?} failed: {e}", outcome.op));
        let first = outcome.response.as_ref().expect("answered");
        assert_eq!(
            replay.status,
            first.status,
            "{:?}: replay status; body {}",
            outcome.op,
            replay.text()
        );
        assert_eq!(
            replay.text(),
            first.text(),
            "{:?}: a replay must return the first body",
            outcome.op
        );
        assert_eq!(
            replay.header("idempotent-replayed").as_deref(),
            Some("true"),
            "{:?}",
            outcome.op
        );
    }
    // A retry of an operation cut by the kill has at most one effect, whether it committed or not.
    let retries = join_all(
        unanswered
            .iter()
            .map(|outcome| send_keyed(&api, outcome.op, &outcome.key)),
    )
    .await;
    let mut committed_unanswered = 0;
    for (outcome, retry) in unanswered.iter().zip(retries) {
        let retry = retry.unwrap_or_else(|e| panic!("retry of {:?} failed: {e}", outcome.op));
        if retry.header("idempotent-replayed").as_deref() == Some("true") {
            committed_unanswered += 1;
        }
        match retry.status {
            200 => {
                let (number, balances) = outcome
                    .op
                    .record(&retry.expect(200, "a retried movement"), &mut book);
                reported.insert(number, balances);
            }
            409 if matches!(outcome.op, Op::Transfer { .. }) => {
                retry.problem_of_type(409, "insufficient-funds", "a refused retried transfer");
            }
            status => panic!(
                "retry of {:?}: unexpected status {status}: {}",
                outcome.op,
                retry.text()
            ),
        }
    }

    eprintln!(
        "crash test: {committed_unanswered} of the operations in flight had committed without \
         an answer (their retries were replays)"
    );

    // Every acknowledged operation exactly once; nothing that was not acknowledged.
    let mut histories: Vec<Item> = Vec::new();
    for &wallet in &wallets {
        let state = api.wallet(wallet).await;
        let items = api.history(wallet).await;
        book.assert_history_exactly(wallet, &items);
        assert_history_consistent(wallet, &items, state.balance);
        assert_reported_balances(wallet, &items, &reported);
        assert_eq!(
            state.balance,
            book.balance(wallet),
            "wallet {wallet}: balance"
        );
        histories.extend(items);
    }

    // What the statistics must say, from the ledger's own history.
    let tally_of = |kind: &str| {
        let items: Vec<&Item> = histories.iter().filter(|i| i.kind == kind).collect();
        Tally {
            count: items.len() as i64,
            total: items.iter().map(|i| i.amount.abs()).sum(),
        }
    };
    let deposits = tally_of("deposit");
    let transfers = tally_of("transfer_out");
    assert_eq!(
        transfers,
        tally_of("transfer_in"),
        "both sides of each transfer are in the histories"
    );
    let expected = Stats {
        events_applied: CLIENTS as i64 + deposits.count + transfers.count,
        clients_created: CLIENTS as i64,
        clients_removed: 0,
        deposits,
        withdrawals: Tally::default(),
        transfers,
    };
    let ledger = api.ledger_balanced().await;
    assert_eq!(
        ledger.wallets_total, deposits.total,
        "walletsTotal is what was deposited"
    );
    assert_eq!(
        ledger.transfer_count,
        deposits.count + transfers.count,
        "ledger transferCount"
    );

    let stats = settled_statistics(&api, expected.events_applied).await;
    assert_eq!(
        stats, expected,
        "statistics must count each event exactly once"
    );

    // Another restart must not apply anything again.
    server.restart(&[]).await;
    let api = server.api();
    let stats = settled_statistics(&api, expected.events_applied).await;
    assert_eq!(stats, expected, "statistics changed after a second restart");
    for &wallet in &wallets {
        book.assert_history_exactly(wallet, &api.history(wallet).await);
    }
}
