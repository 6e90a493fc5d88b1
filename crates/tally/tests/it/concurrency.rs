//! Hundreds of transfers, withdrawals and deposits at once between ten wallets: no money is made
//! or lost, no balance goes negative, overdrafts are refused, and every acknowledged operation is
//! in the history of each wallet it touched exactly once.

use std::collections::HashMap;

use futures_util::future::join_all;

use crate::support::{
    assert_history_consistent, assert_reported_balances, Api, Backend, Book, Op, Rng, TestServer,
};

on_both_backends!(
    concurrent_movements_conserve_money: concurrent_movements_conserve_money_sqlite,
    concurrent_movements_conserve_money_postgres
);

const WALLETS: usize = 10;
const OPENING_MINOR: i64 = 10_000;
const RANDOM_OPERATIONS: usize = 260;
/// More than all the money there is: these can only be refused.
const IMPOSSIBLE_MINOR: i64 = 100_000_000;

fn operations(wallets: &[i64]) -> Vec<Op> {
    let mut rng = Rng::new(0x7a11_0c0c);
    let pick_wallet = |rng: &mut Rng| wallets[rng.below(wallets.len() as u64) as usize];
    let mut ops = Vec::with_capacity(RANDOM_OPERATIONS + 2);
    for _ in 0..RANDOM_OPERATIONS {
        let amount = 100 + rng.below(4000) as i64;
        let wallet = pick_wallet(&mut rng);
        let op = match rng.below(100) {
            0..=74 => {
                let mut to = pick_wallet(&mut rng);
                while to == wallet {
                    to = pick_wallet(&mut rng);
                }
                Op::Transfer {
                    from: wallet,
                    to,
                    amount,
                }
            }
            75..=91 => Op::Withdrawal {
                wallet,
                amount: amount * 2,
            },
            _ => Op::Deposit { wallet, amount },
        };
        ops.push(op);
    }
    // Withdrawals ask for more than all deposits bring, so some must be refused in any order.
    let asked: i64 = ops
        .iter()
        .map(|op| {
            if let Op::Withdrawal { amount, .. } = op {
                *amount
            } else {
                0
            }
        })
        .sum();
    let brought: i64 = ops
        .iter()
        .map(|op| {
            if let Op::Deposit { amount, .. } = op {
                *amount
            } else {
                0
            }
        })
        .sum();
    assert!(
        asked > brought + OPENING_MINOR * wallets.len() as i64,
        "the generated load cannot overdraw"
    );
    ops.push(Op::Withdrawal {
        wallet: wallets[0],
        amount: IMPOSSIBLE_MINOR,
    });
    ops.push(Op::Transfer {
        from: wallets[1],
        to: wallets[2],
        amount: IMPOSSIBLE_MINOR,
    });
    ops
}

async fn concurrent_movements_conserve_money(backend: Backend) {
    let server = TestServer::start(backend).await;
    let api = server.api();
    let mut book = Book::default();
    let mut wallets = Vec::new();
    for i in 0..WALLETS {
        let wallet = api.create_client(&format!("Concurrent{i}")).await.wallet_id;
        let number = api.deposit(wallet, OPENING_MINOR).await;
        book.deposit(wallet, OPENING_MINOR, &number);
        wallets.push(wallet);
    }

    // Everything at once.
    let ops = operations(&wallets);
    let debits = ops
        .iter()
        .filter(|op| !matches!(op, Op::Deposit { .. }))
        .count();
    assert!(
        debits >= 200,
        "only {debits} concurrent transfers and withdrawals"
    );
    let responses = join_all(ops.iter().map(|op| {
        let api: Api = api.clone();
        let request = op.request(&api);
        async move { api.send(request).await }
    }))
    .await;

    let mut reported = HashMap::new();
    let (mut applied, mut refused) = (0, 0);
    let (mut deposited, mut withdrawn) = (OPENING_MINOR * WALLETS as i64, 0);
    for (op, response) in ops.iter().zip(&responses) {
        match response.status {
            200 => {
                let (number, balances) = op.record(&response.expect(200, "a movement"), &mut book);
                reported.insert(number, balances);
                match *op {
                    Op::Deposit { amount, .. } => deposited += amount,
                    Op::Withdrawal { amount, .. } => {
                        withdrawn += amount;
                        applied += 1;
                    }
                    Op::Transfer { .. } => applied += 1,
                }
            }
            409 => {
                assert!(
                    !matches!(op, Op::Deposit { .. }),
                    "a deposit was refused: {}",
                    response.text()
                );
                response.problem_of_type(409, "insufficient-funds", &format!("{op:?}"));
                refused += 1;
            }
            status => panic!("{op:?}: unexpected status {status}: {}", response.text()),
        }
    }
    for (op, response) in ops.iter().zip(&responses).rev().take(2) {
        assert_eq!(
            response.status,
            409,
            "{op:?} moves more money than exists: {}",
            response.text()
        );
    }
    assert!(applied >= 1, "no transfer or withdrawal succeeded");
    assert!(
        refused >= 3,
        "only {refused} refusals: the load did not exercise insufficient funds"
    );

    // Each wallet: its history is exactly its acknowledged operations, consistent, never negative.
    let mut balances_total = 0;
    for &wallet in &wallets {
        let state = api.wallet(wallet).await;
        let items = api.history(wallet).await;
        book.assert_history_exactly(wallet, &items);
        assert_history_consistent(wallet, &items, state.balance);
        assert_reported_balances(wallet, &items, &reported);
        assert_eq!(
            state.balance,
            book.balance(wallet),
            "wallet {wallet}: balance != what its operations add up to"
        );
        assert_eq!(
            (state.held, state.available),
            (0, state.balance),
            "wallet {wallet}: no holds were placed"
        );
        balances_total += state.balance;
    }
    assert_eq!(
        balances_total,
        deposited - withdrawn,
        "sum of balances != deposits - withdrawals"
    );

    let ledger = api.ledger_balanced().await;
    assert_eq!(ledger.wallets_total, deposited - withdrawn, "walletsTotal");
    let movements = reported.len() + WALLETS;
    assert_eq!(
        ledger.transfer_count, movements as i64,
        "one ledger transfer per acknowledged movement"
    );
}
