//! `sonde-collector`: enrols agents, ingests their results over QUIC, stores them and
//! serves them. Commands: `serve`, `token create`, `import`, `report`.

use clap::{Parser, Subcommand};
use sonde_cli::LogFormat;
use sonde_collector::ingest::{self, Ingest};
use sonde_collector::pki::Ca;
use sonde_collector::{config, http, quic};
use sonde_proto::ResultRecord;
use sonde_store::{
    Delivery, Enrolments, Inserted, Maintenance, NewToken, ResultReader, ResultWriter, Store,
};
use sonde_store_sqlite::SqliteStore;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// sonde's collector: stores measurement results.
///
/// Example: sonde-collector serve --config /etc/sonde/collector.toml
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// Log line format (logs go to stderr; filter with RUST_LOG).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the collector: QUIC ingest and enrolment for agents, and the HTTP API
    /// (/healthz, /api/v1/results, /api/v1/agents).
    ///
    /// The config file (TOML) sets `data_dir` (the store data_dir/collector.sqlite and
    /// the CA, made on first start), `[http] listen` (default 127.0.0.1:9090) and
    /// `[quic] listen` (default 127.0.0.1:4433), `names`, `max_connections`. Every
    /// problem in it is reported, with its field, before anything starts (exit 64).
    /// Ctrl-C or SIGTERM stops it after the commits in flight.
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
    /// results (STEM.results.csv).
    ///
    /// Examples:
    ///   sonde-collector report --from 2026-11-01 --to 2026-11-30 --format html --out nov.html
    ///   sonde-collector report --from 2026-11-01 --to 2026-11-30 --quartier paris-13 --format csv
    ///   sonde-collector report verify nov.html --key report-key.pub
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Report {
        #[command(subcommand)]
        action: Option<ReportAction>,
        #[command(flatten)]
        args: ReportArgs,
    },
}

/// `--config FILE`, shared by the commands that work on a collector's state.
#[derive(Debug, clap::Args)]
struct ConfigArg {
    /// The collector's configuration (its data_dir holds the store, the CA and the keys).
    #[arg(
        long = "config",
        value_name = "FILE",
        env = "SONDE_COLLECTOR_CONFIG",
        default_value = "/etc/sonde/collector.toml"
    )]
    path: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// First day of the period (YYYY-MM-DD, local to the report's time zone), or an
    /// RFC 3339 instant.
    #[arg(long, value_name = "DATE", required = true)]
    from: Option<String>,
    /// Last day of the period, included (YYYY-MM-DD), or an RFC 3339 instant (excluded).
    #[arg(long, value_name = "DATE", required = true)]
    to: Option<String>,
    /// Only this quartier.
    #[arg(long, value_name = "ID")]
    quartier: Option<String>,
    /// Only this building.
    #[arg(long, value_name = "ID")]
    building: Option<String>,
    /// Output format.
    #[arg(long, value_enum, required = true)]
    format: Option<sonde_collector::report::render::Format>,
    /// The report file (default: sonde-report-FROM-TO[-QUARTIER].EXT here).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Time zone of the sites (default: the config's report.time_zone, Europe/Paris).
    #[arg(long, value_name = "IANA")]
    time_zone: Option<String>,
    #[command(flatten)]
    config: ConfigArg,
}

