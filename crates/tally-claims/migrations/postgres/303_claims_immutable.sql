-- A stored claim never changes: an import's claim.accepted events are read back from the claims
-- rows (the outbox names the run of claims instead of copying them), so a claim changed or
-- removed would change or lose an event already published.
CREATE FUNCTION claims_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'claims are immutable: a stored claim is never %', lower(TG_OP)
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER claims_immutable BEFORE UPDATE OR DELETE ON claims
    FOR EACH ROW EXECUTE FUNCTION claims_immutable();

CREATE TRIGGER claims_immutable_truncate BEFORE TRUNCATE ON claims
    FOR EACH STATEMENT EXECUTE FUNCTION claims_immutable();
