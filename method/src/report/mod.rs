//! Compliance report figures (docs/METHODOLOGY.md §7), as pure code: for a period and
//! a scope, per building access and rolled up per quartier and for the scope,
//! coverage, throughput percentiles, the share of tests meeting the target, ARCEP's
//! thresholds, the peak-hour median, the 80/80 consistent speed, latency and loss.
//!
//! A store feeds [`Fact`]s in access order to a [`Builder`]; each access is summarised
//! as soon as its last result has been read, so memory holds one access's figures at
//! a time, plus one summary per access for the roll-ups. Reading the store, rendering
//! and signing are the collector's.

mod facts;
mod planned;

pub use facts::{Fact, ReportScope, ReportSink, ScheduledAccess};
pub use planned::{planned, PlannedAccess};

use crate::verdict::TOLERANCE;
use chrono::{DateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use sonde_proto::stats::{median, quantile, quantile_sorted};
use std::collections::{BTreeMap, BTreeSet};

/// Version of the report format (the JSON layout and CSV columns). 2: each access's
/// `standing` and `not_valid` counts, each roll-up's `standings`, ARCEP's shares from
/// single-connection tests with their count (CSV: columns appended at the end).
pub const REPORT_FORMAT: u32 = 2;
/// Peak hours, local time of the site: [19:00, 23:00).
pub const PEAK_HOURS: (u32, u32) = (19, 23);
/// ARCEP's mobile thresholds, compared with the download TCP goodput (bit/s).
pub const ARCEP_THRESHOLDS_BPS: [f64; 3] = [3e6, 8e6, 30e6];
/// Flags that make a test invalid: the figure is the box's or the server's (or shared
/// with another test on it), not the access's.
pub const INVALIDATING_FLAGS: [&str; 5] = [
    "nic_limited",
    "server_limited",
    "server_contended",
    "cpu_limited",
    "cross_traffic",
];
/// Failure reasons of a test the agent skipped: scheduled, not run.
pub const SKIP_REASONS: [&str; 2] = ["busy", "budget"];
/// Shortest bucket of the time-covered figure, seconds.
pub const COVER_BUCKET_S: i64 = 3600;

/// What a report is asked for.
#[derive(Debug, Clone)]
pub struct Request {
    /// Scope and period.
    pub scope: ReportScope,
    /// Time zone of the sites, for peak hours.
    pub time_zone: Tz,
    /// The moment the report is made: the end of coverage for an open period.
    pub generated_at: DateTime<Utc>,
}

/// Low, middle and high percentiles of a set of figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Spread {
    /// 10th percentile.
    pub p10: Option<f64>,
    /// Median.
    pub median: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
}

impl Spread {
    fn of(values: &[f64]) -> Spread {
        Spread::of_sorted(&sorted(values))
    }

    fn of_sorted(s: &[f64]) -> Spread {
        Spread {
            p10: q_sorted(s, 0.1),
            median: q_sorted(s, 0.5),
            p90: q_sorted(s, 0.9),
        }
    }
}

/// `values` in order, without NaN (figures in the store are never NaN).
fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    v.sort_unstable_by(f64::total_cmp);
    v
}

/// Quantile of a sorted slice (§4), `None` when empty.
fn q_sorted(s: &[f64], q: f64) -> Option<f64> {
    (!s.is_empty()).then(|| quantile_sorted(s, q))
}

/// How much of the planned measuring happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Coverage {
    /// Tests the schedule called for in the period.
    pub scheduled: u64,
    /// Whether `scheduled` is what the plans in force called for (§7.3); else it is
    /// inferred from the interval of the access's latest result.
    pub planned: bool,
    /// Tests that ran (skipped ones, busy line or budget, are not).
    pub run: u64,
    /// Tests that ran and are valid (§7.2).
    pub valid: u64,
    /// Buckets of the period holding at least one valid test.
    pub buckets_covered: u64,
    /// Buckets of the period in the access's life.
    pub buckets: u64,
    /// `buckets_covered / buckets`.
    pub time_covered_ratio: Option<f64>,
}

