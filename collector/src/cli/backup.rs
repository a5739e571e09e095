//! `sonde-collector backup` and `restore`.

use super::common::{load_config, open_store};
use sonde_store::Maintenance;
use sonde_store_sqlite::SqliteStore;
use std::path::Path;

/// Says, when the store is PostgreSQL, that its own tools back it up and restore it.
fn refuse_postgres(config: &sonde_collector::config::Checked, what: &str) -> bool {
    let Some(url) = &config.store_url else {
        return false;
    };
    eprintln!(
        "error: the store is the PostgreSQL database {}: it is {what} with PostgreSQL's \
         own tools (pg_dump, pg_restore; docs/OPERATIONS.md)",
        sonde_collector::config::redact_url(url)
    );
    true
}

/// Copies the store to a new file, consistently, while the collector runs.
pub fn backup(config: &Path, out: &Path) -> i32 {
    let config = load_config(config);
    if refuse_postgres(&config, "backed up") {
        return 1;
    }
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

/// Replaces the store with a checked backup.
pub fn restore(config: &Path, from: &Path) -> i32 {
    let config = load_config(config);
    if refuse_postgres(&config, "restored") {
        return 1;
    }
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
