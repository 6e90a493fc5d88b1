//! Document 003's Payment service: every message type on `payment`, answered on
//! `payment-response`, and nothing a message holds ever failing the consumer.

use serde_json::json;
use tally_bus::consumer::Applied;
use tally_bus::HandlerError;
use tally_db::both_backends;
use tally_db::testing::TestBackend;

use crate::{app, request};

async fn a_user_is_added_funded_drained_and_removed(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let added = app.pay(json!({"id": "m-1", "type": "ADD_USER"})).await;
    let user_id = added["user_id"].as_i64().unwrap();
    let wallet_id = added["wallet_id"].as_i64().unwrap();
    assert_eq!(
        added,
        json!({"request_id": added["request_id"], "id": "m-1", "type": "ADD_USER", "status": "OK",
               "message": format!("user {user_id} added with wallet {wallet_id} in USD"),
               "user_id": user_id, "wallet_id": wallet_id, "currency": "USD"})
    );
    // The client is created as over HTTP, with the request's id in its default login.
    let created = app.outbox("client.created").await;
    assert_eq!(
        created,
        vec![
            json!({"client_id": user_id, "login": format!("trader-{}", added["request_id"].as_str().unwrap()),
                    "name": "Trading user", "wallet_id": wallet_id, "currency": "USD"})
        ]
    );

    let deposited = app
        .pay(json!({"id": 2, "type": "DEPOSIT", "user_id": user_id, "amount": "110.50"}))
        .await;
    assert_eq!(deposited["status"], "OK", "{deposited}");
    assert_eq!(
        (
            &deposited["id"],
            &deposited["amount"],
            &deposited["wallet_id"],
            &deposited["currency"]
        ),
        (
            &json!(2),
            &json!("110.50"),
            &json!(wallet_id),
            &json!("USD")
        )
    );
    let funds = app.outbox("funds.deposited").await;
    assert_eq!(funds.len(), 1);
    assert_eq!(funds[0]["amount_minor"], 11_050);
    assert_eq!(
        funds[0]["transaction_number"],
        deposited["transaction_number"]
    );

    let withdrawn = app
        .pay(json!({"id": 3, "type": "WITHDRAW", "user_id": user_id, "amount": 10}))
        .await;
    assert_eq!(
        (&withdrawn["status"], &withdrawn["amount"]),
        (&json!("OK"), &json!("100.50")),
        "{withdrawn}"
    );
    assert!(withdrawn["transaction_number"].is_string());
    assert_eq!(
        withdrawn["message"],
        format!("withdrew 10.00 USD from wallet {wallet_id}; balance 100.50 USD")
    );

    let info = app
        .pay(json!({"id": "m-4", "type": "USER_INFO", "user_id": user_id}))
        .await;
    assert_eq!(
        info,
        json!({"request_id": info["request_id"], "id": "m-4", "type": "USER_INFO", "status": "OK",
               "message": format!("wallet {wallet_id} holds 100.50 USD, 100.50 USD available"),
               "user_id": user_id, "wallet_id": wallet_id, "currency": "USD",
               "amount": "100.50", "available": "100.50"})
    );

    // Money left: the user stays.
    let refused = app
        .pay(json!({"id": 5, "type": "REMOVE_USER", "user_id": user_id}))
        .await;
    assert_eq!(
        refused,
        json!({"request_id": refused["request_id"], "id": 5, "type": "REMOVE_USER",
               "status": "ERROR", "user_id": user_id,
               "message": format!("client {user_id} still has money or holds in a wallet")})
    );
    assert!(app.outbox("client.removed").await.is_empty());

    app.pay(json!({"id": 6, "type": "WITHDRAW", "user_id": user_id, "amount": "100.5"}))
        .await;
    let removed = app
        .pay(json!({"id": 7, "type": "REMOVE_USER", "user_id": user_id}))
        .await;
    assert_eq!(
        (&removed["status"], &removed["message"], &removed["user_id"]),
        (
            &json!("OK"),
            &json!(format!("user {user_id} removed")),
            &json!(user_id)
        )
    );
    assert_eq!(
        app.outbox("client.removed").await,
        vec![json!({"client_id": user_id})]
    );

    // A removed user can do nothing more, not even be removed again.
    for message in [
        json!({"id": 8, "type": "REMOVE_USER", "user_id": user_id}),
        json!({"id": 9, "type": "DEPOSIT", "user_id": user_id, "amount": "1"}),
        json!({"id": 10, "type": "USER_INFO", "user_id": user_id}),
    ] {
        let reply = app.pay(message).await;
        assert_eq!(
            (&reply["status"], &reply["message"]),
            (
                &json!("ERROR"),
                &json!(format!("client {user_id} was removed"))
            ),
            "{reply}"
        );
    }
    assert_eq!(app.outbox("client.removed").await.len(), 1);
    assert_eq!(app.wallet(wallet_id).await.balance_minor, 0);
    app.assert_ledger_balanced().await;
}
both_backends!(a_user_is_added_funded_drained_and_removed);

