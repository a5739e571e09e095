//! `sonde-collector migrate`: a SQLite store into a PostgreSQL database.

use sonde_store::redact_url as redact;
use sonde_store_postgres::{copy_from_sqlite, PostgresStore};
use std::path::Path;

/// Copies, checks and says what was copied; exit 0, 1 on any failure, 64 on bad use.
pub fn migrate(from: &str, to: &str) -> i32 {
    let Some(path) = from.strip_prefix("sqlite:").map(Path::new) else {
        sonde_cli::usage_error(format!("--from {from:?}: give sqlite:PATH"));
    };
    if !path.is_file() {
        sonde_cli::usage_error(format!("--from: no SQLite store at {}", path.display()));
    }
    if let Err(e) = sonde_store_postgres::check_url(to) {
        sonde_cli::usage_error(format!("--to: {e}"));
    }
    let store = match PostgresStore::open(to) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot open {}: {e}", redact(to));
            return 1;
        }
    };
    let started = std::time::Instant::now();
    eprintln!("copying {} into {}…", path.display(), redact(to));
    let mut progress = |table: &str, rows: u64| eprintln!("  {table}: {rows} rows");
    match copy_from_sqlite(path, &store, &mut progress) {
        Ok(copied) => {
            for (table, rows) in &copied.tables {
                println!("{table:<16} {rows:>10} rows on both sides");
            }
            println!(
                "results digest  {} on both sides\nlog             {} leaves, root {} on both sides",
                copied.digest, copied.log.0, copied.log.1
            );
            eprintln!(
                "done in {:.1} s; now set [store] url in the collector's configuration",
                started.elapsed().as_secs_f64()
            );
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}
