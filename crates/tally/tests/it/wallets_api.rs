//! Document 001 end to end: a client with a wallet in one operation, deposits, transfers,
//! withdrawals, refused overdrafts, paged history, a second wallet, holds, and the ledger that
//! always sums to zero.

use std::collections::HashSet;

use crate::support::{
    assert_history_consistent, assert_uuid, money, money_str, Api, Backend, Book, Obj, TestServer,
    Wallet,
};

on_both_backends!(document_001_flow: document_001_flow_sqlite, document_001_flow_postgres);
on_both_backends!(holds_flow: holds_flow_sqlite, holds_flow_postgres);
on_both_backends!(clients_flow: clients_flow_sqlite, clients_flow_postgres);

/// An identifier as text, whether the server writes it as a JSON string or a number.
fn id_text(obj: &Obj, key: &str) -> String {
    let raw = obj.raw(key);
    if raw.starts_with('"') {
        obj.str(key)
    } else {
        obj.i64(key).to_string()
    }
}

async fn document_001_flow(backend: Backend) {
    let server = TestServer::start(backend).await;
    let api = server.api();
    let mut book = Book::default();
    // Successful money movements so far: each is one transfer in the double-entry ledger.
    let mut movements = 0;

    // A client and its wallet in one operation.
    let login = format!("alice-{}", uuid::Uuid::new_v4().simple());
    let body = format!(r#"{{"name":"Alice Martin","login":"{login}"}}"#);
    let created = api
        .post("/clients", &body)
        .await
        .expect(201, "POST /clients");
    assert_eq!(created.str("login"), login);
    assert_eq!(created.str("name"), "Alice Martin");
    assert_eq!(created.str("currency"), "USD", "the default currency");
    let alice = created.i64("id");
    let a1 = created.i64("walletId");
    let bob = api.create_client("Bob").await;
    assert_ne!(bob.id, alice, "two clients got one id");
    assert_ne!(bob.wallet_id, a1, "two clients got one wallet");

    let taken = format!(r#"{{"name":"Another Alice","login":"{login}"}}"#);
    api.post("/clients", &taken)
        .await
        .problem(409, "POST /clients with a taken login");

    let empty = Wallet {
        wallet_id: a1,
        client_id: alice,
        currency: "USD".to_owned(),
        balance: 0,
        held: 0,
        available: 0,
    };
    assert_eq!(api.wallet(a1).await, empty, "a new wallet is empty");

    // Deposits: a JSON number and a decimal string, both read exactly, answered with 2 decimals.
    let done = api
        .resupply(a1, "500.5")
        .await
        .expect(200, "deposit 500.5 as a JSON number");
    assert_eq!(done.i64("walletId"), a1);
    assert_eq!(done.raw("amount"), "500.50");
    assert_eq!(done.raw("walletBalance"), "500.50");
    assert_eq!(done.str("currency"), "USD");
    assert_uuid(&done.str("transactionNumber"), "resupply transactionNumber");
    book.deposit(a1, 50050, &done.str("transactionNumber"));
    movements += 1;

    let done = api
        .resupply(a1, "\"499.50\"")
        .await
        .expect(200, "deposit \"499.50\" as a string");
    assert_eq!(done.raw("amount"), "499.50");
    assert_eq!(done.raw("walletBalance"), "1000.00");
    book.deposit(a1, 49950, &done.str("transactionNumber"));
    movements += 1;

    // A transfer returns the transaction number and both balances after it.
    let done = api
        .transfer(a1, bob.wallet_id, &money_str(25025))
        .await
        .expect(200, "transfer 250.25");
    assert_eq!(done.i64("walletFromId"), a1);
    assert_eq!(done.i64("walletToId"), bob.wallet_id);
    assert_eq!(done.minor("amount"), 25025);
    assert_eq!(done.minor("walletFromBalance"), 74975);
    assert_eq!(done.minor("walletToBalance"), 25025);
    assert_eq!(done.str("currency"), "USD");
    assert_uuid(&done.str("transactionNumber"), "transfer transactionNumber");
    book.transfer(a1, bob.wallet_id, 25025, &done.str("transactionNumber"));
    movements += 1;

    let done = api
        .withdraw(bob.wallet_id, "50")
        .await
        .expect(200, "withdraw 50");
    assert_eq!(done.i64("walletId"), bob.wallet_id);
    assert_eq!(done.raw("amount"), "50.00");
    assert_eq!(done.raw("walletBalance"), "200.25");
    assert_uuid(
        &done.str("transactionNumber"),
        "withdrawal transactionNumber",
    );
    book.withdrawal(bob.wallet_id, 5000, &done.str("transactionNumber"));
    movements += 1;

    // One cent too much is refused and changes nothing.
    let before = api.snapshot(&[a1, bob.wallet_id]).await;
    api.transfer(bob.wallet_id, a1, &money(20026))
        .await
        .problem_of_type(409, "insufficient-funds", "transfer of 200.26 from 200.25");
    api.withdraw(bob.wallet_id, &money(20026))
        .await
        .problem_of_type(
            409,
            "insufficient-funds",
            "withdrawal of 200.26 from 200.25",
        );
    assert_eq!(
        api.snapshot(&[a1, bob.wallet_id]).await,
        before,
        "a refused operation changed state"
    );

    // The whole balance can go: a balance may reach zero, just not below.
    let done = api
        .withdraw(bob.wallet_id, "200.25")
        .await
        .expect(200, "withdraw the whole balance");
    assert_eq!(done.raw("walletBalance"), "0.00");
    book.withdrawal(bob.wallet_id, 20025, &done.str("transactionNumber"));
    movements += 1;
    api.withdraw(bob.wallet_id, "0.01").await.problem_of_type(
        409,
        "insufficient-funds",
        "withdrawal from an empty wallet",
    );

    // The client with its wallet.
    let client = api
        .get(&format!("/clients/{alice}"))
        .await
        .expect(200, "GET /clients/{id}");
    assert_eq!(client.i64("id"), alice);
    assert_eq!(client.str("login"), login);
    assert_eq!(client.str("name"), "Alice Martin");
    assert_eq!(client.str("status"), "active");
    let wallets: Vec<Wallet> = client
        .list("wallets")
        .iter()
        .map(Wallet::from_obj)
        .collect();
    assert_eq!(
        wallets,
        vec![api.wallet(a1).await],
        "GET /clients/{{id}} wallets"
    );

    // A second wallet for the same client.
    let second = api
        .post(&format!("/clients/{alice}/wallets"), "{}")
        .await
        .expect(201, "POST /clients/{id}/wallets");
    let second = Wallet::from_obj(&second);
    let a2 = second.wallet_id;
    assert_eq!(second.client_id, alice);
    assert_eq!(second.currency, "USD");
    assert_eq!((second.balance, second.held, second.available), (0, 0, 0));
    assert!(
        a2 != a1 && a2 != bob.wallet_id,
        "the second wallet reuses an id: {a2}"
    );
    let client = api
        .get(&format!("/clients/{alice}"))
        .await
        .expect(200, "GET /clients/{id}");
    let ids: HashSet<i64> = client
        .list("wallets")
        .iter()
        .map(|w| w.i64("walletId"))
        .collect();
    assert_eq!(
        ids,
        HashSet::from([a1, a2]),
        "the client lists both wallets"
    );

    let done = api
        .transfer(a1, a2, "100")
        .await
        .expect(200, "transfer between a client's own wallets");
    assert_eq!(done.minor("walletFromBalance"), 64975);
    assert_eq!(done.minor("walletToBalance"), 10000);
    book.transfer(a1, a2, 10000, &done.str("transactionNumber"));
    movements += 1;

    // Enough items for several pages.
    for cents in 1..=7 {
        let number = api.deposit(a1, cents * 101).await;
        book.deposit(a1, cents * 101, &number);
        movements += 1;
    }
    let a1_balance = api.wallet(a1).await.balance;
    assert_eq!(a1_balance, book.balance(a1), "wallet {a1} balance");
    assert_eq!(a1_balance, 64975 + 28 * 101);

    // History: newest first, every page within its limit, the same items whatever the page size.
    for limit in [1, 3, 5, 50, 500] {
        let items = api.history_paged(a1, limit).await;
        book.assert_history_in_order(a1, &items);
        assert_history_consistent(a1, &items, a1_balance);
    }
    let first_page = api
        .get(&format!("/wallets/{a1}/history?limit=3"))
        .await
        .expect(200, "history page");
    assert_eq!(first_page.list("items").len(), 3, "a full first page");
    assert!(
        first_page.opt_str("nextCursor").is_some(),
        "11 items in pages of 3 need a nextCursor"
    );
    let default_page = api
        .get(&format!("/wallets/{a1}/history"))
        .await
        .expect(200, "history without a limit");
    assert_eq!(
        default_page.list("items").len(),
        11,
        "the default limit (50) holds all 11 items"
    );
    assert!(
        default_page.is_null("nextCursor"),
        "the only page has no nextCursor"
    );
    for wallet in [bob.wallet_id, a2] {
        let items = api.history_paged(wallet, 2).await;
        book.assert_history_in_order(wallet, &items);
        assert_history_consistent(wallet, &items, book.balance(wallet));
        assert_eq!(
            api.wallet(wallet).await.balance,
            book.balance(wallet),
            "wallet {wallet} balance"
        );
    }

    // The ledger: every wallet's money came from the external account.
    let ledger = api.ledger_balanced().await;
    let total = book.balance(a1) + book.balance(a2) + book.balance(bob.wallet_id);
    assert_eq!(
        ledger.wallets_total, total,
        "walletsTotal is the sum of all balances"
    );
    assert_eq!(ledger.external_total, -total);
    assert_eq!(
        ledger.transfer_count, movements,
        "one ledger transfer per successful movement"
    );

    api.get("/wallets/999999999")
        .await
        .problem(404, "GET an unknown wallet");
    api.get("/clients/999999999")
        .await
        .problem(404, "GET an unknown client");
    api.get("/wallets/999999999/history")
        .await
        .problem(404, "history of an unknown wallet");
}

async fn place_hold(api: &Api, wallet: i64, minor: i64) -> Obj {
    let body = format!(r#"{{"amount":{}}}"#, money(minor));
    api.post(&format!("/wallets/{wallet}/holds"), &body)
        .await
        .expect(201, "POST /wallets/{id}/holds")
}

async fn holds_flow(backend: Backend) {
    let server = TestServer::start(backend).await;
    let api = server.api();
    let payer = api.create_client("Payer").await;
    let payee = api.create_client("Payee").await;
    let (from, to) = (payer.wallet_id, payee.wallet_id);
    api.deposit(from, 100_000).await;

    // A hold keeps the balance and lowers what is available.
    let hold = place_hold(&api, from, 30_000).await;
    let hold_id = id_text(&hold, "holdId");
    assert_eq!(hold.i64("walletId"), from);
    assert_eq!(hold.minor("amount"), 30_000);
    assert_eq!(hold.str("status"), "placed");
    assert_eq!(hold.minor("walletBalance"), 100_000);
    assert_eq!(hold.minor("availableBalance"), 70_000);
    assert_eq!(hold.str("currency"), "USD");
    let wallet = api.wallet(from).await;
    assert_eq!(
        (wallet.balance, wallet.held, wallet.available),
        (100_000, 30_000, 70_000)
    );
    let got = api
        .get(&format!("/holds/{hold_id}"))
        .await
        .expect(200, "GET /holds/{id}");
    assert_eq!(id_text(&got, "holdId"), hold_id);
    assert_eq!(got.str("status"), "placed");
    assert_eq!(got.minor("amount"), 30_000);

    // Held money cannot be spent twice: the available balance cannot go negative.
    let before = api.snapshot(&[from, to]).await;
    api.withdraw(from, &money(70_001)).await.problem_of_type(
        409,
        "insufficient-funds",
        "withdrawal past the available balance",
    );
    api.transfer(from, to, &money(70_001))
        .await
        .problem_of_type(
            409,
            "insufficient-funds",
            "transfer past the available balance",
        );
    let body = format!(r#"{{"amount":{}}}"#, money(70_001));
    api.post(&format!("/wallets/{from}/holds"), &body)
        .await
        .problem_of_type(
            409,
            "insufficient-funds",
            "a hold past the available balance",
        );
    assert_eq!(
        api.snapshot(&[from, to]).await,
        before,
        "refused operations changed state"
    );
    assert_eq!(
        api.wallet(from).await.held,
        30_000,
        "a refused hold was kept"
    );

    // Capturing the hold into another wallet moves the held money there.
    api.post(
        &format!("/holds/{hold_id}/capture"),
        &format!(r#"{{"walletToId":{to}}}"#),
    )
    .await
    .expect(200, "POST /holds/{id}/capture");
    let payer_wallet = api.wallet(from).await;
    assert_eq!(
        (
            payer_wallet.balance,
            payer_wallet.held,
            payer_wallet.available
        ),
        (70_000, 0, 70_000)
    );
    let payee_wallet = api.wallet(to).await;
    assert_eq!(
        (
            payee_wallet.balance,
            payee_wallet.held,
            payee_wallet.available
        ),
        (30_000, 0, 30_000)
    );
    let got = api
        .get(&format!("/holds/{hold_id}"))
        .await
        .expect(200, "GET a captured hold");
    assert_eq!(got.str("status"), "captured");

    let payer_items = api.history(from).await;
    assert_history_consistent(from, &payer_items, 70_000);
    let capture = payer_items
        .iter()
        .find(|i| i.amount != 0 && i.kind != "deposit");
    let capture = capture.unwrap_or_else(|| panic!("no capture item in {payer_items:#?}"));
    assert_eq!(capture.amount, -30_000, "the capture item: {capture:?}");
    // The contract names this kind; checked last, so a mismatch hides none of the other checks.
    let capture_kind = capture.kind.clone();
    let payee_items = api.history(to).await;
    assert_history_consistent(to, &payee_items, 30_000);
    let received: Vec<_> = payee_items.iter().filter(|i| i.amount != 0).collect();
    assert_eq!(
        received.len(),
        1,
        "the payee received once: {payee_items:#?}"
    );
    assert_eq!(received[0].amount, 30_000);
    assert_eq!(
        received[0].transaction_number, capture.transaction_number,
        "both sides of the capture share its number"
    );

    // A released hold gives the money back to the available balance and moves nothing.
    let second = place_hold(&api, from, 5_000).await;
    let second_id = id_text(&second, "holdId");
    assert_ne!(second_id, hold_id);
    assert_eq!(second.minor("availableBalance"), 65_000);
    api.post(&format!("/holds/{second_id}/release"), "{}")
        .await
        .expect(200, "POST /holds/{id}/release");
    let payer_wallet = api.wallet(from).await;
    assert_eq!(
        (
            payer_wallet.balance,
            payer_wallet.held,
            payer_wallet.available
        ),
        (70_000, 0, 70_000)
    );
    let got = api
        .get(&format!("/holds/{second_id}"))
        .await
        .expect(200, "GET a released hold");
    assert_eq!(got.str("status"), "released");
    let items = api.history(from).await;
    assert_history_consistent(from, &items, 70_000);
    let moving: Vec<_> = items.iter().filter(|i| i.amount != 0).collect();
    assert_eq!(
        moving.len(),
        2,
        "a released hold moves no money: {items:#?}"
    );

    let ledger = api.ledger_balanced().await;
    assert_eq!(
        ledger.wallets_total, 100_000,
        "the capture moved money between wallets only"
    );
    // An unknown hold, spelled like the known ones (a number or a UUID).
    let unknown = if hold_id.parse::<i64>().is_ok() {
        "999999999".to_owned()
    } else {
        uuid::Uuid::new_v4().to_string()
    };
    api.get(&format!("/holds/{unknown}"))
        .await
        .problem(404, "GET an unknown hold");
    api.post(&format!("/holds/{unknown}/release"), "{}")
        .await
        .problem(404, "release an unknown hold");
    assert_eq!(
        capture_kind, "hold_capture_out",
        "history kind of a captured hold"
    );
}

async fn clients_flow(backend: Backend) {
    let server = TestServer::start(backend).await;
    let api = server.api();
    for path in ["/health/live", "/health/ready"] {
        let health = api.send(server.client().get(server.url(path))).await;
        assert_eq!(health.expect(200, path).str("status"), "ok", "GET {path}");
    }
    let rich = api.create_client("Rich").await;
    let empty = api.create_client("Empty").await;
    api.deposit(rich.wallet_id, 100).await;

    // A client whose wallet has money cannot be removed.
    api.delete(&format!("/clients/{}", rich.id))
        .await
        .problem(409, "DELETE a client with money");
    let client = api
        .get(&format!("/clients/{}", rich.id))
        .await
        .expect(200, "GET /clients/{id}");
    assert_eq!(client.str("status"), "active");

    let removed = api
        .delete(&format!("/clients/{}", empty.id))
        .await
        .expect(200, "DELETE /clients/{id}");
    assert_eq!(removed.i64("id"), empty.id);
    assert_eq!(removed.str("status"), "removed");
    let client = api
        .get(&format!("/clients/{}", empty.id))
        .await
        .expect(200, "GET a removed client");
    assert_eq!(client.str("status"), "removed");
    assert_eq!(client.str("login"), empty.login);
    assert_eq!(client.str("name"), empty.name);

    api.delete("/clients/999999999")
        .await
        .problem(404, "DELETE an unknown client");
    assert_eq!(api.wallet(rich.wallet_id).await.balance, 100);
}
