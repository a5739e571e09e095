//! Reads: pages of results, one result, agents, the latest result of every access
//! (what the metrics are rebuilt from), enrolments and revocations, whether a site is
//! known, plans, agents' keys and chains.

use crate::error::Error;
use crate::write::from_ns;
use postgres::Client;
use sonde_proto::ResultRecord;
use sonde_store::rows::nanos;
use sonde_store::{
    encode_cursor, AgentRow, Delivery, PlanVersion, ResultPage, ResultQuery, Site, StoredResult,
};

/// See `sonde_store::ResultReader::latest_results`.
pub fn latest_results(c: &mut Client) -> Result<Vec<(Delivery, ResultRecord)>, Error> {
    let rows = c.query(
        "SELECT r.agent_id, r.quartier, r.building, r.record
         FROM results r
         JOIN (SELECT agent_id, COALESCE(access_name, access_kind) AS access,
                      MAX(started_at) AS latest
               FROM results GROUP BY agent_id, COALESCE(access_name, access_kind)) l
           ON r.agent_id = l.agent_id
          AND COALESCE(r.access_name, r.access_kind) = l.access
          AND r.started_at = l.latest",
        &[],
    )?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            // A row that no longer parses (written by a newer version) is skipped.
            let record = ResultRecord::from_json(row.get::<_, &str>(3).as_bytes()).ok()?;
            Some((
                Delivery {
                    agent_id: row.get(0),
                    quartier: row.get(1),
                    building: row.get(2),
                },
                record,
            ))
        })
        .collect())
}

/// See `sonde_store::Enrolments::enrolment`.
pub fn enrolment(c: &mut Client, agent_id: &str) -> Result<Option<Site>, Error> {
    Ok(c.query_opt(
        "SELECT quartier, building, latitude, longitude FROM agents
         WHERE id = $1 AND enrolled_at IS NOT NULL",
        &[&agent_id],
    )?
    .map(|r| Site {
        quartier: r.get(0),
        building: r.get(1),
        latitude: r.get(2),
        longitude: r.get(3),
    }))
}

fn stored(row: &postgres::Row, at: usize) -> StoredResult {
    StoredResult {
        record: row.get(at),
        agent_id: row.get(at + 1),
        quartier: row.get(at + 2),
        building: row.get(at + 3),
        received_at: Some(from_ns(row.get(at + 4))),
    }
}

/// One stored result by its id.
pub fn result(c: &mut Client, id: &str) -> Result<Option<StoredResult>, Error> {
    Ok(c.query_opt(
        "SELECT r.record, r.agent_id, r.quartier, r.building, r.received_at
         FROM result_keys k
         JOIN results r ON r.row_id = k.row_id AND r.started_at = k.started_at
         WHERE k.id = $1",
        &[&id],
    )?
    .map(|r| stored(&r, 0)))
}

/// See `sonde_store::ResultReader::results`.
pub fn results(c: &mut Client, q: &ResultQuery) -> Result<ResultPage, Error> {
    let (after_t, after_id) = q.after()?;
    let rows = c.query(
        "SELECT started_at, id, record, agent_id, quartier, building, received_at
         FROM results
         WHERE (started_at, id) > ($1, $2)
           AND started_at >= $3 AND started_at < $4
           AND ($5::text IS NULL OR agent_id = $5)
         ORDER BY started_at, id
         LIMIT $6",
        &[
            &after_t,
            &after_id,
            &q.from.map(nanos).unwrap_or(i64::MIN),
            &q.to.map(nanos).unwrap_or(i64::MAX),
            &q.agent,
            &(q.limit as i64 + 1),
        ],
    )?;
    let more = rows.len() > q.limit;
    let page = &rows[..rows.len().min(q.limit)];
    let next_cursor = match (more, page.last()) {
        (true, Some(last)) => uuid::Uuid::try_parse(last.get::<_, &str>(1))
            .ok()
            .map(|u| encode_cursor(last.get(0), &u)),
        _ => None,
    };
    Ok(ResultPage {
        results: page.iter().map(|r| stored(r, 2)).collect(),
        next_cursor,
    })
}

/// See `sonde_store::ResultReader::agents`.
pub fn agents(c: &mut Client) -> Result<Vec<AgentRow>, Error> {
    let rows = c.query(
        "SELECT a.id, a.quartier, a.building, a.version, a.first_seen, a.last_seen,
                (SELECT COUNT(*) FROM results r WHERE r.agent_id = a.id),
                a.enrolled_at, a.latitude, a.longitude, a.health, a.revoked_at
         FROM agents a ORDER BY a.id",
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|row| AgentRow {
            id: row.get(0),
            quartier: row.get(1),
            building: row.get(2),
            version: row.get(3),
            first_seen: from_ns(row.get(4)),
            last_seen: from_ns(row.get(5)),
            results: row.get::<_, i64>(6) as u64,
            enrolled_at: row.get::<_, Option<i64>>(7).map(from_ns),
            latitude: row.get(8),
            longitude: row.get(9),
            health: row
                .get::<_, Option<String>>(10)
                .and_then(|h| serde_json::from_str(&h).ok()),
            revoked_at: row.get::<_, Option<i64>>(11).map(from_ns),
        })
        .collect())
}

