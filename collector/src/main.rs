//! `sonde-collector`: stores sonde results. This first part holds the store (embedded
//! SQLite behind the `Store` boundary) and `import`; QUIC ingest, enrolment and the
//! HTTP API come with the pipeline work (see docs/ARCHITECTURE.md).

use clap::{Parser, Subcommand};
use sonde_cli::LogFormat;
use sonde_collector::store::sqlite::SqliteStore;
use sonde_collector::store::{Delivery, Inserted, Store};
use sonde_proto::ResultRecord;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// sonde's collector: stores measurement results.
///
/// Example: sonde-collector import --file results.jsonl --db /var/lib/sonde/collector.sqlite
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
        /// The SQLite database (created when missing).
        #[arg(long, value_name = "PATH", default_value = "sonde-collector.sqlite")]
        db: PathBuf,
    },
}

/// Results committed per transaction while importing.
const IMPORT_BATCH: usize = 1000;

fn main() {
    let cli: Cli = sonde_cli::parse_or_exit();
    sonde_cli::init_logging(cli.log_format);
    let code = match cli.command {
        Command::Import { file, db } => import(&file, &db),
    };
    std::process::exit(code);
}

fn import(file: &Path, db: &Path) -> i32 {
    let input = match std::fs::File::open(file) {
        Ok(f) => std::io::BufReader::new(f),
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return 66;
        }
    };
    let store = match SqliteStore::open(db) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot open the database {}: {e}", db.display());
            return 1;
        }
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
