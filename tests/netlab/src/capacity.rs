//! The RFC 9097 capacity benchmark: on each profile, server and direction, sonde's UDPST
//! client and OB-UDPST's own client one after the other, against OB-UDPST's server and
//! then sonde's (`sonde-responder --udpst`), beside the link's IP ceiling for UDPST's
//! 1250-byte packets, with the CPU seconds of each client and of the server.

use crate::topology::{children_cpu_seconds, cpu_seconds, find_bin, Spec, Topology};
use crate::LinkSpec;
use anyhow::{bail, Context};
use serde::Serialize;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// IP bytes of a full-size UDPST load datagram (1222 payload bytes, UDP and IPv4).
pub const UDPST_PACKET: f64 = 1250.0;
/// OB-UDPST's server's control port.
const PORT: u16 = 24601;
/// sonde's server's control port.
const SONDE_PORT: u16 = 24602;

/// The servers measured against, in order: `(name, control port)`.
const SERVERS: [(&str, u16); 2] = [("udpst", PORT), ("sonde", SONDE_PORT)];

/// One line: a profile and a direction.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Profile name.
    pub profile: String,
    /// The server: `udpst` (OB-UDPST's) or `sonde` (`sonde-responder --udpst`).
    pub server: String,
    /// `down` or `up`.
    pub direction: String,
    /// IP-layer ceiling for 1250-byte packets, bit/s.
    pub ceiling_bps: f64,
    /// sonde's MaxIPLayerCapacity, bit/s.
    pub sonde_bps: f64,
    /// `sonde_bps / ceiling_bps - 1`.
    pub sonde_error: f64,
    /// OB-UDPST's client's MaxIPLayerCapacity, bit/s.
    pub udpst_bps: f64,
    /// `udpst_bps / ceiling_bps - 1`.
    pub udpst_error: f64,
    /// `sonde_bps / udpst_bps - 1`.
    pub sonde_vs_udpst: f64,
    /// Runs of each client behind each figure (the median of them).
    pub runs: u32,
    /// CPU seconds of sonde's client, per run.
    pub sonde_cpu_s: f64,
    /// CPU seconds of OB-UDPST's client, per run.
    pub udpst_cpu_s: f64,
    /// CPU seconds of the server while it served sonde, then OB-UDPST's client, per
    /// run.
    pub server_cpu_s: (f64, f64),
}

/// Runs one profile: each server, both directions, each client `runs` times in turn
/// (the median of each side's figures, the mean of its CPU seconds).
pub fn bench_profile(
    name: &str,
    link: &LinkSpec,
    udpst: &Path,
    (seconds, runs): (u32, u32),
    progress: &dyn Fn(&str),
) -> anyhow::Result<Vec<Row>> {
    let mut topo = Topology::create(&Spec {
        links: vec![link.clone()],
        collector: false,
    })?;
    let pids = start_servers(&mut topo, udpst)?;
    let host = crate::topology::RESPONDER_IP.to_string();
    let mut rows = Vec::new();
    for ((server, port), server_pid) in SERVERS.into_iter().zip(pids) {
        for down in [true, false] {
            let dir = if down { "down" } else { "up" };
            let run = Run {
                host: &host,
                port,
                down,
                seconds,
            };
            // Per run: sonde's figure and CPU, OB-UDPST's, the server's CPU for each.
            let mut m: Vec<[f64; 6]> = Vec::new();
            for i in 1..=runs {
                let what = format!("{name} {server} server, {dir}, run {i}/{runs}");
                progress(&format!("{what}: sonde client"));
                let before = cpu_seconds(server_pid).unwrap_or(0.0);
                let (sonde, sonde_cpu) = sonde_run(&topo, &run)?;
                let middle = cpu_seconds(server_pid).unwrap_or(0.0);
                progress(&format!("{what}: udpst client"));
                let (theirs, udpst_cpu) = udpst_run(&topo, udpst, &run)?;
                let after = cpu_seconds(server_pid).unwrap_or(0.0);
                m.push([
                    sonde,
                    sonde_cpu,
                    theirs,
                    udpst_cpu,
                    middle - before,
                    after - middle,
                ]);
            }
            let median = |k: usize| {
                let v: Vec<f64> = m.iter().map(|r| r[k]).collect();
                sonde_proto::stats::quantile(&v, 0.5).unwrap_or(f64::NAN)
            };
            let mean = |k: usize| m.iter().map(|r| r[k]).sum::<f64>() / m.len().max(1) as f64;
            let (sonde, theirs) = (median(0), median(2));
            let ceiling = link.ip_ceiling_bps(down, UDPST_PACKET).unwrap_or(f64::NAN);
            rows.push(Row {
                profile: name.to_string(),
                server: server.to_string(),
                direction: dir.to_string(),
                ceiling_bps: ceiling,
                sonde_bps: sonde,
                sonde_error: sonde / ceiling - 1.0,
                udpst_bps: theirs,
                udpst_error: theirs / ceiling - 1.0,
                sonde_vs_udpst: sonde / theirs - 1.0,
                runs,
                sonde_cpu_s: mean(1),
                udpst_cpu_s: mean(3),
                server_cpu_s: (mean(4), mean(5)),
            });
        }
    }
    topo.teardown();
    Ok(rows)
}

