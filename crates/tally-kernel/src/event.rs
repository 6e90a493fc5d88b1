//! The event envelope: the only serialized type that crosses services besides public API bodies.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::time::Timestamp;

/// One published fact. `type` is the topic name (`funds.transferred`); `version` changes only when
/// `data` changes incompatibly, and consumers refuse versions they do not know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: u32,
    /// The service that published the event.
    pub source: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub occurred_at: Timestamp,
    /// The id shared by everything one outside request set in motion.
    pub correlation_id: String,
    /// The id of the request or event that directly caused this one.
    pub causation_id: String,
    pub data: serde_json::Value,
}

/// What a service knows about why it is emitting events: the request or event being handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMeta {
    pub correlation_id: String,
    pub causation_id: String,
}

impl EventMeta {
    /// Events caused directly by an outside request with this id.
    pub fn from_request(request_id: &str) -> Self {
        Self {
            correlation_id: request_id.to_owned(),
            causation_id: request_id.to_owned(),
        }
    }

    /// Events caused by handling `cause`: the correlation carries on, the causation is `cause`.
    pub fn caused_by(cause: &Envelope) -> Self {
        Self {
            correlation_id: cause.correlation_id.clone(),
            causation_id: cause.id.to_string(),
        }
    }
}

/// A domain event a service can publish.
pub trait DomainEvent {
    /// The event (and topic) name, in the past tense: `funds.deposited`.
    fn event_type(&self) -> &'static str;
    fn version(&self) -> u32 {
        1
    }
    fn aggregate_type(&self) -> &'static str;
    fn aggregate_id(&self) -> String;
    fn data(&self) -> serde_json::Value;

    /// Writes [`DomainEvent::data`] as JSON to `out`. Events whose data is their own
    /// `Serialize` form override it to write themselves directly, without building a
    /// `serde_json::Value` first: bulk publishers call this once per event.
    fn write_data(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        serde_json::to_writer(out, &self.data())
    }

    /// The names of [`DomainEvent::data`]'s fields, when every event of this type has exactly
    /// these, in this order: a bulk publisher then writes the names once per packed row and each
    /// event's values only ([`DomainEvent::write_data_values`]). `None` (the default): each
    /// event's data is written whole.
    fn data_fields(&self) -> Option<&'static [&'static str]> {
        None
    }

    /// Writes the values of [`DomainEvent::data`]'s fields as a JSON array, in the order of
    /// [`DomainEvent::data_fields`] (a field the data lacks is `null`).
    fn write_data_values(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let data = self.data();
        let values: Vec<&serde_json::Value> = self
            .data_fields()
            .unwrap_or_default()
            .iter()
            .map(|field| data.get(field).unwrap_or(&serde_json::Value::Null))
            .collect();
        serde_json::to_writer(out, &values)
    }

    fn to_envelope(&self, source: &str, meta: &EventMeta, occurred_at: Timestamp) -> Envelope {
        Envelope {
            id: crate::id::new_v7(),
            event_type: self.event_type().to_owned(),
            version: self.version(),
            source: source.to_owned(),
            aggregate_type: self.aggregate_type().to_owned(),
            aggregate_id: self.aggregate_id(),
            occurred_at,
            correlation_id: meta.correlation_id.clone(),
            causation_id: meta.causation_id.clone(),
            data: self.data(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_serializes_type_under_its_wire_name() {
        let meta = EventMeta::from_request("req-1");
        let env = Envelope {
            id: Uuid::nil(),
            event_type: "funds.deposited".into(),
            version: 1,
            source: "wallets".into(),
            aggregate_type: "wallet".into(),
            aggregate_id: "7".into(),
            occurred_at: crate::time::from_db("2026-01-01T00:00:00.000000Z").unwrap(),
            correlation_id: meta.correlation_id.clone(),
            causation_id: meta.causation_id.clone(),
            data: serde_json::json!({"amount_minor": 5}),
        };
        let json = serde_json::to_value(&env).unwrap();
        assert_eq!(json["type"], "funds.deposited");
        assert_eq!(json["occurred_at"], "2026-01-01T00:00:00Z");
        let back: Envelope = serde_json::from_value(json).unwrap();
        assert_eq!(back, env);
        let child = EventMeta::caused_by(&env);
        assert_eq!(child.correlation_id, "req-1");
        assert_eq!(child.causation_id, Uuid::nil().to_string());
    }
}
