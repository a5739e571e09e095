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
mod judge;
mod planned;
mod time;

pub use facts::{Fact, ReportScope, ReportSink, ScheduledAccess};
pub use judge::{MinSample, Sample, TargetPeriod, MIN_SAMPLE};
pub use planned::{planned, PlannedAccess};
pub use time::{
    bucket_hours, buckets_between, clock_bucket, day_start, is_peak_hour, local_day, parse_period,
    LocalClock, LocalTime, COVER_BUCKET_S, PEAK_DAYS, PEAK_HOURS,
};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use judge::Segment;
use serde::Serialize;
use sonde_proto::stats::{median, quantile, quantile_select, quantile_sorted};
use std::collections::{BTreeMap, BTreeSet};

/// Version of the report format (the JSON layout and CSV columns). 2: each access's
/// `standing` and `not_valid` counts, each roll-up's `standings`, ARCEP's shares from
/// single-connection tests with their count. 3: target sub-periods, figures as ratios
/// to the target, manual probes counted apart, the minimum sample, the issuer and the
/// report key's id (CSV: columns appended at the end). 4: each access's RFC 9097
/// capacity (`capacity_tests`, `capacity_down_bps`, `capacity_up_bps`), a UDPST test's
/// capacity as its download and upload rate; the raw results' `capacity_down_bps`,
/// `capacity_up_bps` (CSV: columns appended at the end).
pub const REPORT_FORMAT: u32 = 4;
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

    /// The spread of `values`, reordered in place (selections, not a sort).
    fn select(values: &mut Vec<f64>) -> Spread {
        Spread {
            p10: select(values, 0.1),
            median: select(values, 0.5),
            p90: select(values, 0.9),
        }
    }
}

/// Quantile `q` (§4) of `values` without NaN, reordering them; `None` when empty.
fn select(values: &mut Vec<f64>, q: f64) -> Option<f64> {
    values.retain(|x| !x.is_nan());
    quantile_select(values, q)
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
    /// Of them, manual probes (no schedule: `sonde-agent probe`, imported or not).
    pub manual: u64,
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
    /// Valid tests with a target, but no sub-period reaches the minimum sample.
    InsufficientData,
}

