-- API tokens. Only a SHA-256 digest of each token's secret is kept: the token itself is shown
-- once, when it is created.
CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);

-- One row once the first admin token has been made: whichever process inserts it prints the
-- token; the others see the row and make none.
CREATE TABLE auth_bootstrap (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    created_at TEXT NOT NULL
);
