//! Flow 3 against the real binary: claims in (JSON, payer CSV, `tally import-claims`), exact net
//! fees, top providers from the aggregate with its rate limit, and one billing payable per
//! accepted claim over the bus.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::Duration;

use crate::support::{eventually, minor_units, Backend, Obj, TestServer};

/// An NPI: nine digits and the Luhn check digit over `80840` and them.
fn npi(base: u64) -> String {
    let nine = format!("{:09}", base % 1_000_000_000);
    let check = tally_kernel::luhn::check_digit(&format!("80840{nine}"));
    format!("{nine}{check}")
}

const CSV_HEADER: &str = "\"service date\",\"submitted procedure\",quadrant,\"Plan/Group #\",\"Subscriber#\",\"Provider NPI\",\"provider fees\",\"Allowed fees\",\"member coinsurance\",\"member copay\"\n";

fn csv_row(npi: &str, provider_fees: &str, allowed: &str) -> String {
    format!("3/28/18 0:00,D0180,,GRP-1000,3730189502,{npi},\"${provider_fees} \",\"${allowed} \",\"$0.00 \",\"$0.00 \"\n")
}

/// Net fee in cents per NPI, summed over `rows` of (npi, net fee in cents).
fn totals(rows: &[(String, i64)]) -> BTreeMap<String, i64> {
    let mut totals = BTreeMap::new();
    for (npi, fee) in rows {
        *totals.entry(npi.clone()).or_insert(0) += fee;
    }
    totals
}

async fn payables_by_claim(api: &crate::support::Api) -> BTreeMap<String, i64> {
    let page = api
        .get("/billing/payables?limit=500")
        .await
        .expect(200, "GET /billing/payables");
    page.list("items")
        .iter()
        .map(|p: &Obj| {
            (
                p.str("claimId"),
                minor_units(p.raw("amount")).expect("an exact amount"),
            )
        })
        .collect()
}

async fn claims_become_payables_and_rank_providers(backend: Backend) {
    let server = TestServer::start(backend).await;
    let api = server.api();
    let (a, b, c) = (npi(111_111_111), npi(222_222_222), npi(333_333_333));

    // Document 002's fields as JSON: amounts as strings with `$` and spaces, or as numbers.
    let json = format!(
        r#"[{{"service_date":"3/28/18 0:00","submitted_procedure":"D4346","quadrant":null,"plan_group_number":"GRP-1000","subscriber_number":"3730189502","provider_npi":"{a}","provider_fees":"$130.00 ","allowed_fees":"$65.00 ","member_coinsurance":"$16.25 ","member_copay":"$0.00 "}},
            {{"service_date":"3/28/18 0:00","submitted_procedure":"D0180","quadrant":"UR","plan_group_number":"GRP-1000","subscriber_number":3730189502,"provider_npi":{b},"provider_fees":100,"allowed_fees":100.5,"member_coinsurance":0,"member_copay":"0.25"}}]"#
    );
    let request = api.post_request("/claims", &json);
    let created = api.send(request).await.expect(201, "POST /claims (JSON)");
    assert_eq!(created.i64("accepted"), 2);
    let fees: Vec<String> = created
        .list("claims")
        .iter()
        .map(|c| c.raw("net_fee").to_owned())
        .collect();
    assert_eq!(
        fees,
        ["81.25", "-0.25"],
        "net_fee = provider + coinsurance + copay - allowed"
    );

    // A payer CSV: quoted headers with punctuation, amounts with `$` and trailing spaces.
    let csv = format!(
        "{CSV_HEADER}{}{}",
        csv_row(&c, "300.00", "100.00"),
        csv_row(&a, "50.00", "40.00")
    );
    let upload = api
        .client()
        .post(api.url("/claims"))
        .header("content-type", "text/csv")
        .body(csv);
    api.send(upload).await.expect(201, "POST /claims (CSV)");

    // One bad row refuses the whole request, naming the row and the field, and stores nothing.
    let bad = format!(
        "{CSV_HEADER}{}{}",
        csv_row(&c, "1.00", "1.00"),
        csv_row("1234567890", "1.00", "1.00")
    );
    let refused = api
        .send(
            api.client()
                .post(api.url("/claims"))
                .header("content-type", "text/csv")
                .body(bad),
        )
        .await;
    let problem = refused.problem(422, "a CSV with a bad NPI");
    let fields: Vec<String> = problem
        .list("errors")
        .iter()
        .map(|e| e.str("field"))
        .collect();
    assert_eq!(fields, ["rows[1].provider_npi"], "{}", refused.text());

    // Every accepted claim becomes one payable, with its net fee.
    let expected: Vec<(String, i64)> = vec![
        (a.clone(), 8_125),
        (b.clone(), -25),
        (c.clone(), 20_000),
        (a.clone(), 1_000),
    ];
    let payables = eventually(
        Duration::from_secs(15),
        Duration::from_millis(50),
        "payables",
        || async {
            let payables = payables_by_claim(&api).await;
            (payables.len() == 4).then_some(payables)
        },
    )
    .await;
    let mut amounts: Vec<i64> = payables.values().copied().collect();
    amounts.sort_unstable();
    assert_eq!(amounts, [-25, 1_000, 8_125, 20_000]);

    // Top providers, checked against sums computed here; ties would break by NPI.
    let top = api
        .get("/providers/top")
        .await
        .expect(200, "GET /providers/top");
    let listed: Vec<(String, i64)> = top
        .list("providers")
        .iter()
        .map(|p| {
            (
                p.str("provider_npi"),
                minor_units(p.raw("total_net_fee")).unwrap(),
            )
        })
        .collect();
    let mut want: Vec<(String, i64)> = totals(&expected).into_iter().collect();
    want.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
    assert_eq!(listed, want);
    let two = api
        .get("/providers/top?limit=2")
        .await
        .expect(200, "limit=2");
    assert_eq!(two.list("providers").len(), 2);

    // Ten requests a minute per token: the eleventh is refused with Retry-After.
    for i in 3..=10 {
        api.get("/providers/top")
            .await
            .expect(200, &format!("request {i}"));
    }
    let limited = api.get("/providers/top").await;
    limited.problem(429, "the 11th request in a minute");
    assert!(limited
        .header("retry-after")
        .is_some_and(|s| s.parse::<u64>().is_ok()));
}
on_both_backends!(claims_become_payables_and_rank_providers: claims_to_payables_sqlite, claims_to_payables_postgres);

