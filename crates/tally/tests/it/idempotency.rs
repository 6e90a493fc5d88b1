//! The Idempotency-Key header: a retry gets the first response back byte for byte, the same key
//! with another body is refused, 50 concurrent requests with one key have one effect, business
//! errors are replayed like successes, and concurrent keys that overdraw one wallet (on SQLite,
//! refused and accepted requests sharing commits) each keep their own answer.

use futures_util::future::join_all;

use crate::support::{money, Api, Backend, Book, Resp, TestServer};

on_both_backends!(replays_return_the_first_response: replays_sqlite, replays_postgres);
on_both_backends!(concurrent_requests_with_one_key: concurrent_one_key_sqlite, concurrent_one_key_postgres);
on_both_backends!(business_errors_are_replayed: business_errors_sqlite, business_errors_postgres);
on_both_backends!(racing_overdrafts_keep_their_own_answers: racing_overdrafts_sqlite, racing_overdrafts_postgres);

fn new_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn assert_first(response: &Resp, what: &str) {
    assert_ne!(
        response.header("idempotent-replayed").as_deref(),
        Some("true"),
        "{what}: a first request is not a replay"
    );
}

/// Sends the same request again and asserts it replays `first`: same status, same body bytes.
async fn assert_replays(api: &Api, path: &str, key: &str, body: &str, first: &Resp, what: &str) {
    let replay = api.post_keyed(path, key, body).await;
    assert_eq!(
        replay.status,
        first.status,
        "{what}: replay status; body {}",
        replay.text()
    );
    assert_eq!(
        replay.body, first.body,
        "{what}: the replay must return the first body byte for byte"
    );
    assert_eq!(
        replay.header("idempotent-replayed").as_deref(),
        Some("true"),
        "{what}: a replay carries Idempotent-Replayed: true"
    );
}

