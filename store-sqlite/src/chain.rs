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
    Ok(())
}
