-- Plans the collector pushes to its agents: every version kept as applied, never
-- changed, so that what was in force at any time can be read back.
CREATE TABLE plans (
    version    INTEGER PRIMARY KEY,  -- from 1, only grows
    applied_at INTEGER NOT NULL,     -- Unix nanoseconds (UTC): in force from then
    document   TEXT NOT NULL         -- the checked plan, JSON
);
