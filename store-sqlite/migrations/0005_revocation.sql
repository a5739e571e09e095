-- Revoked agents: refused at their next connection, with the reason `revoked`.
ALTER TABLE agents ADD COLUMN revoked_at INTEGER; -- Unix nanoseconds (UTC)
