//! `sonde-agent run`: the daemon. Two loops share the spool:
//!
//! - the **measure loop** follows the scheduler, probes one access at a time and
//!   commits each result to the spool (fsync) before anything else happens to it;
//! - the **uplink loop** sends the oldest spooled results in batches and removes them
//!   only when the collector acknowledged their ids; it reconnects with exponential
//!   backoff and jitter, and sends a heartbeat with the health when idle.
//!
//! Both write `status.json` in the state directory, which `sonde-agent status` reads.

pub mod metrics;

use crate::config::{Access, Config};
use crate::engine as probe;
use crate::identity::Identity;
use crate::net::netif;
use crate::state::spool::Spool;
use crate::uplink::{Backoff, Uplink, UplinkError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sonde_method::schedule::Scheduler;
use sonde_proto::wire::{BudgetUse, Health};
use sonde_proto::{Direction, Outcome, ResultRecord};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// The spool file in the state directory.
pub const SPOOL_FILE: &str = "spool.sqlite";
/// The data budget ledger in the state directory.
pub const BUDGET_FILE: &str = "budget.json";
/// The status file in the state directory.
pub const STATUS_FILE: &str = "status.json";
/// An idle uplink sends its health this often.
pub const HEARTBEAT: Duration = Duration::from_secs(60);
/// First reconnection wait.
pub const RETRY_BASE: Duration = Duration::from_secs(1);

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
    /// Last batch (or heartbeat) the collector acknowledged.
    pub last_success: Option<DateTime<Utc>>,
    /// Last uplink or spool error, one line.
    pub last_error: Option<String>,
    /// Scheduled runs that did not run.
    pub missed_runs_total: u64,
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
}

/// The next run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextRun {
    /// Access name.
    pub access: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// Latest result of each access, and results by (access, outcome) since start.
type Latest = (
    BTreeMap<String, ResultRecord>,
    BTreeMap<(String, String), u64>,
);

/// Shared state of the two loops.
struct Shared {
    config: Config,
    state_dir: PathBuf,
    spool: Arc<Mutex<Spool>>,
    status: Mutex<Status>,
    started: Instant,
    wake: Notify,
    /// Both loops write the status file: one at a time.
    write: Mutex<()>,
    /// Latest result of each access and tests by outcome, for `/metrics`.
    latest: Mutex<Latest>,
    /// Bytes used by tests this month, per access (`budget.json`).
    ledger: Mutex<crate::state::ledger::LedgerFile>,
    /// Runs made per access, for responder rotation.
    runs: Mutex<BTreeMap<String, usize>>,
}

impl Shared {
    /// Copies the month's budget use of every budgeted access into the status.
    fn update_budgets(&self, now: DateTime<Utc>) {
        let ledger = self
            .ledger
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
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
        self.update(|s| s.budgets = budgets);
    }

    fn update(&self, f: impl FnOnce(&mut Status)) {
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s);
    }

    fn snapshot(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Refreshes the spool figures and writes `status.json`.
    async fn write_status(self: &Arc<Self>) {
        let spool = self.spool.clone();
        let figures = tokio::task::spawn_blocking(move || {
            let s = spool.lock().unwrap_or_else(|e| e.into_inner());
            Ok::<_, crate::state::spool::SpoolError>((s.depth()?, s.evictions_total()?))
        })
        .await;
        let now = Utc::now();
        let uptime = self.started.elapsed().as_secs();
        self.update(|s| {
            if let Ok(Ok((depth, evictions))) = figures {
                s.spool_depth = depth;
                s.evictions_total = evictions;
            }
            s.updated_at = Some(now);
            s.uptime_s = uptime;
        });
        let json = serde_json::to_vec_pretty(&self.snapshot()).unwrap_or_default();
        let path = self.state_dir.join(STATUS_FILE);
        let _one_writer = self.write.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = crate::state::files::write_atomic(&path, &json, 0o644) {
            tracing::warn!(error = %e, "cannot write the status file");
        }
    }

    fn health(&self) -> Health {
        let s = self.snapshot();
        Health {
            spool_depth: s.spool_depth,
            evictions_total: s.evictions_total,
            last_success: s.last_success,
            missed_runs_total: s.missed_runs_total,
            failures_total: s.failures_total,
            version: s.version,
            uptime_s: self.started.elapsed().as_secs(),
            budgets: s.budgets,
        }
    }
}

