//! Flow 1 against the real binary: register, book, bill generated, close, bill adjusted with
//! its finance record, partial payments (a declined card and a wallet without enough money
//! in between), bill paid, notifications stored and delivered to a signed webhook; then an
//! appointment cancelled after a partial payment, refunded. Also document 000's requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

use crate::support::{eventually, minor_units, Api, Backend, Obj, TestServer};

const SECRET: &str = "webhook-test-secret";

/// A webhook receiver: refuses the first two requests it gets, then accepts; checks every
/// signature; counts acceptances per delivery id.
#[derive(Default)]
struct Receiver {
    requests: usize,
    bad_signatures: usize,
    accepted: HashMap<String, (usize, String)>,
}

async fn start_receiver() -> (String, Arc<Mutex<Receiver>>) {
    let state = Arc::new(Mutex::new(Receiver::default()));
    let shared = state.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let state = shared.clone();
            async move {
                let mut r = state.lock().unwrap();
                r.requests += 1;
                let signature = headers
                    .get("tally-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let now = chrono::Utc::now().timestamp();
                if tally_notifications::signature::verify(
                    SECRET.as_bytes(),
                    signature,
                    &body,
                    now,
                    300,
                )
                .is_err()
                {
                    r.bad_signatures += 1;
                }
                if r.requests <= 2 {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                let id = headers
                    .get("tally-notification-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let event_type = event["eventType"].as_str().unwrap_or("").to_owned();
                r.accepted.entry(id).or_insert((0, event_type)).0 += 1;
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, state)
}

async fn register_patient(api: &Api, name: &str) -> String {
    let body = format!(
        r#"{{"fullName":"{name}","dateOfBirth":"1980-04-02","email":"patient@example.org","phone":"+15550100200"}}"#
    );
    api.post("/patients", &body)
        .await
        .expect(201, "POST /patients")
        .str("id")
}

async fn physician(api: &Api) -> String {
    let body = r#"{"name":"Dr. Block","tariff":{"kind":"per_block","blockMinutes":15,"feePerBlock":"25.00","currency":"USD"}}"#;
    api.post("/physicians", body)
        .await
        .expect(201, "POST /physicians")
        .str("id")
}

async fn book(api: &Api, patient: &str, physician: &str, start: &str, end: &str) -> Obj {
    let body = format!(
        r#"{{"patientId":"{patient}","physicianId":"{physician}","scheduledStart":"{start}","scheduledEnd":"{end}"}}"#
    );
    api.post("/appointments", &body)
        .await
        .expect(201, "POST /appointments")
}

async fn bill_of(api: &Api, appointment: &str, patient: &str) -> Obj {
    eventually(
        Duration::from_secs(15),
        Duration::from_millis(50),
        "the bill",
        || async {
            let page = api
                .get(&format!("/bills?patientId={patient}"))
                .await
                .expect(200, "GET /bills");
            let id = page
                .list("items")
                .into_iter()
                .find(|b| b.str("appointmentId") == appointment)?
                .str("billId");
            Some(
                api.get(&format!("/bills/{id}"))
                    .await
                    .expect(200, "GET /bills/{id}"),
            )
        },
    )
    .await
}

async fn pay(api: &Api, bill: &str, body: &str) -> Obj {
    let response = api.post(&format!("/bills/{bill}/payments"), body).await;
    assert!(
        matches!(response.status, 201 | 202),
        "payment {body}: {} {}",
        response.status,
        response.text()
    );
    response.expect(response.status, "payment")
}

async fn bill_until(api: &Api, bill: &str, what: &str, done: impl Fn(&Obj) -> bool) -> Obj {
    eventually(
        Duration::from_secs(15),
        Duration::from_millis(50),
        what,
        || async {
            let bill = api
                .get(&format!("/bills/{bill}"))
                .await
                .expect(200, "GET /bills/{id}");
            done(&bill).then_some(bill)
        },
    )
    .await
}

async fn hospital_flow(backend: Backend) {
    let (hook, receiver) = start_receiver().await;
    let args = [
        "--webhook",
        hook.as_str(),
        "--webhook-secret",
        SECRET,
        "--notification-retry-base-ms",
        "50",
        "--notification-retry-max-ms",
        "200",
        // Verbose logs, for the check below that none of them carries patient data.
        "--log",
        "debug,sqlx=warn,hyper=info,h2=info,reqwest=info,lettre=info",
    ];
    let server = TestServer::start_with(backend, &args).await;
    let api = server.api();

    let patient = register_patient(&api, "Maria da Silva").await;
    let doctor = physician(&api).await;
    // The patient's wallet, with less money than the wallet payment will ask for at first.
    let wallet = api.create_client("Maria").await.wallet_id;
    api.deposit(wallet, 5_000).await;

    // Booked for 30 minutes: two started blocks of 25.00.
    let appointment = book(
        &api,
        &patient,
        &doctor,
        "2026-03-02T09:00:00Z",
        "2026-03-02T09:30:00Z",
    )
    .await;
    let appointment_id = appointment.str("id");
    assert_eq!(appointment.raw("scheduledPrice"), "50.00");
    let bill = bill_of(&api, &appointment_id, &patient).await;
    let bill_id = bill.str("billId");
    assert_eq!(
        (bill.raw("amount"), bill.str("status")),
        ("50.00", "open".to_owned())
    );

    // Closed after 40 minutes: three started blocks, 75.00.
    let closed = api
        .post(
            &format!("/appointments/{appointment_id}/close"),
            r#"{"end":"2026-03-02T09:40:00Z"}"#,
        )
        .await
        .expect(200, "close");
    assert_eq!(closed.str("status"), "closed");
    let bill = bill_until(&api, &bill_id, "the bill adjusted", |b| {
        b.raw("amount") == "75.00"
    })
    .await;
    let finance = bill.obj("financeRecord");
    assert_eq!(
        (finance.i64("durationMinutes"), finance.raw("price")),
        (40, "75.00")
    );

    // A declined card charges nothing.
    let declined = pay(
        &api,
        &bill_id,
        r#"{"amount":"25.00","method":"card","card":{"number":"4000000000000002"}}"#,
    )
    .await;
    assert_eq!(
        (declined.str("status"), declined.str("failureReason")),
        ("failed".into(), "card_declined".into())
    );
    // A wallet without enough money: the payment fails, the wallet is untouched.
    let short = pay(
        &api,
        &bill_id,
        &format!(r#"{{"amount":"75.00","method":"wallet","walletId":{wallet}}}"#),
    )
    .await;
    assert_eq!(short.str("status"), "pending");
    bill_until(&api, &bill_id, "the short wallet payment failed", |b| {
        b.list("payments")
            .iter()
            .any(|p| p.str("paymentId") == short.str("paymentId") && p.str("status") == "failed")
    })
    .await;
    assert_eq!(api.wallet(wallet).await.balance, 5_000);
    // Two partial payments that cover the bill: a card, then the wallet.
    let card = pay(
        &api,
        &bill_id,
        r#"{"amount":"25.00","method":"card","card":{"number":"4242424242424242"}}"#,
    )
    .await;
    assert_eq!(card.str("status"), "completed");
    pay(
        &api,
        &bill_id,
        &format!(r#"{{"amount":"50.00","method":"wallet","walletId":{wallet}}}"#),
    )
    .await;
    let paid = bill_until(&api, &bill_id, "the bill paid", |b| {
        b.str("status") == "paid"
    })
    .await;
    assert_eq!((paid.raw("paid"), paid.raw("due")), ("75.00", "0.00"));
    assert_eq!(api.wallet(wallet).await.balance, 0, "the wallet paid 50.00");
    let completed: i64 = paid
        .list("payments")
        .iter()
        .filter(|p| p.str("status") == "completed")
        .map(|p| minor_units(p.raw("amount")).unwrap())
        .sum();
    assert_eq!(
        completed, 7_500,
        "the bill's paid amount is the sum of its completed payments"
    );

    // A second appointment, partly paid in cash, then cancelled: voided and refunded.
    let second = book(
        &api,
        &patient,
        &doctor,
        "2026-03-03T10:00:00Z",
        "2026-03-03T10:15:00Z",
    )
    .await
    .str("id");
    let second_bill = bill_of(&api, &second, &patient).await.str("billId");
    pay(&api, &second_bill, r#"{"amount":"10.00","method":"cash"}"#).await;
    api.post(
        &format!("/appointments/{second}/cancel"),
        r#"{"reason":"patient asked"}"#,
    )
    .await
    .expect(200, "cancel");
    let voided = bill_until(&api, &second_bill, "the bill voided", |b| {
        b.str("status") == "voided"
    })
    .await;
    assert_eq!(voided.raw("refunded"), "10.00");
    api.post(
        &format!("/bills/{second_bill}/payments"),
        r#"{"amount":"1.00","method":"cash"}"#,
    )
    .await
    .problem(409, "paying a voided bill");

    // Notifications: stored once per event, and delivered to the webhook once each, signed.
    let wanted = [
        "appointment.booked",
        "bill.generated",
        "payment.failed",
        "payment.completed",
        "bill.paid",
        "appointment.cancelled",
    ];
    let stored = eventually(
        Duration::from_secs(20),
        Duration::from_millis(100),
        "notifications",
        || async {
            let page = api
                .get(&format!("/notifications?patientId={patient}&limit=100"))
                .await
                .expect(200, "GET /notifications");
            let items = page.list("items");
            let types: Vec<String> = items.iter().map(|n| n.str("eventType")).collect();
            wanted
                .iter()
                .all(|w| types.iter().any(|t| t == w))
                .then_some(items)
        },
    )
    .await;
    let mut per_event: HashMap<String, usize> = HashMap::new();
    for n in &stored {
        *per_event.entry(n.str("eventId")).or_default() += 1;
    }
    assert!(
        per_event.values().all(|&n| n == 1),
        "one message per event: {per_event:?}"
    );
    let delivered = eventually(
        Duration::from_secs(20),
        Duration::from_millis(100),
        "webhook deliveries",
        || async {
            let r = receiver.lock().unwrap();
            (r.accepted.len() >= stored.len())
                .then(|| (r.accepted.clone(), r.bad_signatures, r.requests))
        },
    )
    .await;
    let (accepted, bad_signatures, requests) = delivered;
    assert_eq!(
        bad_signatures, 0,
        "every request was signed with the secret"
    );
    assert!(
        requests >= accepted.len() + 2,
        "the two refused requests were retried"
    );
    assert!(
        accepted.values().all(|(n, _)| *n == 1),
        "each notification accepted once: {accepted:?}"
    );

    // No patient data in the logs of the whole flow: no name, e-mail, phone or date of birth.
    let log = server.log_all();
    assert!(
        log.lines().count() > 50,
        "the flow was logged at debug level"
    );
    for secret in [
        "Maria",
        "Silva",
        "patient@example.org",
        "example.org",
        "15550100200",
        "1980-04-02",
    ] {
        assert!(
            !log.contains(secret),
            "the server log contains patient data ({secret})"
        );
    }
}
on_both_backends!(hospital_flow: hospital_flow_sqlite, hospital_flow_postgres);

/// A wallet payment refunded into a wallet closed meanwhile: the wallets service refuses the
/// credit, the bill owes the money back, and the clinic refunds it into the patient's new
/// wallet, where it arrives once.
async fn a_refund_the_wallet_refuses_is_owed_back_until_refunded_elsewhere(backend: Backend) {
    let server = TestServer::start(backend).await;
    let api = server.api();
    let patient = register_patient(&api, "Ana").await;
    let doctor = physician(&api).await;
    let client = api.create_client("Ana").await;
    api.deposit(client.wallet_id, 5_000).await;
    let appointment = book(
        &api,
        &patient,
        &doctor,
        "2026-03-04T09:00:00Z",
        "2026-03-04T09:30:00Z",
    )
    .await
    .str("id");
    let bill_id = bill_of(&api, &appointment, &patient).await.str("billId");
    let wallet_payment = format!(
        r#"{{"amount":"50.00","method":"wallet","walletId":{}}}"#,
        client.wallet_id
    );
    pay(&api, &bill_id, &wallet_payment).await;
    bill_until(&api, &bill_id, "the bill paid", |b| {
        b.str("status") == "paid"
    })
    .await;

    // The patient leaves the wallets service (the wallet is empty, so it closes), then cancels.
    api.delete(&format!("/clients/{}", client.id))
        .await
        .expect(200, "DELETE /clients/{id}");
    api.post(
        &format!("/appointments/{appointment}/cancel"),
        r#"{"reason":"moved away"}"#,
    )
    .await
    .expect(200, "cancel");
    let owed = bill_until(&api, &bill_id, "the refused refund owed back", |b| {
        b.raw("refundDue") == "50.00"
    })
    .await;
    assert_eq!(
        (owed.str("status"), owed.raw("refunded")),
        ("voided".to_owned(), "0.00")
    );
    let failed = &owed.list("refunds")[0];
    assert_eq!(
        (failed.str("status"), failed.i64("walletId")),
        ("failed".to_owned(), client.wallet_id)
    );
    assert!(
        failed.str("failureReason").contains("closed"),
        "{}",
        failed.text()
    );

    // Refunded into the patient's new wallet, once however often the request is sent.
    let new_wallet = api.create_client("Ana").await.wallet_id;
    let body = format!(r#"{{"method":"wallet","walletId":{new_wallet}}}"#);
    let path = format!("/bills/{bill_id}/refunds");
    let first = api.post_keyed(&path, "refund-ana", &body).await;
    let again = api.post_keyed(&path, "refund-ana", &body).await;
    assert_eq!(first.status, 202, "{}", first.text());
    assert_eq!((again.status, again.text()), (first.status, first.text()));
    let settled = bill_until(&api, &bill_id, "the refund arrived", |b| {
        b.list("refunds")
            .iter()
            .any(|r| r.str("status") == "completed")
    })
    .await;
    assert_eq!(
        (settled.raw("refunded"), settled.raw("refundDue")),
        ("50.00", "0.00")
    );
    assert_eq!(api.wallet(new_wallet).await.balance, 5_000);
    api.post(&path, r#"{"method":"cash"}"#)
        .await
        .problem_of_type(409, "no-refund-due", "nothing left to refund");
}
on_both_backends!(
    a_refund_the_wallet_refuses_is_owed_back_until_refunded_elsewhere:
        refused_wallet_refund_sqlite,
    refused_wallet_refund_postgres
);

/// Document 000's manual happy flow, with its exact requests, once a patient and a physician
/// exist with the ids it uses (one UUID for both, as the document has it).
async fn document_000_replayed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let api = server.api();
    let id = "e6afa807-8705-43d8-ba48-40a421843248";
    let patient = r#"{"fullName":"Paulo Patient","dateOfBirth":"1990-01-01"}"#;
    let put = api
        .send(
            api.client()
                .put(api.url(&format!("/patients/{id}")))
                .header("content-type", "application/json")
                .body(patient),
        )
        .await;
    assert_eq!(put.status, 201, "{}", put.text());
    let again = api
        .send(
            api.client()
                .put(api.url(&format!("/patients/{id}")))
                .header("content-type", "application/json")
                .body(patient),
        )
        .await;
    assert_eq!(
        again.status,
        200,
        "PUT again is idempotent: {}",
        again.text()
    );
    let physician = r#"{"name":"Dr. Gurgel","tariff":{"kind":"per_block","blockMinutes":30,"feePerBlock":"100.00","currency":"USD"}}"#;
    let put = api
        .send(
            api.client()
                .put(api.url(&format!("/physicians/{id}")))
                .header("content-type", "application/json")
                .body(physician),
        )
        .await;
    assert_eq!(put.status, 201, "{}", put.text());

    let create = r#"{
    "patient_id": "e6afa807-8705-43d8-ba48-40a421843248",
    "physician_id": "e6afa807-8705-43d8-ba48-40a421843248",
    "start_date": "2021-07-01T08:30:00.000"
}"#;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers({
            let mut h = reqwest::header::HeaderMap::new();
            h.insert(
                "authorization",
                format!("Bearer {}", server.admin_token()).parse().unwrap(),
            );
            h
        })
        .build()
        .unwrap();
    let created = Api::try_send(
        no_redirects
            .post(api.url("/consultation/v1/create"))
            .header("content-type", "application/json")
            .body(create),
    )
    .await
    .unwrap();
    assert!(
        matches!(created.status, 302 | 303 | 307),
        "a redirect: {} {}",
        created.status,
        created.text()
    );
    let location = created.header("location").expect("Location");
    let consultation = location.rsplit('/').next().unwrap().to_owned();
    assert_eq!(
        location,
        format!("/consultation/v1/consultation/{consultation}")
    );

    let close = format!(
        r#"{{
    "end_date": "2021-07-01T13:40:00.000",
    "id": "{consultation}",
    "patient_id": "e6afa807-8705-43d8-ba48-40a421843248",
    "physician_id": "e6afa807-8705-43d8-ba48-40a421843248",
    "start_date": "2021-07-01T08:30:00.000"
}}"#
    );
    let closed = api.post("/consultation/v1/close", &close).await;
    assert!(
        (200..300).contains(&closed.status),
        "close: {} {}",
        closed.status,
        closed.text()
    );
    let view = api.get(&location).await.expect(200, "GET the consultation");
    // 5 h 10 min = 310 minutes: 11 started blocks of 30 minutes at 100.00.
    assert_eq!(view.raw("price"), "1100.00");
    assert_eq!(view.str("id"), consultation);
    let all = api.get("/consultation/v1/consultation").await;
    assert_eq!(all.status, 200);
    assert!(all.text().contains(&consultation));
    // Billing wrote the finance record of the closed consultation.
    let bill = bill_of(&api, &consultation, id).await;
    let bill = bill_until(&api, &bill.str("billId"), "the finance record", |b| {
        !b.is_null("financeRecord")
    })
    .await;
    assert_eq!(bill.obj("financeRecord").raw("price"), "1100.00");
}
on_both_backends!(document_000_replayed: document_000_sqlite, document_000_postgres);

/// Billing not running while appointments are booked, closed and cancelled: when it starts,
/// every bill appears with the right amount, exactly once. Bad input changes nothing.
async fn billing_catches_up_after_being_stopped(backend: Backend) {
    let mut server = TestServer::start_with(backend, &["--no-consumers"]).await;
    let api = server.api();
    let patient = register_patient(&api, "Late Biller").await;
    let doctor = physician(&api).await;

    // Bad input first: each a 4xx naming the field, and nothing booked.
    let unknown = uuid::Uuid::now_v7().to_string();
    let book_body = |p: &str, d: &str, start: &str, end: &str| {
        format!(
            r#"{{"patientId":"{p}","physicianId":"{d}","scheduledStart":"{start}","scheduledEnd":"{end}"}}"#
        )
    };
    let refusals = [
        (
            book_body(
                &unknown,
                &doctor,
                "2026-04-01T09:00:00Z",
                "2026-04-01T09:30:00Z",
            ),
            "patientId",
        ),
        (
            book_body(
                &patient,
                &unknown,
                "2026-04-01T09:00:00Z",
                "2026-04-01T09:30:00Z",
            ),
            "physicianId",
        ),
        (
            book_body(
                &patient,
                &doctor,
                "2026-04-01T09:30:00Z",
                "2026-04-01T09:00:00Z",
            ),
            "scheduledEnd",
        ),
        (
            book_body(&patient, &doctor, "01/04/2026 9:00", "2026-04-01T09:30:00Z"),
            "scheduledStart",
        ),
    ];
    for (body, field) in &refusals {
        api.post("/appointments", body)
            .await
            .problem_naming(422, field, "a refused booking");
    }

    // (scheduled minutes, closed after minutes, cancelled)
    let plan = [
        (30, Some(40), false),
        (15, Some(15), false),
        (45, None, false),
        (30, None, true),
    ];
    let mut expected = Vec::new();
    for (i, (scheduled, closed, cancelled)) in plan.iter().enumerate() {
        let start = chrono::DateTime::parse_from_rfc3339("2026-04-02T08:00:00Z").unwrap()
            + chrono::Duration::hours(i as i64);
        let end = start + chrono::Duration::minutes(*scheduled);
        let appointment = book(
            &api,
            &patient,
            &doctor,
            &start.to_rfc3339(),
            &end.to_rfc3339(),
        )
        .await
        .str("id");
        let mut minutes = *scheduled;
        if let Some(real) = closed {
            let body = format!(
                r#"{{"end":"{}"}}"#,
                (start + chrono::Duration::minutes(*real)).to_rfc3339()
            );
            api.post(&format!("/appointments/{appointment}/close"), &body)
                .await
                .expect(200, "close");
            api.post(&format!("/appointments/{appointment}/close"), &body)
                .await
                .problem(409, "closing twice");
            minutes = *real;
        }
        if *cancelled {
            api.post(&format!("/appointments/{appointment}/cancel"), "{}")
                .await
                .expect(200, "cancel");
        }
        // 25.00 per started block of 15 minutes.
        let amount_minor = (minutes + 14) / 15 * 2_500;
        let status = match (closed, cancelled) {
            (_, true) => "voided",
            _ => "open",
        };
        expected.push((appointment, amount_minor, status));
    }
    let page = api
        .get(&format!("/bills?patientId={patient}"))
        .await
        .expect(200, "bills while billing is stopped");
    assert!(
        page.list("items").is_empty(),
        "no bill while billing does not run"
    );

    server.restart(&[]).await;
    let api = server.api();
    eventually(
        Duration::from_secs(20),
        Duration::from_millis(100),
        "every bill",
        || async {
            let items = api
                .get(&format!("/bills?patientId={patient}&limit=100"))
                .await
                .expect(200, "bills")
                .list("items");
            (items.len() == plan.len()).then_some(())
        },
    )
    .await;
    for (appointment, amount_minor, status) in &expected {
        let bill = bill_of(&api, appointment, &patient).await;
        let bill = bill_until(&api, &bill.str("billId"), "the bill settled", |b| {
            b.str("status") == *status && minor_units(b.raw("amount")).unwrap() == *amount_minor
        })
        .await;
        assert_eq!(bill.str("status"), *status);
    }
    // Once more, after another restart: nothing is applied twice.
    server.restart(&[]).await;
    let api = server.api();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = api
        .get(&format!("/bills?patientId={patient}&limit=100"))
        .await
        .expect(200, "bills")
        .list("items");
    assert_eq!(again.len(), plan.len(), "exactly one bill per appointment");
}
on_both_backends!(billing_catches_up_after_being_stopped: billing_catches_up_sqlite, billing_catches_up_postgres);

/// Care in one process checks patients in another, over HTTP, with its own token; once the
/// token is revoked, bookings are refused (503) and nothing is stored.
async fn care_calls_patients_in_another_process(backend: Backend) {
    let patients = TestServer::start_with(backend, &["--token-cache-ms", "0"]).await;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(patients.db_args())
        .args([
            "token",
            "create",
            "--name",
            "care",
            "--scopes",
            "patients:read",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "token create failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let care_token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let patient = register_patient(&patients.api(), "Remote Patient").await;

    let url = patients.url("");
    let care = TestServer::start_with(
        backend,
        &["--patients-url", &url, "--patients-token", &care_token],
    )
    .await;
    let api = care.api();
    let doctor = physician(&api).await;
    book(
        &api,
        &patient,
        &doctor,
        "2026-05-01T09:00:00Z",
        "2026-05-01T09:30:00Z",
    )
    .await;
    let unknown = uuid::Uuid::now_v7();
    let body = format!(
        r#"{{"patientId":"{unknown}","physicianId":"{doctor}","scheduledStart":"2026-05-01T10:00:00Z","scheduledEnd":"2026-05-01T10:30:00Z"}}"#
    );
    api.post("/appointments", &body).await.problem_naming(
        422,
        "patientId",
        "a patient the other process does not know",
    );

    let id = care_token.split('_').nth(1).unwrap();
    let revoke = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(patients.db_args())
        .args(["token", "revoke", id])
        .output()
        .unwrap();
    assert!(
        revoke.status.success(),
        "token revoke failed: {}",
        String::from_utf8_lossy(&revoke.stderr)
    );
    let body = format!(
        r#"{{"patientId":"{patient}","physicianId":"{doctor}","scheduledStart":"2026-05-01T11:00:00Z","scheduledEnd":"2026-05-01T11:30:00Z"}}"#
    );
    api.post("/appointments", &body)
        .await
        .problem(503, "care's token was revoked");
    let listed = api
        .get(&format!("/appointments?patientId={patient}"))
        .await
        .expect(200, "appointments");
    assert_eq!(
        listed.list("items").len(),
        1,
        "the refused booking stored nothing"
    );
}
on_both_backends!(care_calls_patients_in_another_process: remote_patients_sqlite, remote_patients_postgres);

/// 20 concurrent payments with one Idempotency-Key over HTTP make one payment, and every
/// answer is the first one.
async fn concurrent_payments_with_one_key(backend: Backend) {
    let server = TestServer::start(backend).await;
    let api = server.api();
    let patient = register_patient(&api, "Concurrent Payer").await;
    let doctor = physician(&api).await;
    let appointment = book(
        &api,
        &patient,
        &doctor,
        "2026-06-01T09:00:00Z",
        "2026-06-01T09:30:00Z",
    )
    .await
    .str("id");
    let bill = bill_of(&api, &appointment, &patient).await.str("billId");
    let path = format!("/bills/{bill}/payments");
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let (api, path) = (api.clone(), path.clone());
            tokio::spawn(async move {
                let request = api
                    .post_request(&path, r#"{"amount":"20.00","method":"card","card":{"number":"4242424242424242"}}"#)
                    .header("Idempotency-Key", "one-payment");
                api.send(request).await
            })
        })
        .collect();
    let mut bodies = Vec::new();
    for call in calls {
        let response = call.await.unwrap();
        assert_eq!(response.status, 201, "{}", response.text());
        bodies.push(response.body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "every answer is the first payment"
    );
    let bill = api
        .get(&format!("/bills/{bill}"))
        .await
        .expect(200, "the bill");
    assert_eq!(bill.list("payments").len(), 1, "one payment");
    assert_eq!(bill.raw("paid"), "20.00");
}
on_both_backends!(concurrent_payments_with_one_key: concurrent_payments_sqlite, concurrent_payments_postgres);
