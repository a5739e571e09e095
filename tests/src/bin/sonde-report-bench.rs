//! `sonde-report-bench`: time and peak memory of a compliance report over millions of
//! stored results. A benchmark, not a test: it prints figures and asserts nothing
//! about time.
//!
//! For each size it makes a fresh SQLite store with the collector's schema and loads
//! its report rows (`report_facts`, what `report` reads: one row per result, as ingest
//! writes it) and its accesses directly, in bulk: going through QUIC ingest would take
//! hours and the raw JSON records (which the summary never reads) tens of gigabytes.
//! Then it runs the same code as `sonde-collector report --format json` over the whole
//! period and reports the time and the process's peak resident memory during the
//! report (VmHWM, reset before it starts).
//!
//! Usage: cargo run --release -p sonde-e2e --bin sonde-report-bench --
//!        [--sizes 1000000,10000000] [--agents N] [--json]

use chrono::{TimeZone, Utc};
use rusqlite::params;
use sonde_collector::report::{self, render};
use sonde_e2e::pipeline::scratch;
use sonde_store::ReportScope;
use sonde_store_sqlite::SqliteStore;
use std::time::Instant;

/// A compliance report over millions of results: time, results/s and peak memory.
#[derive(Debug, clap::Parser)]
#[command(name = "sonde-report-bench", version)]
struct Args {
    /// Store sizes to report over (results), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000000,10000000")]
    sizes: Vec<u64>,
    /// Agents the results are spread over.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    agents: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// A small deterministic generator (xorshift64*), so runs compare.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// CPU seconds this process has used (user and system, every thread), from
/// /proc/self/stat.
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command (which may hold spaces), 1-based: utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    // `rest` starts at field 3 (the state).
    let ticks = field(14 - 3) + field(15 - 3);
    ticks as f64 / 100.0
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Loads `n` results for `agents` agents (an FTTH and a 4G access each, one test an
/// hour each) into a new store; returns it and the period they span.
// Long because it writes the synthetic dataset in one pass of one transaction: its
// row layout is easiest to check in one place.
fn load(n: u64, agents: u64) -> (SqliteStore, std::path::PathBuf, ReportScope) {
    let dir = scratch(&format!("report-bench-{n}"));
    let path = dir.join("collector.sqlite");
    drop(SqliteStore::open(&path).expect("schema"));
    let mut conn = rusqlite::Connection::open(&path).expect("open");
    conn.pragma_update(None, "synchronous", "OFF")
        .expect("pragma");
    let per_access = n.div_ceil(agents * 2);
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let ns0 = t0.timestamp_nanos_opt().unwrap_or(0);
    let hour: i64 = 3_600_000_000_000;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let tx = conn.transaction().expect("tx");
    let mut written = 0u64;
    {
        let mut fact = tx
            .prepare(
                "INSERT INTO report_facts (access_id, started_at, result_rowid, outcome, reason,
                     flags, down_bps, up_bps, down_goodput_bps, target_down_bps, verdict_down,
                     idle_s, loaded_s, probes_sent, probes_received, version, streams,
                     interval_s)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                     8, 3600.0)",
            )
            .expect("prepare");
        let mut access = tx
            .prepare(
                "INSERT INTO report_accesses (agent_id, access, quartier, building, kind,
                     first_at, last_at, interval_s) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 3600.0)
                 RETURNING id",
            )
            .expect("prepare");
        'all: for a in 0..agents {
            let quartier = format!("q{:02}", a % 20);
            let building = format!("b{a:04}");
            let agent = format!("agent-{a:04}");
            for (name, kind, target) in [("fibre", "ftth", 1e9), ("mobile", "4g", 150e6)] {
                let access_id: i64 = access
                    .query_row(
                        params![
                            agent,
                            name,
                            quartier,
                            building,
                            kind,
                            ns0,
                            ns0 + (per_access as i64 - 1) * hour
                        ],
                        |row| row.get(0),
                    )
                    .expect("access");
                for i in 0..per_access {
                    if written == n {
                        break 'all;
                    }
                    written += 1;
                    let down = target * (0.6 + 0.5 * rng.next());
                    let failed = rng.next() < 0.02;
                    fact.execute(params![
                        access_id,
                        ns0 + i as i64 * hour + (rng.next() * 6e11) as i64,
                        written as i64,
                        if failed { "failed" } else { "ok" },
                        if failed { Some("timeout") } else { None },
                        "",
                        (!failed).then_some(down),
                        (!failed).then_some(down / 4.0),
                        (!failed).then_some(down * 0.95),
                        target,
                        if failed {
                            "inconclusive"
                        } else if down >= target * 0.98 {
                            "met"
                        } else {
                            "not_met"
                        },
                        (!failed).then_some(0.005 + 0.02 * rng.next()),
                        (!failed).then_some(0.02 + 0.1 * rng.next()),
                        50,
                        50 - (rng.next() * 2.0) as i64,
                        "0.1.0",
                    ])
                    .expect("fact");
                }
            }
        }
    }
    tx.commit().expect("commit");
    drop(conn);
    let store = SqliteStore::open(&path).expect("open store");
    let scope = ReportScope {
        quartier: None,
        building: None,
        from: t0,
        to: t0 + chrono::Duration::hours(per_access as i64 + 1),
    };
    (store, dir, scope)
}

