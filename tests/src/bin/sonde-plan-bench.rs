//! `sonde-plan-bench`: how fast a plan change reaches a fleet. A real
//! `sonde-collector serve` (its own process) holds N simulated agents' QUIC
//! connections, each enrolled with its own token in its own building; `plan apply`
//! (the real command, another process) makes a new version; each agent answers the
//! pushed plan as `sonde-agent run` does, with a heartbeat whose health names the
//! version it now runs. A benchmark, not a test: it prints figures, asserts nothing
//! about time.
//!
//! Figures, from the moment `plan apply` starts: when each agent received the plan
//! (p50, p99, max) and when the collector had acknowledged its heartbeat saying so;
//! then the collector's own view: agents whose stored health names the new version.
//!
//! Usage: cargo run --release -p sonde-e2e --bin sonde-plan-bench --
//!        [--agents N] [--json]

use sonde_collector::ca::Ca;
use sonde_e2e::fleet::{connect_all, enrol_all, next_frame, print_report, Bench};
use sonde_e2e::pipeline::{scratch, Collector};
use sonde_proto::plan::PlanState;
use sonde_proto::wire::{self, FrameDecoder, Health, Message, Upload};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A plan change pushed to a fleet of simulated agents over real QUIC: propagation
/// and acknowledgement times.
#[derive(Debug, clap::Parser)]
#[command(name = "sonde-plan-bench", version)]
struct Args {
    /// Simulated agents, each on its own QUIC connection, each in its own building.
    #[arg(long, default_value_t = 1000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=5000))]
    agents: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// A plan for every building of quartier `bench`, probing every `every`.
fn plan(every: &str) -> String {
    format!(
        "[[group]]\nquartier = \"bench\"\n\n[[group.access]]\nname = \"fibre\"\nkind = \"ftth\"\n\
         interface = \"eth0\"\nresponders = [\"http://responder.example:8080\"]\nevery = \"{every}\"\njitter = \"1m\"\n"
    )
}

/// A heartbeat saying the agent runs plan `version`.
fn heartbeat(batch: u64, version: u64) -> Vec<u8> {
    wire::encode(&Message::Upload(Upload {
        batch,
        health: Health {
            plan: Some(Box::new(PlanState {
                version,
                ..PlanState::default()
            })),
            ..Health::default()
        },
        results: Vec::new(),
        signatures: None,
    }))
}

/// One agent, as `sonde-agent run` behaves towards plans: a heartbeat on connect,
/// then each pushed plan answered at once with a heartbeat naming its version. Sends
/// (version, received, acknowledged) for each plan.
async fn agent(conn: quinn::Connection, out: mpsc::UnboundedSender<(u64, Instant, Instant)>) {
    let Ok((mut send, mut recv)) = conn.open_bi().await else {
        return;
    };
    let mut decoder = FrameDecoder::new(1 << 20);
    let mut batch = 1;
    if send.write_all(&heartbeat(batch, 0)).await.is_err() {
        return;
    }
    let mut pending: Option<(u64, Instant)> = None;
    while let Some(m) = next_frame(&mut recv, &mut decoder).await {
        match m {
            Message::Plan(p) => {
                pending = Some((p.version, Instant::now()));
                batch += 1;
                if send.write_all(&heartbeat(batch, p.version)).await.is_err() {
                    return;
                }
            }
            Message::Ack(a) if a.batch == batch => {
                if let Some((v, got)) = pending.take() {
                    let _ = out.send((v, got, Instant::now()));
                }
            }
            Message::Ack(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Waits for `n` answers to plan `version`; their (received, acknowledged) times
/// after `t0`, in seconds.
async fn collect(
    rx: &mut mpsc::UnboundedReceiver<(u64, Instant, Instant)>,
    n: usize,
    version: u64,
    t0: Instant,
) -> (Vec<f64>, Vec<f64>) {
    let (mut received, mut acked) = (Vec::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while received.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((v, got, ack))) if v == version => {
                received.push(got.duration_since(t0).as_secs_f64());
                acked.push(ack.duration_since(t0).as_secs_f64());
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    received.sort_by(f64::total_cmp);
    acked.sort_by(f64::total_cmp);
    (received, acked)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// `plan apply` of `text` as an operator runs it.
fn apply(collector: &Collector, dir: &std::path::Path, name: &str, text: &str) {
    let file = dir.join(name);
    std::fs::write(&file, text).expect("plan file");
    let run = collector.cli(&["plan", "apply", "--file", file.to_str().expect("utf-8")]);
    assert_eq!(run.code(), 0, "plan apply: {}", run.stderr());
}

/// Agents whose stored health names plan `version` (the collector's own record).
fn acknowledged_in_store(http: &str, version: u64) -> usize {
    let body: serde_json::Value = sonde_e2e::http_get(http, "/api/v1/agents")
        .and_then(|(_, b)| serde_json::from_str(&b).ok())
        .unwrap_or_default();
    body["agents"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|a| a["health"]["plan"]["version"].as_u64() == Some(version))
                .count()
        })
        .unwrap_or(0)
}

/// Connects the fleet, waits until it runs version 1, applies version 2 and times it.
async fn measure(
    args: &Args,
    collector: &Collector,
    dir: &std::path::Path,
    addr: SocketAddr,
    ca: &Ca,
    tokens: Vec<String>,
) -> serde_json::Value {
    let endpoints: Vec<quinn::Endpoint> = (0..8)
        .map(|_| quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client"))
        .collect();
    eprintln!("enrolling and connecting {} agents…", args.agents);
    let agents = enrol_all(&endpoints, addr, &ca.cert().clone(), tokens).await;
    let conns = connect_all(&endpoints, addr, agents).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    for c in &conns {
        tokio::spawn(agent(c.clone(), tx.clone()));
    }
    let t = Instant::now();
    let (first, _) = collect(&mut rx, conns.len(), 1, t).await;
    eprintln!(
        "{} agents run version 1 (pushed on connect); applying version 2…",
        first.len()
    );
    let cpu_before = collector.pid().and_then(sonde_e2e::cpu_seconds);
    let t0 = Instant::now();
    apply(collector, dir, "v2.toml", &plan("5m"));
    let applied_s = t0.elapsed().as_secs_f64();
    let (received, acked) = collect(&mut rx, conns.len(), 2, t0).await;
    let cpu = collector
        .pid()
        .and_then(sonde_e2e::cpu_seconds)
        .zip(cpu_before)
        .map_or(f64::NAN, |(a, b)| a - b);
    // The collector's own record: each agent's stored health.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let http = collector.http.clone();
    let stored = tokio::task::spawn_blocking(move || acknowledged_in_store(&http, 2))
        .await
        .unwrap_or(0);
    for c in &conns {
        c.close(0u32.into(), b"done");
    }
    serde_json::json!({
        "agents": args.agents,
        "connected_on_v1": first.len(),
        "plan_apply_command_s": applied_s,
        "received_v2": received.len(),
        "received_p50_s": quantile(&received, 0.5),
        "received_p99_s": quantile(&received, 0.99),
        "received_max_s": received.last().copied().unwrap_or(f64::NAN),
        "acknowledged_p50_s": quantile(&acked, 0.5),
        "acknowledged_p99_s": quantile(&acked, 0.99),
        "acknowledged_max_s": acked.last().copied().unwrap_or(f64::NAN),
        "acknowledged_in_collector_store": stored,
        "collector_cpu_s": cpu,
    })
}

fn main() {
    let args = <Args as clap::Parser>::parse();
    let dir = scratch("plan-bench");
    let Bench {
        mut collector,
        ca,
        tokens,
        addr,
        ..
    } = Bench::start(&dir, args.agents);
    apply(&collector, &dir, "v1.toml", &plan("15m"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let report = runtime.block_on(measure(&args, &collector, &dir, addr, &ca, tokens));
    collector.stop();
    print_report(
        "sonde plan propagation benchmark (one collector, SQLite, real QUIC, plan apply as a separate process)",
        &report,
        args.json,
    );
    let _ = std::fs::remove_dir_all(&dir);
}
