//! Card payments go through a gateway. The built-in test gateway approves or declines by card
//! number, the way payment providers' test cards do; a real provider plugs in behind the same
//! trait.

use futures_util::future::BoxFuture;
use tally_kernel::Money;

use crate::domain::CardNumber;

/// What the gateway said about a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Approved { reference: String },
    Declined { reason: String },
}

#[derive(Debug, thiserror::Error)]
#[error("the card gateway did not answer: {0}")]
pub struct GatewayError(pub String);

/// A card gateway. Every call carries an idempotency key, as payment providers' APIs do: a call
/// repeated with the same key (a transaction retried after a deadlock, an event delivered
/// again) has the effect of the first call and gets its answer.
pub trait CardGateway: Send + Sync + 'static {
    fn charge<'a>(
        &'a self,
        card: &'a CardNumber,
        amount: Money,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, Result<ChargeOutcome, GatewayError>>;
    /// Gives back `amount` of an approved charge.
    fn refund<'a>(
        &'a self,
        charge_reference: &'a str,
        amount: Money,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, Result<(), GatewayError>>;
}

/// Most answers the test gateway remembers by idempotency key.
const REMEMBERED_KEYS: usize = 100_000;

/// Test cards: `4000000000000002` is declined, `4000000000009995` is declined for insufficient
/// funds, `4000000000000069` is declined as expired; every other valid number is approved. It
/// remembers its answers by idempotency key, as a provider does.
#[derive(Debug, Default, Clone)]
pub struct TestGateway {
    answers: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, ChargeOutcome>>>,
}

impl TestGateway {
    pub fn new() -> Self {
        Self::default()
    }
}

impl CardGateway for TestGateway {
    fn charge<'a>(
        &'a self,
        card: &'a CardNumber,
        amount: Money,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, Result<ChargeOutcome, GatewayError>> {
        Box::pin(async move {
            let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(answer) = answers.get(idempotency_key) {
                return Ok(answer.clone());
            }
            let declined = match card.digits() {
                "4000000000000002" => Some("card_declined"),
                "4000000000009995" => Some("insufficient_funds"),
                "4000000000000069" => Some("expired_card"),
                _ => None,
            };
            let answer = match declined {
                Some(reason) => ChargeOutcome::Declined {
                    reason: reason.into(),
                },
                None => ChargeOutcome::Approved {
                    reference: format!(
                        "test_ch_{}_{}",
                        tally_kernel::id::new_v7().simple(),
                        amount.amount_minor
                    ),
                },
            };
            if answers.len() >= REMEMBERED_KEYS {
                answers.clear();
            }
            answers.insert(idempotency_key.to_owned(), answer.clone());
            Ok(answer)
        })
    }

    fn refund<'a>(
        &'a self,
        _charge_reference: &'a str,
        _amount: Money,
        _idempotency_key: &'a str,
    ) -> BoxFuture<'a, Result<(), GatewayError>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_kernel::Currency;

    #[tokio::test]
    async fn a_charge_repeated_with_its_key_is_the_first_charge() {
        let gateway = TestGateway::new();
        let card = CardNumber::parse("4242424242424242").unwrap();
        let amount = Money::new(1_000, Currency::USD);
        let first = gateway.charge(&card, amount, "k1").await.unwrap();
        assert_eq!(gateway.charge(&card, amount, "k1").await.unwrap(), first);
        assert_ne!(gateway.charge(&card, amount, "k2").await.unwrap(), first);
    }
}
