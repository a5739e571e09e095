//! `sonde-collector`: stores sonde results and serves them. So far: `serve` (HTTP API
//! over the store) and `import`; QUIC ingest and enrolment come with the rest of the
//! pipeline work (see docs/ARCHITECTURE.md).

use clap::{Parser, Subcommand};
use sonde_cli::LogFormat;
use sonde_collector::store::sqlite::SqliteStore;
use sonde_collector::store::{Delivery, Inserted, Store};
use sonde_collector::{config, http};
use sonde_proto::ResultRecord;
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
    /// Serve the HTTP API (/healthz, /api/v1/results, /api/v1/agents) over the store.
    ///
    /// The config file (TOML) sets `data_dir` (the store is data_dir/collector.sqlite)
    /// and `[http] listen` (default 127.0.0.1:9090). Every problem in it is reported,
    /// with its field, before anything starts (exit 64).
    Serve {
        /// The configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
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
}

/// Results committed per transaction while importing.
const IMPORT_BATCH: usize = 1000;

fn main() {
    let cli: Cli = sonde_cli::parse_or_exit();
    sonde_cli::init_logging(cli.log_format);
    let code = match cli.command {
        Command::Serve { config } => serve(&config),
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
    };
    std::process::exit(code);
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
    let runtime = sonde_cli::runtime_or_exit();
    match runtime.block_on(serve_http(config, store)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

async fn serve_http(config: config::Checked, store: Arc<dyn Store>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http_listen))?;
    let local = listener.local_addr()?;
    tracing::info!(http = %local, store = %config.store_path.display(), "collector listening");
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
        let store = store.clone();
        let service = hyper::service::service_fn(move |req| http::handle(store.clone(), req));
        let conn =
            graceful.watch(builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    tracing::info!("collector stopping");
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), graceful.shutdown()).await;
    Ok(())
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