/// Runs `f` on the spool off the async threads (SQLite fsyncs).
async fn with_spool<T: Send + 'static>(
    spool: &Arc<Mutex<Spool>>,
    f: impl FnOnce(&mut Spool) -> Result<T, crate::state::spool::SpoolError> + Send + 'static,
) -> Result<T, String> {
    let spool = spool.clone();
    tokio::task::spawn_blocking(move || {
        let mut s = spool.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Starts the daemon and runs until `stop` turns true.
pub async fn run(config: Config, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let state_dir = config.file.collector.state_dir.clone();
    crate::state::files::ensure_dir(&state_dir)?;
    let spool_path = state_dir.join(SPOOL_FILE);
    let spool = Spool::open(&spool_path, config.file.spool.max_results)
        .with_context(|| format!("cannot open the spool {}", spool_path.display()))?;
    let identity = Identity::load(&state_dir)?;
    let ledger_path = state_dir.join(BUDGET_FILE);
    let ledger = crate::state::ledger::LedgerFile::load(&ledger_path).map_err(|e| {
        anyhow::anyhow!("data budget ledger: {e} (move it aside to start the month's count again)")
    })?;
    match &identity {
        Some(id) => tracing::info!(agent = %id.info.agent_id, "agent identity loaded"),
        None => tracing::warn!(
            state_dir = %state_dir.display(),
            "not enrolled yet: measuring and spooling; uploads start once `sonde-agent enroll` has run"
        ),
    }
    let status = Status {
        agent_id: identity.as_ref().map(|i| i.info.agent_id.clone()),
        running: true,
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").into(),
        started_at: Some(Utc::now()),
        collector: config.file.collector.address.clone(),
        ..Status::default()
    };
    let shared = Arc::new(Shared {
        config,
        state_dir,
        spool: Arc::new(Mutex::new(spool)),
        status: Mutex::new(status),
        started: Instant::now(),
        wake: Notify::new(),
        write: Mutex::new(()),
        latest: Mutex::new(Default::default()),
        ledger: Mutex::new(ledger),
        runs: Mutex::new(BTreeMap::new()),
    });
    shared.update_budgets(Utc::now());
    shared.write_status().await;
    let metrics = match shared.config.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("metrics.listen: cannot listen on {addr}"))?;
            tracing::info!(metrics = %listener.local_addr()?, "agent metrics listening");
            let s = shared.clone();
            let snapshot = Arc::new(move || {
                let (latest, tests) = s.latest.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let mut status = s.snapshot();
                status.uptime_s = s.started.elapsed().as_secs();
                crate::daemon::metrics::Snapshot {
                    status,
                    latest,
                    tests,
                }
            });
            Some(tokio::spawn(crate::daemon::metrics::serve(
                listener, snapshot,
            )))
        }
        None => None,
    };
    let uplink = tokio::spawn(uplink_loop(shared.clone(), identity, stop.clone()));
    measure_loop(shared.clone(), &mut stop).await;
    let _ = uplink.await;
    if let Some(m) = metrics {
        m.abort();
    }
    shared.update(|s| {
        s.stopped_at = Some(Utc::now());
        s.running = false;
        s.connected = false;
    });
    shared.write_status().await;
    tracing::info!("agent stopped");
    Ok(())
}

fn now_ms() -> u64 {
    Utc::now().timestamp_millis().max(0) as u64
}

