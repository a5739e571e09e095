//! `sonde-agent probe`: one measurement, printed as a summary a person reads or as
//! one JSON record, with live progress on a terminal.

use super::words;
use clap::ValueEnum;
use sonde_agent::engine::{self as probe};
use sonde_agent::net::netif;
use sonde_proto::{AccessKind, Direction, Engine, ResultRecord};
use std::io::{IsTerminal, Write};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// What to measure against: a sonde responder, http://HOST:PORT (e.g.
    /// http://192.0.2.10:8080); a stock iperf3 server, iperf3://HOST[:PORT] (port
    /// 5201 by default; no latency figures, see docs/METHODOLOGY.md §9); or a UDP
    /// Speed Test server such as OB-UDPST, udpst://HOST[:PORT] (port 24601 by
    /// default): IP-layer capacity by RFC 9097, the server searching the rate, each
    /// direction running the whole --max-duration (5 s at least; §10). A udpst URL's
    /// query may add jumbo (datagrams up to 9000 bytes above 1 Gb/s), key_file=PATH
    /// and key_id=N (authentication), connections=N (1 to 24) and version=N (11 to
    /// 20), e.g. udpst://192.0.2.10?connections=2&key_file=/etc/sonde/udpst.keys.
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
    /// Also measure responsiveness under working conditions (RPM, by
    /// draft-ietf-ippm-responsiveness-09) after the throughput: against the sonde
    /// responder's network-quality server (its --nq port), or --rpm-config. Each
    /// direction loads the path with up to 16 HTTP/2 connections while timing probes
    /// on new connections and on the loaded ones (up to 20 s each; METHODOLOGY §11).
    /// A responder URL https://HOST[:PORT]/.well-known/nq measures RPM alone.
    #[arg(long)]
    rpm: bool,
    /// The network-quality configuration to measure RPM against, e.g.
    /// https://192.0.2.10:8443/.well-known/nq (implies --rpm).
    #[arg(long, value_name = "URL")]
    rpm_config: Option<url::Url>,
    /// Trust the certificates in FILE (PEM) for RPM instead of the system's roots,
    /// e.g. what `sonde-responder --nq-self-signed-out` wrote.
    #[arg(long, value_name = "FILE")]
    rpm_ca: Option<std::path::PathBuf>,
    /// Also draw the test into FILE, an SVG picture: each direction's IP-layer rate
    /// per 100 ms bin (and per stream), the measured window, the figure, the target
    /// and the stop point, the round trips under load beside the idle median, and the
    /// test's identity. The collector draws the same picture of a stored result at
    /// /api/v1/results/ID/plot.svg.
    #[arg(long, value_name = "FILE")]
    plot: Option<std::path::PathBuf>,
    /// Fix the top of the picture's rate axis, Mb/s (e.g. 1200), so pictures of
    /// several tests compare; fitted to the test otherwise.
    #[arg(long, value_name = "MBPS", requires = "plot", value_parser = parse_positive)]
    plot_max_rate: Option<f64>,
    /// Fix the top of the picture's round-trip axis, milliseconds (e.g. 200).
    #[arg(long, value_name = "MS", requires = "plot", value_parser = parse_positive)]
    plot_max_rtt: Option<f64>,
}

fn parse_positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DirectionArg {
    Down,
    Up,
    Both,
}

