//! The `auth` database: tokens by id, with their secret's digest and scopes.

use serde::Serialize;
use sqlx::Row as _;
use tally_db::{Db, ServiceSchema};

use crate::scope::Scopes;
use crate::token::IssuedToken;

pub static SCHEMA: std::sync::LazyLock<ServiceSchema> =
    std::sync::LazyLock::new(|| ServiceSchema {
        name: "auth",
        sqlite: sqlx::migrate!("migrations/sqlite"),
        postgres: sqlx::migrate!("migrations/postgres"),
    });

/// A token as listed: never its secret.
#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub scopes: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// Creates a token with `scopes`; its text is in the result and nowhere else.
pub async fn create(db: &Db, name: &str, scopes: &Scopes) -> anyhow::Result<IssuedToken> {
    let token = IssuedToken::generate()?;
    let mut tx = db.begin_write().await?;
    insert(&mut tx, &token, name, scopes).await?;
    tx.commit().await?;
    Ok(token)
}

async fn insert(
    tx: &mut tally_db::WriteTx,
    token: &IssuedToken,
    name: &str,
    scopes: &Scopes,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO api_tokens (id, name, secret_sha256, scopes, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&token.id)
    .bind(name)
    .bind(&token.secret_sha256)
    .bind(scopes.to_string())
    .bind(tally_kernel::time::to_db(tally_kernel::time::now()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Creates the first admin token of a new installation; `None` when one was made before (by
/// this process or another one starting at the same time).
pub async fn first_admin_token(db: &Db) -> anyhow::Result<Option<IssuedToken>> {
    let mut tx = db.begin_write().await?;
    let claimed = sqlx::query(
        "INSERT INTO auth_bootstrap (id, created_at) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
    )
    .bind(tally_kernel::time::to_db(tally_kernel::time::now()))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if claimed == 0 {
        return Ok(None);
    }
    let token = IssuedToken::generate()?;
    insert(&mut tx, &token, "admin", &Scopes::admin()).await?;
    tx.commit().await?;
    Ok(Some(token))
}

/// Revokes a token; false when no active token has that id.
pub async fn revoke(db: &Db, id: &str) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    let done =
        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(tally_kernel::time::to_db(tally_kernel::time::now()))
            .bind(id)
            .execute(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

pub async fn list(db: &Db) -> Result<Vec<TokenInfo>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, name, scopes, created_at, revoked_at FROM api_tokens ORDER BY created_at, id",
    )
    .fetch_all(db.reader())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(TokenInfo {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
                scopes: r.try_get(2)?,
                created_at: r.try_get(3)?,
                revoked_at: r.try_get(4)?,
            })
        })
        .collect()
}

/// What verification needs of a stored token.
#[derive(Debug, Clone)]
pub(crate) struct StoredToken {
    pub secret_sha256: String,
    pub scopes: String,
    pub revoked: bool,
}

pub(crate) async fn find(db: &Db, id: &str) -> Result<Option<StoredToken>, sqlx::Error> {
    let row = sqlx::query("SELECT secret_sha256, scopes, revoked_at FROM api_tokens WHERE id = $1")
        .bind(id)
        .fetch_optional(db.reader())
        .await?;
    row.map(|r| {
        let revoked: Option<String> = r.try_get(2)?;
        Ok(StoredToken {
            secret_sha256: r.try_get(0)?,
            scopes: r.try_get(1)?,
            revoked: revoked.is_some(),
        })
    })
    .transpose()
}
