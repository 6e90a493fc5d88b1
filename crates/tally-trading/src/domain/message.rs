//! The messages of document 003 as they arrive on the WebSocket, checked before anything is
//! stored: a message that fails here gets an `ERROR` reply and changes nothing.
//!
//! Numbers are read from the raw JSON text, never through a binary float: `"amount": 10.10`
//! and `"amount": "10.10"` are the same exact decimal.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use tally_kernel::Decimal;

/// Largest message id, in characters of its JSON text.
pub const MAX_ID_CHARS: usize = 200;
/// Most units one order may buy or sell.
pub const MAX_QUANTITY: i64 = 1_000_000_000;
/// Longest symbol.
pub const MAX_SYMBOL_CHARS: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    AddUser,
    RemoveUser,
    Deposit,
    Withdraw,
    UserInfo,
    Buy,
    Sell,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::AddUser,
        Kind::RemoveUser,
        Kind::Deposit,
        Kind::Withdraw,
        Kind::UserInfo,
        Kind::Buy,
        Kind::Sell,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::AddUser => "ADD_USER",
            Kind::RemoveUser => "REMOVE_USER",
            Kind::Deposit => "DEPOSIT",
            Kind::Withdraw => "WITHDRAW",
            Kind::UserInfo => "USER_INFO",
            Kind::Buy => "BUY",
            Kind::Sell => "SELL",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// The scope a token needs to send this message: its service, and whether it writes.
    /// Payment messages belong to wallets (document 003's payment service); orders to trading.
    pub fn scope(self) -> (&'static str, bool) {
        match self {
            Kind::UserInfo => ("wallets", false),
            Kind::AddUser | Kind::RemoveUser | Kind::Deposit | Kind::Withdraw => ("wallets", true),
            Kind::Buy | Kind::Sell => ("trading", true),
        }
    }

    /// Payment messages go to the wallets service over the `payment` topic.
    pub fn is_payment(self) -> bool {
        !matches!(self, Kind::Buy | Kind::Sell)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "BUY",
            Side::Sell => "SELL",
        }
    }

    pub fn parse(text: &str) -> Option<Side> {
        match text {
            "BUY" => Some(Side::Buy),
            "SELL" => Some(Side::Sell),
            _ => None,
        }
    }
}

/// A BUY or SELL as the caller asked it. The price is converted to minor units once the user's
/// currency is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRequest {
    pub user_id: i64,
    pub side: Side,
    pub symbol: String,
    pub price: Decimal,
    /// The price as the caller wrote it, for the stored message.
    pub price_text: String,
    pub quantity: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// A payment message, as published on the `payment` topic.
    Payment(Map<String, Value>),
    Order(OrderRequest),
}

/// A checked message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The caller's id, echoed in the reply; `Value::Null` when the message had none.
    pub id: Value,
    pub kind: Kind,
    pub body: Body,
}

impl Message {
    /// The caller's id as the text that keys it (absent: the message is not deduplicated).
    pub fn id_key(&self) -> Option<String> {
        (!self.id.is_null()).then(|| self.id.to_string())
    }

    /// The message in a canonical JSON form: the same request sent twice has the same form.
    pub fn canonical(&self) -> String {
        let value = match &self.body {
            Body::Payment(map) => Value::Object(map.clone()),
            Body::Order(order) => json!({
                "id": self.id,
                "type": self.kind.as_str(),
                "user_id": order.user_id,
                "symbol": order.symbol,
                "price": order.price.to_string(),
                "amount": order.quantity.to_string(),
            }),
        };
        value.to_string()
    }
}

/// A message refused before it was stored: the reply says why.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub id: Value,
    pub message: String,
}

impl Refusal {
    fn new(id: &Value, message: impl Into<String>) -> Self {
        Self {
            id: id.clone(),
            message: message.into(),
        }
    }
}

/// The reply `{id, status, message, ...}` to a message.
pub fn reply(id: &Value, ok: bool, message: &str, extra: Map<String, Value>) -> Value {
    let mut map = Map::new();
    map.insert("id".into(), id.clone());
    map.insert(
        "status".into(),
        Value::String(if ok { "OK" } else { "ERROR" }.into()),
    );
    map.insert("message".into(), Value::String(message.into()));
    for (k, v) in extra {
        map.entry(k).or_insert(v);
    }
    Value::Object(map)
}

pub fn error_reply(id: &Value, message: &str) -> Value {
    reply(id, false, message, Map::new())
}

type Fields<'a> = BTreeMap<String, &'a RawValue>;

