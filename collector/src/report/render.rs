//! Report formats: JSON (the [`Report`] as is), CSV (one row per access and roll-up,
//! plus the raw results of the scope) and a self-contained HTML page with SVG charts.

use super::{AccessReport, Report, Rollup, Spread, Standing, Thresholds};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sonde_store::{Fact, ReportScope, ReportSink, ScheduledAccess, Store, StoreError};
use std::fmt::Write as _;
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
}

impl Format {
    /// File extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Html => "html",
        }
    }

    /// HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
            Format::Html => "text/html; charset=utf-8",
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
            _ => Err(format!("format {s:?} is not csv, json or html")),
        }
    }
}

/// The report in `format` (for CSV, the summary only: see [`write_raw_csv`]).
pub fn render(report: &Report, format: Format) -> Vec<u8> {
    match format {
        Format::Json => {
            let mut v = serde_json::to_vec_pretty(report).unwrap_or_default();
            v.push(b'\n');
            v
        }
        Format::Csv => summary_csv(report),
        Format::Html => html(report).into_bytes(),
    }
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
        c.scheduled.to_string(),
        c.run.to_string(),
        c.valid.to_string(),
        num(c.time_covered_ratio),
    ];
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
        c.scheduled.to_string(),
        c.run.to_string(),
        c.valid.to_string(),
        num(c.time_covered_ratio),
    ];
    // Roll-ups: the spread of the accesses' medians.
    row.extend(spread_cells(r.download_median_bps));
    row.extend(spread_cells(r.upload_median_bps));
    row.push(String::new());
    row.push(num(r.target_met_ratio));
    row.push(num(r.compliant_ratio));
    row.extend(thresholds_cells(r.arcep_thresholds));
    row.push(num(r.peak_download_median_bps));
    row.push(num(r.consistent_80_80_bps));
    row.push(String::new());
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
];

struct RawCsv<W: Write> {
    w: csv::Writer<W>,
    tz: Tz,
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
                if sonde_method::report::is_peak_hour(self.tz, t) {
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
        tz,
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

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A rate for people: `1.02 Gb/s`, `153 Mb/s`.
pub fn rate(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(0.0) => "0".into(),
        Some(x) if x >= 1e9 => format!("{:.2} Gb/s", x / 1e9),
        Some(x) if x >= 1e6 => format!("{:.1} Mb/s", x / 1e6),
        Some(x) => format!("{:.0} kb/s", x / 1e3),
    }
}

fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{:.1} %", x * 100.0))
        .unwrap_or_else(|| "—".into())
}

fn ms(v: Option<f64>) -> String {
    v.map(|x| format!("{:.1} ms", x * 1e3))
        .unwrap_or_else(|| "—".into())
}