async fn replays_return_the_first_response(backend: Backend) {
    let server = TestServer::start(backend).await;
    let api = server.api();
    let mut book = Book::default();

    // Creating a client.
    let key = new_key();
    let login = format!("idem-{}", uuid::Uuid::new_v4().simple());
    let body = format!(r#"{{"name":"Idem","login":"{login}"}}"#);
    let first = api.post_keyed("/clients", &key, &body).await;
    let created = first.expect(201, "POST /clients with a key");
    assert_first(&first, "POST /clients");
    assert_replays(&api, "/clients", &key, &body, &first, "POST /clients").await;
    let (client, wallet) = (created.i64("id"), created.i64("walletId"));
    let other = api.create_client("Other").await.wallet_id;
    let again = format!(r#"{{"name":"Idem","login":"{login}"}}"#);
    api.post_keyed("/clients", &new_key(), &again)
        .await
        .problem(409, "the replay created nothing: the login is taken once");
    let listed = api
        .get(&format!("/clients/{client}"))
        .await
        .expect(200, "GET the client");
    assert_eq!(
        listed.list("wallets").len(),
        1,
        "a replay must not add a wallet"
    );

    // A deposit, replayed three times, moves money once.
    let key = new_key();
    let body = format!(r#"{{"walletId":{wallet},"amount":{}}}"#, money(10_000));
    let first = api.post_keyed("/resupplies", &key, &body).await;
    let done = first.expect(200, "POST /resupplies with a key");
    assert_first(&first, "POST /resupplies");
    book.deposit(wallet, 10_000, &done.str("transactionNumber"));
    for _ in 0..3 {
        assert_replays(&api, "/resupplies", &key, &body, &first, "POST /resupplies").await;
    }
    assert_eq!(
        api.wallet(wallet).await.balance,
        10_000,
        "a replayed deposit moved money again"
    );

    // A transfer and a withdrawal.
    let transfer_key = new_key();
    let transfer = format!(r#"{{"walletFromId":{wallet},"walletToId":{other},"amount":"25.00"}}"#);
    let first_transfer = api.post_keyed("/transfers", &transfer_key, &transfer).await;
    let done = first_transfer.expect(200, "POST /transfers with a key");
    book.transfer(wallet, other, 2500, &done.str("transactionNumber"));
    assert_replays(
        &api,
        "/transfers",
        &transfer_key,
        &transfer,
        &first_transfer,
        "POST /transfers",
    )
    .await;
    let withdrawal_key = new_key();
    let withdrawal = format!(r#"{{"walletId":{wallet},"amount":10}}"#);
    let first_withdrawal = api
        .post_keyed("/withdrawals", &withdrawal_key, &withdrawal)
        .await;
    let done = first_withdrawal.expect(200, "POST /withdrawals with a key");
    book.withdrawal(wallet, 1000, &done.str("transactionNumber"));
    assert_replays(
        &api,
        "/withdrawals",
        &withdrawal_key,
        &withdrawal,
        &first_withdrawal,
        "POST /withdrawals",
    )
    .await;

    for w in [wallet, other] {
        book.assert_history_in_order(w, &api.history(w).await);
        assert_eq!(api.wallet(w).await.balance, book.balance(w), "wallet {w}");
    }

    // The same key with another body is refused and changes nothing.
    let before = api.snapshot(&[wallet, other]).await;
    let changed = format!(r#"{{"walletId":{wallet},"amount":{}}}"#, money(20_000));
    api.post_keyed("/resupplies", &key, &changed)
        .await
        .problem_of_type(422, "idempotency-key-reuse", "same key, another amount");
    let changed = format!(r#"{{"walletFromId":{wallet},"walletToId":{other},"amount":"25.01"}}"#);
    api.post_keyed("/transfers", &transfer_key, &changed)
        .await
        .problem_of_type(422, "idempotency-key-reuse", "same key, another transfer");
    assert_eq!(
        api.snapshot(&[wallet, other]).await,
        before,
        "a refused key reuse changed state"
    );
    // ... and the key still replays its first response.
    assert_replays(
        &api,
        "/resupplies",
        &key,
        &body,
        &first,
        "replay after a refused reuse",
    )
    .await;

    // Validation errors are not stored: the key is still free for a valid request.
    let key = new_key();
    let invalid = format!(r#"{{"walletId":{wallet},"amount":0}}"#);
    api.post_keyed("/resupplies", &key, &invalid)
        .await
        .problem_naming(422, "amount", "amount 0 with a key");
    let valid = format!(r#"{{"walletId":{wallet},"amount":"1.00"}}"#);
    let first = api.post_keyed("/resupplies", &key, &valid).await;
    first.expect(200, "a valid request with the key of an invalid one");
    assert_first(&first, "the key of a validation error");
    assert_replays(
        &api,
        "/resupplies",
        &key,
        &valid,
        &first,
        "after a validation error",
    )
    .await;
    assert_eq!(api.wallet(wallet).await.balance, book.balance(wallet) + 100);
    api.ledger_balanced().await;
}

async fn concurrent_requests_with_one_key(backend: Backend) {
    let server = TestServer::start(backend).await;
    let api = server.api();
    let from = api.create_client("From").await.wallet_id;
    let to = api.create_client("To").await.wallet_id;
    api.deposit(from, 100_000).await;

    let key = new_key();
    let body = format!(r#"{{"walletFromId":{from},"walletToId":{to},"amount":10.00}}"#);
    let responses = join_all((0..50).map(|_| api.post_keyed("/transfers", &key, &body))).await;

    let first = &responses[0];
    let done = first.expect(200, "a transfer with a shared key");
    for response in &responses {
        assert_eq!(
            response.status,
            200,
            "every request with the key gets the transfer: {}",
            response.text()
        );
        assert_eq!(
            response.body, first.body,
            "all 50 responses must have the same body"
        );
    }
    let originals = responses
        .iter()
        .filter(|r| r.header("idempotent-replayed").as_deref() != Some("true"))
        .count();
    assert_eq!(
        originals, 1,
        "exactly one of the 50 is the original, the others are replays"
    );

    assert_eq!(
        api.wallet(from).await.balance,
        99_000,
        "the money moved more than once"
    );
    assert_eq!(
        api.wallet(to).await.balance,
        1000,
        "the money moved more than once"
    );
    let number = done.str("transactionNumber");
    for wallet in [from, to] {
        let items = api.history(wallet).await;
        let transfers: Vec<_> = items.iter().filter(|i| i.kind != "deposit").collect();
        assert_eq!(
            transfers.len(),
            1,
            "wallet {wallet}: one transfer in the history: {items:#?}"
        );
        assert_eq!(transfers[0].transaction_number, number);
    }
    let ledger = api.ledger_balanced().await;
    assert_eq!(
        ledger.transfer_count, 2,
        "one deposit and one transfer in the ledger"
    );
}

async fn business_errors_are_replayed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let api = server.api();
    let wallet = api.create_client("Poor").await.wallet_id;
    let other = api.create_client("Rich").await.wallet_id;
    api.deposit(wallet, 500).await;

    let key = new_key();
    let body = format!(r#"{{"walletId":{wallet},"amount":"10.00"}}"#);
    let first = api.post_keyed("/withdrawals", &key, &body).await;
    first.problem_of_type(409, "insufficient-funds", "withdrawing 10.00 from 5.00");
    assert_first(&first, "the refused withdrawal");
    assert_replays(
        &api,
        "/withdrawals",
        &key,
        &body,
        &first,
        "a refused withdrawal",
    )
    .await;

    let transfer_key = new_key();
    let transfer = format!(r#"{{"walletFromId":{wallet},"walletToId":{other},"amount":"10.00"}}"#);
    let first_transfer = api.post_keyed("/transfers", &transfer_key, &transfer).await;
    first_transfer.problem_of_type(409, "insufficient-funds", "transferring 10.00 from 5.00");

    // Now the money is there, but the keys keep their first answer.
    api.deposit(wallet, 10_000).await;
    assert_replays(
        &api,
        "/withdrawals",
        &key,
        &body,
        &first,
        "a refused withdrawal, once funded",
    )
    .await;
    assert_replays(
        &api,
        "/transfers",
        &transfer_key,
        &transfer,
        &first_transfer,
        "a refused transfer, once funded",
    )
    .await;
    assert_eq!(
        api.wallet(wallet).await.balance,
        10_500,
        "a replayed refusal moved money"
    );
    assert_eq!(api.wallet(other).await.balance, 0);
    let items = api.history(wallet).await;
    assert!(
        items.iter().all(|i| i.kind == "deposit"),
        "only the two deposits: {items:#?}"
    );
    assert_eq!(items.len(), 2);
}

/// 40 transfers of 10.00 at once from a wallet holding 100.00, each with its own key: on SQLite
/// they share commits (group commit), refused ones rolled back beside accepted ones. Exactly ten
/// move money, the thirty others are refused and their refusals stored, and every key replays
/// its own first answer.
async fn racing_overdrafts_keep_their_own_answers(backend: Backend) {
    let server = TestServer::start(backend).await;
    let api = server.api();
    let from = api.create_client("Drawn").await.wallet_id;
    let to = api.create_client("Paid").await.wallet_id;
    api.deposit(from, 10_000).await;

    let body = format!(r#"{{"walletFromId":{from},"walletToId":{to},"amount":"10.00"}}"#);
    let keys: Vec<String> = (0..40).map(|_| new_key()).collect();
    let firsts = join_all(
        keys.iter()
            .map(|key| api.post_keyed("/transfers", key, &body)),
    )
    .await;

    let accepted = firsts.iter().filter(|r| r.status == 200).count();
    for first in firsts.iter().filter(|r| r.status != 200) {
        first.problem_of_type(409, "insufficient-funds", "a transfer past the balance");
    }
    assert_eq!(
        accepted, 10,
        "100.00 pays for exactly ten transfers of 10.00"
    );
    for (key, first) in keys.iter().zip(&firsts) {
        assert_first(first, "a racing transfer");
        assert_replays(&api, "/transfers", key, &body, first, "a racing transfer").await;
    }
    assert_eq!(api.wallet(from).await.balance, 0);
    assert_eq!(api.wallet(to).await.balance, 10_000);
    let numbers: std::collections::BTreeSet<_> = firsts
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| {
            r.expect(200, "an accepted transfer")
                .str("transactionNumber")
        })
        .collect();
    assert_eq!(numbers.len(), 10, "ten distinct transfers");
    let history = api.history(to).await;
    assert_eq!(history.len(), 10, "ten transfers arrived: {history:#?}");
    let ledger = api.ledger_balanced().await;
    assert_eq!(ledger.transfer_count, 11, "one deposit and ten transfers");
}
