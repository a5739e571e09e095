//! Responsiveness side by side: sonde's agent and Cloudflare's `mach` (cf-mach, which
//! implements draft-ietf-ippm-responsiveness-09) measuring RPM against sonde's
//! responder on the same netlab link, with the bytes and seconds each spends. Used by
//! the interop test (`tests/rpm.rs`) and the benchmark (`sonde-rpm-bench`).

use crate::{bin, run_bounded};
use sonde_netlab::topology::{Spec, Topology};
use sonde_proto::ResultRecord;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What one client measured on one link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// RPM under download load.
    pub down: f64,
    /// RPM under upload load.
    pub up: f64,
    /// Bytes the agent's interface carried, both ways.
    pub bytes: u64,
    /// Wall time of the run.
    pub seconds: f64,
    /// Round trip on the load-generating connections under download and upload load,
    /// milliseconds: sonde's trimmed mean of its self probes in the reported window,
    /// mach's median of all its self probes (`loaded_latency_ms`).
    pub self_ms: (f64, f64),
}

/// Both clients run each direction for at most the draft's 20 s (mach's default is
/// 12 s, which ends while a deep queue is still filling).
pub const SECONDS: u32 = 20;

/// `mach`, when built (`.ci/run` installs cf-mach into /var/cache/sonde-tools, or
/// `SONDE_MACH` names it).
pub fn mach() -> Option<PathBuf> {
    std::env::var_os("SONDE_MACH")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/var/cache/sonde-tools/cf-mach/bin/mach")))
        .filter(|p| p.is_file())
}

/// A topology on `profile` with its responder (and its network-quality server).
pub fn topology(profile: &str) -> Topology {
    let link = sonde_netlab::builtin(profile, None).expect("a built-in profile");
    let mut t = Topology::create(&Spec {
        links: vec![link],
        collector: false,
    })
    .expect("topology");
    t.start_responder().expect("responder");
    t
}

/// Bytes the agent's interface has carried, both ways.
fn carried(t: &Topology) -> u64 {
    let iface = &t.agent_ifaces[0];
    ["rx_bytes", "tx_bytes"]
        .iter()
        .map(|f| {
            let out = t
                .command_in(&t.agent_ns, "cat")
                .arg(format!("/sys/class/net/{iface}/statistics/{f}"))
                .output()
                .expect("cat");
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<u64>()
                .unwrap_or(0)
        })
        .sum()
}

/// sonde's agent: `probe --responder NQ_URL` (RPM alone), both directions,
/// [`SECONDS`] at most each.
pub fn sonde(t: &Topology) -> Measured {
    let before = (carried(t), Instant::now());
    let mut cmd = t.command_in(&t.agent_ns, bin("sonde-agent"));
    cmd.args(["probe", "--responder", &t.nq_url(), "--rpm-ca"])
        .arg(t.nq_ca())
        .args(["--max-duration", &SECONDS.to_string(), "--json"]);
    let run = run_bounded(cmd, Duration::from_secs(120));
    assert_eq!(run.code(), 0, "sonde: {}", run.stderr());
    let r = ResultRecord::from_json(run.stdout().trim().as_bytes()).expect("record");
    let rpm = r.responsiveness.expect("responsiveness");
    let (down, up) = (rpm.down.expect("down"), rpm.up.expect("up"));
    Measured {
        down: down.rpm,
        up: up.rpm,
        bytes: carried(t) - before.0,
        seconds: before.1.elapsed().as_secs_f64(),
        self_ms: (down.self_probes.http_s * 1e3, up.self_probes.http_s * 1e3),
    }
}

/// `mach rpm` against the responder's configuration (its certificate is
/// self-signed: `--insecure`; no report upload: `--disable-aim-scores`).
pub fn mach_rpm(t: &Topology, mach: &std::path::Path) -> Measured {
    let before = (carried(t), Instant::now());
    let mut cmd = t.command_in(&t.agent_ns, mach);
    cmd.args([
        "rpm",
        "--config",
        &t.nq_url(),
        "--insecure",
        "--disable-aim-scores",
        "--test-duration",
        &(SECONDS * 1000).to_string(),
    ])
    .env("MACH_UPLOAD_TIMEOUT", "0");
    let run = run_bounded(cmd, Duration::from_secs(120));
    assert_eq!(run.code(), 0, "mach: {}", run.stderr());
    let v: serde_json::Value = serde_json::from_str(&run.stdout()).expect("mach's JSON");
    Measured {
        down: v["download"]["rpm"].as_f64().expect("download rpm"),
        up: v["upload"]["rpm"].as_f64().expect("upload rpm"),
        bytes: carried(t) - before.0,
        seconds: before.1.elapsed().as_secs_f64(),
        self_ms: (
            v["download"]["loaded_latency_ms"]
                .as_f64()
                .unwrap_or(f64::NAN),
            v["upload"]["loaded_latency_ms"]
                .as_f64()
                .unwrap_or(f64::NAN),
        ),
    }
}