/// Shares of valid single-connection 4G tests whose download goodput reached ARCEP's
/// thresholds (ARCEP's campaigns test with one connection).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Thresholds {
    /// Valid single-connection tests with a download behind the shares; 0 means the
    /// shares cannot be given (schedule tests with `streams = 1`).
    pub tests: u64,
    /// ≥ 3 Mb/s.
    pub mbps_3: Option<f64>,
    /// ≥ 8 Mb/s.
    pub mbps_8: Option<f64>,
    /// ≥ 30 Mb/s.
    pub mbps_30: Option<f64>,
}

/// Why tests of an access are not valid (§7.2), counted by reason: skipped tests by
/// skip reason, failed tests by failure reason, flagged tests by invalidating flag (a
/// test with two such flags counts under both).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NotValid {
    /// Scheduled, not run: `busy`, `budget`.
    pub skipped: BTreeMap<String, u64>,
    /// Ran and failed, by `status.reason` (`failed` when none is given).
    pub failed: BTreeMap<String, u64>,
    /// Ran, succeeded, and carry an invalidating flag.
    pub flagged: BTreeMap<String, u64>,
}

impl NotValid {
    /// Every reason with its count, `reason=n` joined by `;` (skipped, failed, flagged).
    pub fn summary(&self) -> String {
        [&self.skipped, &self.failed, &self.flagged]
            .iter()
            .flat_map(|m| m.iter())
            .map(|(k, n)| format!("{k}={n}"))
            .collect::<Vec<_>>()
            .join(";")
    }

    fn add(&mut self, other: &NotValid) {
        for (mine, theirs) in [
            (&mut self.skipped, &other.skipped),
            (&mut self.failed, &other.failed),
            (&mut self.flagged, &other.flagged),
        ] {
            for (k, n) in theirs {
                *mine.entry(k.clone()).or_default() += n;
            }
        }
    }
}

/// Where an access stands against its target (§7.3). No access leaves a headline:
/// one that cannot be judged says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// Its download median reaches its target.
    Compliant,
    /// It has a target and valid tests, and the median falls short.
    NotCompliant,
    /// Valid tests, but no target to judge them against.
    NoTarget,
    /// No stored result in the period (a silent box).
    NoResult,
    /// Results, but every test was skipped (busy line, data budget).
    NoTestRun,
    /// Tests ran, none valid (failed, or flagged: see `not_valid`).
    NoValidTest,
}

impl Standing {
    /// Whether the access could not be judged for want of a valid test.
    pub fn not_demonstrated(self) -> bool {
        matches!(
            self,
            Standing::NoResult | Standing::NoTestRun | Standing::NoValidTest
        )
    }

    /// Short wording, as in the report.
    pub fn label(self) -> &'static str {
        match self {
            Standing::Compliant => "reaches its target",
            Standing::NotCompliant => "below its target",
            Standing::NoTarget => "no target",
            Standing::NoResult => "no result",
            Standing::NoTestRun => "no test run",
            Standing::NoValidTest => "no valid test",
        }
    }

    /// The wire name (`compliant`, `no_valid_test`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Compliant => "compliant",
            Standing::NotCompliant => "not_compliant",
            Standing::NoTarget => "no_target",
            Standing::NoResult => "no_result",
            Standing::NoTestRun => "no_test_run",
            Standing::NoValidTest => "no_valid_test",
        }
    }
}

/// How many accesses of a roll-up stand where.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Standings {
    /// Accesses per standing (wire names), every access of the roll-up counted once.
    pub accesses: BTreeMap<&'static str, u64>,
}

impl Standings {
    /// Accesses counted under `s`.
    pub fn count(&self, s: Standing) -> u64 {
        self.accesses.get(s.as_str()).copied().unwrap_or(0)
    }
}

