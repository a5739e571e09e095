//! `sonde-collector agent list` and `agent revoke`.

use super::common::{load_config, open_configured};
use std::path::Path;

/// Revokes an agent.
pub fn revoke(config: &Path, id: &str) -> i32 {
    let config = load_config(config);
    let Some(store) = open_configured(&config) else {
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

/// Lists the agents.
pub fn list(config: &Path) -> i32 {
    let config = load_config(config);
    let Some(store) = open_configured(&config) else {
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
