//! Document 003's payment messages: what a caller may ask of its wallet on the `payment`
//! channel, read from the message's JSON into a command, or the sentence saying why not.
//!
//! Integrators may publish on the channel directly, so nothing a message holds is a failure of
//! the service: a missing or ill-typed field, or an unknown `type`, is refused with a reason that
//! becomes an `ERROR` reply.

use serde_json::{Map, Value};
use tally_kernel::{Currency, Decimal};

use super::{ClientName, Login};

pub const ADD_USER: &str = "ADD_USER";
pub const REMOVE_USER: &str = "REMOVE_USER";
pub const DEPOSIT: &str = "DEPOSIT";
pub const WITHDRAW: &str = "WITHDRAW";
pub const USER_INFO: &str = "USER_INFO";

/// What a payment message asks for, with every field parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentCommand {
    /// A new client with one wallet; what is left out gets the service's defaults.
    AddUser {
        login: Option<Login>,
        name: Option<ClientName>,
        currency: Option<Currency>,
    },
    RemoveUser {
        user_id: i64,
    },
    /// `amount` is in the currency of the user's wallet; its decimals are checked against it.
    Deposit {
        user_id: i64,
        amount: Decimal,
    },
    Withdraw {
        user_id: i64,
        amount: Decimal,
    },
    UserInfo {
        user_id: i64,
    },
}

/// One message as read: what the reply echoes, and the command or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentMessage {
    /// The caller's `id`, verbatim (`null` when absent).
    pub id: Value,
    /// The caller's `type`, verbatim (`null` when absent).
    pub request_type: Value,
    /// The user the message names, when it names one with a valid id.
    pub user_id: Option<i64>,
    pub command: Result<PaymentCommand, String>,
}

/// Reads a payment message. Every bad field is named in the refusal, `; `-separated.
pub fn parse(data: &Value) -> PaymentMessage {
    let Some(fields) = data.as_object() else {
        return PaymentMessage {
            id: Value::Null,
            request_type: Value::Null,
            user_id: None,
            command: Err("the message must be a JSON object".into()),
        };
    };
    let id = fields.get("id").cloned().unwrap_or(Value::Null);
    let request_type = fields.get("type").cloned().unwrap_or(Value::Null);
    let mut errors = Vec::new();
    // Without an id (or with null) the reply echoes null: the caller cannot match it to its
    // message, but the message is still served, as a BUY or SELL without an id is.
    if !(id.is_null() || id.is_string() || id.is_number()) {
        errors.push(String::from("id must be a string or a number"));
    }
    let kind = match &request_type {
        Value::String(kind) => Some(kind.as_str()),
        Value::Null => {
            errors.push("type is required".into());
            None
        }
        _ => {
            errors.push("type must be a string".into());
            None
        }
    };
    let user_id = match kind {
        Some(ADD_USER) | None => None,
        Some(REMOVE_USER | DEPOSIT | WITHDRAW | USER_INFO) => {
            note(&mut errors, user_id_field(fields))
        }
        // Echoed when valid, so the caller sees whose message was not understood.
        Some(_) => user_id_field(fields).ok(),
    };
    let command = match kind {
        None => None,
        Some(ADD_USER) => {
            let login = note(&mut errors, optional_text(fields, "login", Login::parse));
            let name = note(
                &mut errors,
                optional_text(fields, "name", ClientName::parse),
            );
            let currency = note(&mut errors, optional_text(fields, "currency", currency));
            match (login, name, currency) {
                (Some(login), Some(name), Some(currency)) => Some(PaymentCommand::AddUser {
                    login,
                    name,
                    currency,
                }),
                _ => None,
            }
        }
        Some(REMOVE_USER) => user_id.map(|user_id| PaymentCommand::RemoveUser { user_id }),
        Some(USER_INFO) => user_id.map(|user_id| PaymentCommand::UserInfo { user_id }),
        Some(kind @ (DEPOSIT | WITHDRAW)) => {
            let amount = note(&mut errors, amount_field(fields));
            match (user_id, amount) {
                (Some(user_id), Some(amount)) if kind == DEPOSIT => {
                    Some(PaymentCommand::Deposit { user_id, amount })
                }
                (Some(user_id), Some(amount)) => Some(PaymentCommand::Withdraw { user_id, amount }),
                _ => None,
            }
        }
        Some(other) => {
            errors.push(format!(
                "type {other:?} is not one of {ADD_USER}, {REMOVE_USER}, {DEPOSIT}, {WITHDRAW}, \
                 {USER_INFO}"
            ));
            None
        }
    };
    let command = match command {
        Some(command) if errors.is_empty() => Ok(command),
        _ => Err(errors.join("; ")),
    };
    PaymentMessage {
        id,
        request_type,
        user_id,
        command,
    }
}

