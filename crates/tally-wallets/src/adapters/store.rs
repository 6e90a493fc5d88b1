//! The wallets store: loads accounts (locked for the transaction), lets the domain decide, then
//! writes balances, the journal, the entries and the outbox in the same transaction.

use sqlx::any::AnyRow;
use sqlx::Row as _;
use tally_bus::outbox;
use tally_db::{classify, Db, DbErrorKind, ServiceSchema, WriteTx};
use tally_http::Failure;
use tally_kernel::time::{self, Timestamp};
use tally_kernel::{Currency, Decimal, EventMeta, Money};

use crate::domain::events::WalletEvent;
use crate::domain::ledger::{self, Account, AccountKind, Hold, HoldStatus, Posting};
use crate::domain::{ClientName, Login, WalletError};
use crate::SERVICE;

pub static SCHEMA: std::sync::LazyLock<ServiceSchema> =
    std::sync::LazyLock::new(|| ServiceSchema {
        name: SERVICE,
        sqlite: sqlx::migrate!("migrations/sqlite"),
        postgres: sqlx::migrate!("migrations/postgres"),
    });

/// Most history items returned at once.
pub const MAX_HISTORY_PAGE: i64 = 500;

#[derive(Debug, Clone)]
pub struct Client {
    pub id: i64,
    pub login: String,
    pub name: String,
    pub status: String,
}

/// Which way money crosses the ledger's edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Deposit,
    Withdrawal,
}

/// The result of a deposit or a withdrawal.
#[derive(Debug, Clone)]
pub struct Movement {
    pub transaction_number: String,
    pub wallet: Account,
    pub amount: Money,
}

#[derive(Debug, Clone)]
pub struct TransferReceipt {
    pub transaction_number: String,
    pub from: Account,
    pub to: Account,
    pub amount: Money,
}

#[derive(Debug, Clone)]
pub struct HoldReceipt {
    pub hold: Hold,
    pub wallet: Account,
    pub transaction_number: Option<String>,
}

