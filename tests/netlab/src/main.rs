//! `sonde-netlab`: builds emulated access links in network namespaces, runs commands
//! across them, and benchmarks sonde's accuracy against iperf3 on them.

use clap::{Parser, Subcommand};
use sonde_netlab::emulate::Trace;
use sonde_netlab::topology::{self, Missing, Spec, Topology};
use sonde_netlab::{accuracy, profile, LinkSpec};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Emulated FTTH, 4G and Wi-Fi links in network namespaces (needs root).
///
/// Each run builds a fresh topology: an agent namespace, a link namespace that shapes
/// the rate (tbf) and emulates delay, jitter, loss or a capacity trace (TUN), and a
/// responder namespace running sonde-responder (HTTP 8080, UDP echo 8081, UDPST 24601)
/// and iperf3 -s (5201). Everything is removed on exit, on error and on Ctrl-C.
///
/// Profiles: ftth-1g, ftth-2g5, 4g-150, 4g-lossy, wifi-300, lte-trace (the default
/// benchmark); ftth-1g-20ms, ftth-1g-40ms, ftth-2g5-5ms (gigabit with a round-trip
/// time, rate and queue in the emulator); emu-40ms (no shaping, 40 ms RTT, to measure
/// the emulator itself); rpm-shallow and rpm-bufferbloat (the same 100/20 Mb/s line
/// behind a 10 ms and a 500 ms queue, for responsiveness).
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, clap::Args)]
struct ProfileArgs {
    /// Link profile (see `sonde-netlab profiles`).
    #[arg(long, short, value_name = "P")]
    profile: String,
    /// Capacity trace for lte-trace, mahimahi format (one millisecond offset per line,
    /// one 1500-byte delivery opportunity each; the trace repeats).
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Multiply the trace's rate by this factor.
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    trace_scale: f64,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run CMD on the agent side of a fresh topology.
    ///
    /// The environment carries SONDE_RESPONDER (URL), SONDE_RESPONDER_IP, SONDE_IPERF3
    /// (host:port), SONDE_NQ (the network-quality configuration URL, HTTPS),
    /// SONDE_NQ_CA (its self-signed certificate, PEM) and SONDE_NETLAB_IFACES (the
    /// agent's interfaces); `$NAME` of these in CMD's
    /// arguments is replaced by its value (quote it so your shell leaves it). sonde's
    /// binaries next to sonde-netlab come first in PATH.
    ///
    /// Example (as root):
    ///   sonde-netlab run --profile 4g-150 -- sonde-agent probe --responder '$SONDE_RESPONDER'
    #[command(verbatim_doc_comment)]
    Run {
        #[command(flatten)]
        profile: ProfileArgs,
        /// Kill CMD after this many seconds (the topology is still removed).
        #[arg(long, value_name = "SECS", default_value_t = 600)]
        timeout: u64,
        /// The command and its arguments.
        #[arg(required = true, last = true, value_name = "CMD")]
        cmd: Vec<String>,
    },
    /// Open an interactive shell on the agent side of a fresh topology.
    Shell {
        #[command(flatten)]
        profile: ProfileArgs,
    },
    /// Benchmark sonde against iperf3 -P 8 on each profile, both directions.
    Accuracy {
        /// Profiles to run (repeatable); when none is given, the six default ones then
        /// the three gigabit ones with a round trip (those need ethtool, and are
        /// skipped, naming it, without).
        #[arg(long, short, value_name = "P")]
        profile: Vec<String>,
        /// Runs of each tool per profile and direction.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
        runs: u32,
        /// One JSON object per profile and direction on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Benchmark sonde's RFC 9097 capacity against OB-UDPST's own client
    ///
    /// Both clients face OB-UDPST's server, then sonde's (sonde-responder --udpst),
    /// beside each link's IP ceiling.
    ///
    /// Build OB-UDPST first, e.g.:
    ///   cmake -S obudpst -B /tmp/udpst && make -C /tmp/udpst
    ///   sonde-netlab capacity --udpst /tmp/udpst/udpst
    #[command(verbatim_doc_comment)]
    Capacity {
        /// OB-UDPST's `udpst` binary.
        #[arg(long, value_name = "PATH")]
        udpst: PathBuf,
        /// Profiles to run (repeatable); default: tbf 150/50 (`4g-150` without its
        /// delay), ftth-1g (1000/500), ftth-2g5 (2500/1000), 4g-150 and lte-trace.
        #[arg(long, short, value_name = "P")]
        profile: Vec<String>,
        /// Test duration per direction, seconds.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(5..=60))]
        seconds: u32,
        /// Runs of each client per profile, server and direction (each figure is the
        /// median of them).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=9))]
        runs: u32,
        /// One JSON object per profile, server and direction on stdout.
        #[arg(long)]
        json: bool,
    },
    /// List the built-in profiles.
    Profiles,
    /// Remove namespaces left by netlab runs whose process died.
    Clean,
    /// (internal) Run the link emulator between two TUN devices until SIGTERM.
    #[command(hide = true)]
    Emulate {
        #[arg(long)]
        agent_tun: String,
        #[arg(long)]
        responder_tun: String,
        #[arg(long)]
        spec: PathBuf,
    },
}

static STOP: AtomicBool = AtomicBool::new(false);

fn fail_missing(e: &anyhow::Error) -> ! {
    if let Some(m) = e.downcast_ref::<Missing>() {
        eprintln!("error: {m}");
        std::process::exit(2);
    }
    eprintln!("error: {e:#}");
    std::process::exit(1);
}

fn load_profile(p: &ProfileArgs) -> LinkSpec {
    let trace = p.trace.as_ref().map(|path| {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| sonde_cli::usage_error(format!("--trace {}: {e}", path.display())));
        let trace = Trace::parse(&text)
            .unwrap_or_else(|e| sonde_cli::usage_error(format!("--trace {}: {e}", path.display())));
        (trace, p.trace_scale)
    });
    if !(p.trace_scale > 0.0 && p.trace_scale.is_finite()) {
        sonde_cli::usage_error(format!(
            "--trace-scale {} must be a positive number",
            p.trace_scale
        ));
    }
    if trace.is_some() && p.profile != "lte-trace" {
        sonde_cli::usage_error(format!(
            "--trace only applies to lte-trace, not {}",
            p.profile
        ));
    }
    profile::builtin(&p.profile, trace).unwrap_or_else(|| {
        sonde_cli::usage_error(format!(
            "unknown profile {:?} (known: {})",
            p.profile,
            profile::known().join(", ")
        ))
    })
}

