-- Trading figures from trade.executed and trade.rejected: per symbol, side and currency, how
-- many trades, how many units, and their value.
CREATE TABLE trade_statistics (
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    currency TEXT NOT NULL,
    executed BIGINT NOT NULL,
    rejected BIGINT NOT NULL,
    quantity BIGINT NOT NULL,
    volume_minor BIGINT NOT NULL,
    PRIMARY KEY (symbol, side, currency)
);
