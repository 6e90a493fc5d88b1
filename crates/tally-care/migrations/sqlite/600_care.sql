-- The care service: physicians with their tariffs, and appointments (a consultation is an
-- appointment: document 000's consultation id is the appointment id).

-- seq is the registration order: lists page newest first on it (ids may be chosen by callers,
-- so they are not time ordered). Money is integer minor units; times are fixed-width RFC 3339
-- UTC text, so that text order is time order.
CREATE TABLE physicians (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    tariff_kind TEXT NOT NULL CHECK (tariff_kind IN ('per_block', 'per_minute')),
    -- per_block: the block length; per_minute: NULL.
    block_minutes INTEGER,
    -- per_minute: the minutes billed at least; per_block: NULL.
    minimum_minutes INTEGER,
    -- The fee per block or per minute.
    fee_minor INTEGER NOT NULL CHECK (fee_minor > 0),
    currency TEXT NOT NULL,
    default_minutes INTEGER NOT NULL CHECK (default_minutes BETWEEN 1 AND 1440),
    created_at TEXT NOT NULL,
    CHECK (
        (tariff_kind = 'per_block' AND block_minutes BETWEEN 1 AND 1440
            AND minimum_minutes IS NULL)
        OR (tariff_kind = 'per_minute' AND block_minutes IS NULL
            AND minimum_minutes BETWEEN 0 AND 1440)
    )
);

CREATE TABLE appointments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    -- The patient belongs to the patients service: its id only, never its details.
    patient_id TEXT NOT NULL,
    physician_id TEXT NOT NULL REFERENCES physicians (id),
    status TEXT NOT NULL CHECK (status IN ('booked', 'closed', 'cancelled', 'no_show')),
    scheduled_start TEXT NOT NULL,
    scheduled_end TEXT NOT NULL,
    scheduled_price_minor INTEGER NOT NULL CHECK (scheduled_price_minor >= 0),
    currency TEXT NOT NULL,
    -- Set when closed: the real end, the minutes billed and the final price.
    actual_end TEXT,
    duration_minutes INTEGER,
    price_minor INTEGER CHECK (price_minor >= 0),
    cancel_reason TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    CHECK (scheduled_end > scheduled_start),
    CHECK ((status = 'closed') = (actual_end IS NOT NULL AND duration_minutes IS NOT NULL
        AND price_minor IS NOT NULL))
);
-- Finds the booked appointments of a physician that overlap a new one.
CREATE INDEX appointments_physician_booked ON appointments (physician_id, scheduled_start)
    WHERE status = 'booked';
CREATE INDEX appointments_physician ON appointments (physician_id, seq);
CREATE INDEX appointments_patient ON appointments (patient_id, seq);
