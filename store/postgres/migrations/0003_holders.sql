-- Holders who register their phones and declare themselves, their colours
-- and histories, the registration proofs, and the health departments' risk
-- data and feeds (docs/authority.md). The same statements run on PostgreSQL
-- and on CockroachDB.
--
-- 0001's holders and colours kept the operator's declarations, which the
-- authority no longer takes; nothing reads or writes them any more. They
-- are left as they are, with what they hold.

-- One row per subject the authority holds anything about: the holder key
-- registered (NULL: none), when, the masked name and ID hash its
-- credentials carry, the colour state the rules left (JSON: colour, since,
-- reasons, quarantine_end, holds, last_declaration, declare_now), and how
-- many changes its history has. Registrations, declarations and feeds lock
-- the subject's row (SELECT ... FOR UPDATE, the row made first if there is
-- none) for their transaction.
CREATE TABLE holder_subjects (
    subject     BYTEA PRIMARY KEY,
    key         BYTEA,
    registered  TIMESTAMPTZ,
    masked_name TEXT NOT NULL DEFAULT '',
    id_hash     BYTEA,
    state       JSONB NOT NULL DEFAULT '{}',
    changes     BIGINT NOT NULL DEFAULT 0
);

-- Each change of a subject's colour, reasons or quarantine, n from 1; the
-- reasons are codes only (a JSON array).
CREATE TABLE holder_history (
    subject        BYTEA NOT NULL,
    n              BIGINT NOT NULL,
    at             TIMESTAMPTZ NOT NULL,
    from_colour    TEXT NOT NULL,
    colour         TEXT NOT NULL,
    reasons        JSONB NOT NULL,
    quarantine_end TIMESTAMPTZ,
    cause          TEXT NOT NULL,
    PRIMARY KEY (subject, n)
);

-- One-time registration codes, by their keyed hash (never in the clear),
-- bound to the person they were issued for, until they expire.
CREATE TABLE registration_codes (
    code_hash   BYTEA PRIMARY KEY,
    subject     BYTEA NOT NULL,
    masked_name TEXT NOT NULL,
    id_hash     BYTEA,
    operator    TEXT NOT NULL,
    expires     TIMESTAMPTZ NOT NULL
);
CREATE INDEX registration_codes_by_expiry ON registration_codes (expires);

-- The ids of the real-name assertions used, until they expire (Unix
-- seconds).
CREATE TABLE used_assertions (
    id      BYTEA PRIMARY KEY,
    expires BIGINT NOT NULL
);
CREATE INDEX used_assertions_by_expiry ON used_assertions (expires);

-- The case and close-contact lists (kind 'cases' or 'close_contacts'): a
-- subject on the list since when, by which feed.
CREATE TABLE risk_listings (
    subject BYTEA NOT NULL,
    kind    TEXT NOT NULL,
    since   TIMESTAMPTZ NOT NULL,
    issuer  TEXT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (subject, kind)
);

-- Risk areas: a region code listed from starts (Unix seconds) until ends
-- (excluded; NULL: no end yet), by which feed.
CREATE TABLE risk_areas (
    region  TEXT NOT NULL,
    starts  BIGINT NOT NULL,
    ends    TIMESTAMPTZ,
    issuer  TEXT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (region, starts)
);

-- The feeds applied, by kind, issuer (the feed key's id) and version, with
-- the digest a feed sent again is compared with. Versions are unsigned
-- 64-bit numbers kept in BIGINT's bits (compared by the authority, not in
-- SQL).
CREATE TABLE feeds (
    kind      TEXT NOT NULL,
    issuer    TEXT NOT NULL,
    version   BIGINT NOT NULL,
    digest    BYTEA NOT NULL,
    applied   TIMESTAMPTZ NOT NULL,
    row_count BIGINT NOT NULL,
    PRIMARY KEY (kind, issuer, version)
);

-- The last version applied per kind and issuer: a feed locks its row, so
-- that feeds of one kind and issuer are applied one at a time.
CREATE TABLE feed_versions (
    kind         TEXT NOT NULL,
    issuer       TEXT NOT NULL,
    last_version BIGINT NOT NULL,
    PRIMARY KEY (kind, issuer)
);
