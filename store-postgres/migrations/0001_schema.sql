-- sonde's PostgreSQL schema, version 1: what SQLite's migrations 1 to 15 built, in one
-- step (this backend starts there). Times are Unix nanoseconds (UTC) in BIGINT, as in
-- SQLite, so both backends hold the same values and `migrate` copies them unchanged.
--
-- The two tables that grow with every result, `results` and `report_facts`, are
-- partitioned by month of `started_at`; the store creates each month's partitions
-- before the first result of that month is written. Retention then drops whole months
-- cheaply, and a report's period reads only its months.

-- Every stored result's id, unpartitioned: a result is stored once whatever its start
-- time claims (a partitioned table can only keep keys unique within a partition).
CREATE TABLE result_keys (
    id         TEXT PRIMARY KEY,
    row_id     BIGINT NOT NULL,
    started_at BIGINT NOT NULL
);

CREATE SEQUENCE results_row_id;

CREATE TABLE results (
    row_id      BIGINT NOT NULL,      -- the row's handle (SQLite's rowid)
    id          TEXT NOT NULL,
    agent_id    TEXT NOT NULL,
    quartier    TEXT,
    building    TEXT,
    access_kind TEXT NOT NULL,
    access_name TEXT,
    started_at  BIGINT NOT NULL,      -- run.started_at
    outcome     TEXT NOT NULL,
    received_at BIGINT NOT NULL,      -- when the collector committed it
    record      TEXT COMPRESSION lz4 NOT NULL, -- the result record, JSON, as received
    envelope    TEXT COMPRESSION lz4, -- its signed envelope, JSON
    PRIMARY KEY (row_id, started_at)
) PARTITION BY RANGE (started_at);
CREATE INDEX results_by_time ON results (started_at, id);
CREATE INDEX results_by_agent ON results (agent_id, started_at, id);

CREATE TABLE agents (
    id                  TEXT PRIMARY KEY,
    quartier            TEXT,
    building            TEXT,
    version             TEXT,
    first_seen          BIGINT NOT NULL,
    last_seen           BIGINT NOT NULL,
    enrolled_at         BIGINT,
    latitude            DOUBLE PRECISION,
    longitude           DOUBLE PRECISION,
    health              TEXT,
    health_at           BIGINT,
    revoked_at          BIGINT,
    position_from_agent BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE tokens (
    hash       TEXT PRIMARY KEY,      -- SHA-256 of the token's secret, hex
    quartier   TEXT NOT NULL,
    building   TEXT NOT NULL,
    latitude   DOUBLE PRECISION,
    longitude  DOUBLE PRECISION,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    agent_id   TEXT
);

CREATE TABLE report_accesses (
    id         BIGSERIAL PRIMARY KEY,
    agent_id   TEXT NOT NULL,
    access     TEXT NOT NULL,         -- access name ('' for a one-shot probe)
    quartier   TEXT NOT NULL,         -- of its latest delivery ('' when none)
    building   TEXT NOT NULL,
    kind       TEXT NOT NULL,
    first_at   BIGINT NOT NULL,       -- earliest result's start
    last_at    BIGINT NOT NULL,       -- latest result's start
    interval_s DOUBLE PRECISION,      -- run.interval_s of the latest result
    UNIQUE (agent_id, access)
);
CREATE INDEX report_accesses_site ON report_accesses (quartier, building);

CREATE TABLE report_facts (
    access_id        BIGINT NOT NULL,
    started_at       BIGINT NOT NULL,
    result_rowid     BIGINT NOT NULL, -- results.row_id of the record
    outcome          TEXT NOT NULL,
    reason           TEXT,
    flags            TEXT NOT NULL,
    down_bps         DOUBLE PRECISION,
    up_bps           DOUBLE PRECISION,
    down_goodput_bps DOUBLE PRECISION,
    target_down_bps  DOUBLE PRECISION,
    verdict_down     TEXT,
    idle_s           DOUBLE PRECISION,
    loaded_s         DOUBLE PRECISION,
    probes_sent      BIGINT,
    probes_received  BIGINT,
    version          TEXT NOT NULL,
    streams          BIGINT,
    interval_s       DOUBLE PRECISION,
    cap_down_bps     DOUBLE PRECISION,
    cap_up_bps       DOUBLE PRECISION,
    rpm_down         DOUBLE PRECISION,
    rpm_up           DOUBLE PRECISION,
    PRIMARY KEY (access_id, started_at, result_rowid)
) PARTITION BY RANGE (started_at);

CREATE TABLE plans (
    version    BIGINT PRIMARY KEY,    -- from 1, only grows
    applied_at BIGINT NOT NULL,
    document   TEXT NOT NULL
);

CREATE TABLE log_leaves (
    leaf         BIGINT PRIMARY KEY,  -- from 0, in the order results were stored
    result_rowid BIGINT NOT NULL UNIQUE
);
CREATE TABLE log_hashes (
    idx  BIGINT PRIMARY KEY,          -- tlog's stored hash index
    hash BYTEA NOT NULL               -- 32 bytes of SHA-256
);
CREATE TABLE log_checkpoints (
    size    BIGINT PRIMARY KEY,
    made_at BIGINT NOT NULL,
    note    TEXT NOT NULL
);

CREATE TABLE agent_keys (
    agent_id      TEXT PRIMARY KEY,
    public_key    TEXT NOT NULL,      -- ed25519 <hex>
    registered_at BIGINT NOT NULL
);
CREATE TABLE agent_chains (
    agent_id TEXT PRIMARY KEY,
    seq      BIGINT NOT NULL,
    hash     TEXT NOT NULL
);
CREATE TABLE chain_gaps (
    agent_id TEXT NOT NULL,
    from_seq BIGINT NOT NULL,
    to_seq   BIGINT NOT NULL,
    found_at BIGINT NOT NULL,
    PRIMARY KEY (agent_id, from_seq)
);
CREATE TABLE key_rotations (
    agent_id   TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    body       TEXT NOT NULL,
    rotated_at BIGINT NOT NULL,
    PRIMARY KEY (agent_id, seq)
);

CREATE TABLE leases (
    job      TEXT PRIMARY KEY,
    holder   TEXT NOT NULL,
    until_ns BIGINT NOT NULL
);
