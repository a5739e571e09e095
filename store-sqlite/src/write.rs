//! Writes, on the one writer connection: the group commit of several agents' batches
//! (each record stored verbatim, its report row beside it, its access's schedule kept
//! up to date), tokens and enrolments, revocations and retention.

use crate::columns::{from_ns, ns};
use crate::error::Error;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use sonde_store::rows::ReportRow;
use sonde_store::{Batch, EnrolError, Inserted, NewToken, Site, StoreError};
use std::collections::HashMap;

/// Stores several agents' batches in one transaction; see
/// `sonde_store::ResultWriter::insert_batches`.
pub fn insert_batches(
    conn: &mut Connection,
    batches: &[Batch],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Inserted>, Error> {
    let tx = conn.transaction()?;
    let mut accesses = Accesses::default();
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        out.push(insert_batch(&tx, batch, ns(now), &mut accesses)?);
        upsert_agent(&tx, batch, ns(now))?;
    }
    accesses.finish(&tx)?;
    tx.commit()?;
    Ok(out)
}

/// One batch's records: each stored once (a re-sent id is left as it was), with its
/// report row.
fn insert_batch(
    tx: &Transaction<'_>,
    batch: &Batch,
    now_ns: i64,
    accesses: &mut Accesses,
) -> Result<Inserted, Error> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO results (id, agent_id, quartier, building, access_kind,
             access_name, started_at, outcome, received_at, record, envelope)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (id) DO NOTHING",
    )?;
    let mut done = Inserted::default();
    for (i, r) in batch.records.iter().enumerate() {
        let json = match batch.raw.get(i) {
            Some(raw) => std::borrow::Cow::Borrowed(raw.as_str()),
            None => std::borrow::Cow::Owned(r.to_json()),
        };
        let row = ReportRow::of(&batch.delivery, r);
        let envelope = batch
            .signed
            .as_ref()
            .and_then(|s| s.envelopes.get(i))
            .and_then(|e| serde_json::to_string(e).ok());
        let changed = insert.execute(params![
            r.id.to_string(),
            row.agent_id,
            batch.delivery.quartier,
            batch.delivery.building,
            row.kind,
            r.access.name,
            row.started_at_ns,
            row.outcome,
            now_ns,
            json.as_ref(),
            envelope,
        ])?;
        if changed == 1 {
            let rowid = tx.last_insert_rowid();
            crate::log::append(tx, rowid, json.as_bytes())?;
            let access_id = accesses.touch(tx, &row)?;
            insert_fact(tx, access_id, rowid, &row)?;
            done.new += 1;
        } else {
            done.duplicates += 1;
        }
        done.fresh.push(changed == 1);
    }
    if let Some(signed) = &batch.signed {
        crate::chain::advance(tx, &batch.delivery.agent_id, signed, now_ns)?;
    }
    Ok(done)
}

/// The report row of a new result.
fn insert_fact(
    tx: &Transaction<'_>,
    access_id: i64,
    rowid: i64,
    row: &ReportRow,
) -> Result<(), Error> {
    tx.prepare_cached(
        "INSERT INTO report_facts (access_id, started_at, result_rowid, outcome, reason,
             flags, down_bps, up_bps, down_goodput_bps, target_down_bps, verdict_down,
             idle_s, loaded_s, probes_sent, probes_received, version, streams, interval_s,
             cap_down_bps, cap_up_bps, rpm_down, rpm_up)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
             ?19, ?20, ?21, ?22)",
    )?
    .execute(params![
        access_id,
        row.started_at_ns,
        rowid,
        row.outcome,
        row.reason,
        row.flags,
        row.down_bps,
        row.up_bps,
        row.down_goodput_bps,
        row.target_down_bps,
        row.verdict_down,
        row.idle_s,
        row.loaded_s,
        row.probes_sent,
        row.probes_received,
        row.version,
        row.streams,
        row.interval_s,
        row.cap_down_bps,
        row.cap_up_bps,
        row.rpm_down,
        row.rpm_up,
    ])?;
    Ok(())
}