/// Checks one text frame.
pub fn parse(text: &str) -> Result<Message, Refusal> {
    let fields: Fields = serde_json::from_str(text).map_err(|_| {
        Refusal::new(
            &Value::Null,
            "a message is a JSON object such as {\"id\": \"1\", \"type\": \"USER_INFO\", \"user_id\": 7}",
        )
    })?;
    let id = message_id(&fields)?;
    let kind_text =
        string_field(&fields, "type", &id)?.ok_or_else(|| Refusal::new(&id, "type: required"))?;
    let kind = Kind::parse(&kind_text).ok_or_else(|| {
        let known: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        Refusal::new(&id, format!("type: must be one of {}", known.join(", ")))
    })?;
    let body = match kind {
        Kind::Buy | Kind::Sell => Body::Order(order(&fields, kind, &id)?),
        _ => Body::Payment(payment(&fields, kind, &id)?),
    };
    Ok(Message { id, kind, body })
}

/// The id of a message that will not be processed, for its reply (`null` when it has none).
pub fn id_of(text: &str) -> Value {
    serde_json::from_str::<Fields>(text)
        .ok()
        .and_then(|fields| message_id(&fields).ok())
        .unwrap_or(Value::Null)
}

fn message_id(fields: &Fields) -> Result<Value, Refusal> {
    let Some(raw) = fields.get("id") else {
        return Ok(Value::Null);
    };
    let value: Value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
    match &value {
        Value::Null => Ok(Value::Null),
        Value::String(s) if !s.is_empty() && s.chars().count() <= MAX_ID_CHARS => Ok(value),
        Value::Number(_)
            if raw.get().len() <= MAX_ID_CHARS && !raw.get().contains(['.', 'e', 'E']) =>
        {
            Ok(value)
        }
        _ => Err(Refusal::new(
            &Value::Null,
            format!(
                "id: must be a non-empty string or an integer of at most {MAX_ID_CHARS} characters"
            ),
        )),
    }
}

/// A string field; `None` when absent or null.
fn string_field(fields: &Fields, name: &str, id: &Value) -> Result<Option<String>, Refusal> {
    match fields.get(name) {
        None => Ok(None),
        Some(raw) if raw.get() == "null" => Ok(None),
        Some(raw) => serde_json::from_str::<String>(raw.get())
            .map(Some)
            .map_err(|_| Refusal::new(id, format!("{name}: must be a string"))),
    }
}

/// A number given as a JSON number or a string holding one: its exact text.
fn number_text(fields: &Fields, name: &str, id: &Value) -> Result<Option<String>, Refusal> {
    match fields.get(name) {
        None => Ok(None),
        Some(raw) if raw.get() == "null" => Ok(None),
        Some(raw) => {
            let text = raw.get();
            if text.starts_with('"') {
                let s: String = serde_json::from_str(text)
                    .map_err(|_| Refusal::new(id, format!("{name}: must be a number")))?;
                Ok(Some(s.trim().to_owned()))
            } else if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
                Ok(Some(text.to_owned()))
            } else {
                Err(Refusal::new(id, format!("{name}: must be a number")))
            }
        }
    }
}

fn user_id(fields: &Fields, id: &Value) -> Result<i64, Refusal> {
    let text =
        number_text(fields, "user_id", id)?.ok_or_else(|| Refusal::new(id, "user_id: required"))?;
    text.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Refusal::new(id, "user_id: must be a positive integer"))
}

fn decimal(fields: &Fields, name: &str, id: &Value) -> Result<(Decimal, String), Refusal> {
    let text = number_text(fields, name, id)?
        .ok_or_else(|| Refusal::new(id, format!("{name}: required")))?;
    let decimal = Decimal::parse(&text).map_err(|_| {
        Refusal::new(
            id,
            format!("{name}: must be a decimal number such as 12.50"),
        )
    })?;
    if decimal.is_zero() || decimal.is_negative() {
        return Err(Refusal::new(
            id,
            format!("{name}: must be greater than zero"),
        ));
    }
    Ok((decimal, text))
}

fn payment(fields: &Fields, kind: Kind, id: &Value) -> Result<Map<String, Value>, Refusal> {
    let mut map = Map::new();
    map.insert("id".into(), id.clone());
    map.insert("type".into(), Value::String(kind.as_str().into()));
    match kind {
        Kind::AddUser => {
            for name in ["currency", "login", "name"] {
                if let Some(value) = string_field(fields, name, id)? {
                    map.insert(name.into(), Value::String(value));
                }
            }
        }
        Kind::RemoveUser | Kind::UserInfo => {
            map.insert("user_id".into(), json!(user_id(fields, id)?));
        }
        Kind::Deposit | Kind::Withdraw => {
            map.insert("user_id".into(), json!(user_id(fields, id)?));
            let (_, text) = decimal(fields, "amount", id)?;
            map.insert("amount".into(), Value::String(text));
        }
        Kind::Buy | Kind::Sell => unreachable!("orders are not payment messages"),
    }
    Ok(map)
}

