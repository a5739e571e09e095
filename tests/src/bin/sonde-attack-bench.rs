//! `sonde-attack-bench`: what a legitimate agent gets from a real `sonde-collector
//! serve` process while strangers attack it, side by side in one run (these machines
//! are shared and noisy: compare the phases, not absolute times).
//!
//! One enrolled agent uploads `--batches` batches of `--per-batch` results, one every
//! `--pace-ms`, timing each acknowledgement, in five phases:
//!
//! 1. idle;
//! 2. while `--strangers` unauthenticated QUIC connections are opened and held idle;
//! 3. while `--slow-http` HTTP connections (80 addresses, half trickling a header) are
//!    held, and a reader asks `/healthz` once a second on a fresh connection;
//! 4. while `--readers` API clients page through `/api/v1/results`;
//! 5. while 3 unauthenticated connections send frames that never end
//!    (`--memory-mib` in all): the collector's RSS before and at its peak.
//!
//! Prints a table (or one JSON object with `--json`). Build the workspace in release
//! first: `cargo build --release --workspace && target/release/sonde-attack-bench`.
//! The API readers run at nice 19: their own work would happen on their machines.

use clap::Parser;
use sonde_e2e::attack::{self, quantile};
use sonde_e2e::pipeline::{raw, scratch, Collector};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A legitimate agent's ack latency while a collector is attacked, phase by phase.
#[derive(Debug, Parser)]
#[command(name = "sonde-attack-bench", version)]
struct Args {
    /// Batches the legitimate agent uploads in each phase.
    #[arg(long, default_value_t = 300)]
    batches: usize,
    /// Results per batch.
    #[arg(long, default_value_t = 10)]
    per_batch: usize,
    /// Milliseconds between batches (the phase lasts batches × this at least).
    #[arg(long, default_value_t = 50)]
    pace_ms: u64,
    /// Idle unauthenticated QUIC connections (phase 2).
    #[arg(long, default_value_t = 5000)]
    strangers: usize,
    /// Slow HTTP connections (phase 3).
    #[arg(long, default_value_t = 4600)]
    slow_http: usize,
    /// API readers (phase 4).
    #[arg(long, default_value_t = 8)]
    readers: usize,
    /// MiB the memory attack sends (phase 5).
    #[arg(long, default_value_t = 700)]
    memory_mib: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// One phase's figures.
#[derive(Debug)]
struct Phase {
    phase: &'static str,
    acked: usize,
    failed: usize,
    ack_p50_ms: f64,
    ack_p99_ms: f64,
    /// What the phase adds, in words.
    note: String,
}

fn phase(name: &'static str, (mut acks, failures): (Vec<f64>, Vec<String>), note: String) -> Phase {
    acks.sort_by(f64::total_cmp);
    if let Some(f) = failures.first() {
        eprintln!("{name}: {} failures, first: {f}", failures.len());
    }
    Phase {
        phase: name,
        acked: acks.len(),
        failed: failures.len(),
        ack_p50_ms: quantile(&acks, 0.5) * 1e3,
        ack_p99_ms: quantile(&acks, 0.99) * 1e3,
        note,
    }
}

/// The collector under attack, the legitimate agent's identity, and the runtime.
struct Bench {
    args: Args,
    collector: Collector,
    addr: SocketAddr,
    ca: rustls::pki_types::CertificateDer<'static>,
    identity: (
        rustls::pki_types::CertificateDer<'static>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ),
    rt: tokio::runtime::Runtime,
}

impl Bench {
    /// The legitimate agent's uploads of one phase.
    async fn upload(&self) -> (Vec<f64>, Vec<String>) {
        let (cert, key) = (&self.identity.0, &self.identity.1);
        attack::upload_paced(
            self.addr,
            raw::client_config(&self.ca, Some((cert.clone(), key.clone_key()))),
            (self.args.batches, self.args.per_batch),
            Duration::from_secs(20),
            Duration::from_millis(self.args.pace_ms),
        )
        .await
    }

    fn strangers(&self) -> Phase {
        let (strangers, up) = self.rt.block_on(async {
            tokio::join!(
                attack::idle_strangers(self.addr, &self.ca, self.args.strangers),
                async {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    self.upload().await
                }
            )
        });
        let note = format!(
            "{} handshakes completed, {} closed by the collector",
            strangers.len(),
            attack::closed(&strangers)
        );
        phase("5,000 idle strangers", up, note)
    }