/// The agent's row: its site, version, last delivery and health.
fn upsert_agent(tx: &Transaction<'_>, batch: &Batch, now_ns: i64) -> Result<(), Error> {
    let version = batch
        .health
        .as_ref()
        .map(|h| h.version.clone())
        .filter(|v| !v.is_empty())
        .or_else(|| batch.records.last().map(|r| r.agent.version.clone()));
    let health = batch
        .health
        .as_ref()
        .and_then(|h| serde_json::to_string(h).ok());
    // The box's configured position stands in when the token gave none, and then
    // follows the box; a position from the token is never overwritten.
    let position = batch
        .health
        .as_ref()
        .and_then(|h| h.position)
        .and_then(|p| p.checked());
    let d = &batch.delivery;
    tx.prepare_cached(
        "INSERT INTO agents (id, quartier, building, version, first_seen, last_seen,
             health, health_at, latitude, longitude, position_from_agent)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, CASE WHEN ?6 IS NULL THEN NULL ELSE ?5 END,
             ?7, ?8, ?7 IS NOT NULL)
         ON CONFLICT (id) DO UPDATE SET
             quartier = excluded.quartier, building = excluded.building,
             version = COALESCE(excluded.version, agents.version),
             last_seen = excluded.last_seen,
             health = COALESCE(excluded.health, agents.health),
             health_at = COALESCE(excluded.health_at, agents.health_at),
             latitude = CASE WHEN excluded.latitude IS NOT NULL AND (agents.position_from_agent = 1
                 OR agents.latitude IS NULL OR agents.longitude IS NULL)
                 THEN excluded.latitude ELSE agents.latitude END,
             longitude = CASE WHEN excluded.latitude IS NOT NULL AND (agents.position_from_agent = 1
                 OR agents.latitude IS NULL OR agents.longitude IS NULL)
                 THEN excluded.longitude ELSE agents.longitude END,
             position_from_agent = CASE WHEN excluded.latitude IS NOT NULL AND (agents.position_from_agent = 1
                 OR agents.latitude IS NULL OR agents.longitude IS NULL)
                 THEN 1 ELSE agents.position_from_agent END",
    )?
    .execute(params![
        d.agent_id,
        d.quartier,
        d.building,
        version,
        now_ns,
        health,
        position.map(|p| p.latitude),
        position.map(|p| p.longitude)
    ])?;
    Ok(())
}

/// An access whose results this transaction stores.
struct Touched {
    id: i64,
    row: ReportRow,
    first: i64,
    last: i64,
    interval: Option<f64>,
    /// More than one result: its row needs the final figures.
    again: bool,
}

/// The accesses a transaction touches: one upsert when first met, one at the end
/// with what their other results changed.
#[derive(Default)]
struct Accesses(HashMap<(String, String), Touched>);

const UPSERT_ACCESS: &str = "INSERT INTO report_accesses (agent_id, access, quartier, building,
         kind, first_at, last_at, interval_s)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
     ON CONFLICT (agent_id, access) DO UPDATE SET
         quartier = excluded.quartier, building = excluded.building,
         kind = excluded.kind,
         first_at = MIN(first_at, excluded.first_at),
         interval_s = CASE WHEN excluded.last_at >= last_at
             THEN COALESCE(excluded.interval_s, interval_s) ELSE interval_s END,
         last_at = MAX(last_at, excluded.last_at)
     RETURNING id";

fn upsert_access(
    tx: &Transaction<'_>,
    row: &ReportRow,
    first: i64,
    last: i64,
    interval: Option<f64>,
) -> Result<i64, Error> {
    Ok(tx.prepare_cached(UPSERT_ACCESS)?.query_row(
        params![
            row.agent_id,
            row.access,
            row.quartier,
            row.building,
            row.kind,
            first,
            last,
            interval
        ],
        |r| r.get(0),
    )?)
}

impl Accesses {
    /// The id of `row`'s access, its first and latest start and interval updated.
    fn touch(&mut self, tx: &Transaction<'_>, row: &ReportRow) -> Result<i64, Error> {
        let key = (row.agent_id.clone(), row.access.clone());
        let started = row.started_at_ns;
        if let Some(t) = self.0.get_mut(&key) {
            t.first = t.first.min(started);
            if started >= t.last {
                t.last = started;
                t.interval = row.interval_s.or(t.interval);
            }
            t.again = true;
            return Ok(t.id);
        }
        let id = upsert_access(tx, row, started, started, row.interval_s)?;
        let touched = Touched {
            id,
            row: row.clone(),
            first: started,
            last: started,
            interval: row.interval_s,
            again: false,
        };
        self.0.insert(key, touched);
        Ok(id)
    }

    /// Writes the final figures of the accesses that got more than one result.
    fn finish(self, tx: &Transaction<'_>) -> Result<(), Error> {
        for t in self.0.into_values().filter(|t| t.again) {
            upsert_access(tx, &t.row, t.first, t.last, t.interval)?;
        }
        Ok(())
    }
}

