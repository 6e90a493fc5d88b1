-- What billing owes providers for accepted claims: one payable per claim, whatever happens to
-- the event that announced it.
CREATE TABLE provider_payables (
    id TEXT PRIMARY KEY,
    claim_id TEXT NOT NULL UNIQUE,
    provider_npi TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'paid')),
    source_event_id TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX provider_payables_npi ON provider_payables (provider_npi, created_at);
