-- What compliance reports compute from (docs/METHODOLOGY.md §7).

-- Every access ever seen, with where it is and its schedule, so a report counts the
-- tests it should have run, also over a period when it sent nothing.
CREATE TABLE report_accesses (
    id         INTEGER PRIMARY KEY,
    agent_id   TEXT NOT NULL,
    access     TEXT NOT NULL,     -- access name ('' for a one-shot probe)
    quartier   TEXT NOT NULL,     -- of its latest delivery ('' when none)
    building   TEXT NOT NULL,
    kind       TEXT NOT NULL,
    first_at   INTEGER NOT NULL,  -- earliest result's start, Unix nanoseconds
    last_at    INTEGER NOT NULL,  -- latest result's start
    interval_s REAL,              -- run.interval_s of the latest result
    UNIQUE (agent_id, access)
);
CREATE INDEX report_accesses_site ON report_accesses (quartier, building);

-- One compact row per stored result, clustered by access and time, so a report reads
-- tens of bytes per result, in one sequential pass per access, instead of its JSON.
-- Every column is a copy of a record field; the record stays the reference.
CREATE TABLE report_facts (
    access_id        INTEGER NOT NULL,    -- report_accesses.id
    started_at       INTEGER NOT NULL,    -- run.started_at, Unix nanoseconds (UTC)
    result_rowid     INTEGER NOT NULL,    -- results.rowid of the record
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
    PRIMARY KEY (access_id, started_at, result_rowid)
) WITHOUT ROWID;

INSERT INTO report_accesses (agent_id, access, quartier, building, kind, first_at, last_at,
                             interval_s)
SELECT agent_id, COALESCE(access_name, ''), COALESCE(quartier, ''), COALESCE(building, ''),
       access_kind, MIN(started_at), MAX(started_at),
       (SELECT json_extract(r2.record, '$.run.interval_s') FROM results r2
         WHERE r2.agent_id = r.agent_id
           AND COALESCE(r2.access_name, '') = COALESCE(r.access_name, '')
         ORDER BY r2.started_at DESC LIMIT 1)
FROM results r
GROUP BY agent_id, COALESCE(access_name, '');

INSERT INTO report_facts (access_id, started_at, result_rowid, outcome, reason, flags,
    down_bps, up_bps, down_goodput_bps, target_down_bps, verdict_down, idle_s, loaded_s,
    probes_sent, probes_received, version)
SELECT a.id, r.started_at, r.rowid,
       json_extract(r.record, '$.status.outcome'), json_extract(r.record, '$.status.reason'),
       COALESCE((SELECT group_concat(value, ',') FROM json_each(r.record, '$.flags')), ''),
       json_extract(r.record, '$.download.ip_rate_bps'),
       json_extract(r.record, '$.upload.ip_rate_bps'),
       json_extract(r.record, '$.download.goodput_bps'),
       json_extract(r.record, '$.verdict.target_down_bps'),
       json_extract(r.record, '$.verdict.down'),
       json_extract(r.record, '$.idle_latency.median_s'),
       json_extract(r.record, '$.download.loaded_latency.median_s'),
       json_extract(r.record, '$.idle_latency.sent'),
       json_extract(r.record, '$.idle_latency.received'),
       COALESCE(json_extract(r.record, '$.agent.version'), '')
FROM results r
JOIN report_accesses a ON a.agent_id = r.agent_id AND a.access = COALESCE(r.access_name, '');