fn kind_name(kind: &str) -> String {
    match kind {
        "ftth" => "FTTH".into(),
        "4g" => "4G".into(),
        "wifi" => "Wi-Fi".into(),
        k => esc(k),
    }
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#1b1b1b;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc;padding-bottom:.2em}
.meta{color:#555;font-size:.9em}
table{border-collapse:collapse;width:100%;font-size:.85em;margin:.6em 0}
th,td{border:1px solid #ccc;padding:.25em .45em;text-align:right}
th{background:#f2f2f2}td.l,th.l{text-align:left}
.ok{color:#116329;font-weight:600}.ko{color:#a40e26;font-weight:600}.nd{color:#57606a;font-style:italic}
.cards{display:flex;flex-wrap:wrap;gap:1em}
.card{border:1px solid #ccc;border-radius:6px;padding:.6em 1em;min-width:15em}
.card b{font-size:1.3em}
.nodata{border:1px solid #d4a72c;background:#fff8c5;padding:.8em;border-radius:6px}
svg{max-width:100%;height:auto}svg text{font-family:inherit;font-size:11px}
@page{size:A4;margin:14mm}
@media print{body{margin:0;max-width:none}h2{break-after:avoid}.chart,.card,tr{break-inside:avoid}thead{display:table-header-group}}
";

/// Accesses drawn in the download chart; the table lists them all.
const CHART_ROWS: usize = 60;

fn download_chart(accesses: &[AccessReport]) -> String {
    let rows: Vec<&AccessReport> = accesses
        .iter()
        .filter(|a| a.download_bps.median.is_some())
        .take(CHART_ROWS)
        .collect();
    if rows.is_empty() {
        return "<p>No valid download figure in this period.</p>".into();
    }
    let max = rows
        .iter()
        .flat_map(|a| [a.download_bps.p90, a.target_down_bps])
        .flatten()
        .fold(0.0f64, f64::max)
        * 1.1;
    let (left, width, row_h) = (230.0, 640.0, 22.0);
    let height = 40.0 + row_h * rows.len() as f64;
    let x = |v: f64| left + width * v / max;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart\" role=\"img\" aria-label=\"Download per access\" viewBox=\"0 0 {w} {height}\" width=\"{w}\" xmlns=\"http://www.w3.org/2000/svg\">",
        w = left + width + 20.0
    );
    for i in 0..=4 {
        let v = max * i as f64 / 4.0;
        let _ = write!(
            s,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"10\" y2=\"{1:.1}\" stroke=\"#ddd\"/><text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3}</text>",
            x(v),
            height - 22.0,
            height - 8.0,
            esc(&rate(Some(v)))
        );
    }
    for (i, a) in rows.iter().enumerate() {
        chart_row(&mut s, a, 18.0 + row_h * i as f64, left, &x);
    }
    s.push_str("</svg>");
    if accesses.len() > rows.len() {
        let _ = write!(
            s,
            "<p class=\"meta\">The chart shows the first {} accesses with data; the table below lists all {}.</p>",
            rows.len(),
            accesses.len()
        );
    }
    s
}

/// One access's bar: P10 to P90, the median, the target.
fn chart_row(s: &mut String, a: &AccessReport, y: f64, left: f64, x: &dyn Fn(f64) -> f64) {
    let d = a.download_bps;
    let (p10, med, p90) = (
        d.p10.unwrap_or(0.0),
        d.median.unwrap_or(0.0),
        d.p90.unwrap_or(0.0),
    );
    let colour = match a.compliant {
        Some(true) => "#1a7f37",
        Some(false) => "#cf222e",
        None => "#57606a",
    };
    let _ = write!(
        s,
        "<text x=\"{lx:.1}\" y=\"{ty:.1}\" text-anchor=\"end\">{label}</text>\
         <rect x=\"{x10:.1}\" y=\"{ry:.1}\" width=\"{bw:.1}\" height=\"10\" fill=\"{colour}\" fill-opacity=\"0.35\"/>\
         <line x1=\"{xm:.1}\" x2=\"{xm:.1}\" y1=\"{ry:.1}\" y2=\"{rb:.1}\" stroke=\"{colour}\" stroke-width=\"3\"/>",
        lx = left - 6.0,
        ty = y + 9.0,
        label = esc(&format!("{} · {} ({})", a.building, a.access, a.kind)),
        x10 = x(p10),
        ry = y,
        bw = (x(p90) - x(p10)).max(1.0),
        xm = x(med),
        rb = y + 10.0,
    );
    if let Some(t) = a.target_down_bps {
        let _ = write!(
            s,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{2:.1}\" stroke=\"#000\" stroke-dasharray=\"3,2\"/>",
            x(t),
            y - 3.0,
            y + 13.0
        );
    }
}

fn compliance_chart(quartiers: &[Rollup]) -> String {
    let rows: Vec<&Rollup> = quartiers
        .iter()
        .filter(|r| r.target_met_ratio.is_some() || r.compliant_ratio.is_some())
        .collect();
    if rows.is_empty() {
        return "<p>No access with a target has valid tests in this period.</p>".into();
    }
    let (left, width, row_h) = (230.0, 560.0, 30.0);
    let height = 40.0 + row_h * rows.len() as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart\" role=\"img\" aria-label=\"Compliance per quartier\" viewBox=\"0 0 {w} {height}\" width=\"{w}\" xmlns=\"http://www.w3.org/2000/svg\">",
        w = left + width + 80.0
    );
    for i in 0..=4 {
        let xv = left + width * i as f64 / 4.0;
        let _ = write!(
            s,
            "<line x1=\"{xv:.1}\" x2=\"{xv:.1}\" y1=\"10\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{xv:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{} %</text>",
            height - 22.0,
            height - 8.0,
            i * 25
        );
    }
    for (i, r) in rows.iter().enumerate() {
        let y = 14.0 + row_h * i as f64;
        let met = r.target_met_ratio.unwrap_or(0.0);
        let comp = r.compliant_ratio.unwrap_or(0.0);
        let _ = write!(
            s,
            "<text x=\"{lx:.1}\" y=\"{ty:.1}\" text-anchor=\"end\">{label}</text>\
             <rect x=\"{left}\" y=\"{y:.1}\" width=\"{w1:.1}\" height=\"10\" fill=\"#0969da\"/>\
             <text x=\"{t1:.1}\" y=\"{ty1:.1}\">{p1}</text>\
             <rect x=\"{left}\" y=\"{y2:.1}\" width=\"{w2:.1}\" height=\"10\" fill=\"#8250df\"/>\
             <text x=\"{t2:.1}\" y=\"{ty2:.1}\">{p2}</text>",
            lx = left - 6.0,
            ty = y + 15.0,
            label = esc(&format!(
                "{} · {}",
                r.quartier.as_deref().unwrap_or("all"),
                r.kind
            )),
            w1 = width * met,
            t1 = left + width * met + 4.0,
            ty1 = y + 9.0,
            p1 = esc(&pct(r.target_met_ratio)),
            y2 = y + 12.0,
            w2 = width * comp,
            t2 = left + width * comp + 4.0,
            ty2 = y + 21.0,
            p2 = esc(&pct(r.compliant_ratio)),
        );
    }
    s.push_str("</svg><p class=\"meta\"><span style=\"color:#0969da\">■</span> tests meeting the target &nbsp; <span style=\"color:#8250df\">■</span> accesses whose median reaches it (of those judged)</p>");
    s
}

fn rollup_table(rows: &[Rollup]) -> String {
    let mut s = String::from(
        "<table><thead><tr><th class=\"l\">quartier</th><th class=\"l\">access</th><th>buildings</th><th>accesses</th>\
         <th>scheduled</th><th>run</th><th>valid</th><th>time covered</th>\
         <th>download median (P10–P90 of accesses)</th><th>tests meeting target</th>\
         <th>accesses compliant (of judged)</th><th>peak median</th><th>80/80</th>\
         <th>3 / 8 / 30 Mb/s</th><th>idle / loaded latency</th><th>loss</th></tr></thead><tbody>",
    );
    for r in rows {
        let c = &r.coverage;
        let th = r
            .arcep_thresholds
            .map(arcep_cell)
            .unwrap_or_else(|| "—".into());
        let _ = write!(
            s,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{} ({}–{})</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td></tr>",
            esc(r.quartier.as_deref().unwrap_or("all")),
            kind_name(&r.kind),
            r.buildings,
            r.accesses,
            c.scheduled,
            c.run,
            c.valid,
            pct(c.time_covered_ratio),
            rate(r.download_median_bps.median),
            rate(r.download_median_bps.p10),
            rate(r.download_median_bps.p90),
            pct(r.target_met_ratio),
            pct(r.compliant_ratio),
            rate(r.peak_download_median_bps),
            rate(r.consistent_80_80_bps),
            th,
            ms(r.idle_latency_median_s),
            ms(r.loaded_latency_median_s),
            pct(r.loss_ratio),
        );
    }
    s.push_str("</tbody></table>");
    s.push_str(DASH_LEGEND);
    s
}

fn access_table(rows: &[AccessReport]) -> String {
    let mut s = String::from(
        "<table><thead><tr><th class=\"l\">quartier</th><th class=\"l\">building</th><th class=\"l\">access</th>\
         <th>scheduled / run / valid</th><th>time covered</th><th>download P10 / median / P90</th>\
         <th>upload median</th><th>target</th><th>tests meeting target</th><th>reaches target</th>\
         <th>peak median</th><th>80/80</th><th>3 / 8 / 30 Mb/s</th><th>idle / loaded latency</th><th>loss</th>\
         <th class=\"l\">not valid, why</th></tr></thead><tbody>",
    );
    let any_planned = rows.iter().any(|a| a.coverage.planned);
    for a in rows {
        let c = &a.coverage;
        let verdict = match a.standing {
            Standing::Compliant => "<span class=\"ok\">yes</span>".to_string(),
            Standing::NotCompliant => "<span class=\"ko\">no</span>".to_string(),
            other => format!("<span class=\"nd\">{}</span>", other.label()),
        };
        let why = a.not_valid.summary().replace(';', ", ").replace('=', " ×");
        let th = a
            .arcep_thresholds
            .map(arcep_cell)
            .unwrap_or_else(|| "—".into());
        let _ = write!(
            s,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{} ({})</td><td>{} / {} / {}</td><td>{}</td>\
             <td>{} / {} / {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td><td class=\"l\">{}</td></tr>",
            esc(&a.quartier),
            esc(&a.building),
            esc(&a.access),
            kind_name(&a.kind),
            scheduled_cell(c, any_planned),
            c.run,
            c.valid,
            pct(c.time_covered_ratio),
            rate(a.download_bps.p10),
            rate(a.download_bps.median),
            rate(a.download_bps.p90),
            rate(a.upload_bps.median),
            rate(a.target_down_bps),
            pct(a.target_met_ratio),
            verdict,
            rate(a.peak_download_median_bps),
            rate(a.consistent_80_80_bps),
            th,
            ms(a.idle_latency_median_s),
            ms(a.loaded_latency_median_s),
            pct(a.loss_ratio),
            if why.is_empty() { "—".to_string() } else { esc(&why) },
        );
    }
    s.push_str("</tbody></table>");
    s.push_str(DASH_LEGEND);
    s.push_str(if any_planned {
        "<p class=\"meta\">Scheduled: what the plans in force called for (METHODOLOGY §7.2), \
         except counts marked * (no plan named the access: inferred from the interval of its \
         latest result).</p>"
    } else {
        "<p class=\"meta\">Scheduled: inferred from the interval of each access's latest \
         result (no plan named these accesses; METHODOLOGY §7.2).</p>"
    });
    s
}

/// An access's scheduled count, marked * when inferred in a report where plans give the
/// others.
fn scheduled_cell(c: &sonde_method::report::Coverage, any_planned: bool) -> String {
    if any_planned && !c.planned {
        format!("{}*", c.scheduled)
    } else {
        c.scheduled.to_string()
    }
}

/// ARCEP's shares, or why there are none: they come from single-connection tests.
fn arcep_cell(t: Thresholds) -> String {
    if t.tests == 0 {
        return "no single-connection test".into();
    }
    format!(
        "{} / {} / {} ({} tests)",
        pct(t.mbps_3),
        pct(t.mbps_8),
        pct(t.mbps_30),
        t.tests
    )
}

/// What a "—" in the tables means: said once under each table.
const DASH_LEGEND: &str = "<p class=\"meta\">—: no figure. A rate, a latency or a share needs at least one \
     valid test (the last column of the access table says why tests were not valid); a target, a share of tests \
     meeting it and a verdict need a target; 3 / 8 / 30 Mb/s is given for 4G accesses only, from their \
     single-connection tests (as ARCEP measures); \
     \"not valid, why\" shows — when every test that ran was valid.</p>";

fn html(report: &Report) -> String {
    let h = &report.header;
    let scope = match (&h.quartier, &h.building) {
        (Some(q), Some(b)) => format!("quartier {q}, building {b}"),
        (Some(q), None) => format!("quartier {q}"),
        (None, Some(b)) => format!("building {b}"),
        (None, None) => "all quartiers".into(),
    };
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>sonde compliance report — {scope_e}, {from} to {to}</title><style>{STYLE}</style></head><body>\
         <h1>Broadband compliance report</h1>\
         <p class=\"meta\">{scope_e} · {from} to {to} (UTC, end excluded) · peak hours {peak} {tz} · \
         methodology version {mv} · generated {gen} by {generator}</p>",
        scope_e = esc(&scope),
        from = h.from.format("%Y-%m-%d %H:%M"),
        to = h.to.format("%Y-%m-%d %H:%M"),
        peak = esc(&h.peak_hours),
        tz = esc(&h.time_zone),
        mv = esc(&h.methodology_version),
        gen = h.generated_at.format("%Y-%m-%d %H:%M:%S UTC"),
        generator = esc(&h.generator),
    );
    s.push_str(&summary(report));
    s.push_str("<h2>Download per building access</h2><p class=\"meta\">Bar: P10 to P90 of valid tests' IP-layer download; thick mark: median; dashed: target. Green: median reaches the target; red: it does not.</p>");
    s.push_str(&download_chart(&report.accesses));
    s.push_str("<h2>Compliance per quartier</h2>");
    s.push_str(&compliance_chart(&report.quartiers));
    s.push_str("<h2>Quartiers</h2>");
    s.push_str(&rollup_table(&report.quartiers));
    s.push_str("<h2>Whole scope</h2>");
    s.push_str(&rollup_table(&report.total));
    s.push_str("<h2>Building accesses</h2>");
    s.push_str(&access_table(&report.accesses));
    s.push_str(
        "<h2>Definitions</h2><p class=\"meta\">Every figure is defined in sonde's docs/METHODOLOGY.md \
         (§7 for this report) at the version stated above. Rates are IP-layer bit/s; ARCEP's thresholds \
         are compared with the TCP goodput. Roll-ups weigh each building access the same. \
         The raw results behind this report come with its CSV form; its integrity is checked with \
         <code>sonde-collector report verify</code>.</p></body></html>\n",
    );
    s
}

/// The headline card of one access kind: every access counted, by standing.
fn kind_card(s: &mut String, r: &Rollup) {
    let st = &r.standings;
    let compliant = st.count(Standing::Compliant);
    let not_demonstrated: Vec<String> = [
        Standing::NoValidTest,
        Standing::NoTestRun,
        Standing::NoResult,
    ]
    .into_iter()
    .filter(|x| st.count(*x) > 0)
    .map(|x| format!("{} {}", st.count(x), x.label()))
    .collect();
    let nd: u64 = [
        Standing::NoValidTest,
        Standing::NoTestRun,
        Standing::NoResult,
    ]
    .into_iter()
    .map(|x| st.count(x))
    .sum();
    let _ = write!(
        s,
        "<div class=\"card\"><div>{kind}</div><b>{compliant} of {n}</b> accesses reach their target (median), \
         {below} below it, {nd} not demonstrated{nd_why}, {nt} without a target; in {b} building{bs}<br>\
         {met} of valid tests meet it · median of accesses {median}<br>\
         coverage: {run} of {scheduled} scheduled tests run, {valid} valid, {covered} of the time covered</div>",
        kind = kind_name(&r.kind),
        n = r.accesses,
        below = st.count(Standing::NotCompliant),
        nd_why = if not_demonstrated.is_empty() {
            String::new()
        } else {
            format!(" ({})", not_demonstrated.join(", "))
        },
        nt = st.count(Standing::NoTarget),
        b = r.buildings,
        bs = if r.buildings == 1 { "" } else { "s" },
        met = pct(r.target_met_ratio),
        median = rate(r.download_median_bps.median),
        run = r.coverage.run,
        scheduled = r.coverage.scheduled,
        valid = r.coverage.valid,
        covered = pct(r.coverage.time_covered_ratio),
    );
}

/// The summary: no data said as such, a card per kind, what the data held.
fn summary(report: &Report) -> String {
    let mut s = String::new();
    s.push_str("<h2>Summary</h2>");
    if report.data.no_data {
        s.push_str(
            "<p class=\"nodata\"><b>No data.</b> No result of this scope was stored for this period.",
        );
        let scheduled: u64 = report.total.iter().map(|r| r.coverage.scheduled).sum();
        if scheduled > 0 {
            let _ = write!(
                s,
                " The schedules called for {scheduled} tests: none reached the collector."
            );
        }
        s.push_str("</p>");
    }
    s.push_str("<div class=\"cards\">");
    for r in &report.total {
        kind_card(&mut s, r);
    }
    s.push_str("</div>");
    let d = &report.data;
    let _ = write!(
        s,
        "<p class=\"meta\">{} results{}; agent versions: {}.</p>",
        d.results,
        match (d.first_result, d.last_result) {
            (Some(a), Some(b)) => format!(
                ", from {} to {}",
                a.format("%Y-%m-%d %H:%M"),
                b.format("%Y-%m-%d %H:%M")
            ),
            _ => String::new(),
        },
        if d.agent_versions.is_empty() {
            "none".to_string()
        } else {
            esc(&d.agent_versions.join(", "))
        }
    );
    s
}