/// One building access over the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessReport {
    /// Quartier.
    pub quartier: String,
    /// Building.
    pub building: String,
    /// Agent measuring it.
    pub agent: String,
    /// Access name.
    pub access: String,
    /// Access kind.
    pub kind: String,
    /// Coverage.
    pub coverage: Coverage,
    /// Download IP-layer rate of the valid tests, bit/s.
    pub download_bps: Spread,
    /// Upload IP-layer rate of the valid tests, bit/s.
    pub upload_bps: Spread,
    /// Download target of the latest valid test, bit/s.
    pub target_down_bps: Option<f64>,
    /// Share of valid tests with a target whose verdict was `met`.
    pub target_met_ratio: Option<f64>,
    /// Whether the download median reaches the target (within the tolerance).
    pub compliant: Option<bool>,
    /// Where the access stands; says why when it cannot be judged.
    pub standing: Standing,
    /// Why its tests that are not valid are not.
    pub not_valid: NotValid,
    /// ARCEP's thresholds (4G only).
    pub arcep_thresholds: Option<Thresholds>,
    /// Median download of the valid tests started in peak hours, bit/s.
    pub peak_download_median_bps: Option<f64>,
    /// 80/80 consistent speed: the rate 80 % of peak-hour valid tests reach, bit/s.
    pub consistent_80_80_bps: Option<f64>,
    /// `consistent_80_80_bps / target_down_bps`.
    pub consistent_80_80_ratio: Option<f64>,
    /// Median idle round-trip time of the valid tests, seconds.
    pub idle_latency_median_s: Option<f64>,
    /// Median loaded (download) round-trip time of the valid tests, seconds.
    pub loaded_latency_median_s: Option<f64>,
    /// Idle probes lost over probes sent, valid tests pooled.
    pub loss_ratio: Option<f64>,
    #[serde(skip)]
    counts: Counts,
}

/// Pooled counts behind the shares, summed by the roll-ups.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Counts {
    met: u64,
    with_target: u64,
    thresholds: [u64; 3],
    with_goodput: u64,
    sent: u64,
    lost: u64,
}

/// A roll-up of the accesses of one kind, per quartier or for the whole scope.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rollup {
    /// Quartier, or `None` for the whole scope.
    pub quartier: Option<String>,
    /// Access kind.
    pub kind: String,
    /// Building accesses in it.
    pub accesses: u64,
    /// Distinct buildings.
    pub buildings: u64,
    /// Coverage, summed.
    pub coverage: Coverage,
    /// Spread of the accesses' download medians (each access weighs the same), bit/s.
    pub download_median_bps: Spread,
    /// Spread of the accesses' upload medians, bit/s.
    pub upload_median_bps: Spread,
    /// Share of the valid tests, pooled, whose verdict was `met`.
    pub target_met_ratio: Option<f64>,
    /// Accesses whose median reaches the target, over accesses with a target and data.
    pub compliant_ratio: Option<f64>,
    /// Every access of the roll-up by standing, those not judged included.
    pub standings: Standings,
    /// Why tests were not valid, summed over the accesses.
    pub not_valid: NotValid,
    /// ARCEP's thresholds, tests pooled (4G only).
    pub arcep_thresholds: Option<Thresholds>,
    /// Median of the accesses' peak-hour medians, bit/s.
    pub peak_download_median_bps: Option<f64>,
    /// 80/80 across accesses: the 20th percentile of their 80/80 speeds, bit/s.
    pub consistent_80_80_bps: Option<f64>,
    /// Median of the accesses' idle latency medians, seconds.
    pub idle_latency_median_s: Option<f64>,
    /// Median of the accesses' loaded latency medians, seconds.
    pub loaded_latency_median_s: Option<f64>,
    /// Idle probes lost over sent, pooled.
    pub loss_ratio: Option<f64>,
}

/// Period and scope of a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Header {
    /// Report format version ([`REPORT_FORMAT`]).
    pub report_format: u32,
    /// docs/METHODOLOGY.md version the definitions follow.
    pub methodology_version: String,
    /// When it was made.
    pub generated_at: DateTime<Utc>,
    /// The collector version that made it.
    pub generator: String,
    /// Start of the period (included).
    pub from: DateTime<Utc>,
    /// End of the period (excluded).
    pub to: DateTime<Utc>,
    /// Quartier asked for (all when absent).
    pub quartier: Option<String>,
    /// Building asked for (all when absent).
    pub building: Option<String>,
    /// Time zone of peak hours.
    pub time_zone: String,
    /// Peak hours, local time.
    pub peak_hours: String,
}