impl Standing {
    /// Whether the access could not be judged for want of a valid test.
    pub fn not_demonstrated(self) -> bool {
        matches!(
            self,
            Standing::NoResult
                | Standing::NoTestRun
                | Standing::NoValidTest
                | Standing::InsufficientData
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
            Standing::InsufficientData => "insufficient data",
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
            Standing::InsufficientData => "insufficient_data",
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
    /// Download IP-layer rate of the valid tests, bit/s: each test's TCP figure, or a
    /// UDPST test's MaxIPLayerCapacity (§3).
    pub download_bps: Spread,
    /// Upload IP-layer rate of the valid tests, bit/s.
    pub upload_bps: Spread,
    /// Valid UDPST tests (RFC 9097 capacity, §10).
    pub capacity_tests: u64,
    /// Download MaxIPLayerCapacity of the valid UDPST tests, bit/s.
    pub capacity_down_bps: Spread,
    /// Upload MaxIPLayerCapacity of the valid UDPST tests, bit/s.
    pub capacity_up_bps: Spread,
    /// Download target of the latest valid test, bit/s.
    pub target_down_bps: Option<f64>,
    /// The period cut where the target changed, each stretch judged on its own.
    pub targets: Vec<TargetPeriod>,
    /// Share of valid tests with a target whose verdict was `met`.
    pub target_met_ratio: Option<f64>,
    /// Whether every judged target sub-period reaches its target, all hours and peak
    /// hours (within the tolerance); `None` when none could be judged.
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
    /// The 20th percentile of the peak-hour valid tests' download ÷ their target.
    pub consistent_80_80_ratio: Option<f64>,
    /// Median of the valid tests' download ÷ the target of each test.
    pub download_ratio_median: Option<f64>,
    /// Median of the peak-hour valid tests' download ÷ their target.
    pub peak_download_ratio_median: Option<f64>,
    /// Median idle round-trip time of the valid tests, seconds.
    pub idle_latency_median_s: Option<f64>,
    /// Median loaded (download) round-trip time of the valid tests, seconds.
    pub loaded_latency_median_s: Option<f64>,
    /// Idle probes lost over probes sent, valid tests pooled.
    pub loss_ratio: Option<f64>,
    /// Median RPM under download load of the valid tests that measured it (§11).
    pub rpm_down_median: Option<f64>,
    /// Median RPM under upload load.
    pub rpm_up_median: Option<f64>,
    /// The valid test with the lowest download rate (the earliest of equals), by id:
    /// its picture is `/api/v1/results/{id}/plot.svg`.
    pub worst_result_id: Option<String>,
    /// The valid test whose download rate is the median one (the lower median; the
    /// earliest of equals), by id.
    pub typical_result_id: Option<String>,
    /// The worst and typical tests' rows as the scan gave them `(handle, start)`, for
    /// their ids to be looked up ([`Report::picture_handles`]).
    #[serde(skip)]
    picture_rows: [Option<(i64, i64)>; 2],
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
    /// Spread of the accesses' download-to-target ratio medians: the roll-up's rate
    /// figure, comparable across targets.
    pub download_median_ratio: Spread,
    /// Median of the accesses' peak-hour ratio medians.
    pub peak_download_ratio_median: Option<f64>,
    /// The 20th percentile of the accesses' 80/80 ratios.
    pub consistent_80_80_ratio: Option<f64>,
    /// Share of the valid tests, pooled, whose verdict was `met`.
    pub target_met_ratio: Option<f64>,
    /// Accesses that reach their target, over accesses judged (§7.3).
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
    /// The least a verdict stands on.
    pub min_sample: MinSample,
    /// Who issues the report (`[report] issuer`).
    pub issuer: Option<String>,
    /// Id of the key that signs it: the first 16 hex digits of the SHA-256 of its
    /// public key.
    pub report_key_id: Option<String>,
    /// The transparency-log checkpoint it was built on (none: this collector keeps
    /// no log yet).
    pub checkpoint: Option<String>,
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
    manual: u64,
    valid: u64,
    down: Vec<f64>,
    up: Vec<f64>,
    capacity_tests: u64,
    cap_down: Vec<f64>,
    cap_up: Vec<f64>,
    peak: Vec<f64>,
    /// Each valid test's download ÷ its own target, all hours and peak hours.
    ratios: Vec<f64>,
    peak_ratios: Vec<f64>,
    idle: Vec<f64>,
    loaded: Vec<f64>,
    rpm_down: Vec<f64>,
    rpm_up: Vec<f64>,
    /// Each valid test with a download rate and an id or a handle.
    picks: Vec<Pick>,
    counts: Counts,
    not_valid: NotValid,
    /// Target sub-periods read, and the one being read.
    targets: Vec<TargetPeriod>,
    segment: Option<Segment>,
    /// Distinct buckets holding a valid test; results come in time order, so the last
    /// one seen is enough to count them.
    buckets: u64,
    bucket_hours: i64,
    last_bucket: Option<i64>,
}

/// Receives the scan and summarises access by access.
#[derive(Debug)]
pub struct Builder<'r> {
    request: &'r Request,
    schedules: BTreeMap<(String, String), ScheduledAccess>,
    /// Every access the scan named, as it named them.
    known: Vec<ScheduledAccess>,
    current: Option<Acc>,
    done: Vec<AccessReport>,
    data: DataSummary,
    versions: BTreeSet<String>,
    planned: BTreeMap<(String, String, String), PlannedAccess>,
    clock: LocalClock,
}

impl ReportSink for Builder<'_> {
    fn accesses(&mut self, accesses: Vec<ScheduledAccess>) {
        self.known.extend(accesses.iter().cloned());
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
        let at = self.clock.read(f.started_at_ns);
        let start = self.span_start(self.current.as_ref().and_then(|c| c.schedule.as_ref()));
        let Some(c) = self.current.as_mut() else {
            return Ok(());
        };
        c.recorded += 1;
        if let Some(r) = f.reason.filter(|r| SKIP_REASONS.contains(r)) {
            *c.not_valid.skipped.entry(r.to_string()).or_default() += 1;
            return Ok(());
        }
        c.run += 1;
        if f.interval_s.is_none() {
            c.manual += 1;
        }
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
            c.add_valid(f, at, t, start);
        }
        Ok(())
    }
}