    fn slow_http(&self) -> Phase {
        let http: SocketAddr = self.collector.http.parse().expect("http addr");
        let mut slow = attack::slow_http(http, self.args.slow_http, Duration::from_secs(20));
        let opened = slow.len();
        let stop = Arc::new(AtomicBool::new(false));
        let prober = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut asked, mut ok) = (0, 0);
                // A /healthz a second, ten at least, while the agent uploads.
                while asked < 10 || !stop.load(Ordering::Relaxed) {
                    attack::trickle(&mut slow);
                    asked += 1;
                    ok += u32::from(attack::answered(http, "/healthz"));
                    std::thread::sleep(Duration::from_secs(1));
                }
                (ok, asked)
            })
        };
        let up = self.rt.block_on(self.upload());
        stop.store(true, Ordering::Relaxed);
        let (ok, asked) = prober.join().unwrap_or_default();
        let note = format!("{opened} opened; /healthz answered {ok}/{asked}");
        phase("4,600 slow HTTP", up, note)
    }

    fn readers(&self) -> Phase {
        let stop = Arc::new(AtomicBool::new(false));
        let reading = attack::readers(&self.collector.http, self.args.readers, stop.clone());
        let up = self.rt.block_on(self.upload());
        stop.store(true, Ordering::Relaxed);
        let pages: u64 = reading.into_iter().filter_map(|t| t.join().ok()).sum();
        phase("8 API readers", up, format!("{pages} pages read"))
    }

    fn memory(&self) -> Phase {
        let pid = self.collector.pid().unwrap_or(0);
        let rss_before = attack::rss(pid);
        let peak = Arc::new(AtomicU64::new(rss_before));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak, stop) = (peak.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(attack::rss(pid), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        let (sent, up) = self.rt.block_on(async {
            let each = (self.args.memory_mib << 20) / 3;
            let mut floods = Vec::new();
            for _ in 0..3 {
                if let Ok(conn) = raw::connect(self.addr, raw::client_config(&self.ca, None)).await
                {
                    let flood = attack::endless_frames(conn, each, Duration::from_secs(60));
                    floods.push(tokio::spawn(flood));
                }
            }
            let up = self.upload().await;
            let mut sent = 0;
            for f in floods {
                sent += f.await.unwrap_or(0);
            }
            (sent, up)
        });
        stop.store(true, Ordering::Relaxed);
        let _ = sampler.join();
        let mib = |b: u64| b as f64 / f64::from(1 << 20);
        let note = format!(
            "{:.0} MiB taken; RSS {:.0} MiB before, {:.0} MiB peak",
            mib(sent as u64),
            mib(rss_before),
            mib(peak.load(Ordering::Relaxed))
        );
        phase("memory attack", up, note)
    }
}

fn main() {
    let args = Args::parse();
    attack::raise_nofile(20_000);
    let dir = scratch("attack-bench");
    let mut collector = Collector::configure(&dir);
    collector.start();
    let state = dir.join("agent");
    collector.enroll("b-bench", &state);
    let addr: SocketAddr = collector
        .quic
        .replace("localhost", "127.0.0.1")
        .parse()
        .expect("addr");
    let bench = Bench {
        identity: attack::identity(&state),
        ca: collector.ca_cert(),
        addr,
        collector,
        rt: tokio::runtime::Runtime::new().expect("runtime"),
        args,
    };
    eprintln!("1/5 idle…");
    let mut phases = vec![phase(
        "idle",
        bench.rt.block_on(bench.upload()),
        String::new(),
    )];
    eprintln!("2/5 {} idle strangers…", bench.args.strangers);
    phases.push(bench.strangers());
    eprintln!("3/5 {} slow HTTP clients…", bench.args.slow_http);
    phases.push(bench.slow_http());
    eprintln!("4/5 {} API readers…", bench.args.readers);
    phases.push(bench.readers());
    eprintln!("5/5 memory attack, {} MiB…", bench.args.memory_mib);
    phases.push(bench.memory());
    let Bench {
        mut collector,
        args,
        ..
    } = bench;
    collector.stop();
    let _ = std::fs::remove_dir_all(&dir);
    print(&args, &phases);
}

fn print(args: &Args, phases: &[Phase]) {
    if args.json {
        let phases: Vec<_> = phases
            .iter()
            .map(|p| {
                serde_json::json!({
                    "phase": p.phase, "acked": p.acked, "failed": p.failed,
                    "ack_p50_ms": p.ack_p50_ms, "ack_p99_ms": p.ack_p99_ms, "note": p.note,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "batches": args.batches, "per_batch": args.per_batch, "phases": phases })
        );
        return;
    }
    println!(
        "{:<22} {:>6} {:>6} {:>10} {:>10}  note",
        "phase", "acked", "failed", "p50 ms", "p99 ms"
    );
    for p in phases {
        println!(
            "{:<22} {:>6} {:>6} {:>10.1} {:>10.1}  {}",
            p.phase, p.acked, p.failed, p.ack_p50_ms, p.ack_p99_ms, p.note
        );
    }
}