#[derive(Debug, Clone)]
pub struct HistoryItem {
    pub cursor: i64,
    pub transaction_number: String,
    pub kind: String,
    pub amount: Money,
    pub balance_after: Money,
    pub counterparty_wallet_id: Option<i64>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct CurrencySummary {
    pub currency: Currency,
    pub wallets_minor: i64,
    pub external_minor: i64,
    pub transfer_count: i64,
    /// Accounts whose balance differs from the sum of their entries (always 0).
    pub unbalanced_accounts: i64,
}

impl From<WalletError> for Failure {
    fn from(e: WalletError) -> Self {
        Failure::Refused(super::routes::problem(&e))
    }
}

fn amount(decimal: &Decimal, currency: Currency) -> Result<Money, WalletError> {
    decimal
        .to_positive_money(currency)
        .map_err(|error| WalletError::Amount {
            field: "amount",
            error,
        })
}

/// Checks an explicit `currency` in a request against the wallet's.
fn check_currency(wallet: &Account, asked: Option<Currency>) -> Result<(), WalletError> {
    match asked {
        Some(c) if c != wallet.currency => Err(WalletError::CurrencyMismatch {
            wallet_id: wallet.id,
            expected: wallet.currency,
            got: c,
            field: "currency",
        }),
        _ => Ok(()),
    }
}

const ACCOUNT_COLUMNS: &str = "id, kind, client_id, currency, balance_minor, held_minor, status";

fn account_from_row(row: &AnyRow) -> Result<Account, sqlx::Error> {
    let kind: String = row.try_get(1)?;
    let currency: String = row.try_get(3)?;
    let status: String = row.try_get(6)?;
    Ok(Account {
        id: row.try_get(0)?,
        kind: if kind == "external" {
            AccountKind::External
        } else {
            AccountKind::Wallet
        },
        client_id: row.try_get(2)?,
        currency: Currency::parse(&currency).map_err(|e| sqlx::Error::Decode(e.into()))?,
        balance_minor: row.try_get(4)?,
        held_minor: row.try_get(5)?,
        open: status == "open",
    })
}

#[derive(Clone)]
pub struct Store {
    db: Db,
}

/// The outcome of saving balances, `debited` being the account whose balance went down: the
/// domain should have refused an overdraft, and the database's checks catch any it let through.
fn balances_saved<T>(result: Result<T, sqlx::Error>, debited: &Account) -> Result<(), Failure> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if classify(&e) == DbErrorKind::CheckViolation => {
            tracing::error!(
                wallet_id = debited.id,
                "balance check constraint refused a posting"
            );
            Err(WalletError::Overdraft(debited.id).into())
        }
        Err(e) => Err(e.into()),
    }
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Locks and loads the accounts `ids`, in id order (so that two transactions never wait on
    /// each other in opposite orders). Unknown wallet ids are refused with 404.
    async fn lock(&self, tx: &mut WriteTx, ids: &[i64]) -> Result<Vec<Account>, Failure> {
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let placeholders: Vec<String> = (1..=sorted.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id IN ({}) ORDER BY id{}",
            placeholders.join(", "),
            self.db.for_update()
        );
        let mut query = sqlx::query(&sql);
        for id in &sorted {
            query = query.bind(*id);
        }
        let rows = query.fetch_all(&mut **tx).await?;
        let accounts = rows
            .iter()
            .map(account_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        ids.iter()
            .map(|id| {
                accounts
                    .iter()
                    .find(|a| a.id == *id)
                    .cloned()
                    .ok_or(Failure::from(WalletError::WalletNotFound(*id)))
            })
            .collect()
    }

    /// Locks a wallet and its currency's external account.
    async fn lock_with_external(
        &self,
        tx: &mut WriteTx,
        wallet_id: i64,
    ) -> Result<(Account, Account), Failure> {
        let wallet = self.wallet_in(tx, wallet_id).await?;
        let external = Account::external_id(wallet.currency);
        let mut locked = self.lock(tx, &[wallet_id, external]).await?;
        let external = locked.pop().expect("two accounts were locked");
        let wallet = locked.pop().expect("two accounts were locked");
        Ok((wallet, external))
    }

    async fn wallet_in(&self, tx: &mut WriteTx, wallet_id: i64) -> Result<Account, Failure> {
        let sql =
            format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1 AND kind = 'wallet'");
        let row = sqlx::query(&sql)
            .bind(wallet_id)
            .fetch_optional(&mut **tx)
            .await?;
        match row {
            Some(row) => Ok(account_from_row(&row)?),
            None => Err(WalletError::WalletNotFound(wallet_id).into()),
        }
    }

    /// Writes a posting: the journal row, both balances (one statement), both entries (one
    /// statement). Returns the transaction number.
    async fn post(
        &self,
        tx: &mut WriteTx,
        kind: &str,
        posting: &Posting,
        debit: &Account,
        credit: &Account,
        hold_id: Option<&str>,
    ) -> Result<String, Failure> {
        let number = tally_kernel::id::new_v7().to_string();
        let now = time::to_db(time::now());
        sqlx::query(
            "INSERT INTO transfers (id, kind, debit_account_id, credit_account_id, amount_minor, \
             currency, hold_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&number)
        .bind(kind)
        .bind(posting.debit)
        .bind(posting.credit)
        .bind(posting.amount.amount_minor)
        .bind(posting.amount.currency.code())
        .bind(hold_id)
        .bind(&now)
        .execute(&mut **tx)
        .await?;
        let result = sqlx::query(
            "UPDATE accounts SET \
             balance_minor = CASE WHEN id = $1 THEN $2 ELSE $3 END, \
             held_minor = CASE WHEN id = $4 THEN $5 ELSE $6 END \
             WHERE id IN ($7, $8)",
        )
        .bind(debit.id)
        .bind(debit.balance_minor)
        .bind(credit.balance_minor)
        .bind(debit.id)
        .bind(debit.held_minor)
        .bind(credit.held_minor)
        .bind(debit.id)
        .bind(credit.id)
        .execute(&mut **tx)
        .await;
        balances_saved(result, debit)?;
        sqlx::query(
            "INSERT INTO entries (account_id, transfer_id, amount_minor, balance_after_minor, \
             created_at) VALUES ($1, $2, $3, $4, $5), ($6, $7, $8, $9, $10)",
        )
        .bind(debit.id)
        .bind(&number)
        .bind(-posting.amount.amount_minor)
        .bind(debit.balance_minor)
        .bind(&now)
        .bind(credit.id)
        .bind(&number)
        .bind(posting.amount.amount_minor)
        .bind(credit.balance_minor)
        .bind(&now)
        .execute(&mut **tx)
        .await?;
        Ok(number)
    }

    async fn save_balances(&self, tx: &mut WriteTx, account: &Account) -> Result<(), Failure> {
        let result =
            sqlx::query("UPDATE accounts SET balance_minor = $1, held_minor = $2 WHERE id = $3")
                .bind(account.balance_minor)
                .bind(account.held_minor)
                .bind(account.id)
                .execute(&mut **tx)
                .await;
        balances_saved(result, account)
    }

    async fn insert_wallet(
        &self,
        tx: &mut WriteTx,
        client_id: i64,
        currency: Currency,
    ) -> Result<Account, Failure> {
        let now = time::to_db(time::now());
        // The currency's external account exists before any wallet of that currency.
        sqlx::query(
            "INSERT INTO accounts (id, kind, client_id, currency, status, created_at) \
             VALUES ($1, 'external', NULL, $2, 'open', $3) ON CONFLICT (id) DO NOTHING",
        )
        .bind(Account::external_id(currency))
        .bind(currency.code())
        .bind(&now)
        .execute(&mut **tx)
        .await?;
        let row = sqlx::query(
            "INSERT INTO accounts (kind, client_id, currency, status, created_at) \
             VALUES ('wallet', $1, $2, 'open', $3) RETURNING id",
        )
        .bind(client_id)
        .bind(currency.code())
        .bind(&now)
        .fetch_one(&mut **tx)
        .await?;
        Ok(Account {
            id: row.try_get(0)?,
            kind: AccountKind::Wallet,
            client_id: Some(client_id),
            currency,
            balance_minor: 0,
            held_minor: 0,
            open: true,
        })
    }

    pub async fn create_client(
        &self,
        tx: &mut WriteTx,
        login: &Login,
        name: &ClientName,
        currency: Currency,
        meta: &EventMeta,
    ) -> Result<(Client, Account), Failure> {
        let inserted = sqlx::query(
            "INSERT INTO clients (login, name, status, created_at) VALUES ($1, $2, 'active', $3) \
             RETURNING id",
        )
        .bind(login.as_str())
        .bind(name.as_str())
        .bind(time::to_db(time::now()))
        .fetch_one(&mut **tx)
        .await;
        let row = match inserted {
            Err(e) if classify(&e) == DbErrorKind::UniqueViolation => {
                return Err(WalletError::LoginTaken.into())
            }
            other => other?,
        };
        let client = Client {
            id: row.try_get(0)?,
            login: login.as_str().to_owned(),
            name: name.as_str().to_owned(),
            status: "active".into(),
        };
        let wallet = self.insert_wallet(tx, client.id, currency).await?;
        let event = WalletEvent::ClientCreated {
            client_id: client.id,
            login: client.login.clone(),
            name: client.name.clone(),
            wallet_id: wallet.id,
            currency,
        };
        outbox::publish(&self.db, tx, SERVICE, meta, &[event]).await?;
        Ok((client, wallet))
    }

    /// Locks an active client; a removed one is refused.
    pub async fn active_client(&self, tx: &mut WriteTx, client_id: i64) -> Result<Client, Failure> {
        let client = self.client_in(tx, client_id).await?;
        if client.status != "active" {
            return Err(WalletError::ClientRemoved(client_id).into());
        }
        Ok(client)
    }

    /// A client's primary wallet: its open wallet with the lowest id (the one it was created
    /// with, while that is open). The client is locked, so it cannot be removed meanwhile.
    pub async fn primary_wallet(
        &self,
        tx: &mut WriteTx,
        client_id: i64,
    ) -> Result<Account, Failure> {
        self.active_client(tx, client_id).await?;
        let sql = format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE client_id = $1 AND kind = 'wallet' \
             AND status = 'open' ORDER BY id LIMIT 1"
        );
        let row = sqlx::query(&sql)
            .bind(client_id)
            .fetch_optional(&mut **tx)
            .await?;
        match row {
            Some(row) => Ok(account_from_row(&row)?),
            None => Err(WalletError::NoOpenWallet(client_id).into()),
        }
    }

    async fn client_in(&self, tx: &mut WriteTx, client_id: i64) -> Result<Client, Failure> {
        let sql = format!(
            "SELECT id, login, name, status FROM clients WHERE id = $1{}",
            self.db.for_update()
        );
        let row = sqlx::query(&sql)
            .bind(client_id)
            .fetch_optional(&mut **tx)
            .await?;
        let row = row.ok_or(WalletError::ClientNotFound(client_id))?;
        Ok(Client {
            id: row.try_get(0)?,
            login: row.try_get(1)?,
            name: row.try_get(2)?,
            status: row.try_get(3)?,
        })
    }

    pub async fn open_wallet(
        &self,
        tx: &mut WriteTx,
        client_id: i64,
        currency: Currency,
        meta: &EventMeta,
    ) -> Result<Account, Failure> {
        let client = self.client_in(tx, client_id).await?;
        if client.status != "active" {
            return Err(WalletError::ClientRemoved(client_id).into());
        }
        let wallet = self.insert_wallet(tx, client_id, currency).await?;
        let event = WalletEvent::WalletOpened {
            wallet_id: wallet.id,
            client_id,
            currency,
        };
        outbox::publish(&self.db, tx, SERVICE, meta, &[event]).await?;
        Ok(wallet)
    }

    /// Removes a client whose wallets are empty, closing them. Removing twice is a no-op.
    pub async fn remove_client(
        &self,
        tx: &mut WriteTx,
        client_id: i64,
        meta: &EventMeta,
    ) -> Result<(Client, Vec<Account>), Failure> {
        let mut client = self.client_in(tx, client_id).await?;
        let sql = format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE client_id = $1 ORDER BY id{}",
            self.db.for_update()
        );
        let rows = sqlx::query(&sql)
            .bind(client_id)
            .fetch_all(&mut **tx)
            .await?;
        let mut wallets = rows
            .iter()
            .map(account_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        if client.status == "removed" {
            return Ok((client, wallets));
        }
        if wallets
            .iter()
            .any(|w| w.balance_minor != 0 || w.held_minor != 0)
        {
            return Err(WalletError::ClientHasFunds(client_id).into());
        }
        sqlx::query("UPDATE accounts SET status = 'closed' WHERE client_id = $1")
            .bind(client_id)
            .execute(&mut **tx)
            .await?;
        sqlx::query("UPDATE clients SET status = 'removed' WHERE id = $1")
            .bind(client_id)
            .execute(&mut **tx)
            .await?;
        outbox::publish(
            &self.db,
            tx,
            SERVICE,
            meta,
            &[WalletEvent::ClientRemoved { client_id }],
        )
        .await?;
        client.status = "removed".into();
        for wallet in &mut wallets {
            wallet.open = false;
        }
        Ok((client, wallets))
    }

    /// A deposit into, or a withdrawal from, a wallet: money moving against the currency's
    /// external account.
    pub async fn move_external(
        &self,
        tx: &mut WriteTx,
        direction: Direction,
        wallet_id: i64,
        decimal: &Decimal,
        currency: Option<Currency>,
        meta: &EventMeta,
    ) -> Result<Movement, Failure> {
        let (mut wallet, mut external) = self.lock_with_external(tx, wallet_id).await?;
        check_currency(&wallet, currency)?;
        let amount = amount(decimal, wallet.currency)?;
        let (kind, posting, (debit, credit)) = match direction {
            Direction::Deposit => (
                "deposit",
                ledger::deposit(&wallet, &external, amount)?,
                (&mut external, &mut wallet),
            ),
            Direction::Withdrawal => (
                "withdrawal",
                ledger::withdraw(&wallet, &external, amount)?,
                (&mut wallet, &mut external),
            ),
        };
        posting.apply(debit, credit)?;
        let number = self.post(tx, kind, &posting, debit, credit, None).await?;
        let (transaction_number, amount_minor, balance_after_minor) =
            (number.clone(), amount.amount_minor, wallet.balance_minor);
        let event = match direction {
            Direction::Deposit => WalletEvent::FundsDeposited {
                transaction_number,
                wallet_id,
                amount_minor,
                currency: amount.currency,
                balance_after_minor,
            },
            Direction::Withdrawal => WalletEvent::FundsWithdrawn {
                transaction_number,
                wallet_id,
                amount_minor,
                currency: amount.currency,
                balance_after_minor,
            },
        };
        outbox::publish(&self.db, tx, SERVICE, meta, &[event]).await?;
        Ok(Movement {
            transaction_number: number,
            wallet,
            amount,
        })
    }

    pub async fn transfer(
        &self,
        tx: &mut WriteTx,
        from_id: i64,
        to_id: i64,
        decimal: &Decimal,
        currency: Option<Currency>,
        meta: &EventMeta,
    ) -> Result<TransferReceipt, Failure> {
        if from_id == to_id {
            return Err(WalletError::SameWallet.into());
        }
        let mut locked = self.lock(tx, &[from_id, to_id]).await?;
        let mut to = locked.pop().expect("two accounts were locked");
        let mut from = locked.pop().expect("two accounts were locked");
        if from.kind != AccountKind::Wallet {
            return Err(WalletError::WalletNotFound(from_id).into());
        }
        if to.kind != AccountKind::Wallet {
            return Err(WalletError::WalletNotFound(to_id).into());
        }
        check_currency(&from, currency)?;
        let amount = amount(decimal, from.currency)?;
        let posting = ledger::transfer(&from, &to, amount)?;
        posting.apply(&mut from, &mut to)?;
        let number = self
            .post(tx, "transfer", &posting, &from, &to, None)
            .await?;
        let event = WalletEvent::FundsTransferred {
            transaction_number: number.clone(),
            wallet_from_id: from_id,
            wallet_to_id: to_id,
            amount_minor: amount.amount_minor,
            currency: amount.currency,
            wallet_from_balance_after_minor: from.balance_minor,
            wallet_to_balance_after_minor: to.balance_minor,
        };
        outbox::publish(&self.db, tx, SERVICE, meta, &[event]).await?;
        Ok(TransferReceipt {
            transaction_number: number,
            from,
            to,
            amount,
        })
    }

    pub async fn place_hold(
        &self,
        tx: &mut WriteTx,
        wallet_id: i64,
        decimal: &Decimal,
        currency: Option<Currency>,
        reference: Option<&str>,
        meta: &EventMeta,
    ) -> Result<HoldReceipt, Failure> {
        let mut wallet = self.lock(tx, &[wallet_id]).await?.remove(0);
        if wallet.kind != AccountKind::Wallet {
            return Err(WalletError::WalletNotFound(wallet_id).into());
        }
        check_currency(&wallet, currency)?;
        let amount = amount(decimal, wallet.currency)?;
        ledger::place_hold(&mut wallet, amount)?;
        self.save_balances(tx, &wallet).await?;
        let hold = Hold {
            id: tally_kernel::id::new_v7().to_string(),
            wallet_id,
            amount,
            status: HoldStatus::Placed,
            captured_minor: 0,
        };
        let now = time::to_db(time::now());
        sqlx::query(
            "INSERT INTO holds (id, account_id, amount_minor, currency, status, captured_minor, \
             reference, created_at, updated_at) VALUES ($1, $2, $3, $4, 'placed', 0, $5, $6, $6)",
        )
        .bind(&hold.id)
        .bind(wallet_id)
        .bind(amount.amount_minor)
        .bind(amount.currency.code())
        .bind(reference)
        .bind(&now)
        .execute(&mut **tx)
        .await?;
        let event = WalletEvent::HoldPlaced {
            hold_id: hold.id.clone(),
            wallet_id,
            amount_minor: amount.amount_minor,
            currency: amount.currency,
            reference: reference.map(str::to_owned),
        };
        outbox::publish(&self.db, tx, SERVICE, meta, &[event]).await?;
        Ok(HoldReceipt {
            hold,
            wallet,
            transaction_number: None,
        })
    }

    /// Locks and loads a hold.
    pub async fn hold_in(&self, tx: &mut WriteTx, hold_id: &str) -> Result<Hold, Failure> {
        let sql = format!(
            "SELECT id, account_id, amount_minor, currency, status, captured_minor FROM holds \
             WHERE id = $1{}",
            self.db.for_update()
        );
        let row = sqlx::query(&sql)
            .bind(hold_id)
            .fetch_optional(&mut **tx)
            .await?;
        let row = row.ok_or_else(|| WalletError::HoldNotFound(hold_id.to_owned()))?;
        Ok(hold_from_row(&row)?)
    }

    async fn save_hold(&self, tx: &mut WriteTx, hold: &Hold) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE holds SET status = $1, captured_minor = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(hold.status.as_str())
        .bind(hold.captured_minor)
        .bind(time::to_db(time::now()))
        .bind(&hold.id)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Captures a hold (all of it, or `decimal` of it) into `to_id`, or into the currency's
    /// external account when no wallet is named (a payment leaving the ledger).
    pub async fn capture_hold(
        &self,
        tx: &mut WriteTx,
        hold_id: &str,
        decimal: Option<&Decimal>,
        to_id: Option<i64>,
        meta: &EventMeta,
    ) -> Result<HoldReceipt, Failure> {
        let mut hold = self.hold_in(tx, hold_id).await?;
        let target = to_id.unwrap_or(Account::external_id(hold.amount.currency));
        let mut locked = self.lock(tx, &[hold.wallet_id, target]).await?;
        let mut to = locked.pop().expect("two accounts were locked");
        let mut wallet = locked.pop().expect("two accounts were locked");
        if to_id.is_some() && to.kind != AccountKind::Wallet {
            return Err(WalletError::WalletNotFound(target).into());
        }
        let amount = decimal
            .map(|d| amount(d, hold.amount.currency))
            .transpose()?;
        let held_minor = hold.amount.amount_minor;
        let posting = ledger::capture_hold(&mut hold, &mut wallet, &to, amount)?;
        posting.apply(&mut wallet, &mut to)?;
        let number = self
            .post(tx, "hold_capture", &posting, &wallet, &to, Some(hold_id))
            .await?;
        self.save_hold(tx, &hold).await?;
        let event = WalletEvent::HoldCaptured {
            hold_id: hold.id.clone(),
            wallet_id: wallet.id,
            transaction_number: number.clone(),
            captured_minor: posting.amount.amount_minor,
            released_minor: held_minor - posting.amount.amount_minor,
            currency: posting.amount.currency,
            credited_account_id: to.id,
        };
        outbox::publish(&self.db, tx, SERVICE, meta, &[event]).await?;
        Ok(HoldReceipt {
            hold,
            wallet,
            transaction_number: Some(number),
        })
    }

    pub async fn release_hold(
        &self,
        tx: &mut WriteTx,
        hold_id: &str,
        meta: &EventMeta,
    ) -> Result<HoldReceipt, Failure> {
        let mut hold = self.hold_in(tx, hold_id).await?;
        let mut wallet = self.lock(tx, &[hold.wallet_id]).await?.remove(0);
        ledger::release_hold(&mut hold, &mut wallet)?;
        self.save_balances(tx, &wallet).await?;
        self.save_hold(tx, &hold).await?;
        let event = WalletEvent::HoldReleased {
            hold_id: hold.id.clone(),
            wallet_id: wallet.id,
            amount_minor: hold.amount.amount_minor,
            currency: hold.amount.currency,
        };
        outbox::publish(&self.db, tx, SERVICE, meta, &[event]).await?;
        Ok(HoldReceipt {
            hold,
            wallet,
            transaction_number: None,
        })
    }

    // Reads: no transaction, no locks.

    pub async fn client(
        &self,
        client_id: i64,
    ) -> Result<Option<(Client, Vec<Account>)>, sqlx::Error> {
        let row = sqlx::query("SELECT id, login, name, status FROM clients WHERE id = $1")
            .bind(client_id)
            .fetch_optional(self.db.reader())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let client = Client {
            id: row.try_get(0)?,
            login: row.try_get(1)?,
            name: row.try_get(2)?,
            status: row.try_get(3)?,
        };
        let sql =
            format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE client_id = $1 ORDER BY id");
        let rows = sqlx::query(&sql)
            .bind(client_id)
            .fetch_all(self.db.reader())
            .await?;
        let wallets = rows
            .iter()
            .map(account_from_row)
            .collect::<Result<_, _>>()?;
        Ok(Some((client, wallets)))
    }

    pub async fn wallet(&self, wallet_id: i64) -> Result<Option<Account>, sqlx::Error> {
        let sql =
            format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1 AND kind = 'wallet'");
        let row = sqlx::query(&sql)
            .bind(wallet_id)
            .fetch_optional(self.db.reader())
            .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    pub async fn hold(&self, hold_id: &str) -> Result<Option<Hold>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT id, account_id, amount_minor, currency, status, captured_minor FROM holds \
             WHERE id = $1",
        )
        .bind(hold_id)
        .fetch_optional(self.db.reader())
        .await?;
        row.as_ref().map(hold_from_row).transpose()
    }

    /// A wallet's entries, newest first, before the entry `before` (a cursor from a previous
    /// page).
    pub async fn history(
        &self,
        wallet: &Account,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<HistoryItem>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT e.id, e.transfer_id, e.amount_minor, e.balance_after_minor, e.created_at, \
             t.kind, CASE WHEN e.amount_minor < 0 THEN t.credit_account_id \
             ELSE t.debit_account_id END \
             FROM entries e JOIN transfers t ON t.id = e.transfer_id \
             WHERE e.account_id = $1 AND e.id < $2 ORDER BY e.id DESC LIMIT $3",
        )
        .bind(wallet.id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit.clamp(1, MAX_HISTORY_PAGE))
        .fetch_all(self.db.reader())
        .await?;
        rows.iter()
            .map(|row| {
                let amount_minor: i64 = row.try_get(2)?;
                let kind: String = row.try_get(5)?;
                let counterparty: i64 = row.try_get(6)?;
                let created: String = row.try_get(4)?;
                let direction = if amount_minor < 0 { "out" } else { "in" };
                Ok(HistoryItem {
                    cursor: row.try_get(0)?,
                    transaction_number: row.try_get(1)?,
                    kind: match kind.as_str() {
                        "deposit" | "withdrawal" => kind,
                        other => format!("{other}_{direction}"),
                    },
                    amount: wallet.money(amount_minor),
                    balance_after: wallet.money(row.try_get(3)?),
                    counterparty_wallet_id: (counterparty > 0).then_some(counterparty),
                    created_at: time::from_db(&created)
                        .map_err(|e| sqlx::Error::Decode(e.into()))?,
                })
            })
            .collect()
    }

    /// Per currency: what wallets hold, what the external account holds, and whether every
    /// account's balance is the sum of its entries. The two balances always sum to zero.
    pub async fn summary(&self) -> Result<Vec<CurrencySummary>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT a.currency, \
             CAST(SUM(CASE WHEN a.kind = 'wallet' THEN a.balance_minor ELSE 0 END) AS BIGINT), \
             CAST(SUM(CASE WHEN a.kind = 'external' THEN a.balance_minor ELSE 0 END) AS BIGINT), \
             (SELECT COUNT(*) FROM transfers t WHERE t.currency = a.currency), \
             CAST(SUM(CASE WHEN a.balance_minor <> (SELECT COALESCE(SUM(e.amount_minor), 0) \
                  FROM entries e WHERE e.account_id = a.id) THEN 1 ELSE 0 END) AS BIGINT) \
             FROM accounts a GROUP BY a.currency ORDER BY a.currency",
        )
        .fetch_all(self.db.reader())
        .await?;
        rows.iter()
            .map(|row| {
                let code: String = row.try_get(0)?;
                Ok(CurrencySummary {
                    currency: Currency::parse(&code).map_err(|e| sqlx::Error::Decode(e.into()))?,
                    wallets_minor: row.try_get(1)?,
                    external_minor: row.try_get(2)?,
                    transfer_count: row.try_get(3)?,
                    unbalanced_accounts: row.try_get(4)?,
                })
            })
            .collect()
    }
}

fn hold_from_row(row: &AnyRow) -> Result<Hold, sqlx::Error> {
    let currency: String = row.try_get(3)?;
    let currency = Currency::parse(&currency).map_err(|e| sqlx::Error::Decode(e.into()))?;
    let status: String = row.try_get(4)?;
    Ok(Hold {
        id: row.try_get(0)?,
        wallet_id: row.try_get(1)?,
        amount: Money::new(row.try_get(2)?, currency),
        status: HoldStatus::parse(&status)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown hold status {status}").into()))?,
        captured_minor: row.try_get(5)?,
    })
}
