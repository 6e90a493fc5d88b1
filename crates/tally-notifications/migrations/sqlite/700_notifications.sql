-- The notifications service: its recipients read model, the messages it renders from events,
-- and one delivery per message and channel.

-- Contact details from patient.registered / patient.updated: the only place this service keeps
-- them. as_of is the occurred_at of the event the row was last set from, so that an older event
-- read late never overwrites a newer one.
CREATE TABLE recipients (
    patient_id TEXT PRIMARY KEY,
    full_name TEXT NOT NULL,
    email TEXT,
    phone TEXT,
    as_of TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- One message per event and recipient, whatever the deliveries of the event: the unique key is
-- written in the transaction that records the event in the inbox. seq is the order lists page
-- on, newest first. routed_at is set once the message's deliveries exist.
CREATE TABLE messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    created_at TEXT NOT NULL,
    routed_at TEXT,
    updated_at TEXT NOT NULL,
    UNIQUE (event_id, patient_id)
);
CREATE INDEX messages_patient ON messages (patient_id, seq);
CREATE INDEX messages_unrouted ON messages (seq) WHERE routed_at IS NULL;

-- One delivery per message and channel: target is the webhook URL, '' for e-mail (the address
-- is read from recipients when sending) and for stored. A pending delivery is due at
-- next_attempt_at; a worker claims it by setting lease_id and moving next_attempt_at to the end
-- of its lease, so that another worker takes it over only if this one stops before recording
-- the outcome. attempts counts every claimed attempt and survives restarts.
CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    message_id TEXT NOT NULL REFERENCES messages (id),
    channel TEXT NOT NULL CHECK (channel IN ('webhook', 'email', 'stored')),
    target TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts INTEGER NOT NULL,
    next_attempt_at TEXT NOT NULL,
    lease_id TEXT,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (message_id, channel, target)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_lease ON deliveries (lease_id) WHERE lease_id IS NOT NULL;