async fn add_user_takes_the_given_login_name_and_currency_once(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let added = app
        .pay(json!({"id": 1, "type": "ADD_USER", "login": "ann", "name": "Ann", "currency": "EUR"}))
        .await;
    assert_eq!(
        (&added["status"], &added["currency"]),
        (&json!("OK"), &json!("EUR")),
        "{added}"
    );
    let user_id = added["user_id"].as_i64().unwrap();
    let created = app.outbox("client.created").await;
    assert_eq!(
        (&created[0]["login"], &created[0]["name"]),
        (&json!("ann"), &json!("Ann"))
    );

    // The same login again: refused, and the refused insert leaves the transaction usable for
    // the reply (on PostgreSQL a failed statement would otherwise abort it).
    let taken = app
        .pay(json!({"id": 2, "type": "ADD_USER", "login": "ann"}))
        .await;
    assert_eq!(
        taken,
        json!({"request_id": taken["request_id"], "id": 2, "type": "ADD_USER",
               "status": "ERROR", "message": "login is already taken"})
    );
    let bad = app
        .pay(json!({"id": 3, "type": "ADD_USER", "currency": "XYZ", "name": ""}))
        .await;
    assert_eq!(
        (&bad["status"], &bad["message"]),
        (
            &json!("ERROR"),
            &json!("name must not be blank; currency is not an ISO 4217 currency code with minor units")
        )
    );
    assert_eq!(app.outbox("client.created").await.len(), 1);

    // Amounts are read in the wallet's currency.
    let deposited = app
        .pay(json!({"id": 4, "type": "DEPOSIT", "user_id": user_id, "amount": "0.5"}))
        .await;
    assert_eq!(
        (&deposited["amount"], &deposited["currency"]),
        (&json!("0.50"), &json!("EUR"))
    );
    app.assert_ledger_balanced().await;
}
both_backends!(add_user_takes_the_given_login_name_and_currency_once);

async fn withdrawing_more_than_the_balance_changes_nothing(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (user_id, wallet_id) = app.user_with("20.00").await;
    let transfers = app.transfer_count().await;
    let reply = app
        .pay(json!({"id": "w", "type": "WITHDRAW", "user_id": user_id, "amount": "20.01"}))
        .await;
    assert_eq!(
        reply,
        json!({"request_id": reply["request_id"], "id": "w", "type": "WITHDRAW",
               "status": "ERROR", "user_id": user_id,
               "message": format!("insufficient funds: wallet {wallet_id} has 20.00 USD available; 20.01 USD requested")})
    );
    assert_eq!(app.wallet(wallet_id).await.balance_minor, 2_000);
    assert_eq!(app.transfer_count().await, transfers);
    assert!(app.outbox("funds.withdrawn").await.is_empty());
    app.assert_ledger_balanced().await;
}
both_backends!(withdrawing_more_than_the_balance_changes_nothing);

