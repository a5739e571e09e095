//! The collector as a library: [`Server::bind`] opens its QUIC and HTTP listeners on
//! what the configuration says (port 0 for tests), [`Server::run`] serves until the
//! shutdown future resolves, then drains: no new connection, the uploads being
//! committed finish and are acknowledged (10 s at most), connections close, and the
//! commit thread is joined. [`run`] does both. In-process tests use it.

use crate::api;
use crate::ca::CertificateAuthority;
use crate::config::Checked;
use crate::fleet::{self, Fleet, FleetView};
use crate::ingest::Ingest;
use crate::metrics::Exporter;
use crate::report::sign::ReportKey;
use crate::transport::http as http_gate;
use crate::transport::quic;
use anyhow::Context as _;
use sonde_store::{Maintenance, Store, StoreError};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Longest wait for uploads being committed when draining.
pub const DRAIN: Duration = Duration::from_secs(10);

/// What the collector runs on.
pub struct Deps {
    /// The store (every role).
    pub store: Arc<dyn Store>,
    /// The certificate authority of agents and of the server.
    pub ca: Arc<dyn CertificateAuthority>,
    /// The key reports are signed with.
    pub report_key: ReportKey,
    /// The seal key of the keys kept in the store (`[store] seal_key`): a report key
    /// rotated there is followed while the collector runs.
    pub seal: Option<crate::keys::SealKey>,
    /// Where other components' metrics are registered (served on `/metrics`).
    pub registry: prometheus::Registry,
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps")
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

/// A collector bound to its addresses, not serving yet.
pub struct Server {
    config: Checked,
    store: Arc<dyn Store>,
    ingest: Arc<Ingest>,
    api: Arc<api::Api>,
    endpoint: quinn::Endpoint,
    http: tokio::net::TcpListener,
    gate: Arc<http_gate::Gate>,
    fleet: Arc<dyn FleetView>,
    /// This process, as maintenance leases name it.
    holder: String,
    /// The seal key of the keys kept in the store, if they are.
    seal: Option<Arc<crate::keys::SealKey>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("http", &self.http_addr().ok())
            .field("quic", &self.quic_addr().ok())
            .finish_non_exhaustive()
    }
}

/// Binds, then serves until `shutdown` resolves, then drains.
pub async fn run(
    config: Checked,
    deps: Deps,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    Server::bind(config, deps).await?.run(shutdown).await
}