/// What the data held.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DataSummary {
    /// Results of the scope in the period.
    pub results: u64,
    /// Start of the first of them.
    pub first_result: Option<DateTime<Utc>>,
    /// Start of the last of them.
    pub last_result: Option<DateTime<Utc>>,
    /// Agent versions that produced them.
    pub agent_versions: Vec<String>,
    /// No result of the scope in the period.
    pub no_data: bool,
}

/// A whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Period, scope, versions.
    pub header: Header,
    /// What the data held.
    pub data: DataSummary,
    /// Per building access.
    pub accesses: Vec<AccessReport>,
    /// Per quartier and kind.
    pub quartiers: Vec<Rollup>,
    /// For the scope, per kind.
    pub total: Vec<Rollup>,
}

/// The period `[from, to)` of `--from FROM --to TO`: each is a calendar day
/// (`YYYY-MM-DD`, in `tz`; `to`'s day is included) or an RFC 3339 instant (`to`
/// excluded). Errors are one line, naming the argument.
pub fn parse_period(
    from: &str,
    to: &str,
    tz: Tz,
) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
    let parse = |name: &str, s: &str, end: bool| -> Result<DateTime<Utc>, String> {
        if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            let day = if end { d.succ_opt().unwrap_or(d) } else { d };
            return Ok(day_start(day, tz));
        }
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                format!("--{name} {s:?} is not a date (YYYY-MM-DD) or an RFC 3339 instant")
            })
    };
    let (f, t) = (parse("from", from, false)?, parse("to", to, true)?);
    if f >= t {
        return Err(format!(
            "--from {from} is not before --to {to} ({} ≥ {})",
            f.to_rfc3339(),
            t.to_rfc3339()
        ));
    }
    Ok((f, t))
}

/// The instant a day starts in `tz` (the first one, should midnight repeat).
pub fn day_start(day: chrono::NaiveDate, tz: Tz) -> DateTime<Utc> {
    let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    match tz.from_local_datetime(&midnight).earliest() {
        Some(t) => t.with_timezone(&Utc),
        // Should a zone skip midnight, the day starts an hour later.
        None => (midnight + chrono::Duration::hours(1)).and_utc(),
    }
}

/// Unix nanoseconds of `t` (saturating far from now).
fn nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// Accumulates one access's results.
#[derive(Debug, Default)]
struct Acc {
    schedule: Option<ScheduledAccess>,
    quartier: String,
    building: String,
    agent: String,
    access: String,
    kind: String,
    recorded: u64,
    run: u64,
    valid: u64,
    down: Vec<f64>,
    up: Vec<f64>,
    peak: Vec<f64>,
    idle: Vec<f64>,
    loaded: Vec<f64>,
    target: Option<f64>,
    counts: Counts,
    not_valid: NotValid,
    /// Distinct buckets holding a valid test; results come in time order, so the last
    /// one seen is enough to count them.
    buckets: u64,
    last_bucket: Option<i64>,
}

/// Receives the scan and summarises access by access.
#[derive(Debug)]
pub struct Builder<'r> {
    request: &'r Request,
    schedules: BTreeMap<(String, String), ScheduledAccess>,
    current: Option<Acc>,
    done: Vec<AccessReport>,
    data: DataSummary,
    versions: BTreeSet<String>,
    planned: BTreeMap<(String, String, String), PlannedAccess>,
}

/// Whether `t` falls in peak hours, local time in `tz` (§7.1), read for each result
/// (the zone's offset at that instant, so +5:30 zones change hour at :30 UTC): the
/// figures and the results file both use it.
pub fn is_peak_hour(tz: Tz, t: DateTime<Utc>) -> bool {
    let hour = tz.from_utc_datetime(&t.naive_utc()).hour();
    (PEAK_HOURS.0..PEAK_HOURS.1).contains(&hour)
}