fn seed_of(text: &str) -> u64 {
    // FNV-1a: a stable phase per box across restarts and versions.
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn measure_loop(shared: Arc<Shared>, stop: &mut watch::Receiver<bool>) {
    let accesses = shared.config.accesses.clone();
    let cadences: Vec<_> = accesses.iter().map(|a| a.cadence.clone()).collect();
    let seed = seed_of(&format!(
        "{}/{}",
        shared.config.file.site.quartier, shared.config.file.site.building
    ));
    let mut scheduler = Scheduler::new(&cadences, now_ms(), seed);
    // Results the spool could not take (disk full): kept here and retried, never dropped.
    let mut pending: Vec<ResultRecord> = Vec::new();
    loop {
        let Some((i, at)) = scheduler.next_due() else {
            return;
        };
        shared.update(|s| {
            s.next_run = Some(NextRun {
                access: accesses[i].name.clone(),
                at: DateTime::from_timestamp_millis(at as i64).unwrap_or_default(),
            });
        });
        shared.write_status().await;
        let wait = Duration::from_millis(at.saturating_sub(now_ms()));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped(stop) => return,
        }
        let Some(due) = scheduler.take_due(now_ms()) else {
            continue;
        };
        let access = &accesses[due.access];
        if due.missed > 0 {
            tracing::warn!(access = %access.name, missed = due.missed, "scheduled runs missed");
        }
        // A busy line or box defers the test, then skips it.
        let busy = tokio::select! {
            b = wait_while_busy(&shared, access) => b,
            _ = stopped(stop) => return,
        };
        // A data budget decides next: run within an allowance, or skip.
        let plan = access.budget.map(|budget| {
            let now = Utc::now();
            let used = shared
                .ledger
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .used(&access.name, now);
            let interval = Duration::from_millis(access.cadence.interval_ms);
            sonde_method::budget::plan(budget, used, now, interval, access.max_bps())
        });
        let record = match (busy, plan) {
            (Some(why), _) => skipped(&shared, access, sonde_proto::FailureReason::Busy, why),
            (None, Some(sonde_method::budget::Plan::Skip { used, budget })) => skipped(
                &shared,
                access,
                sonde_proto::FailureReason::Budget,
                format!(
                    "monthly data budget: {:.1} of {:.1} MB used, not enough for one more test",
                    used as f64 / 1e6,
                    budget as f64 / 1e6
                ),
            ),
            (None, other) => {
                let max_bytes = match other {
                    Some(sonde_method::budget::Plan::Run { allowance }) => Some(allowance),
                    _ => None,
                };
                // A radio access's context, read just before the test (2 s at most):
                // ModemManager for 4G, nl80211 for Wi-Fi.
                let radio = match access.kind {
                    sonde_proto::AccessKind::FourG => Some(
                        crate::context::radio::lte(
                            shared.config.file.radio.dbus_address.as_deref(),
                            &access.interface,
                        )
                        .await,
                    ),
                    sonde_proto::AccessKind::Wifi => {
                        Some(crate::context::wifi::context(&access.interface).await)
                    }
                    _ => None,
                };
                let mut record = tokio::select! {
                    r = measure(&shared, access, max_bytes) => r,
                    _ = stopped(stop) => return,
                };
                record.radio = radio;
                record
            }
        };
        if access.budget.is_some() {
            let allowance = match plan {
                Some(sonde_method::budget::Plan::Run { allowance }) => allowance,
                _ => 0,
            };
            let bytes = sonde_method::budget::charge(&record, allowance, access.max_bps());
            let now = Utc::now();
            let written = shared.ledger.lock().unwrap_or_else(|e| e.into_inner()).add(
                &access.name,
                now,
                bytes,
            );
            if let Err(e) = written {
                tracing::error!(error = %e, "cannot write the data budget ledger");
                shared.update(|s| s.last_error = Some(format!("budget: {e}")));
            }
            shared.update_budgets(now);
        }
        tracing::info!(
            access = %access.name,
            id = %record.id,
            outcome = ?record.status.outcome,
            down_bps = record.download.as_ref().map(|t| t.ip_rate_bps),
            up_bps = record.upload.as_ref().map(|t| t.ip_rate_bps),
            "measured"
        );
        let served = access
            .responders
            .iter()
            .position(|u| u.as_str() == record.run.responder.url)
            .filter(|_| record.download.is_some() || record.upload.is_some());
        shared.update(|s| {
            if let Some(i) = served {
                *s.responder_tests_total
                    .entry(access.name.clone())
                    .or_default()
                    .entry((i + 1).to_string())
                    .or_default() += 1;
            }
            s.missed_runs_total += due.missed;
            s.results_total += 1;
            if record.status.outcome == Outcome::Failed {
                let reason = record
                    .status
                    .reason
                    .map(|r| r.as_str().to_string())
                    .unwrap_or_else(|| "other".into());
                *s.failures_total.entry(reason).or_default() += 1;
            }
        });
        {
            let mut latest = shared.latest.lock().unwrap_or_else(|e| e.into_inner());
            let name = access.name.clone();
            *latest
                .1
                .entry((name.clone(), record.status.outcome.as_str().into()))
                .or_default() += 1;
            latest.0.insert(name, record.clone());
        }
        pending.push(record);
        let batch = std::mem::take(&mut pending);
        let spooled = with_spool(&shared.spool, {
            let batch = batch.clone();
            move |s| {
                let mut evicted = 0;
                for r in &batch {
                    evicted += s.push(r)?.evicted;
                }
                Ok(evicted)
            }
        })
        .await;
        match spooled {
            Ok(evicted) => {
                if evicted > 0 {
                    tracing::warn!(evicted, "spool full: oldest results evicted");
                }
                shared.wake.notify_one();
            }
            Err(e) => {
                tracing::error!(error = %e, kept = batch.len(), "cannot spool; keeping the results in memory and retrying");
                shared.update(|s| {
                    s.last_error = Some(format!("spool: {e}"));
                    *s.failures_total.entry("spool_write".into()).or_default() += 1;
                });
                pending = batch;
            }
        }
        shared.write_status().await;
    }
}

