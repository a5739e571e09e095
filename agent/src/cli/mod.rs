//! The command line: what each command takes, checked by clap before anything starts
//! (exit 64 on a bad argument). One file per command.

pub mod check;
pub mod enroll;
pub mod key;
pub mod probe;
pub mod run;
pub mod status;
pub mod words;

use clap::{Parser, Subcommand};
use sonde_cli::LogFormat;

/// sonde's agent: measures broadband accesses against a sonde responder.
///
/// Start with `sonde-agent probe --responder http://HOST:PORT`: one measurement of
/// idle latency, then download and upload on 8 parallel TCP streams, each stopped as
/// soon as its rate is stable (at most 10 s per direction). Every figure is defined in
/// docs/METHODOLOGY.md.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
pub struct Cli {
    /// Log line format (logs go to stderr; filter with RUST_LOG, e.g. RUST_LOG=debug).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Measure one access once and print the result.
    ///
    /// Example, on the FTTH port of a box:
    ///
    /// sonde-agent probe --responder http://responder.example:8080 --interface eth1 --access ftth
    ///
    /// Exit status: 0 when figures were obtained (possibly partial, see `status`),
    /// 1 when the measurement failed, 64 for bad arguments.
    Probe(Box<probe::ProbeArgs>),
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
    /// The key that signs this box's results: print it, or rotate it.
    ///
    /// Each result is signed by the agent's own Ed25519 key (not its TLS key), and the
    /// collector checks every result against the key it recorded for the agent
    /// (docs/METHODOLOGY.md §7.6).
    Key {
        #[command(subcommand)]
        action: KeyAction,
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

/// What `sonde-agent key` does.
#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// Print the public signing key, as the collector records it.
    ///
    /// A report's STEM.agents.json lists each box's key: compare them on the box.
    Show {
        /// The agent's state directory.
        #[arg(long, value_name = "DIR", default_value = "/var/lib/sonde")]
        state_dir: std::path::PathBuf,
    },
    /// Replace the signing key by a new one, made here; stop the agent first.
    ///
    /// The rotation is a statement signed by the old key and chained like a result:
    /// it goes up with the next results, and the collector accepts the new key
    /// because the old one vouched for it. The old key is kept as
    /// signing-key.retired-PLACE.pk8; delete it once the rotation is uploaded if it
    /// may have leaked.
    ///
    /// Exit status: 0 rotated, 1 failed, 69 while the agent runs.
    Rotate {
        /// The agent's state directory.
        #[arg(long, value_name = "DIR", default_value = "/var/lib/sonde")]
        state_dir: std::path::PathBuf,
    },
}

fn parse_token(s: &str) -> Result<sonde_proto::wire::EnrolToken, String> {
    s.parse()
}
