//! `sonde-store-postgres`, the shared store: one PostgreSQL database behind several
//! collectors. Schema by numbered migrations ([`MIGRATIONS`], applied under an
//! advisory lock); `results` and `report_facts` partitioned by month; each group commit
//! written with a handful of batched statements (arrays unnested server-side), not one
//! statement a result. The transparency log's appends are serialised across
//! collectors by a transaction-scoped advisory lock, so its leaves keep one order.
//!
//! The client is `postgres`, the synchronous face of `tokio-postgres`: the store's
//! roles are synchronous (SQLite's are), and connections are pooled by `r2d2`. The
//! synchronous client runs a small runtime of its own, which must not start on a
//! thread already inside tokio's: from there each call runs on a short-lived scoped
//! thread ([`PostgresStore::with`]).
#![warn(missing_docs)]

mod copy;
mod error;
mod log;
mod read;
mod scan;
mod schema;
pub mod scratch;
mod write;

pub use copy::{copy_from_sqlite, Copied};
pub use error::Error;
pub use schema::MIGRATIONS;

use chrono::{DateTime, Utc};
use r2d2_postgres::{postgres::NoTls, PostgresConnectionManager};
use sonde_proto::ResultRecord;
use sonde_store::redact_url;
use sonde_store::{
    AgentRow, Batch, Chains, Delivery, EnrolError, Enrolments, Inserted, Maintenance, NewToken,
    PlanVersion, Plans, ReportScope, ReportSink, ReportSource, ResultPage, ResultQuery,
    ResultReader, ResultWriter, SealedKeys, Site, StoreError, TransparencyLog,
};
use std::collections::HashSet;
use std::sync::Mutex;

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

/// Connections kept open to the server, at most.
const POOL_SIZE: u32 = 8;
/// How long [`Maintenance::healthy`] waits for a connection: `/healthz` must answer a
/// prober within its bound even while the server is unreachable.
const HEALTH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// A connection attempt that has not succeeded in this long has failed (unless the
/// URL says otherwise with `connect_timeout`).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// The pool's failures to connect are logged once in this long at most.
const QUIET: std::time::Duration = std::time::Duration::from_secs(10);

/// Logs the pool's failures to connect with their reason, once a [`QUIET`] at most
/// and with how many were not logged: a server that is down must not flood the log
/// with a line for each of the pool's attempts. It keeps the last failure's cause,
/// which the pool's own error drops ("error connecting to server" and no more), so a
/// caller left without a connection is told why.
#[derive(Debug, Default)]
struct ConnectErrors(Mutex<ConnectState>);

#[derive(Debug, Default)]
struct ConnectState {
    logged_at: Option<std::time::Instant>,
    not_logged: u64,
    /// The last failure: as the pool shows it, and with its cause.
    last: Option<(String, String)>,
}

/// [`ConnectErrors`] as the pool holds it, shared with the store.
#[derive(Debug)]
struct SharedErrors(std::sync::Arc<ConnectErrors>);

impl r2d2::HandleError<postgres::Error> for SharedErrors {
    fn handle_error(&self, error: postgres::Error) {
        let reason = match std::error::Error::source(&error) {
            Some(cause) => format!("{error}: {cause}"),
            None => error.to_string(),
        };
        let mut state = self.0 .0.lock().unwrap_or_else(|e| e.into_inner());
        state.last = Some((error.to_string(), reason.clone()));
        if state.logged_at.is_some_and(|t| t.elapsed() < QUIET) {
            state.not_logged += 1;
            return;
        }
        tracing::warn!(%reason, not_logged = state.not_logged, "PostgreSQL: cannot connect");
        state.logged_at = Some(std::time::Instant::now());
        state.not_logged = 0;
    }
}

impl ConnectErrors {
    /// The pool's error, with the cause of the last failure to connect it names.
    fn explain(&self, e: r2d2::Error) -> Error {
        let shown = e.to_string();
        let state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        Error::Pool(match &state.last {
            Some((bare, reason)) if shown.ends_with(bare.as_str()) => {
                format!("{}{reason}", &shown[..shown.len() - bare.len()])
            }
            _ => shown,
        })
    }
}

