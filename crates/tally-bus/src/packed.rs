//! Packed outbox rows: one row holding a run of events that share everything but their id,
//! aggregate and data (a bulk write's events of one type). Packing keeps the log's cost per event
//! to the event's own bytes: one row, one index entry and one copy of the shared fields per run
//! instead of per event. The reader expands a packed row back into one envelope per position.
//!
//! The envelope column of a packed row holds
//! `{"packed": {type, version, source, aggregate_type, occurred_at, correlation_id,
//! causation_id}, "events": [[id, aggregate_id, data], ...]}`. When the events' type names its
//! data's fields ([`DomainEvent::data_fields`]), the row holds them once, as
//! `"fields": [name, ...]` after `"packed"`, and each event's data as the array of its values in
//! that order: the reader zips them back into the object.
//!
//! A row of events read from rows (see [`crate::rows`]) holds, instead of `"events"`,
//! `"rows": {source, first_row, first_event}`: its events are built from the rows of `source`
//! with the ids from `first_row` on, one per position, and get the ids from `first_event` on.

use serde::{Deserialize, Serialize};
use tally_kernel::event::DomainEvent;
use tally_kernel::time::Timestamp;
use tally_kernel::{Envelope, EventMeta};
use uuid::Uuid;

/// Most events one packed row holds: large enough that the per-row cost disappears, small enough
/// that a reader resuming in the middle of a row re-reads little.
pub const PACKED_EVENTS: usize = 256;

/// What the events of a packed row share.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Shared<S> {
    #[serde(rename = "type")]
    pub event_type: S,
    pub version: u32,
    pub source: S,
    pub aggregate_type: S,
    pub occurred_at: Timestamp,
    pub correlation_id: S,
    pub causation_id: S,
}

impl Shared<String> {
    /// The envelope of one of the row's events.
    pub fn envelope(&self, id: Uuid, aggregate_id: String, data: serde_json::Value) -> Envelope {
        Envelope {
            id,
            event_type: self.event_type.clone(),
            version: self.version,
            source: self.source.clone(),
            aggregate_type: self.aggregate_type.clone(),
            aggregate_id,
            occurred_at: self.occurred_at,
            correlation_id: self.correlation_id.clone(),
            causation_id: self.causation_id.clone(),
            data,
        }
    }
}

/// The run of rows whose events a packed row holds by reference (see [`crate::rows`]).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct RowsRef<S> {
    pub source: S,
    pub first_row: Uuid,
    pub first_event: Uuid,
}

impl<'a> Shared<&'a str> {
    fn of(envelope: &'a Envelope) -> Self {
        Shared {
            event_type: &envelope.event_type,
            version: envelope.version,
            source: &envelope.source,
            aggregate_type: &envelope.aggregate_type,
            occurred_at: envelope.occurred_at,
            correlation_id: &envelope.correlation_id,
            causation_id: &envelope.causation_id,
        }
    }
}

#[derive(Serialize)]
struct PackedOut<'a> {
    packed: Shared<&'a str>,
    events: Vec<(uuid::fmt::Hyphenated, &'a str, &'a serde_json::Value)>,
}

#[derive(Deserialize)]
struct PackedIn {
    packed: Shared<String>,
    #[serde(default)]
    fields: Option<Vec<String>>,
    #[serde(default)]
    events: Option<Vec<(Uuid, String, serde_json::Value)>>,
    #[serde(default)]
    rows: Option<RowsRef<String>>,
}

#[derive(Serialize)]
struct RowsOut<'a> {
    packed: Shared<&'a str>,
    rows: RowsRef<&'a str>,
}

/// What a packed row holds: its events, or the rows they are read from.
pub(crate) enum Decoded {
    Events(Vec<Envelope>),
    Rows {
        shared: Shared<String>,
        rows: RowsRef<String>,
    },
}

/// Whether an outbox row's text is a packed row (of any number of entries).
pub(crate) fn is_packed(text: &str) -> bool {
    text.starts_with("{\"packed\":")
}

/// The envelope column of a packed row naming the run of rows of `rows.source` its events are
/// read from (see [`crate::rows`]).
pub(crate) fn encode_rows(
    shared: Shared<&str>,
    rows: RowsRef<&str>,
) -> Result<String, serde_json::Error> {
    serde_json::to_string(&RowsOut {
        packed: shared,
        rows,
    })
}

/// Splits `events` into runs that may share one row: consecutive events with the same shared
/// fields, at most [`PACKED_EVENTS`] each.
pub(crate) fn runs(events: &[Envelope]) -> impl Iterator<Item = &[Envelope]> {
    let mut rest = events;
    std::iter::from_fn(move || {
        let first = rest.first()?;
        let shared = Shared::of(first);
        let len = rest
            .iter()
            .take(PACKED_EVENTS)
            .take_while(|e| Shared::of(e) == shared)
            .count();
        let (run, tail) = rest.split_at(len);
        rest = tail;
        Some(run)
    })
}

