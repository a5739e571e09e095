//! Report formats: JSON (the [`Report`] as is), CSV (one row per access and roll-up,
//! plus the raw results of the scope), a self-contained HTML page with SVG charts in
//! French or English ([`html`]), and that page printed to PDF by headless Chromium.

mod chart;
mod html;
mod pdf;
mod words;

pub use words::Lang;

use super::{AccessReport, Report, Rollup, Spread, Thresholds};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sonde_store::{Fact, ReportScope, ReportSink, ScheduledAccess, Store, StoreError};
use std::io::Write;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// CSV: the summary, and the raw results beside it.
    Csv,
    /// JSON.
    Json,
    /// A self-contained HTML page.
    Html,
    /// The HTML page printed to PDF (A4) by headless Chromium.
    Pdf,
}

impl Format {
    /// File extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Html => "html",
            Format::Pdf => "pdf",
        }
    }

    /// HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
            Format::Html => "text/html; charset=utf-8",
            Format::Pdf => "application/pdf",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            "html" => Ok(Format::Html),
            "pdf" => Ok(Format::Pdf),
            _ => Err(format!("format {s:?} is not csv, json, html or pdf")),
        }
    }
}

/// The report in `format`, pages in `lang` (for CSV, the summary only: see
/// [`write_raw_csv`]). A PDF needs Chromium: its absence or failure is the error.
pub fn render(report: &Report, format: Format, lang: Lang) -> Result<Vec<u8>, String> {
    Ok(match format {
        Format::Json => {
            let mut v = serde_json::to_vec_pretty(report).unwrap_or_default();
            v.push(b'\n');
            v
        }
        Format::Csv => summary_csv(report),
        Format::Html => html::html(report, lang).into_bytes(),
        Format::Pdf => pdf::print(&html::html(report, lang))?,
    })
}

/// The header fields the manifest repeats, so a signed report says what it covers.
pub fn manifest_info(report: &Report) -> serde_json::Value {
    serde_json::json!({
        "header": report.header,
        "data": report.data,
    })
}

fn num(v: Option<f64>) -> String {
    v.map(|x| format!("{x}")).unwrap_or_default()
}

const SUMMARY_COLUMNS: &[&str] = &[
    "level",
    "quartier",
    "building",
    "agent",
    "access",
    "kind",
    "accesses",
    "buildings",
    "tests_scheduled",
    "tests_run",
    "tests_valid",
    "time_covered_ratio",
    "download_p10_bps",
    "download_median_bps",
    "download_p90_bps",
    "upload_p10_bps",
    "upload_median_bps",
    "upload_p90_bps",
    "target_down_bps",
    "target_met_ratio",
    "compliant",
    "arcep_3mbps_ratio",
    "arcep_8mbps_ratio",
    "arcep_30mbps_ratio",
    "peak_download_median_bps",
    "consistent_80_80_bps",
    "consistent_80_80_ratio",
    "idle_latency_median_s",
    "loaded_latency_median_s",
    "loss_ratio",
    "standing",
    "not_valid",
    "arcep_tests",
    "tests_manual",
    "download_ratio_median",
    "peak_download_ratio_median",
    "target_periods",
    "capacity_tests",
    "capacity_down_median_bps",
    "capacity_up_median_bps",
    "rpm_down_median",
    "rpm_up_median",
    "worst_result_id",
    "typical_result_id",
];

fn thresholds_cells(t: Option<Thresholds>) -> [String; 3] {
    match t {
        Some(t) => [num(t.mbps_3), num(t.mbps_8), num(t.mbps_30)],
        None => Default::default(),
    }
}

/// The single-connection tests behind ARCEP's shares (4G only).
fn arcep_tests(t: Option<Thresholds>) -> String {
    t.map(|t| t.tests.to_string()).unwrap_or_default()
}