/// The PostgreSQL store.
pub struct PostgresStore {
    /// Always `Some` but while dropping.
    pool: Option<Pool>,
    /// Months whose partitions exist.
    months: Mutex<HashSet<schema::Month>>,
    /// The URL without its password, for messages.
    shown: String,
    /// The pool's failures to connect.
    connect_errors: std::sync::Arc<ConnectErrors>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

/// Checks that `url` names a PostgreSQL database (without connecting); why not.
pub fn check_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(format!(
            "{} is not a postgres:// URL (e.g. postgres://sonde:PASSWORD@db.example:5432/sonde)",
            redact_url(url)
        ));
    }
    url.parse::<postgres::Config>()
        .map(|_| ())
        .map_err(|e| format!("{}: {e}", redact_url(url)))
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`, or
    /// `postgres:///db?host=/run/postgresql` over a Unix socket) and migrates it.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let shown = redact_url(url);
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Query(format!("{shown} is not a PostgreSQL URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let manager = PostgresConnectionManager::new(config, NoTls);
        let connect_errors = std::sync::Arc::new(ConnectErrors::default());
        let store = run_outside_tokio(|| {
            let pool = r2d2::Pool::builder()
                .max_size(POOL_SIZE)
                .min_idle(Some(1))
                .connection_timeout(std::time::Duration::from_secs(10))
                .error_handler(Box::new(SharedErrors(connect_errors.clone())))
                .build(manager)
                .map_err(|e| StoreError::Backend(format!("cannot reach {shown}: {e}")))?;
            let mut conn = pool.get().map_err(|e| connect_errors.explain(e))?;
            let version = schema::migrate(&mut conn)?;
            drop(conn);
            tracing::debug!(version, url = %shown, "PostgreSQL store open");
            Ok::<_, StoreError>(pool)
        })?;
        Ok(PostgresStore {
            pool: Some(store),
            months: Mutex::new(HashSet::new()),
            shown,
            connect_errors,
        })
    }

    /// Schema version of the database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self.with(|c| {
            Ok(
                c.query_one("SELECT MAX(version) FROM schema_migrations", &[])?
                    .get::<_, Option<i64>>(0)
                    .unwrap_or(0),
            )
        })?)
    }

    /// A connection from the pool, waiting `wait` at most (else the pool's timeout);
    /// when there is none, why, with the last failure's cause.
    fn conn(
        &self,
        wait: Option<std::time::Duration>,
    ) -> Result<r2d2::PooledConnection<PostgresConnectionManager<NoTls>>, Error> {
        let pool = self.pool()?;
        match wait {
            Some(wait) => pool.get_timeout(wait),
            None => pool.get(),
        }
        .map_err(|e| self.connect_errors.explain(e))
    }

    fn pool(&self) -> Result<&Pool, Error> {
        self.pool
            .as_ref()
            .ok_or_else(|| Error::Pool("the store is closing".into()))
    }

    /// Runs `f` on a pooled connection; off tokio's threads, as the synchronous client
    /// needs. An error leaves the connection to the pool, which checks it.
    fn with<R: Send>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<R, Error> + Send,
    ) -> Result<R, Error> {
        run_outside_tokio(|| {
            let mut conn = self.conn(None)?;
            f(&mut conn)
        })
    }

    /// Runs `produce` on a pooled connection, off tokio's threads, and hands what it
    /// sends to `consume` on this thread as it comes (a scan's sink need not be `Send`).
    /// When `consume` fails, `produce` stops at its next send.
    fn stream<T: Send>(
        &self,
        produce: impl FnOnce(&mut postgres::Client, &Sender<T>) -> Result<(), Error> + Send,
        mut consume: impl FnMut(T) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<T>(64);
        std::thread::scope(|s| {
            let producer = s.spawn(move || -> Result<(), Error> {
                let mut conn = self.conn(None)?;
                produce(&mut conn, &Sender(tx))
            });
            let mut failed = None;
            for item in rx.iter() {
                if let Err(e) = consume(item) {
                    failed = Some(e);
                    break;
                }
            }
            drop(rx);
            let produced = producer
                .join()
                .unwrap_or_else(|_| Err(Error::Pool("a reader thread panicked".into())));
            match (failed, produced) {
                (Some(e), _) => Err(e),
                (None, Err(Error::Store(StoreError::Query(q)))) if q == STOPPED => Ok(()),
                (None, r) => r.map_err(StoreError::from),
            }
        })
    }

    /// Creates the monthly partitions `batches` need that are not known to exist.
    fn ensure_months(&self, batches: &[Batch]) -> Result<(), Error> {
        let wanted: HashSet<schema::Month> = batches
            .iter()
            .flat_map(|b| &b.records)
            .map(|r| schema::month_of(sonde_store::rows::nanos(r.run.started_at)))
            .collect();
        let missing: Vec<schema::Month> = {
            let known = self.months.lock().unwrap_or_else(|e| e.into_inner());
            wanted.difference(&known).copied().collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        self.with(|c| {
            for &m in &missing {
                schema::ensure_month(c, m)?;
            }
            Ok(())
        })?;
        self.months
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(missing);
        Ok(())
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Closing a connection runs the synchronous client's runtime: off tokio's
        // threads, like every call (the collector drops its store inside `block_on`).
        if let Some(pool) = self.pool.take() {
            run_outside_tokio(move || drop(pool));
        }
    }
}

