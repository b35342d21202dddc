-- The events checkpoints upload, on PostgreSQL: partitioned by the day they
-- were received (UTC), one partition a day (events_pYYYYMMDD), made ahead by
-- the authority, so that a day's events go at once (DROP TABLE) when they
-- are no longer kept. The primary key must hold the partition key; that
-- (device, seq) is held once across the partitions is kept by the upload's
-- lock on the device's row: an event is only ever inserted as the one after
-- the device's mark, and the mark moves in the same transaction
-- (docs/database.md).
CREATE TABLE events (
    device TEXT NOT NULL,
    seq    BIGINT NOT NULL,
    day    DATE NOT NULL,
    hash   BYTEA NOT NULL,
    raw    BYTEA NOT NULL,
    PRIMARY KEY (device, seq, day)
) PARTITION BY RANGE (day);
