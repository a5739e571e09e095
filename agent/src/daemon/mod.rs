//! `sonde-agent run`: the daemon. Two loops share the spool:
//!
//! - the **measure loop** ([`measure`]) follows the scheduler, tests one access at a
//!   time ([`probe`]) and commits each result to the spool (fsync) before anything
//!   else happens to it;
//! - the **uplink loop** ([`uplink`]) sends the oldest spooled results in batches
//!   through a [`Link`] and removes them only when the collector acknowledged their
//!   ids; it waits with backoff and jitter after a failure, and sends a heartbeat with
//!   the health when idle.
//!
//! Both keep the [`status::Board`], written to `status.json` for `sonde-agent status`.
//! Time, the prober and the link are injected ([`Deps`]): production uses the system
//! clock, the engines and QUIC; tests run a virtual day in seconds.

pub mod clock;
pub mod held;
pub mod measure;
pub mod metrics;
pub mod plan;
pub mod probe;
pub mod prober;
pub mod shared;
pub mod status;
pub mod uplink;

pub use status::{read_status, NextRun, Status, SPOOL_FILE, STATUS_FILE};

use crate::config::Config;
use crate::identity::Identity;
use crate::state::ledger::LedgerFile;
use crate::state::spool::SpoolSlot;
use crate::uplink::{Link, QuicLink};
use anyhow::Context as _;
use clock::Clock;
use prober::Prober;
use shared::Shared;
use status::Board;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{watch, Notify};

/// The data budget ledger in the state directory.
pub const BUDGET_FILE: &str = "budget.json";

/// What the daemon runs on: its clock, how it probes, how it reaches the collector.
pub struct Deps {
    /// Wall time.
    pub clock: Arc<dyn Clock>,
    /// How a probe runs.
    pub prober: Arc<dyn Prober>,
    /// The link to the collector.
    pub link: Box<dyn Link>,
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps")
            .field("clock", &self.clock)
            .field("prober", &self.prober)
            .finish_non_exhaustive()
    }
}

impl Deps {
    /// The system clock, the engines, and QUIC to the configured collector.
    pub fn production(config: &Config) -> Deps {
        Deps {
            clock: Arc::new(clock::SystemClock),
            prober: Arc::new(prober::Engines),
            link: Box::new(QuicLink::new(
                config.file.collector.address.clone(),
                config.file.collector.state_dir.clone(),
            )),
        }
    }
}

/// Starts the daemon and runs until `stop` turns true.
pub async fn run(
    config: Config,
    deps: Deps,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (clock, prober) = (deps.clock, deps.prober);
    let shared = Arc::new(sonde_cli::blocking::run(move || open(config, clock, prober)).await??);
    shared.update_budgets(shared.clock.now());
    shared.write_status().await;
    let metrics = serve_metrics(&shared).await?;
    let mut link = deps.link;
    let plans = link
        .take_plans()
        .map(|rx| tokio::spawn(plan::receive(shared.clone(), rx, stop.clone())));
    let uplink = tokio::spawn(uplink::run(shared.clone(), link, stop.clone()));
    measure::run(shared.clone(), stop.clone()).await;
    let _ = stop.wait_for(|s| *s).await;
    let _ = uplink.await;
    if let Some(p) = plans {
        let _ = p.await;
    }
    if let Some(m) = metrics {
        m.abort();
    }
    let now = shared.clock.now();
    shared.board.update(|s| {
        s.stopped_at = Some(now);
        s.running = false;
        s.connected = false;
    });
    shared.write_status().await;
    tracing::info!("agent stopped");
    Ok(())
}

/// Opens the state directory (spool, ledger, identity) and builds the shared state.
fn open(config: Config, clock: Arc<dyn Clock>, prober: Arc<dyn Prober>) -> anyhow::Result<Shared> {
    let state_dir = config.file.collector.state_dir.clone();
    crate::state::files::ensure_dir(&state_dir)?;
    let spool_path = state_dir.join(SPOOL_FILE);
    let (mut spool, unopened) = SpoolSlot::open(&spool_path, config.file.spool.max_results);
    // A key rotation interrupted after the spool recorded it is completed first.
    if unopened.is_none() {
        if let Ok(s) = spool.get() {
            crate::identity::rotate::finish(&state_dir, s).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    // Results are signed from the first: an agent enrolled before signing makes its
    // key here (the collector records it with the first signed upload).
    let signing = Arc::new(
        crate::identity::signing::SigningKey::load_or_create(&state_dir)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    spool.sign_with(signing.clone());
    let spool_full = unopened.is_some();
    if let Some(e) = unopened {
        // A full disk must not stop the box measuring: results are held in memory
        // and sent straight up until the spool opens.
        tracing::error!(error = %e, spool = %spool_path.display(), "cannot open the spool; running without it until it opens");
    }
    let identity = Identity::load(&state_dir)?;
    let ledger = LedgerFile::load(&state_dir.join(BUDGET_FILE)).map_err(|e| {
        anyhow::anyhow!("data budget ledger: {e} (move it aside to start the month's count again)")
    })?;
    match &identity {
        Some(id) => tracing::info!(agent = %id.info.agent_id, "agent identity loaded"),
        None => tracing::warn!(
            state_dir = %state_dir.display(),
            "not enrolled yet: measuring and spooling; uploads start once `sonde-agent enroll` has run"
        ),
    }
    let phase_seed = match &identity {
        Some(id) => id.info.agent_id.clone(),
        None => measure::box_seed(&state_dir),
    };
    let running = plan::load(&state_dir, &config);
    let status = Status {
        plan: sonde_proto::plan::PlanState {
            version: running.version(),
            capabilities: plan::capabilities(),
            ..Default::default()
        },
        agent_id: identity.as_ref().map(|i| i.info.agent_id.clone()),
        running: true,
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").into(),
        started_at: Some(clock.now()),
        collector: config.file.collector.address.join(", "),
        spool_full,
        ..Status::default()
    };
    Ok(Shared {
        board: Board::new(status, &state_dir, clock.clone()),
        config,
        state_dir,
        spool: Arc::new(Mutex::new(spool)),
        wake: Notify::new(),
        latest: Mutex::new(Default::default()),
        ledger: Arc::new(Mutex::new(ledger)),
        runs: Mutex::new(BTreeMap::new()),
        clock,
        prober,
        line: tokio::sync::Mutex::new(()),
        phase_seed,
        held: Mutex::new(Default::default()),
        running: Mutex::new(running),
        replan: Notify::new(),
        health_now: Default::default(),
        signing_key: signing.public_text(),
    })
}

/// The agent's own `/metrics`, when configured.
async fn serve_metrics(
    shared: &Arc<Shared>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(addr) = shared.config.metrics_listen else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("metrics.listen: cannot listen on {addr}"))?;
    tracing::info!(metrics = %listener.local_addr()?, "agent metrics listening");
    let s = shared.clone();
    let snapshot = Arc::new(move || {
        let (latest, tests) = s.latest.lock().unwrap_or_else(|e| e.into_inner()).clone();
        metrics::Snapshot {
            status: s.board.snapshot(),
            latest,
            tests,
        }
    });
    Ok(Some(tokio::spawn(metrics::serve(listener, snapshot))))
}
