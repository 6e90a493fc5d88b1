//! Everything the claims service refuses, and why.

use std::borrow::Cow;

/// Why one field of a claim row is refused. The messages complete a sentence that starts with the
/// field's name (`provider_npi must be exactly 10 digits`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("is required")]
    Missing,
    #[error("must be at most {0} characters long")]
    TooLong(usize),
    #[error("must not contain control characters")]
    ControlCharacters,
    #[error("must be a CDT procedure code: `D` followed by four digits, such as D0180")]
    NotACdtCode,
    #[error("must be exactly 10 digits")]
    NpiNotTenDigits,
    #[error("is not a valid NPI: its check digit is wrong (Luhn check with prefix 80840)")]
    NpiCheckDigit,
    #[error("must be an amount such as $150.00 (the dollar sign is optional)")]
    NotAnAmount,
    #[error("has more than two decimals: amounts are in dollars and cents")]
    TooManyDecimals,
    #[error("must not be negative")]
    NegativeAmount,
    #[error("must be at most $10,000,000.00")]
    AmountTooLarge,
    #[error(
        "must be a date such as 3/28/18 0:00, 03/28/2018, 2018-03-28 0:00:00 or \
         2018-03-28T00:00:00Z"
    )]
    NotADate,
    #[error("is not valid UTF-8")]
    NotUtf8,
    #[error("must be {0}")]
    WrongJsonType(&'static str),
    #[error("is not a claim field")]
    UnknownField,
    #[error("must be a JSON object with the claim's fields")]
    NotAnObject,
}

/// One refused field of a row; `field` is `None` when the row as a whole is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    pub field: Option<Cow<'static, str>>,
    pub reason: Invalid,
}

impl RowProblem {
    pub fn field(name: &'static str, reason: Invalid) -> Self {
        Self {
            field: Some(Cow::Borrowed(name)),
            reason,
        }
    }

    pub fn row(reason: Invalid) -> Self {
        Self {
            field: None,
            reason,
        }
    }
}

/// A row that is not a valid claim, with every reason at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowRejection {
    /// The row's 0-based index among the data rows (a CSV header is not a row; a JSON list's
    /// first element is row 0).
    pub index: u64,
    /// The 1-based line of the file where a CSV record starts; `None` for JSON.
    pub line: Option<u64>,
    pub problems: Vec<RowProblem>,
}

/// What the claims service refuses as a whole (row-level reasons are in [`RowRejection`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("{} of {rows} rows are invalid; nothing was stored", rejections.len())]
    InvalidRows {
        rejections: Vec<RowRejection>,
        rows: u64,
    },
    #[error("the request holds no claim")]
    NoClaims,
    #[error(
        "a request holds at most {max} claims; import larger files with `tally import-claims`"
    )]
    TooManyClaims { max: usize },
    #[error("limit must be between 1 and {max}")]
    LimitOutOfRange { max: i64 },
    #[error("the CSV has no header row")]
    NoHeader,
    #[error("the CSV header has no column for {}", .0.join(", "))]
    MissingColumns(Vec<&'static str>),
    #[error("the CSV header has more than one column for {0}")]
    DuplicateColumn(&'static str),
    #[error("the CSV cannot be read: {0}")]
    Unreadable(String),
}
