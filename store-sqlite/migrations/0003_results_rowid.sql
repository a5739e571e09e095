-- Results move to a rowid table: records are kilobytes of JSON, and SQLite keeps
-- WITHOUT ROWID tables efficient only for small rows. Appending by rowid, with the id
-- in its own unique index, is what keeps durable ingest fast (see the ingest
-- benchmark in docs/ARCHITECTURE.md).
CREATE TABLE results_v3 (
    id          TEXT NOT NULL UNIQUE,
    agent_id    TEXT NOT NULL,
    quartier    TEXT,
    building    TEXT,
    access_kind TEXT NOT NULL,
    access_name TEXT,
    started_at  INTEGER NOT NULL, -- Unix nanoseconds (UTC)
    outcome     TEXT NOT NULL,
    received_at INTEGER NOT NULL, -- Unix nanoseconds (UTC), when the collector committed it
    record      TEXT NOT NULL     -- the result record, JSON, as received
);
INSERT INTO results_v3 (id, agent_id, quartier, building, access_kind, access_name,
                        started_at, outcome, received_at, record)
    SELECT id, agent_id, quartier, building, access_kind, access_name,
           started_at, outcome, received_at, record
    FROM results ORDER BY received_at, id;
DROP TABLE results;
ALTER TABLE results_v3 RENAME TO results;
CREATE INDEX results_by_time ON results (started_at, id);
CREATE INDEX results_by_agent ON results (agent_id, started_at, id);