/// Scheduled, run, valid, time covered.
fn coverage_cells(c: &sonde_method::report::Coverage) -> [String; 4] {
    [
        c.scheduled.to_string(),
        c.run.to_string(),
        c.valid.to_string(),
        num(c.time_covered_ratio),
    ]
}

fn spread_cells(s: Spread) -> [String; 3] {
    [num(s.p10), num(s.median), num(s.p90)]
}

fn summary_csv(report: &Report) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(SUMMARY_COLUMNS);
    for a in &report.accesses {
        let _ = w.write_record(access_row(a));
    }
    for (level, rollups) in [("quartier", &report.quartiers), ("scope", &report.total)] {
        for r in rollups {
            let _ = w.write_record(rollup_row(level, r));
        }
    }
    w.into_inner().unwrap_or_default()
}

/// One access's row of the summary CSV ([`SUMMARY_COLUMNS`]).
fn access_row(a: &AccessReport) -> Vec<String> {
    let c = &a.coverage;
    let mut row = vec![
        "access".to_string(),
        a.quartier.clone(),
        a.building.clone(),
        a.agent.clone(),
        a.access.clone(),
        a.kind.clone(),
        "1".into(),
        "1".into(),
    ];
    row.extend(coverage_cells(c));
    row.extend(spread_cells(a.download_bps));
    row.extend(spread_cells(a.upload_bps));
    row.push(num(a.target_down_bps));
    row.push(num(a.target_met_ratio));
    row.push(a.compliant.map(|b| b.to_string()).unwrap_or_default());
    row.extend(thresholds_cells(a.arcep_thresholds));
    row.push(num(a.peak_download_median_bps));
    row.push(num(a.consistent_80_80_bps));
    row.push(num(a.consistent_80_80_ratio));
    row.push(num(a.idle_latency_median_s));
    row.push(num(a.loaded_latency_median_s));
    row.push(num(a.loss_ratio));
    row.push(a.standing.as_str().to_string());
    row.push(a.not_valid.summary());
    row.push(arcep_tests(a.arcep_thresholds));
    row.push(c.manual.to_string());
    row.push(num(a.download_ratio_median));
    row.push(num(a.peak_download_ratio_median));
    // Each target stretch: `target@from..to=verdict` (`-` for none), `;`-joined.
    row.push(
        a.targets
            .iter()
            .map(|t| {
                format!(
                    "{}@{}..{}={}",
                    t.target_down_bps.map_or("-".into(), |x| x.to_string()),
                    t.from.to_rfc3339(),
                    t.to.to_rfc3339(),
                    match t.compliant {
                        Some(true) => "compliant",
                        Some(false) => "not_compliant",
                        None if t.target_down_bps.is_none() => "no_target",
                        None => "insufficient_data",
                    }
                )
            })
            .collect::<Vec<_>>()
            .join(";"),
    );
    row.push(a.capacity_tests.to_string());
    row.push(num(a.capacity_down_bps.median));
    row.push(num(a.capacity_up_bps.median));
    row.push(num(a.rpm_down_median));
    row.push(num(a.rpm_up_median));
    row.push(a.worst_result_id.clone().unwrap_or_default());
    row.push(a.typical_result_id.clone().unwrap_or_default());
    row
}

