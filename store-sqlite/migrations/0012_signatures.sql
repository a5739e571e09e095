-- Agents' signatures (docs/METHODOLOGY.md §7.6): each agent's public signing key,
-- recorded with its first signed upload; each signed result's envelope (its place in
-- the agent's hash chain and the agent's signature, JSON) beside its bytes; the head
-- of each agent's chain; and the gaps found in chains (results an agent signed that
-- never arrived).
CREATE TABLE agent_keys (
    agent_id      TEXT PRIMARY KEY,
    public_key    TEXT NOT NULL,     -- ed25519 <hex>
    registered_at INTEGER NOT NULL   -- Unix nanoseconds (UTC)
);
ALTER TABLE results ADD COLUMN envelope TEXT;
CREATE TABLE agent_chains (
    agent_id TEXT PRIMARY KEY,
    seq      INTEGER NOT NULL,       -- the highest place stored
    hash     TEXT NOT NULL           -- SHA-256 (hex) of its statement
);
CREATE TABLE chain_gaps (
    agent_id TEXT NOT NULL,
    from_seq INTEGER NOT NULL,       -- first place missing
    to_seq   INTEGER NOT NULL,       -- last place missing
    found_at INTEGER NOT NULL,       -- Unix nanoseconds (UTC)
    PRIMARY KEY (agent_id, from_seq)
);
