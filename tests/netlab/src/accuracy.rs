//! The accuracy benchmark: on each profile's topology, `sonde-agent probe` and
//! `iperf3 -P 8` (`-R` for download) run in turn, N times each, alternating; their
//! medians are compared with the link's goodput ceiling. iperf3 gives two figures: its
//! 10 s mean (ramp included) and the median of its receiver's 1-second rates after the
//! first (the rate the link carried once filled). Prints figures, with the CPU seconds
//! of each tool and of the link emulator; asserts nothing about time.

use crate::profile::LinkSpec;
use crate::topology::{children_cpu_seconds, cpu_seconds, find_bin, Spec, Topology, RESPONDER_IP};
use anyhow::Context as _;
use serde::Serialize;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One line of the benchmark: a profile and a direction.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Profile name.
    pub profile: String,
    /// `down` or `up`.
    pub direction: String,
    /// Configured rate, bit/s.
    pub rate_bps: f64,
    /// Goodput ceiling, bit/s.
    pub ceiling_bps: f64,
    /// sonde's median goodput.
    pub sonde_bps: f64,
    /// `sonde_bps / ceiling_bps - 1`.
    pub sonde_error: f64,
    /// iperf3's median goodput.
    pub iperf3_bps: f64,
    /// `iperf3_bps / ceiling_bps - 1`.
    pub iperf3_error: f64,
    /// Median over runs of the median of iperf3's receiver-side 1-second rates after
    /// the first second.
    pub iperf3_steady_bps: f64,
    /// `iperf3_steady_bps / ceiling_bps - 1`.
    pub iperf3_steady_error: f64,
    /// Median payload bytes sonde moved in the direction.
    pub sonde_bytes: f64,
    /// Median duration of sonde's direction, seconds.
    pub sonde_seconds: f64,
    /// Median payload bytes iperf3 moved.
    pub iperf3_bytes: f64,
    /// Median CPU seconds of sonde (agent + responder).
    pub sonde_cpu_s: f64,
    /// Median CPU seconds of iperf3 (client + server).
    pub iperf3_cpu_s: f64,
    /// Median CPU seconds of the link emulator during a sonde run (0 without one).
    pub emulator_cpu_sonde_s: f64,
    /// Median CPU seconds of the link emulator during an iperf3 run.
    pub emulator_cpu_iperf3_s: f64,
    /// Runs each.
    pub runs: usize,
}

struct Sample {
    bps: f64,
    /// iperf3 only: median of the receiver's 1-second rates after the first.
    steady_bps: f64,
    bytes: f64,
    seconds: f64,
    cpu: f64,
    emulator_cpu: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    sonde_proto::stats::quantile_sorted(&v, 0.5)
}

fn cpu_of(pid: u32) -> f64 {
    cpu_seconds(pid).unwrap_or(0.0)
}

fn children_cpu() -> f64 {
    children_cpu_seconds().unwrap_or(0.0)
}

fn output_within(mut cmd: Command, limit: Duration) -> anyhow::Result<std::process::Output> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning")?;
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    std::thread::spawn(move || {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if flag.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    });
    let out = child.wait_with_output();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(out?)
}

