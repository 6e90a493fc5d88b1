//! Bad input gets a 4xx `application/problem+json` that names the field, never a 5xx, and never
//! changes a balance, a history or the ledger.

use crate::support::{Api, Backend, Resp, TestServer};

on_both_backends!(bad_input_is_refused_and_changes_nothing: bad_input_sqlite, bad_input_postgres);

/// One bad request and the problem it must get.
struct Case {
    what: String,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    field: Option<&'static str>,
}

fn json(what: &str, path: &str, body: &str, status: u16, field: Option<&'static str>) -> Case {
    Case {
        what: what.to_owned(),
        path: path.to_owned(),
        content_type: Some("application/json"),
        body: body.as_bytes().to_vec(),
        status,
        field,
    }
}

/// Amounts no movement may take, as JSON text: all 422 naming `amount`.
const BAD_AMOUNTS: [&str; 22] = [
    "0",
    "0.00",
    "\"0\"",
    "-5",
    "\"-5.00\"",
    "-0.01",
    "\"92233720368547758.08\"",
    "92233720368547758.08",
    "1e30",
    "\"1e30\"",
    "500.555",
    "\"500.555\"",
    "\"\"",
    "\"abc\"",
    "\"1,5\"",
    "\"NaN\"",
    "\" 5\"",
    "true",
    "null",
    "[]",
    "{}",
    "\"5 USD\"",
];

