-- Bills of appointments, their payments and refunds, and the finance record of each closed
-- consultation.

-- One bill per appointment. paid_minor is the sum of the bill's completed payments (refunds are
-- counted apart in refunded_minor); pending_minor is what wallet payments in flight reserve.
CREATE TABLE bills (
    id TEXT PRIMARY KEY,
    appointment_id TEXT NOT NULL UNIQUE,
    patient_id TEXT NOT NULL,
    amount_minor INTEGER NOT NULL CHECK (amount_minor >= 0),
    currency TEXT NOT NULL,
    paid_minor INTEGER NOT NULL DEFAULT 0 CHECK (paid_minor >= 0),
    pending_minor INTEGER NOT NULL DEFAULT 0 CHECK (pending_minor >= 0),
    refunded_minor INTEGER NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0),
    status TEXT NOT NULL CHECK (status IN ('open', 'paid', 'voided')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX bills_patient ON bills (patient_id, created_at);

CREATE TABLE payments (
    id TEXT PRIMARY KEY,
    bill_id TEXT NOT NULL REFERENCES bills (id),
    patient_id TEXT NOT NULL,
    method TEXT NOT NULL CHECK (method IN ('cash', 'card', 'wallet')),
    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
    currency TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'completed', 'failed')),
    refunded_minor INTEGER NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0 AND refunded_minor <= amount_minor),
    failure_reason TEXT,
    card_last4 TEXT,
    wallet_id INTEGER,
    wallet_transaction TEXT,
    gateway_reference TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX payments_bill ON payments (bill_id, created_at);

CREATE TABLE refunds (
    id TEXT PRIMARY KEY,
    payment_id TEXT NOT NULL REFERENCES payments (id),
    bill_id TEXT NOT NULL REFERENCES bills (id),
    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
    created_at TEXT NOT NULL
);

-- Document 000's finance record: what a closed consultation was and what it cost.
CREATE TABLE finance_records (
    appointment_id TEXT PRIMARY KEY,
    bill_id TEXT NOT NULL REFERENCES bills (id),
    patient_id TEXT NOT NULL,
    physician_id TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT NOT NULL,
    duration_minutes INTEGER NOT NULL,
    price_minor INTEGER NOT NULL,
    currency TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
