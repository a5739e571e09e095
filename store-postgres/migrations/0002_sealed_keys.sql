-- Key material the collectors share (the CA, the report key), sealed by a key file
-- the collectors hold: the database keeps opaque bytes and never a key.
CREATE TABLE sealed_keys (
    name      TEXT PRIMARY KEY,
    sealed    BYTEA NOT NULL,
    sealed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
