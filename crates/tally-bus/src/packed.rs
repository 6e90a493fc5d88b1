//! Packed outbox rows: one row holding a run of events that share everything but their id,
//! aggregate and data (a bulk write's events of one type). Packing keeps the log's cost per event
//! to the event's own bytes: one row, one index entry and one copy of the shared fields per run
//! instead of per event. The reader expands a packed row back into one envelope per position.
//!
//! The envelope column of a packed row holds
//! `{"packed": {type, version, source, aggregate_type, occurred_at, correlation_id,
//! causation_id}, "events": [[id, aggregate_id, data], ...]}`.

use serde::{Deserialize, Serialize};
use tally_kernel::time::Timestamp;
use tally_kernel::Envelope;
use uuid::Uuid;

/// Most events one packed row holds: large enough that the per-row cost disappears, small enough
/// that a reader resuming in the middle of a row re-reads little.
pub const PACKED_EVENTS: usize = 256;

/// What the events of a packed row share.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Shared<S> {
    #[serde(rename = "type")]
    event_type: S,
    version: u32,
    source: S,
    aggregate_type: S,
    occurred_at: Timestamp,
    correlation_id: S,
    causation_id: S,
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
    events: Vec<(Uuid, String, serde_json::Value)>,
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

/// The envelopes of a packed row, in order; exactly `entries` of them.
pub(crate) fn decode(text: &str, entries: usize) -> Result<Vec<Envelope>, String> {
    let packed: PackedIn =
        serde_json::from_str(text).map_err(|e| format!("not a valid packed row: {e}"))?;
    if packed.events.len() != entries {
        return Err(format!(
            "a packed row of {entries} entries holds {} events",
            packed.events.len()
        ));
    }
    let shared = packed.packed;
    Ok(packed
        .events
        .into_iter()
        .map(|(id, aggregate_id, data)| Envelope {
            id,
            event_type: shared.event_type.clone(),
            version: shared.version,
            source: shared.source.clone(),
            aggregate_type: shared.aggregate_type.clone(),
            aggregate_id,
            occurred_at: shared.occurred_at,
            correlation_id: shared.correlation_id.clone(),
            causation_id: shared.causation_id.clone(),
            data,
        })
        .collect())
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
