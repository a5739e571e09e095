//! `sonde-collector token create`.

use super::common::{key_source, load_config, open_configured, open_seal_key, CA_NAME};
use sonde_collector::ingest;
use sonde_store::NewToken;
use std::path::Path;

/// Prints a one-time token for one agent of one building.
pub fn create(
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
    let Some(store) = open_configured(&config) else {
        return 1;
    };
    let Ok(seal) = open_seal_key(&config, &*store) else {
        return 1;
    };
    let ca = match key_source(&config, &*store, seal.as_ref()).ca(CA_NAME) {
        Ok(ca) => ca,
        Err(e) => {
            eprintln!("error: {e}");
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
