//! `sonde-agent`: measures an access (throughput, latency, loss) against a
//! `sonde-responder`. This binary parses the command line, checks it before anything
//! starts (exit 64), and prints results; the measuring lives in the modules.

use sonde_agent::{config, daemon, identity, netif, probe};

use clap::{Parser, Subcommand, ValueEnum};
use sonde_cli::LogFormat;
use sonde_proto::{AccessKind, Direction, Engine, ResultRecord};
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// sonde's agent: measures broadband accesses against a sonde responder.
///
/// Start with `sonde-agent probe --responder http://HOST:PORT`: one measurement of
/// idle latency, then download and upload on 8 parallel TCP streams, each stopped as
/// soon as its rate is stable (at most 10 s per direction). Every figure is defined in
/// docs/METHODOLOGY.md.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// Log line format (logs go to stderr; filter with RUST_LOG, e.g. RUST_LOG=debug).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure one access once and print the result.
    ///
    /// Example, on the FTTH port of a box:
    ///
    /// sonde-agent probe --responder http://responder.example:8080 --interface eth1 --access ftth
    ///
    /// Exit status: 0 when figures were obtained (possibly partial, see `status`),
    /// 1 when the measurement failed, 64 for bad arguments.
    Probe(ProbeArgs),
    /// Run the agent: probe each configured access on its schedule, spool every
    /// result on disk and upload it to the collector over QUIC.
    ///
    /// The config (TOML) is checked first, like check-config (exit 64 on any problem).
    /// Results stay in the spool until the collector has committed them; when the
    /// collector is unreachable the agent keeps measuring and catches up later.
    /// `sonde-agent status` shows what it is doing. Ctrl-C or SIGTERM stops it.
    ///
    /// Example: sonde-agent run --config /etc/sonde/agent.toml
    Run {
        /// The agent's configuration (TOML); see deploy/agent.example.toml.
        #[arg(long, value_name = "FILE")]
        config: std::path::PathBuf,
    },
    /// Enrol this box with a collector, using a one-time token from
    /// `sonde-collector token create`.
    ///
    /// Makes a key pair here (the key never leaves the box; file mode 0600), sends a
    /// certificate request with the token, and stores the certificate and the
    /// collector's CA (pinned from then on) in the state directory. The token names
    /// the collector's CA, so a collector impersonator is refused.
    ///
    /// Example: sonde-agent enroll --collector collector.example:4433 --token st1.…
    ///
    /// Exit status: 0 enrolled, 1 refused or unreachable, 64 bad arguments or
    /// already enrolled.
    Enroll {
        /// The collector's QUIC address, HOST:PORT (HOST must be a name or address in
        /// its certificate).
        #[arg(long, value_name = "HOST:PORT")]
        collector: String,
        /// The one-time token.
        #[arg(long, value_name = "TOKEN", value_parser = parse_token)]
        token: sonde_proto::wire::EnrolToken,
        /// Where the agent keeps its identity and spool (the config's
        /// collector.state_dir).
        #[arg(long, value_name = "DIR", default_value = "/var/lib/sonde")]
        state_dir: std::path::PathBuf,
    },
    /// Show what the agent is doing: spool depth, evictions, last upload, missed runs,
    /// failures, next run.
    ///
    /// Exit status: 0 when the daemon runs, 3 when it is not running, 1 when there
    /// is no status to read.
    Status {
        /// The agent's state directory.
        #[arg(long, value_name = "DIR", default_value = "/var/lib/sonde")]
        state_dir: std::path::PathBuf,
        /// Print the status as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List this box's interfaces with their likely access kind, link speed and
    /// addresses, as a configuration skeleton that check-config accepts.
    ///
    /// Wireless interfaces are proposed as Wi-Fi, wwan/QMI/MBIM modems as 4G, Ethernet
    /// as FTTH; loopback and virtual interfaces are listed, not proposed. Set the site,
    /// the collector and the responders in the skeleton, then check it.
    ///
    /// Example: sonde-agent discover > /etc/sonde/agent.toml
    Discover,
    /// Check a configuration file and report every problem, each with its field path.
    ///
    /// Exit status: 0 when the file is valid, 64 otherwise. Interfaces are checked
    /// against this box; `--no-interfaces` skips that (to check a file elsewhere).
    CheckConfig {
        /// The agent's configuration (TOML).
        #[arg(long, value_name = "FILE")]
        config: std::path::PathBuf,
        /// Do not require the accesses' interfaces to exist on this box.
        #[arg(long)]
        no_interfaces: bool,
    },
}

