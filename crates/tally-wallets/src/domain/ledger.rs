//! The double-entry ledger: every movement of money is a posting from one account to another.
//!
//! A wallet's balance is what was credited to it minus what was debited from it; deposits and
//! withdrawals move money against the currency's external account, whose balance goes negative
//! as money comes in. So the balances of all accounts of a currency always sum to zero.
//! Holds reserve part of a wallet's balance: the available balance is balance minus holds, and
//! neither may go below zero.

use tally_kernel::{Currency, Money};

use super::WalletError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    Wallet,
    /// The world outside the ledger for one currency: deposits come from it, withdrawals go to it.
    External,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: i64,
    pub kind: AccountKind,
    pub client_id: Option<i64>,
    pub currency: Currency,
    pub balance_minor: i64,
    pub held_minor: i64,
    pub open: bool,
}

impl Account {
    /// The id of the external account of `currency`: minus its ISO 4217 numeric code, so that
    /// wallet ids stay a plain sequence.
    pub fn external_id(currency: Currency) -> i64 {
        -i64::from(currency.numeric())
    }

    pub fn available_minor(&self) -> i64 {
        self.balance_minor - self.held_minor
    }

    pub fn money(&self, amount_minor: i64) -> Money {
        Money::new(amount_minor, self.currency)
    }

    fn check_open(&self) -> Result<(), WalletError> {
        if self.kind == AccountKind::Wallet && !self.open {
            return Err(WalletError::WalletClosed(self.id));
        }
        Ok(())
    }

    fn check_currency(&self, amount: Money, field: &'static str) -> Result<(), WalletError> {
        if amount.currency != self.currency {
            return Err(WalletError::CurrencyMismatch {
                wallet_id: self.id,
                expected: self.currency,
                got: amount.currency,
                field,
            });
        }
        Ok(())
    }

    /// Refuses to take `amount` out of a wallet whose available balance is smaller.
    fn check_covers(&self, amount: Money) -> Result<(), WalletError> {
        if self.kind == AccountKind::Wallet && self.available_minor() < amount.amount_minor {
            return Err(WalletError::InsufficientFunds {
                wallet_id: self.id,
                available: self.money(self.available_minor()),
                requested: amount,
            });
        }
        Ok(())
    }
}

/// Money moving from `debit` to `credit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Posting {
    pub debit: i64,
    pub credit: i64,
    pub amount: Money,
}

impl Posting {
    /// Applies the posting to the two accounts it names. The decision functions below have
    /// already checked it is allowed; the arithmetic cannot overflow because balances are
    /// bounded by the sum of deposits, itself checked.
    pub fn apply(&self, debit: &mut Account, credit: &mut Account) -> Result<(), WalletError> {
        let overflow = || WalletError::Amount {
            field: "amount",
            error: tally_kernel::AmountError::OutOfRange,
        };
        debit.balance_minor = debit
            .balance_minor
            .checked_sub(self.amount.amount_minor)
            .ok_or_else(overflow)?;
        credit.balance_minor = credit
            .balance_minor
            .checked_add(self.amount.amount_minor)
            .ok_or_else(overflow)?;
        Ok(())
    }
}

pub fn deposit(
    wallet: &Account,
    external: &Account,
    amount: Money,
) -> Result<Posting, WalletError> {
    wallet.check_open()?;
    wallet.check_currency(amount, "currency")?;
    if wallet
        .balance_minor
        .checked_add(amount.amount_minor)
        .is_none()
    {
        return Err(WalletError::Amount {
            field: "amount",
            error: tally_kernel::AmountError::OutOfRange,
        });
    }
    Ok(Posting {
        debit: external.id,
        credit: wallet.id,
        amount,
    })
}

pub fn withdraw(
    wallet: &Account,
    external: &Account,
    amount: Money,
) -> Result<Posting, WalletError> {
    wallet.check_open()?;
    wallet.check_currency(amount, "currency")?;
    wallet.check_covers(amount)?;
    Ok(Posting {
        debit: wallet.id,
        credit: external.id,
        amount,
    })
}

