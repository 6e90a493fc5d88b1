//! The trading WebSocket (document 003) as a client sees it: payment and trade messages with
//! their replies, orders that can neither overdraw a wallet nor oversell a holding however many
//! arrive at once, idempotent message ids, and the connection's security and limits.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use reqwest::header::AUTHORIZATION;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as Frame};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::{create_token, eventually, tally, Backend, TestServer};

/// How long a reply may take before the test fails.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

struct Ws {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

fn ws_url(server: &TestServer, path: &str) -> String {
    server.url(path).replacen("http://", "ws://", 1)
}

/// Opens the trading WebSocket with `token` in the `Authorization` header.
async fn try_connect(server: &TestServer, token: Option<&str>) -> Result<Ws, WsError> {
    let mut request = ws_url(server, "/ws").into_client_request()?;
    if let Some(token) = token {
        request.headers_mut().insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).expect("a header value"),
        );
    }
    let (stream, _) = tokio_tungstenite::connect_async(request).await?;
    Ok(Ws { stream })
}

async fn connect(server: &TestServer, token: &str) -> Ws {
    try_connect(server, Some(token))
        .await
        .expect("the WebSocket upgrade succeeds")
}

/// The HTTP status a refused upgrade was answered with.
fn refused_status(result: Result<Ws, WsError>) -> u16 {
    match result {
        Err(WsError::Http(response)) => {
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            assert_eq!(
                content_type, "application/problem+json",
                "a refused upgrade is a problem"
            );
            response.status().as_u16()
        }
        Err(other) => panic!("the upgrade failed otherwise: {other}"),
        Ok(_) => panic!("the upgrade was accepted"),
    }
}

impl Ws {
    async fn send(&mut self, message: &Value) {
        self.send_text(&message.to_string()).await;
    }

    async fn send_text(&mut self, text: &str) {
        self.stream
            .send(Frame::text(text.to_owned()))
            .await
            .expect("the message is sent");
    }

