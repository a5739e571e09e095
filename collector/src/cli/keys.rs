//! `sonde-collector keys rotate`.

use super::common::{key_source, load_config, open_configured, open_seal_key, CA_NAME};
use sonde_collector::ca::fingerprint;
use sonde_proto::wire::hex;
use std::path::Path;

/// Replaces the report key (`report_key`) or else the CA, where the configuration keeps
/// them; prints the new report key's public half, or the new CA's fingerprint.
pub fn rotate(config_path: &Path, report_key: bool) -> i32 {
    let config = load_config(config_path);
    let Some(store) = open_configured(&config) else {
        return 1;
    };
    let Ok(seal) = open_seal_key(&config, &*store) else {
        return 1;
    };
    let keys = key_source(&config, &*store, seal.as_ref());
    let place = match &seal {
        Some(s) => format!("sealed in {} (seal key {})", config.store_name(), s.id()),
        None => format!("in {}", config.data_dir.display()),
    };
    if report_key {
        match keys.rotate_report_key() {
            Ok(k) => {
                println!("{}", k.public_text());
                let when = match &seal {
                    Some(_) => "Running collectors on this store sign with it within 5 s",
                    None => "Restart the collector to sign with it",
                };
                eprintln!(
                    "new report key {} {place}. {when}; publish the public key above. \
                     Reports signed before verify with the old key only.",
                    k.key_id()
                );
                0
            }
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        }
    } else {
        match keys.rotate_ca(CA_NAME) {
            Ok(ca) => {
                println!("{}", hex(&fingerprint(ca.cert())));
                eprintln!(
                    "new CA (fingerprint above) {place}. Restart every collector on this \
                     store, then enrol every box again with a new token; until then its \
                     results wait in its spool."
                );
                0
            }
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        }
    }
}