fn main() {
    let cli: Cli = sonde_cli::parse_or_exit();
    sonde_cli::init_logging(sonde_cli::LogFormat::Text);
    if let Cmd::Emulate {
        agent_tun,
        responder_tun,
        spec,
    } = &cli.command
    {
        std::process::exit(emulate(agent_tun, responder_tun, spec));
    }
    let _ = ctrlc::set_handler(|| STOP.store(true, Ordering::SeqCst));
    let code = match cli.command {
        Cmd::Profiles => {
            print_profiles();
            0
        }
        Cmd::Clean => {
            if let Err(e) = topology::preflight() {
                eprintln!("error: {e}");
                std::process::exit(2);
            }
            for ns in topology::clean_stale() {
                println!("removed {ns}");
            }
            0
        }
        Cmd::Run {
            profile,
            timeout,
            cmd,
        } => {
            let link = load_profile(&profile);
            run_cmd(link, &cmd, Duration::from_secs(timeout))
        }
        Cmd::Shell { profile } => {
            let link = load_profile(&profile);
            let shell = std::env::var("SHELL").unwrap_or_else(|_| "bash".into());
            eprintln!(
                "netlab: opening {shell} on the agent side; exit it to tear the topology down"
            );
            run_cmd(link, &[shell], Duration::from_secs(24 * 3600))
        }
        Cmd::Accuracy {
            profile,
            runs,
            json,
        } => accuracy_cmd(profile, runs as usize, json),
        Cmd::Capacity {
            udpst,
            profile,
            seconds,
            runs,
            json,
        } => capacity_cmd(&udpst, profile, (seconds, runs), json),
        Cmd::Emulate { .. } => 0,
    };
    std::process::exit(code);
}

fn build(link: LinkSpec) -> (Topology, String) {
    let mut topo = Topology::create(&Spec {
        links: vec![link],
        collector: false,
    })
    .unwrap_or_else(|e| fail_missing(&e));
    let url = topo.start_responder().unwrap_or_else(|e| {
        drop_topology(&mut topo);
        fail_missing(&e)
    });
    (topo, url)
}

fn drop_topology(topo: &mut Topology) {
    topo.teardown();
}

