-- Claims in PostgreSQL's own types: the id as UUID and the times as TIMESTAMPTZ instead of text.
-- A row is a third smaller, the primary key compares 16 bytes instead of 36 characters, and an
-- import writes the rows with binary COPY, which the server stores without parsing text.
ALTER TABLE claims
    ALTER COLUMN id TYPE UUID USING CAST(id AS UUID),
    ALTER COLUMN service_date TYPE TIMESTAMPTZ USING CAST(service_date AS TIMESTAMPTZ),
    ALTER COLUMN created_at TYPE TIMESTAMPTZ USING CAST(created_at AS TIMESTAMPTZ);