fn parse_responder_url(s: &str) -> Result<url::Url, String> {
    probe::responder_url(s)
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

fn parse_size(s: &str) -> Result<u64, String> {
    sonde_agent::config::parse_bytes(s)
        .filter(|b| *b >= sonde_method::budget::MIN_DIRECTION_BYTES)
        .ok_or_else(|| {
            format!(
                "{s:?} is not a size of at least {} bytes (e.g. 50MB)",
                sonde_method::budget::MIN_DIRECTION_BYTES
            )
        })
}

pub fn command(args: ProbeArgs) {
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
        targets: sonde_method::verdict::default_targets(args.access),
        streams: args.streams,
        max_duration: Duration::from_secs_f64(args.max_duration),
        directions,
        idle_probes: args.idle_probes,
        idle_interval: Duration::from_millis(args.idle_interval),
        max_bytes: args.max_bytes,
        rpm: (args.rpm || args.rpm_config.is_some() || args.rpm_ca.is_some()).then(|| {
            probe::options::RpmOptions {
                config: args.rpm_config.clone(),
                ca: args.rpm_ca.clone(),
            }
        }),
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
            (AccessKind::Wifi, Some(name)) => Some(sonde_agent::context::wifi::context(name).await),
            (AccessKind::FourG, Some(name)) => {
                Some(sonde_agent::context::radio::lte(None, name).await)
            }
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
    // After the record is out: a picture that cannot be written loses no figure.
    if let Some(path) = &args.plot {
        write_plot(path, &record, (args.plot_max_rate, args.plot_max_rtt));
    }
    std::process::exit(if failed { 1 } else { 0 });
}

/// Draws `record` into `path`; exits 73 when the file cannot be written.
fn write_plot(
    path: &std::path::Path,
    record: &ResultRecord,
    (rate, rtt): (Option<f64>, Option<f64>),
) {
    let axes = sonde_plot::Axes {
        max_rate_bps: rate.map(|m| m * 1e6),
        max_rtt_s: rtt.map(|m| m / 1e3),
        max_time_s: None,
    };
    let svg = sonde_plot::svg(record, axes);
    if let Err(e) = sonde_cli::files::write_atomic(path, svg.as_bytes(), 0o644) {
        eprintln!("error: cannot write the picture to {}: {e}", path.display());
        std::process::exit(73);
    }
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

/// The verdict, the flags and the outcome with its reason, in words.
fn print_verdict_and_status(r: &ResultRecord) {
    let verdict = |v, t: Option<f64>| match t {
        Some(t) => format!("{} (target {})", words::verdict(v), fmt_rate(t)),
        None => words::verdict(v),
    };
    println!(
        "  verdict       down: {}; up: {}",
        verdict(r.verdict.down, r.verdict.target_down_bps),
        verdict(r.verdict.up, r.verdict.target_up_bps)
    );
    for f in &r.flags {
        println!("  flag          {}", words::flag(*f));
    }
    println!("  status        {}", words::outcome(r.status.outcome));
    if let Some(why) = r.status.reason {
        let detail = r
            .status
            .message
            .as_deref()
            .map(|m| format!(" ({m})"))
            .unwrap_or_default();
        println!("  because       {}{detail}", words::reason(why));
    } else if let Some(m) = &r.status.message {
        println!("  because       {m}");
    }
}

/// Responsiveness per direction, its grade and what it stands on.
fn print_rpm(rpm: &sonde_proto::Responsiveness) {
    for (name, f) in [("download", &rpm.down), ("upload  ", &rpm.up)] {
        let Some(f) = f else { continue };
        println!(
            "  {name} RPM  {:.0} ({}, confidence {}) under {} on {} connections",
            f.rpm,
            f.grade,
            f.confidence,
            fmt_rate(f.goodput_bps),
            f.connections
        );
        println!(
            "                foreign probes {} (TCP {}, TLS {}, GET {}), self probes {} (GET {})",
            f.foreign.count,
            fmt_ms(Some(f.foreign.tcp_s)),
            fmt_ms(Some(f.foreign.tls_s)),
            fmt_ms(Some(f.foreign.http_s)),
            f.self_probes.count,
            fmt_ms(Some(f.self_probes.http_s))
        );
    }
}

/// The RFC 9097 figures of a UDPST test, TR-471's names beside them.
fn print_capacity(c: &sonde_proto::Capacity) {
    for (name, f) in [("download", &c.down), ("upload  ", &c.up)] {
        let Some(f) = f else { continue };
        println!(
            "  {name}      {} maximum IP-layer capacity (sub-interval {} of {}, loss {:.2} %, RTT range {}, PDV range {})",
            fmt_rate(f.max_ip_capacity_bps),
            f.max_at,
            f.sub_interval_rates_bps.len(),
            f.loss_ratio_at_max * 100.0,
            fmt_ms(f.rtt_range_at_max_s),
            fmt_ms(f.pdv_range_at_max_s),
        );
    }
    println!(
        "  method        RFC 9097 over UDPST v{}, {} s per direction, {} s sub-intervals, search {}",
        c.protocol_version, c.test_s, c.sub_interval_s, c.rate_algorithm
    );
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
                Engine::Udpst => "udpst",
                Engine::Nq => "network-quality server",
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
            "  {name}      {} TCP goodput, {} IP  ({} after {:.1} s, {:.0} MB, {} streams)",
            fmt_rate(t.goodput_bps),
            fmt_rate(t.ip_rate_bps),
            words::stop(t.stop_reason),
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
    if let Some(c) = &r.capacity {
        print_capacity(c);
    }
    if let Some(rpm) = &r.responsiveness {
        print_rpm(rpm);
    }
    if let Some(radio) = &r.radio {
        print_radio(radio);
    }
    print_verdict_and_status(r);
    println!(
        "  record        methodology v{}, id {}",
        r.methodology_version, r.id
    );
}
