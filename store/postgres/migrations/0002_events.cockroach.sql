-- The events checkpoints upload, on CockroachDB, which has no declarative
-- partitioning of PostgreSQL's kind: one table keyed by (device, seq), with
-- the day received beside it for retention (batched deletes by day, or a
-- row-level TTL an operator sets). See 0002_events.postgres.sql.
CREATE TABLE events (
    device TEXT NOT NULL,
    seq    BIGINT NOT NULL,
    day    DATE NOT NULL,
    hash   BYTEA NOT NULL,
    raw    BYTEA NOT NULL,
    PRIMARY KEY (device, seq)
);
CREATE INDEX events_by_day ON events (day);