/// The envelope column of a packed row holding `run` (which [`runs`] made).
pub(crate) fn encode(run: &[Envelope], out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let packed = PackedOut {
        packed: Shared::of(&run[0]),
        events: run
            .iter()
            .map(|e| (e.id.hyphenated(), e.aggregate_id.as_str(), &e.data))
            .collect(),
    };
    serde_json::to_writer(out, &packed)
}

/// Splits `events` (all published at once, so sharing their source, time and cause) into runs
/// that may share one row: consecutive events of the same type, version and aggregate type, at
/// most [`PACKED_EVENTS`] each.
pub(crate) fn event_runs<E: DomainEvent>(events: &[E]) -> impl Iterator<Item = &[E]> {
    let mut rest = events;
    std::iter::from_fn(move || {
        let first = rest.first()?;
        let key = (first.event_type(), first.version(), first.aggregate_type());
        let len = rest
            .iter()
            .take(PACKED_EVENTS)
            .take_while(|e| (e.event_type(), e.version(), e.aggregate_type()) == key)
            .count();
        let (run, tail) = rest.split_at(len);
        rest = tail;
        Some(run)
    })
}

/// The envelope column of a packed row holding `run` (which [`event_runs`] made), published by
/// `source` as `meta` says at `occurred_at`, the events getting the ids `ids`: the same text
/// [`encode`] writes for their envelopes, written from the events directly (no envelope and no
/// `serde_json::Value` per event).
pub(crate) fn encode_events<E: DomainEvent>(
    run: &[E],
    ids: &[Uuid],
    source: &str,
    meta: &EventMeta,
    occurred_at: Timestamp,
    out: &mut Vec<u8>,
) -> Result<(), serde_json::Error> {
    let first = &run[0];
    let shared = Shared {
        event_type: first.event_type(),
        version: first.version(),
        source,
        aggregate_type: first.aggregate_type(),
        occurred_at,
        correlation_id: meta.correlation_id.as_str(),
        causation_id: meta.causation_id.as_str(),
    };
    let fields = first.data_fields();
    out.extend_from_slice(b"{\"packed\":");
    serde_json::to_writer(&mut *out, &shared)?;
    if let Some(fields) = fields {
        out.extend_from_slice(b",\"fields\":");
        serde_json::to_writer(&mut *out, fields)?;
    }
    out.extend_from_slice(b",\"events\":[");
    let mut id_text = Uuid::encode_buffer();
    for (i, (event, id)) in run.iter().zip(ids).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"[\"");
        out.extend_from_slice(id.hyphenated().encode_lower(&mut id_text).as_bytes());
        out.extend_from_slice(b"\",");
        serde_json::to_writer(&mut *out, &event.aggregate_id())?;
        out.push(b',');
        match fields {
            Some(_) => event.write_data_values(out)?,
            None => event.write_data(out)?,
        }
        out.push(b']');
    }
    out.extend_from_slice(b"]}");
    Ok(())
}

/// The envelopes of a packed row holding its events, in order; exactly `entries` of them.
#[cfg(test)]
pub(crate) fn decode(text: &str, entries: usize) -> Result<Vec<Envelope>, String> {
    match decode_any(text, entries)? {
        Decoded::Events(events) => Ok(events),
        Decoded::Rows { .. } => Err("a packed row of rows holds no events".to_owned()),
    }
}

/// A packed row's envelopes (exactly `entries` of them, in order), or the rows it names.
pub(crate) fn decode_any(text: &str, entries: usize) -> Result<Decoded, String> {
    let packed: PackedIn =
        serde_json::from_str(text).map_err(|e| format!("not a valid packed row: {e}"))?;
    let shared = packed.packed;
    let events = match (packed.events, packed.rows) {
        (Some(events), None) => events,
        (None, Some(rows)) => return Ok(Decoded::Rows { shared, rows }),
        _ => return Err("a packed row holds either events or rows".to_owned()),
    };
    if events.len() != entries {
        return Err(format!(
            "a packed row of {entries} entries holds {} events",
            events.len()
        ));
    }
    let fields = packed.fields;
    events
        .into_iter()
        .map(|(id, aggregate_id, data)| {
            let data = match &fields {
                None => data,
                Some(fields) => zip_fields(fields, data)?,
            };
            Ok(shared.envelope(id, aggregate_id, data))
        })
        .collect::<Result<_, String>>()
        .map(Decoded::Events)
}

