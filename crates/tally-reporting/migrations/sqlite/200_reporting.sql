-- Reporting's read model, built only from events: a count and a total per metric and currency.
CREATE TABLE statistics (
    metric TEXT NOT NULL,
    currency TEXT NOT NULL,
    count INTEGER NOT NULL,
    total_minor INTEGER NOT NULL,
    PRIMARY KEY (metric, currency)
);
