-- Agents' key rotations (docs/METHODOLOGY.md §7.6): each a place in the agent's chain,
-- signed by the key it retired (JSON, as the agent sent it). agent_keys keeps the key
-- in force; reports ship the rotations so a verifier follows the keys place by place.
CREATE TABLE key_rotations (
    agent_id   TEXT NOT NULL,
    seq        INTEGER NOT NULL,     -- its place in the agent's chain
    body       TEXT NOT NULL,        -- the signed rotation, JSON
    rotated_at INTEGER NOT NULL,     -- Unix nanoseconds (UTC) when it was stored
    PRIMARY KEY (agent_id, seq)
);