/// Samples the access's interface and the CPU; while busy, waits and samples again
/// (`busy.checks` times). `Some(why)` when the test is to be skipped.
async fn wait_while_busy(shared: &Shared, access: &Access) -> Option<String> {
    let b = &shared.config.busy;
    if b.threshold.is_none() && b.cpu_limit.is_none() {
        return None;
    }
    for attempt in 0..=b.checks {
        // Unreadable counters (no such interface): the test runs and says why.
        let load = crate::context::busy::sample(&access.interface, Duration::from_secs(1)).await?;
        let why = crate::context::busy::verdict(&load, b.threshold, b.cpu_limit)?;
        if attempt == b.checks {
            return Some(format!("{why}; skipped after {} checks", b.checks + 1));
        }
        tracing::info!(access = %access.name, reason = %why, wait = ?b.recheck, "busy: test deferred");
        shared.update(|s| s.last_error = Some(format!("{}: {why}; test deferred", access.name)));
        tokio::time::sleep(b.recheck).await;
    }
    None
}

/// A result for a test not run (`busy`, `budget`): scheduled, skipped, with why.
fn skipped(
    shared: &Shared,
    access: &Access,
    reason: sonde_proto::FailureReason,
    message: String,
) -> ResultRecord {
    let opts = options(access, None, None, None);
    let mut record = probe::failed(&opts, reason, message);
    label(shared, access, &mut record);
    record
}

/// Probe options of `access` against `responder` (its first when `None`).
fn options(
    access: &Access,
    responder: Option<&url::Url>,
    interface: Option<netif::Interface>,
    max_bytes: Option<u64>,
) -> probe::Options {
    probe::Options {
        responder: responder
            .or(access.responders.first())
            .cloned()
            .unwrap_or_else(|| url::Url::parse("http://invalid.invalid/").expect("static URL")),
        interface,
        access: access.kind,
        targets: access.targets,
        streams: access.streams,
        max_duration: access.max_duration,
        directions: vec![Direction::Down, Direction::Up],
        idle_probes: 50,
        idle_interval: Duration::from_millis(20),
        max_bytes,
    }
}

