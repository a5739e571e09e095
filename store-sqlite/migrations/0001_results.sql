-- Results as received, one row per result id (UUIDv7 made on the agent), with the
-- columns the API and the reports filter and sort on.
CREATE TABLE results (
    id          TEXT PRIMARY KEY,
    agent_id    TEXT NOT NULL,
    quartier    TEXT,
    building    TEXT,
    access_kind TEXT NOT NULL,
    access_name TEXT,
    started_at  INTEGER NOT NULL, -- Unix nanoseconds (UTC)
    outcome     TEXT NOT NULL,
    received_at INTEGER NOT NULL, -- Unix nanoseconds (UTC), when the collector committed it
    record      TEXT NOT NULL     -- the result record, JSON, as received
) WITHOUT ROWID;
CREATE INDEX results_by_time ON results (started_at, id);
CREATE INDEX results_by_agent ON results (agent_id, started_at, id);

-- Agents seen, with where they are and when they last delivered.
CREATE TABLE agents (
    id         TEXT PRIMARY KEY,
    quartier   TEXT,
    building   TEXT,
    version    TEXT,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL
) WITHOUT ROWID;
