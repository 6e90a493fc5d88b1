//! CSV as payers export it, read through the public streaming API an importer uses.

use std::io::Read;

use tally_claims::domain::Invalid;
use tally_claims::{csv_rows, Claim, ClaimError, RowRejection};

use crate::{SAMPLE_CSV, SAMPLE_NET_FEES};

fn read(text: &str) -> Vec<Result<Claim, RowRejection>> {
    csv_rows(text.as_bytes())
        .expect("the header is accepted")
        .map(|row| row.expect("the file is readable"))
        .collect()
}

fn net_fees(rows: &[Result<Claim, RowRejection>]) -> Vec<i64> {
    rows.iter()
        .map(|r| r.as_ref().expect("the row is valid").net_fee().amount_minor)
        .collect()
}

#[test]
fn document_002_field_names_as_headers() {
    let csv = "\
service_date,submitted_procedure,quadrant,plan_group_number,subscriber_number,provider_npi,provider_fees,allowed_fees,member_coinsurance,member_copay
3/28/18 0:00,D4346,,GRP-1000,3730189502,1497775530,$130.00,$65.00,$16.25,$0.00
2018-03-29 0:00:00,D4211,UR,GRP-1000,3730189502,1234567893,$178.00,$178.00,$35.60,$0.00
";
    let rows = read(csv);
    assert_eq!(net_fees(&rows), [8125, 3560]);
    let second = rows[1].as_ref().unwrap();
    assert_eq!(second.quadrant(), Some("UR"));
    assert_eq!(second.provider_npi().as_str(), "1234567893");
    assert_eq!(
        tally_kernel::time::to_db(second.service_date()),
        "2018-03-29T00:00:00.000000Z"
    );
}

#[test]
fn the_sample_export_with_spaces_hash_and_slash_in_headers() {
    assert_eq!(net_fees(&read(SAMPLE_CSV)), SAMPLE_NET_FEES);
}

#[test]
fn a_messy_export_with_quoted_line_breaks_a_bom_and_trailing_spaces() {
    let csv = "\u{feff}\"Service\r\nDate \",\"Submitted  Procedure\",\"QUADRANT\",\"Plan/Group\n#\",\
               \"Subscriber #\",\"Provider\nNPI\",\"Provider Fees \",\"Allowed\nFees\",\
               \"Member Co-insurance\",\"member_copay\"\r\n\
               \"3/28/18 0:00\",D4346 , ,GRP-1000 ,3730189502, 1497775530 ,\"$1,130.00  \",$65.00 ,$16.25 ,$0.00 \r\n\
               \r\n\
               ,,,,,,,,,\r\n\
               3/29/18 13:45,D0180,LL,GRP-1000,3730189502,1497775530,$100.00   ,$100.00,$0.00,$5.00\r\n";
    let rows = read(csv);
    assert_eq!(net_fees(&rows), [113_000 + 1625 - 6500, 500]);
    let first = rows[0].as_ref().unwrap();
    assert_eq!(first.submitted_procedure().as_str(), "D4346");
    assert_eq!(first.plan_group_number(), "GRP-1000");
    assert_eq!(first.quadrant(), None, "a blank cell is an absent quadrant");
    assert_eq!(
        tally_kernel::time::to_db(rows[1].as_ref().unwrap().service_date()),
        "2018-03-29T13:45:00.000000Z"
    );
}

#[test]
fn a_29_column_export_with_extra_columns_in_another_order() {
    let header = [
        "Claim ID",
        "Payer",
        "Provider NPI",
        "Billing NPI",
        "Provider Name",
        "Patient Name",
        "Patient DOB",
        "service date",
        "Date Received",
        "submitted procedure",
        "Procedure Description",
        "Tooth",
        "quadrant",
        "Surface",
        "Plan/Group #",
        "Plan Name",
        "Subscriber#",
        "Member ID",
        "Relationship",
        "provider fees",
        "Allowed fees",
        "Paid Amount",
        "member coinsurance",
        "member copay",
        "Deductible",
        "Adjustment Code",
        "Remark",
        "Status",
        "Check #",
    ];
    assert_eq!(header.len(), 29);
    let row = |npi: &str, procedure: &str, provider: &str, allowed: &str| {
        [
            "C-1",
            "Delta",
            npi,
            "1234567893",
            "Dr. Who",
            "Jane Roe",
            "1/1/80",
            "3/28/18 0:00",
            "4/1/18",
            procedure,
            "\"Cleaning, adult\"",
            "3",
            "UR",
            "MOD",
            "GRP-1000",
            "Gold PPO",
            "3730189502",
            "M-77",
            "self",
            provider,
            allowed,
            "$50.00",
            "$16.25 ",
            "$0.00 ",
            "$0.00",
            "CO-45",
            "\"see \"\"note\"\"\"",
            "PAID",
            "000123",
        ]
        .join(",")
    };
    let csv = format!(
        "{}\n{}\n{}\n",
        header.join(","),
        row("1497775530", "D4346", "$130.00 ", "$65.00 "),
        row("1234567893", "D0180", "$100.00 ", "$100.00 "),
    );
    let rows = read(&csv);
    assert_eq!(net_fees(&rows), [8125, 1625]);
    let first = rows[0].as_ref().unwrap();
    assert_eq!(
        first.provider_npi().as_str(),
        "1497775530",
        "`Provider NPI`, not `Billing NPI`"
    );
    assert_eq!(first.quadrant(), Some("UR"));
    assert_eq!(first.subscriber_number(), "3730189502");
}