impl ReportSink for Builder<'_> {
    fn accesses(&mut self, accesses: Vec<ScheduledAccess>) {
        self.schedules = accesses
            .into_iter()
            .map(|a| ((a.agent_id.clone(), a.access.clone()), a))
            .collect();
    }

    fn fact(&mut self, f: &Fact<'_>) -> Result<(), String> {
        self.enter_access(f);
        let t = DateTime::from_timestamp_nanos(f.started_at_ns);
        self.data.results += 1;
        self.data.first_result = Some(self.data.first_result.map_or(t, |x| x.min(t)));
        self.data.last_result = Some(self.data.last_result.map_or(t, |x| x.max(t)));
        if !self.versions.contains(f.version) {
            self.versions.insert(f.version.to_string());
        }
        let tz = self.request.time_zone;
        let start = self.span_start(self.current.as_ref().and_then(|c| c.schedule.as_ref()));
        let peak = is_peak_hour(tz, t);
        let Some(c) = self.current.as_mut() else {
            return Ok(());
        };
        c.recorded += 1;
        if let Some(r) = f.reason.filter(|r| SKIP_REASONS.contains(r)) {
            *c.not_valid.skipped.entry(r.to_string()).or_default() += 1;
            return Ok(());
        }
        c.run += 1;
        if f.outcome != "ok" {
            let why = f.reason.unwrap_or(f.outcome);
            *c.not_valid.failed.entry(why.to_string()).or_default() += 1;
            return Ok(());
        }
        let mut flagged = false;
        for flag in f
            .flags
            .split(',')
            .filter(|x| INVALIDATING_FLAGS.contains(x))
        {
            *c.not_valid.flagged.entry(flag.to_string()).or_default() += 1;
            flagged = true;
        }
        if !flagged {
            c.add_valid(f, start, peak);
        }
        Ok(())
    }
}

/// Width of the time-covered buckets of an access: an hour, or its interval when longer.
fn bucket_len(schedule: Option<&ScheduledAccess>) -> i64 {
    schedule
        .and_then(|s| s.interval_s)
        .map_or(COVER_BUCKET_S, |i| (i.ceil() as i64).max(COVER_BUCKET_S))
}

