//! Reads, each on a read connection of its own: pages of results, agents, the
//! latest result of every access (what the metrics are rebuilt from), enrolments and
//! revocations, whether a site is known.

use crate::columns::{from_ns, ns};
use crate::error::Error;
use rusqlite::{params, Connection, OptionalExtension};
use sonde_proto::ResultRecord;
use sonde_store::{encode_cursor, AgentRow, Delivery, ResultPage, ResultQuery, Site, StoredResult};

pub use sonde_store::MAX_PAGE;

/// See `sonde_store::ResultReader::latest_results`.
pub fn latest_results(conn: &Connection) -> Result<Vec<(Delivery, ResultRecord)>, Error> {
    let mut stmt = conn.prepare(
        "SELECT r.agent_id, r.quartier, r.building, r.record
         FROM results r
         JOIN (SELECT agent_id, COALESCE(access_name, access_kind) AS access,
                      MAX(started_at) AS latest
               FROM results GROUP BY agent_id, COALESCE(access_name, access_kind)) l
           ON r.agent_id = l.agent_id
          AND COALESCE(r.access_name, r.access_kind) = l.access
          AND r.started_at = l.latest",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok((
            Delivery {
                agent_id: row.get(0)?,
                quartier: row.get(1)?,
                building: row.get(2)?,
            },
            row.get::<_, String>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (delivery, record) = row?;
        // A row that no longer parses (written by a newer version) is skipped.
        if let Ok(r) = ResultRecord::from_json(record.as_bytes()) {
            out.push((delivery, r));
        }
    }
    Ok(out)
}

/// See `sonde_store::Enrolments::enrolment`.
pub fn enrolment(conn: &Connection, agent_id: &str) -> Result<Option<Site>, Error> {
    Ok(conn
        .query_row(
            "SELECT quartier, building, latitude, longitude FROM agents
             WHERE id = ?1 AND enrolled_at IS NOT NULL",
            params![agent_id],
            |r| {
                Ok(Site {
                    quartier: r.get(0)?,
                    building: r.get(1)?,
                    latitude: r.get(2)?,
                    longitude: r.get(3)?,
                })
            },
        )
        .optional()?)
}

/// See `sonde_store::ResultReader::results`.
/// One stored result by its id.
pub fn result(conn: &Connection, id: &str) -> Result<Option<StoredResult>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT record, agent_id, quartier, building, received_at FROM results WHERE id = ?1",
    )?;
    let found = stmt
        .query_row(params![id], |row| {
            Ok(StoredResult {
                record: row.get(0)?,
                agent_id: row.get(1)?,
                quartier: row.get(2)?,
                building: row.get(3)?,
                received_at: Some(from_ns(row.get(4)?)),
            })
        })
        .optional()?;
    Ok(found)
}

pub fn results(conn: &Connection, q: &ResultQuery) -> Result<ResultPage, Error> {
    let (after_t, after_id) = q.after()?;
    let mut stmt = conn.prepare_cached(
        "SELECT started_at, id, record, agent_id, quartier, building, received_at FROM results
         WHERE (started_at, id) > (?1, ?2)
           AND started_at >= ?3 AND started_at < ?4
           AND (?5 IS NULL OR agent_id = ?5)
         ORDER BY started_at, id
         LIMIT ?6",
    )?;
    let rows = stmt.query_map(
        params![
            after_t,
            after_id,
            q.from.map(ns).unwrap_or(i64::MIN),
            q.to.map(ns).unwrap_or(i64::MAX),
            q.agent,
            q.limit as i64 + 1
        ],
        |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                StoredResult {
                    record: row.get(2)?,
                    agent_id: row.get(3)?,
                    quartier: row.get(4)?,
                    building: row.get(5)?,
                    received_at: Some(from_ns(row.get(6)?)),
                },
            ))
        },
    )?;
    let mut results = Vec::new();
    let mut last = None;
    let mut more = false;
    for row in rows {
        let (t, id, stored) = row?;
        if results.len() == q.limit {
            more = true;
            break;
        }
        results.push(stored);
        last = Some((t, id));
    }
    let next_cursor = match (more, last) {
        (true, Some((t, id))) => uuid::Uuid::try_parse(&id)
            .ok()
            .map(|u| encode_cursor(t, &u)),
        _ => None,
    };
    Ok(ResultPage {
        results,
        next_cursor,
    })
}

