-- The claims service: accepted claims and the running total of net fees per provider.

-- One row per accepted claim. Amounts are US cents; net_fee_minor is derived and checked here.
CREATE TABLE claims (
    id TEXT PRIMARY KEY,
    service_date TEXT NOT NULL,
    submitted_procedure TEXT NOT NULL,
    quadrant TEXT,
    plan_group_number TEXT NOT NULL,
    subscriber_number TEXT NOT NULL,
    provider_npi TEXT NOT NULL,
    provider_fees_minor INTEGER NOT NULL CHECK (provider_fees_minor >= 0),
    allowed_fees_minor INTEGER NOT NULL CHECK (allowed_fees_minor >= 0),
    member_coinsurance_minor INTEGER NOT NULL CHECK (member_coinsurance_minor >= 0),
    member_copay_minor INTEGER NOT NULL CHECK (member_copay_minor >= 0),
    net_fee_minor INTEGER NOT NULL,
    currency TEXT NOT NULL,
    created_at TEXT NOT NULL,
    CHECK (net_fee_minor = provider_fees_minor + member_coinsurance_minor + member_copay_minor
        - allowed_fees_minor)
);

-- The ranking's source: one row per provider, grown in the transaction that inserts its claims
-- (so it always equals the sum over the claims table). USD cents.
CREATE TABLE provider_totals (
    provider_npi TEXT PRIMARY KEY,
    total_net_fee_minor INTEGER NOT NULL,
    claim_count INTEGER NOT NULL CHECK (claim_count > 0),
    updated_at TEXT NOT NULL
);
-- The top-N query reads the first N entries of this index, in its order: no scan, no sort.
CREATE INDEX provider_totals_rank ON provider_totals (total_net_fee_minor DESC, provider_npi);
