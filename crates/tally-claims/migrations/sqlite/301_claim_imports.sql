-- One row per claims file imported, found by its content's SHA-256: an import of a file already
-- imported stores nothing, and an import that stopped part way resumes after the rows its
-- committed transactions covered. `rows_done` grows in the same transaction as the claims it
-- covers, so it always equals the file rows (accepted or rejected) whose claims are stored.
CREATE TABLE claim_imports (
    file_sha256 TEXT PRIMARY KEY,
    file_name TEXT NOT NULL,
    rows_done BIGINT NOT NULL CHECK (rows_done >= 0),
    accepted BIGINT NOT NULL CHECK (accepted >= 0 AND accepted <= rows_done),
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished_at TEXT
);
