//! The scan a report reads, from one snapshot (a repeatable-read transaction): the
//! accesses of the scope known before the period's end, then each one's report rows in
//! time order, read on a connection's thread and fed to the sink on the caller's.

use crate::error::Error;
use crate::write::from_ns;
use crate::Sender;
use postgres::{Client, IsolationLevel};
use sonde_store::rows::nanos;
use sonde_store::{Fact, ReportScope, ReportSink, ScheduledAccess, StoreError};

/// What the reading thread sends.
pub enum Part {
    /// The scope's accesses, first.
    Accesses(Vec<ScheduledAccess>),
    /// One access's rows in the period, in time order.
    Facts(ScheduledAccess, Vec<Row>),
}

/// A report row, owned.
pub struct Row {
    started_at_ns: i64,
    outcome: String,
    reason: Option<String>,
    flags: String,
    down_bps: Option<f64>,
    up_bps: Option<f64>,
    down_goodput_bps: Option<f64>,
    target_down_bps: Option<f64>,
    verdict_down: Option<String>,
    idle_s: Option<f64>,
    loaded_s: Option<f64>,
    probes_sent: Option<i64>,
    probes_received: Option<i64>,
    version: String,
    id: Option<String>,
    streams: Option<i64>,
    interval_s: Option<f64>,
    cap_down_bps: Option<f64>,
    cap_up_bps: Option<f64>,
    rpm_down: Option<f64>,
    rpm_up: Option<f64>,
    handle: i64,
}

/// Reads the scope in one snapshot and sends it part by part.
pub fn scan(
    c: &mut Client,
    scope: &ReportScope,
    with_ids: bool,
    out: &Sender<Part>,
) -> Result<(), Error> {
    let mut tx = c
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    let (from, to) = (nanos(scope.from), nanos(scope.to));
    // The interval is that of the access's last result started before the period's
    // end (the access's latest one when that row has none): results that arrive for
    // later periods do not change a closed period's schedule.
    let accesses: Vec<(i64, ScheduledAccess)> = tx
        .query(
            "SELECT id, agent_id, access, quartier, building, kind, first_at,
                    COALESCE((SELECT f.interval_s FROM report_facts f
                              WHERE f.access_id = a.id AND f.started_at < $3
                              ORDER BY f.started_at DESC LIMIT 1), interval_s)
             FROM report_accesses a
             WHERE ($1::text IS NULL OR quartier = $1) AND ($2::text IS NULL OR building = $2)
               AND first_at < $3
             ORDER BY id",
            &[&scope.quartier, &scope.building, &to],
        )?
        .iter()
        .map(|r| {
            (
                r.get(0),
                ScheduledAccess {
                    agent_id: r.get(1),
                    access: r.get(2),
                    quartier: r.get(3),
                    building: r.get(4),
                    kind: r.get(5),
                    first_at: from_ns(r.get(6)),
                    interval_s: r.get(7),
                },
            )
        })
        .collect();
    out.send(Part::Accesses(
        accesses.iter().map(|(_, a)| a.clone()).collect(),
    ))?;
    let id = if with_ids {
        // The record may be gone (retention); a reused handle must not name another.
        "(SELECT r.id FROM results r WHERE r.row_id = f.result_rowid AND r.started_at = f.started_at)"
    } else {
        "NULL::text"
    };
    let stmt = tx.prepare(&format!(
        "SELECT started_at, outcome, reason, flags, down_bps, up_bps, down_goodput_bps,
                target_down_bps, verdict_down, idle_s, loaded_s, probes_sent,
                probes_received, version, {id}, streams, interval_s, cap_down_bps, cap_up_bps,
                rpm_down, rpm_up, result_rowid
         FROM report_facts f
         WHERE access_id = $1 AND started_at >= $2 AND started_at < $3
         ORDER BY started_at"
    ))?;
    for (access_id, a) in accesses {
        let rows = tx
            .query(&stmt, &[&access_id, &from, &to])?
            .iter()
            .map(row)
            .collect();
        out.send(Part::Facts(a, rows))?;
    }
    tx.commit()?;
    Ok(())
}

fn row(r: &postgres::Row) -> Row {
    Row {
        started_at_ns: r.get(0),
        outcome: r.get(1),
        reason: r.get(2),
        flags: r.get(3),
        down_bps: r.get(4),
        up_bps: r.get(5),
        down_goodput_bps: r.get(6),
        target_down_bps: r.get(7),
        verdict_down: r.get(8),
        idle_s: r.get(9),
        loaded_s: r.get(10),
        probes_sent: r.get(11),
        probes_received: r.get(12),
        version: r.get(13),
        id: r.get(14),
        streams: r.get(15),
        interval_s: r.get(16),
        cap_down_bps: r.get(17),
        cap_up_bps: r.get(18),
        rpm_down: r.get(19),
        rpm_up: r.get(20),
        handle: r.get(21),
    }
}

/// Hands one part to the sink.
pub fn feed(part: Part, sink: &mut dyn ReportSink) -> Result<(), StoreError> {
    let (a, rows) = match part {
        Part::Accesses(all) => {
            sink.accesses(all);
            return Ok(());
        }
        Part::Facts(a, rows) => (a, rows),
    };
    for r in &rows {
        let fact = Fact {
            quartier: &a.quartier,
            building: &a.building,
            agent_id: &a.agent_id,
            access: &a.access,
            kind: &a.kind,
            started_at_ns: r.started_at_ns,
            outcome: &r.outcome,
            reason: r.reason.as_deref(),
            flags: &r.flags,
            down_bps: r.down_bps,
            up_bps: r.up_bps,
            down_goodput_bps: r.down_goodput_bps,
            target_down_bps: r.target_down_bps,
            verdict_down: r.verdict_down.as_deref(),
            idle_s: r.idle_s,
            loaded_s: r.loaded_s,
            probes_sent: r.probes_sent,
            probes_received: r.probes_received,
            version: &r.version,
            id: r.id.as_deref(),
            streams: r.streams,
            interval_s: r.interval_s,
            cap_down_bps: r.cap_down_bps,
            cap_up_bps: r.cap_up_bps,
            rpm_down: r.rpm_down,
            rpm_up: r.rpm_up,
            handle: Some(r.handle),
        };
        sink.fact(&fact).map_err(StoreError::Query)?;
    }
    Ok(())
}
