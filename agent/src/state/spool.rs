//! The agent's on-disk spool: results wait here, oldest first, until the collector has
//! committed them. A result is durable (committed with `synchronous=FULL`) before
//! `push` returns; it leaves only through `ack` (the collector's acknowledgement) or,
//! when the spool is full, as a counted eviction of the oldest.

use crate::identity::signing::SigningKey;
use rusqlite::{params, Connection, OptionalExtension};
use sonde_proto::wire::{Envelope, RawRecord, Rotation};
use sonde_proto::ResultRecord;
use std::path::Path;
use std::sync::Arc;
use uuid::Uuid;

/// Spool errors.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The database failed (disk full, permissions, corruption).
    #[error("spool database: {0}")]
    Database(#[from] rusqlite::Error),
}

/// Schema, applied once (`user_version` 1).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS spool (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    id     TEXT NOT NULL UNIQUE,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO counters (name, value) VALUES ('evictions_total', 0);
";

/// Version 2: each result's envelope (its place in the agent's chain and the agent's
/// signature, JSON; NULL for a result spooled unsigned), and the chain's head.
const SCHEMA_2: &str = "
ALTER TABLE spool ADD COLUMN envelope TEXT;
CREATE TABLE IF NOT EXISTS chain (
    one  INTEGER PRIMARY KEY CHECK (one = 1),
    seq  INTEGER NOT NULL,  -- the last result signed
    hash TEXT NOT NULL      -- SHA-256 (hex) of its statement
);
";

/// Version 3: the agent's key rotations, each a place in the chain (JSON
/// [`Rotation`]), sent with the results after them until acknowledged.
const SCHEMA_3: &str = "
CREATE TABLE IF NOT EXISTS rotations (
    seq  INTEGER PRIMARY KEY,  -- its place in the chain
    body TEXT NOT NULL,        -- the signed rotation, JSON
    sent INTEGER NOT NULL DEFAULT 0
);
";

/// The spool.
#[derive(Debug)]
pub struct Spool {
    conn: Connection,
    max_results: u64,
    /// Signs each result pushed, in the chain's order (none: results are spooled
    /// unsigned).
    signer: Option<Arc<SigningKey>>,
}

/// A result waiting in the spool: its id and its bytes as the agent encoded them.
#[derive(Debug, Clone, PartialEq)]
pub struct Spooled {
    /// The result's id.
    pub id: Uuid,
    /// The record's bytes.
    pub record: RawRecord,
    /// The agent's signature of them (none when spooled unsigned).
    pub envelope: Option<Envelope>,
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// Oldest results evicted to make room.
    pub evicted: u64,
}

/// The daemon's spool, opened once it can be: an agent started on a full disk runs
/// without one (its results held in memory and sent straight up) and opens it at the
/// first use after room is back.
#[derive(Debug)]
pub struct SpoolSlot {
    path: std::path::PathBuf,
    max_results: u64,
    spool: Option<Spool>,
    signer: Option<Arc<SigningKey>>,
}

impl SpoolSlot {
    /// Tries to open the spool at `path` now; a failure is returned beside the slot
    /// (the daemon starts anyway) and the next use tries again.
    pub fn open(path: &Path, max_results: u64) -> (SpoolSlot, Option<SpoolError>) {
        let (spool, error) = match Spool::open(path, max_results) {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e)),
        };
        let slot = SpoolSlot {
            path: path.to_path_buf(),
            max_results,
            spool,
            signer: None,
        };
        (slot, error)
    }

    /// Results pushed from now on are signed with `key` (see [`Spool::sign_with`]).
    pub fn sign_with(&mut self, key: Arc<SigningKey>) {
        if let Some(s) = &mut self.spool {
            s.sign_with(key.clone());
        }
        self.signer = Some(key);
    }

    /// The open spool, opening it if it is not yet.
    pub fn get(&mut self) -> Result<&mut Spool, SpoolError> {
        if self.spool.is_none() {
            let mut spool = Spool::open(&self.path, self.max_results)?;
            if let Some(key) = &self.signer {
                spool.sign_with(key.clone());
            }
            self.spool = Some(spool);
        }
        Ok(self
            .spool
            .get_or_insert_with(|| unreachable!("opened above")))
    }
}