async fn import_claims_streams_a_file_while_the_server_runs(backend: Backend) {
    let server = TestServer::start(backend).await;
    let api = server.api();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("payer.csv");
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(CSV_HEADER.as_bytes()).unwrap();
    let (rows, bad_every) = (2_000u64, 100u64);
    for i in 0..rows {
        let provider = if i % bad_every == 7 {
            "1234567890".to_owned()
        } else {
            npi(i % 50)
        };
        file.write_all(csv_row(&provider, "10.00", "7.50").as_bytes())
            .unwrap();
    }
    drop(file);

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(server.db_args())
        .args([
            "import-claims",
            path.to_str().unwrap(),
            "--batch-size",
            "300",
        ])
        .output()
        .expect("run tally import-claims");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rejected = rows / bad_every;
    assert!(
        stdout.contains(&format!(
            "accepted {}, rejected {rejected}",
            rows - rejected
        )),
        "{stdout}"
    );
    assert!(stdout.contains("rows/s"), "{stdout}");
    let rejects = std::fs::read_to_string(dir.path().join("payer.csv.rejected.jsonl")).unwrap();
    assert_eq!(rejects.lines().count() as u64, rejected);
    assert!(
        rejects.lines().all(|l| l.contains("provider_npi")),
        "{rejects}"
    );

    // The running server's consumers turn every imported claim into a payable.
    let top = eventually(
        Duration::from_secs(30),
        Duration::from_millis(100),
        "import ranked",
        || async {
            let top = api.get("/providers/top?limit=100").await;
            (top.status == 200).then_some(top)
        },
    )
    .await
    .expect(200, "GET /providers/top");
    let claims: i64 = top
        .list("providers")
        .iter()
        .map(|p| p.i64("claim_count"))
        .sum();
    assert_eq!(
        claims as u64,
        rows - rejected,
        "every accepted row is in the aggregate"
    );
    let ranked_total: i64 = top
        .list("providers")
        .iter()
        .map(|p| minor_units(p.raw("total_net_fee")).unwrap())
        .sum();
    assert_eq!(
        ranked_total,
        (rows - rejected) as i64 * 250,
        "net fee 2.50 per claim"
    );
    // Provider npi(0) has rows 0, 50, 100, ...: 40 of them, none of them bad (bad rows are
    // those with i % 100 == 7). Each becomes one payable of 2.50.
    let path = format!("/billing/payables?limit=500&npi={}", npi(0));
    let payables = eventually(
        Duration::from_secs(30),
        Duration::from_millis(100),
        "imported payables",
        || async {
            let items = api
                .get(&path)
                .await
                .expect(200, "payables of one provider")
                .list("items");
            (items.len() == 40).then_some(items)
        },
    )
    .await;
    assert!(
        payables.iter().all(|p| p.raw("amount") == "2.50"),
        "each payable is the net fee"
    );

    // The same file again stores nothing: its content was imported already.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(server.db_args())
        .arg("import-claims")
        .arg(dir.path().join("payer.csv"))
        .output()
        .expect("run tally import-claims again");
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{stdout}");
    assert!(
        stdout.contains("already imported (started 20")
            && stdout.contains(&format!(
                "accepted {}, rejected {rejected}",
                rows - rejected
            )),
        "{stdout}"
    );
    let claims: i64 = api
        .get("/providers/top?limit=100")
        .await
        .expect(200, "GET /providers/top")
        .list("providers")
        .iter()
        .map(|p| p.i64("claim_count"))
        .sum();
    assert_eq!(claims as u64, rows - rejected, "nothing stored twice");
}
on_both_backends!(import_claims_streams_a_file_while_the_server_runs: import_claims_sqlite, import_claims_postgres);
