-- Maintenance jobs (retention, log checkpoints) run by one collector at a time when
-- several share the store: each job's lease, its holder and until when (Unix ns).
CREATE TABLE leases (
    job      TEXT PRIMARY KEY,
    holder   TEXT NOT NULL,
    until_ns INTEGER NOT NULL
);
