//! The command line: what each command takes (clap checks it before anything starts,
//! exit 64), one file per command, and what they share ([`common`]).

pub mod agent;
pub mod backup;
pub mod common;
pub mod import;
pub mod keys;
pub mod log;
pub mod migrate;
pub mod plan;
pub mod report;
pub mod serve;
pub mod token;

use clap::{Parser, Subcommand};
use sonde_cli::LogFormat;
use std::path::PathBuf;

/// sonde's collector: stores measurement results.
///
/// Example: sonde-collector serve --config /etc/sonde/collector.toml
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
pub struct Cli {
    /// Log line format (logs go to stderr; filter with RUST_LOG).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the collector: QUIC ingest and enrolment for agents, and the HTTP API
    /// (/healthz, /metrics, /api/v1/results, /api/v1/agents, /api/v1/reports,
    /// /api/v1/plans, /api/v1/log/checkpoint and the log's proofs).
    ///
    /// The config file (TOML) sets `data_dir` (the store data_dir/collector.sqlite and
    /// the CA, made on first start), `[http] listen` (default 127.0.0.1:9090) and
    /// `[quic] listen` (default 127.0.0.1:4433), `names`, `max_connections`, and
    /// `[store] url` (a PostgreSQL database several collectors share) with `seal_key`
    /// (the file that seals their CA and report key in it). Every problem in it is
    /// reported, with its field, before anything starts (exit 64).
    /// `[log] checkpoint_every` (default 60s) sets how often the transparency log's
    /// checkpoint is signed. Ctrl-C or SIGTERM stops it after the commits in flight.
    Serve {
        /// The configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Check a configuration file and report every problem, each with its field.
    ///
    /// Exit status: 0 when the file is valid, 64 otherwise (what the systemd unit's
    /// ExecStartPre relies on).
    CheckConfig {
        /// The configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Enrolment tokens for agents.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Enrolled agents.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// The collector's CA and report key: files in data_dir, or, with `[store]
    /// seal_key`, sealed in the PostgreSQL store several collectors share
    /// (docs/OPERATIONS.md, "Several collectors on PostgreSQL").
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Plans: what each building's box measures, when and against what, pushed to the
    /// agents over their QUIC connection (docs/OPERATIONS.md, "Plans").
    ///
    /// A plan file (TOML or JSON) holds [[group]] tables: a quartier, its buildings
    /// (none: every other building of the quartier), their [[group.access]] (the
    /// fields of agent.toml's [[access]]) and [[group.suppress]] windows. Every version
    /// is kept with its time of effect; a running collector pushes a new one to its
    /// connected agents within seconds, and to the others when they connect.
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Copy the store to a new file, consistently, while the collector runs.
    ///
    /// The copy holds every result acknowledged before it began (SQLite VACUUM INTO in
    /// one read transaction; ingest goes on meanwhile). Keys are not in it: back up
    /// the data directory's *.pem and *.key files once, beside it.
    ///
    /// Example: sonde-collector backup --out /srv/backup/collector-$(date +%F).sqlite
    Backup {
        /// The new file.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Copy a SQLite store into an empty PostgreSQL database, to share it among
    /// several collectors.
    ///
    /// Every table is copied as it is, row ids and the transparency log included, so
    /// the log's root, inclusion proofs and signed checkpoints stay valid. Then both
    /// sides are counted table by table, every result is read back from both and
    /// digested (SHA-256), and both logs' roots are compared: any difference is an
    /// error (exit 1). Stop the collector first; then set `[store] url` in its
    /// configuration. The SQLite file is left as it was.
    ///
    /// Example: sonde-collector migrate --from sqlite:/var/lib/sonde-collector/collector.sqlite
    ///     --to postgres://sonde:PASSWORD@db.example:5432/sonde
    Migrate {
        /// The SQLite store: sqlite:PATH.
        #[arg(long, value_name = "sqlite:PATH")]
        from: String,
        /// The PostgreSQL database (empty; migrated to sonde's schema first).
        #[arg(long, value_name = "postgres://…")]
        to: String,
    },
    /// Replace the store with a backup. Stop the collector first.
    ///
    /// The backup is checked (SQLite integrity, a sonde store, a schema this collector
    /// knows) before anything changes; the store it replaces is kept beside it as
    /// collector.sqlite.before-restore-TIME.
    ///
    /// Example: sonde-collector restore --from /srv/backup/collector-2026-11-29.sqlite
    Restore {
        /// The backup file.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Load results as `sonde-agent probe --json` prints them, one per line.
    ///
    /// Each line is checked on its own: rejected lines are reported with their number
    /// and reason, the others are stored (a result id already stored is skipped).
    /// Exit status: 0 when every line was stored or already there, 65 when some lines
    /// were rejected, 66 when the file cannot be read.
    Import {
        /// The JSON-lines file.
        #[arg(long, value_name = "RESULTS.jsonl")]
        file: PathBuf,
        /// The collector's configuration: results go to its store.
        #[arg(long, value_name = "FILE", conflicts_with = "db")]
        config: Option<PathBuf>,
        /// A SQLite store to use instead of a configuration's (created when missing).
        #[arg(long, value_name = "PATH")]
        db: Option<PathBuf>,
    },
    /// Signed compliance report for a period and a scope (docs/METHODOLOGY.md §7).
    ///
    /// Per building access: tests scheduled, run and valid, time covered, download and
    /// upload P10/median/P90, share of tests meeting the target, ARCEP's 3/8/30 Mb/s
    /// shares for 4G, peak-hour (19:00-23:00 local) median, 80/80 consistent speed,
    /// latency and loss; rolled up per quartier and for the scope. The report, its
    /// manifest of SHA-256 digests (STEM.manifest.json) and the manifest's Ed25519
    /// signature (STEM.manifest.sig) are written together; `--format csv` adds the raw
    /// results (STEM.results.csv). With them, the transparency log's checkpoint the
    /// report was built on (STEM.checkpoint, signed then) and every result's inclusion
    /// proof in it (STEM.proofs.jsonl); exit 1 when a result is not what the log holds.
    ///
    /// Examples:
    ///   sonde-collector report --from 2026-11-01 --to 2026-11-30 --format html --out nov.html
    ///   sonde-collector report --from 2026-11-01 --to 2026-11-30 --quartier paris-13 --format csv
    ///   sonde-collector report verify nov.html --key sonde-report-key.pub
    #[command(
        verbatim_doc_comment,
        args_conflicts_with_subcommands = true,
        subcommand_negates_reqs = true
    )]
    Report {
        #[command(subcommand)]
        action: Option<ReportAction>,
        #[command(flatten)]
        args: ReportArgs,
    },
    /// The transparency log of stored results: every result the collector stores is
    /// appended to an append-only Merkle tree (RFC 6962 hashing), and a signed
    /// checkpoint of it is made every `[log] checkpoint_every` (docs/OPERATIONS.md,
    /// "Transparency log").
    #[command(subcommand)]
    Log(LogCommand),
}

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Check that a collector's log never rewrites history.
    ///
    /// Fetches the latest checkpoint, checks its signature with the collector's key,
    /// and checks that it extends the last checkpoint seen (an RFC 6962 consistency
    /// proof from the collector).
    ///
    /// What was seen is kept in --state between runs, so a monitor run from cron
    /// notices a rewrite between two runs. Exit status: 0 when every checkpoint
    /// checked, 1 when one did not (bad signature, a shrunk log, a proof that fails),
    /// 69 when the collector could not be reached or answered nonsense.
    ///
    /// Examples:
    ///   sonde-collector log verify --url http://collector:9090 --key sonde-report-key.pub --state log.json
    ///   sonde-collector log verify --url http://collector:9090 --key sonde-report-key.pub --every 60s --count 0
    #[command(verbatim_doc_comment)]
    Verify {
        /// The collector's HTTP API.
        #[arg(long, value_name = "URL")]
        url: String,
        /// The collector's public key (as `report key` prints it); without it a
        /// checkpoint proves nothing, so it is required.
        #[arg(long, value_name = "FILE", env = "SONDE_REPORT_KEY")]
        key: PathBuf,
        /// Where the last checkpoint seen is kept between runs (JSON; created).
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
        /// Checks this many times (0: until stopped).
        #[arg(long, default_value_t = 1, value_name = "N")]
        count: u64,
        /// Time between two checks.
        #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = humantime::parse_duration)]
        every: std::time::Duration,
    },
}

/// `--config FILE`, shared by the commands that work on a collector's state.
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// The collector's configuration (its data_dir holds the store, the CA and the keys).
    #[arg(
        long = "config",
        value_name = "FILE",
        env = "SONDE_COLLECTOR_CONFIG",
        default_value = "/etc/sonde/collector.toml"
    )]
    pub path: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// First day of the period (YYYY-MM-DD, local to the report's time zone), or an
    /// RFC 3339 instant.
    #[arg(long, value_name = "DATE", required = true)]
    pub from: Option<String>,
    /// Last day of the period, included (YYYY-MM-DD), or an RFC 3339 instant (excluded).
    #[arg(long, value_name = "DATE", required = true)]
    pub to: Option<String>,
    /// Only this quartier.
    #[arg(long, value_name = "ID")]
    pub quartier: Option<String>,
    /// Only this building.
    #[arg(long, value_name = "ID")]
    pub building: Option<String>,
    /// Output format.
    #[arg(long, value_enum, required = true)]
    pub format: Option<sonde_collector::report::render::Format>,
    /// The report file (default: sonde-report-FROM-TO[-QUARTIER].EXT here).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Time zone of the sites (default: the config's report.time_zone, Europe/Paris).
    #[arg(long, value_name = "IANA")]
    pub time_zone: Option<String>,
    /// Language of HTML and PDF pages (default: French when the time zone is in
    /// France, English otherwise). JSON and CSV keep their English field names.
    #[arg(long, value_enum)]
    pub lang: Option<sonde_collector::report::render::Lang>,
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// List the agents: id, quartier, building, version, last seen, results, state.
    List {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Revoke an agent (a lost or replaced box): from its next connection, its uploads
    /// are refused with the reason `revoked`. Its results already stored stay; the ones
    /// on the box stay in its spool. Enrol the box again with a new token to resume.
    ///
    /// Example: sonde-collector agent revoke b42-3f9c1a
    Revoke {
        /// The agent's id (see `agent list` or /api/v1/agents).
        #[arg(value_name = "ID")]
        id: String,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Check a plan file and make it the plan in force.
    ///
    /// Every problem is reported at once, with its path (group[0].access[1].every),
    /// and nothing changes (exit 64). A plan equal to the one in force makes no new
    /// version. The agents of a building get its group; a building no group covers
    /// keeps running its agent.toml.
    ///
    /// Example: sonde-collector plan apply --file plans/2026-12.toml
    #[command(verbatim_doc_comment)]
    Apply {
        /// The plan (TOML, or JSON when it starts with `{`).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Only check the file; apply nothing.
        #[arg(long)]
        check: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Print a plan version (default: the one in force) as TOML, or its history.
    ///
    /// Examples:
    ///   sonde-collector plan show
    ///   sonde-collector plan show --version 3 --quartier paris-13 --building b42
    ///   sonde-collector plan show --history
    #[command(verbatim_doc_comment)]
    Show {
        /// The version (default: the latest).
        #[arg(long, value_name = "N")]
        version: Option<u64>,
        /// Only the group a building of this quartier gets (with --building).
        #[arg(long, value_name = "ID", requires = "building")]
        quartier: Option<String>,
        /// Only the group this building gets (with --quartier).
        #[arg(long, value_name = "ID", requires = "quartier")]
        building: Option<String>,
        /// Every version with its time of effect, instead of a document.
        #[arg(long, conflicts_with_all = ["version", "quartier"])]
        history: bool,
        /// JSON instead of TOML.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// What would change: a file against the plan in force, or two versions.
    ///
    /// Lines read `+` added, `-` removed, `~ ... before -> after` changed.
    ///
    /// Examples:
    ///   sonde-collector plan diff --file plans/2026-12.toml
    ///   sonde-collector plan diff --from 2 --to 3
    #[command(verbatim_doc_comment)]
    Diff {
        /// A plan file, compared with the plan in force (or with --from).
        #[arg(long, value_name = "FILE", conflicts_with = "to")]
        file: Option<PathBuf>,
        /// The older version (default: the one in force).
        #[arg(long, value_name = "N")]
        from: Option<u64>,
        /// The newer version.
        #[arg(long, value_name = "N")]
        to: Option<u64>,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReportAction {
    /// Check a report's signature and every file's digest; names the file that changed.
    ///
    /// FILE is the report, its raw results, its manifest or its signature. The report
    /// must be signed by the trusted key given with --key (or pinned in
    /// SONDE_REPORT_KEY): the collector's public key, as `report key` prints it there.
    /// Without a trusted key, a forger's report would check against the forger's own
    /// key: the digests are still checked, but the signature is untrusted.
    ///
    /// With the key, the log's proof is checked too: the checkpoint's signature, every
    /// result's inclusion proof, and that every result of the raw results has one.
    ///
    /// Exit status: 0 valid, 1 invalid, 2 untrusted (no --key), 64 bad arguments.
    ///
    /// Example (on the collector, then anywhere):
    ///   sonde-collector report key --config /etc/sonde/collector.toml > sonde-report-key.pub
    ///   sonde-collector report verify nov.html --key sonde-report-key.pub
    #[command(verbatim_doc_comment)]
    Verify {
        /// A file of the report.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The collector's public report key (as `report key` prints it).
        #[arg(long, value_name = "FILE", env = "SONDE_REPORT_KEY")]
        key: Option<PathBuf>,
    },
    /// Print the collector's public report key, for verifiers: `ed25519 <hex>`.
    Key {
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Replace the report key or the CA with a new one.
    ///
    /// With `[store] seal_key`, the new key is sealed in the database for every
    /// collector on it; otherwise it is written in data_dir. The old key's files in
    /// data_dir are moved aside (NAME.before-rotation-UNIXTIME). Running collectors
    /// on a store with sealed keys sign with a new report key within 5 s; otherwise,
    /// and for a new CA, restart them.
    ///
    /// --report-key prints the new public key (as `report key` does): publish it;
    /// reports signed before verify with the old one only. --ca makes a new CA: every
    /// box must then be enrolled again (a new token each), its results waiting in its
    /// spool meanwhile. Run it as the collector's user (runuser -u sonde-collector
    /// --), so the files it writes stay readable by the collector.
    ///
    /// Examples:
    ///   sonde-collector keys rotate --report-key > sonde-report-key.pub
    ///   sonde-collector keys rotate --ca --config /etc/sonde/collector.toml
    #[command(
        verbatim_doc_comment,
        group(clap::ArgGroup::new("which").required(true).args(["report_key", "ca"]))
    )]
    Rotate {
        /// Rotate the report key (signs reports and log checkpoints).
        #[arg(long)]
        report_key: bool,
        /// Rotate the CA (signs the collectors' and the agents' certificates).
        #[arg(long)]
        ca: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a one-time, expiring token that enrols one agent in one building.
    ///
    /// Give it to the operator installing the box, who runs
    /// `sonde-agent enroll --collector HOST:PORT --token TOKEN`. The token carries the
    /// fingerprint of this collector's CA, so the agent can authenticate the collector
    /// on first contact. Only a hash of its secret is stored.
    ///
    /// Example: sonde-collector token create --building b42 --quartier paris-13 --ttl 2d
    Create {
        /// Building id the agent will report for.
        #[arg(long, value_name = "ID")]
        building: String,
        /// Quartier (district) id.
        #[arg(long, value_name = "ID")]
        quartier: String,
        /// How long the token can be used, e.g. 30m, 2d (default 7d).
        #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_ttl)]
        ttl: std::time::Duration,
        /// WGS84 latitude of the building, for maps.
        #[arg(long, allow_hyphen_values = true, value_parser = parse_latitude)]
        latitude: Option<f64>,
        /// WGS84 longitude of the building, for maps.
        #[arg(long, allow_hyphen_values = true, value_parser = parse_longitude)]
        longitude: Option<f64>,
        #[command(flatten)]
        config: ConfigArg,
    },
}

fn parse_ttl(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))?;
    if d < std::time::Duration::from_secs(60) || d > std::time::Duration::from_secs(366 * 86400) {
        return Err(format!("{s:?} is outside 1m..=366d"));
    }
    Ok(d)
}

fn parse_latitude(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (-90.0..=90.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a latitude in -90..=90")),
    }
}

fn parse_longitude(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (-180.0..=180.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a longitude in -180..=180")),
    }
}
