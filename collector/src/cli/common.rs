//! What the commands share: the configuration, the store, the CA.

use sonde_collector::config;
use sonde_store::Store;
use sonde_store_postgres::PostgresStore;
use sonde_store_sqlite::SqliteStore;
use std::path::Path;

/// Name of the collector's CA.
pub const CA_NAME: &str = "sonde collector CA";

/// Opens the store at `path`, creating its directory; reports why not on one line.
pub fn open_store(path: &Path) -> Option<SqliteStore> {
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

/// Opens the configuration's store: its PostgreSQL database (`[store] url`), or the
/// SQLite file in its data directory; reports why not on one line.
pub fn open_configured(config: &config::Checked) -> Option<Box<dyn Store>> {
    match &config.store_url {
        Some(url) => PostgresStore::open(url)
            .map(|s| Box::new(s) as Box<dyn Store>)
            .map_err(|e| {
                eprintln!(
                    "error: cannot open the store {}: {e}",
                    config::redact_url(url)
                )
            })
            .ok(),
        None => open_store(&config.store_path).map(|s| Box::new(s) as Box<dyn Store>),
    }
}

/// Loads the configuration or reports every problem and exits 64.
pub fn load_config(path: &Path) -> config::Checked {
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
