//! What the daemon's loops share: the configuration, the spool, the status board,
//! the latest results for `/metrics`, the budget ledger, and the injected clock and
//! prober. Built once by `run`; each loop holds an `Arc` of it.

use super::clock::Clock;
use super::prober::Prober;
use super::status::Board;
use crate::config::Config;
use crate::state::ledger::LedgerFile;
use crate::state::spool::{Spool, SpoolError};
use chrono::{DateTime, Utc};
use sonde_proto::wire::BudgetUse;
use sonde_proto::ResultRecord;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::{watch, Notify};

/// Latest result of each access, and results by (access, outcome) since start.
pub type Latest = (
    BTreeMap<String, ResultRecord>,
    BTreeMap<(String, String), u64>,
);

/// The daemon's shared state.
#[derive(Debug)]
pub struct Shared {
    /// The checked configuration.
    pub config: Config,
    /// The state directory.
    pub state_dir: PathBuf,
    /// Results waiting for the collector.
    pub spool: Arc<Mutex<Spool>>,
    /// The status both loops keep.
    pub board: Board,
    /// Wakes the uplink when a result was spooled.
    pub wake: Notify,
    /// Latest result of each access and tests by outcome, for `/metrics`.
    pub latest: Mutex<Latest>,
    /// Bytes used by tests this month, per access (`budget.json`).
    pub ledger: Arc<Mutex<LedgerFile>>,
    /// Runs made per access, for responder rotation.
    pub runs: Mutex<BTreeMap<String, usize>>,
    /// Wall time.
    pub clock: Arc<dyn Clock>,
    /// How a probe runs.
    pub prober: Arc<dyn Prober>,
    /// What the schedule's phase derives from: the agent id, or before enrolment a
    /// random seed kept in the state directory.
    pub phase_seed: String,
}

impl Shared {
    /// Copies the month's budget use of every budgeted access into the status.
    pub fn update_budgets(&self, now: DateTime<Utc>) {
        let ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        let budgets: BTreeMap<String, BudgetUse> = self
            .config
            .accesses
            .iter()
            .filter_map(|a| {
                a.budget.map(|b| {
                    (
                        a.name.clone(),
                        BudgetUse {
                            month: sonde_method::budget::month(now),
                            used_bytes: ledger.used(&a.name, now),
                            budget_bytes: b,
                        },
                    )
                })
            })
            .collect();
        drop(ledger);
        self.board.update(|s| s.budgets = budgets);
    }

    /// Writes the status file (spool figures refreshed), off the async workers.
    pub async fn write_status(&self) {
        self.board.write(&self.spool).await;
    }
}

/// Runs `f` on the spool off the async workers (SQLite fsyncs).
pub async fn with_spool<T: Send + 'static>(
    spool: &Arc<Mutex<Spool>>,
    f: impl FnOnce(&mut Spool) -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, String> {
    let spool = spool.clone();
    sonde_cli::blocking::run(move || {
        let mut s = spool.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Resolves once `stop` turns true.
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
