//! The record of the claims files imported, one row per file content (its SHA-256).
//!
//! An import registers its file before it stores anything ([`begin`]). Each of its transactions
//! then moves the record's `rows_done` from where the transaction before left it to the end of
//! its own rows ([`crate::BulkWriter::advance_import`]), in the same transaction as the claims:
//! the record always says how many of the file's rows are done. A file finished already is not
//! imported again; a file whose import stopped part way (a crash, a lost connection, a failed
//! transaction) resumes after `rows_done`. The move is a compare-and-set on `rows_done`, so two
//! imports of one file at once cannot both store the same rows: the second one fails.

use std::io::Read as _;
use std::path::Path;

use sha2::{Digest as _, Sha256};
use sqlx::Row as _;
use tally_db::Db;
use tally_kernel::time;

/// Where the import of one file stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileImport {
    /// The SHA-256 of the file's content, in lowercase hex: what identifies the file.
    pub file_sha256: String,
    /// The data rows (accepted or rejected) from the file's start whose claims are stored.
    pub rows_done: u64,
    /// How many of those rows were claims stored.
    pub accepted: u64,
    pub started_at: String,
    /// When the whole file was done; `None` while an import has rows left.
    pub finished_at: Option<String>,
}

impl FileImport {
    pub fn is_finished(&self) -> bool {
        self.finished_at.is_some()
    }

    /// The rows done that were rejected.
    pub fn rejected(&self) -> u64 {
        self.rows_done - self.accepted
    }
}

/// The SHA-256 of the file's content, in lowercase hex (read in blocks: any size).
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut block)?;
        if n == 0 {
            break;
        }
        hasher.update(&block[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The import of the file whose content has this digest: registered now with nothing done when
/// it is new, else as it was left.
pub async fn begin(db: &Db, file_sha256: &str, file_name: &str) -> Result<FileImport, sqlx::Error> {
    let now = time::to_db(time::now());
    let mut tx = db.begin_write().await?;
    sqlx::query(
        "INSERT INTO claim_imports (file_sha256, file_name, rows_done, accepted, started_at, \
         updated_at) VALUES ($1, $2, 0, 0, $3, $3) ON CONFLICT (file_sha256) DO NOTHING",
    )
    .bind(file_sha256)
    .bind(file_name)
    .bind(&now)
    .execute(&mut *tx)
    .await?;
    db.commit(tx).await?;
    Ok(find(db, file_sha256)
        .await?
        .expect("the import was registered above"))
}

/// The import of the file with this digest, if there was one.
pub async fn find(db: &Db, file_sha256: &str) -> Result<Option<FileImport>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT rows_done, accepted, started_at, finished_at FROM claim_imports \
         WHERE file_sha256 = $1",
    )
    .bind(file_sha256)
    .fetch_optional(db.reader())
    .await?;
    row.map(|r| {
        Ok(FileImport {
            file_sha256: file_sha256.to_owned(),
            rows_done: count(r.try_get(0)?)?,
            accepted: count(r.try_get(1)?)?,
            started_at: r.try_get(2)?,
            finished_at: r.try_get(3)?,
        })
    })
    .transpose()
}

/// Marks the import finished, its file having `rows` data rows in all, if its record still
/// says `rows_done_before` rows were done (the rows after those were all rejected); `false` if
/// another import moved it meanwhile.
pub async fn finish(
    db: &Db,
    file_sha256: &str,
    rows_done_before: u64,
    rows: u64,
) -> Result<bool, sqlx::Error> {
    let now = time::to_db(time::now());
    let mut tx = db.begin_write().await?;
    let done = sqlx::query(
        "UPDATE claim_imports SET rows_done = $1, finished_at = $2, updated_at = $2 \
         WHERE file_sha256 = $3 AND rows_done = $4 AND finished_at IS NULL",
    )
    .bind(signed(rows)?)
    .bind(&now)
    .bind(file_sha256)
    .bind(signed(rows_done_before)?)
    .execute(&mut *tx)
    .await?;
    db.commit(tx).await?;
    Ok(done.rows_affected() == 1)
}

/// The statement with which a transaction moves an unfinished import's `rows_done` from `$5`
/// to `$1` and adds the `$2` claims it stored, at the time `$3`.
pub(crate) const ADVANCE: &str = "UPDATE claim_imports SET rows_done = $1, \
     accepted = accepted + $2, updated_at = $3 \
     WHERE file_sha256 = $4 AND rows_done = $5 AND finished_at IS NULL";

pub(crate) fn signed(n: u64) -> Result<i64, sqlx::Error> {
    i64::try_from(n).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

fn count(n: i64) -> Result<u64, sqlx::Error> {
    u64::try_from(n).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}
