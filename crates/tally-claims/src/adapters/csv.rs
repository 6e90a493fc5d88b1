//! Claims from CSV as payers export it, one record at a time (constant memory, whatever the file
//! size), validated exactly as JSON rows are.
//!
//! Header names are matched after folding: `#` reads as `number`, then everything but ASCII
//! letters and digits is dropped and letters are lower-cased. So `service date`, `Plan/Group #`,
//! `Subscriber#`, `Provider NPI` and a quoted header broken over two lines all find their field
//! (`plan_group_number` folds to `plangroupnumber` as `Plan/Group #` does). Columns that match no
//! field are ignored; every field but `quadrant` needs a column. Blank lines and rows whose every
//! cell is blank are skipped (a blank row still counts for the indexes of the rows after it).

use std::io::Read;

use ::csv::{ByteRecord, Reader, ReaderBuilder, StringRecord};

use crate::domain::{Claim, ClaimError, ClaimRow, Field, Invalid, RowProblem, RowRejection};

/// The claims of a CSV file, row by row: `Err` when the file cannot be read any further, else
/// the row's claim or the reasons it was refused.
pub struct CsvRows<R> {
    reader: Reader<R>,
    /// The column of each field, in [`Field::ALL`] order.
    columns: [Option<usize>; 10],
    record: ByteRecord,
    next_index: u64,
    failed: bool,
}

static NOT_UTF8: Invalid = Invalid::NotUtf8;

/// Reads the header of a CSV file and returns its rows; refuses a header that lacks a field.
pub fn csv_rows<R: Read>(reader: R) -> Result<CsvRows<R>, ClaimError> {
    let mut reader = ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(reader);
    let header = reader.byte_headers().map_err(unreadable)?;
    if header.iter().all(|h| h.trim_ascii().is_empty()) {
        return Err(ClaimError::NoHeader);
    }
    let mut columns = [None; 10];
    for (column, name) in header.iter().enumerate() {
        let folded = fold(name);
        let Some(field) = Field::ALL
            .into_iter()
            .find(|f| fold(f.name().as_bytes()) == folded)
        else {
            continue;
        };
        let slot = &mut columns[field as usize];
        if slot.is_some() {
            return Err(ClaimError::DuplicateColumn(field.name()));
        }
        *slot = Some(column);
    }
    let missing: Vec<&'static str> = Field::ALL
        .into_iter()
        .filter(|f| f.required() && columns[*f as usize].is_none())
        .map(Field::name)
        .collect();
    if !missing.is_empty() {
        return Err(ClaimError::MissingColumns(missing));
    }
    Ok(CsvRows {
        reader,
        columns,
        record: ByteRecord::new(),
        next_index: 0,
        failed: false,
    })
}

/// `Plan/Group #` -> `plangroupnumber`; `plan_group_number` -> `plangroupnumber`.
fn fold(name: &[u8]) -> String {
    let mut folded = String::with_capacity(name.len());
    for &b in name {
        match b {
            b'#' => folded.push_str("number"),
            b if b.is_ascii_alphanumeric() => folded.push(char::from(b.to_ascii_lowercase())),
            _ => {}
        }
    }
    folded
}

fn unreadable(e: ::csv::Error) -> ClaimError {
    ClaimError::Unreadable(e.to_string())
}

impl<R: Read> CsvRows<R> {
    /// The claim of the record just read. A record that is UTF-8 throughout (checked at once,
    /// the usual case) is read as text; otherwise each field is checked, and those that are not
    /// text are refused.
    fn claim(&mut self, index: u64) -> Result<Claim, RowRejection> {
        let line = self.record.position().map(|p| p.line());
        let rejection = |problems| RowRejection {
            index,
            line,
            problems,
        };
        let (claim, record) = match StringRecord::from_byte_record(std::mem::take(&mut self.record))
        {
            Ok(text) => {
                let claim = self.validate(|c| text.get(c).map(Ok));
                (claim, text.into_byte_record())
            }
            Err(e) => {
                let record = e.into_byte_record();
                let claim = self.validate(|c| record.get(c).map(std::str::from_utf8));
                (claim, record)
            }
        };
        self.record = record;
        claim.map_err(rejection)
    }

    /// The claim of the cells `cell` gives by column index: a cell that is not UTF-8 is refused,
    /// a column the file does not have is absent.
    fn validate<'a>(
        &self,
        cell: impl Fn(usize) -> Option<Result<&'a str, std::str::Utf8Error>>,
    ) -> Result<Claim, Vec<RowProblem>> {
        let mut row = ClaimRow::default();
        for field in Field::ALL {
            match self.columns[field as usize].and_then(&cell) {
                Some(Ok(text)) => row.set(field, text),
                Some(Err(_)) => row.refuse(field, &NOT_UTF8),
                None => {}
            }
        }
        row.validate()
    }
}

impl<R: Read> Iterator for CsvRows<R> {
    type Item = Result<Result<Claim, RowRejection>, ClaimError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            match self.reader.read_byte_record(&mut self.record) {
                Ok(false) => return None,
                Ok(true) => {}
                Err(e) => {
                    self.failed = true;
                    return Some(Err(unreadable(e)));
                }
            }
            let index = self.next_index;
            self.next_index += 1;
            if self.record.iter().all(|cell| cell.trim_ascii().is_empty()) {
                continue;
            }
            return Some(Ok(self.claim(index)));
        }
    }
}