async fn bad_messages_get_error_replies_and_change_nothing(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (user_id, wallet_id) = app.user_with("5").await;
    let transfers = app.transfer_count().await;
    let cases = [
        (
            json!({"id": 1, "type": "DEPOSIT", "user_id": user_id, "amount": "1.005"}),
            "amount: has more decimals than USD allows (2)",
        ),
        (
            json!({"id": 2, "type": "DEPOSIT", "user_id": user_id, "amount": "0"}),
            "amount: must be greater than zero",
        ),
        (
            json!({"id": 3, "type": "WITHDRAW", "user_id": user_id, "amount": "-1"}),
            "amount: must be greater than zero",
        ),
        (
            json!({"id": 4, "type": "DEPOSIT", "user_id": user_id, "amount": "ten"}),
            "amount must be a decimal number such as 12.34",
        ),
        (
            json!({"id": 5, "type": "DEPOSIT", "user_id": user_id, "amount": 1.5}),
            "amount must be a decimal string such as \"10.50\"",
        ),
        (
            json!({"id": 6, "type": "DEPOSIT", "user_id": user_id}),
            "amount is required",
        ),
        (
            json!({"id": 7, "type": "USER_INFO", "user_id": "twelve"}),
            "user_id must be a positive integer",
        ),
        (
            json!({"id": 8, "type": "SELL", "user_id": user_id}),
            "type \"SELL\" is not one of ADD_USER, REMOVE_USER, DEPOSIT, WITHDRAW, USER_INFO",
        ),
        (json!({"id": 9, "user_id": user_id}), "type is required"),
        (
            json!({"id": [1], "type": "USER_INFO", "user_id": user_id}),
            "id must be a string or a number",
        ),
        (json!("DEPOSIT"), "the message must be a JSON object"),
        (
            json!({"id": 10, "type": "USER_INFO", "user_id": 999_999}),
            "client 999999 does not exist",
        ),
    ];
    for (message, expected) in cases {
        let reply = app.pay(message.clone()).await;
        assert_eq!(
            (&reply["status"], &reply["message"]),
            (&json!("ERROR"), &json!(expected)),
            "{message} got {reply}"
        );
        // The caller's id and type come back as they were sent.
        assert_eq!(reply["id"], message.get("id").cloned().unwrap_or_default());
        assert_eq!(
            reply["type"],
            message.get("type").cloned().unwrap_or_default()
        );
    }

    // An unknown user is named in the reply: the caller knows whose request failed.
    let unknown = app
        .pay(json!({"id": "u", "type": "USER_INFO", "user_id": 999_999}))
        .await;
    assert_eq!(
        unknown,
        json!({"request_id": unknown["request_id"], "id": "u", "type": "USER_INFO",
               "status": "ERROR", "user_id": 999_999, "message": "client 999999 does not exist"})
    );
    let unknown_type = app
        .pay(json!({"id": "t", "type": "BUY", "user_id": user_id}))
        .await;
    assert_eq!(unknown_type["user_id"], user_id);

    assert_eq!(app.wallet(wallet_id).await.balance_minor, 500);
    assert_eq!(app.transfer_count().await, transfers);
    app.assert_ledger_balanced().await;
}
both_backends!(bad_messages_get_error_replies_and_change_nothing);

async fn a_redelivered_deposit_is_applied_and_answered_once(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (user_id, wallet_id) = app.user_with("1").await;
    let deposit = request(
        tally_wallets::PAYMENT,
        json!({"id": "once", "type": "DEPOSIT", "user_id": user_id, "amount": "2.50"}),
    );
    assert_eq!(app.deliver(&app.channel, &deposit).await, Applied::Applied);
    assert_eq!(
        app.deliver(&app.channel, &deposit).await,
        Applied::Duplicate
    );
    assert_eq!(app.wallet(wallet_id).await.balance_minor, 350);
    let reply = app.reply_to(&deposit).await;
    assert_eq!(
        (&reply["status"], &reply["amount"]),
        (&json!("OK"), &json!("3.50"))
    );
    assert_eq!(app.outbox("funds.deposited").await.len(), 2);

    // The reply is the request's: its aggregate, caused by it, in its correlation.
    let envelope = app
        .envelopes(tally_wallets::PAYMENT_RESPONSE)
        .await
        .into_iter()
        .find(|e| e.aggregate_id == deposit.id.to_string())
        .unwrap();
    assert_eq!(
        (
            envelope.aggregate_type.as_str(),
            envelope.causation_id.as_str(),
            envelope.correlation_id.as_str(),
            envelope.source.as_str(),
            envelope.version
        ),
        (
            "request",
            deposit.id.to_string().as_str(),
            "corr-1",
            "wallets",
            1
        )
    );
    app.assert_ledger_balanced().await;
}
both_backends!(a_redelivered_deposit_is_applied_and_answered_once);

async fn an_unknown_version_goes_to_the_dead_letters(backend: TestBackend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let mut event = request(tally_wallets::PAYMENT, json!({"id": 1, "type": "ADD_USER"}));
    event.version = 2;
    let failed = app.try_deliver(&app.channel, &event).await;
    assert!(
        matches!(failed, Err(HandlerError::Permanent(_))),
        "{failed:?}"
    );
    assert!(app.outbox("client.created").await.is_empty());
    assert!(app.outbox(tally_wallets::PAYMENT_RESPONSE).await.is_empty());
}
both_backends!(an_unknown_version_goes_to_the_dead_letters);
