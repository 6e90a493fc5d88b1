//! Classifies database errors by what the caller can do about them.

/// What a database error means to a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorKind {
    UniqueViolation,
    CheckViolation,
    ForeignKeyViolation,
    /// A deadlock, serialization failure or busy database: the transaction may be retried.
    Retryable,
    Other,
}

pub fn classify(error: &sqlx::Error) -> DbErrorKind {
    let Some(db) = error.as_database_error() else {
        return DbErrorKind::Other;
    };
    match db.kind() {
        sqlx::error::ErrorKind::UniqueViolation => return DbErrorKind::UniqueViolation,
        sqlx::error::ErrorKind::CheckViolation => return DbErrorKind::CheckViolation,
        sqlx::error::ErrorKind::ForeignKeyViolation => return DbErrorKind::ForeignKeyViolation,
        _ => {}
    }
    match db.code().as_deref() {
        // PostgreSQL: serialization_failure, deadlock_detected.
        Some("40001") | Some("40P01") => DbErrorKind::Retryable,
        // SQLite: SQLITE_BUSY, SQLITE_LOCKED and their extended codes.
        Some(code) if is_sqlite_busy(code) => DbErrorKind::Retryable,
        _ => DbErrorKind::Other,
    }
}

fn is_sqlite_busy(code: &str) -> bool {
    code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
}
