//! `sonde-bench loopback`: sonde's download goodput next to `iperf3 -P 8 -R`'s, in one
//! run on loopback, alternating, with the CPU each side used. A benchmark, not a test:
//! it prints figures and asserts nothing about time.
//!
//! Usage: cargo run --release -p sonde-e2e --bin sonde-bench -- loopback [--runs N] [--json]

use sonde_e2e::{bin, children_cpu_seconds, cpu_seconds, run_bounded, Responder};
use sonde_proto::ResultRecord;
use std::process::{Command, Stdio};
use std::time::Duration;

/// sonde's download goodput next to `iperf3 -P 8 -R`'s on loopback, alternating, with
/// the CPU each side used. Prints figures; asserts nothing about time.
#[derive(Debug, clap::Parser)]
#[command(name = "sonde-bench", version)]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, clap::Subcommand)]
enum Bench {
    /// sonde vs iperf3 on loopback (needs iperf3).
    Loopback(Args),
}

#[derive(Debug, clap::Args)]
struct Args {
    /// Pairs of runs (sonde then iperf3).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=50))]
    runs: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Duration of each iperf3 run, seconds.
    #[arg(long = "iperf3-seconds", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=60))]
    seconds: u32,
}

struct Sample {
    bps: f64,
    bytes: f64,
    seconds: f64,
    cpu_client: f64,
    cpu_server: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    sonde_proto::stats::quantile_sorted(&v, 0.5)
}

fn sonde_run(responder: &Responder) -> Result<Sample, String> {
    let server_before = cpu_seconds(responder.pid()).unwrap_or(0.0);
    let children_before = children_cpu_seconds().unwrap_or(0.0);
    let mut cmd = Command::new(bin("sonde-agent"));
    cmd.args([
        "probe",
        "--responder",
        &responder.url(),
        "--direction",
        "down",
        "--json",
    ]);
    let run = run_bounded(cmd, Duration::from_secs(60));
    let cpu_client = children_cpu_seconds().unwrap_or(0.0) - children_before;
    let cpu_server = cpu_seconds(responder.pid()).unwrap_or(0.0) - server_before;
    let record = ResultRecord::from_json(run.stdout().trim().as_bytes())
        .map_err(|e| format!("sonde-agent printed no record ({e}): {}", run.stderr()))?;
    let d = record.download.ok_or("no download figure")?;
    Ok(Sample {
        bps: d.goodput_bps,
        bytes: d.bytes_total as f64,
        seconds: d.duration_s,
        cpu_client,
        cpu_server,
    })
}

fn iperf3_run(port: u16, server_pid: u32, seconds: u32) -> Result<Sample, String> {
    let server_before = cpu_seconds(server_pid).unwrap_or(0.0);
    let children_before = children_cpu_seconds().unwrap_or(0.0);
    let mut cmd = Command::new("iperf3");
    cmd.args([
        "-c",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-P",
        "8",
        "-R",
        "-J",
    ])
    .args(["-t", &seconds.to_string()]);
    let run = run_bounded(cmd, Duration::from_secs(u64::from(seconds) + 30));
    let cpu_client = children_cpu_seconds().unwrap_or(0.0) - children_before;
    let cpu_server = cpu_seconds(server_pid).unwrap_or(0.0) - server_before;
    let v: serde_json::Value = serde_json::from_str(&run.stdout())
        .map_err(|e| format!("iperf3 printed no JSON ({e}): {}", run.stderr()))?;
    let received = &v["end"]["sum_received"];
    Ok(Sample {
        bps: received["bits_per_second"]
            .as_f64()
            .ok_or("no sum_received")?,
        bytes: received["bytes"].as_f64().unwrap_or(0.0),
        seconds: received["seconds"].as_f64().unwrap_or(0.0),
        cpu_client,
        cpu_server,
    })
}

// Long because it is the benchmark's script, read top to bottom: each run of each
// tool side by side, then the table; cut up, the order of the runs would be hidden.
fn main() {
    let Bench::Loopback(args) = <Cli as clap::Parser>::parse().bench;
    if Command::new("iperf3")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("error: iperf3 is not installed (apt-get install iperf3)");
        std::process::exit(2);
    }
    let responder = Responder::start(&[]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(15201);
    let mut server = match Command::new("iperf3")
        .args(["-s", "-B", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot start iperf3 -s: {e}");
            std::process::exit(2);
        }
    };
    std::thread::sleep(Duration::from_millis(300));
    let (mut sonde, mut iperf) = (Vec::new(), Vec::new());
    for i in 0..args.runs {
        eprintln!("run {}/{}: sonde, then iperf3", i + 1, args.runs);
        match sonde_run(&responder) {
            Ok(s) => sonde.push(s),
            Err(e) => eprintln!("  sonde run failed: {e}"),
        }
        match iperf3_run(port, server.id(), args.seconds) {
            Ok(s) => iperf.push(s),
            Err(e) => eprintln!("  iperf3 run failed: {e}"),
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    if sonde.is_empty() || iperf.is_empty() {
        eprintln!("error: not enough successful runs to compare");
        std::process::exit(1);
    }
    let m = |v: &[Sample], f: fn(&Sample) -> f64| median(v.iter().map(f).collect());
    let (s_bps, i_bps) = (m(&sonde, |s| s.bps), m(&iperf, |s| s.bps));
    let row = serde_json::json!({
        "benchmark": "loopback-download",
        "runs": args.runs,
        "sonde_bps": s_bps,
        "iperf3_bps": i_bps,
        "ratio": s_bps / i_bps,
        "sonde_bytes": m(&sonde, |s| s.bytes),
        "iperf3_bytes": m(&iperf, |s| s.bytes),
        "sonde_seconds": m(&sonde, |s| s.seconds),
        "iperf3_seconds": m(&iperf, |s| s.seconds),
        "sonde_agent_cpu_s": m(&sonde, |s| s.cpu_client),
        "sonde_responder_cpu_s": m(&sonde, |s| s.cpu_server),
        "iperf3_client_cpu_s": m(&iperf, |s| s.cpu_client),
        "iperf3_server_cpu_s": m(&iperf, |s| s.cpu_server),
    });
    if args.json {
        println!("{row}");
        return;
    }
    let gb = |b: f64| format!("{:.2} Gb/s", b / 1e9);
    println!(
        "loopback download, median of {} runs each (alternating)",
        args.runs
    );
    println!(
        "{:<22} {:>12} {:>10} {:>9} {:>10} {:>10}",
        "", "goodput", "GB moved", "seconds", "cpu client", "cpu server"
    );
    for (name, v, bps) in [
        ("sonde probe (8 str.)", &sonde, s_bps),
        ("iperf3 -P 8 -R", &iperf, i_bps),
    ] {
        println!(
            "{:<22} {:>12} {:>10.2} {:>9.2} {:>10.2} {:>10.2}",
            name,
            gb(bps),
            m(v, |s| s.bytes) / 1e9,
            m(v, |s| s.seconds),
            m(v, |s| s.cpu_client),
            m(v, |s| s.cpu_server)
        );
    }
    println!("ratio sonde / iperf3: {:.3}", s_bps / i_bps);
}
