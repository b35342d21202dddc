-- The authority's tables, but for the events (0002). The same statements
-- run on PostgreSQL and on CockroachDB.

-- Enrolled checkpoints. mark is the highest sequence number held with none
-- missing before it; last_hash the hash of event mark (or of the last event
-- of a range the device declared purged; 32 zero bytes before the first),
-- so that the next event's link is checked without reading the events. An
-- upload locks its device's row (SELECT ... FOR UPDATE) for its transaction.
CREATE TABLE devices (
    id        TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    key       BYTEA NOT NULL,
    enrolled  TIMESTAMPTZ NOT NULL,
    mark      BIGINT NOT NULL DEFAULT 0,
    last_hash BYTEA NOT NULL
);

-- One-time enrolment tokens, by their SHA-256: a copy of the database does
-- not enrol anyone.
CREATE TABLE enrolment_tokens (
    token_sha256 BYTEA PRIMARY KEY,
    name         TEXT NOT NULL,
    expires      TIMESTAMPTZ NOT NULL
);

-- Ranges of events a device declared purged at the checkpoint before upload.
CREATE TABLE purged (
    device    TEXT NOT NULL REFERENCES devices (id),
    to_seq    BIGINT NOT NULL,
    from_seq  BIGINT NOT NULL,
    last_hash BYTEA NOT NULL,
    at        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (device, to_seq)
);

-- The revocation version and its set's count and digest (XOR of the entries'
-- hashes): one row, locked by every change to the revocations.
CREATE TABLE revocation_state (
    id      INT PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL,
    entries BIGINT NOT NULL,
    digest  BYTEA NOT NULL
);
INSERT INTO revocation_state (id, version, entries, digest)
VALUES (1, 0, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::BYTEA);

-- One row per subject ever revoked: its entry (cutoff: credentials issued at
-- or before it are revoked; drop_after: when the entry may go; Unix seconds),
-- or, live false, its tombstone; version is the version that last changed
-- it. A delta since version V is the rows of version above V.
CREATE TABLE revocations (
    subject    BYTEA PRIMARY KEY,
    cutoff     BIGINT NOT NULL,
    drop_after BIGINT NOT NULL,
    version    BIGINT NOT NULL,
    live       BOOL NOT NULL
);
CREATE INDEX revocations_by_version ON revocations (version);
CREATE INDEX revocations_by_drop ON revocations (drop_after) WHERE live;

-- Holders' last declarations (Unix seconds; NULL only inside the transaction
-- of a holder's first declaration).
CREATE TABLE holders (
    subject  BYTEA PRIMARY KEY,
    declared BIGINT
);

-- The colour the authority holds for a subject, and since when.
CREATE TABLE colours (
    subject BYTEA PRIMARY KEY,
    colour  TEXT NOT NULL,
    since   TIMESTAMPTZ NOT NULL
);

-- Small values: the trust list served.
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
