//! Claims from a JSON list of rows with document 002's field names, validated exactly as CSV rows
//! are. Text fields are JSON strings; amounts and group, subscriber and provider numbers may also
//! be JSON numbers in plain notation (`"provider_npi": 1497775530`, `"provider_fees": 150.5`; not
//! `1.505e2`), read from their raw text so that nothing passes through a binary floating-point
//! number. `null` is an absent field. A field that is not a claim field is refused, so that a
//! misspelt optional field is not silently lost.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use crate::domain::{Claim, ClaimRow, Field, Invalid, RowProblem, RowRejection};

/// The claims of a JSON list, row by row.
pub fn json_rows(rows: &[Box<RawValue>]) -> impl Iterator<Item = Result<Claim, RowRejection>> + '_ {
    rows.iter()
        .enumerate()
        .map(|(index, raw)| json_row(index as u64, raw))
}

fn json_row(index: u64, raw: &RawValue) -> Result<Claim, RowRejection> {
    let reject = |problems| RowRejection {
        index,
        line: None,
        problems,
    };
    let Ok(object) = serde_json::from_str::<BTreeMap<String, Box<RawValue>>>(raw.get()) else {
        return Err(reject(vec![RowProblem::row(Invalid::NotAnObject)]));
    };
    let mut texts = Vec::with_capacity(object.len());
    let mut unknown = Vec::new();
    for (key, value) in &object {
        match Field::from_name(key) {
            Some(field) => texts.push((field, text(field, value))),
            None => unknown.push(RowProblem {
                field: Some(key.clone().into()),
                reason: Invalid::UnknownField,
            }),
        }
    }
    let mut row = ClaimRow::default();
    for (field, text) in &texts {
        match text {
            Ok(Some(text)) => row.set(*field, text),
            Ok(None) => {}
            Err(reason) => row.refuse(*field, reason),
        }
    }
    for problem in unknown {
        row.refuse_other(problem);
    }
    row.validate().map_err(reject)
}

/// The text of one field's JSON value; `None` for `null`.
fn text(field: Field, value: &RawValue) -> Result<Option<String>, Invalid> {
    let takes_numbers = !matches!(
        field,
        Field::ServiceDate | Field::SubmittedProcedure | Field::Quadrant
    );
    let raw = value.get();
    match raw.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(raw)
            .map(Some)
            .map_err(|_| Invalid::NotUtf8),
        Some(b'n') => Ok(None),
        Some(b'-' | b'0'..=b'9') if takes_numbers => Ok(Some(raw.to_owned())),
        _ if takes_numbers => Err(Invalid::WrongJsonType("a string or a number")),
        _ => Err(Invalid::WrongJsonType("a string")),
    }
}
