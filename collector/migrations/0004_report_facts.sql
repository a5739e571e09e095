-- What compliance reports compute from (docs/METHODOLOGY.md §7), one compact row per
-- stored result, so a report streams tens of bytes per result instead of its JSON.
-- Every column is a copy of a record field; the record stays the reference. Clustered
-- by access and time, so a report reads it in one sequential pass.
CREATE TABLE report_facts (
    result_rowid     INTEGER NOT NULL,    -- results.rowid of the record
    quartier         TEXT NOT NULL,       -- '' when the result has no site
    building         TEXT NOT NULL,
    agent_id         TEXT NOT NULL,
    access           TEXT NOT NULL,       -- access name ('' for a one-shot probe)
    kind             TEXT NOT NULL,
    started_at       INTEGER NOT NULL,    -- Unix nanoseconds (UTC)
    outcome          TEXT NOT NULL,       -- status.outcome
    reason           TEXT,                -- status.reason
    flags            TEXT NOT NULL,       -- flags, comma-separated
    down_bps         REAL,                -- download.ip_rate_bps
    up_bps           REAL,                -- upload.ip_rate_bps
    down_goodput_bps REAL,                -- download.goodput_bps
    target_down_bps  REAL,                -- verdict.target_down_bps
    verdict_down     TEXT,                -- verdict.down
    idle_s           REAL,                -- idle_latency.median_s
    loaded_s         REAL,                -- download.loaded_latency.median_s
    probes_sent      INTEGER,             -- idle_latency.sent
    probes_received  INTEGER,             -- idle_latency.received
    version          TEXT NOT NULL,       -- agent.version
    PRIMARY KEY (quartier, building, agent_id, access, started_at, result_rowid)
) WITHOUT ROWID;

-- Every access ever seen, with its schedule, so a report counts the tests it should
-- have run, also over a period when it sent nothing.
CREATE TABLE report_accesses (
    agent_id   TEXT NOT NULL,
    access     TEXT NOT NULL,
    quartier   TEXT NOT NULL,
    building   TEXT NOT NULL,
    kind       TEXT NOT NULL,
    first_at   INTEGER NOT NULL,  -- earliest result's start, Unix nanoseconds
    last_at    INTEGER NOT NULL,  -- latest result's start
    interval_s REAL,              -- run.interval_s of the latest result
    PRIMARY KEY (agent_id, access)
) WITHOUT ROWID;

INSERT INTO report_facts (result_rowid, quartier, building, agent_id, access, kind,
    started_at, outcome, reason, flags, down_bps, up_bps, down_goodput_bps, target_down_bps,
    verdict_down, idle_s, loaded_s, probes_sent, probes_received, version)
SELECT rowid, COALESCE(quartier, ''), COALESCE(building, ''), agent_id,
       COALESCE(access_name, ''), access_kind, started_at,
       json_extract(record, '$.status.outcome'), json_extract(record, '$.status.reason'),
       COALESCE((SELECT group_concat(value, ',') FROM json_each(record, '$.flags')), ''),
       json_extract(record, '$.download.ip_rate_bps'),
       json_extract(record, '$.upload.ip_rate_bps'),
       json_extract(record, '$.download.goodput_bps'),
       json_extract(record, '$.verdict.target_down_bps'),
       json_extract(record, '$.verdict.down'),
       json_extract(record, '$.idle_latency.median_s'),
       json_extract(record, '$.download.loaded_latency.median_s'),
       json_extract(record, '$.idle_latency.sent'),
       json_extract(record, '$.idle_latency.received'),
       COALESCE(json_extract(record, '$.agent.version'), '')
FROM results;

INSERT INTO report_accesses
SELECT agent_id, access, quartier, building, kind, MIN(started_at), MAX(started_at),
       (SELECT json_extract(r.record, '$.run.interval_s') FROM results r
         WHERE r.rowid = (SELECT f2.result_rowid FROM report_facts f2
                          WHERE f2.agent_id = f.agent_id AND f2.access = f.access
                          ORDER BY f2.started_at DESC LIMIT 1))
FROM report_facts f
GROUP BY agent_id, access;