fn sonde_run(topo: &Topology, url: &str, down: bool, responder_pid: u32) -> anyhow::Result<Sample> {
    let (c0, s0, e0) = (
        children_cpu(),
        cpu_of(responder_pid),
        topo.emulator_cpu_seconds(),
    );
    let mut cmd = topo.command_in(&topo.agent_ns, find_bin("sonde-agent")?);
    cmd.args(["probe", "--responder", url, "--json", "--idle-probes", "10"])
        .args(["--direction", if down { "down" } else { "up" }]);
    let out = output_within(cmd, Duration::from_secs(60))?;
    let cpu = children_cpu() - c0 + cpu_of(responder_pid) - s0;
    let emulator_cpu = topo.emulator_cpu_seconds() - e0;
    let record = sonde_proto::ResultRecord::from_json(
        String::from_utf8_lossy(&out.stdout).trim().as_bytes(),
    )
    .with_context(|| {
        format!(
            "sonde-agent printed no record: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })?;
    let t = if down { record.download } else { record.upload };
    let t = t.with_context(|| format!("no figure: {:?}", record.status))?;
    Ok(Sample {
        bps: t.goodput_bps,
        steady_bps: f64::NAN,
        bytes: t.bytes_total as f64,
        seconds: t.duration_s,
        cpu,
        emulator_cpu,
    })
}

fn iperf3_run(topo: &Topology, down: bool, server_pid: u32) -> anyhow::Result<Sample> {
    let (c0, s0, e0) = (
        children_cpu(),
        cpu_of(server_pid),
        topo.emulator_cpu_seconds(),
    );
    let mut cmd = topo.command_in(&topo.agent_ns, "iperf3");
    cmd.args([
        "-c",
        &RESPONDER_IP.to_string(),
        "-p",
        "5201",
        "-P",
        "8",
        "-J",
        "-t",
        "10",
        "--get-server-output",
    ]);
    if down {
        cmd.arg("-R");
    }
    let out = output_within(cmd, Duration::from_secs(40))?;
    let cpu = children_cpu() - c0 + cpu_of(server_pid) - s0;
    let emulator_cpu = topo.emulator_cpu_seconds() - e0;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("iperf3 JSON")?;
    let r = &v["end"]["sum_received"];
    // The receiver's intervals: the client's with -R, the server's otherwise.
    let receiver = if down { &v } else { &v["server_output_json"] };
    Ok(Sample {
        bps: r["bits_per_second"]
            .as_f64()
            .context("iperf3 gave no sum_received")?,
        steady_bps: steady_rate(receiver),
        bytes: r["bytes"].as_f64().unwrap_or(0.0),
        seconds: r["seconds"].as_f64().unwrap_or(0.0),
        cpu,
        emulator_cpu,
    })
}

/// Median of an iperf3 JSON report's full 1-second interval rates after the first
/// (short trailing intervals left out); NaN when there are none.
pub fn steady_rate(report: &serde_json::Value) -> f64 {
    let rates = report["intervals"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|i| &i["sum"])
                .filter(|s| s["seconds"].as_f64().is_some_and(|d| d > 0.9))
                .skip(1)
                .filter_map(|s| s["bits_per_second"].as_f64())
                .collect()
        })
        .unwrap_or_default();
    median(rates)
}

/// Runs the benchmark on one profile; `progress` receives a line per run.
pub fn bench_profile(
    name: &str,
    link: &LinkSpec,
    runs: usize,
    stop: &dyn Fn() -> bool,
    progress: &dyn Fn(&str),
) -> anyhow::Result<Vec<Row>> {
    let mut topo = Topology::create(&Spec {
        links: vec![link.clone()],
        collector: false,
    })?;
    let url = topo.start_responder()?;
    let responder_pid = responder_pid(&topo)?;
    topo.start_iperf3()?;
    let iperf_pid = iperf3_pid(&topo)?;
    let mut rows = Vec::new();
    for down in [true, false] {
        let dir = if down { "down" } else { "up" };
        let (mut sonde, mut iperf) = (Vec::new(), Vec::new());
        for i in 0..runs {
            if stop() {
                anyhow::bail!("interrupted");
            }
            progress(&format!("{name} {dir} run {}/{runs}: sonde", i + 1));
            match sonde_run(&topo, &url, down, responder_pid) {
                Ok(s) => sonde.push(s),
                Err(e) => progress(&format!("  sonde failed: {e:#}")),
            }
            if stop() {
                anyhow::bail!("interrupted");
            }
            progress(&format!(
                "{name} {dir} run {}/{runs}: iperf3 -P 8{}",
                i + 1,
                if down { " -R" } else { "" }
            ));
            match iperf3_run(&topo, down, iperf_pid) {
                Ok(s) => iperf.push(s),
                Err(e) => progress(&format!("  iperf3 failed: {e:#}")),
            }
        }
        let ceiling = link.ceiling_bps(down).unwrap_or(f64::NAN);
        let m = |v: &[Sample], f: fn(&Sample) -> f64| median(v.iter().map(f).collect());
        let (s, i) = (m(&sonde, |x| x.bps), m(&iperf, |x| x.bps));
        let steady = m(&iperf, |x| x.steady_bps);
        rows.push(Row {
            profile: name.to_string(),
            direction: dir.to_string(),
            rate_bps: link.rate_bps(down).unwrap_or(f64::NAN),
            ceiling_bps: ceiling,
            sonde_bps: s,
            sonde_error: s / ceiling - 1.0,
            iperf3_bps: i,
            iperf3_error: i / ceiling - 1.0,
            iperf3_steady_bps: steady,
            iperf3_steady_error: steady / ceiling - 1.0,
            sonde_bytes: m(&sonde, |x| x.bytes),
            sonde_seconds: m(&sonde, |x| x.seconds),
            iperf3_bytes: m(&iperf, |x| x.bytes),
            sonde_cpu_s: m(&sonde, |x| x.cpu),
            iperf3_cpu_s: m(&iperf, |x| x.cpu),
            emulator_cpu_sonde_s: m(&sonde, |x| x.emulator_cpu),
            emulator_cpu_iperf3_s: m(&iperf, |x| x.emulator_cpu),
            runs,
        });
    }
    Ok(rows)
}

fn pid_listening(topo: &Topology, port: u16) -> anyhow::Result<u32> {
    let out = topo
        .command_in(&topo.responder_ns, "ss")
        .args(["-Hltnp", &format!("sport = :{port}")])
        .output()
        .context("ss")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("pid=")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no process listens on {port}: {text}"))
}

fn responder_pid(topo: &Topology) -> anyhow::Result<u32> {
    pid_listening(topo, 8080)
}

fn iperf3_pid(topo: &Topology) -> anyhow::Result<u32> {
    pid_listening(topo, 5201)
}

/// A human-readable table of rows.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    let mbps = |b: f64| format!("{:.1}", b / 1e6);
    s.push_str(&format!(
        "{:<12} {:<4} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>6} {:>5} {:>6} {:>11} {:>11}\n",
        "profile",
        "dir",
        "rate",
        "ceiling",
        "sonde",
        "err",
        "iperf3",
        "err",
        "ip3 1s",
        "err",
        "bytes%",
        "s",
        "MB",
        "cpu s/i",
        "emu s/i",
    ));
    for r in rows {
        s.push_str(&format!(
            "{:<12} {:<4} {:>7} {:>7} {:>7} {:>+6.2}% {:>7} {:>+6.2}% {:>7} {:>+6.2}% {:>5.0}% {:>5.1} {:>6.0} {:>5.2}/{:<5.2} {:>5.2}/{:<5.2}\n",
            r.profile,
            r.direction,
            mbps(r.rate_bps),
            mbps(r.ceiling_bps),
            mbps(r.sonde_bps),
            r.sonde_error * 100.0,
            mbps(r.iperf3_bps),
            r.iperf3_error * 100.0,
            mbps(r.iperf3_steady_bps),
            r.iperf3_steady_error * 100.0,
            100.0 * r.sonde_bytes / r.iperf3_bytes,
            r.sonde_seconds,
            r.sonde_bytes / 1e6,
            r.sonde_cpu_s,
            r.iperf3_cpu_s,
            r.emulator_cpu_sonde_s,
            r.emulator_cpu_iperf3_s,
        ));
    }
    s.push_str(
        "rates in Mb/s; err = median / ceiling - 1; ip3 1s = median of iperf3's receiver 1-s rates after the first;\n\
         bytes% = sonde's bytes / iperf3's 10 s test; s, MB = sonde's duration and bytes;\n\
         cpu s/i = CPU seconds of sonde / iperf3 (both ends); emu s/i = the link emulator's during each\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_rate_is_the_median_after_the_first_full_second() {
        let report = serde_json::json!({ "intervals": [
            { "sum": { "seconds": 1.0, "bits_per_second": 100.0 } },
            { "sum": { "seconds": 1.0, "bits_per_second": 900.0 } },
            { "sum": { "seconds": 1.0, "bits_per_second": 950.0 } },
            { "sum": { "seconds": 1.0, "bits_per_second": 990.0 } },
            { "sum": { "seconds": 0.09, "bits_per_second": 5000.0 } },
        ]});
        assert_eq!(steady_rate(&report), 950.0);
        assert!(steady_rate(&serde_json::json!({})).is_nan());
    }
}