/// See `sonde_store::ResultReader::agents`.
pub fn agents(conn: &Connection) -> Result<Vec<AgentRow>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT a.id, a.quartier, a.building, a.version, a.first_seen, a.last_seen,
                (SELECT COUNT(*) FROM results r WHERE r.agent_id = a.id),
                a.enrolled_at, a.latitude, a.longitude, a.health, a.revoked_at
         FROM agents a ORDER BY a.id",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok(AgentRow {
            id: row.get(0)?,
            quartier: row.get(1)?,
            building: row.get(2)?,
            version: row.get(3)?,
            first_seen: from_ns(row.get(4)?),
            last_seen: from_ns(row.get(5)?),
            results: row.get::<_, i64>(6)? as u64,
            enrolled_at: row.get::<_, Option<i64>>(7)?.map(from_ns),
            latitude: row.get(8)?,
            longitude: row.get(9)?,
            health: row
                .get::<_, Option<String>>(10)?
                .and_then(|h| serde_json::from_str(&h).ok()),
            revoked_at: row.get::<_, Option<i64>>(11)?.map(from_ns),
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// See `sonde_store::Enrolments::revoked_at`.
pub fn revoked_at(
    conn: &Connection,
    agent_id: &str,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, Error> {
    Ok(conn
        .query_row(
            "SELECT revoked_at FROM agents WHERE id = ?1",
            params![agent_id],
            |r| r.get::<_, Option<i64>>(0),
        )
        .optional()?
        .flatten()
        .map(from_ns))
}

/// See `sonde_store::ResultReader::site_known`.
pub fn site_known(
    conn: &Connection,
    quartier: Option<&str>,
    building: Option<&str>,
) -> Result<bool, Error> {
    let known = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM report_accesses
                        WHERE (?1 IS NULL OR quartier = ?1) AND (?2 IS NULL OR building = ?2))
             OR EXISTS (SELECT 1 FROM tokens
                        WHERE (?1 IS NULL OR quartier = ?1) AND (?2 IS NULL OR building = ?2))",
        params![quartier, building],
        |row| row.get::<_, bool>(0),
    )?;
    Ok(known)
}

/// See `sonde_store::Enrolments::revoked`.
pub fn revoked(conn: &Connection) -> Result<Vec<(String, chrono::DateTime<chrono::Utc>)>, Error> {
    let mut stmt =
        conn.prepare_cached("SELECT id, revoked_at FROM agents WHERE revoked_at IS NOT NULL")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, from_ns(r.get(1)?))))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// See `sonde_store::Plans::plan_version`.
pub fn plan_version(conn: &Connection) -> Result<Option<u64>, Error> {
    let v: Option<i64> = conn.query_row("SELECT MAX(version) FROM plans", [], |r| r.get(0))?;
    Ok(v.map(|v| v as u64))
}

fn plan_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<sonde_store::PlanVersion> {
    Ok(sonde_store::PlanVersion {
        version: r.get::<_, i64>(0)? as u64,
        applied_at: from_ns(r.get(1)?),
        document: r.get(2)?,
    })
}

/// See `sonde_store::Plans::plan`.
pub fn plan(conn: &Connection, version: u64) -> Result<Option<sonde_store::PlanVersion>, Error> {
    Ok(conn
        .query_row(
            "SELECT version, applied_at, document FROM plans WHERE version = ?1",
            params![version as i64],
            plan_row,
        )
        .optional()?)
}

/// See `sonde_store::Plans::plans`.
pub fn plans(conn: &Connection) -> Result<Vec<sonde_store::PlanVersion>, Error> {
    let mut stmt =
        conn.prepare("SELECT version, applied_at, document FROM plans ORDER BY version")?;
    let rows = stmt.query_map([], plan_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}
