-- Packed outbox rows are large and compress well: lz4 does it several times faster than the
-- default pglz. A server built without lz4 keeps the default.
DO $$
BEGIN
    EXECUTE 'ALTER TABLE outbox ALTER COLUMN envelope SET COMPRESSION lz4';
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'lz4 is not available: the outbox keeps the default compression';
END
$$;