/// What a stream's consumer said when it stopped early (not an error).
const STOPPED: &str = "stopped by the reader";

/// The producing side of [`PostgresStore::stream`].
pub(crate) struct Sender<T>(std::sync::mpsc::SyncSender<T>);

impl<T> Sender<T> {
    /// Sends `item`; an error once the consumer stopped, which ends the producer.
    pub(crate) fn send(&self, item: T) -> Result<(), Error> {
        self.0
            .send(item)
            .map_err(|_| Error::Store(StoreError::Query(STOPPED.into())))
    }
}

/// Runs `f` here, or on a scoped thread when this thread is one of tokio's (the
/// synchronous client's own runtime cannot start inside another).
fn run_outside_tokio<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

impl ResultWriter for PostgresStore {
    fn insert_batches(
        &self,
        batches: &[Batch],
        now: DateTime<Utc>,
    ) -> Result<Vec<Inserted>, StoreError> {
        self.ensure_months(batches)?;
        Ok(self.with(|c| write::insert_batches(c, batches, now))?)
    }
}

impl TransparencyLog for PostgresStore {
    fn log_size(&self) -> Result<u64, StoreError> {
        Ok(self.with(log::size)?)
    }

    fn log_hashes(&self, indexes: &[u64]) -> Result<Vec<sonde_store::log::Hash>, StoreError> {
        Ok(self.with(|c| log::hashes(c, indexes))?)
    }

    fn log_leaf(&self, result_id: &str) -> Result<Option<(u64, String)>, StoreError> {
        Ok(self.with(|c| log::leaf(c, result_id))?)
    }

    fn log_leaves_in(
        &self,
        scope: &ReportScope,
        each: &mut dyn FnMut(&sonde_store::LogLeaf<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.stream(
            |c, out| log::leaves_in(c, scope, out),
            |l: log::Leaf| {
                each(&sonde_store::LogLeaf {
                    id: &l.id,
                    leaf: l.leaf,
                    bytes: &l.record,
                    agent_id: &l.agent_id,
                    site: (&l.quartier, &l.building),
                    envelope: l.envelope.as_deref(),
                })
            },
        )
    }

    fn log_count_in(&self, scope: &ReportScope, size: u64) -> Result<u64, StoreError> {
        Ok(self.with(|c| log::count_in(c, scope, size))?)
    }

    fn keep_checkpoint(&self, size: u64, note: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let at_ns = sonde_store::rows::nanos(at);
        Ok(self.with(|c| log::keep_checkpoint(c, size, note, at_ns))?)
    }

    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        Ok(self.with(log::latest_checkpoint)?)
    }
}

impl Chains for PostgresStore {
    fn register_signing_key(
        &self,
        agent_id: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        Ok(self.with(|c| write::register_key(c, agent_id, key, now))?)
    }

    fn signing_keys(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self.with(read::keys)?)
    }

    fn chain_head(&self, agent_id: &str) -> Result<Option<(u64, String)>, StoreError> {
        Ok(self.with(|c| read::chain_head(c, agent_id))?)
    }

    fn key_rotations(
        &self,
        agent_id: Option<&str>,
    ) -> Result<Vec<(String, sonde_proto::wire::Rotation)>, StoreError> {
        Ok(self.with(|c| read::rotations(c, agent_id))?)
    }
}

impl SealedKeys for PostgresStore {
    fn sealed_key(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.with(|c| {
            Ok(
                c.query_opt("SELECT sealed FROM sealed_keys WHERE name = $1", &[&name])?
                    .map(|r| r.get(0)),
            )
        })?)
    }

    fn keep_sealed_key(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        Ok(self.with(|c| {
            // The first collector's stays: a row comes back whoever inserted it.
            c.execute(
                "INSERT INTO sealed_keys (name, sealed) VALUES ($1, $2)
                 ON CONFLICT (name) DO NOTHING",
                &[&name, &sealed],
            )?;
            Ok(
                c.query_one("SELECT sealed FROM sealed_keys WHERE name = $1", &[&name])?
                    .get(0),
            )
        })?)
    }

    fn replace_sealed_key(&self, name: &str, sealed: &[u8]) -> Result<(), StoreError> {
        Ok(self.with(|c| {
            c.execute(
                "INSERT INTO sealed_keys (name, sealed) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed, sealed_at = now()",
                &[&name, &sealed],
            )?;
            Ok(())
        })?)
    }
}