#[derive(Debug, clap::Args)]
struct ProbeArgs {
    /// What to measure against: a sonde responder, http://HOST:PORT (e.g.
    /// http://192.0.2.10:8080), or a stock iperf3 server, iperf3://HOST[:PORT] (port
    /// 5201 by default; no latency figures, see docs/METHODOLOGY.md §9).
    #[arg(long, value_name = "URL", value_parser = parse_responder_url)]
    responder: url::Url,
    /// Bind every socket (TCP and UDP) to this interface (SO_BINDTODEVICE), so the
    /// test takes that access's path. Needs CAP_NET_RAW.
    #[arg(long, value_name = "IF")]
    interface: Option<String>,
    /// Kind of access measured; sets the target the verdict uses
    /// (ftth: 1 Gb/s down, 4g: 150 Mb/s down, wifi and other: none). With --interface,
    /// wifi and 4g also record the radio context first (nl80211, ModemManager; 2 s at
    /// most, the reason when there is none).
    #[arg(long, value_name = "KIND", default_value = "other", value_parser = parse_access)]
    access: AccessKind,
    /// Parallel TCP streams per direction (8 for ≥ 1 Gb/s accesses; 1 is the
    /// single-connection variant of ARCEP's mobile campaigns).
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    streams: u32,
    /// Cap on each direction, seconds; most directions stop earlier, once stable.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = parse_duration_secs)]
    max_duration: f64,
    /// Stop each direction after this much payload, e.g. 50MB (what a data budget
    /// allows a test); the figure is then the window measured so far.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_bytes: Option<u64>,
    /// Which directions to measure.
    #[arg(long, value_enum, default_value_t = DirectionArg::Both)]
    direction: DirectionArg,
    /// UDP echo probes in the idle-latency train (one every --idle-interval ms).
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    idle_probes: u32,
    /// Gap between idle-latency probes, milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..=1000))]
    idle_interval: u64,
    /// Print exactly one JSON result record (schema: proto/SCHEMA.md) on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DirectionArg {
    Down,
    Up,
    Both,
}

fn parse_responder_url(s: &str) -> Result<url::Url, String> {
    sonde_agent::probe::responder_url(s)
}

fn parse_access(s: &str) -> Result<AccessKind, String> {
    s.parse()
}

fn parse_duration_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(1.0..=60.0).contains(&v) {
        return Err(format!("{v} s is outside 1..=60 s"));
    }
    Ok(v)
}

fn main() {
    let cli: Cli = sonde_cli::parse_or_exit();
    sonde_cli::init_logging(cli.log_format);
    match cli.command {
        Command::Probe(args) => probe_command(args),
        Command::CheckConfig {
            config,
            no_interfaces,
        } => check_config(&config, no_interfaces),
        Command::Run { config } => run_command(&config),
        Command::Discover => {
            print!(
                "{}",
                sonde_agent::discover::skeleton(&sonde_agent::discover::discover())
            );
        }
        Command::Enroll {
            collector,
            token,
            state_dir,
        } => enroll_command(&collector, &token, &state_dir),
        Command::Status { state_dir, json } => status_command(&state_dir, json),
    }
}

fn parse_token(s: &str) -> Result<sonde_proto::wire::EnrolToken, String> {
    s.parse()
}

fn run_command(path: &std::path::Path) {
    let config = match config::load(path, config::Interfaces::MustExist) {
        Ok(c) => c,
        Err(problems) => {
            for p in &problems {
                eprintln!("error: {p}");
            }
            std::process::exit(sonde_cli::EXIT_USAGE);
        }
    };
    let runtime = sonde_cli::runtime_or_exit();
    let code = runtime.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            sonde_cli::shutdown_signal().await;
            tracing::info!("stopping");
            let _ = stop_tx.send(true);
        });
        match daemon::run(config, stop_rx).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e:#}");
                1
            }
        }
    });
    std::process::exit(code);
}

