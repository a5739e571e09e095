-- Enrolment: one-time tokens (only a hash of the secret is kept) and what each agent
-- was enrolled as. The site of an agent's results comes from here, never from them.
CREATE TABLE tokens (
    hash       TEXT PRIMARY KEY,  -- SHA-256 of the token's secret, hex
    quartier   TEXT NOT NULL,
    building   TEXT NOT NULL,
    latitude   REAL,
    longitude  REAL,
    created_at INTEGER NOT NULL,  -- Unix nanoseconds (UTC)
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    agent_id   TEXT
) WITHOUT ROWID;

ALTER TABLE agents ADD COLUMN enrolled_at INTEGER;
ALTER TABLE agents ADD COLUMN latitude REAL;
ALTER TABLE agents ADD COLUMN longitude REAL;
-- The health the agent sent with its latest upload (JSON), and when.
ALTER TABLE agents ADD COLUMN health TEXT;
ALTER TABLE agents ADD COLUMN health_at INTEGER;