fn order(fields: &Fields, kind: Kind, id: &Value) -> Result<OrderRequest, Refusal> {
    let side = Side::parse(kind.as_str()).expect("an order kind is a side");
    let user_id = user_id(fields, id)?;
    let symbol = string_field(fields, "symbol", id)?
        .ok_or_else(|| Refusal::new(id, "symbol: required"))?
        .trim()
        .to_ascii_uppercase();
    let symbol_ok = !symbol.is_empty()
        && symbol.len() <= MAX_SYMBOL_CHARS
        && symbol.starts_with(|c: char| c.is_ascii_alphabetic())
        && symbol
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if !symbol_ok {
        return Err(Refusal::new(
            id,
            format!(
                "symbol: 1 to {MAX_SYMBOL_CHARS} letters, digits, '.' or '-', starting with a letter"
            ),
        ));
    }
    let (price, price_text) = decimal(fields, "price", id)?;
    let quantity_text = number_text(fields, "amount", id)?
        .ok_or_else(|| Refusal::new(id, "amount: required (the number of units)"))?;
    let quantity = (quantity_text.len() <= 18 && quantity_text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| quantity_text.parse::<i64>().ok())
        .flatten()
        .filter(|q| (1..=MAX_QUANTITY).contains(q))
        .ok_or_else(|| {
            Refusal::new(
                id,
                format!("amount: a whole number of units from 1 to {MAX_QUANTITY}"),
            )
        })?;
    Ok(OrderRequest {
        user_id,
        side,
        symbol,
        price,
        price_text,
        quantity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_buy_with_numbers_as_text_or_json() {
        let a = parse(
            r#"{"id":"1","type":"BUY","user_id":7,"symbol":"acme","price":"12.50","amount":10}"#,
        )
        .unwrap();
        let b = parse(
            r#"{"id":"1","type":"BUY","user_id":"7","symbol":"ACME","price":12.50,"amount":"10"}"#,
        )
        .unwrap();
        assert_eq!(a.canonical(), b.canonical());
        let Body::Order(order) = a.body else {
            panic!("an order")
        };
        assert_eq!(order.symbol, "ACME");
        assert_eq!(order.quantity, 10);
        assert_eq!(order.price, Decimal::parse("12.5").unwrap());
    }

    #[test]
    fn numbers_are_exact() {
        let m = parse(r#"{"id":2,"type":"DEPOSIT","user_id":7,"amount":0.1000000000000000055511151231257827}"#)
            .unwrap();
        let Body::Payment(map) = m.body else {
            panic!("a payment")
        };
        assert_eq!(map["amount"], "0.1000000000000000055511151231257827");
        assert_eq!(m.id, json!(2));
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            ("[1]", "JSON object"),
            (r#"{"id":"1"}"#, "type: required"),
            (r#"{"id":"1","type":"PAY"}"#, "type: must be one of"),
            (
                r#"{"id":"1","type":"DEPOSIT","amount":"1"}"#,
                "user_id: required",
            ),
            (
                r#"{"id":"1","type":"DEPOSIT","user_id":-3,"amount":"1"}"#,
                "user_id: must be a positive",
            ),
            (
                r#"{"id":"1","type":"DEPOSIT","user_id":3,"amount":"-1"}"#,
                "amount: must be greater",
            ),
            (
                r#"{"id":"1","type":"DEPOSIT","user_id":3,"amount":"ten"}"#,
                "amount: must be a decimal",
            ),
            (
                r#"{"id":"1","type":"BUY","user_id":3,"symbol":"A","amount":"1"}"#,
                "price: required",
            ),
            (
                r#"{"id":"1","type":"BUY","user_id":3,"symbol":"A","price":"1","amount":"1.5"}"#,
                "amount: a whole number",
            ),
            (
                r#"{"id":"1","type":"SELL","user_id":3,"symbol":"9X","price":"1","amount":"1"}"#,
                "symbol:",
            ),
            (
                r#"{"id":"1","type":"SELL","user_id":3,"price":"1","amount":"1"}"#,
                "symbol: required",
            ),
            (
                r#"{"id":1.5,"type":"USER_INFO","user_id":3}"#,
                "id: must be",
            ),
            (r#"{"id":"","type":"USER_INFO","user_id":3}"#, "id: must be"),
        ];
        for (text, expected) in cases {
            let refusal = parse(text).expect_err(text);
            assert!(
                refusal.message.contains(expected),
                "{text}: {}",
                refusal.message
            );
        }
    }

    #[test]
    fn a_message_without_an_id_is_not_keyed() {
        let m = parse(r#"{"type":"ADD_USER"}"#).unwrap();
        assert_eq!(m.id_key(), None);
        let m = parse(r#"{"id":"a","type":"ADD_USER","login":"ann"}"#).unwrap();
        assert_eq!(m.id_key().as_deref(), Some("\"a\""));
    }
}