/// Stores a new token.
pub fn create_token(conn: &Connection, t: &NewToken) -> Result<(), Error> {
    conn.execute(
        "INSERT INTO tokens (hash, quartier, building, latitude, longitude, created_at,
             expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            t.hash,
            t.quartier,
            t.building,
            t.latitude,
            t.longitude,
            ns(t.created_at),
            ns(t.expires_at)
        ],
    )?;
    Ok(())
}

/// The token hashed `hash`, as the enrolment reads it.
type TokenRow = (String, String, Option<f64>, Option<f64>, i64, Option<i64>);

/// Uses a token and records the enrolment, atomically; see
/// `sonde_store::Enrolments::enrol`.
pub fn enrol(
    conn: &mut Connection,
    hash: &str,
    now: chrono::DateTime<chrono::Utc>,
    name: &dyn Fn(&Site) -> String,
) -> Result<(String, Site), EnrolError> {
    let store = |e: rusqlite::Error| EnrolError::Store(Error::from(e).into());
    let tx = conn.transaction().map_err(store)?;
    let row: Option<TokenRow> = tx
        .query_row(
            "SELECT quartier, building, latitude, longitude, expires_at, used_at
             FROM tokens WHERE hash = ?1",
            params![hash],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .optional()
        .map_err(store)?;
    let Some((quartier, building, latitude, longitude, expires_at, used_at)) = row else {
        return Err(EnrolError::Unknown);
    };
    if let Some(used) = used_at {
        return Err(EnrolError::Used(from_ns(used)));
    }
    if expires_at <= ns(now) {
        return Err(EnrolError::Expired(from_ns(expires_at)));
    }
    let site = Site {
        quartier,
        building,
        latitude,
        longitude,
    };
    let agent_id = name(&site);
    tx.execute(
        "UPDATE tokens SET used_at = ?2, agent_id = ?3 WHERE hash = ?1",
        params![hash, ns(now), agent_id],
    )
    .map_err(store)?;
    tx.execute(
        "INSERT INTO agents (id, quartier, building, first_seen, last_seen, enrolled_at,
             latitude, longitude)
         VALUES (?1, ?2, ?3, ?4, ?4, ?4, ?5, ?6)
         ON CONFLICT (id) DO UPDATE SET
             quartier = excluded.quartier, building = excluded.building,
             enrolled_at = excluded.enrolled_at, latitude = excluded.latitude,
             longitude = excluded.longitude",
        params![
            agent_id,
            site.quartier,
            site.building,
            ns(now),
            site.latitude,
            site.longitude
        ],
    )
    .map_err(store)?;
    tx.commit().map_err(store)?;
    Ok((agent_id, site))
}

/// Revokes an agent; `false` when unknown. The first date is kept.
pub fn revoke(
    conn: &Connection,
    agent_id: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, Error> {
    let changed = conn.execute(
        "UPDATE agents SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
        params![agent_id, ns(now)],
    )?;
    Ok(changed == 1)
}

/// Deletes up to `limit` raw results started before `before`, oldest first.
pub fn prune(
    conn: &Connection,
    before: chrono::DateTime<chrono::Utc>,
    limit: usize,
) -> Result<usize, Error> {
    Ok(conn.execute(
        "DELETE FROM results WHERE rowid IN
             (SELECT rowid FROM results WHERE started_at < ?1 ORDER BY started_at LIMIT ?2)",
        params![ns(before), limit as i64],
    )?)
}

/// Refuses to overwrite a file with a backup.
pub fn backup_target(path: &std::path::Path) -> Result<String, Error> {
    if path.exists() {
        return Err(
            StoreError::Query(format!("{} exists; give a new file", path.display())).into(),
        );
    }
    Ok(path.to_string_lossy().into_owned())
}

/// See `sonde_store::Plans::apply_plan`.
pub fn apply_plan(
    conn: &Connection,
    document: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<u64, Error> {
    // One statement: the next version is taken and written at once, so two operators
    // applying together get two versions, not one.
    let version: i64 = conn.query_row(
        "INSERT INTO plans (version, applied_at, document)
         SELECT COALESCE(MAX(version), 0) + 1, ?1, ?2 FROM plans
         RETURNING version",
        params![ns(at), document],
        |r| r.get(0),
    )?;
    Ok(version as u64)
}