/// See `sonde_store::Enrolments::revoked_at`.
pub fn revoked_at(
    c: &mut Client,
    agent_id: &str,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, Error> {
    Ok(
        c.query_opt("SELECT revoked_at FROM agents WHERE id = $1", &[&agent_id])?
            .and_then(|r| r.get::<_, Option<i64>>(0))
            .map(from_ns),
    )
}

/// See `sonde_store::ResultReader::site_known`.
pub fn site_known(
    c: &mut Client,
    quartier: Option<&str>,
    building: Option<&str>,
) -> Result<bool, Error> {
    Ok(c.query_one(
        "SELECT EXISTS (SELECT 1 FROM report_accesses
                        WHERE ($1::text IS NULL OR quartier = $1)
                          AND ($2::text IS NULL OR building = $2))
             OR EXISTS (SELECT 1 FROM tokens
                        WHERE ($1::text IS NULL OR quartier = $1)
                          AND ($2::text IS NULL OR building = $2))",
        &[&quartier, &building],
    )?
    .get(0))
}

/// See `sonde_store::Enrolments::revoked`.
pub fn revoked(c: &mut Client) -> Result<Vec<(String, chrono::DateTime<chrono::Utc>)>, Error> {
    Ok(c.query(
        "SELECT id, revoked_at FROM agents WHERE revoked_at IS NOT NULL",
        &[],
    )?
    .iter()
    .map(|r| (r.get(0), from_ns(r.get(1))))
    .collect())
}

/// See `sonde_store::Plans::plan_version`.
pub fn plan_version(c: &mut Client) -> Result<Option<u64>, Error> {
    Ok(c.query_one("SELECT MAX(version) FROM plans", &[])?
        .get::<_, Option<i64>>(0)
        .map(|v| v as u64))
}

fn plan_row(r: &postgres::Row) -> PlanVersion {
    PlanVersion {
        version: r.get::<_, i64>(0) as u64,
        applied_at: from_ns(r.get(1)),
        document: r.get(2),
    }
}

/// See `sonde_store::Plans::plan`.
pub fn plan(c: &mut Client, version: u64) -> Result<Option<PlanVersion>, Error> {
    Ok(c.query_opt(
        "SELECT version, applied_at, document FROM plans WHERE version = $1",
        &[&(version as i64)],
    )?
    .as_ref()
    .map(plan_row))
}

/// See `sonde_store::Plans::plans`.
pub fn plans(c: &mut Client) -> Result<Vec<PlanVersion>, Error> {
    Ok(c.query(
        "SELECT version, applied_at, document FROM plans ORDER BY version",
        &[],
    )?
    .iter()
    .map(plan_row)
    .collect())
}

/// Every agent's key.
pub fn keys(c: &mut Client) -> Result<Vec<(String, String)>, Error> {
    Ok(c.query(
        "SELECT agent_id, public_key FROM agent_keys ORDER BY agent_id",
        &[],
    )?
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect())
}

/// The agent's chain head.
pub fn chain_head(c: &mut Client, agent_id: &str) -> Result<Option<(u64, String)>, Error> {
    Ok(c.query_opt(
        "SELECT seq, hash FROM agent_chains WHERE agent_id = $1",
        &[&agent_id],
    )?
    .map(|r| (r.get::<_, i64>(0) as u64, r.get(1))))
}

/// Key rotations stored, of one agent or of all, by agent then place.
pub fn rotations(
    c: &mut Client,
    agent_id: Option<&str>,
) -> Result<Vec<(String, sonde_proto::wire::Rotation)>, Error> {
    Ok(c.query(
        "SELECT agent_id, body FROM key_rotations WHERE $1::text IS NULL OR agent_id = $1
         ORDER BY agent_id, seq",
        &[&agent_id],
    )?
    .iter()
    .filter_map(|r| {
        let body: &str = r.get(1);
        Some((r.get(0), serde_json::from_str(body).ok()?))
    })
    .collect())
}

/// See `sonde_store::ReportSource::result_ids`.
pub fn result_ids(c: &mut Client, rows: &[(i64, i64)]) -> Result<Vec<Option<String>>, Error> {
    let stmt = c.prepare("SELECT id FROM results WHERE row_id = $1 AND started_at = $2")?;
    rows.iter()
        .map(|(handle, started)| {
            Ok(c.query_opt(&stmt, &[handle, started])?
                .map(|r| r.get::<_, String>(0)))
        })
        .collect()
}
