-- Trading: the users it knows (from wallets' client events), the requests callers sent over the
-- WebSocket with their replies, orders, the trades they executed, and holdings per symbol.

-- A user is a wallets client; its wallet is the one trades debit and credit.
CREATE TABLE users (
    user_id BIGINT PRIMARY KEY,
    wallet_id BIGINT NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'removed')),
    updated_at TEXT NOT NULL
);

-- One row per accepted message. message_id is the caller's id (as JSON text), unique per token:
-- the same id sent again gets the same reply, and never a second effect. reply is the JSON reply
-- once the request is decided.
CREATE TABLE requests (
    id TEXT PRIMARY KEY,
    caller TEXT NOT NULL,
    message_id TEXT,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    reply TEXT,
    created_at TEXT NOT NULL,
    decided_at TEXT,
    UNIQUE (caller, message_id)
);

-- A BUY or SELL. Its id is the request's id. A BUY is pending until the wallet's hold answers;
-- settled once the wallet captured the hold (BUY) or credited the proceeds (SELL).
CREATE TABLE orders (
    id TEXT PRIMARY KEY REFERENCES requests (id),
    user_id BIGINT NOT NULL,
    wallet_id BIGINT NOT NULL,
    side TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
    symbol TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    price_minor BIGINT NOT NULL CHECK (price_minor > 0),
    total_minor BIGINT NOT NULL CHECK (total_minor > 0),
    currency TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'executed', 'rejected')),
    reason TEXT,
    hold_id TEXT,
    settled BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE INDEX orders_by_user ON orders (user_id, created_at);

CREATE TABLE trades (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL UNIQUE REFERENCES orders (id),
    user_id BIGINT NOT NULL,
    side TEXT NOT NULL,
    symbol TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    price_minor BIGINT NOT NULL,
    total_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    executed_at TEXT NOT NULL
);

-- Units of a symbol a user holds. Never negative: a SELL takes units only where they are.
CREATE TABLE holdings (
    user_id BIGINT NOT NULL,
    symbol TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity >= 0),
    updated_at TEXT NOT NULL,
    PRIMARY KEY (user_id, symbol)
);
