//! What a report reads from a store: the period and scope asked ([`ReportScope`]),
//! the accesses known with their schedule ([`ScheduledAccess`]), and one row per
//! stored result ([`Fact`]), fed to a [`ReportSink`] access by access. Every backend
//! produces these rows from a record the same way ([`Fact::of`] in `sonde-store`'s
//! mapping), so a report never depends on the backend.

use chrono::{DateTime, Utc};

/// Which results a report reads: a scope and a period `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportScope {
    /// Only this quartier.
    pub quartier: Option<String>,
    /// Only this building.
    pub building: Option<String>,
    /// Start of the period (included).
    pub from: DateTime<Utc>,
    /// End of the period (excluded).
    pub to: DateTime<Utc>,
}

/// An access known to the store, with its schedule: what coverage is counted against.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScheduledAccess {
    /// Agent id.
    pub agent_id: String,
    /// Access name.
    pub access: String,
    /// Quartier of its latest result.
    pub quartier: String,
    /// Building of its latest result.
    pub building: String,
    /// Access kind (`ftth`, `4g`, …).
    pub kind: String,
    /// Start of its earliest result.
    pub first_at: DateTime<Utc>,
    /// Seconds between scheduled runs: the interval of its last result started before
    /// the period's end (so results of later periods do not change it).
    pub interval_s: Option<f64>,
}

/// One stored result as reports read it (docs/METHODOLOGY.md §7), borrowed from the
/// store's row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fact<'a> {
    /// Quartier ('' when the result has no site).
    pub quartier: &'a str,
    /// Building.
    pub building: &'a str,
    /// Agent id.
    pub agent_id: &'a str,
    /// Access name.
    pub access: &'a str,
    /// Access kind.
    pub kind: &'a str,
    /// `run.started_at`, Unix nanoseconds.
    pub started_at_ns: i64,
    /// `status.outcome`.
    pub outcome: &'a str,
    /// `status.reason`.
    pub reason: Option<&'a str>,
    /// `flags`, comma-separated.
    pub flags: &'a str,
    /// The download IP-layer rate the test's verdict is on: `download.ip_rate_bps`,
    /// or a UDPST test's `capacity.down.max_ip_capacity_bps` (§3).
    pub down_bps: Option<f64>,
    /// The upload IP-layer rate, likewise.
    pub up_bps: Option<f64>,
    /// `capacity.down.max_ip_capacity_bps` (a UDPST test only).
    pub cap_down_bps: Option<f64>,
    /// `capacity.up.max_ip_capacity_bps` (a UDPST test only).
    pub cap_up_bps: Option<f64>,
    /// `download.goodput_bps`.
    pub down_goodput_bps: Option<f64>,
    /// `verdict.target_down_bps`.
    pub target_down_bps: Option<f64>,
    /// `verdict.down`.
    pub verdict_down: Option<&'a str>,
    /// `idle_latency.median_s`.
    pub idle_s: Option<f64>,
    /// `download.loaded_latency.median_s`.
    pub loaded_s: Option<f64>,
    /// `idle_latency.sent`.
    pub probes_sent: Option<i64>,
    /// `idle_latency.received`.
    pub probes_received: Option<i64>,
    /// `agent.version`.
    pub version: &'a str,
    /// `run.streams`, the connections the test asked for (`None` when unknown).
    pub streams: Option<i64>,
    /// `run.interval_s`: the schedule the test ran on; `None` for a manual probe
    /// (`sonde-agent probe`, imported or not).
    pub interval_s: Option<f64>,
    /// `responsiveness.down.rpm`: RPM under download load (§11).
    pub rpm_down: Option<f64>,
    /// `responsiveness.up.rpm`.
    pub rpm_up: Option<f64>,
    /// The result id, when asked for.
    pub id: Option<&'a str>,
    /// The store's key of the result's row, when it has one: a report looks up the
    /// ids of the few results it names afterwards (`ReportSource::result_ids`) rather
    /// than reading every row's id.
    pub handle: Option<i64>,
}

/// Receives a report's data from a store's scan.
pub trait ReportSink {
    /// Every access of the scope known before the period's end, first.
    fn accesses(&mut self, accesses: Vec<ScheduledAccess>);
    /// Then each result of the scope and period, access by access, in time order
    /// within each. An error stops the scan and is returned by it.
    fn fact(&mut self, fact: &Fact<'_>) -> Result<(), String>;
}