pub fn transfer(from: &Account, to: &Account, amount: Money) -> Result<Posting, WalletError> {
    if from.id == to.id {
        return Err(WalletError::SameWallet);
    }
    from.check_open()?;
    to.check_open()?;
    from.check_currency(amount, "currency")?;
    to.check_currency(amount, "walletToId")?;
    from.check_covers(amount)?;
    if to.balance_minor.checked_add(amount.amount_minor).is_none() {
        return Err(WalletError::Amount {
            field: "amount",
            error: tally_kernel::AmountError::OutOfRange,
        });
    }
    Ok(Posting {
        debit: from.id,
        credit: to.id,
        amount,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldStatus {
    Placed,
    Captured,
    Released,
}

impl HoldStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldStatus::Placed => "placed",
            HoldStatus::Captured => "captured",
            HoldStatus::Released => "released",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "placed" => Some(HoldStatus::Placed),
            "captured" => Some(HoldStatus::Captured),
            "released" => Some(HoldStatus::Released),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub id: String,
    pub wallet_id: i64,
    pub amount: Money,
    pub status: HoldStatus,
    pub captured_minor: i64,
}

/// Reserves `amount` of the wallet's available balance.
pub fn place_hold(wallet: &mut Account, amount: Money) -> Result<(), WalletError> {
    wallet.check_open()?;
    wallet.check_currency(amount, "currency")?;
    wallet.check_covers(amount)?;
    wallet.held_minor += amount.amount_minor;
    Ok(())
}

/// Captures `amount` (the whole hold when `None`) into `to`, releasing the rest of the hold.
/// Returns the posting that moves the captured amount.
pub fn capture_hold(
    hold: &mut Hold,
    wallet: &mut Account,
    to: &Account,
    amount: Option<Money>,
) -> Result<Posting, WalletError> {
    check_placed(hold)?;
    let amount = amount.unwrap_or(hold.amount);
    to.check_open()?;
    to.check_currency(amount, "walletToId")?;
    if amount.currency != hold.amount.currency || amount.amount_minor > hold.amount.amount_minor {
        return Err(WalletError::CaptureExceedsHold {
            hold_id: hold.id.clone(),
            held: hold.amount,
            requested: amount,
        });
    }
    if to.id == wallet.id {
        return Err(WalletError::SameWallet);
    }
    wallet.held_minor -= hold.amount.amount_minor;
    hold.status = HoldStatus::Captured;
    hold.captured_minor = amount.amount_minor;
    Ok(Posting {
        debit: wallet.id,
        credit: to.id,
        amount,
    })
}

/// Gives the whole hold back to the wallet's available balance.
pub fn release_hold(hold: &mut Hold, wallet: &mut Account) -> Result<(), WalletError> {
    check_placed(hold)?;
    wallet.held_minor -= hold.amount.amount_minor;
    hold.status = HoldStatus::Released;
    Ok(())
}

fn check_placed(hold: &Hold) -> Result<(), WalletError> {
    if hold.status != HoldStatus::Placed {
        return Err(WalletError::HoldNotPlaced {
            hold_id: hold.id.clone(),
            status: hold.status.as_str(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const USD: Currency = Currency::USD;

    fn wallet(id: i64, balance: i64) -> Account {
        Account {
            id,
            kind: AccountKind::Wallet,
            client_id: Some(1),
            currency: USD,
            balance_minor: balance,
            held_minor: 0,
            open: true,
        }
    }

    fn external() -> Account {
        Account {
            id: Account::external_id(USD),
            kind: AccountKind::External,
            client_id: None,
            ..wallet(0, 0)
        }
    }

    fn usd(minor: i64) -> Money {
        Money::new(minor, USD)
    }

    #[test]
    fn given_a_funded_wallet_when_transferring_then_money_moves_between_the_two() {
        let (mut from, mut to) = (wallet(1, 1000), wallet(2, 0));
        let posting = transfer(&from, &to, usd(400)).unwrap();
        posting.apply(&mut from, &mut to).unwrap();
        assert_eq!((from.balance_minor, to.balance_minor), (600, 400));
    }

    #[test]
    fn given_holds_when_spending_then_only_the_available_balance_counts() {
        let mut from = wallet(1, 1000);
        place_hold(&mut from, usd(700)).unwrap();
        let refused = transfer(&from, &wallet(2, 0), usd(400)).unwrap_err();
        assert!(
            matches!(refused, WalletError::InsufficientFunds { available, .. } if available == usd(300))
        );
        assert!(withdraw(&from, &external(), usd(301)).is_err());
        assert!(place_hold(&mut from, usd(301)).is_err());
        assert!(withdraw(&from, &external(), usd(300)).is_ok());
    }

    #[test]
    fn transfers_to_self_across_currencies_or_from_closed_wallets_are_refused() {
        let a = wallet(1, 1000);
        assert_eq!(transfer(&a, &a, usd(1)), Err(WalletError::SameWallet));
        let eur = Currency::parse("EUR").unwrap();
        let b = Account {
            currency: eur,
            ..wallet(2, 0)
        };
        assert!(matches!(
            transfer(&a, &b, usd(1)),
            Err(WalletError::CurrencyMismatch {
                field: "walletToId",
                ..
            })
        ));
        let closed = Account {
            open: false,
            ..wallet(3, 50)
        };
        assert_eq!(
            transfer(&closed, &a, usd(1)),
            Err(WalletError::WalletClosed(3))
        );
        assert_eq!(
            deposit(&closed, &external(), usd(1)),
            Err(WalletError::WalletClosed(3))
        );
    }

    #[test]
    fn capture_moves_part_of_a_hold_and_releases_the_rest() {
        let mut from = wallet(1, 1000);
        let mut to = wallet(2, 0);
        place_hold(&mut from, usd(600)).unwrap();
        let mut hold = Hold {
            id: "h".into(),
            wallet_id: 1,
            amount: usd(600),
            status: HoldStatus::Placed,
            captured_minor: 0,
        };
        assert!(capture_hold(&mut hold.clone(), &mut from.clone(), &to, Some(usd(601))).is_err());
        let posting = capture_hold(&mut hold, &mut from, &to, Some(usd(250))).unwrap();
        posting.apply(&mut from, &mut to).unwrap();
        assert_eq!(
            (from.balance_minor, from.held_minor, to.balance_minor),
            (750, 0, 250)
        );
        assert_eq!(hold.status, HoldStatus::Captured);
        assert!(
            release_hold(&mut hold, &mut from).is_err(),
            "a captured hold cannot be released"
        );
    }

    proptest! {
        /// Whatever sequence of operations is tried, accounts sum to zero and no wallet's balance
        /// or available balance goes negative.
        #[test]
        fn conservation_and_no_overdraft(ops in proptest::collection::vec((0u8..4, 0usize..3, 0usize..3, 1i64..5_000), 1..200)) {
            let mut accounts = [external(), wallet(1, 0), wallet(2, 0), wallet(3, 0)];
            for (op, a, b, amount) in ops {
                let (a, b) = (a + 1, b + 1);
                let posting = match op {
                    0 => deposit(&accounts[a], &accounts[0], usd(amount)),
                    1 => withdraw(&accounts[a], &accounts[0], usd(amount)),
                    2 => transfer(&accounts[a], &accounts[b], usd(amount)),
                    _ => { let _ = place_hold(&mut accounts[a], usd(amount)); continue; }
                };
                if let Ok(p) = posting {
                    let find = |id: i64| accounts.iter().position(|x| x.id == id).unwrap();
                    let (d, c) = (find(p.debit), find(p.credit));
                    let (mut debit, mut credit) = (accounts[d].clone(), accounts[c].clone());
                    p.apply(&mut debit, &mut credit).unwrap();
                    accounts[d] = debit;
                    accounts[c] = credit;
                }
                prop_assert_eq!(accounts.iter().map(|x| x.balance_minor).sum::<i64>(), 0);
                for w in &accounts[1..] {
                    prop_assert!(w.balance_minor >= 0 && w.available_minor() >= 0);
                }
            }
        }
    }
}
