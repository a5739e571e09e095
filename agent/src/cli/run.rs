//! `sonde-agent run`: the daemon, after its configuration is checked.

use sonde_agent::{config, daemon};

pub fn command(path: &std::path::Path) {
    let config = match config::load(path, config::Interfaces::MustExist) {
        Ok(c) => c,
        Err(problems) => {
            for p in &problems {
                eprintln!("error: {p}");
            }
            std::process::exit(sonde_cli::EXIT_USAGE);
        }
    };
    let runtime = sonde_cli::runtime_or_exit();
    let code = runtime.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            sonde_cli::shutdown_signal().await;
            tracing::info!("stopping");
            let _ = stop_tx.send(true);
        });
        let deps = daemon::Deps::production(&config);
        match daemon::run(config, deps, stop_rx).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e:#}");
                1
            }
        }
    });
    std::process::exit(code);
}