impl Server {
    /// Rebuilds the metrics from the store and opens the listeners.
    pub async fn bind(config: Checked, mut deps: Deps) -> anyhow::Result<Server> {
        deps.store = Arc::new(crate::guard::OffWorkers(deps.store));
        let server_cert = deps
            .ca
            .issue_server(config.quic_names.clone())
            .context("server certificate")?;
        let quic_config =
            quic::server_config(deps.ca.as_ref(), server_cert).context("QUIC configuration")?;
        let endpoint = quic::endpoint(config.quic_listen, quic_config, &config.data_dir)
            .with_context(|| format!("cannot listen on udp {}", config.quic_listen))?;
        let fleet: Arc<dyn FleetView> = Arc::new(Fleet::new(config.silent_horizon));
        let started = std::time::Instant::now();
        let (f, s) = (fleet.clone(), deps.store.clone());
        let rebuilt = sonde_cli::blocking::run(move || fleet::rebuild(f.as_ref(), s.as_ref()))
            .await?
            .context("rebuilding the metrics")?;
        tracing::info!(
            accesses = rebuilt,
            took_ms = started.elapsed().as_millis() as u64,
            "metrics rebuilt from the store"
        );
        let ingest = Arc::new(Ingest::new(
            deps.store.clone(),
            Some(deps.ca),
            Some(fleet.clone()),
            sonde_proto::wire::DEFAULT_MAX_PAYLOAD,
        ));
        let http = tokio::net::TcpListener::bind(config.http_listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.http_listen))?;
        let gate = http_gate::Gate::new(http_limits(config.http_limits));
        let api = Arc::new(api::Api {
            store: deps.store.clone(),
            ingest: Some(ingest.clone()),
            exporter: Some(Arc::new(
                Exporter::new(ingest.clone(), deps.registry).with_http(gate.clone()),
            )),
            reports: Some(Arc::new(api::Reports {
                key: Arc::new(crate::keys::CurrentKey::new(deps.report_key)),
                time_zone: config.time_zone,
                issuer: config.issuer.clone(),
            })),
            reads: api::pool::ReadPool::new(),
        });
        Ok(Server {
            api,
            store: deps.store,
            ingest,
            endpoint,
            http,
            gate,
            config,
            fleet,
            holder: format!("{}/{}", std::process::id(), uuid::Uuid::now_v7()),
            seal: deps.seal.map(Arc::new),
        })
    }

    /// The HTTP address.
    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.http.local_addr()
    }

    /// The QUIC address.
    pub fn quic_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// The ingest (its counters).
    pub fn ingest(&self) -> &Arc<Ingest> {
        &self.ingest
    }

    /// Serves until `shutdown` resolves, then drains (see the module's doc).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        tracing::info!(
            http = %self.http_addr()?,
            quic = %self.quic_addr()?,
            names = ?self.config.quic_names,
            store = %self.config.store_name(),
            "collector listening"
        );
        let retention = (self.config.raw_months > 0).then(|| {
            tokio::spawn(retention(
                self.store.clone(),
                self.config.raw_months,
                self.holder.clone(),
            ))
        });
        let revocations = tokio::spawn(watch_revocations(self.store.clone(), self.ingest.clone()));
        let plans = tokio::spawn(watch_plans(self.store.clone(), self.ingest.clone()));
        let refresh = self.config.metrics_refresh.map(|every| {
            tokio::spawn(refresh_metrics(
                self.fleet.clone(),
                self.store.clone(),
                every,
            ))
        });
        let checkpoints = self.api.reports.as_ref().map(|r| {
            tokio::spawn(crate::log::checkpoints(
                self.store.clone(),
                r.key.clone(),
                self.config.checkpoint_every,
                self.holder.clone(),
            ))
        });
        let follow = self
            .api
            .reports
            .as_ref()
            .zip(self.seal.as_ref())
            .map(|(r, seal)| {
                tokio::spawn(follow_report_key(
                    self.store.clone(),
                    seal.clone(),
                    r.key.clone(),
                ))
            });
        let quic_task = tokio::spawn(quic::serve(
            self.endpoint.clone(),
            self.ingest.clone(),
            self.config.admission,
        ));
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        self.serve_http(&graceful, shutdown).await;
        tracing::info!("collector stopping: draining");
        self.drain(graceful).await;
        quic_task.abort();
        revocations.abort();
        plans.abort();
        for t in [refresh, checkpoints, follow, retention]
            .into_iter()
            .flatten()
        {
            t.abort();
        }
        let _ = quic_task.await;
        self.ingest.committer().stop().await;
        tracing::info!("collector stopped");
        Ok(())
    }

    /// Accepts HTTP connections until `shutdown` resolves.
    async fn serve_http(
        &self,
        graceful: &hyper_util::server::graceful::GracefulShutdown,
        shutdown: impl Future<Output = ()>,
    ) {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(http_gate::HEADER_TIMEOUT)
            .max_buf_size(64 * 1024);
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = self.http.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of descriptors and the like: pause rather than spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => return,
            };
            let Ok(ticket) = self.gate.admit(peer.ip()) else {
                tracing::debug!(%peer, "HTTP connection refused: its address holds its share");
                continue;
            };
            let api = self.api.clone();
            let activity = ticket.activity.clone();
            let service = hyper::service::service_fn(move |req| {
                let (api, in_flight) = (api.clone(), activity.request());
                async move {
                    let resp = api::handle(api, req).await;
                    drop(in_flight);
                    resp
                }
            });
            let io = hyper_util::rt::TokioIo::new(ticket.track(stream));
            let conn = graceful.watch(builder.serve_connection(io, service));
            tokio::spawn(guarded(conn, ticket));
        }
    }

    /// No new agent; the uploads being committed are acknowledged; then every
    /// connection closes. Agents whose batch was not acknowledged send it again later.
    async fn drain(&self, graceful: hyper_util::server::graceful::GracefulShutdown) {
        self.endpoint.set_server_config(None);
        let deadline = tokio::time::Instant::now() + DRAIN;
        while self.ingest.in_flight() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A moment for the acks just written to leave.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.endpoint.close(0u32.into(), b"collector stopping");
        let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.endpoint.wait_idle()).await;
    }
}

/// The HTTP limits, fitted to the descriptors this process may open (raised to the
/// hard limit first).
fn http_limits(wanted: http_gate::Limits) -> http_gate::Limits {
    let nofile = http_gate::raise_nofile();
    match wanted.fitted(nofile) {
        Some(fitted) => {
            tracing::warn!(
                nofile,
                wanted = wanted.total,
                holding = fitted.total,
                "http.max_connections lowered to fit the open-file limit (raise LimitNOFILE)"
            );
            fitted
        }
        None => wanted,
    }
}

/// Serves one HTTP connection until it ends, the gate evicts it, or it moves no byte
/// for [`http_gate::IDLE`].
async fn guarded<F: Future>(conn: F, ticket: http_gate::Ticket) {
    tokio::pin!(conn);
    let mut check = tokio::time::interval(http_gate::IDLE / 3);
    loop {
        tokio::select! {
            _ = &mut conn => return,
            _ = ticket.cut.notified() => return,
            _ = check.tick() => if ticket.idle_for() >= http_gate::IDLE {
                ticket.count(http_gate::Cut::Idle);
                return;
            },
        }
    }
}