impl Enrolments for PostgresStore {
    fn create_token(&self, token: &NewToken) -> Result<(), StoreError> {
        Ok(self.with(|c| write::create_token(c, token))?)
    }

    fn enrol(
        &self,
        hash: &str,
        now: DateTime<Utc>,
        name: &dyn Fn(&Site) -> String,
    ) -> Result<(String, Site), EnrolError> {
        let store = |e: Error| EnrolError::Store(e.into());
        // The token is read, the name made here (`name` need not be `Send`), then the
        // token is taken by one conditional update: of two enrolments racing on it,
        // one takes it and the other is told it is used.
        let site = self
            .with(|c| write::usable_token(c, hash, now))
            .map_err(store)??;
        let agent_id = name(&site);
        self.with(|c| write::enrol(c, hash, now, &agent_id, &site))
            .map_err(store)??;
        Ok((agent_id, site))
    }

    fn enrolment(&self, agent_id: &str) -> Result<Option<Site>, StoreError> {
        Ok(self.with(|c| read::enrolment(c, agent_id))?)
    }

    fn revoke(&self, agent_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        Ok(self.with(|c| write::revoke(c, agent_id, now))?)
    }

    fn revoked_at(&self, agent_id: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.with(|c| read::revoked_at(c, agent_id))?)
    }

    fn revoked(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        Ok(self.with(read::revoked)?)
    }
}

impl Plans for PostgresStore {
    fn apply_plan(&self, document: &str, at: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(self.with(|c| write::apply_plan(c, document, at))?)
    }

    fn plan_version(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.with(read::plan_version)?)
    }

    fn plan(&self, version: u64) -> Result<Option<PlanVersion>, StoreError> {
        Ok(self.with(|c| read::plan(c, version))?)
    }

    fn plans(&self) -> Result<Vec<PlanVersion>, StoreError> {
        Ok(self.with(read::plans)?)
    }
}

impl ResultReader for PostgresStore {
    fn results(&self, query: &ResultQuery) -> Result<ResultPage, StoreError> {
        Ok(self.with(|c| read::results(c, query))?)
    }

    fn result(&self, id: &str) -> Result<Option<sonde_store::StoredResult>, StoreError> {
        Ok(self.with(|c| read::result(c, id))?)
    }

    fn agents(&self) -> Result<Vec<AgentRow>, StoreError> {
        Ok(self.with(read::agents)?)
    }

    fn latest_results(&self) -> Result<Vec<(Delivery, ResultRecord)>, StoreError> {
        Ok(self.with(read::latest_results)?)
    }

    fn site_known(
        &self,
        quartier: Option<&str>,
        building: Option<&str>,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|c| read::site_known(c, quartier, building))?)
    }
}

impl ReportSource for PostgresStore {
    fn report_scan(
        &self,
        scope: &ReportScope,
        with_ids: bool,
        sink: &mut dyn ReportSink,
    ) -> Result<(), StoreError> {
        self.stream(
            |c, out| scan::scan(c, scope, with_ids, out),
            |part| scan::feed(part, &mut *sink),
        )
    }

    fn result_ids(&self, rows: &[(i64, i64)]) -> Result<Vec<Option<String>>, StoreError> {
        Ok(self.with(|c| read::result_ids(c, rows))?)
    }
}

impl Maintenance for PostgresStore {
    fn prune(&self, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        Ok(self.with(|c| write::prune(c, before, limit))?)
    }

    fn lease(
        &self,
        job: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|c| write::lease(c, job, holder, now, until))?)
    }

    fn backup(&self, _path: &std::path::Path) -> Result<(), StoreError> {
        Err(StoreError::Query(format!(
            "a PostgreSQL store is backed up by PostgreSQL's own tools (pg_dump or \
             pg_basebackup of {}); see docs/OPERATIONS.md",
            self.shown
        )))
    }

    fn health(&self) -> Result<(), StoreError> {
        run_outside_tokio(|| {
            let mut c = self.conn(Some(HEALTH_WAIT))?;
            c.query_one("SELECT 1", &[])?;
            Ok::<_, Error>(())
        })?;
        Ok(())
    }

    fn space(&self) -> Option<sonde_store::Space> {
        None
    }
}
