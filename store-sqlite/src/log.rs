//! The transparency log in SQLite (migration 0011): leaves appended in the transaction
//! that stores their results, the tree's stored hashes beside them, and the signed
//! checkpoints. The hashing is [`sonde_store::log`]'s.

use crate::error::Error;
use rusqlite::{params, Connection, OptionalExtension};
use sonde_store::log::{self, Hash};
use sonde_store::StoreError;

/// The migration that made the log.
pub const MIGRATION: i64 = 11;

/// Leaves in the log.
pub fn size(conn: &Connection) -> Result<u64, Error> {
    let n: i64 = conn
        .prepare_cached("SELECT coalesce(max(leaf) + 1, 0) FROM log_leaves")?
        .query_row([], |r| r.get(0))?;
    Ok(n as u64)
}

/// The stored hashes at `indexes`.
pub fn hashes(conn: &Connection, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
    let mut q = conn
        .prepare_cached("SELECT hash FROM log_hashes WHERE idx = ?1")
        .map_err(Error::from)?;
    indexes
        .iter()
        .map(|&i| {
            let bytes: Option<Vec<u8>> = q
                .query_row([i as i64], |r| r.get(0))
                .optional()
                .map_err(Error::from)?;
            bytes
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .map(Hash)
                .ok_or_else(|| StoreError::Backend(format!("transparency log: no stored hash {i}")))
        })
        .collect()
}

/// Appends the result at `rowid`, whose stored bytes are `bytes`, as the next leaf.
pub fn append(conn: &Connection, rowid: i64, bytes: &[u8]) -> Result<(), Error> {
    let n = size(conn)?;
    let read = |i: &[u64]| hashes(conn, i);
    let (first, new) = log::append(n, bytes, &read)?;
    let mut put = conn.prepare_cached("INSERT INTO log_hashes (idx, hash) VALUES (?1, ?2)")?;
    for (k, h) in new.iter().enumerate() {
        put.execute(params![(first + k as u64) as i64, &h.0[..]])?;
    }
    conn.prepare_cached("INSERT INTO log_leaves (leaf, result_rowid) VALUES (?1, ?2)")?
        .execute(params![n as i64, rowid])?;
    Ok(())
}

/// Appends the stored results the log lacks (those stored before it existed), oldest
/// first, in one transaction that holds the write lock from the start (another process
/// opening the store at once then finds none left); returns how many.
pub fn catch_up(conn: &mut Connection) -> Result<u64, Error> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let missing: Vec<(i64, String)> = tx
        .prepare(
            "SELECT rowid, record FROM results
             WHERE rowid NOT IN (SELECT result_rowid FROM log_leaves) ORDER BY rowid",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (rowid, record) in &missing {
        append(&tx, *rowid, record.as_bytes())?;
    }
    tx.commit()?;
    Ok(missing.len() as u64)
}

/// The leaf of result `id`: its index and its stored bytes.
pub fn leaf(conn: &Connection, id: &str) -> Result<Option<(u64, String)>, Error> {
    Ok(conn
        .prepare_cached(
            "SELECT l.leaf, r.record FROM results r JOIN log_leaves l ON l.result_rowid = r.rowid
             WHERE r.id = ?1",
        )?
        .query_row([id], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
        .optional()?)
}

/// The leaves of the stored results of `scope`, in leaf order.
pub fn leaves_in(
    conn: &Connection,
    scope: &sonde_store::ReportScope,
    each: &mut dyn FnMut(&sonde_store::LogLeaf<'_>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut q = conn
        .prepare(
            "SELECT r.id, l.leaf, r.record, r.agent_id, r.envelope, r.quartier, r.building
             FROM results r
             JOIN log_leaves l ON l.result_rowid = r.rowid
             WHERE r.started_at >= ?1 AND r.started_at < ?2
               AND (?3 IS NULL OR r.quartier = ?3) AND (?4 IS NULL OR r.building = ?4)
             ORDER BY l.leaf",
        )
        .map_err(Error::from)?;
    let mut rows = q
        .query(params![
            crate::columns::ns(scope.from),
            crate::columns::ns(scope.to),
            scope.quartier,
            scope.building
        ])
        .map_err(Error::from)?;
    while let Some(row) = rows.next().map_err(Error::from)? {
        let id: String = row.get(0).map_err(Error::from)?;
        let leaf: i64 = row.get(1).map_err(Error::from)?;
        let record: String = row.get(2).map_err(Error::from)?;
        let agent_id: String = row.get(3).map_err(Error::from)?;
        let envelope: Option<String> = row.get(4).map_err(Error::from)?;
        let quartier: Option<String> = row.get(5).map_err(Error::from)?;
        let building: Option<String> = row.get(6).map_err(Error::from)?;
        each(&sonde_store::LogLeaf {
            id: &id,
            leaf: leaf as u64,
            bytes: &record,
            agent_id: &agent_id,
            site: (
                quartier.as_deref().unwrap_or(""),
                building.as_deref().unwrap_or(""),
            ),
            envelope: envelope.as_deref(),
        })?;
    }
    Ok(())
}

/// How many stored results of `scope` are among the first `size` leaves.
pub fn count_in(
    conn: &Connection,
    scope: &sonde_store::ReportScope,
    size: u64,
) -> Result<u64, Error> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM results r JOIN log_leaves l ON l.result_rowid = r.rowid
             WHERE r.started_at >= ?1 AND r.started_at < ?2
               AND (?3 IS NULL OR r.quartier = ?3) AND (?4 IS NULL OR r.building = ?4)
               AND l.leaf < ?5",
        )?
        .query_row(
            params![
                crate::columns::ns(scope.from),
                crate::columns::ns(scope.to),
                scope.quartier,
                scope.building,
                size as i64
            ],
            |r| r.get(0),
        )?;
    Ok(n as u64)
}

/// Keeps a checkpoint (the first of its size).
pub fn keep_checkpoint(conn: &Connection, size: u64, note: &str, at_ns: i64) -> Result<(), Error> {
    conn.prepare_cached(
        "INSERT INTO log_checkpoints (size, made_at, note) VALUES (?1, ?2, ?3)
         ON CONFLICT (size) DO NOTHING",
    )?
    .execute(params![size as i64, at_ns, note])?;
    Ok(())
}

/// The latest checkpoint.
pub fn latest_checkpoint(conn: &Connection) -> Result<Option<(u64, String)>, Error> {
    Ok(conn
        .prepare_cached("SELECT size, note FROM log_checkpoints ORDER BY size DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
        .optional()?)
}