fn enroll_command(
    collector: &str,
    token: &sonde_proto::wire::EnrolToken,
    state_dir: &std::path::Path,
) {
    if collector
        .rsplit_once(':')
        .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
    {
        sonde_cli::usage_error(format!("--collector {collector:?} is not HOST:PORT"));
    }
    let runtime = sonde_cli::runtime_or_exit();
    let result = runtime.block_on(identity::enroll(
        collector,
        token,
        state_dir,
        Duration::from_secs(15),
    ));
    match result {
        Ok(id) => {
            println!(
                "enrolled as {} (building {}, quartier {}); identity in {}",
                id.info.agent_id,
                id.info.building,
                id.info.quartier,
                state_dir.display()
            );
        }
        Err(e @ identity::IdentityError::AlreadyEnrolled { .. }) => sonde_cli::usage_error(e),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

fn status_command(state_dir: &std::path::Path, json: bool) {
    let status = match daemon::read_status(state_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    if json {
        println!("{}", serde_json::to_string(&status).unwrap_or_default());
    } else {
        print_status(&status);
    }
    std::process::exit(if status.running { 0 } else { 3 });
}

fn ago(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    match t {
        Some(t) => {
            let s = (chrono::Utc::now() - t).num_seconds().max(0);
            format!(
                "{} ({} ago)",
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                humantime::format_duration(Duration::from_secs(s as u64))
            )
        }
        None => "never".into(),
    }
}

fn print_status(s: &daemon::Status) {
    let state = if s.running {
        format!(
            "running, pid {}, up {}",
            s.pid,
            humantime::format_duration(Duration::from_secs(s.uptime_s))
        )
    } else {
        "not running".to_string()
    };
    println!(
        "sonde-agent {} {}  ({state})",
        s.version,
        s.agent_id.as_deref().unwrap_or("(not enrolled)")
    );
    println!(
        "  collector   {}  {}",
        s.collector,
        if s.connected {
            "connected"
        } else {
            "not connected"
        }
    );
    println!("  last upload {}", ago(s.last_success));
    println!(
        "  spool       {} result(s) waiting, {} evicted",
        s.spool_depth, s.evictions_total
    );
    println!(
        "  runs        {} measured, {} uploaded since start, {} missed",
        s.results_total, s.uploaded_total, s.missed_runs_total
    );
    let map = |m: &std::collections::BTreeMap<String, u64>| {
        if m.is_empty() {
            "none".to_string()
        } else {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    println!("  failures    {}", map(&s.failures_total));
    println!("  uplink errs {}", map(&s.uplink_errors_total));
    for (access, b) in &s.budgets {
        println!(
            "  budget      {access}: {:.1} of {:.1} MB used in {} ({:.0} %)",
            b.used_bytes as f64 / 1e6,
            b.budget_bytes as f64 / 1e6,
            b.month,
            100.0 * b.used_bytes as f64 / (b.budget_bytes.max(1)) as f64
        );
    }
    if let Some(n) = &s.next_run {
        println!(
            "  next run    {} at {}",
            n.access,
            n.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
    if let Some(e) = &s.last_error {
        println!("  last error  {e}");
    }
}

fn check_config(path: &std::path::Path, no_interfaces: bool) {
    let interfaces = if no_interfaces {
        config::Interfaces::Ignore
    } else {
        config::Interfaces::MustExist
    };
    match config::load(path, interfaces) {
        Ok(c) => {
            let names: Vec<String> = c
                .accesses
                .iter()
                .map(|a| format!("{} ({} on {})", a.name, a.kind, a.interface))
                .collect();
            println!(
                "{}: valid; {} access(es): {}",
                path.display(),
                names.len(),
                names.join(", ")
            );
        }
        Err(problems) => {
            for p in &problems {
                eprintln!("error: {p}");
            }
            std::process::exit(sonde_cli::EXIT_USAGE);
        }
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    sonde_agent::config::parse_bytes(s)
        .filter(|b| *b >= sonde_agent::budget::MIN_DIRECTION_BYTES)
        .ok_or_else(|| {
            format!(
                "{s:?} is not a size of at least {} bytes (e.g. 50MB)",
                sonde_agent::budget::MIN_DIRECTION_BYTES
            )
        })
}

fn probe_command(args: ProbeArgs) {
    let interface = match &args.interface {
        Some(name) => match netif::interface(name) {
            Ok(i) => Some(i),
            Err(e) => sonde_cli::usage_error(e),
        },
        None => None,
    };
    let directions = match args.direction {
        DirectionArg::Down => vec![Direction::Down],
        DirectionArg::Up => vec![Direction::Up],
        DirectionArg::Both => vec![Direction::Down, Direction::Up],
    };
    let opts = probe::Options {
        responder: args.responder,
        interface,
        access: args.access,
        targets: sonde_agent::verdict::default_targets(args.access),
        streams: args.streams,
        max_duration: Duration::from_secs_f64(args.max_duration),
        directions,
        idle_probes: args.idle_probes,
        idle_interval: Duration::from_millis(args.idle_interval),
        max_bytes: args.max_bytes,
    };
    let runtime = sonde_cli::runtime_or_exit();
    let live = std::io::stderr().is_terminal();
    let progress = move |p: probe::Progress| {
        if live {
            let dir = if p.direction == Direction::Up {
                "upload"
            } else {
                "download"
            };
            eprint!(
                "\r\x1b[K  {dir:<8} {:>12}  {:>5.1} s",
                fmt_rate(p.rate_bps),
                p.elapsed.as_secs_f64()
            );
        }
    };
    let record = runtime.block_on(async {
        // A radio access's context, read just before the test as the daemon does.
        let radio = match (args.access, args.interface.as_deref()) {
            (AccessKind::Wifi, Some(name)) => Some(sonde_agent::wifi::context(name).await),
            (AccessKind::FourG, Some(name)) => Some(sonde_agent::radio::lte(None, name).await),
            _ => None,
        };
        let mut record = probe::run(&opts, &progress).await;
        record.radio = radio;
        record
    });
    if live {
        eprint!("\r\x1b[K");
    }
    let failed = record.status.outcome == sonde_proto::Outcome::Failed;
    if args.json {
        println!("{}", record.to_json());
    } else {
        print_summary(&record);
    }
    if let Some(message) = &record.status.message {
        eprintln!("{}: {message}", if failed { "error" } else { "warning" });
    }
    let _ = std::io::stdout().flush();
    std::process::exit(if failed { 1 } else { 0 });
}

fn fmt_rate(bps: f64) -> String {
    if bps >= 1e9 {
        format!("{:.2} Gb/s", bps / 1e9)
    } else if bps >= 1e6 {
        format!("{:.1} Mb/s", bps / 1e6)
    } else {
        format!("{:.0} kb/s", bps / 1e3)
    }
}

fn fmt_ms(s: Option<f64>) -> String {
    s.map(|s| format!("{:.2} ms", s * 1e3))
        .unwrap_or_else(|| "-".into())
}

fn print_radio(radio: &sonde_proto::Radio) {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "?".into());
    if let Some(w) = &radio.wifi {
        println!(
            "  wifi          {} ({}), {} MHz channel {}, signal {} dBm, tx {} rx {}",
            opt(w.ssid.clone()),
            opt(w.bssid.clone()),
            opt(w.frequency_mhz.map(|f| f.to_string())),
            opt(w.channel.map(|c| c.to_string())),
            opt(w.signal_dbm.map(|s| format!("{s:.0}"))),
            opt(w.tx_bitrate_bps.map(|b| fmt_rate(b as f64))),
            opt(w.rx_bitrate_bps.map(|b| fmt_rate(b as f64))),
        );
    }
    if let Some(l) = &radio.lte {
        println!(
            "  4g            {} {} band {}, RSRP {} dBm, RSRQ {} dB, SINR {} dB",
            opt(l.technology.clone()),
            opt(l.operator.clone()),
            opt(l.band.clone()),
            opt(l.rsrp_dbm.map(|v| format!("{v:.0}"))),
            opt(l.rsrq_db.map(|v| format!("{v:.1}"))),
            opt(l.sinr_db.map(|v| format!("{v:.1}"))),
        );
    }
    if let Some(why) = &radio.unavailable {
        println!("  radio         {why}");
    }
}

fn print_summary(r: &ResultRecord) {
    println!(
        "sonde probe {}  responder {}  access {}{}",
        r.run.responder.url,
        r.run
            .responder
            .version
            .as_deref()
            .unwrap_or(match r.run.engine {
                Engine::Iperf3 => "iperf3",
                _ => "?",
            }),
        r.access.kind,
        r.access
            .interface
            .as_deref()
            .map(|i| format!(" via {i}"))
            .unwrap_or_default()
    );
    if let Some(l) = &r.idle_latency {
        println!(
            "  idle latency  median {}  P90 {}  jitter {}  loss {:.1} % of {}",
            fmt_ms(l.median_s),
            fmt_ms(l.p90_s),
            fmt_ms(l.jitter_s),
            l.loss_ratio * 100.0,
            l.sent
        );
    }
    for t in [&r.download, &r.upload].into_iter().flatten() {
        let name = if t.direction == Direction::Up {
            "upload  "
        } else {
            "download"
        };
        println!(
            "  {name}      {} TCP goodput, {} IP  ({:?} after {:.1} s, {:.0} MB, {} streams)",
            fmt_rate(t.goodput_bps),
            fmt_rate(t.ip_rate_bps),
            t.stop_reason,
            t.duration_s,
            t.bytes_total as f64 / 1e6,
            t.streams
        );
        println!(
            "                P10/P50/P90 {} / {} / {}, loaded latency {}",
            fmt_rate(t.samples.p10_bps),
            fmt_rate(t.samples.p50_bps),
            fmt_rate(t.samples.p90_bps),
            fmt_ms(t.loaded_latency.as_ref().and_then(|l| l.median_s))
        );
    }
    if let Some(radio) = &r.radio {
        print_radio(radio);
    }
    let target = |t: Option<f64>| t.map(fmt_rate).unwrap_or_else(|| "none".into());
    println!(
        "  verdict       down {:?} (target {}), up {:?} (target {})",
        r.verdict.down,
        target(r.verdict.target_down_bps),
        r.verdict.up,
        target(r.verdict.target_up_bps)
    );
    if !r.flags.is_empty() {
        println!("  flags         {:?}", r.flags);
    }
    println!(
        "  status        {:?}   methodology v{}   id {}",
        r.status.outcome, r.methodology_version, r.id
    );
}
