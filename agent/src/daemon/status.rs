//! The daemon's status: what `status.json` holds (and `sonde-agent status` prints),
//! kept in memory by both loops and written to the state directory off the async
//! workers (an fsync must never delay a probe's 100 ms sampling tick).

use super::clock::Clock;
use crate::state::files::write_atomic;
use crate::state::spool::{Spool, SpoolSlot};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sonde_proto::plan::{PlanSource, PlanState};
use sonde_proto::wire::{BudgetUse, Health};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The spool file in the state directory.
pub const SPOOL_FILE: &str = "spool.sqlite";
/// The status file in the state directory.
pub const STATUS_FILE: &str = "status.json";

/// What `status.json` holds (and `sonde-agent status --json` prints).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Agent id, once enrolled.
    pub agent_id: Option<String>,
    /// Whether the daemon is running (computed by `status` from `pid`).
    #[serde(default)]
    pub running: bool,
    /// The daemon's process id.
    pub pid: u32,
    /// Agent version.
    pub version: String,
    /// When the daemon started.
    pub started_at: Option<DateTime<Utc>>,
    /// Seconds since it started.
    pub uptime_s: u64,
    /// When this status was written.
    pub updated_at: Option<DateTime<Utc>>,
    /// Set when the daemon stopped cleanly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<DateTime<Utc>>,
    /// The collector's address.
    pub collector: String,
    /// Whether a QUIC connection to it is open.
    pub connected: bool,
    /// Results waiting in the spool.
    pub spool_depth: u64,
    /// Results evicted from a full spool, ever.
    pub evictions_total: u64,
    /// Whether the spool refuses writes now (its disk is full): results are held in
    /// memory and sent straight up.
    #[serde(default)]
    pub spool_full: bool,
    /// Results held in memory because the spool could not take them.
    #[serde(default)]
    pub held_results: u64,
    /// Held results dropped at the memory bound since start.
    #[serde(default)]
    pub held_dropped_total: u64,
    /// Last batch (or heartbeat) the collector acknowledged.
    pub last_success: Option<DateTime<Utc>>,
    /// Last uplink or spool error, one line.
    pub last_error: Option<String>,
    /// Scheduled runs that did not run.
    pub missed_runs_total: u64,
    /// Steps of the wall clock seen (NTP setting a wrong clock right): each re-made
    /// the schedule from the new time.
    #[serde(default)]
    pub clock_steps_total: u64,
    /// Failed measurements by reason.
    pub failures_total: BTreeMap<String, u64>,
    /// Data budget use this month, per budgeted access.
    #[serde(default)]
    pub budgets: BTreeMap<String, BudgetUse>,
    /// Tests each responder served since start, per access: access → position of the
    /// responder in the access's list (1 is the first) → tests.
    #[serde(default)]
    pub responder_tests_total: BTreeMap<String, BTreeMap<String, u64>>,
    /// Failed uploads by reason.
    pub uplink_errors_total: BTreeMap<String, u64>,
    /// Frames of kinds this agent does not know (from a newer collector), skipped.
    #[serde(default)]
    pub unknown_frames_total: u64,
    /// Results measured since start.
    pub results_total: u64,
    /// Results the collector acknowledged since start.
    pub uploaded_total: u64,
    /// The next scheduled run.
    pub next_run: Option<NextRun>,
    /// The plan it runs (version 0: its agent.toml), a plan it refused, its
    /// capabilities and its per-access counters.
    #[serde(default)]
    pub plan: PlanState,
}

/// The next run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextRun {
    /// Access name.
    pub access: String,
    /// When.
    pub at: DateTime<Utc>,
}

