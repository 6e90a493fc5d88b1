-- The wallets service: clients, accounts (wallets and one external account per currency), the
-- ledger's journal (transfers and their entries) and holds.

CREATE TABLE clients (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    login TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'removed')),
    created_at TEXT NOT NULL
);

-- Balances are credits minus debits. Wallets can never go below zero, nor below their holds:
-- the service refuses such a posting first; these checks are the second line of defence.
-- External accounts (id = minus the ISO 4217 numeric code) go negative as money comes in.
CREATE TABLE accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('wallet', 'external')),
    client_id INTEGER REFERENCES clients (id),
    currency TEXT NOT NULL,
    balance_minor INTEGER NOT NULL DEFAULT 0,
    held_minor INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    created_at TEXT NOT NULL,
    CONSTRAINT wallet_not_overdrawn CHECK (
        kind = 'external' OR (held_minor >= 0 AND balance_minor >= held_minor)
    ),
    CHECK ((kind = 'wallet') = (client_id IS NOT NULL))
);
CREATE INDEX accounts_client ON accounts (client_id);

-- The journal: one row per movement between two accounts. id is the transaction number.
CREATE TABLE transfers (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('deposit', 'withdrawal', 'transfer', 'hold_capture')),
    debit_account_id INTEGER NOT NULL REFERENCES accounts (id),
    credit_account_id INTEGER NOT NULL REFERENCES accounts (id),
    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
    currency TEXT NOT NULL,
    hold_id TEXT,
    created_at TEXT NOT NULL,
    CHECK (debit_account_id <> credit_account_id)
);

-- Each transfer's two sides with the account's balance after it: the wallet history.
CREATE TABLE entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    transfer_id TEXT NOT NULL REFERENCES transfers (id),
    amount_minor INTEGER NOT NULL,
    balance_after_minor INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX entries_account ON entries (account_id, id);

CREATE TABLE holds (
    id TEXT PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
    currency TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('placed', 'captured', 'released')),
    captured_minor INTEGER NOT NULL DEFAULT 0,
    reference TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX holds_account ON holds (account_id);
