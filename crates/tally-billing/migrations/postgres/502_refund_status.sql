-- A refund says how the money went back and whether it arrived. Card and cash refunds complete
-- at once; a wallet refund is pending until the wallets service answers, and a credit it refuses
-- (a closed wallet) fails: the money is held by the bill again, as a refund due.
ALTER TABLE refunds ADD COLUMN method TEXT NOT NULL DEFAULT 'cash'
    CHECK (method IN ('cash', 'card', 'wallet'));
ALTER TABLE refunds ADD COLUMN status TEXT NOT NULL DEFAULT 'completed'
    CHECK (status IN ('pending', 'completed', 'failed'));
ALTER TABLE refunds ADD COLUMN wallet_id BIGINT;
ALTER TABLE refunds ADD COLUMN wallet_transaction TEXT;
ALTER TABLE refunds ADD COLUMN failure_reason TEXT;
ALTER TABLE refunds ADD COLUMN settled_at TEXT;

-- Refunds made before this migration went back the way their payment came and are taken as
-- arrived.
UPDATE refunds SET
    method = (SELECT p.method FROM payments p WHERE p.id = refunds.payment_id),
    wallet_id = (SELECT p.wallet_id FROM payments p WHERE p.id = refunds.payment_id),
    settled_at = created_at;

CREATE INDEX refunds_bill ON refunds (bill_id, created_at);
