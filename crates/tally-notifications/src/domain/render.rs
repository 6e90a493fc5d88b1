//! The text of each message: a subject and a plain-text body per occasion.
//!
//! Amounts are written exactly from their minor units with the currency's decimals
//! (`150.00 USD`, `1500 JPY`); times are written as the event gave them. A message names the
//! appointment, bill or payment by id and never the patient's details, so that it reads the same
//! whichever consumer caught up first.

use tally_kernel::Money;

use super::events::Occasion;

/// A rendered message. `Debug` shows nothing of the text: messages never reach a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    pub subject: String,
    pub body: String,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message").finish_non_exhaustive()
    }
}

fn amount(money: Money) -> String {
    format!("{} {}", money.to_decimal_string(), money.currency)
}

/// Writes `lines` as `Label: value` lines after an opening sentence.
fn body(opening: &str, lines: &[(&str, String)]) -> String {
    let mut text = format!("{opening}\n\n");
    for (label, value) in lines {
        text.push_str(label);
        text.push_str(": ");
        text.push_str(value);
        text.push('\n');
    }
    text
}

impl Occasion {
    pub fn render(&self) -> Message {
        let (subject, body) = match self {
            Occasion::AppointmentBooked {
                appointment_id,
                start,
                end,
                price,
            } => (
                "Appointment booked",
                body(
                    "Your appointment is booked.",
                    &[
                        ("Appointment", appointment_id.to_string()),
                        ("Starts", start.clone()),
                        ("Ends", end.clone()),
                        ("Scheduled price", amount(*price)),
                    ],
                ),
            ),
            Occasion::AppointmentCancelled {
                appointment_id,
                reason,
            } => {
                let mut lines = vec![("Appointment", appointment_id.to_string())];
                if let Some(reason) = reason {
                    lines.push(("Reason", reason.clone()));
                }
                (
                    "Appointment cancelled",
                    body("Your appointment has been cancelled.", &lines),
                )
            }
            Occasion::BillGenerated {
                bill_id,
                appointment_id,
                amount: due,
            } => (
                "Your bill",
                body(
                    "A bill has been issued for your appointment.",
                    &[
                        ("Bill", bill_id.to_string()),
                        ("Appointment", appointment_id.to_string()),
                        ("Amount due", amount(*due)),
                    ],
                ),
            ),
            Occasion::BillPaid {
                bill_id,
                appointment_id,
                amount: paid,
            } => (
                "Bill paid",
                body(
                    "Your bill is paid in full. Thank you.",
                    &[
                        ("Bill", bill_id.to_string()),
                        ("Appointment", appointment_id.to_string()),
                        ("Amount paid", amount(*paid)),
                    ],
                ),
            ),
            Occasion::PaymentCompleted {
                payment_id,
                bill_id,
                method,
                amount: paid,
            } => (
                "Payment received",
                body(
                    "We received your payment. Thank you.",
                    &[
                        ("Payment", payment_id.to_string()),
                        ("Bill", bill_id.to_string()),
                        ("Method", method.clone()),
                        ("Amount", amount(*paid)),
                    ],
                ),
            ),
            Occasion::PaymentFailed {
                payment_id,
                bill_id,
                method,
                amount: tried,
                reason,
            } => (
                "Payment failed",
                body(
                    "Your payment could not be completed. Nothing was charged for it.",
                    &[
                        ("Payment", payment_id.to_string()),
                        ("Bill", bill_id.to_string()),
                        ("Method", method.clone()),
                        ("Amount", amount(*tried)),
                        ("Reason", reason.clone()),
                    ],
                ),
            ),
        };
        Message {
            subject: subject.to_owned(),
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use tally_kernel::Currency;
    use uuid::Uuid;

    use super::*;

    fn id(n: u8) -> Uuid {
        Uuid::parse_str(&format!("0190b8f2-7c1e-7000-8000-0000000000{n:02}")).unwrap()
    }

    fn usd(minor: i64) -> Money {
        Money::new(minor, Currency::USD)
    }

    #[test]
    fn each_occasion_has_its_subject_and_body() {
        let jpy = Currency::parse("JPY").unwrap();
        let kwd = Currency::parse("KWD").unwrap();
        let cases = [
            (
                Occasion::AppointmentBooked {
                    appointment_id: id(1),
                    start: "2026-03-02T09:00:00Z".into(),
                    end: "2026-03-02T09:30:00+00:00".into(),
                    price: usd(15_000),
                },
                "Appointment booked",
                "Your appointment is booked.\n\n\
                 Appointment: 0190b8f2-7c1e-7000-8000-000000000001\n\
                 Starts: 2026-03-02T09:00:00Z\n\
                 Ends: 2026-03-02T09:30:00+00:00\n\
                 Scheduled price: 150.00 USD\n",
            ),
            (
                Occasion::AppointmentCancelled {
                    appointment_id: id(1),
                    reason: Some("physician unavailable".into()),
                },
                "Appointment cancelled",
                "Your appointment has been cancelled.\n\n\
                 Appointment: 0190b8f2-7c1e-7000-8000-000000000001\n\
                 Reason: physician unavailable\n",
            ),
            (
                Occasion::AppointmentCancelled {
                    appointment_id: id(1),
                    reason: None,
                },
                "Appointment cancelled",
                "Your appointment has been cancelled.\n\n\
                 Appointment: 0190b8f2-7c1e-7000-8000-000000000001\n",
            ),
            (
                Occasion::BillGenerated {
                    bill_id: id(2),
                    appointment_id: id(1),
                    amount: Money::new(1_500, jpy),
                },
                "Your bill",
                "A bill has been issued for your appointment.\n\n\
                 Bill: 0190b8f2-7c1e-7000-8000-000000000002\n\
                 Appointment: 0190b8f2-7c1e-7000-8000-000000000001\n\
                 Amount due: 1500 JPY\n",
            ),
            (
                Occasion::BillPaid {
                    bill_id: id(2),
                    appointment_id: id(1),
                    amount: usd(5),
                },
                "Bill paid",
                "Your bill is paid in full. Thank you.\n\n\
                 Bill: 0190b8f2-7c1e-7000-8000-000000000002\n\
                 Appointment: 0190b8f2-7c1e-7000-8000-000000000001\n\
                 Amount paid: 0.05 USD\n",
            ),
            (
                Occasion::PaymentCompleted {
                    payment_id: id(3),
                    bill_id: id(2),
                    method: "card".into(),
                    amount: Money::new(1_234, kwd),
                },
                "Payment received",
                "We received your payment. Thank you.\n\n\
                 Payment: 0190b8f2-7c1e-7000-8000-000000000003\n\
                 Bill: 0190b8f2-7c1e-7000-8000-000000000002\n\
                 Method: card\n\
                 Amount: 1.234 KWD\n",
            ),
            (
                Occasion::PaymentFailed {
                    payment_id: id(3),
                    bill_id: id(2),
                    method: "wallet".into(),
                    amount: usd(i64::MAX),
                    reason: "insufficient funds".into(),
                },
                "Payment failed",
                "Your payment could not be completed. Nothing was charged for it.\n\n\
                 Payment: 0190b8f2-7c1e-7000-8000-000000000003\n\
                 Bill: 0190b8f2-7c1e-7000-8000-000000000002\n\
                 Method: wallet\n\
                 Amount: 92233720368547758.07 USD\n\
                 Reason: insufficient funds\n",
            ),
        ];
        for (occasion, subject, text) in cases {
            let message = occasion.render();
            assert_eq!(message.subject, subject);
            assert_eq!(message.body, text, "{occasion:?}");
        }
    }

    #[test]
    fn debug_shows_no_text() {
        let message = Occasion::AppointmentCancelled {
            appointment_id: id(1),
            reason: Some("private".into()),
        }
        .render();
        assert!(!format!("{message:?}").contains("private"));
    }
}
