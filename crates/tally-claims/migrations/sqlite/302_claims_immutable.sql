-- A stored claim never changes: an import's claim.accepted events are read back from the claims
-- rows (the outbox names the run of claims instead of copying them), so a claim changed or
-- removed would change or lose an event already published.
CREATE TRIGGER claims_no_update BEFORE UPDATE ON claims
BEGIN
    SELECT RAISE(ABORT, 'claims are immutable: a stored claim is never updated');
END;

CREATE TRIGGER claims_no_delete BEFORE DELETE ON claims
BEGIN
    SELECT RAISE(ABORT, 'claims are immutable: a stored claim is never deleted');
END;