impl Status {
    /// The health an upload carries, `uptime_s` seconds after the start.
    pub fn health(&self, uptime_s: u64) -> Health {
        Health {
            spool_depth: self.spool_depth,
            evictions_total: self.evictions_total,
            last_success: self.last_success,
            missed_runs_total: self.missed_runs_total,
            failures_total: self.failures_total.clone(),
            version: self.version.clone(),
            uptime_s,
            budgets: self.budgets.clone(),
            position: None,
            spool_full: self.spool_full,
            held_results: self.held_results,
            plan: Some(Box::new(PlanState {
                source: PlanSource::of(self.plan.version, self.connected),
                ..self.plan.clone()
            })),
        }
    }
}

/// The status both loops update, and its file.
#[derive(Debug)]
pub struct Board {
    status: Mutex<Status>,
    path: PathBuf,
    clock: Arc<dyn Clock>,
    started: tokio::time::Instant,
    /// Both loops write the file: one at a time.
    write: Arc<Mutex<()>>,
}

impl Board {
    /// A board starting from `status`, written to `dir`'s status file.
    pub fn new(status: Status, dir: &Path, clock: Arc<dyn Clock>) -> Board {
        Board {
            status: Mutex::new(status),
            path: dir.join(STATUS_FILE),
            clock,
            started: tokio::time::Instant::now(),
            write: Arc::new(Mutex::new(())),
        }
    }

    /// Changes the status in memory.
    pub fn update(&self, f: impl FnOnce(&mut Status)) {
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s);
    }

    /// A copy of the status, its uptime current.
    pub fn snapshot(&self) -> Status {
        let mut s = self
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        s.uptime_s = self.uptime_s();
        s.plan.source = PlanSource::of(s.plan.version, s.connected);
        s
    }

    /// Seconds since the daemon started.
    pub fn uptime_s(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// The health an upload carries now.
    pub fn health(&self) -> Health {
        self.snapshot().health(self.uptime_s())
    }

    /// Refreshes the spool figures and writes `status.json`, both on the blocking
    /// pool.
    pub async fn write(&self, spool: &Arc<Mutex<SpoolSlot>>) {
        let spool = spool.clone();
        let figures = sonde_cli::blocking::run(move || {
            let mut slot = spool.lock().unwrap_or_else(|e| e.into_inner());
            let s = slot.get()?;
            Ok::<_, crate::state::spool::SpoolError>((s.depth()?, s.evictions_total()?))
        })
        .await;
        let now = self.clock.now();
        self.update(|s| {
            if let Ok(Ok((depth, evictions))) = figures {
                s.spool_depth = depth;
                s.evictions_total = evictions;
            }
            s.updated_at = Some(now);
        });
        let json = serde_json::to_vec_pretty(&self.snapshot()).unwrap_or_default();
        let (path, lock) = (self.path.clone(), self.write.clone());
        let written = sonde_cli::blocking::run(move || {
            let _one_writer = lock.lock().unwrap_or_else(|e| e.into_inner());
            write_atomic(&path, &json, 0o644)
        })
        .await;
        if let Ok(Err(e)) = written {
            tracing::warn!(error = %e, "cannot write the status file");
        }
    }
}

/// Reads the status of the agent whose state is in `dir`: `status.json` with the spool
/// figures read live, and whether the daemon is running.
pub fn read_status(dir: &Path) -> Result<Status, String> {
    let path = dir.join(STATUS_FILE);
    let text = std::fs::read(&path).map_err(|e| {
        format!(
            "{}: {e} (has `sonde-agent run` ever started with this state directory?)",
            path.display()
        )
    })?;
    let mut status: Status =
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    status.running =
        status.stopped_at.is_none() && Path::new(&format!("/proc/{}", status.pid)).exists();
    if !status.running {
        status.connected = false;
    }
    let spool_path = dir.join(SPOOL_FILE);
    if spool_path.exists() {
        if let Ok(spool) = Spool::open_read_only(&spool_path) {
            if let (Ok(d), Ok(e)) = (spool.depth(), spool.evictions_total()) {
                status.spool_depth = d;
                status.evictions_total = e;
            }
        }
    }
    Ok(status)
}