/// Records the cross-traffic and the CPU's busy share during the test, and flags the
/// result when either was too high (METHODOLOGY.md §5).
fn observe(
    shared: &Shared,
    access: &Access,
    record: &mut ResultRecord,
    counters: Option<crate::context::busy::Counters>,
    cpu: Option<crate::context::busy::Cpu>,
) {
    let ran = record.download.is_some() || record.upload.is_some();
    if !ran {
        return;
    }
    // On a loopback interface both ends are this box: every byte is counted twice and
    // no household shares it.
    let loopback = crate::context::busy::is_loopback(&access.interface);
    let counters = counters.filter(|_| !loopback);
    if let (Some(before), Ok(after)) = (
        counters,
        crate::context::busy::Counters::read(&access.interface),
    ) {
        let test: f64 = [record.download.as_ref(), record.upload.as_ref()]
            .into_iter()
            .flatten()
            .map(|t| t.bytes_total as f64 * t.ip_overhead_ratio.max(1.0))
            .sum();
        let cross = crate::context::busy::cross_traffic(
            after.since(&before),
            test,
            sonde_method::budget::FIXED_BYTES,
        );
        record.run.cross_traffic_bytes = Some(cross);
        if cross as f64 > shared.config.busy.cross_traffic * test
            && !record.flags.contains(&sonde_proto::Flag::CrossTraffic)
        {
            record.flags.push(sonde_proto::Flag::CrossTraffic);
        }
    }
    if let (Some(before), Some(after)) = (cpu, crate::context::busy::Cpu::read()) {
        if let Some(share) = after.busy_since(&before) {
            record.run.cpu_busy_ratio = Some(share);
            if share >= crate::context::busy::CPU_LIMITED
                && !record.flags.contains(&sonde_proto::Flag::CpuLimited)
            {
                record.flags.push(sonde_proto::Flag::CpuLimited);
            }
        }
    }
}

/// Names the access, its schedule, site and agent in `record`.
fn label(shared: &Shared, access: &Access, record: &mut ResultRecord) {
    record.access.interface = Some(access.interface.clone());
    record.access.name = Some(access.name.clone());
    record.run.interval_s = Some(access.cadence.interval_ms as f64 / 1e3);
    record.site.quartier = Some(shared.config.file.site.quartier.clone());
    record.site.building = Some(shared.config.file.site.building.clone());
    record.agent.id = shared.snapshot().agent_id;
}

/// Probes `access`, trying its responders in order until one answers.
async fn measure(shared: &Shared, access: &Access, max_bytes: Option<u64>) -> ResultRecord {
    let interface = netif::interface(&access.interface);
    let mut last = None;
    // In turn when rotating, else in the configured order; the others follow as
    // fail-overs.
    let first = if access.rotate {
        let mut runs = shared.runs.lock().unwrap_or_else(|e| e.into_inner());
        let n = runs.entry(access.name.clone()).or_default();
        *n += 1;
        (*n - 1) % access.responders.len().max(1)
    } else {
        0
    };
    let order = access.responders[first..]
        .iter()
        .chain(&access.responders[..first]);
    for responder in order {
        let opts = options(
            access,
            Some(responder),
            interface.as_ref().ok().cloned(),
            max_bytes,
        );
        let counters = crate::context::busy::Counters::read(&access.interface).ok();
        let cpu = crate::context::busy::Cpu::read();
        let mut record = match &interface {
            Ok(_) => probe::run(&opts, &|_| {}).await,
            // Never measure unbound: the figure would be another access's.
            Err(e) => probe::failed(&opts, sonde_proto::FailureReason::Interface, e.clone()),
        };
        label(shared, access, &mut record);
        observe(shared, access, &mut record, counters, cpu);
        let unreachable = record.status.outcome == Outcome::Failed
            && record.download.is_none()
            && record.upload.is_none();
        if !unreachable {
            return record;
        }
        tracing::info!(responder = %responder, message = ?record.status.message, "responder unreachable; trying the next");
        last = Some(record);
    }
    // Every responder failed: the last attempt's record says why.
    last.unwrap_or_else(|| unreachable!("config checks at least one responder"))
}

