//! What the daemon's loops share: the configuration, the spool, the status board,
//! the latest results for `/metrics`, the budget ledger, and the injected clock and
//! prober. Built once by `run`; each loop holds an `Arc` of it.

use super::clock::Clock;
use super::held::{Held, MAX_HELD};
use super::prober::Prober;
use super::status::Board;
use crate::config::{Access, Config};
use crate::state::ledger::LedgerFile;
use crate::state::spool::{Spool, SpoolError, SpoolSlot};
use chrono::{DateTime, Utc};
use sonde_proto::plan::AgentPlan;
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

/// What the measure loop runs.
#[derive(Debug, Clone)]
pub struct Running {
    /// The accesses, checked.
    pub accesses: Arc<Vec<Access>>,
    /// The plan they come from; `None`: `agent.toml`.
    pub plan: Option<AgentPlan>,
}

impl Running {
    /// `agent.toml`'s accesses.
    pub fn local(config: &Config) -> Running {
        Running {
            accesses: Arc::new(config.accesses.clone()),
            plan: None,
        }
    }

    /// The plan's version (0: `agent.toml`).
    pub fn version(&self) -> u64 {
        self.plan.as_ref().map_or(0, |p| p.version)
    }
}

/// The daemon's shared state.
#[derive(Debug)]
pub struct Shared {
    /// The checked configuration.
    pub config: Config,
    /// The state directory.
    pub state_dir: PathBuf,
    /// Results waiting for the collector.
    pub spool: Arc<Mutex<SpoolSlot>>,
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
    /// The box's lines, one user at a time: held by a test from its busy check to its
    /// end, and by the uplink while it sends and waits for the answer, so the agent
    /// never crosses its own tests with its uploads.
    pub line: tokio::sync::Mutex<()>,
    /// What the schedule's phase derives from: the agent id, or before enrolment a
    /// random seed kept in the state directory.
    pub phase_seed: String,
    /// Results the spool could not take, held in memory and sent straight up.
    pub held: Mutex<Held>,
    /// The accesses the measure loop runs, and the plan they come from.
    pub running: Mutex<Running>,
    /// Wakes the measure loop when the accesses changed (a new plan).
    pub replan: Notify,
    /// Asks the uplink for a heartbeat now (the collector waits to hear of a plan).
    pub health_now: std::sync::atomic::AtomicBool,
    /// The public half of the key the spool signs results with (`ed25519 <hex>`).
    pub signing_key: String,
}

impl Shared {
    /// What the measure loop runs now.
    pub fn running(&self) -> Running {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The accesses the measure loop runs now.
    pub fn accesses(&self) -> Arc<Vec<Access>> {
        self.running().accesses
    }

    /// Replaces what the measure loop runs (it picks it up on [`Shared::replan`]).
    pub fn set_running(&self, running: Running) {
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = running;
    }

    /// The suppression window covering a run of `access` at `at`, if any.
    pub fn suppressed(&self, access: &str, at: DateTime<Utc>) -> Option<String> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let plan = running.plan.as_ref()?;
        plan.suppressed(access, at).map(|s| s.reason.clone())
    }

    /// Copies the month's budget use of every budgeted access into the status.
    pub fn update_budgets(&self, now: DateTime<Utc>) {
        let ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        let budgets: BTreeMap<String, BudgetUse> = self
            .accesses()
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

/// Moves the held results into the spool, oldest first, as far as it takes them, and
/// keeps `spool_full` in the status: set while the spool refuses writes, cleared once
/// it takes them again.
pub async fn spool_held(shared: &Shared) {
    let batch = shared
        .held
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .oldest(MAX_HELD);
    if batch.is_empty() {
        return;
    }
    let pushed = with_spool(&shared.spool, move |s| {
        let (mut done, mut evicted) = (Vec::new(), 0);
        for (id, r) in &batch {
            match s.push_raw(*id, r) {
                Ok(p) => {
                    evicted += p.evicted;
                    done.push(*id);
                }
                Err(e) => return Ok((done, evicted, Some(e.to_string()))),
            }
        }
        Ok((done, evicted, None))
    })
    .await;
    let (done, evicted, error) = pushed.unwrap_or_else(|e| (Vec::new(), 0, Some(e)));
    if evicted > 0 {
        tracing::warn!(evicted, "spool full: oldest results evicted");
    }
    let (held, dropped) = {
        let mut h = shared.held.lock().unwrap_or_else(|e| e.into_inner());
        h.remove(&done);
        (h.len() as u64, h.dropped_total())
    };
    match &error {
        Some(e) => {
            tracing::error!(error = %e, held, "cannot spool; holding the results in memory and sending them straight up");
        }
        None => tracing::debug!(spooled = done.len(), "held results spooled"),
    }
    shared.board.update(|s| {
        s.held_results = held;
        s.held_dropped_total = dropped;
        s.spool_full = error.is_some();
        if let Some(e) = error {
            s.last_error = Some(format!("spool: {e}"));
            *s.failures_total.entry("spool_write".into()).or_default() += 1;
        }
    });
}

/// Runs `f` on the spool off the async workers (SQLite fsyncs).
pub async fn with_spool<T: Send + 'static>(
    spool: &Arc<Mutex<SpoolSlot>>,
    f: impl FnOnce(&mut Spool) -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, String> {
    let spool = spool.clone();
    sonde_cli::blocking::run(move || {
        let mut s = spool.lock().unwrap_or_else(|e| e.into_inner());
        f(s.get().map_err(|e| e.to_string())?).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Resolves once `stop` turns true.
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