/// Hours of the time-covered buckets of an access: one, or its interval when longer;
/// a planned access's interval is its plan's.
fn bucket_len(schedule: Option<&ScheduledAccess>, plan: Option<&PlannedAccess>) -> i64 {
    bucket_hours(plan.map_or_else(|| schedule.and_then(|s| s.interval_s), |p| Some(p.every_s)))
}

/// A valid test that may be pictured: its download rate, start, and its id or the
/// store's handle of its row.
#[derive(Debug, Clone)]
struct Pick {
    down: f64,
    at: i64,
    id: Option<String>,
    handle: Option<i64>,
}

/// The worst and the typical test of an access (§7.3): the lowest download rate, and
/// the lower median one, the earliest of equals.
fn pictures(picks: &mut [Pick]) -> [Option<Pick>; 2] {
    picks.sort_by(|a, b| a.down.total_cmp(&b.down).then(a.at.cmp(&b.at)));
    let worst = picks.first().cloned();
    let typical = picks.get(picks.len().saturating_sub(1) / 2).cloned();
    [worst, typical]
}

impl Report {
    /// The rows, `(handle, start)`, of the pictured tests whose ids the scan did not
    /// read: look them up (`ReportSource::result_ids`) and give them back to
    /// [`Report::set_pictures`].
    pub fn picture_handles(&self) -> Vec<(i64, i64)> {
        self.accesses
            .iter()
            .flat_map(|a| {
                [
                    a.picture_rows[0].filter(|_| a.worst_result_id.is_none()),
                    a.picture_rows[1].filter(|_| a.typical_result_id.is_none()),
                ]
            })
            .flatten()
            .collect()
    }

    /// Sets the pictured tests' ids: `ids[i]` is that of `rows[i]`.
    pub fn set_pictures(&mut self, rows: &[(i64, i64)], ids: &[Option<String>]) {
        let found: BTreeMap<(i64, i64), &Option<String>> = rows.iter().copied().zip(ids).collect();
        let look =
            |row: Option<(i64, i64)>| row.and_then(|r| found.get(&r).and_then(|id| (*id).clone()));
        for a in &mut self.accesses {
            if a.worst_result_id.is_none() {
                a.worst_result_id = look(a.picture_rows[0]);
            }
            if a.typical_result_id.is_none() {
                a.typical_result_id = look(a.picture_rows[1]);
            }
        }
    }
}