#[derive(Debug, Subcommand)]
enum AgentCommand {
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
enum ReportAction {
    /// Check a report's signature and every file's digest; names the file that changed.
    ///
    /// FILE is the report, its raw results, its manifest or its signature. With --key
    /// (the output of `report key`), the report must be signed by that key; without it,
    /// the key inside the manifest is used and its id printed, to compare with the
    /// collector's published one. Exit status: 0 valid, 1 invalid, 64 bad arguments.
    Verify {
        /// A file of the report.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The collector's public report key (as `report key` prints it).
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
    },
    /// Print the collector's public report key, for verifiers: `ed25519 <hex>`.
    Key {
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
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

/// Name of the collector's CA.
const CA_NAME: &str = "sonde collector CA";

/// Results committed per transaction while importing.
const IMPORT_BATCH: usize = 1000;

fn main() {
    let cli: Cli = sonde_cli::parse_or_exit();
    sonde_cli::init_logging(cli.log_format);
    let code = match cli.command {
        Command::Serve { config } => serve(&config),
        Command::CheckConfig { config } => {
            let c = load_config(&config);
            println!(
                "{}: valid (store {}, HTTP {}, QUIC {})",
                config.display(),
                c.store_path.display(),
                c.http_listen,
                c.quic_listen
            );
            0
        }
        Command::Token(TokenCommand::Create {
            building,
            quartier,
            ttl,
            latitude,
            longitude,
            config,
        }) => token_create(&config.path, building, quartier, ttl, latitude, longitude),
        Command::Import { file, config, db } => {
            let db = match (config, db) {
                (_, Some(db)) => db,
                (Some(config), None) => load_config(&config).store_path,
                (None, None) => sonde_cli::usage_error(
                    "import needs --config FILE (the collector's) or --db PATH",
                ),
            };
            import(&file, &db)
        }
        Command::Agent(AgentCommand::Revoke { id, config }) => agent_revoke(&config.path, &id),
        Command::Backup { out, config } => backup(&config.path, &out),
        Command::Restore { from, config } => restore(&config.path, &from),
        Command::Agent(AgentCommand::List { config }) => agent_list(&config.path),
        Command::Report { action, args } => match action {
            Some(ReportAction::Verify { file, key }) => report_verify(&file, key.as_deref()),
            Some(ReportAction::Key { config }) => report_key(&config.path),
            None => report(args),
        },
    };
    std::process::exit(code);
}

fn report(args: ReportArgs) -> i32 {
    use sonde_collector::report::{self, sign::ReportKey};
    let (Some(from), Some(to), Some(format)) = (args.from, args.to, args.format) else {
        sonde_cli::usage_error("report needs --from DATE --to DATE --format csv|json|html");
    };
    let config = load_config(&args.config.path);
    let tz = match &args.time_zone {
        Some(t) => t.parse::<chrono_tz::Tz>().unwrap_or_else(|_| {
            sonde_cli::usage_error(format!(
                "--time-zone {t:?} is not an IANA time zone (e.g. Europe/Paris)"
            ))
        }),
        None => config.time_zone,
    };
    let (from_t, to_t) =
        report::parse_period(&from, &to, tz).unwrap_or_else(|e| sonde_cli::usage_error(e));
    if !config.store_path.exists() {
        eprintln!(
            "error: no store at {} (has this collector run?)",
            config.store_path.display()
        );
        return 1;
    }
    let Some(store) = open_store(&config.store_path) else {
        return 1;
    };
    let key = match ReportKey::load_or_create(&config.data_dir) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: the report key: {e}");
            return 1;
        }
    };
    let out = args.out.unwrap_or_else(|| {
        PathBuf::from(report::file_name(
            from_t,
            to_t,
            tz,
            args.quartier.as_deref(),
            args.building.as_deref(),
            format,
        ))
    });
    let request = report::Request {
        scope: sonde_store::ReportScope {
            quartier: args.quartier,
            building: args.building,
            from: from_t,
            to: to_t,
        },
        time_zone: tz,
        generated_at: chrono::Utc::now(),
    };
    if let Err(e) = report::check_scope(&store, &request.scope) {
        sonde_cli::usage_error(e);
    }
    eprintln!(
        "reporting {} to {} ({})…",
        from_t.to_rfc3339(),
        to_t.to_rfc3339(),
        tz.name()
    );
    match report::write(&store, &key, &request, format, &out) {
        Ok(w) => {
            if w.report.data.no_data {
                eprintln!("no data: no result of this scope was stored for this period");
            }
            for f in &w.files {
                println!("{}", f.display());
            }
            println!("{}", w.manifest.display());
            println!("{}", w.signature.display());
            eprintln!(
                "{} results, {} building accesses; signed with report key {}",
                w.report.data.results,
                w.report.accesses.len(),
                key.key_id()
            );
            0
        }
        Err(
            e @ (report::ReportError::UnknownQuartier(_)
            | report::ReportError::UnknownBuilding(_)
            | report::ReportError::Period { .. }),
        ) => sonde_cli::usage_error(e),
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn backup(config: &Path, out: &Path) -> i32 {
    let config = load_config(config);
    if !config.store_path.exists() {
        eprintln!("error: no store at {}", config.store_path.display());
        return 1;
    }
    let Some(store) = open_store(&config.store_path) else {
        return 1;
    };
    let started = std::time::Instant::now();
    eprintln!(
        "copying {} to {}…",
        config.store_path.display(),
        out.display()
    );
    if let Err(e) = store.backup(out) {
        eprintln!("error: backup to {}: {e}", out.display());
        return 1;
    }
    match SqliteStore::check_backup(out) {
        Ok(results) => {
            println!(
                "{}: {results} results, {} bytes, in {:.1} s",
                out.display(),
                std::fs::metadata(out).map(|m| m.len()).unwrap_or(0),
                started.elapsed().as_secs_f64()
            );
            0
        }
        Err(e) => {
            eprintln!("error: the backup {} does not check: {e}", out.display());
            1
        }
    }
}

fn restore(config: &Path, from: &Path) -> i32 {
    let config = load_config(config);
    // A running collector holds the store: never swap it underneath.
    if std::net::TcpStream::connect_timeout(
        &config.http_listen,
        std::time::Duration::from_millis(500),
    )
    .is_ok()
    {
        sonde_cli::usage_error(format!(
            "a collector answers on {}; stop it before restoring",
            config.http_listen
        ));
    }
    let results = match SqliteStore::check_backup(from) {
        Ok(n) => n,
        Err(e) => sonde_cli::usage_error(format!("{}: not a usable backup: {e}", from.display())),
    };
    let store = &config.store_path;
    if let Some(dir) = store.parent() {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("error: {}: {e}", dir.display());
            return 1;
        }
    }
    let tmp = store.with_extension("sqlite.restoring");
    if let Err(e) = std::fs::copy(from, &tmp).and_then(|_| std::fs::File::open(&tmp)?.sync_all()) {
        eprintln!("error: copying to {}: {e}", tmp.display());
        return 1;
    }
    if store.exists() {
        let kept = store.with_extension(format!(
            "sqlite.before-restore-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        ));
        if let Err(e) = std::fs::rename(store, &kept) {
            eprintln!("error: moving {} aside: {e}", store.display());
            return 1;
        }
        eprintln!("the previous store is kept as {}", kept.display());
    }
    for suffix in ["sqlite-wal", "sqlite-shm"] {
        let _ = std::fs::remove_file(store.with_extension(suffix));
    }
    if let Err(e) = std::fs::rename(&tmp, store) {
        eprintln!("error: {}: {e}", store.display());
        return 1;
    }
    // Opening applies any migration the backup lacks.
    if open_store(store).is_none() {
        return 1;
    }
    println!("restored {results} results into {}", store.display());
    0
}

fn agent_revoke(config: &Path, id: &str) -> i32 {
    let config = load_config(config);
    let Some(store) = open_store(&config.store_path) else {
        return 1;
    };
    match store.revoke(id, chrono::Utc::now()) {
        Ok(true) => {
            let at = store.revoked_at(id).ok().flatten();
            println!(
                "revoked {id} ({}); refused from its next connection",
                at.map(|t| t.to_rfc3339()).unwrap_or_default()
            );
            0
        }
        Ok(false) => sonde_cli::usage_error(format!(
            "unknown agent {id:?} (see sonde-collector agent list)"
        )),
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn agent_list(config: &Path) -> i32 {
    let config = load_config(config);
    let Some(store) = open_store(&config.store_path) else {
        return 1;
    };
    match store.agents() {
        Ok(agents) => {
            println!(
                "{:<28} {:<14} {:<14} {:<9} {:<20} {:>9}  state",
                "agent", "quartier", "building", "version", "last seen", "results"
            );
            for a in agents {
                println!(
                    "{:<28} {:<14} {:<14} {:<9} {:<20} {:>9}  {}",
                    a.id,
                    a.quartier.unwrap_or_default(),
                    a.building.unwrap_or_default(),
                    a.version.unwrap_or_default(),
                    a.last_seen.format("%Y-%m-%d %H:%M:%S"),
                    a.results,
                    match a.revoked_at {
                        Some(t) => format!("revoked {}", t.format("%Y-%m-%d")),
                        None => "active".into(),
                    }
                );
            }
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn report_verify(file: &Path, key: Option<&Path>) -> i32 {
    use sonde_collector::report::sign;
    let public = match key {
        Some(k) => match std::fs::read_to_string(k)
            .map_err(|e| format!("{}: {e}", k.display()))
            .and_then(|t| sign::parse_public(&t).map_err(|e| format!("{}: {e}", k.display())))
        {
            Ok(p) => Some(p),
            Err(e) => sonde_cli::usage_error(e),
        },
        None => None,
    };
    match sign::verify(file, public.as_deref()) {
        Ok(v) => {
            for f in &v.files {
                println!("ok {} ({} bytes, sha256 {})", f.name, f.bytes, f.sha256);
            }
            if v.pinned {
                println!("valid: signed by the given key {}", v.key_id);
            } else {
                println!(
                    "valid: signed by key {} (pass --key with the collector's public key to check it is theirs)",
                    v.key_id
                );
            }
            0
        }
        Err(e) => {
            eprintln!("invalid: {e}");
            1
        }
    }
}

fn report_key(config: &Path) -> i32 {
    let config = load_config(config);
    match sonde_collector::report::sign::ReportKey::load_or_create(&config.data_dir) {
        Ok(k) => {
            println!("{}", k.public_text());
            eprintln!("key id {}", k.key_id());
            0
        }
        Err(e) => {
            eprintln!("error: the report key: {e}");
            1
        }
    }
}

/// Opens the store at `path`, creating its directory; reports why not on one line.
fn open_store(path: &Path) -> Option<SqliteStore> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("error: cannot create {}: {e}", dir.display());
            return None;
        }
    }
    SqliteStore::open(path)
        .map_err(|e| eprintln!("error: cannot open the store {}: {e}", path.display()))
        .ok()
}

/// Loads the configuration or reports every problem and exits 64.
fn load_config(path: &Path) -> config::Checked {
    match config::load(path) {
        Ok(c) => c,
        Err(problems) => {
            for p in &problems {
                eprintln!("error: {p}");
            }
            std::process::exit(sonde_cli::EXIT_USAGE);
        }
    }
}

fn serve(config_path: &Path) -> i32 {
    let config = load_config(config_path);
    let store: Arc<dyn Store> = match open_store(&config.store_path) {
        Some(s) => Arc::new(s),
        None => return 1,
    };
    let ca = match Ca::load_or_create(&config.data_dir, CA_NAME) {
        Ok(ca) => Arc::new(ca),
        Err(e) => {
            eprintln!("error: the collector's CA: {e}");
            return 1;
        }
    };
    let runtime = sonde_cli::runtime_or_exit();
    match runtime.block_on(run(config, store, ca)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

async fn run(config: config::Checked, store: Arc<dyn Store>, ca: Arc<Ca>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let server_cert = ca
        .issue_server(config.quic_names.clone())
        .context("server certificate")?;
    let quic_config = quic::server_config(&ca, server_cert).context("QUIC configuration")?;
    let endpoint = quic::endpoint(config.quic_listen, quic_config, &config.data_dir)
        .with_context(|| format!("cannot listen on udp {}", config.quic_listen))?;
    let registry = prometheus::Registry::new();
    let fleet = Arc::new(sonde_collector::fleet::Fleet::new(config.silent_horizon));
    let started = std::time::Instant::now();
    let rebuilt = fleet
        .rebuild(store.as_ref())
        .context("rebuilding the metrics")?;
    tracing::info!(
        accesses = rebuilt,
        took_ms = started.elapsed().as_millis() as u64,
        "metrics rebuilt from the store"
    );
    let ingest = Arc::new(Ingest::new(
        store.clone(),
        Some(ca),
        Some(fleet),
        sonde_proto::wire::DEFAULT_MAX_PAYLOAD,
    ));
    let exporter = Arc::new(sonde_collector::metrics::Exporter::new(
        ingest.clone(),
        registry,
    ));
    let reports = Arc::new(http::Reports {
        key: sonde_collector::report::sign::ReportKey::load_or_create(&config.data_dir)
            .context("the report key")?,
        time_zone: config.time_zone,
    });
    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http_listen))?;
    let local = listener.local_addr()?;
    tracing::info!(
        http = %local,
        quic = %endpoint.local_addr()?,
        names = ?config.quic_names,
        store = %config.store_path.display(),
        "collector listening"
    );
    let retention_task = (config.raw_months > 0).then(|| {
        let (store, months) = (store.clone(), config.raw_months);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
            loop {
                tick.tick().await;
                let store = store.clone();
                let pruned = tokio::task::spawn_blocking(move || prune(&*store, months)).await;
                match pruned {
                    Ok(Ok(0)) | Err(_) => {}
                    Ok(Ok(n)) => {
                        tracing::info!(results = n, months, "raw results past retention deleted")
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "retention failed"),
                }
            }
        })
    });
    let quic_task = tokio::spawn(quic::serve(
        endpoint.clone(),
        ingest.clone(),
        config.max_connections,
    ));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = hyper::server::conn::http1::Builder::new();
    let stop = sonde_cli::shutdown_signal();
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let (store, exporter, reports) = (store.clone(), exporter.clone(), reports.clone());
        let service = hyper::service::service_fn(move |req| {
            http::handle(
                store.clone(),
                Some(exporter.clone()),
                Some(reports.clone()),
                req,
            )
        });
        let conn =
            graceful.watch(builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    tracing::info!("collector stopping");
    // Agents whose batch was not acknowledged keep it and send it again later.
    endpoint.close(0u32.into(), b"collector stopping");
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), graceful.shutdown()).await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), endpoint.wait_idle()).await;
    quic_task.abort();
    if let Some(t) = retention_task {
        t.abort();
    }
    Ok(())
}

/// Deletes the raw results older than `months`, in chunks so ingest never waits long.
fn prune(store: &dyn Store, months: u32) -> Result<usize, sonde_store::StoreError> {
    let Some(before) = chrono::Utc::now().checked_sub_months(chrono::Months::new(months)) else {
        return Ok(0);
    };
    let mut total = 0;
    for _ in 0..10_000 {
        let n = store.prune(before, 5_000)?;
        total += n;
        if n < 5_000 {
            break;
        }
    }
    Ok(total)
}

fn token_create(
    config_path: &Path,
    building: String,
    quartier: String,
    ttl: std::time::Duration,
    latitude: Option<f64>,
    longitude: Option<f64>,
) -> i32 {
    for (flag, v) in [("--building", &building), ("--quartier", &quartier)] {
        if v.trim().is_empty() {
            sonde_cli::usage_error(format!("{flag} must not be empty"));
        }
    }
    let config = load_config(config_path);
    let Some(store) = open_store(&config.store_path) else {
        return 1;
    };
    let ca = match Ca::load_or_create(&config.data_dir, CA_NAME) {
        Ok(ca) => ca,
        Err(e) => {
            eprintln!("error: the collector's CA: {e}");
            return 1;
        }
    };
    let token = ingest::new_token(&ca);
    let now = chrono::Utc::now();
    let expires_at = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(7));
    let row = NewToken {
        hash: ingest::token_hash(&token),
        quartier: quartier.clone(),
        building: building.clone(),
        latitude,
        longitude,
        created_at: now,
        expires_at,
    };
    if let Err(e) = store.create_token(&row) {
        eprintln!("error: storing the token: {e}");
        return 1;
    }
    println!("{token}");
    eprintln!(
        "one-time token for building {building} (quartier {quartier}), valid until {}.\n\
         On the box: sonde-agent enroll --collector {}:{} --token <the token above>",
        expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        config
            .quic_names
            .first()
            .map(String::as_str)
            .unwrap_or("HOST"),
        config.quic_listen.port()
    );
    0
}

