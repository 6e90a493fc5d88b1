-- Tables every service database has. Owned by tally-db and used by tally-bus and tally-http;
-- services never touch them directly.

-- The service's event log: rows are written in the same transaction as the change they describe.
-- seq is the position in the log, gap-free and in commit order; it is NULL until the sequencer
-- assigns it (PostgreSQL), or set in the writing transaction (SQLite, which has one writer).
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    seq BIGINT UNIQUE,
    topic TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    envelope TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX outbox_unsequenced ON outbox (created_at, id) WHERE seq IS NULL;

-- The last position handed out in this service's log. Locking this row serializes sequencing.
CREATE TABLE log_head (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    last_seq BIGINT NOT NULL
);
INSERT INTO log_head (id, last_seq) VALUES (1, 0);

-- Events this service's consumers have applied: recorded in the same transaction as the effect.
CREATE TABLE inbox (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);

-- How far each consumer has read each source log.
CREATE TABLE consumer_positions (
    consumer TEXT NOT NULL,
    source TEXT NOT NULL,
    position BIGINT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (consumer, source)
);

-- Events a consumer gave up on after its retries; shown by `tally dlq list`.
CREATE TABLE dead_letters (
    id TEXT PRIMARY KEY,
    consumer TEXT NOT NULL,
    source TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    envelope TEXT NOT NULL,
    error TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('dead', 'redriven')),
    created_at TEXT NOT NULL,
    redriven_at TEXT
);
CREATE INDEX dead_letters_status ON dead_letters (status, created_at);

-- The first response to each Idempotency-Key, stored in the transaction of the effect.
CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status_code BIGINT NOT NULL,
    response_body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (scope, idempotency_key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
