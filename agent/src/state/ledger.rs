//! The data budget ledger on disk (`budget.json` in the state directory): the month's
//! bytes per access ([`sonde_method::budget::Ledger`]), written atomically after each
//! test so a restart keeps the count. Blocking: run off the async workers.

use super::files::write_atomic;
use chrono::{DateTime, Utc};
use sonde_method::budget::Ledger;
use std::path::{Path, PathBuf};

/// The ledger and the file that keeps it.
#[derive(Debug, Clone)]
pub struct LedgerFile {
    ledger: Ledger,
    path: PathBuf,
}

impl LedgerFile {
    /// Reads `path` (an empty ledger when it does not exist yet).
    pub fn load(path: &Path) -> Result<LedgerFile, String> {
        sonde_cli::blocking::check("reading the budget ledger");
        let ledger = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice::<Ledger>(&bytes)
                .map_err(|e| format!("{}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ledger::default(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        Ok(LedgerFile {
            ledger,
            path: path.to_path_buf(),
        })
    }

    /// The counts.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Bytes `access` used in the month of `now`.
    pub fn used(&self, access: &str, now: DateTime<Utc>) -> u64 {
        self.ledger.used(access, now)
    }

    /// Adds `bytes` to `access` in the month of `now` and writes the ledger durably.
    pub fn add(&mut self, access: &str, now: DateTime<Utc>, bytes: u64) -> Result<(), String> {
        self.ledger.add(access, now, bytes);
        let json = serde_json::to_vec_pretty(&self.ledger).unwrap_or_default();
        write_atomic(&self.path, &json, 0o600).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_ledger_survives_a_restart_and_a_new_month_starts_from_zero() {
        let dir = std::env::temp_dir().join(format!("sonde-ledger-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("budget.json");
        let _ = std::fs::remove_file(&path);
        let jan = Utc
            .with_ymd_and_hms(2026, 1, 31, 23, 0, 0)
            .single()
            .expect("time");
        let mut l = LedgerFile::load(&path).expect("new ledger");
        l.add("mobile", jan, 500).expect("write");
        l.add("mobile", jan, 20).expect("write");
        let again = LedgerFile::load(&path).expect("reload");
        assert_eq!(again.used("mobile", jan), 520);
        let feb = Utc
            .with_ymd_and_hms(2026, 2, 1, 0, 0, 0)
            .single()
            .expect("time");
        assert_eq!(again.used("mobile", feb), 0);
        std::fs::write(&path, b"{not json").expect("damage");
        assert!(LedgerFile::load(&path)
            .expect_err("damaged")
            .contains("budget.json"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