#[test]
fn bad_rows_are_named_by_index_line_and_field_and_the_rest_still_read() {
    let csv = "\
service date,submitted procedure,quadrant,Plan/Group #,Subscriber#,Provider NPI,provider fees,Allowed fees,member coinsurance,member copay
3/28/18 0:00,D0180,,GRP-1000,3730189502,1497775530,$100.00 ,$100.00 ,$0.00 ,$0.00 
3/28/18 0:00,X0180,,GRP-1000,3730189502,1234567890,$100.001,$100.00 ,$0.00 ,$0.00 
3/28/18 0:00,D0180,,GRP-1000,3730189502,1497775530,$100.00 
3/31/18 0:00,D0180,,GRP-1000,3730189502,1497775530,$100.00 ,$100.00 ,$0.00 ,$0.00 
";
    let rows = read(csv);
    assert_eq!(rows.len(), 4);
    assert!(rows[0].is_ok() && rows[3].is_ok());
    let fields = |r: &Result<Claim, RowRejection>| -> Vec<(String, Invalid)> {
        r.as_ref()
            .unwrap_err()
            .problems
            .iter()
            .map(|p| (p.field.clone().unwrap().into_owned(), p.reason.clone()))
            .collect()
    };
    let second = rows[1].as_ref().unwrap_err();
    assert_eq!((second.index, second.line), (1, Some(3)));
    assert_eq!(
        fields(&rows[1]),
        [
            ("submitted_procedure".into(), Invalid::NotACdtCode),
            ("provider_npi".into(), Invalid::NpiCheckDigit),
            ("provider_fees".into(), Invalid::TooManyDecimals),
        ]
    );
    assert_eq!(rows[2].as_ref().unwrap_err().index, 2);
    assert_eq!(
        fields(&rows[2]),
        [
            ("allowed_fees".into(), Invalid::Missing),
            ("member_coinsurance".into(), Invalid::Missing),
            ("member_copay".into(), Invalid::Missing),
        ],
        "a short row misses its last fields"
    );
}

#[test]
fn a_cell_that_is_not_utf8_is_refused_by_name() {
    let csv = b"service date,submitted procedure,Plan/Group #,Subscriber#,Provider NPI,\
provider fees,Allowed fees,member coinsurance,member copay,notes\n3/28/18 0:00,D0180,GRP-\xff,\
3730189502,1497775530,$1.00,$1.00,$0.00,$0.00,\n3/28/18 0:00,D0180,GRP-2,3730189502,1497775530,\
$2.00,$1.00,$0.00,$0.00,\n3/28/18 0:00,D0180,GRP-3,3730189502,1497775530,$3.00,$1.00,$0.00,\
$0.00,caf\xe9\n";
    let rows: Vec<_> = csv_rows(&csv[..]).unwrap().map(Result::unwrap).collect();
    let rejection = rows[0].as_ref().unwrap_err();
    assert_eq!(rejection.line, Some(2));
    let problems = &rejection.problems;
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].field.as_deref(), Some("plan_group_number"));
    assert_eq!(problems[0].reason, Invalid::NotUtf8);
    // The rows after it read as before, and bytes that are not text in a column that is no
    // field do not matter.
    let second = rows[1].as_ref().unwrap();
    assert_eq!(second.plan_group_number(), "GRP-2");
    assert_eq!(second.net_fee().amount_minor, 100);
    let third = rows[2].as_ref().unwrap();
    assert_eq!(third.plan_group_number(), "GRP-3");
    assert_eq!(third.net_fee().amount_minor, 200);
}

#[test]
fn a_header_without_a_field_or_with_one_twice_is_refused() {
    let missing = csv_rows(&b"service date,submitted procedure,Provider NPI\n"[..]).err();
    assert_eq!(
        missing,
        Some(ClaimError::MissingColumns(vec![
            "plan_group_number",
            "subscriber_number",
            "provider_fees",
            "allowed_fees",
            "member_coinsurance",
            "member_copay",
        ]))
    );
    let twice = "service date,submitted procedure,Plan/Group #,Subscriber#,Provider NPI,\
                 provider fees,Allowed fees,member coinsurance,member copay,PROVIDER_NPI\n";
    assert_eq!(
        csv_rows(twice.as_bytes()).err(),
        Some(ClaimError::DuplicateColumn("provider_npi"))
    );
    assert_eq!(csv_rows(&b""[..]).err(), Some(ClaimError::NoHeader));
}

/// An endless CSV: the reader must hand out rows without reading the whole input first.
struct Endless {
    pending: Vec<u8>,
    rows_made: u64,
}

impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pending.is_empty() {
            self.rows_made += 1;
            self.pending =
                b"3/28/18 0:00,D0180,,GRP-1000,3730189502,1497775530,$1.00,$0.50,$0.00,$0.00\n"
                    .to_vec();
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}

#[test]
fn rows_stream_from_the_reader_one_at_a_time() {
    let header = SAMPLE_CSV.lines().next().unwrap();
    let mut source = Endless {
        pending: format!("{header}\n").into_bytes(),
        rows_made: 0,
    };
    let rows = csv_rows(&mut source).unwrap();
    let total: i64 = rows
        .take(20_000)
        .map(|r| r.unwrap().unwrap().net_fee().amount_minor)
        .sum();
    assert_eq!(total, 20_000 * 50);
    assert!(
        source.rows_made < 20_200,
        "read {} rows to hand out 20000",
        source.rows_made
    );
}