fn run_cmd(link: LinkSpec, argv: &[String], timeout: Duration) -> i32 {
    let (mut topo, url) = build(link);
    let iperf3 = topo.start_iperf3().is_ok();
    let mut vars = vec![
        ("SONDE_RESPONDER", url.clone()),
        ("SONDE_RESPONDER_IP", topology::RESPONDER_IP.to_string()),
        ("SONDE_NETLAB_IFACES", topo.agent_ifaces.join(" ")),
        ("SONDE_NQ", topo.nq_url()),
        ("SONDE_NQ_CA", topo.nq_ca().display().to_string()),
    ];
    if iperf3 {
        vars.push(("SONDE_IPERF3", format!("{}:5201", topology::RESPONDER_IP)));
    }
    let argv: Vec<String> = argv.iter().map(|a| expand(a, &vars)).collect();
    let mut cmd = topo.command_in(&topo.agent_ns, &argv[0]);
    cmd.args(&argv[1..]).envs(vars.iter().map(|(k, v)| (k, v)));
    // sonde's binaries built next to this one come first: `sonde-agent` is found
    // when run from a build tree.
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let dirs = std::iter::once(dir).chain(std::env::split_paths(&path));
        if let Ok(joined) = std::env::join_paths(dirs) {
            cmd.env("PATH", joined);
        }
    }
    let status = match cmd.spawn() {
        Ok(mut child) => wait_bounded(&mut child, timeout),
        Err(e) => {
            eprintln!("error: cannot run {:?}: {e}", argv[0]);
            None
        }
    };
    topo.teardown();
    match status {
        Some(s) => s.code().unwrap_or(128 + 9),
        None => 124,
    }
}