/// The value, or `None` after recording why the field was refused.
fn note<T>(errors: &mut Vec<String>, result: Result<T, String>) -> Option<T> {
    result.map_err(|e| errors.push(e)).ok()
}

/// A client id: a positive JSON integer, or (as document 003's examples write ids) a string of
/// its digits.
fn user_id_field(fields: &Map<String, Value>) -> Result<i64, String> {
    let id = match fields.get("user_id") {
        None | Some(Value::Null) => return Err("user_id is required".into()),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        Some(_) => None,
    };
    id.filter(|id| *id > 0)
        .ok_or_else(|| String::from("user_id must be a positive integer"))
}

/// An amount as exact decimal text. A JSON integer is exact too; a JSON number with a fraction
/// is refused, because it may already have been rounded to binary on the way.
fn amount_field(fields: &Map<String, Value>) -> Result<Decimal, String> {
    let text = match fields.get("amount") {
        None | Some(Value::Null) => return Err("amount is required".into()),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        Some(_) => return Err("amount must be a decimal string such as \"10.50\"".into()),
    };
    Decimal::parse(&text).map_err(|e| format!("amount {e}"))
}

/// An optional text field, parsed by `parse` when present.
fn optional_text<T>(
    fields: &Map<String, Value>,
    field: &str,
    parse: impl Fn(&str) -> Result<T, &'static str>,
) -> Result<Option<T>, String> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse(s).map(Some).map_err(|e| format!("{field} {e}")),
        Some(_) => Err(format!("{field} must be a string")),
    }
}

fn currency(code: &str) -> Result<Currency, &'static str> {
    Currency::parse(code).map_err(|_| "is not an ISO 4217 currency code with minor units")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn command(data: Value) -> Result<PaymentCommand, String> {
        parse(&data).command
    }

    #[test]
    fn a_deposit_reads_its_user_and_exact_amount() {
        let message = parse(&json!({"id": 7, "type": "DEPOSIT", "user_id": 12, "amount": "10.50"}));
        assert_eq!((message.id, message.user_id), (json!(7), Some(12)));
        assert_eq!(
            message.command,
            Ok(PaymentCommand::Deposit {
                user_id: 12,
                amount: Decimal::parse("10.5").unwrap()
            })
        );
    }

    #[test]
    fn ids_written_as_digit_strings_are_read_as_numbers() {
        let message = parse(&json!({"id": "m-1", "type": "USER_INFO", "user_id": "12"}));
        assert_eq!(
            message.command,
            Ok(PaymentCommand::UserInfo { user_id: 12 })
        );
    }

    #[test]
    fn add_user_leaves_defaults_to_the_service() {
        assert_eq!(
            command(json!({"id": "a", "type": "ADD_USER"})),
            Ok(PaymentCommand::AddUser {
                login: None,
                name: None,
                currency: None
            })
        );
        assert_eq!(
            command(json!({"id": "a", "type": "ADD_USER", "currency": "XYZ", "login": " "})),
            Err(String::from(
                "login must not be blank; currency is not an ISO 4217 currency code with minor \
                 units"
            ))
        );
    }

    #[test]
    fn every_bad_field_is_named() {
        assert_eq!(
            command(json!({"id": true, "type": "WITHDRAW", "user_id": -3, "amount": 1.5})),
            Err(String::from(
                "id must be a string or a number; user_id must be a positive integer; amount \
                 must be a decimal string such as \"10.50\""
            ))
        );
        assert_eq!(
            command(json!({"id": 1, "type": "DEPOSIT", "user_id": 3, "amount": "ten"})),
            Err(String::from(
                "amount must be a decimal number such as 12.34"
            ))
        );
        assert_eq!(
            command(json!({"id": 1, "type": "USER_INFO"})),
            Err(String::from("user_id is required"))
        );
    }

    #[test]
    fn an_unknown_type_is_refused_by_name_and_echoed() {
        let message = parse(&json!({"id": 1, "type": "BUY", "user_id": 3}));
        assert_eq!(message.request_type, json!("BUY"));
        assert_eq!(message.user_id, Some(3));
        assert_eq!(
            message.command,
            Err(String::from(
                "type \"BUY\" is not one of ADD_USER, REMOVE_USER, DEPOSIT, WITHDRAW, USER_INFO"
            ))
        );
    }

    #[test]
    fn a_message_that_is_not_an_object_is_refused() {
        let message = parse(&json!(["DEPOSIT"]));
        assert_eq!(
            (message.id, message.request_type),
            (Value::Null, Value::Null)
        );
        assert!(message.command.is_err());
    }
}
