//! Agents' signing keys, their chains' heads and gaps (migration 0012). The checks
//! themselves are the collector's ingest; this keeps what they found.

use crate::columns::ns;
use crate::error::Error;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use sonde_store::Signed;

/// Records the agent's key unless it has one; the key recorded.
pub fn register_key(
    conn: &Connection,
    agent_id: &str,
    key: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String, Error> {
    conn.execute(
        "INSERT INTO agent_keys (agent_id, public_key, registered_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (agent_id) DO NOTHING",
        params![agent_id, key, ns(now)],
    )?;
    Ok(conn.query_row(
        "SELECT public_key FROM agent_keys WHERE agent_id = ?1",
        [agent_id],
        |r| r.get(0),
    )?)
}

/// The agent's key in force, if it has one.
pub fn key_of(conn: &Connection, agent_id: &str) -> Result<Option<String>, Error> {
    Ok(conn
        .prepare_cached("SELECT public_key FROM agent_keys WHERE agent_id = ?1")?
        .query_row([agent_id], |r| r.get(0))
        .optional()?)
}

/// Every agent's key.
pub fn keys(conn: &Connection) -> Result<Vec<(String, String)>, Error> {
    let mut q = conn.prepare("SELECT agent_id, public_key FROM agent_keys ORDER BY agent_id")?;
    let rows = q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The agent's chain head.
pub fn head(conn: &Connection, agent_id: &str) -> Result<Option<(u64, String)>, Error> {
    Ok(conn
        .prepare_cached("SELECT seq, hash FROM agent_chains WHERE agent_id = ?1")?
        .query_row([agent_id], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
        .optional()?)
}

/// Moves the agent's chain head forward (never back) and keeps the gaps found, in the
/// batch's transaction.
pub fn advance(
    tx: &Transaction<'_>,
    agent_id: &str,
    signed: &Signed,
    now_ns: i64,
) -> Result<(), Error> {
    tx.prepare_cached(
        "INSERT INTO agent_chains (agent_id, seq, hash) VALUES (?1, ?2, ?3)
         ON CONFLICT (agent_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash
         WHERE excluded.seq > agent_chains.seq",
    )?
    .execute(params![agent_id, signed.head.0 as i64, signed.head.1])?;
    let mut gap = tx.prepare_cached(
        "INSERT INTO chain_gaps (agent_id, from_seq, to_seq, found_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (agent_id, from_seq) DO NOTHING",
    )?;
    for (from, to) in &signed.gaps {
        gap.execute(params![agent_id, *from as i64, *to as i64, now_ns])?;
    }
    if !signed.rotations.is_empty() {
        let mut keep = tx.prepare_cached(
            "INSERT INTO key_rotations (agent_id, seq, body, rotated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (agent_id, seq) DO NOTHING",
        )?;
        for r in &signed.rotations {
            let body = serde_json::to_string(r).unwrap_or_default();
            keep.execute(params![agent_id, r.seq as i64, body, now_ns])?;
        }
        tx.prepare_cached("UPDATE agent_keys SET public_key = ?2 WHERE agent_id = ?1")?
            .execute(params![agent_id, signed.key])?;
    }
    Ok(())
}

/// Key rotations stored, of one agent or of all, by agent then place.
pub fn rotations(
    conn: &Connection,
    agent_id: Option<&str>,
) -> Result<Vec<(String, sonde_proto::wire::Rotation)>, Error> {
    let mut q = conn.prepare_cached(
        "SELECT agent_id, body FROM key_rotations WHERE ?1 IS NULL OR agent_id = ?1
         ORDER BY agent_id, seq",
    )?;
    let rows = q.query_map([agent_id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (agent, body) = row?;
        if let Ok(r) = serde_json::from_str(&body) {
            out.push((agent, r));
        }
    }
    Ok(out)
}
