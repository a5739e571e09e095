//! `sonde-collector serve` and `check-config`.

use super::common::{key_source, load_config, open_configured, open_seal_key, CA_NAME};
use sonde_collector::server;
use std::path::Path;
use std::sync::Arc;

/// Runs the collector until Ctrl-C or SIGTERM, then drains.
pub fn serve(config_path: &Path) -> i32 {
    let config = load_config(config_path);
    // Its own state (the QUIC reset key) is kept there whatever the store.
    if let Err(e) = std::fs::create_dir_all(&config.data_dir) {
        eprintln!("error: cannot create {}: {e}", config.data_dir.display());
        return 1;
    }
    let Some(store) = open_configured(&config) else {
        return 1;
    };
    let Ok(seal) = open_seal_key(&config, &*store) else {
        return 1;
    };
    let keys = key_source(&config, &*store, seal.as_ref());
    let ca = match keys.ca(CA_NAME) {
        Ok(ca) => Arc::new(ca),
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let report_key = match keys.report_key() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let deps = server::Deps {
        store: Arc::from(store),
        ca,
        report_key,
        seal,
        registry: prometheus::Registry::new(),
    };
    let runtime = sonde_cli::runtime_or_exit();
    match runtime.block_on(server::run(config, deps, sonde_cli::shutdown_signal())) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// Checks a configuration file: every problem with its field, exit 64.
pub fn check(config: &Path) -> i32 {
    let c = load_config(config);
    println!(
        "{}: valid (store {}, HTTP {}, QUIC {})",
        config.display(),
        c.store_name(),
        c.http_listen,
        c.quic_listen
    );
    0
}
