-- The transparency log of stored results (RFC 6962 hashing, the tree kept as
-- golang.org/x/mod/sumdb/tlog keeps it): every result stored from now on is appended
-- as a leaf, its verbatim record bytes hashed, in the transaction that stores it.
-- Results stored before this migration are appended, oldest first, when the store
-- opens. Nothing here is ever updated or deleted, pruning included.
CREATE TABLE log_leaves (
    leaf         INTEGER PRIMARY KEY,      -- from 0, in the order results were stored
    result_rowid INTEGER NOT NULL UNIQUE   -- results.rowid (gone once pruned)
);
CREATE TABLE log_hashes (
    idx  INTEGER PRIMARY KEY,  -- tlog's stored hash index
    hash BLOB NOT NULL         -- 32 bytes of SHA-256
);
-- Signed checkpoints (C2SP tlog-checkpoint in a C2SP signed note), one per size.
CREATE TABLE log_checkpoints (
    size    INTEGER PRIMARY KEY,  -- leaves covered
    made_at INTEGER NOT NULL,     -- Unix nanoseconds (UTC)
    note    TEXT NOT NULL         -- the signed note, as served
);