fn ratio(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

impl Acc {
    /// Adds a valid test: its time bucket, figures, target verdict and probes.
    fn add_valid(&mut self, f: &Fact<'_>, start: DateTime<Utc>, peak: bool) {
        self.valid += 1;
        let bucket = (f.started_at_ns - nanos(start))
            .div_euclid(bucket_len(self.schedule.as_ref()) * 1_000_000_000);
        if self.last_bucket != Some(bucket) {
            self.buckets += 1;
            self.last_bucket = Some(bucket);
        }
        if let Some(d) = f.down_bps {
            self.down.push(d);
            if peak {
                self.peak.push(d);
            }
        }
        if let Some(u) = f.up_bps {
            self.up.push(u);
        }
        // ARCEP's shares: single-connection tests only, as ARCEP measures.
        if let Some(g) = f.down_goodput_bps.filter(|_| f.streams == Some(1)) {
            self.counts.with_goodput += 1;
            for (n, th) in self.counts.thresholds.iter_mut().zip(ARCEP_THRESHOLDS_BPS) {
                if g >= th {
                    *n += 1;
                }
            }
        }
        // The latest valid test's target is the access's: a target removed is gone.
        self.target = f.target_down_bps;
        if f.target_down_bps.is_some() {
            match f.verdict_down {
                Some("met") => {
                    self.counts.met += 1;
                    self.counts.with_target += 1;
                }
                Some("not_met") | Some("port_limited") => self.counts.with_target += 1,
                _ => {}
            }
        }
        self.idle.extend(f.idle_s);
        self.loaded.extend(f.loaded_s);
        if let (Some(sent), Some(received)) = (f.probes_sent, f.probes_received) {
            self.counts.sent += sent.max(0) as u64;
            self.counts.lost += (sent - received).max(0) as u64;
        }
    }
}

impl<'r> Builder<'r> {
    /// Starts `f`'s access when it is not the current one (the previous one is
    /// summarised then).
    fn enter_access(&mut self, f: &Fact<'_>) {
        let same = self
            .current
            .as_ref()
            .is_some_and(|c| c.agent == f.agent_id && c.access == f.access);
        if same {
            return;
        }
        if let Some(c) = self.current.take() {
            let r = self.summarise(c);
            self.done.push(r);
        }
        let schedule = self
            .schedules
            .remove(&(f.agent_id.to_string(), f.access.to_string()));
        self.current = Some(Acc {
            schedule,
            quartier: f.quartier.into(),
            building: f.building.into(),
            agent: f.agent_id.into(),
            access: f.access.into(),
            kind: f.kind.into(),
            ..Default::default()
        });
    }

    /// A builder for `request`; feed it as a [`ReportSink`], then [`Builder::finish`].
    pub fn new(request: &'r Request) -> Self {
        Builder {
            request,
            schedules: BTreeMap::new(),
            current: None,
            done: Vec::new(),
            data: DataSummary::default(),
            versions: BTreeSet::new(),
            planned: BTreeMap::new(),
        }
    }

    /// What the plans in force scheduled in the period ([`planned`]): those accesses'
    /// `scheduled` comes from it, and the ones that reported nothing are listed too.
    pub fn with_plan(mut self, planned: Vec<PlannedAccess>) -> Self {
        self.planned = planned
            .into_iter()
            .map(|p| {
                (
                    (p.quartier.clone(), p.building.clone(), p.access.clone()),
                    p,
                )
            })
            .collect();
        self
    }

    /// End of the period that has happened.
    fn span_end(&self) -> DateTime<Utc> {
        self.request.scope.to.min(self.request.generated_at)
    }

    /// Start of the period within the access's life.
    fn span_start(&self, schedule: Option<&ScheduledAccess>) -> DateTime<Utc> {
        let from = self.request.scope.from;
        schedule.map_or(from, |s| from.max(s.first_at))
    }

    fn summarise(&self, c: Acc) -> AccessReport {
        let start = self.span_start(c.schedule.as_ref());
        // The span to the nanosecond: whole seconds would shift a bucket's edge.
        let span_ns = (nanos(self.span_end()) - nanos(start)).max(0);
        let interval = c.schedule.as_ref().and_then(|s| s.interval_s);
        let slots = match interval {
            Some(i) if i > 0.0 => (span_ns as f64 / 1e9 / i).floor() as u64,
            _ => 0,
        };
        let bucket_ns = bucket_len(c.schedule.as_ref()) * 1_000_000_000;
        let buckets = (span_ns + bucket_ns - 1).div_euclid(bucket_ns) as u64;
        let plan = self
            .planned
            .get(&(c.quartier.clone(), c.building.clone(), c.access.clone()));
        let coverage = Coverage {
            scheduled: plan.map_or(slots, |p| p.scheduled).max(c.recorded),
            planned: plan.is_some(),
            run: c.run,
            valid: c.valid,
            buckets_covered: c.buckets,
            buckets: buckets.max(c.buckets),
            time_covered_ratio: ratio(c.buckets, buckets.max(c.buckets)),
        };
        let download = Spread::of_sorted(&sorted(&c.down));
        let peak = sorted(&c.peak);
        let consistent = q_sorted(&peak, 0.2);
        let is_4g = c.kind == "4g";
        let compliant = match (download.median, c.target) {
            (Some(m), Some(t)) => Some(m >= t * (1.0 - TOLERANCE)),
            _ => None,
        };
        let standing = match compliant {
            Some(true) => Standing::Compliant,
            Some(false) => Standing::NotCompliant,
            None if c.valid > 0 && c.target.is_none() => Standing::NoTarget,
            // Tests ran and none gave a valid download.
            None if c.run > 0 => Standing::NoValidTest,
            None if c.recorded > 0 => Standing::NoTestRun,
            None => Standing::NoResult,
        };
        AccessReport {
            coverage,
            download_bps: download,
            upload_bps: Spread::of_sorted(&sorted(&c.up)),
            target_down_bps: c.target,
            target_met_ratio: ratio(c.counts.met, c.counts.with_target),
            compliant,
            standing,
            not_valid: c.not_valid,
            arcep_thresholds: is_4g.then(|| thresholds(&c.counts)),
            peak_download_median_bps: q_sorted(&peak, 0.5),
            consistent_80_80_bps: consistent,
            consistent_80_80_ratio: match (consistent, c.target) {
                (Some(x), Some(t)) if t > 0.0 => Some(x / t),
                _ => None,
            },
            idle_latency_median_s: median(&c.idle),
            loaded_latency_median_s: median(&c.loaded),
            loss_ratio: ratio(c.counts.lost, c.counts.sent),
            counts: c.counts,
            quartier: c.quartier,
            building: c.building,
            agent: c.agent,
            access: c.access,
            kind: c.kind,
        }
    }

    /// Planned accesses no agent reported: zero coverage, not absent.
    fn add_unreported(&mut self) {
        let reported: BTreeSet<(&str, &str, &str)> = self
            .done
            .iter()
            .map(|a| (a.quartier.as_str(), a.building.as_str(), a.access.as_str()))
            .collect();
        let unreported: Vec<Acc> = self
            .planned
            .values()
            .filter(|p| {
                !reported.contains(&(p.quartier.as_str(), p.building.as_str(), p.access.as_str()))
            })
            .map(|p| Acc {
                quartier: p.quartier.clone(),
                building: p.building.clone(),
                access: p.access.clone(),
                kind: p.kind.clone(),
                ..Default::default()
            })
            .collect();
        for acc in unreported {
            let r = self.summarise(acc);
            self.done.push(r);
        }
    }

    /// The report, once every fact was fed.
    pub fn finish(mut self) -> Report {
        if let Some(c) = self.current.take() {
            let r = self.summarise(c);
            self.done.push(r);
        }
        // Accesses that sent nothing in the period still count what they missed.
        let silent: Vec<ScheduledAccess> =
            std::mem::take(&mut self.schedules).into_values().collect();
        for s in silent {
            let acc = Acc {
                quartier: s.quartier.clone(),
                building: s.building.clone(),
                agent: s.agent_id.clone(),
                access: s.access.clone(),
                kind: s.kind.clone(),
                schedule: Some(s),
                ..Default::default()
            };
            let r = self.summarise(acc);
            self.done.push(r);
        }
        self.add_unreported();
        let mut accesses = std::mem::take(&mut self.done);
        accesses.sort_by(|a, b| {
            (&a.quartier, &a.building, &a.agent, &a.access).cmp(&(
                &b.quartier,
                &b.building,
                &b.agent,
                &b.access,
            ))
        });
        let mut by_quartier: BTreeMap<(String, String), Vec<&AccessReport>> = BTreeMap::new();
        let mut by_kind: BTreeMap<String, Vec<&AccessReport>> = BTreeMap::new();
        for a in &accesses {
            by_quartier
                .entry((a.quartier.clone(), a.kind.clone()))
                .or_default()
                .push(a);
            by_kind.entry(a.kind.clone()).or_default().push(a);
        }
        let quartiers = by_quartier
            .into_iter()
            .map(|((q, k), v)| rollup(Some(q), k, &v))
            .collect();
        let total = by_kind
            .into_iter()
            .map(|(k, v)| rollup(None, k, &v))
            .collect();
        let scope = &self.request.scope;
        let mut data = self.data;
        data.agent_versions = self.versions.into_iter().collect();
        data.no_data = data.results == 0;
        Report {
            header: Header {
                report_format: REPORT_FORMAT,
                methodology_version: sonde_proto::METHODOLOGY_VERSION.to_string(),
                generated_at: self.request.generated_at,
                generator: format!("sonde-collector {}", env!("CARGO_PKG_VERSION")),
                from: scope.from,
                to: scope.to,
                quartier: scope.quartier.clone(),
                building: scope.building.clone(),
                time_zone: self.request.time_zone.name().to_string(),
                peak_hours: format!("{:02}:00-{:02}:00", PEAK_HOURS.0, PEAK_HOURS.1),
            },
            data,
            accesses,
            quartiers,
            total,
        }
    }
}

fn thresholds(c: &Counts) -> Thresholds {
    Thresholds {
        tests: c.with_goodput,
        mbps_3: ratio(c.thresholds[0], c.with_goodput),
        mbps_8: ratio(c.thresholds[1], c.with_goodput),
        mbps_30: ratio(c.thresholds[2], c.with_goodput),
    }
}

fn rollup(quartier: Option<String>, kind: String, accesses: &[&AccessReport]) -> Rollup {
    let mut counts = Counts::default();
    let mut coverage = Coverage::default();
    let mut compliant = (0u64, 0u64);
    let mut standings = Standings::default();
    let mut not_valid = NotValid::default();
    for a in accesses {
        *standings.accesses.entry(a.standing.as_str()).or_default() += 1;
        not_valid.add(&a.not_valid);
        let c = &a.counts;
        counts.met += c.met;
        counts.with_target += c.with_target;
        counts.with_goodput += c.with_goodput;
        counts.sent += c.sent;
        counts.lost += c.lost;
        for i in 0..3 {
            counts.thresholds[i] += c.thresholds[i];
        }
        coverage.scheduled += a.coverage.scheduled;
        coverage.run += a.coverage.run;
        coverage.valid += a.coverage.valid;
        coverage.buckets += a.coverage.buckets;
        coverage.buckets_covered += a.coverage.buckets_covered;
        if let Some(ok) = a.compliant {
            compliant.1 += 1;
            compliant.0 += u64::from(ok);
        }
    }
    coverage.time_covered_ratio = ratio(coverage.buckets_covered, coverage.buckets);
    let pick = |f: fn(&AccessReport) -> Option<f64>| -> Vec<f64> {
        accesses.iter().filter_map(|a| f(a)).collect()
    };
    let buildings: BTreeSet<(&str, &str)> = accesses
        .iter()
        .map(|a| (a.quartier.as_str(), a.building.as_str()))
        .collect();
    Rollup {
        accesses: accesses.len() as u64,
        buildings: buildings.len() as u64,
        coverage,
        download_median_bps: Spread::of(&pick(|a| a.download_bps.median)),
        upload_median_bps: Spread::of(&pick(|a| a.upload_bps.median)),
        target_met_ratio: ratio(counts.met, counts.with_target),
        compliant_ratio: ratio(compliant.0, compliant.1),
        standings,
        not_valid,
        arcep_thresholds: (kind == "4g").then(|| thresholds(&counts)),
        peak_download_median_bps: median(&pick(|a| a.peak_download_median_bps)),
        consistent_80_80_bps: quantile(&pick(|a| a.consistent_80_80_bps), 0.2),
        idle_latency_median_s: median(&pick(|a| a.idle_latency_median_s)),
        loaded_latency_median_s: median(&pick(|a| a.loaded_latency_median_s)),
        loss_ratio: ratio(counts.lost, counts.sent),
        quartier,
        kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_hours_start_at_19_local_in_zones_off_the_whole_hour() {
        let utc = |h, min| {
            Utc.with_ymd_and_hms(2026, 11, 2, h, min, 0)
                .single()
                .expect("time")
        };
        // (zone, UTC instant of 19:00 local on 2 November 2026)
        let cases = [
            (chrono_tz::Asia::Kolkata, utc(13, 30)),      // +5:30
            (chrono_tz::Pacific::Marquesas, utc(4, 30)),  // −9:30, the next UTC day
            (chrono_tz::Pacific::Chatham, utc(5, 15)),    // +13:45, summer time
            (chrono_tz::Australia::Lord_Howe, utc(8, 0)), // +11, summer time
            (chrono_tz::America::St_Johns, utc(22, 30)),  // −3:30, winter time
            (chrono_tz::Europe::Paris, utc(18, 0)),       // +1
        ];
        for (tz, seven_pm) in cases {
            let minute = chrono::Duration::minutes(1);
            assert!(!is_peak_hour(tz, seven_pm - minute), "{tz} 18:59");
            assert!(is_peak_hour(tz, seven_pm), "{tz} 19:00");
            let eleven_pm = seven_pm + chrono::Duration::hours(4);
            assert!(is_peak_hour(tz, eleven_pm - minute), "{tz} 22:59");
            assert!(!is_peak_hour(tz, eleven_pm), "{tz} 23:00");
        }
    }
}
