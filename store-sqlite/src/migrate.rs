//! The schema: numbered migrations (`migrations/NNNN_*.sql`) applied in order, each
//! in its own transaction, the version in `user_version`; and the checks a backup must
//! pass before it replaces a store.

use crate::error::Error;
use rusqlite::Connection;
use sonde_store::StoreError;
use std::path::Path;

/// Migrations, in order; the number of one is its position + 1.
pub const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_results.sql"),
    include_str!("../migrations/0002_enrolment.sql"),
    include_str!("../migrations/0003_results_rowid.sql"),
    include_str!("../migrations/0004_report_facts.sql"),
    include_str!("../migrations/0005_revocation.sql"),
    include_str!("../migrations/0006_agent_position.sql"),
    include_str!("../migrations/0007_report_facts_streams.sql"),
    include_str!("../migrations/0008_plans.sql"),
    include_str!("../migrations/0009_report_facts_interval.sql"),
    include_str!("../migrations/0010_report_facts_capacity.sql"),
    include_str!("../migrations/0011_log.sql"),
    include_str!("../migrations/0012_signatures.sql"),
    include_str!("../migrations/0013_key_rotations.sql"),
    include_str!("../migrations/0014_report_facts_rpm.sql"),
    include_str!("../migrations/0015_leases.sql"),
];

/// Switches the file to WAL. On a new file, two connections doing this at once
/// both hold a shared lock and both want the exclusive one: SQLite answers one of
/// them "database is locked" at once, without its busy handler, to break the
/// deadlock. That one waits a little and tries again, for 5 s at most.
pub fn set_wal(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Applies the migrations the database lacks, each in its own transaction.
pub fn migrate(conn: &mut Connection) -> Result<(), Error> {
    let known = MIGRATIONS.len() as i64;
    loop {
        // Each step takes the write lock first, then reads the version: two processes
        // opening a new store at once (a `token create` beside a starting `serve`)
        // apply each step once, one after the other.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let current: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if current > known {
            return Err(StoreError::TooNew {
                found: current,
                known,
            }
            .into());
        }
        let Some(sql) = MIGRATIONS.get(current as usize) else {
            return Ok(());
        };
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", current + 1)?;
        tx.commit()?;
    }
}

/// Checks that `path` is a sound sonde store this code can open (integrity, schema
/// version), without changing it; returns how many results it holds.
pub fn check_backup(path: &Path) -> Result<u64, Error> {
    if !path.is_file() {
        return Err(StoreError::Query(format!("{} is not a file", path.display())).into());
    }
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if ok != "ok" {
        return Err(StoreError::Query(format!("integrity check: {ok}")).into());
    }
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > MIGRATIONS.len() as i64 {
        return Err(StoreError::TooNew {
            found: version,
            known: MIGRATIONS.len() as i64,
        }
        .into());
    }
    if version < 1 {
        return Err(StoreError::Query("not a sonde store (no schema)".into()).into());
    }
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM results", [], |r| r.get(0))
        .map_err(|_| StoreError::Query("not a sonde store (no results table)".into()))?;
    Ok(n as u64)
}
