//! API tokens and limits, as a client sees them: 401 without a valid token, 403 without the
//! scope, 2xx with it, 401 once revoked; per-token write rates and idempotency keys; no token
//! in the logs.

use reqwest::header::AUTHORIZATION;

use crate::support::{create_token, http_client, tally, Api, Backend, Resp, TestServer};

async fn send(
    api: &Api,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> Resp {
    let client = http_client(None);
    let mut request = match method {
        "GET" => client.get(api.url(path)),
        _ => client
            .post(api.url(path))
            .header("content-type", "application/json")
            .body(body.unwrap_or("{}").to_owned()),
    };
    if let Some(token) = token {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    api.send(request).await
}

async fn tokens_and_scopes(backend: Backend) {
    let server = TestServer::start_with(backend, &["--token-cache-ms", "0"]).await;
    let api = server.api();
    let client = api.create_client("Scoped").await;
    let wallet = client.wallet_id;
    let (read_id, wallets_read) = create_token(&server, "wallets:read");
    let (_, wallets_write) = create_token(&server, "wallets:write");
    let (_, reporting_read) = create_token(&server, "reporting:read");
    let deposit = format!(r#"{{"walletId":{wallet},"amount":"1.00"}}"#);
    let wallet_path = format!("/wallets/{wallet}");

    let token = |scopes: &str| create_token(&server, scopes).1;
    let (patients_read, patients_write) = (token("patients:read"), token("patients:write"));
    let (care_read, care_write) = (token("care:read"), token("care:write"));
    let (billing_read, claims_read) = (token("billing:read"), token("claims:read"));
    let (claims_write, notifications_read) = (token("claims:write"), token("notifications:read"));
    let trading_read = token("trading:read");
    let patient = r#"{"fullName":"Scope Test","dateOfBirth":"1970-01-01"}"#;
    let physician = r#"{"name":"Dr. Scope","tariff":{"blockMinutes":15,"feePerBlock":"10.00","currency":"USD"}}"#;
    let claim = r#"[{"service_date":"3/28/18 0:00","submitted_procedure":"D0180","plan_group_number":"G","subscriber_number":"1","provider_npi":"1234567893","provider_fees":"$10.00","allowed_fees":"$5.00","member_coinsurance":"$0.00","member_copay":"$0.00"}]"#;

    // (method, path, body, a token with the right scope, a token without it): every group.
    let groups: Vec<(&str, &str, Option<&str>, &str, &str)> = vec![
        (
            "POST",
            "/patients",
            Some(patient),
            &patients_write,
            &patients_read,
        ),
        ("GET", "/patients", None, &patients_read, &care_write),
        (
            "POST",
            "/physicians",
            Some(physician),
            &care_write,
            &care_read,
        ),
        ("GET", "/physicians", None, &care_read, &patients_write),
        ("GET", "/appointments", None, &care_read, &billing_read),
        (
            "GET",
            "/consultation/v1/consultation",
            None,
            &care_read,
            &patients_read,
        ),
        (
            "GET",
            "/bills?patientId=nobody",
            None,
            &billing_read,
            &care_read,
        ),
        (
            "GET",
            "/billing/payables",
            None,
            &billing_read,
            &claims_write,
        ),
        ("POST", "/claims", Some(claim), &claims_write, &claims_read),
        ("GET", "/providers/top", None, &claims_read, &billing_read),
        (
            "GET",
            "/notifications",
            None,
            &notifications_read,
            &patients_read,
        ),
        ("GET", &wallet_path, None, &wallets_read, &reporting_read),
        (
            "GET",
            "/trading/v1/users/1/holdings",
            None,
            &trading_read,
            &wallets_read,
        ),
        (
            "POST",
            "/resupplies",
            Some(&deposit),
            &wallets_write,
            &wallets_read,
        ),
        (
            "GET",
            "/reporting/v1/statistics",
            None,
            &reporting_read,
            &wallets_write,
        ),
        (
            "GET",
            "/ledger/summary",
            None,
            &wallets_write,
            &reporting_read,
        ),
    ];
    for (method, path, body, allowed, denied) in groups {
        let what = format!("{method} {path}");
        let none = send(&api, method, path, body, None).await;
        none.problem(401, &format!("{what} without a token"));
        let challenge = none.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer"),
            "{what}: WWW-Authenticate is {challenge:?}"
        );
        send(&api, method, path, body, Some("tally_not_a_token"))
            .await
            .problem(401, &format!("{what} with garbage"));
        let forged = format!("{}{}", &allowed[..allowed.len() - 4], "0000");
        send(&api, method, path, body, Some(&forged))
            .await
            .problem(401, &format!("{what} with a forged secret"));
        let refused = send(&api, method, path, body, Some(denied)).await;
        let problem = refused.problem(403, &format!("{what} with the wrong scope"));
        assert!(
            problem.str("type").ends_with("forbidden"),
            "{what}: {}",
            refused.text()
        );
        let ok = send(&api, method, path, body, Some(allowed)).await;
        assert!(
            (200..300).contains(&ok.status),
            "{what} with the right scope: {} {}",
            ok.status,
            ok.text()
        );
    }
    assert_eq!(
        api.wallet(wallet).await.balance,
        100,
        "only the allowed deposit happened"
    );

    // Health, documentation and metrics need no token.
    for path in [
        "/health/live",
        "/health/ready",
        "/openapi.json",
        "/docs/",
        "/metrics",
    ] {
        let open = send(&api, "GET", path, None, None).await;
        assert_eq!(open.status, 200, "{path} without a token: {}", open.text());
    }

    // A revoked token is refused.
    tally(&server, &["token", "revoke", &read_id]);
    send(&api, "GET", &wallet_path, None, Some(&wallets_read))
        .await
        .problem(401, "a revoked token");
    let listed = tally(&server, &["token", "list"]);
    assert!(
        listed.contains(&read_id) && listed.contains("revoked_at"),
        "{listed}"
    );

    // No token, nor any part of its secret, reaches the logs or the listing.
    let log = server.log_tail();
    for token in [
        server.admin_token(),
        &wallets_read,
        &wallets_write,
        &reporting_read,
    ] {
        let secret = token.rsplit('_').next().expect("a secret");
        assert!(!log.contains(secret), "a token secret is in the server log");
        assert!(
            !listed.contains(secret),
            "a token secret is in `tally token list`"
        );
    }
}
on_both_backends!(tokens_and_scopes: tokens_and_scopes_sqlite, tokens_and_scopes_postgres);

async fn protected_metrics(backend: Backend) {
    let server = TestServer::start_with(backend, &["--protect-metrics"]).await;
    let api = server.api();
    send(&api, "GET", "/metrics", None, None)
        .await
        .problem(401, "/metrics without a token");
    let (_, wallets) = create_token(&server, "wallets:write");
    send(&api, "GET", "/metrics", None, Some(&wallets))
        .await
        .problem(403, "/metrics without metrics:read");
    let (_, metrics) = create_token(&server, "metrics:read");
    let scraped = send(&api, "GET", "/metrics", None, Some(&metrics)).await;
    assert_eq!(scraped.status, 200, "{}", scraped.text());
    assert_eq!(
        send(&api, "GET", "/health/live", None, None).await.status,
        200
    );
}
on_both_backends!(protected_metrics: protected_metrics_sqlite, protected_metrics_postgres);

async fn write_rate_and_keys_are_per_token(backend: Backend) {
    let server = TestServer::start_with(
        backend,
        &["--write-rate-per-minute", "6", "--write-burst", "3"],
    )
    .await;
    let api = server.api();
    let wallet = api.create_client("Limited").await.wallet_id;
    let (_, other) = create_token(&server, "wallets:write");
    let body = format!(r#"{{"walletId":{wallet},"amount":"1.00"}}"#);

    // The same key from two tokens is two requests: keys are scoped per token.
    let keyed = |token: Option<&str>| {
        let mut request = api
            .post_request("/resupplies", &body)
            .header("Idempotency-Key", "shared-key");
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        request
    };
    let first = api
        .send(keyed(None))
        .await
        .expect(200, "admin's keyed deposit");
    let second = api
        .send(keyed(Some(&other)))
        .await
        .expect(200, "the other token's keyed deposit");
    assert_ne!(
        first.str("transactionNumber"),
        second.str("transactionNumber")
    );
    assert_eq!(api.wallet(wallet).await.balance, 200);

    // The admin token has written twice (client, deposit): one more fits the burst of 3.
    api.resupply(wallet, "1")
        .await
        .expect(200, "the third write");
    let limited = api.resupply(wallet, "1").await;
    let problem = limited.problem(429, "the fourth write within the burst");
    assert!(problem.str("type").ends_with("too-many-requests"));
    let retry_after: u64 = limited
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=10).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(
        api.wallet(wallet).await.balance,
        300,
        "the refused write changed nothing"
    );
    // Reads are not limited, and other tokens have their own bucket.
    api.get(&format!("/wallets/{wallet}"))
        .await
        .expect(200, "a read after the limit");
    send(&api, "POST", "/resupplies", Some(&body), Some(&other))
        .await
        .expect(200, "another token's write");
}
on_both_backends!(write_rate_and_keys_are_per_token: write_rate_sqlite, write_rate_postgres);