/// `arg` with each `$NAME` or `${NAME}` of `vars` replaced by its value, so the
/// command's arguments can name the topology's addresses without a shell.
fn expand(arg: &str, vars: &[(&str, String)]) -> String {
    let mut out = arg.to_string();
    // Longest names first: `$SONDE_RESPONDER_IP` before `$SONDE_RESPONDER`.
    let mut sorted: Vec<_> = vars.iter().collect();
    sorted.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    for (name, value) in sorted {
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    out
}

/// Waits for `child`; kills it at `timeout` or on Ctrl-C. `None` when it was killed.
fn wait_bounded(child: &mut std::process::Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            eprintln!("netlab: the command ran past {timeout:?}; killing it");
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        if STOP.load(Ordering::SeqCst) {
            // The command got the same Ctrl-C from the terminal; give it a moment.
            let grace = Instant::now() + Duration::from_secs(2);
            while Instant::now() < grace {
                if let Ok(Some(status)) = child.try_wait() {
                    return Some(status);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn accuracy_cmd(profiles: Vec<String>, runs: usize, json: bool) -> i32 {
    let names: Vec<String> = if profiles.is_empty() {
        profile::PROFILES
            .iter()
            .chain(profile::FAR_PROFILES.iter())
            .map(|s| s.to_string())
            .collect()
    } else {
        profiles
    };
    let mut links = Vec::new();
    for n in &names {
        match profile::builtin(n, None) {
            Some(l) => links.push((n.clone(), l)),
            None => sonde_cli::usage_error(format!(
                "unknown profile {n:?} (known: {})",
                profile::known().join(", ")
            )),
        }
    }
    if Command::new("iperf3").arg("--version").output().is_err() {
        eprintln!("error: iperf3 is not installed (Debian package iperf3)");
        return 2;
    }
    if let Err(e) = topology::preflight() {
        eprintln!("error: {e}");
        return 2;
    }
    let started = Instant::now();
    let mut all = Vec::new();
    for (name, link) in &links {
        let rows =
            accuracy::bench_profile(name, link, runs, &|| STOP.load(Ordering::SeqCst), &|line| {
                eprintln!("[{:>5.0} s] {line}", started.elapsed().as_secs_f64())
            });
        match rows {
            Ok(rows) => {
                for r in &rows {
                    if json {
                        println!("{}", serde_json::to_string(r).unwrap_or_default());
                    }
                }
                all.extend(rows);
            }
            Err(e) => {
                if STOP.load(Ordering::SeqCst) {
                    eprintln!("interrupted; topology removed");
                    return 130;
                }
                // A profile whose tool is missing is left out, naming it; the rest run.
                if let Some(m @ Missing::Program(..)) = e.downcast_ref::<Missing>() {
                    eprintln!("skipped profile {name}: {m}");
                    continue;
                }
                if e.downcast_ref::<Missing>().is_some() {
                    fail_missing(&e);
                }
                eprintln!("error: profile {name}: {e:#}");
            }
        }
    }
    if !json {
        print!("{}", accuracy::table(&all));
    }
    eprintln!(
        "accuracy benchmark took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    0
}

/// `profiles`: each built-in profile on a line.
fn print_profiles() {
    for name in profile::known() {
        let l = profile::builtin(name, None).unwrap_or_else(|| LinkSpec::shaped(0, 0));
        let mb = |b: Option<f64>| {
            b.map(|b| format!("{:.0} Mb/s", b / 1e6))
                .unwrap_or("-".into())
        };
        let note = if l.down.trace.is_some() {
            "  (capacity from a trace)"
        } else if l.offload {
            "  (rate, queue and delay in the emulator, GSO frames; needs ethtool)"
        } else if profile::RPM_PROFILES.contains(&name) {
            "  (queue of 10 ms or 500 ms in the emulator, for RPM)"
        } else if profile::TOOL_PROFILES.contains(&name) {
            "  (no shaping: measures the emulator itself)"
        } else {
            ""
        };
        println!(
            "{name:<12} down {:>10}  up {:>10}  one-way delay {:>5.1} ms  jitter ±{:.1} ms  loss {:.2} %{note}",
            mb(l.rate_bps(true)),
            mb(l.rate_bps(false)),
            l.down.delay.as_secs_f64() * 1e3,
            l.down.jitter.as_secs_f64() * 1e3,
            l.down.loss * 100.0,
        );
    }
}

fn capacity_cmd(udpst: &Path, profiles: Vec<String>, timing: (u32, u32), json: bool) -> i32 {
    if !udpst.is_file() {
        eprintln!(
            "error: no OB-UDPST binary at {} (build it: cmake -S obudpst -B /tmp/udpst && make -C /tmp/udpst)",
            udpst.display()
        );
        return 2;
    }
    if let Err(e) = topology::preflight() {
        eprintln!("error: {e}");
        return 2;
    }
    let names: Vec<String> = if profiles.is_empty() {
        ["tbf-150-50", "ftth-1g", "ftth-2g5", "4g-150", "lte-trace"]
            .map(String::from)
            .to_vec()
    } else {
        profiles
    };
    let started = Instant::now();
    let mut rows = Vec::new();
    for name in &names {
        let link = match name.as_str() {
            "tbf-150-50" => LinkSpec::shaped(150_000_000, 50_000_000),
            n => match profile::builtin(n, None) {
                Some(l) => l,
                None => sonde_cli::usage_error(format!(
                    "unknown profile {n:?} (known: tbf-150-50, {})",
                    profile::known().join(", ")
                )),
            },
        };
        let progress =
            |line: &str| eprintln!("[{:>5.0} s] {line}", started.elapsed().as_secs_f64());
        match sonde_netlab::capacity::bench_profile(name, &link, udpst, timing, &progress) {
            Ok(r) => {
                for row in &r {
                    if json {
                        println!("{}", serde_json::to_string(row).unwrap_or_default());
                    }
                }
                rows.extend(r);
            }
            Err(e) => eprintln!("error: profile {name}: {e:#}"),
        }
        if STOP.load(Ordering::SeqCst) {
            eprintln!("interrupted; topology removed");
            return 130;
        }
    }
    if !json {
        print!("{}", sonde_netlab::capacity::table(&rows));
    }
    eprintln!(
        "capacity benchmark took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    0
}

fn emulate(agent_tun: &str, responder_tun: &str, spec: &PathBuf) -> i32 {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    let parsed = std::fs::read_to_string(spec)
        .map_err(anyhow::Error::from)
        .and_then(|t| Ok(serde_json::from_str::<serde_json::Value>(&t)?))
        .and_then(|v| {
            Ok((
                topology::path_from_json(&v["up"])?,
                topology::path_from_json(&v["down"])?,
                v["offload"].as_bool().unwrap_or(false),
            ))
        });
    let (up, down, offload) = match parsed {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: emulator spec {}: {e:#}", spec.display());
            return 64;
        }
    };
    // The topology waits for "ready", printed once both TUN devices are attached.
    let ready = || println!("ready");
    match sonde_netlab::tun::run_link(agent_tun, responder_tun, up, down, offload, stop, ready) {
        Ok((u, d)) => {
            tracing_line(&format!(
                "emulator stopped: up {} received {} lost {} overflowed {} delivered, down {} received {} lost {} overflowed {} delivered",
                u.received, u.lost, u.overflowed, u.delivered, d.received, d.lost, d.overflowed, d.delivered
            ));
            0
        }
        Err(e) => {
            eprintln!("error: emulator: {e}");
            1
        }
    }
}

fn tracing_line(s: &str) {
    if std::env::var_os("SONDE_NETLAB_VERBOSE").is_some() {
        eprintln!("{s}");
    }
}
