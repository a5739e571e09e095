//! `sonde-metrics-bench`: the collector's `/metrics` for a large fleet. Builds the
//! fleet's series exactly as ingest does (one committed result per access, one health
//! per agent, building coordinates), then renders the page several times. Prints the
//! render time, the payload size and the process's memory. A benchmark: it asserts
//! nothing about time.
//!
//! Usage: cargo run --release -p sonde-e2e --bin sonde-metrics-bench -- [--agents N] [--accesses N] [--json]

use sonde_collector::fleet::Fleet;
use sonde_collector::ingest::Ingest;
use sonde_collector::metrics::Exporter;
use sonde_proto::wire::Health;
use sonde_proto::{AccessKind, ResultRecord, VerdictOutcome};
use sonde_store::Delivery;
use sonde_store_sqlite::SqliteStore;
use std::sync::Arc;
use std::time::Instant;

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<u64>().ok())
            })
        })
        .unwrap_or(0)
        * 1024
}

/// The collector's /metrics page for a large fleet: render time, size, memory.
#[derive(Debug, clap::Parser)]
#[command(name = "sonde-metrics-bench", version)]
struct Args {
    /// Agents in the fleet.
    #[arg(long, default_value_t = 10_000)]
    agents: usize,
    /// Accesses per agent (1 to 3: FTTH, 4G, Wi-Fi).
    #[arg(long, default_value_t = 3, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=3))]
    accesses: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

// Long because it is the benchmark's script, read top to bottom: the fleet built,
// each exporter timed side by side, the table printed.
fn main() {
    let Args {
        agents,
        accesses,
        json,
    } = <Args as clap::Parser>::parse();
    let rss_before = rss_bytes();
    let registry = prometheus::Registry::new();
    let fleet = Arc::new(Fleet::new(std::time::Duration::from_secs(86_400)));
    let store = Arc::new(SqliteStore::in_memory().expect("store"));
    let ingest = Arc::new(Ingest::new(store, None, Some(fleet.clone()), 1 << 20));
    let exporter = Exporter::new(ingest, registry);
    let template = ResultRecord::schema_example();
    let kinds = [AccessKind::Ftth, AccessKind::FourG, AccessKind::Wifi];
    let names = ["fibre", "mobile", "wifi"];
    let t_fill = Instant::now();
    for a in 0..agents {
        let delivery = Delivery {
            agent_id: format!("b{a}-{:06x}", a * 7919 % 0xffffff),
            quartier: Some(format!("q{}", a % 40)),
            building: Some(format!("b{a}")),
        };
        for x in 0..accesses {
            let mut r = template.clone();
            r.id = uuid::Uuid::now_v7();
            r.access.name = Some(names[x % 3].to_string());
            r.access.kind = kinds[x % 3];
            r.verdict.down = if a % 5 == 0 {
                VerdictOutcome::NotMet
            } else {
                VerdictOutcome::Met
            };
            fleet.result(&delivery, &r, true);
        }
        fleet.health(
            &delivery,
            Some(&Health {
                spool_depth: (a % 7) as u64,
                failures_total: [("timeout".to_string(), 1)].into_iter().collect(),
                version: "0.1.0".into(),
                ..Default::default()
            }),
            chrono::Utc::now(),
        );
        fleet.building(
            &delivery.agent_id,
            delivery.quartier.as_deref().unwrap_or(""),
            delivery.building.as_deref().unwrap_or(""),
            48.8 + (a % 100) as f64 * 1e-3,
            2.3 + (a / 100) as f64 * 1e-3,
        );
    }
    let fill_s = t_fill.elapsed().as_secs_f64();
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let page = exporter.render();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        size = page.len();
    }
    times.sort_by(f64::total_cmp);
    let series = {
        let page = exporter.render();
        page.lines().filter(|l| !l.starts_with('#')).count()
    };
    let report = serde_json::json!({
        "agents": agents,
        "accesses_per_agent": accesses,
        "series": series,
        "render_ms_min": times[0],
        "render_ms_median": times[times.len() / 2],
        "render_ms_max": times[times.len() - 1],
        "payload_bytes": size,
        "rss_bytes": rss_bytes(),
        "rss_growth_bytes": rss_bytes().saturating_sub(rss_before),
        "fill_s": fill_s,
    });
    if json {
        println!("{report}");
    } else {
        println!("sonde /metrics benchmark");
        for (k, v) in report.as_object().into_iter().flatten() {
            println!("  {k:<22} {v}");
        }
    }
}