async fn uplink_loop(
    shared: Arc<Shared>,
    mut identity: Option<Identity>,
    mut stop: watch::Receiver<bool>,
) {
    let retry_max = shared.config.retry_max;
    let batch_max = shared.config.file.collector.batch;
    let address = shared.config.file.collector.address.clone();
    let mut uplink = Uplink::new(&address);
    let mut backoff = Backoff::new(RETRY_BASE, retry_max);
    let mut last_contact: Option<Instant> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        if identity.is_none() {
            match Identity::load(&shared.state_dir) {
                Ok(Some(id)) => {
                    tracing::info!(agent = %id.info.agent_id, "enrolled: uploads start");
                    shared.update(|s| s.agent_id = Some(id.info.agent_id.clone()));
                    identity = Some(id);
                }
                Ok(None) => {}
                Err(e) => shared.update(|s| s.last_error = Some(e.to_string())),
            }
        }
        let Some(id) = identity.as_ref() else {
            shared.update(|s| s.last_error = Some(UplinkError::NotEnrolled.to_string()));
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = stopped(&mut stop) => break,
            }
            continue;
        };
        let mut results: Vec<_> = with_spool(&shared.spool, move |s| s.peek(batch_max))
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.record)
            .collect();
        // However large the records, one upload stays within the collector's bound.
        results.truncate(crate::uplink::fitting(
            &results,
            crate::uplink::MAX_BATCH_BYTES,
        ));
        let idle = last_contact.is_some_and(|t| t.elapsed() < HEARTBEAT);
        if results.is_empty() && idle {
            let until_heartbeat =
                HEARTBEAT.saturating_sub(last_contact.map(|t| t.elapsed()).unwrap_or_default());
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = tokio::time::sleep(until_heartbeat) => {}
                _ = stopped(&mut stop) => break,
            }
            continue;
        }
        shared.write_status().await;
        let sent = results.len();
        let outcome = tokio::select! {
            r = uplink.send(id, results, shared.health()) => r,
            _ = stopped(&mut stop) => break,
        };
        let skipped = uplink.unknown_frames();
        shared.update(|s| s.unknown_frames_total = skipped);
        match outcome {
            Ok(committed) => {
                let removed = with_spool(&shared.spool, move |s| s.ack(&committed)).await;
                backoff.reset();
                last_contact = Some(Instant::now());
                let now = Utc::now();
                shared.update(|s| {
                    s.connected = true;
                    s.last_success = Some(now);
                    s.uploaded_total += removed.as_ref().map(|n| *n as u64).unwrap_or(0);
                    s.last_error = None;
                });
                if let Err(e) = removed {
                    tracing::error!(error = %e, "acknowledged results could not leave the spool; they will be sent again");
                }
                if sent > 0 {
                    tracing::debug!(sent, "batch acknowledged");
                }
                shared.write_status().await;
            }
            Err(e) => {
                let delay = backoff.next_delay(&mut rand::rng());
                tracing::warn!(error = %e, retry_in_s = delay.as_secs_f64(), "upload failed");
                shared.update(|s| {
                    s.connected = false;
                    s.last_error = Some(e.to_string());
                    *s.uplink_errors_total.entry(e.reason().into()).or_default() += 1;
                });
                shared.write_status().await;
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stopped(&mut stop) => break,
                }
            }
        }
    }
    uplink.disconnect();
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