fn import(file: &Path, db: &Path) -> i32 {
    let input = match std::fs::File::open(file) {
        Ok(f) => std::io::BufReader::new(f),
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return 66;
        }
    };
    let Some(store) = open_store(db) else {
        return 1;
    };
    let now = chrono::Utc::now();
    let mut total = Inserted::default();
    let mut rejected = 0usize;
    let mut batch: Vec<(Delivery, ResultRecord)> = Vec::new();
    let flush = |batch: &mut Vec<(Delivery, ResultRecord)>, total: &mut Inserted| -> bool {
        // Group consecutive records of one agent into one commit.
        while !batch.is_empty() {
            let first = batch[0].0.clone();
            let n = batch.iter().take_while(|(d, _)| *d == first).count();
            let records: Vec<ResultRecord> = batch.drain(..n).map(|(_, r)| r).collect();
            match store.insert(&first, &records, now) {
                Ok(done) => {
                    total.new += done.new;
                    total.duplicates += done.duplicates;
                }
                Err(e) => {
                    eprintln!("error: storing results: {e}");
                    return false;
                }
            }
        }
        true
    };
    for (i, line) in input.split(b'\n').enumerate() {
        let n = i + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: reading {} at line {n}: {e}", file.display());
                return 66;
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match ResultRecord::from_json(&line) {
            Ok(record) => {
                let delivery = Delivery {
                    // Imported results keep the agent and site they carry: import is
                    // the operator's path, not an agent's.
                    agent_id: record
                        .agent
                        .id
                        .clone()
                        .unwrap_or_else(|| "unenrolled".into()),
                    quartier: record.site.quartier.clone(),
                    building: record.site.building.clone(),
                };
                batch.push((delivery, record));
            }
            Err(e) => {
                rejected += 1;
                eprintln!("{}:{n}: rejected: {e}", file.display());
            }
        }
        if batch.len() >= IMPORT_BATCH && !flush(&mut batch, &mut total) {
            return 1;
        }
    }
    if !flush(&mut batch, &mut total) {
        return 1;
    }
    println!(
        "imported {} new results, {} already stored, {} lines rejected",
        total.new, total.duplicates, rejected
    );
    if rejected > 0 {
        65
    } else {
        0
    }
}
