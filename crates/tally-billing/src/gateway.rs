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

pub trait CardGateway: Send + Sync + 'static {
    fn charge<'a>(
        &'a self,
        card: &'a CardNumber,
        amount: Money,
    ) -> BoxFuture<'a, Result<ChargeOutcome, GatewayError>>;
    /// Gives back `amount` of an approved charge.
    fn refund<'a>(
        &'a self,
        charge_reference: &'a str,
        amount: Money,
    ) -> BoxFuture<'a, Result<(), GatewayError>>;
}

/// Test cards: `4000000000000002` is declined, `4000000000009995` is declined for insufficient
/// funds, `4000000000000069` is declined as expired; every other valid number is approved.
#[derive(Debug, Default, Clone, Copy)]
pub struct TestGateway;

impl CardGateway for TestGateway {
    fn charge<'a>(
        &'a self,
        card: &'a CardNumber,
        amount: Money,
    ) -> BoxFuture<'a, Result<ChargeOutcome, GatewayError>> {
        Box::pin(async move {
            let declined = match card.digits() {
                "4000000000000002" => Some("card_declined"),
                "4000000000009995" => Some("insufficient_funds"),
                "4000000000000069" => Some("expired_card"),
                _ => None,
            };
            Ok(match declined {
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
            })
        })
    }

    fn refund<'a>(
        &'a self,
        _charge_reference: &'a str,
        _amount: Money,
    ) -> BoxFuture<'a, Result<(), GatewayError>> {
        Box::pin(async { Ok(()) })
    }
}