/// Starts OB-UDPST's server and sonde's in the responder namespace, in the order of
/// [`SERVERS`]; their process ids.
fn start_servers(topo: &mut Topology, udpst: &Path) -> anyhow::Result<[u32; 2]> {
    let mut server = Command::new(udpst);
    server.args(["-j", "-p", &PORT.to_string()]);
    let ns = topo.responder_ns.clone();
    let udpst_pid = topo.spawn_in(&ns, server)?;
    let mut responder = Command::new(find_bin("sonde-responder")?);
    responder
        .args(["--listen", "0.0.0.0:8080", "--udp", "0.0.0.0:8081"])
        .args(["--udpst", &format!("0.0.0.0:{SONDE_PORT}")])
        .args(["--max-duration", "60"])
        .env("RUST_LOG", "warn");
    let sonde_pid = topo.spawn_in(&ns, responder)?;
    std::thread::sleep(Duration::from_millis(300));
    Ok([udpst_pid, sonde_pid])
}

/// Runs `cmd` in the agent namespace to its end; its stdout and CPU seconds.
fn timed(topo: &Topology, program: &Path, args: &[String]) -> anyhow::Result<(String, f64)> {
    let before = children_cpu_seconds().unwrap_or(0.0);
    let out = topo
        .command_in(&topo.agent_ns, program)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    let cpu = children_cpu_seconds().unwrap_or(0.0) - before;
    Ok((String::from_utf8_lossy(&out.stdout).into_owned(), cpu))
}

/// One client run: the server's address and port, the direction and the duration.
struct Run<'a> {
    host: &'a str,
    port: u16,
    down: bool,
    seconds: u32,
}

fn sonde_run(topo: &Topology, run: &Run<'_>) -> anyhow::Result<(f64, f64)> {
    let agent = find_bin("sonde-agent")?;
    let args: Vec<String> = [
        "probe",
        "--responder",
        &format!("udpst://{}:{}", run.host, run.port),
        "--direction",
        if run.down { "down" } else { "up" },
        "--max-duration",
        &run.seconds.to_string(),
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (out, cpu) = timed(topo, &agent, &args)?;
    let v: serde_json::Value = serde_json::from_str(out.trim()).context("sonde's record")?;
    let side = if run.down { "down" } else { "up" };
    match v["capacity"][side]["max_ip_capacity_bps"].as_f64() {
        Some(bps) => Ok((bps, cpu)),
        None => bail!("sonde measured nothing: {}", v["status"]),
    }
}

fn udpst_run(topo: &Topology, udpst: &Path, run: &Run<'_>) -> anyhow::Result<(f64, f64)> {
    let args: Vec<String> = [
        if run.down { "-d" } else { "-u" },
        "-j",
        "-f",
        "json",
        "-t",
        &run.seconds.to_string(),
        "-p",
        &run.port.to_string(),
        run.host,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (out, cpu) = timed(topo, udpst, &args)?;
    let v: serde_json::Value = serde_json::from_str(out.trim()).context("udpst -f json")?;
    match v["Output"]["AtMax"]["MaxIPLayerCapacity"].as_f64() {
        Some(mbps) => Ok((mbps * 1e6, cpu)),
        None => bail!("udpst measured nothing: {}", v["ErrorMessage"]),
    }
}

/// A human-readable table of rows.
pub fn table(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<12} {:<6} {:<4} {:>10} {:>10} {:>8} {:>10} {:>8} {:>8} {:>7} {:>7} {:>11}\n",
        "profile",
        "server",
        "dir",
        "ceiling",
        "sonde",
        "err",
        "udpst",
        "err",
        "s/udpst",
        "cpu s",
        "cpu u",
        "server s/u"
    );
    for r in rows {
        s.push_str(&format!(
            "{:<12} {:<6} {:<4} {:>10.2} {:>10.2} {:>+7.2}% {:>10.2} {:>+7.2}% {:>+7.2}% {:>7.2} {:>7.2} {:>5.2}/{:<5.2}\n",
            r.profile,
            r.server,
            r.direction,
            r.ceiling_bps / 1e6,
            r.sonde_bps / 1e6,
            r.sonde_error * 100.0,
            r.udpst_bps / 1e6,
            r.udpst_error * 100.0,
            r.sonde_vs_udpst * 100.0,
            r.sonde_cpu_s,
            r.udpst_cpu_s,
            r.server_cpu_s.0,
            r.server_cpu_s.1,
        ));
    }
    s.push_str("rates in Mb/s at the IP layer, each the median of the runs; err against the ceiling for 1250-byte packets; sonde and udpst: the clients; cpu: seconds per run of each client, and of the server serving each (s/u)\n");
    s
}
