//! The scan a report reads: the accesses of the scope known before the period's end,
//! then each one's report rows in time order, one seek per access (the rows are
//! clustered by access and time).

use crate::columns::{from_ns, ns};
use crate::error::Error;
use rusqlite::{params, Connection};
use sonde_store::{Fact, ReportScope, ReportSink, ScheduledAccess, StoreError};

/// The body of a report scan, inside its read transaction.
pub fn scan(
    conn: &Connection,
    scope: &ReportScope,
    with_ids: bool,
    sink: &mut dyn ReportSink,
) -> Result<(), Error> {
    let accesses = accesses(conn, scope)?;
    sink.accesses(accesses.iter().map(|(_, a)| a.clone()).collect());
    facts(conn, &accesses, scope, with_ids, sink)
}

/// The accesses of the scope known before the period's end, with their row ids.
pub fn accesses(
    conn: &Connection,
    scope: &ReportScope,
) -> Result<Vec<(i64, ScheduledAccess)>, Error> {
    let to = ns(scope.to);
    let mut stmt = conn.prepare(
        // The interval is that of the access's last result started before the period's
        // end (the access's latest one when that row has none): results that arrive
        // for later periods do not change a closed period's schedule.
        "SELECT id, agent_id, access, quartier, building, kind, first_at,
                COALESCE((SELECT f.interval_s FROM report_facts f
                          WHERE f.access_id = report_accesses.id AND f.started_at < ?3
                          ORDER BY f.started_at DESC LIMIT 1), interval_s)
         FROM report_accesses
         WHERE (?1 IS NULL OR quartier = ?1) AND (?2 IS NULL OR building = ?2) AND first_at < ?3
         ORDER BY id",
    )?;
    let accesses = stmt
        .query_map(params![scope.quartier, scope.building, to], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                ScheduledAccess {
                    agent_id: row.get(1)?,
                    access: row.get(2)?,
                    quartier: row.get(3)?,
                    building: row.get(4)?,
                    kind: row.get(5)?,
                    first_at: from_ns(row.get(6)?),
                    interval_s: row.get(7)?,
                },
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(accesses)
}

/// Each access's report rows in the period, in time order, one seek per access.
pub fn facts(
    conn: &Connection,
    accesses: &[(i64, ScheduledAccess)],
    scope: &ReportScope,
    with_ids: bool,
    sink: &mut dyn ReportSink,
) -> Result<(), Error> {
    let (from, to) = (ns(scope.from), ns(scope.to));
    let id = if with_ids {
        // The record may be gone (retention); a reused rowid must not name another.
        "(SELECT r.id FROM results r WHERE r.rowid = f.result_rowid AND r.started_at = f.started_at)"
    } else {
        "NULL"
    };
    // Per access, a range of its clustered rows: the period is a seek, not a filter.
    let mut stmt = conn.prepare(&format!(
        "SELECT started_at, outcome, reason, flags, down_bps, up_bps, down_goodput_bps,
                target_down_bps, verdict_down, idle_s, loaded_s, probes_sent,
                probes_received, version, {id}, streams, interval_s, cap_down_bps, cap_up_bps,
                rpm_down, rpm_up, result_rowid
         FROM report_facts f
         WHERE access_id = ?1 AND started_at >= ?2 AND started_at < ?3
         ORDER BY started_at"
    ))?;
    for (access_id, a) in accesses {
        let mut rows = stmt.query(params![access_id, from, to])?;
        while let Some(row) = rows.next()? {
            let opt = |i: usize| -> Result<Option<&str>, rusqlite::Error> {
                let v = row.get_ref(i)?;
                v.as_str_or_null().map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(i, v.data_type(), Box::new(e))
                })
            };
            let fact = Fact {
                quartier: &a.quartier,
                building: &a.building,
                agent_id: &a.agent_id,
                access: &a.access,
                kind: &a.kind,
                started_at_ns: row.get(0)?,
                outcome: opt(1)?.unwrap_or(""),
                reason: opt(2)?,
                flags: opt(3)?.unwrap_or(""),
                down_bps: row.get(4)?,
                up_bps: row.get(5)?,
                down_goodput_bps: row.get(6)?,
                target_down_bps: row.get(7)?,
                verdict_down: opt(8)?,
                idle_s: row.get(9)?,
                loaded_s: row.get(10)?,
                probes_sent: row.get(11)?,
                probes_received: row.get(12)?,
                version: opt(13)?.unwrap_or(""),
                id: opt(14)?,
                streams: row.get(15)?,
                interval_s: row.get(16)?,
                cap_down_bps: row.get(17)?,
                cap_up_bps: row.get(18)?,
                rpm_down: row.get(19)?,
                rpm_up: row.get(20)?,
                handle: row.get(21)?,
            };
            sink.fact(&fact).map_err(StoreError::Query)?;
        }
    }
    Ok(())
}