/// An event's data written as the array of its values: the object of `fields` and them.
fn zip_fields(fields: &[String], values: serde_json::Value) -> Result<serde_json::Value, String> {
    match values {
        serde_json::Value::Array(values) if values.len() == fields.len() => Ok(
            serde_json::Value::Object(fields.iter().cloned().zip(values).collect()),
        ),
        _ => Err(format!(
            "a packed event's data is not an array of its {} fields' values",
            fields.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(event_type: &str, causation: &str, n: u64) -> Envelope {
        Envelope {
            id: tally_kernel::id::new_v7(),
            event_type: event_type.to_owned(),
            version: 1,
            source: "claims".to_owned(),
            aggregate_type: "claim".to_owned(),
            aggregate_id: format!("claim-{n}"),
            occurred_at: "2026-11-21T10:00:00Z".parse().unwrap(),
            correlation_id: "c".to_owned(),
            causation_id: causation.to_owned(),
            data: serde_json::json!({ "n": n, "text": "quote \" and \\ and é" }),
        }
    }

    #[test]
    fn a_packed_row_decodes_to_the_envelopes_it_was_made_of() {
        let events: Vec<_> = (0..5).map(|n| envelope("claim.accepted", "r", n)).collect();
        let mut text = Vec::new();
        encode(&events, &mut text).unwrap();
        let decoded = decode(std::str::from_utf8(&text).unwrap(), 5).unwrap();
        assert_eq!(decoded, events);
        assert!(decode(std::str::from_utf8(&text).unwrap(), 4).is_err());
        assert!(decode("{\"packed\":1}", 5).is_err());
    }

    /// An event numbered `n`; with `named_fields` its type names its data's fields, so that
    /// packed rows hold the names once.
    struct Numbered {
        n: u64,
        named_fields: bool,
    }

    fn numbered(count: u64, named_fields: bool) -> Vec<Numbered> {
        (0..count).map(|n| Numbered { n, named_fields }).collect()
    }

    impl DomainEvent for Numbered {
        fn event_type(&self) -> &'static str {
            "claim.accepted"
        }

        fn aggregate_type(&self) -> &'static str {
            "claim"
        }

        fn aggregate_id(&self) -> String {
            format!("claim-{}", self.n)
        }

        fn data(&self) -> serde_json::Value {
            let text = (self.n % 2 == 0).then_some("quote \" and \\ and é");
            serde_json::json!({ "n": self.n, "text": text })
        }

        fn data_fields(&self) -> Option<&'static [&'static str]> {
            self.named_fields.then_some(&["n", "text"])
        }
    }

    #[test]
    fn packing_events_directly_writes_what_packing_their_envelopes_writes() {
        let events = numbered(5, false);
        let meta = EventMeta {
            correlation_id: "corr".to_owned(),
            causation_id: "cause".to_owned(),
        };
        let at: Timestamp = "2026-11-21T10:00:00.123456Z".parse().unwrap();
        let envelopes: Vec<_> = events
            .iter()
            .map(|e| e.to_envelope("claims", &meta, at))
            .collect();
        let ids: Vec<_> = envelopes.iter().map(|e| e.id).collect();
        let (mut direct, mut via_envelopes) = (Vec::new(), Vec::new());
        encode_events(&events, &ids, "claims", &meta, at, &mut direct).unwrap();
        encode(&envelopes, &mut via_envelopes).unwrap();
        assert_eq!(
            std::str::from_utf8(&direct).unwrap(),
            std::str::from_utf8(&via_envelopes).unwrap()
        );
        let decoded = decode(std::str::from_utf8(&direct).unwrap(), 5).unwrap();
        assert_eq!(decoded, envelopes);
    }

    #[test]
    fn events_with_named_fields_pack_their_values_and_read_back_whole() {
        let events = numbered(5, true);
        let meta = EventMeta::from_request("r");
        let at: Timestamp = "2026-11-21T10:00:00Z".parse().unwrap();
        let envelopes: Vec<_> = events
            .iter()
            .map(|e| e.to_envelope("claims", &meta, at))
            .collect();
        let ids: Vec<_> = envelopes.iter().map(|e| e.id).collect();
        let mut text = Vec::new();
        encode_events(&events, &ids, "claims", &meta, at, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert_eq!(text.matches("\"text\"").count(), 1, "{text}");
        assert_eq!(decode(&text, 5).unwrap(), envelopes);

        let short = text.replacen("[0,", "[", 1);
        assert!(decode(&short, 5).is_err(), "{short}");
    }

    #[test]
    fn runs_break_where_shared_fields_change_and_at_the_size_limit() {
        let mut events: Vec<_> = (0..600).map(|n| envelope("a", "r", n)).collect();
        events.push(envelope("b", "r", 600));
        events.push(envelope("b", "other", 601));
        events.push(envelope("a", "r", 602));
        let sizes: Vec<usize> = runs(&events).map(<[Envelope]>::len).collect();
        assert_eq!(sizes, [256, 256, 88, 1, 1, 1]);
        assert_eq!(runs(&[]).count(), 0);
    }
}