impl Spool {
    /// Opens (creating if needed) the spool at `path`, holding at most `max_results`.
    pub fn open(path: &Path, max_results: u64) -> Result<Spool, SpoolError> {
        sonde_cli::blocking::check("the spool");
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version < 2 {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(SCHEMA_2)?;
            tx.pragma_update(None, "user_version", 2)?;
            tx.commit()?;
        }
        if version < 3 {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(SCHEMA_3)?;
            tx.pragma_update(None, "user_version", 3)?;
            tx.commit()?;
        }
        Ok(Spool {
            conn,
            max_results: max_results.max(1),
            signer: None,
        })
    }

    /// Signs every result pushed from now on with `key`, chained after the last one
    /// this spool signed.
    pub fn sign_with(&mut self, key: Arc<SigningKey>) {
        self.signer = Some(key);
    }

    /// Opens an existing spool to read it (depth, evictions, waiting results) without
    /// writing anything: what `sonde-agent status` uses beside a running daemon.
    pub fn open_read_only(path: &Path) -> Result<Spool, SpoolError> {
        sonde_cli::blocking::check("the spool");
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Spool {
            conn,
            max_results: u64::MAX,
            signer: None,
        })
    }

    /// Stores a result durably, evicting the oldest beyond the bound. A result whose
    /// id is already spooled is kept once.
    pub fn push(&mut self, record: &ResultRecord) -> Result<Pushed, SpoolError> {
        self.push_raw(record.id, &RawRecord::of(record))
    }

    /// Stores a record's bytes durably; see [`Spool::push`].
    pub fn push_raw(&mut self, id: Uuid, record: &RawRecord) -> Result<Pushed, SpoolError> {
        sonde_cli::blocking::check("the spool");
        let tx = self.conn.transaction()?;
        let added = tx.execute(
            "INSERT OR IGNORE INTO spool (id, record) VALUES (?1, ?2)",
            params![id.to_string(), record.as_str()],
        )?;
        if let (1, Some(key)) = (added, &self.signer) {
            seal(&tx, key, record)?;
        }
        let depth: u64 =
            tx.query_row("SELECT COUNT(*) FROM spool", [], |r| r.get::<_, i64>(0))? as u64;
        let evicted = depth.saturating_sub(self.max_results);
        if evicted > 0 {
            tx.execute(
                "DELETE FROM spool WHERE seq IN (SELECT seq FROM spool ORDER BY seq LIMIT ?1)",
                params![evicted as i64],
            )?;
            tx.execute(
                "UPDATE counters SET value = value + ?1 WHERE name = 'evictions_total'",
                params![evicted as i64],
            )?;
        }
        tx.commit()?;
        Ok(Pushed { evicted })
    }

    /// Retires `old` for the key `to` (`ed25519 <hex>`): the chain's next place is a
    /// rotation signed by `old`, stored to be sent with the results after it.
    pub fn rotate(&mut self, old: &SigningKey, to: &str) -> Result<Rotation, SpoolError> {
        sonde_cli::blocking::check("the spool");
        let tx = self.conn.transaction()?;
        let (seq, prev) = head(&tx)?;
        let (rotation, next) = old.sign_rotation(seq + 1, &prev, to);
        tx.execute(
            "INSERT INTO rotations (seq, body) VALUES (?1, ?2)",
            params![
                rotation.seq as i64,
                serde_json::to_string(&rotation).unwrap_or_default()
            ],
        )?;
        move_head(&tx, rotation.seq, &next)?;
        tx.commit()?;
        Ok(rotation)
    }

    /// Rotations not acknowledged yet, oldest first.
    pub fn pending_rotations(&self) -> Result<Vec<Rotation>, SpoolError> {
        self.rotations("WHERE sent = 0 ORDER BY seq")
    }

    /// The latest rotation, sent or not.
    pub fn last_rotation(&self) -> Result<Option<Rotation>, SpoolError> {
        Ok(self.rotations("ORDER BY seq DESC LIMIT 1")?.pop())
    }

    fn rotations(&self, which: &str) -> Result<Vec<Rotation>, SpoolError> {
        sonde_cli::blocking::check("the spool");
        let mut q = self
            .conn
            .prepare_cached(&format!("SELECT body FROM rotations {which}"))?;
        let bodies = q
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(bodies
            .iter()
            .filter_map(|b| serde_json::from_str(b).ok())
            .collect())
    }

    /// The collector acknowledged the rotations up to place `seq`.
    pub fn rotations_sent(&mut self, seq: u64) -> Result<(), SpoolError> {
        sonde_cli::blocking::check("the spool");
        self.conn.execute(
            "UPDATE rotations SET sent = 1 WHERE seq <= ?1",
            [seq as i64],
        )?;
        Ok(())
    }

    /// Up to `max` results, oldest first, left in the spool, as their bytes.
    pub fn peek(&self, max: usize) -> Result<Vec<Spooled>, SpoolError> {
        sonde_cli::blocking::check("the spool");
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, record, envelope FROM spool ORDER BY seq LIMIT ?1")?;
        let rows = stmt.query_map(params![max as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, record, envelope) = row?;
            // The spool only holds what this agent wrote; a row that is not JSON
            // (a damaged file) is skipped here and stays in the file.
            if let (Ok(id), Ok(record)) = (Uuid::parse_str(&id), RawRecord::from_json(record)) {
                let envelope = envelope.and_then(|e| serde_json::from_str(&e).ok());
                out.push(Spooled {
                    id,
                    record,
                    envelope,
                });
            }
        }
        Ok(out)
    }

    /// Removes the results the collector committed; returns how many were spooled.
    pub fn ack(&mut self, ids: &[Uuid]) -> Result<usize, SpoolError> {
        sonde_cli::blocking::check("the spool");
        let tx = self.conn.transaction()?;
        let mut removed = 0;
        {
            let mut del = tx.prepare_cached("DELETE FROM spool WHERE id = ?1")?;
            for id in ids {
                removed += del.execute(params![id.to_string()])?;
            }
        }
        tx.commit()?;
        Ok(removed)
    }

    /// Results waiting.
    pub fn depth(&self) -> Result<u64, SpoolError> {
        sonde_cli::blocking::check("the spool");
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM spool", [], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Results evicted since the spool was created.
    pub fn evictions_total(&self) -> Result<u64, SpoolError> {
        sonde_cli::blocking::check("the spool");
        Ok(self
            .conn
            .query_row(
                "SELECT value FROM counters WHERE name = 'evictions_total'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .unwrap_or(0) as u64)
    }
}

/// Signs the result just inserted (the last row) as the chain's next, and moves the
/// chain's head, in the push's transaction.
fn seal(
    tx: &rusqlite::Transaction<'_>,
    key: &SigningKey,
    record: &RawRecord,
) -> Result<(), SpoolError> {
    let (seq, prev) = head(tx)?;
    let (envelope, next) = key.seal(seq + 1, &prev, record.as_str().as_bytes());
    tx.execute(
        "UPDATE spool SET envelope = ?1 WHERE seq = last_insert_rowid()",
        params![serde_json::to_string(&envelope).unwrap_or_default()],
    )?;
    move_head(tx, envelope.seq, &next)
}

/// The chain's head: its last place and that statement's SHA-256.
fn head(tx: &rusqlite::Transaction<'_>) -> Result<(u64, String), SpoolError> {
    Ok(tx
        .query_row("SELECT seq, hash FROM chain WHERE one = 1", [], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
        })
        .optional()?
        .unwrap_or((0, Envelope::GENESIS.to_string())))
}

/// Moves the chain's head to place `seq`, whose statement hashes to `hash`.
fn move_head(tx: &rusqlite::Transaction<'_>, seq: u64, hash: &str) -> Result<(), SpoolError> {
    tx.execute(
        "INSERT INTO chain (one, seq, hash) VALUES (1, ?1, ?2)
         ON CONFLICT (one) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        params![seq as i64, hash],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    fn record() -> ResultRecord {
        let mut r = ResultRecord::schema_example();
        r.id = Uuid::now_v7();
        r
    }

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("sonde-spool-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir.join("spool.sqlite")
    }

    #[test]
    fn signed_results_chain_across_reopening_and_a_repeated_id_takes_no_place() {
        let path = temp("signed");
        let dir = path.parent().expect("dir").to_path_buf();
        let key = Arc::new(SigningKey::load_or_create(&dir).expect("key"));
        let mut s = Spool::open(&path, 100).expect("spool");
        let unsigned = record();
        s.push(&unsigned).expect("push");
        s.sign_with(key.clone());
        let (a, b) = (record(), record());
        s.push(&a).expect("push");
        s.push(&a).expect("the same id again");
        drop(s);
        let mut s = Spool::open(&path, 100).expect("reopen");
        s.sign_with(key);
        s.push(&b).expect("push");
        let got = s.peek(10).expect("peek");
        assert_eq!(got.len(), 3);
        assert!(got[0].envelope.is_none(), "spooled before signing");
        let (ea, eb) = (
            got[1].envelope.clone().expect("signed"),
            got[2].envelope.clone().expect("signed"),
        );
        assert_eq!((ea.seq, ea.prev.as_str()), (1, Envelope::GENESIS));
        assert_eq!(eb.seq, 2, "the repeated id took no place in the chain");
        let statement = Envelope::statement(
            1,
            Envelope::GENESIS,
            &crate::identity::signing::leaf_hash(got[1].record.as_str().as_bytes()),
        );
        assert_eq!(
            eb.prev,
            crate::identity::signing::sha256(statement.as_bytes())
        );
    }

    #[test]
    fn results_leave_only_when_acknowledged_oldest_first() {
        let mut s = Spool::open(&temp("ack"), 100).expect("spool");
        let rs: Vec<_> = (0..5).map(|_| record()).collect();
        for r in &rs {
            s.push(r).expect("push");
        }
        s.push(&rs[0]).expect("a re-push is harmless");
        assert_eq!(s.depth().expect("depth"), 5);
        let batch = s.peek(3).expect("peek");
        assert_eq!(
            batch.iter().map(|r| r.id).collect::<Vec<_>>(),
            rs[..3].iter().map(|r| r.id).collect::<Vec<_>>()
        );
        assert_eq!(
            s.ack(&[rs[0].id, rs[1].id, Uuid::now_v7()]).expect("ack"),
            2
        );
        assert_eq!(
            s.peek(10).expect("peek").first().map(|r| r.id),
            Some(rs[2].id)
        );
        // Records are kept as encoded, timestamps as measured.
        let kept = &s.peek(1).expect("peek")[0].record;
        assert_eq!(kept.as_str(), rs[2].to_json());
        assert_eq!(
            kept.parse().expect("a record").run.started_at,
            rs[2].run.started_at
        );
    }

    #[test]
    fn a_full_spool_evicts_the_oldest_and_counts_it() {
        let path = temp("full");
        let mut s = Spool::open(&path, 3).expect("spool");
        let rs: Vec<_> = (0..5).map(|_| record()).collect();
        let evicted: u64 = rs.iter().map(|r| s.push(r).expect("push").evicted).sum();
        assert_eq!(evicted, 2);
        assert_eq!(s.evictions_total().expect("count"), 2);
        let left: Vec<_> = s.peek(10).expect("peek").iter().map(|r| r.id).collect();
        assert_eq!(left, rs[2..].iter().map(|r| r.id).collect::<Vec<_>>());
        drop(s);
        assert_eq!(
            Spool::open(&path, 3)
                .expect("reopen")
                .evictions_total()
                .expect("count"),
            2
        );
    }

    /// Child half of the kill -9 test: pushes results, printing each id once `push`
    /// has returned. Run only by that test (with `--ignored`), never on its own.
    #[test]
    #[ignore = "the child process of kill_9_loses_nothing_that_was_committed, which runs it"]
    fn spool_child_writer() {
        let path = std::env::var("SONDE_SPOOL_CHILD").expect("started by the kill -9 test");
        let mut s = Spool::open(Path::new(&path), 1_000_000).expect("spool");
        for _ in 0..100_000 {
            let r = record();
            s.push(&r).expect("push");
            println!("committed {}", r.id);
        }
    }

    #[test]
    fn kill_9_loses_nothing_that_was_committed() {
        let path = temp("kill9");
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "state::spool::tests::spool_child_writer",
                "--ignored",
                "--nocapture",
            ])
            .env("SONDE_SPOOL_CHILD", &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("child");
        let mut committed = Vec::new();
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        while committed.len() < 200 {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(id) = line.strip_prefix("committed ") {
                committed.push(Uuid::parse_str(id.trim()).expect("uuid"));
            }
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        assert_eq!(committed.len(), 200, "the child committed results");
        let s = Spool::open(&path, 1_000_000).expect("reopen after kill -9");
        let stored: std::collections::HashSet<Uuid> = s
            .peek(1_000_000)
            .expect("peek")
            .iter()
            .map(|r| r.id)
            .collect();
        let missing: Vec<_> = committed.iter().filter(|id| !stored.contains(id)).collect();
        assert!(
            missing.is_empty(),
            "{} committed results lost",
            missing.len()
        );
    }
}
