-- An outbox row may hold a run of events (a bulk write's events of one type, published
-- together): `entries` of them, at the positions seq, seq + 1, ..., seq + entries - 1. Such a row's
-- envelope column holds what the events share once and, per event, its id, aggregate and data;
-- the log reader expands it, so consumers still see one envelope per position.
ALTER TABLE outbox ADD COLUMN entries BIGINT NOT NULL DEFAULT 1 CHECK (entries > 0);
