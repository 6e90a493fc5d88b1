-- The patients service: registered patients, and the keys their names are searched by.

-- seq is the registration order: lists page newest first on it (ids may be chosen by callers,
-- so they are not time ordered). Dates of birth are YYYY-MM-DD text; times are RFC 3339 text.
CREATE TABLE patients (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    full_name TEXT NOT NULL,
    date_of_birth TEXT NOT NULL,
    email TEXT,
    phone TEXT,
    status TEXT NOT NULL CHECK (status IN ('active', 'deactivated')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- A patient's name, lowercased, from the start of each of its words ("maria da silva",
-- "da silva", "silva"). A search is a range on name_key (byte order, SQLite's default BINARY
-- collation); the second index finds a patient's keys when the name changes.
CREATE TABLE patient_name_keys (
    name_key TEXT NOT NULL,
    patient_seq INTEGER NOT NULL REFERENCES patients (seq),
    PRIMARY KEY (name_key, patient_seq)
);
CREATE INDEX patient_name_keys_patient ON patient_name_keys (patient_seq);