// Long because it is the benchmark's script, read top to bottom: each size loaded,
// reported, timed and measured, then the table.
fn main() {
    let args = <Args as clap::Parser>::parse();
    let mut rows = Vec::new();
    for &n in &args.sizes {
        eprintln!("loading {n} results…");
        let started = Instant::now();
        let (store, dir, scope) = load(n, args.agents);
        let load_s = started.elapsed().as_secs_f64();
        let db_bytes = std::fs::metadata(dir.join("collector.sqlite"))
            .map(|m| m.len())
            .unwrap_or(0);
        // Reset the peak-RSS mark, so VmHWM is the report's own peak.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let rss_before = status_kb("VmRSS:");
        eprintln!("reporting over {n} results…");
        let started = Instant::now();
        let request = report::Request {
            scope,
            time_zone: chrono_tz::Europe::Paris,
            generated_at: Utc::now(),
        };
        if std::env::var_os("SCAN_ONLY").is_some() {
            struct Count(u64);
            impl sonde_store::ReportSink for Count {
                fn accesses(&mut self, _: Vec<sonde_store::ScheduledAccess>) {}
                fn fact(&mut self, _: &sonde_store::Fact<'_>) -> Result<(), String> {
                    self.0 += 1;
                    Ok(())
                }
            }
            let mut c = Count(0);
            use sonde_store::ReportSource;
            store
                .report_scan(&request.scope, false, &mut c)
                .expect("scan");
            eprintln!(
                "scan only: {} rows in {:.2} s",
                c.0,
                started.elapsed().as_secs_f64()
            );
        }
        let started = Instant::now();
        let cpu0 = cpu_s();
        let r = report::build(&store, &request).expect("report");
        let body = render::render(&r, render::Format::Json, render::Lang::En).unwrap_or_default();
        let report_s = started.elapsed().as_secs_f64();
        let cpu = cpu_s() - cpu0;
        let peak = status_kb("VmHWM:");
        let row = serde_json::json!({
            "results": n,
            "results_read": r.data.results,
            "accesses": r.accesses.len(),
            "report_s": report_s,
            "results_per_s": r.data.results as f64 / report_s,
            "cpu_s": cpu,
            "cpu_us_per_result": cpu * 1e6 / (r.data.results.max(1) as f64),
            "parts": std::thread::available_parallelism().map_or(1, |n| n.get()),
            "peak_rss_mib": peak as f64 / 1024.0,
            "rss_before_mib": rss_before as f64 / 1024.0,
            "report_bytes": body.len(),
            "store_mib": db_bytes as f64 / 1048576.0,
            "load_s": load_s,
        });
        drop(store);
        if std::env::var_os("KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        rows.push(row);
    }
    if args.json {
        println!("{}", serde_json::Value::Array(rows));
        return;
    }
    println!(
        "{:>12} {:>10} {:>10} {:>14} {:>8} {:>10} {:>12} {:>12} {:>10}",
        "results",
        "accesses",
        "report s",
        "results/s",
        "CPU s",
        "CPU µs/r",
        "peak RSS",
        "RSS before",
        "store"
    );
    for r in &rows {
        println!(
            "{:>12} {:>10} {:>10.2} {:>14.0} {:>8.2} {:>10.2} {:>8.1} MiB {:>8.1} MiB {:>6.0} MiB",
            r["results_read"].as_u64().unwrap_or(0),
            r["accesses"].as_u64().unwrap_or(0),
            r["report_s"].as_f64().unwrap_or(0.0),
            r["results_per_s"].as_f64().unwrap_or(0.0),
            r["cpu_s"].as_f64().unwrap_or(0.0),
            r["cpu_us_per_result"].as_f64().unwrap_or(0.0),
            r["peak_rss_mib"].as_f64().unwrap_or(0.0),
            r["rss_before_mib"].as_f64().unwrap_or(0.0),
            r["store_mib"].as_f64().unwrap_or(0.0),
        );
    }
}
