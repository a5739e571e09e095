//! What the commands share: the configuration, the store, the CA.

use sonde_collector::config;
use sonde_collector::keys::{KeySource, SealKey};
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

/// The seal key of the keys kept in the store, when the configuration names one
/// (`[store] seal_key`), made on the first collector; `Err` once reported on one line.
pub fn open_seal_key(config: &config::Checked, store: &dyn Store) -> Result<Option<SealKey>, ()> {
    let Some(path) = &config.seal_key else {
        return Ok(None);
    };
    SealKey::load_or_create(path, store)
        .map(Some)
        .map_err(|e| eprintln!("error: the seal key: {e}"))
}

/// Where the CA and the report key come from: sealed in the store with `seal`, or
/// files in the data directory.
pub fn key_source<'a>(
    config: &'a config::Checked,
    store: &'a dyn Store,
    seal: Option<&'a SealKey>,
) -> KeySource<'a> {
    match seal {
        Some(seal) => KeySource::Sealed {
            data_dir: &config.data_dir,
            store,
            seal,
        },
        None => KeySource::Files(&config.data_dir),
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