/// How often a running collector asks the store for the latest plan version.
const PLAN_POLL: Duration = Duration::from_secs(1);

/// Rebuilds the fleet's series from the store every `every` (`[metrics] refresh`):
/// what other collectors on the same store committed appears here too. Older results
/// never replace newer ones, so a rebuild racing an ingest loses nothing.
async fn refresh_metrics(fleet: Arc<dyn FleetView>, store: Arc<dyn Store>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let (f, s) = (fleet.clone(), store.clone());
        let started = std::time::Instant::now();
        match sonde_cli::blocking::run(move || fleet::rebuild(f.as_ref(), s.as_ref())).await {
            Ok(Ok(n)) => tracing::debug!(
                accesses = n,
                took_ms = started.elapsed().as_millis() as u64,
                "metrics refreshed from the store"
            ),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "refreshing the metrics from the store failed")
            }
            Err(e) => tracing::warn!(error = %e, "refreshing the metrics from the store failed"),
        }
    }
}

/// Signs with the report key sealed in the store, once a rotation puts another one
/// there, until the task is dropped.
async fn follow_report_key(
    store: Arc<dyn Store>,
    seal: Arc<crate::keys::SealKey>,
    current: Arc<crate::keys::CurrentKey>,
) {
    let mut tick = tokio::time::interval(crate::keys::FOLLOW_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (s, k, c) = (store.clone(), seal.clone(), current.clone());
        let work = move || crate::keys::follow_report_key(s.as_ref(), &k, &c);
        match sonde_cli::blocking::run(work).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "looking for a rotated report key failed"),
            Err(e) => tracing::warn!(error = %e, "looking for a rotated report key failed"),
        }
    }
}

/// Keeps ingest's plan in force as the store has it (`plan apply` is another
/// process), until the task is dropped: connected agents get a new one within seconds.
async fn watch_plans(store: Arc<dyn Store>, ingest: Arc<Ingest>) {
    let mut tick = tokio::time::interval(PLAN_POLL);
    let mut known: Option<u64> = None;
    loop {
        tick.tick().await;
        let s = store.clone();
        let seen = sonde_cli::blocking::run(move || s.plan_version()).await;
        let version = match seen {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the plan version");
                continue;
            }
            Err(_) => continue,
        };
        if version == known {
            continue;
        }
        let s = store.clone();
        match sonde_cli::blocking::run(move || crate::plans::latest(s.as_ref())).await {
            Ok(Ok(Some(p))) => {
                tracing::info!(version = p.version, "plan in force");
                known = Some(p.version);
                ingest.set_plan(Some(Arc::new(p)));
            }
            Ok(Ok(None)) => known = version,
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the plan"),
            Err(_) => {}
        }
    }
}

/// How often the store is asked which agents are revoked.
pub const REVOCATION_POLL: Duration = Duration::from_secs(2);

/// Keeps ingest's list of revoked agents as the store has it (`agent revoke` is
/// another process), so a revocation reaches open connections within seconds.
async fn watch_revocations(store: Arc<dyn Store>, ingest: Arc<Ingest>) {
    let mut tick = tokio::time::interval(REVOCATION_POLL);
    loop {
        tick.tick().await;
        let s = store.clone();
        match sonde_cli::blocking::run(move || s.revoked()).await {
            Ok(Ok(revoked)) => ingest.set_revoked(revoked),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the revocations"),
            Err(_) => {}
        }
    }
}

/// Deletes the raw results older than `months` every hour, in chunks, off the async
/// workers.
/// Prunes every hour, when `holder` (this collector) holds the job's lease (two hours):
/// with several collectors on one store, one prunes at a time.
async fn retention(store: Arc<dyn Store>, months: u32, holder: String) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let (s, h) = (store.clone(), holder.clone());
        let work = move || {
            let now = chrono::Utc::now();
            if !s.lease("retention", &h, now, now + chrono::Duration::hours(2))? {
                return Ok(0);
            }
            prune(s.as_ref(), months)
        };
        let pruned = sonde_cli::blocking::run(work).await;
        match pruned {
            Ok(Ok(0)) | Err(_) => {}
            Ok(Ok(n)) => tracing::info!(results = n, months, "raw results past retention deleted"),
            Ok(Err(e)) => tracing::warn!(error = %e, "retention failed"),
        }
    }
}

/// Deletes the raw results older than `months`, in chunks so ingest never waits long.
pub fn prune(store: &dyn Maintenance, months: u32) -> Result<usize, StoreError> {
    let Some(before) = chrono::Utc::now().checked_sub_months(chrono::Months::new(months)) else {
        return Ok(0);
    };
    let mut total = 0;
    for _ in 0..10_000 {
        let n = store.prune(before, 5_000)?;
        total += n;
        if n < 5_000 {
            break;
        }
    }
    Ok(total)
}