    /// The next frame: a reply as JSON, or `None` once the server closed the connection.
    async fn next(&mut self) -> Option<Result<Value, CloseCode>> {
        loop {
            let frame = tokio::time::timeout(REPLY_TIMEOUT, self.stream.next())
                .await
                .expect("a reply in time");
            match frame {
                None | Some(Err(_)) => return None,
                Some(Ok(Frame::Text(text))) => {
                    return Some(Ok(serde_json::from_str(&text).expect("replies are JSON")))
                }
                Some(Ok(Frame::Close(frame))) => {
                    return Some(Err(frame.map(|f| f.code).unwrap_or(CloseCode::Status)))
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    async fn recv(&mut self) -> Value {
        match self.next().await {
            Some(Ok(reply)) => reply,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    /// Sends one message and returns its reply (nothing else in flight).
    async fn ask(&mut self, message: Value) -> Value {
        self.send(&message).await;
        let reply = self.recv().await;
        assert_eq!(
            reply["id"], message["id"],
            "the reply echoes the id: {reply}"
        );
        reply
    }

    async fn ok(&mut self, message: Value) -> Value {
        let reply = self.ask(message.clone()).await;
        assert_eq!(reply["status"], "OK", "{message} was refused: {reply}");
        reply
    }

    async fn error(&mut self, message: Value, expected: &str) -> Value {
        let reply = self.ask(message.clone()).await;
        assert_eq!(reply["status"], "ERROR", "{message} was accepted: {reply}");
        let text = reply["message"].as_str().unwrap_or_default();
        assert!(
            text.contains(expected),
            "{message}: {text:?} lacks {expected:?}"
        );
        reply
    }

    /// Sends every message at once and returns the replies by id.
    async fn burst(&mut self, messages: &[Value]) -> HashMap<String, Value> {
        for message in messages {
            self.send(message).await;
        }
        let mut replies = HashMap::new();
        while replies.len() < messages.len() {
            let reply = self.recv().await;
            let id = reply["id"].as_str().expect("string ids").to_owned();
            assert!(replies.insert(id, reply).is_none(), "one reply per message");
        }
        replies
    }
}

async fn add_user(ws: &mut Ws, id: &str, deposit: &str) -> i64 {
    let created = ws.ok(json!({"id": id, "type": "ADD_USER"})).await;
    let user = created["user_id"]
        .as_i64()
        .expect("ADD_USER replies user_id");
    ws.ok(json!({"id": format!("{id}-deposit"), "type": "DEPOSIT", "user_id": user, "amount": deposit}))
        .await;
    user
}

async fn holdings(server: &TestServer, user: i64) -> Vec<(String, i64)> {
    let view = server
        .api()
        .get(&format!("/trading/v1/users/{user}/holdings"))
        .await
        .expect(200, "GET holdings");
    view.list("holdings")
        .iter()
        .map(|h| (h.str("symbol"), h.i64("quantity")))
        .collect()
}

async fn balance(ws: &mut Ws, user: i64) -> (String, String) {
    let info = ws
        .ok(json!({"id": uuid::Uuid::new_v4().to_string(), "type": "USER_INFO", "user_id": user}))
        .await;
    (
        info["amount"].as_str().expect("amount").to_owned(),
        info["available"].as_str().expect("available").to_owned(),
    )
}

/// Waits until the user's wallet (over REST) holds `minor`.
async fn wallet_reaches(server: &TestServer, user: i64, minor: i64, what: &str) {
    eventually(
        REPLY_TIMEOUT,
        Duration::from_millis(20),
        what,
        || async move {
            let client = server
                .api()
                .get(&format!("/clients/{user}"))
                .await
                .expect(200, "GET /clients/{id}");
            let wallet = client.list("wallets").into_iter().next().expect("a wallet");
            (wallet.minor("balance") == minor).then_some(())
        },
    )
    .await;
}

async fn trading_flow(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut ws = connect(&server, server.admin_token()).await;

    let user = add_user(&mut ws, "u1", "100.00").await;
    assert_eq!(balance(&mut ws, user).await.0, "100.00");

    // BUY: a hold for price × amount, then the trade, then the capture.
    let bought = ws
        .ok(json!({"id": "b1", "type": "BUY", "user_id": user, "symbol": "ACME", "price": "12.50", "amount": "3"}))
        .await;
    assert_eq!(bought["total"], "37.50", "{bought}");
    assert_eq!(bought["symbol"], "ACME");
    let order_id = bought["order_id"].as_str().expect("order_id").to_owned();
    assert_eq!(holdings(&server, user).await, vec![("ACME".to_owned(), 3)]);
    let settled = eventually(
        REPLY_TIMEOUT,
        Duration::from_millis(20),
        "the BUY settles",
        || {
            let server = &server;
            let order_id = order_id.clone();
            async move {
                let order = server
                    .api()
                    .get(&format!("/trading/v1/orders/{order_id}"))
                    .await
                    .expect(200, "GET order");
                (order.raw("settled") == "true").then_some(order)
            }
        },
    )
    .await;
    assert_eq!(settled.str("status"), "executed");
    assert_eq!(
        balance(&mut ws, user).await,
        ("62.50".into(), "62.50".into())
    );

    // Without an id a message is served, not deduplicated; its reply's id is null.
    ws.send(&json!({"type": "USER_INFO", "user_id": user}))
        .await;
    let anonymous = ws.recv().await;
    assert_eq!(
        (&anonymous["id"], &anonymous["status"], &anonymous["amount"]),
        (&Value::Null, &json!("OK"), &json!("62.50")),
        "{anonymous}"
    );

    // SELL what is held; not more.
    let sold = ws
        .ok(json!({"id": "s1", "type": "SELL", "user_id": user, "symbol": "acme", "price": 15, "amount": 2}))
        .await;
    assert_eq!(sold["total"], "30.00", "{sold}");
    ws.error(
        json!({"id": "s2", "type": "SELL", "user_id": user, "symbol": "ACME", "price": "15", "amount": "2"}),
        "insufficient holdings",
    )
    .await;
    ws.error(
        json!({"id": "s3", "type": "SELL", "user_id": user, "symbol": "OTHER", "price": "1", "amount": "1"}),
        "insufficient holdings",
    )
    .await;
    assert_eq!(holdings(&server, user).await, vec![("ACME".to_owned(), 1)]);
    wallet_reaches(&server, user, 9_250, "the SELL's proceeds").await;

    // A BUY beyond the wallet is refused by the hold, and changes nothing.
    ws.error(
        json!({"id": "b2", "type": "BUY", "user_id": user, "symbol": "ACME", "price": "10.00", "amount": "10"}),
        "insufficient",
    )
    .await;
    assert_eq!(
        balance(&mut ws, user).await,
        ("92.50".into(), "92.50".into())
    );
    assert_eq!(holdings(&server, user).await, vec![("ACME".to_owned(), 1)]);

    // The same id again: the first reply, no second effect. A different message: refused.
    let again = ws
        .ok(json!({"id": "b1", "type": "BUY", "user_id": user, "symbol": "ACME", "price": "12.50", "amount": "3"}))
        .await;
    assert_eq!(again, bought, "a replay gets the first reply");
    let deposit_again = ws
        .ok(json!({"id": "u1-deposit", "type": "DEPOSIT", "user_id": user, "amount": "100.00"}))
        .await;
    assert_eq!(deposit_again["status"], "OK");
    assert_eq!(balance(&mut ws, user).await.0, "92.50", "no second deposit");
    ws.error(
        json!({"id": "b1", "type": "BUY", "user_id": user, "symbol": "ACME", "price": "12.50", "amount": "4"}),
        "already used",
    )
    .await;

    // Payment refusals, and bad messages, get ERROR replies naming the problem.
    ws.error(
        json!({"id": "w1", "type": "WITHDRAW", "user_id": user, "amount": "1000"}),
        "insufficient",
    )
    .await;
    ws.error(
        json!({"id": "d1", "type": "DEPOSIT", "user_id": user, "amount": "1.005"}),
        "decimals",
    )
    .await;
    ws.error(
        json!({"id": "i1", "type": "USER_INFO", "user_id": 999_999}),
        "999999",
    )
    .await;
    ws.error(
        json!({"id": "b3", "type": "BUY", "user_id": 999_999, "symbol": "ACME", "price": "1", "amount": "1"}),
        "no user 999999",
    )
    .await;
    ws.error(
        json!({"id": "b4", "type": "BUY", "user_id": user, "symbol": "ACME", "price": "1.001", "amount": "1"}),
        "price:",
    )
    .await;
    ws.error(json!({"id": "x", "type": "TRADE"}), "type: must be one of")
        .await;
    ws.send_text("not json").await;
    let reply = ws.recv().await;
    assert_eq!(reply["status"], "ERROR");
    assert_eq!(reply["id"], Value::Null);
    ws.stream
        .send(Frame::binary(vec![1u8, 2, 3]))
        .await
        .expect("sent");
    assert!(ws.recv().await["message"]
        .as_str()
        .unwrap_or_default()
        .contains("text frames"));

    // A user with funds cannot be removed; once emptied, it can.
    ws.error(
        json!({"id": "r1", "type": "REMOVE_USER", "user_id": user}),
        "",
    )
    .await;
    ws.ok(json!({"id": "w2", "type": "WITHDRAW", "user_id": user, "amount": "92.50"}))
        .await;
    let removed = ws
        .ok(json!({"id": "r2", "type": "REMOVE_USER", "user_id": user}))
        .await;
    assert_eq!(removed["user_id"], user);
    // Trading learns of the removal from wallets' events: its orders are refused from then on.
    let deadline = std::time::Instant::now() + REPLY_TIMEOUT;
    loop {
        let reply = ws
            .ask(json!({"id": uuid::Uuid::new_v4().to_string(), "type": "BUY", "user_id": user, "symbol": "ACME", "price": "1", "amount": "1"}))
            .await;
        assert_eq!(reply["status"], "ERROR", "a removed user's BUY: {reply}");
        if reply["message"]
            .as_str()
            .unwrap_or_default()
            .contains("was removed")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "trading never learnt of the removal: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    server.api().ledger_balanced().await;
    let stats = eventually(
        REPLY_TIMEOUT,
        Duration::from_millis(50),
        "trade statistics",
        || {
            let api = server.api();
            async move {
                let view = api
                    .get("/reporting/v1/statistics")
                    .await
                    .expect(200, "statistics");
                let trades = view.list("trades");
                let buys = trades.iter().find(|t| t.str("side") == "BUY")?;
                (buys.i64("count") == 1 && buys.i64("rejected") == 1).then_some(trades)
            }
        },
    )
    .await;
    let sells = stats
        .iter()
        .find(|t| t.str("side") == "SELL")
        .expect("a SELL line");
    assert_eq!(sells.str("symbol"), "ACME");
    assert_eq!(sells.i64("count"), 1);
    assert_eq!(sells.i64("quantity"), 2);
    assert_eq!(sells.minor("volume"), 3000);
}

on_both_backends!(trading_flow: trading_flow_sqlite, trading_flow_postgres);

async fn concurrent_orders(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = server.admin_token().to_owned();
    let mut ws = connect(&server, &token).await;
    let user = add_user(&mut ws, "racer", "100.00").await;

    // 30 BUYs of 10.00 from three connections at once: the wallet pays for exactly 10.
    let mut connections = Vec::new();
    for c in 0..3 {
        let server = &server;
        let token = token.clone();
        connections.push(async move {
            let mut ws = connect(server, &token).await;
            let orders: Vec<Value> = (0..10)
                .map(|i| json!({"id": format!("buy-{c}-{i}"), "type": "BUY", "user_id": user, "symbol": "ZED", "price": "10.00", "amount": 1}))
                .collect();
            ws.burst(&orders).await
        });
    }
    let replies: Vec<Value> = futures_util::future::join_all(connections)
        .await
        .into_iter()
        .flat_map(|r| r.into_values())
        .collect();
    let bought = replies.iter().filter(|r| r["status"] == "OK").count();
    assert_eq!(bought, 10, "exactly what 100.00 pays for: {replies:?}");
    assert_eq!(holdings(&server, user).await, vec![("ZED".to_owned(), 10)]);
    wallet_reaches(&server, user, 0, "the holds are captured").await;

    // 20 SELLs of one unit at once: exactly the 10 held are sold.
    let sells: Vec<Value> = (0..20)
        .map(|i| json!({"id": format!("sell-{i}"), "type": "SELL", "user_id": user, "symbol": "ZED", "price": "11.00", "amount": 1}))
        .collect();
    let replies = ws.burst(&sells).await;
    let sold = replies.values().filter(|r| r["status"] == "OK").count();
    assert_eq!(sold, 10, "exactly the units held: {replies:?}");
    assert_eq!(holdings(&server, user).await, vec![]);
    wallet_reaches(&server, user, 11_000, "the proceeds are credited").await;
    server.api().ledger_balanced().await;
}

on_both_backends!(concurrent_orders: concurrent_orders_sqlite, concurrent_orders_postgres);

/// A SELL whose proceeds the wallets service refuses (its user was removed, the wallet closed,
/// while the SELL was on its way) is rejected, and its units go back to the holdings: no units
/// leave without their money.
async fn refused_proceeds(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let token = server.admin_token().to_owned();
    let mut ws = connect(&server, &token).await;
    let user = add_user(&mut ws, "leaving", "10.00").await;
    ws.ok(json!({"id": "lb", "type": "BUY", "user_id": user, "symbol": "ACME", "price": "5.00", "amount": 2}))
        .await;
    wallet_reaches(&server, user, 0, "the BUY's capture").await;

    // Trading does not hear of the removal before the SELL: no consumer runs.
    server
        .restart(&["--no-consumers", "--ws-reply-timeout-ms", "200"])
        .await;
    server
        .api()
        .delete(&format!("/clients/{user}"))
        .await
        .expect(200, "DELETE /clients/{id}");
    let mut ws = connect(&server, &token).await;
    let sell = json!({"id": "ls", "type": "SELL", "user_id": user, "symbol": "ACME", "price": "6.00", "amount": 2});
    ws.error(sell.clone(), "still being processed").await;
    assert_eq!(
        holdings(&server, user).await,
        vec![],
        "the units are set aside"
    );

    server.restart(&[]).await;
    let mut ws = connect(&server, &token).await;
    let deadline = std::time::Instant::now() + REPLY_TIMEOUT;
    let reply = loop {
        let reply = ws.ask(sell.clone()).await;
        let text = reply["message"].as_str().unwrap_or_default();
        if !text.contains("still being processed") {
            break reply;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the SELL is undecided"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(reply["status"], "ERROR", "{reply}");
    let reason = reply["message"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("the proceeds could not be paid:") && reason.contains("closed"),
        "{reply}"
    );
    assert_eq!(holdings(&server, user).await, vec![("ACME".to_owned(), 2)]);
    let order = server
        .api()
        .get(&format!(
            "/trading/v1/orders/{}",
            reply["order_id"].as_str().expect("order_id")
        ))
        .await
        .expect(200, "GET order");
    assert_eq!(
        (
            order.str("status"),
            order.raw("settled"),
            order.str("reason")
        ),
        ("rejected".to_owned(), "false", reason.to_owned())
    );
    let client = server
        .api()
        .get(&format!("/clients/{user}"))
        .await
        .expect(200, "GET /clients/{id}");
    let wallet = client.list("wallets").into_iter().next().expect("a wallet");
    assert_eq!(
        wallet.minor("balance"),
        0,
        "no money arrived in the closed wallet"
    );
    server.api().ledger_balanced().await;
}

on_both_backends!(refused_proceeds: refused_proceeds_sqlite, refused_proceeds_postgres);

async fn websocket_security(backend: Backend) {
    let server = TestServer::start_with(
        backend,
        &[
            "--token-cache-ms",
            "0",
            "--ws-max-message-bytes",
            "2048",
            "--ws-messages-per-second",
            "1",
            "--ws-burst",
            "3",
        ],
    )
    .await;

    // The token is checked at the upgrade.
    assert_eq!(refused_status(try_connect(&server, None).await), 401);
    assert_eq!(
        refused_status(try_connect(&server, Some("tally_nope_nope")).await),
        401
    );
    let (_, wallets_only) = create_token(&server, "wallets:read,wallets:write");
    assert_eq!(
        refused_status(try_connect(&server, Some(&wallets_only)).await),
        403
    );

    // A trading:read token connects, but each message needs its own scope.
    let (_, reader) = create_token(&server, "trading:read");
    let mut ws = connect(&server, &reader).await;
    ws.error(
        json!({"id": "1", "type": "BUY", "user_id": 1, "symbol": "ACME", "price": "1", "amount": "1"}),
        "trading:write",
    )
    .await;
    ws.error(
        json!({"id": "2", "type": "USER_INFO", "user_id": 1}),
        "wallets:read",
    )
    .await;

    // Browsers offer the token as a subprotocol.
    let (trader_id, trader) = create_token(
        &server,
        "trading:read,trading:write,wallets:read,wallets:write",
    );
    let mut request = ws_url(&server, "/ws")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&format!("tally.v1, bearer.{trader}")).expect("header"),
    );
    let (stream, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the subprotocol token is accepted");
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("tally.v1")
    );
    let mut browser = Ws { stream };
    let user = browser.ok(json!({"id": "a", "type": "ADD_USER"})).await["user_id"]
        .as_i64()
        .expect("user_id");

    // At most one message a second after a burst of three: the rest are refused unprocessed.
    let infos: Vec<Value> = (0..8)
        .map(|i| json!({"id": format!("info-{i}"), "type": "USER_INFO", "user_id": user}))
        .collect();
    let replies = browser.burst(&infos).await;
    let limited = replies
        .values()
        .filter(|r| {
            r["message"]
                .as_str()
                .unwrap_or_default()
                .contains("rate limited")
        })
        .count();
    assert!(limited >= 5, "at most 3 of 8 pass: {replies:?}");

    // A message past the size limit closes the connection.
    let mut big = connect(&server, &trader).await;
    let huge = json!({"id": "big", "type": "ADD_USER", "name": "x".repeat(4096)});
    big.send(&huge).await;
    match big.next().await {
        None | Some(Err(_)) => {}
        Some(Ok(reply)) => panic!("a message past the limit was answered: {reply}"),
    }

    // A token revoked while its connection is open stops working, and the connection closes.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    tally(&server, &["token", "revoke", &trader_id]);
    browser
        .send(&json!({"id": "after", "type": "USER_INFO", "user_id": user}))
        .await;
    let reply = browser.recv().await;
    assert_eq!(reply["status"], "ERROR");
    assert!(
        reply["message"]
            .as_str()
            .unwrap_or_default()
            .contains("revoked"),
        "{reply}"
    );
    match browser.next().await {
        Some(Err(code)) => assert_eq!(code, CloseCode::Policy),
        other => panic!("expected a close frame, got {other:?}"),
    }
    let _ = reader;

    // A graceful stop closes the connection as going away (1001).
    let mut server = server;
    let admin = server.admin_token().to_owned();
    let mut last = connect(&server, &admin).await;
    last.send(&json!({"id": "last", "type": "USER_INFO", "user_id": user}))
        .await;
    let (status, frames) = tokio::join!(server.stop(), async {
        let mut frames = Vec::new();
        while let Some(frame) = last.next().await {
            let closed = frame.is_err();
            frames.push(frame);
            if closed {
                break;
            }
        }
        frames
    });
    assert!(
        status.is_some_and(|s| s.success()),
        "a clean exit: {status:?}"
    );
    // The message is answered if it was read before the signal; either way nothing else comes.
    assert!(frames.len() <= 2, "{frames:?}");
    if frames.len() == 2 {
        assert!(
            matches!(&frames[0], Ok(reply) if reply["id"] == "last" && reply["status"] == "OK"),
            "the reply before the close: {frames:?}"
        );
    }
    assert!(
        matches!(frames.last(), Some(Err(CloseCode::Away))),
        "closed as going away: {frames:?}"
    );
}

on_both_backends!(websocket_security: websocket_security_sqlite, websocket_security_postgres);

/// SIGKILL with orders in flight: after a restart the same messages (same ids) get the replies
/// given before the kill, the orders cut off are decided once, and the wallet pays for exactly
/// what it holds.
async fn sigkill_mid_trading(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let token = server.admin_token().to_owned();
    let mut ws = connect(&server, &token).await;
    let user = add_user(&mut ws, "crash", "100.00").await;
    // 40 BUYs of 5.00 against 100.00: whatever the kill cuts, exactly 20 can execute.
    let orders: Vec<Value> = (0..40)
        .map(|i| json!({"id": format!("k{i}"), "type": "BUY", "user_id": user, "symbol": "KIL", "price": "5.00", "amount": 1}))
        .collect();
    for order in &orders {
        ws.send(order).await;
    }
    let mut before: HashMap<String, Value> = HashMap::new();
    while before.len() < 3 {
        let reply = ws.recv().await;
        before.insert(reply["id"].as_str().expect("string id").to_owned(), reply);
    }
    server.kill_9();
    server.restart(&[]).await;

    // Send every message again until each is decided.
    let mut ws = connect(&server, &token).await;
    let mut decided: HashMap<String, Value> = HashMap::new();
    let deadline = std::time::Instant::now() + REPLY_TIMEOUT;
    while decided.len() < orders.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "orders undecided: {decided:?}"
        );
        let open: Vec<Value> = orders
            .iter()
            .filter(|o| !decided.contains_key(o["id"].as_str().unwrap_or_default()))
            .cloned()
            .collect();
        for (id, reply) in ws.burst(&open).await {
            let pending = reply["message"]
                .as_str()
                .unwrap_or_default()
                .contains("still being processed");
            if !pending {
                decided.insert(id, reply);
            }
        }
    }
    for (id, reply) in &before {
        if !reply["message"]
            .as_str()
            .unwrap_or_default()
            .contains("still being processed")
        {
            assert_eq!(
                &decided[id], reply,
                "{id}: the reply before the kill stands"
            );
        }
    }
    let executed = decided.values().filter(|r| r["status"] == "OK").count();
    assert_eq!(
        executed, 20,
        "100.00 pays for exactly 20 at 5.00: {decided:?}"
    );
    assert_eq!(holdings(&server, user).await, vec![("KIL".to_owned(), 20)]);
    wallet_reaches(&server, user, 0, "every executed order's hold is captured").await;
    server.api().ledger_balanced().await;
}

on_both_backends!(sigkill_mid_trading: sigkill_mid_trading_sqlite, sigkill_mid_trading_postgres);