/// One roll-up's row of the summary CSV: `level` is `quartier` or `scope`.
fn rollup_row(level: &str, r: &Rollup) -> Vec<String> {
    let c = &r.coverage;
    let mut row = vec![
        level.to_string(),
        r.quartier.clone().unwrap_or_default(),
        String::new(),
        String::new(),
        String::new(),
        r.kind.clone(),
        r.accesses.to_string(),
        r.buildings.to_string(),
    ];
    row.extend(coverage_cells(c));
    // Roll-ups: the spread of the accesses' medians.
    row.extend(spread_cells(r.download_median_bps));
    row.extend(spread_cells(r.upload_median_bps));
    row.push(String::new());
    row.push(num(r.target_met_ratio));
    row.push(num(r.compliant_ratio));
    row.extend(thresholds_cells(r.arcep_thresholds));
    row.push(num(r.peak_download_median_bps));
    row.push(num(r.consistent_80_80_bps));
    row.push(num(r.consistent_80_80_ratio));
    row.push(num(r.idle_latency_median_s));
    row.push(num(r.loaded_latency_median_s));
    row.push(num(r.loss_ratio));
    // Roll-ups: accesses per standing, `standing=n;…`.
    row.push(
        r.standings
            .accesses
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect::<Vec<_>>()
            .join(";"),
    );
    row.push(r.not_valid.summary());
    row.push(arcep_tests(r.arcep_thresholds));
    row.push(c.manual.to_string());
    // Roll-ups: the median of the accesses' ratios.
    row.push(num(r.download_median_ratio.median));
    row.push(num(r.peak_download_ratio_median));
    // Target periods, capacity, responsiveness and pictures are per access.
    row.extend(std::iter::repeat_n(String::new(), 8));
    row
}

/// Columns of the raw results file.
pub const RAW_COLUMNS: &[&str] = &[
    "id",
    "quartier",
    "building",
    "agent",
    "access",
    "kind",
    "started_at",
    "peak_hour",
    "outcome",
    "reason",
    "flags",
    "download_bps",
    "upload_bps",
    "download_goodput_bps",
    "target_down_bps",
    "verdict_down",
    "idle_latency_median_s",
    "loaded_latency_median_s",
    "probes_sent",
    "probes_received",
    "agent_version",
    "streams",
    "interval_s",
    "capacity_down_bps",
    "capacity_up_bps",
    "rpm_down",
    "rpm_up",
];

struct RawCsv<W: Write> {
    w: csv::Writer<W>,
    clock: sonde_method::report::LocalClock,
    rows: u64,
}

impl<W: Write> ReportSink for RawCsv<W> {
    fn accesses(&mut self, _: Vec<ScheduledAccess>) {}

    fn fact(&mut self, f: &Fact<'_>) -> Result<(), String> {
        let t: DateTime<Utc> = DateTime::from_timestamp_nanos(f.started_at_ns);
        let opt_i = |v: Option<i64>| v.map(|x| x.to_string()).unwrap_or_default();
        self.rows += 1;
        self.w
            .write_record([
                f.id.unwrap_or(""),
                f.quartier,
                f.building,
                f.agent_id,
                f.access,
                f.kind,
                &t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                if self.clock.read(f.started_at_ns).peak() {
                    "true"
                } else {
                    "false"
                },
                f.outcome,
                f.reason.unwrap_or(""),
                f.flags,
                &num(f.down_bps),
                &num(f.up_bps),
                &num(f.down_goodput_bps),
                &num(f.target_down_bps),
                f.verdict_down.unwrap_or(""),
                &num(f.idle_s),
                &num(f.loaded_s),
                &opt_i(f.probes_sent),
                &opt_i(f.probes_received),
                f.version,
                &opt_i(f.streams),
                &num(f.interval_s),
                &num(f.cap_down_bps),
                &num(f.cap_up_bps),
                &num(f.rpm_down),
                &num(f.rpm_up),
            ])
            .map_err(|e| format!("writing the raw results: {e}"))
    }
}

/// Streams the raw results of `scope` as CSV into `out`; returns the rows written.
pub fn write_raw_csv<W: Write>(
    store: &dyn Store,
    scope: &ReportScope,
    tz: Tz,
    out: W,
) -> Result<u64, StoreError> {
    let mut sink = RawCsv {
        w: csv::Writer::from_writer(out),
        clock: sonde_method::report::LocalClock::new(tz),
        rows: 0,
    };
    sink.w
        .write_record(RAW_COLUMNS)
        .map_err(|e| StoreError::Query(format!("writing the raw results: {e}")))?;
    store.report_scan(scope, true, &mut sink)?;
    sink.w
        .flush()
        .map_err(|e| StoreError::Query(format!("writing the raw results: {e}")))?;
    Ok(sink.rows)
}