fn cases(a: i64, b: i64, login: &str) -> Vec<Case> {
    let unknown = 999_999_999;
    let mut cases = Vec::new();
    for path in ["/resupplies", "/withdrawals"] {
        let p = |what: &str| format!("{path}: {what}");
        cases.push(json(
            &p("malformed JSON"),
            path,
            &format!(r#"{{"walletId":{a},"amount":"#),
            400,
            None,
        ));
        cases.push(json(&p("not JSON"), path, "walletId=1&amount=5", 400, None));
        cases.push(json(
            &p("trailing garbage"),
            path,
            &format!(r#"{{"walletId":{a},"amount":5}}x"#),
            400,
            None,
        ));
        let body = r#"{"walletId":"abc","amount":5}"#.to_owned();
        cases.push(json(
            &p("walletId a string"),
            path,
            &body,
            422,
            Some("walletId"),
        ));
        let body = format!(r#"{{"walletId":{a}.5,"amount":5}}"#);
        cases.push(json(
            &p("walletId a fraction"),
            path,
            &body,
            422,
            Some("walletId"),
        ));
        cases.push(json(
            &p("walletId missing"),
            path,
            r#"{"amount":5}"#,
            422,
            Some("walletId"),
        ));
        cases.push(json(
            &p("amount missing"),
            path,
            &format!(r#"{{"walletId":{a}}}"#),
            422,
            Some("amount"),
        ));
        for amount in BAD_AMOUNTS {
            let body = format!(r#"{{"walletId":{a},"amount":{amount}}}"#);
            cases.push(json(
                &p(&format!("amount {amount}")),
                path,
                &body,
                422,
                Some("amount"),
            ));
        }
        let body = format!(r#"{{"walletId":{unknown},"amount":5}}"#);
        cases.push(json(&p("unknown wallet"), path, &body, 404, None));
        let body = format!(r#"{{"walletId":{a},"amount":5,"currency":"EUR"}}"#);
        cases.push(json(&p("currency mismatch"), path, &body, 422, None));
        cases.push(Case {
            what: p("text/plain"),
            path: path.to_owned(),
            content_type: Some("text/plain"),
            body: format!(r#"{{"walletId":{a},"amount":5}}"#).into_bytes(),
            status: 415,
            field: None,
        });
        let mut bytes = format!(r#"{{"walletId":{a},"amount":"5"#).into_bytes();
        bytes.extend_from_slice(&[0xff, 0xfe, b'"', b'}']);
        cases.push(Case {
            body: bytes,
            ..json(&p("invalid UTF-8"), path, "", 400, None)
        });
    }

    let path = "/transfers";
    let p = |what: &str| format!("{path}: {what}");
    let transfer = |from: &str, to: &str, amount: &str| {
        format!(r#"{{"walletFromId":{from},"walletToId":{to},"amount":{amount}}}"#)
    };
    let (a_text, b_text) = (a.to_string(), b.to_string());
    cases.push(json(
        &p("malformed JSON"),
        path,
        &format!(r#"{{"walletFromId":{a},"#),
        400,
        None,
    ));
    cases.push(json(
        &p("to self"),
        path,
        &transfer(&a_text, &a_text, "5"),
        422,
        Some("walletToId"),
    ));
    cases.push(json(
        &p("walletToId a string"),
        path,
        &transfer(&a_text, "\"b\"", "5"),
        422,
        Some("walletToId"),
    ));
    cases.push(json(
        &p("walletFromId a bool"),
        path,
        &transfer("true", &b_text, "5"),
        422,
        Some("walletFromId"),
    ));
    let body = format!(r#"{{"walletFromId":{a},"amount":5}}"#);
    cases.push(json(
        &p("walletToId missing"),
        path,
        &body,
        422,
        Some("walletToId"),
    ));
    let body = format!(r#"{{"walletToId":{b},"amount":5}}"#);
    cases.push(json(
        &p("walletFromId missing"),
        path,
        &body,
        422,
        Some("walletFromId"),
    ));
    for amount in BAD_AMOUNTS {
        cases.push(json(
            &p(&format!("amount {amount}")),
            path,
            &transfer(&a_text, &b_text, amount),
            422,
            Some("amount"),
        ));
    }
    let unknown_text = unknown.to_string();
    cases.push(json(
        &p("unknown to"),
        path,
        &transfer(&a_text, &unknown_text, "5"),
        404,
        None,
    ));
    cases.push(json(
        &p("unknown from"),
        path,
        &transfer(&unknown_text, &b_text, "5"),
        404,
        None,
    ));
    let body = format!(r#"{{"walletFromId":{a},"walletToId":{b},"amount":5,"currency":"EUR"}}"#);
    cases.push(json(&p("currency mismatch"), path, &body, 422, None));
    cases.push(Case {
        content_type: Some("application/x-www-form-urlencoded"),
        status: 415,
        ..json(
            &p("a form"),
            path,
            &transfer(&a_text, &b_text, "5"),
            0,
            None,
        )
    });

    let holds = format!("/wallets/{a}/holds");
    for amount in ["0", "-1", "500.555", "\"92233720368547758.08\"", "\"abc\""] {
        let what = format!("{holds}: amount {amount}");
        cases.push(json(
            &what,
            &holds,
            &format!(r#"{{"amount":{amount}}}"#),
            422,
            Some("amount"),
        ));
    }
    cases.push(json(
        "a hold without an amount",
        &holds,
        "{}",
        422,
        Some("amount"),
    ));
    cases.push(json(
        "a hold on an unknown wallet",
        &format!("/wallets/{unknown}/holds"),
        r#"{"amount":5}"#,
        404,
        None,
    ));

    // Creating clients: the refused login must stay free.
    let path = "/clients";
    cases.push(json(
        "/clients: malformed JSON",
        path,
        &format!(r#"{{"name":"X","login":"{login}""#),
        400,
        None,
    ));
    cases.push(json(
        "/clients: login missing",
        path,
        r#"{"name":"X"}"#,
        422,
        Some("login"),
    ));
    cases.push(json(
        "/clients: name missing",
        path,
        &format!(r#"{{"login":"{login}"}}"#),
        422,
        Some("name"),
    ));
    let body = format!(r#"{{"name":5,"login":"{login}"}}"#);
    cases.push(json(
        "/clients: name a number",
        path,
        &body,
        422,
        Some("name"),
    ));
    let body = format!(r#"{{"name":"X","login":["{login}"]}}"#);
    cases.push(json(
        "/clients: login an array",
        path,
        &body,
        422,
        Some("login"),
    ));
    let mut bytes = format!(r#"{{"login":"{login}","name":"Bad "#).into_bytes();
    bytes.extend_from_slice(&[0xc3, 0x28, b'"', b'}']);
    cases.push(Case {
        body: bytes,
        ..json("/clients: invalid UTF-8", path, "", 400, None)
    });
    cases.push(Case {
        content_type: Some("text/plain"),
        status: 415,
        ..json(
            "/clients: text/plain",
            path,
            &format!(r#"{{"name":"X","login":"{login}"}}"#),
            0,
            None,
        )
    });
    let body = format!(r#"{{"name":"X","login":"{login}","currency":"XXX"}}"#);
    cases.push(json(
        "/clients: a currency that is not one",
        path,
        &body,
        422,
        Some("currency"),
    ));
    cases
}

/// A body of 1 MiB: valid JSON, far over the limit.
fn oversized(prefix: &str) -> Vec<u8> {
    let mut body = prefix.as_bytes().to_vec();
    body.extend(std::iter::repeat_n(b'x', 1024 * 1024));
    body.extend_from_slice(b"\"}");
    body
}

/// Sends an oversized body; the server may close the connection while the body is still being
/// written, so a transport error is retried a few times before it counts as a failure.
async fn send_oversized(api: &Api, path: &str, body: Vec<u8>) -> Resp {
    // The server answers 413 with `Connection: close`, so the pooled (authenticated) client
    // never reuses the connection it refused.
    let client = api.client();
    let mut last_error = None;
    for _ in 0..3 {
        let request = client
            .post(api.url(path))
            .header("content-type", "application/json")
            .body(body.clone());
        match Api::try_send(request).await {
            Ok(response) => return response,
            Err(e) => last_error = Some(e),
        }
    }
    panic!("{path}: no response to a 1 MiB body: {last_error:?}");
}

async fn bad_input_is_refused_and_changes_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let api = server.api();
    let a = api.create_client("Alpha").await.wallet_id;
    let b = api.create_client("Beta").await.wallet_id;
    api.deposit(a, 10_000).await;
    api.transfer(a, b, "25").await.expect(200, "a transfer");
    let login = format!("refused-{}", uuid::Uuid::new_v4().simple());
    let before = api.snapshot(&[a, b]).await;

    let cases = cases(a, b, &login);
    let mut failures = Vec::new();
    for case in &cases {
        let response = api
            .post_bytes(&case.path, case.content_type, case.body.clone())
            .await;
        // Collect every mismatch first, so one run reports them all.
        let checked = std::panic::catch_unwind(|| match case.field {
            Some(field) => drop(response.problem_naming(case.status, field, &case.what)),
            None => drop(response.problem(case.status, &case.what)),
        });
        if checked.is_err() {
            failures.push(format!(
                "{} -> {} {}",
                case.what,
                response.status,
                response.text()
            ));
        }
    }

    let big = send_oversized(
        &api,
        "/resupplies",
        oversized(&format!(r#"{{"walletId":{a},"amount":5,"pad":""#)),
    )
    .await;
    if std::panic::catch_unwind(|| drop(big.problem(413, "a 1 MiB deposit"))).is_err() {
        failures.push(format!(
            "/resupplies: 1 MiB body -> {} {}",
            big.status,
            big.text()
        ));
    }
    let big = send_oversized(
        &api,
        "/clients",
        oversized(&format!(r#"{{"login":"{login}","name":""#)),
    )
    .await;
    if std::panic::catch_unwind(|| drop(big.problem(413, "a 1 MiB client"))).is_err() {
        failures.push(format!(
            "/clients: 1 MiB body -> {} {}",
            big.status,
            big.text()
        ));
    }

    // Malformed paths and queries are bad input too: a 4xx problem, never a 5xx.
    for path in [
        "/wallets/abc".to_owned(),
        format!("/wallets/{a}/history?limit=abc"),
        format!("/wallets/{a}/history?limit=-1"),
        format!("/wallets/{a}/history?before=%00not-a-cursor"),
        "/clients/abc".to_owned(),
    ] {
        let response = api.get(&path).await;
        let problem = (400..500).contains(&response.status)
            && response
                .header("content-type")
                .is_some_and(|c| c.starts_with("application/problem+json"));
        if !problem {
            failures.push(format!(
                "GET {path} -> {} {}",
                response.status,
                response.text()
            ));
        }
    }

    assert!(
        failures.is_empty(),
        "{} of {} bad requests got the wrong answer:\n{}",
        failures.len(),
        cases.len() + 7,
        failures.join("\n")
    );
    assert_eq!(
        api.snapshot(&[a, b]).await,
        before,
        "bad input changed balances, histories or the ledger"
    );
    // No refused request created the client.
    let body = format!(r#"{{"name":"Late","login":"{login}"}}"#);
    api.post("/clients", &body)
        .await
        .expect(201, "the login of refused requests is still free");
}

on_both_backends!(
    a_refused_oversized_body_leaves_the_connection_usable: oversized_then_next_request_sqlite,
    oversized_then_next_request_postgres
);

/// A client that keeps connections alive (as every HTTP client does by default) must be able to
/// send its next request after a 413: a server that will close the connection says so
/// (`Connection: close`) instead of dropping it under a pooled client.
async fn a_refused_oversized_body_leaves_the_connection_usable(backend: Backend) {
    let server = TestServer::start(backend).await;
    let api = server.api();
    let wallet = api.create_client("Pooled").await.wallet_id;
    let body = oversized(&format!(r#"{{"walletId":{wallet},"amount":5,"pad":""#));
    let mut failures = Vec::new();
    let mut refused_with_413 = 0;
    for round in 0..20 {
        api.wallet(wallet).await;
        let request = api.post_request("/resupplies", "").body(body.clone());
        // The server answers 413 before reading the body and closes the connection; a client
        // still writing the body may see the connection end before it reads the answer, as
        // HTTP allows. What must hold is that the answer, when read, is the 413, and that the
        // client's next request works.
        if let Ok(response) = Api::try_send(request).await {
            drop(response.problem(413, "a 1 MiB deposit"));
            refused_with_413 += 1;
        }
        if let Err(e) =
            Api::try_send(api.client().get(api.url(&format!("/wallets/{wallet}")))).await
        {
            failures.push(format!(
                "round {round}: the request after the 413 failed: {e:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        refused_with_413 > 0,
        "no 1 MiB request was answered with its 413"
    );
    assert_eq!(api.wallet(wallet).await.balance, 0);
}