fn ratio(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

impl Acc {
    /// Adds a valid test: its time bucket, target sub-period, figures, target verdict
    /// and probes.
    fn add_valid(&mut self, f: &Fact<'_>, at: LocalTime, t: DateTime<Utc>, start: DateTime<Utc>) {
        self.valid += 1;
        let bucket = at.bucket(self.bucket_hours);
        if self.last_bucket != Some(bucket) {
            self.buckets += 1;
            self.last_bucket = Some(bucket);
        }
        // A new target starts a sub-period (§7.3); a removed one too.
        let target = f.target_down_bps;
        match self.segment.take() {
            Some(seg) if seg.target() != target => {
                self.targets.push(seg.close(t));
                self.segment = Some(Segment::new(target, t));
            }
            Some(seg) => self.segment = Some(seg),
            None => self.segment = Some(Segment::new(target, start)),
        }
        if let Some(seg) = self.segment.as_mut() {
            seg.add(at, f.down_bps, f.interval_s.is_some());
        }
        let peak = at.peak();
        if let Some(d) = f.down_bps {
            self.down.push(d);
            if f.id.is_some() || f.handle.is_some() {
                self.picks.push(Pick {
                    down: d,
                    at: f.started_at_ns,
                    id: f.id.map(str::to_string),
                    handle: f.handle,
                });
            }
            if peak {
                self.peak.push(d);
            }
            if let Some(tg) = target.filter(|tg| *tg > 0.0) {
                self.ratios.push(d / tg);
                if peak {
                    self.peak_ratios.push(d / tg);
                }
            }
        }
        if let Some(u) = f.up_bps {
            self.up.push(u);
        }
        if f.cap_down_bps.is_some() || f.cap_up_bps.is_some() {
            self.capacity_tests += 1;
        }
        self.cap_down.extend(f.cap_down_bps);
        self.cap_up.extend(f.cap_up_bps);
        // ARCEP's shares: single-connection tests only, as ARCEP measures.
        if let Some(g) = f.down_goodput_bps.filter(|_| f.streams == Some(1)) {
            self.counts.with_goodput += 1;
            for (n, th) in self.counts.thresholds.iter_mut().zip(ARCEP_THRESHOLDS_BPS) {
                if g >= th {
                    *n += 1;
                }
            }
        }
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
        self.rpm_down.extend(f.rpm_down);
        self.rpm_up.extend(f.rpm_up);
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
        let plan = self.planned.get(&(
            f.quartier.to_string(),
            f.building.to_string(),
            f.access.to_string(),
        ));
        let bucket_hours = bucket_len(schedule.as_ref(), plan);
        self.current = Some(Acc {
            schedule,
            bucket_hours,
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
            known: Vec::new(),
            current: None,
            done: Vec::new(),
            data: DataSummary::default(),
            versions: BTreeSet::new(),
            planned: BTreeMap::new(),
            clock: LocalClock::new(request.time_zone),
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

    /// The accesses the scan named, with their schedules.
    pub fn schedules(&self) -> impl Iterator<Item = &ScheduledAccess> {
        self.known.iter()
    }

    /// The planned accesses it was given ([`Builder::with_plan`]).
    pub fn plan(&self) -> impl Iterator<Item = &PlannedAccess> {
        self.planned.values()
    }

    /// This builder and `other`, fed other accesses of the same scan (a
    /// [`ReportSink`] per part of a parallel scan), as one: finish the result.
    pub fn merge(mut self, mut other: Builder<'r>) -> Self {
        for b in [&mut self, &mut other] {
            if let Some(c) = b.current.take() {
                let r = b.summarise(c);
                b.done.push(r);
            }
        }
        self.done.append(&mut other.done);
        self.schedules.append(&mut other.schedules);
        self.known.append(&mut other.known);
        self.versions.append(&mut other.versions);
        let (a, b) = (&mut self.data, &other.data);
        a.results += b.results;
        a.first_result = a.first_result.into_iter().chain(b.first_result).min();
        a.last_result = a.last_result.into_iter().chain(b.last_result).max();
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

    /// The access's coverage (§7.2): scheduled from the plans in force or its interval,
    /// and buckets of the local clock over its span.
    fn coverage(&self, c: &Acc) -> Coverage {
        let start = self.span_start(c.schedule.as_ref());
        // The span to the nanosecond: whole seconds would shift a bucket's edge.
        let (start_ns, end_ns) = (nanos(start), nanos(self.span_end()));
        let span_ns = (end_ns - start_ns).max(0);
        let interval = c.schedule.as_ref().and_then(|s| s.interval_s);
        let slots = match interval {
            Some(i) if i > 0.0 => (span_ns as f64 / 1e9 / i).floor() as u64,
            _ => 0,
        };
        let tz = self.request.time_zone;
        let plan = self
            .planned
            .get(&(c.quartier.clone(), c.building.clone(), c.access.clone()));
        let hours = bucket_len(c.schedule.as_ref(), plan);
        let buckets = buckets_between(tz, start_ns, end_ns, hours).max(c.buckets);
        Coverage {
            scheduled: plan.map_or(slots, |p| p.scheduled).max(c.recorded),
            planned: plan.is_some(),
            run: c.run,
            manual: c.manual,
            valid: c.valid,
            buckets_covered: c.buckets,
            buckets,
            time_covered_ratio: ratio(c.buckets, buckets),
        }
    }

    fn summarise(&self, mut c: Acc) -> AccessReport {
        let coverage = self.coverage(&c);
        if let Some(seg) = c.segment.take() {
            c.targets.push(seg.close(self.span_end()));
        }
        let target = c.targets.last().and_then(|t| t.target_down_bps);
        let (compliant, standing) = judge(&c);
        let is_4g = c.kind == "4g";
        let [worst, typical] = pictures(&mut c.picks);
        let id = |p: &Option<Pick>| p.as_ref().and_then(|p| p.id.clone());
        let row = |p: &Option<Pick>| p.as_ref().and_then(|p| Some((p.handle?, p.at)));
        let picture_rows = [row(&worst), row(&typical)];
        let (worst_result_id, typical_result_id) = (id(&worst), id(&typical));
        AccessReport {
            coverage,
            download_bps: Spread::select(&mut c.down),
            upload_bps: Spread::select(&mut c.up),
            capacity_tests: c.capacity_tests,
            capacity_down_bps: Spread::select(&mut c.cap_down),
            capacity_up_bps: Spread::select(&mut c.cap_up),
            target_down_bps: target,
            targets: c.targets,
            target_met_ratio: ratio(c.counts.met, c.counts.with_target),
            compliant,
            standing,
            not_valid: c.not_valid,
            arcep_thresholds: is_4g.then(|| thresholds(&c.counts)),
            peak_download_median_bps: select(&mut c.peak, 0.5),
            consistent_80_80_bps: select(&mut c.peak, 0.2),
            consistent_80_80_ratio: select(&mut c.peak_ratios, 0.2),
            download_ratio_median: select(&mut c.ratios, 0.5),
            peak_download_ratio_median: select(&mut c.peak_ratios, 0.5),
            idle_latency_median_s: select(&mut c.idle, 0.5),
            loaded_latency_median_s: select(&mut c.loaded, 0.5),
            loss_ratio: ratio(c.counts.lost, c.counts.sent),
            rpm_down_median: select(&mut c.rpm_down, 0.5),
            rpm_up_median: select(&mut c.rpm_up, 0.5),
            worst_result_id,
            typical_result_id,
            picture_rows,
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
                peak_hours: format!("{:02}:00-{:02}:00 {PEAK_DAYS}", PEAK_HOURS.0, PEAK_HOURS.1),
                min_sample: MIN_SAMPLE,
                issuer: None,
                report_key_id: None,
                checkpoint: None,
            },
            data,
            accesses,
            quartiers,
            total,
        }
    }
}

/// An access's verdict and standing (§7.3) from its closed target sub-periods:
/// compliant when every judged one is, not compliant when one is not; sub-periods
/// without a target or below the minimum sample are not judged.
fn judge(c: &Acc) -> (Option<bool>, Standing) {
    let targeted = c.targets.iter().filter(|t| t.target_down_bps.is_some());
    let judged: Vec<bool> = targeted.clone().filter_map(|t| t.compliant).collect();
    if !judged.is_empty() {
        let ok = judged.iter().all(|x| *x);
        let standing = if ok {
            Standing::Compliant
        } else {
            Standing::NotCompliant
        };
        return (Some(ok), standing);
    }
    let standing = if c.valid > 0 && targeted.count() == 0 {
        Standing::NoTarget
    } else if c.valid > 0 {
        Standing::InsufficientData
    } else if c.run > 0 {
        // Tests ran and none gave a valid download.
        Standing::NoValidTest
    } else if c.recorded > 0 {
        Standing::NoTestRun
    } else {
        Standing::NoResult
    };
    (None, standing)
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
        coverage.manual += a.coverage.manual;
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
        download_median_ratio: Spread::of(&pick(|a| a.download_ratio_median)),
        peak_download_ratio_median: median(&pick(|a| a.peak_download_ratio_median)),
        consistent_80_80_ratio: quantile(&pick(|a| a.consistent_80_80_ratio), 0.2),
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
