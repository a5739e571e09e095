//! The embedded store: one SQLite file in WAL mode, `synchronous=FULL` so a commit is
//! on disk before `insert` returns, schema brought up to date by numbered migrations
//! (`collector/migrations/NNNN_*.sql`, applied in order, recorded in `user_version`).

use super::{
    decode_cursor, encode_cursor, AgentRow, Batch, EnrolError, Fact, Inserted, NewToken,
    ReportScope, ReportSink, ResultPage, ResultQuery, ScheduledAccess, Site, Store, StoreError,
    StoredResult,
};
use crate::store::Delivery;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use sonde_proto::ResultRecord;
use std::path::Path;
use std::sync::Mutex;

/// Migrations, in order; the number of one is its position + 1.
pub const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_results.sql"),
    include_str!("../../migrations/0002_enrolment.sql"),
    include_str!("../../migrations/0003_results_rowid.sql"),
    include_str!("../../migrations/0004_report_facts.sql"),
    include_str!("../../migrations/0005_revocation.sql"),
];

/// Largest page.
pub const MAX_PAGE: usize = 1000;

/// The SQLite store.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// The file, for readers on their own connection (`None` in memory).
    path: Option<std::path::PathBuf>,
    checkpointer: Option<Checkpointer>,
}

/// WAL checkpoints run on their own thread and connection, so the copy of committed
/// pages into the database file never sits on the commit path (which only appends to
/// the WAL and fsyncs it). Checkpoints are PASSIVE: they never block the writer.
#[derive(Debug)]
struct Checkpointer {
    stop: std::sync::Arc<(Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Time between background checkpoints.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

impl Checkpointer {
    fn start(path: &Path) -> Result<Checkpointer, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let stop = std::sync::Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sonde-checkpoint".into())
            .spawn(move || {
                let (lock, cvar) = &*flag;
                let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                while !*stopped {
                    let (guard, _) = cvar
                        .wait_timeout(stopped, CHECKPOINT_EVERY)
                        .unwrap_or_else(|e| e.into_inner());
                    stopped = guard;
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                    }
                }
            })
            .map_err(|e| StoreError::Query(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (lock, cvar) = &*self.stop;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cvar.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn ns(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

fn from_ns(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(v)
}

/// Switches the file to WAL. On a new file, two connections doing this at once
/// both hold a shared lock and both want the exclusive one: SQLite answers one of
/// them "database is locked" at once, without its busy handler, to break the
/// deadlock. That one waits a little and tries again, for 5 s at most.
fn set_wal(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut store = Self::setup(Connection::open(path)?)?;
        store.path = Some(path.to_path_buf());
        store.lock().pragma_update(None, "wal_autocheckpoint", 0)?;
        store.checkpointer = Some(Checkpointer::start(path)?);
        Ok(store)
    }

    /// An in-memory store, for tests.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::setup(Connection::open_in_memory()?)
    }

    fn setup(mut conn: Connection) -> Result<Self, StoreError> {
        // First: another process may hold the file's lock (a migration, a checkpoint).
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        set_wal(&conn)?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // 64 MiB of page cache: a group commit of many uploads never spills pages to
        // the WAL before its COMMIT.
        conn.pragma_update(None, "cache_size", -65_536)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            path: None,
            checkpointer: None,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll
        // back on drop), so the connection stays usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks that `path` is a sound sonde store this code can open (integrity, schema
    /// version), without changing it; returns how many results it holds.
    pub fn check_backup(path: &Path) -> Result<u64, StoreError> {
        if !path.is_file() {
            return Err(StoreError::Query(format!(
                "{} is not a file",
                path.display()
            )));
        }
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        if ok != "ok" {
            return Err(StoreError::Query(format!("integrity check: {ok}")));
        }
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > MIGRATIONS.len() as i64 {
            return Err(StoreError::TooNew {
                found: version,
                known: MIGRATIONS.len() as i64,
            });
        }
        if version < 1 {
            return Err(StoreError::Query("not a sonde store (no schema)".into()));
        }
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM results", [], |r| r.get(0))
            .map_err(|_| StoreError::Query("not a sonde store (no results table)".into()))?;
        Ok(n as u64)
    }

    /// Schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .lock()
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }
}

/// Applies the migrations the database lacks, each in its own transaction.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as i64;
    loop {
        // Each step takes the write lock first, then reads the version: two processes
        // opening a new store at once (a `token create` beside a starting `serve`)
        // apply each step once, one after the other.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let current: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if current > known {
            return Err(StoreError::TooNew {
                found: current,
                known,
            });
        }
        let Some(sql) = MIGRATIONS.get(current as usize) else {
            return Ok(());
        };
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", current + 1)?;
        tx.commit()?;
    }
}

/// An access whose results this transaction stores.
struct Touched {
    id: i64,
    quartier: String,
    building: String,
    kind: &'static str,
    first: i64,
    last: i64,
    interval: Option<f64>,
    /// More than one result: its row needs the final figures.
    again: bool,
}

/// Flags as the report facts keep them: wire names, comma-separated.
fn flags_text(flags: &[sonde_proto::Flag]) -> String {
    flags
        .iter()
        .map(|f| f.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

impl Store for SqliteStore {
    fn insert_batches(
        &self,
        batches: &[Batch],
        now: DateTime<Utc>,
    ) -> Result<Vec<Inserted>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let mut out = Vec::with_capacity(batches.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO results (id, agent_id, quartier, building, access_kind,
                     access_name, started_at, outcome, received_at, record)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (id) DO NOTHING",
            )?;
            let mut agent = tx.prepare_cached(
                "INSERT INTO agents (id, quartier, building, version, first_seen, last_seen,
                     health, health_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, CASE WHEN ?6 IS NULL THEN NULL ELSE ?5 END)
                 ON CONFLICT (id) DO UPDATE SET
                     quartier = excluded.quartier, building = excluded.building,
                     version = COALESCE(excluded.version, agents.version),
                     last_seen = excluded.last_seen,
                     health = COALESCE(excluded.health, agents.health),
                     health_at = COALESCE(excluded.health_at, agents.health_at)",
            )?;
            let mut fact = tx.prepare_cached(
                "INSERT INTO report_facts (access_id, started_at, result_rowid, outcome, reason,
                     flags, down_bps, up_bps, down_goodput_bps, target_down_bps, verdict_down,
                     idle_s, loaded_s, probes_sent, probes_received, version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            )?;
            let mut access = tx.prepare_cached(
                "INSERT INTO report_accesses (agent_id, access, quartier, building, kind,
                     first_at, last_at, interval_s)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (agent_id, access) DO UPDATE SET
                     quartier = excluded.quartier, building = excluded.building,
                     kind = excluded.kind,
                     first_at = MIN(first_at, excluded.first_at),
                     interval_s = CASE WHEN excluded.last_at >= last_at
                         THEN COALESCE(excluded.interval_s, interval_s) ELSE interval_s END,
                     last_at = MAX(last_at, excluded.last_at)
                 RETURNING id",
            )?;
            let mut touched: std::collections::HashMap<(String, String), Touched> =
                std::collections::HashMap::new();
            for batch in batches {
                let delivery = &batch.delivery;
                let mut done = Inserted::default();
                for (i, r) in batch.records.iter().enumerate() {
                    let json = match batch.raw.get(i) {
                        Some(raw) => std::borrow::Cow::Borrowed(raw.as_str()),
                        None => std::borrow::Cow::Owned(r.to_json()),
                    };
                    let outcome = r.status.outcome.as_str();
                    let changed = insert.execute(params![
                        r.id.to_string(),
                        delivery.agent_id,
                        delivery.quartier,
                        delivery.building,
                        r.access.kind.as_str(),
                        r.access.name,
                        ns(r.run.started_at),
                        outcome,
                        ns(now),
                        json.as_ref(),
                    ])?;
                    if changed == 1 {
                        let rowid = tx.last_insert_rowid();
                        let quartier = delivery.quartier.as_deref().unwrap_or("");
                        let building = delivery.building.as_deref().unwrap_or("");
                        let name = r.access.name.as_deref().unwrap_or("");
                        let started = ns(r.run.started_at);
                        let idle = r.idle_latency.as_ref();
                        let down = r.download.as_ref();
                        // One upsert of the access when first met in this transaction,
                        // one at the end with what its other results changed.
                        let key = (delivery.agent_id.clone(), name.to_string());
                        let access_id = match touched.get_mut(&key) {
                            Some(t) => {
                                t.first = t.first.min(started);
                                if started >= t.last {
                                    t.last = started;
                                    t.interval = r.run.interval_s.or(t.interval);
                                }
                                t.again = true;
                                t.id
                            }
                            None => {
                                let id: i64 = access.query_row(
                                    params![
                                        delivery.agent_id,
                                        name,
                                        quartier,
                                        building,
                                        r.access.kind.as_str(),
                                        started,
                                        started,
                                        r.run.interval_s,
                                    ],
                                    |row| row.get(0),
                                )?;
                                touched.insert(
                                    key,
                                    Touched {
                                        id,
                                        quartier: quartier.to_string(),
                                        building: building.to_string(),
                                        kind: r.access.kind.as_str(),
                                        first: started,
                                        last: started,
                                        interval: r.run.interval_s,
                                        again: false,
                                    },
                                );
                                id
                            }
                        };
                        fact.execute(params![
                            access_id,
                            started,
                            rowid,
                            outcome,
                            r.status.reason.map(|x| x.as_str()),
                            flags_text(&r.flags),
                            down.map(|d| d.ip_rate_bps),
                            r.upload.as_ref().map(|u| u.ip_rate_bps),
                            down.map(|d| d.goodput_bps),
                            r.verdict.target_down_bps,
                            r.verdict.down.as_str(),
                            idle.and_then(|l| l.median_s),
                            down.and_then(|d| d.loaded_latency.as_ref())
                                .and_then(|l| l.median_s),
                            idle.map(|l| l.sent),
                            idle.map(|l| l.received),
                            r.agent.version,
                        ])?;
                        done.new += 1;
                    } else {
                        done.duplicates += 1;
                    }
                    done.fresh.push(changed == 1);
                }
                let version = batch
                    .health
                    .as_ref()
                    .map(|h| h.version.clone())
                    .filter(|v| !v.is_empty())
                    .or_else(|| batch.records.last().map(|r| r.agent.version.clone()));
                let health = batch
                    .health
                    .as_ref()
                    .and_then(|h| serde_json::to_string(h).ok());
                agent.execute(params![
                    delivery.agent_id,
                    delivery.quartier,
                    delivery.building,
                    version,
                    ns(now),
                    health
                ])?;
                out.push(done);
            }
            for ((agent_id, name), t) in touched.into_iter().filter(|(_, t)| t.again) {
                access.query_row(
                    params![
                        agent_id, name, t.quartier, t.building, t.kind, t.first, t.last, t.interval
                    ],
                    |row| row.get::<_, i64>(0),
                )?;
            }
        }
        tx.commit()?;
        Ok(out)
    }

    fn create_token(&self, t: &NewToken) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO tokens (hash, quartier, building, latitude, longitude, created_at,
                 expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                t.hash,
                t.quartier,
                t.building,
                t.latitude,
                t.longitude,
                ns(t.created_at),
                ns(t.expires_at)
            ],
        )?;
        Ok(())
    }

    fn enrol(
        &self,
        hash: &str,
        now: DateTime<Utc>,
        name: &dyn Fn(&Site) -> String,
    ) -> Result<(String, Site), EnrolError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(StoreError::from)?;
        type Row = (String, String, Option<f64>, Option<f64>, i64, Option<i64>);
        let row: Option<Row> = tx
            .query_row(
                "SELECT quartier, building, latitude, longitude, expires_at, used_at
                 FROM tokens WHERE hash = ?1",
                params![hash],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )
            .optional()
            .map_err(StoreError::from)?;
        let Some((quartier, building, latitude, longitude, expires_at, used_at)) = row else {
            return Err(EnrolError::Unknown);
        };
        if let Some(used) = used_at {
            return Err(EnrolError::Used(from_ns(used)));
        }
        if expires_at <= ns(now) {
            return Err(EnrolError::Expired(from_ns(expires_at)));
        }
        let site = Site {
            quartier,
            building,
            latitude,
            longitude,
        };
        let agent_id = name(&site);
        let store = |e: rusqlite::Error| EnrolError::Store(e.into());
        tx.execute(
            "UPDATE tokens SET used_at = ?2, agent_id = ?3 WHERE hash = ?1",
            params![hash, ns(now), agent_id],
        )
        .map_err(store)?;
        tx.execute(
            "INSERT INTO agents (id, quartier, building, first_seen, last_seen, enrolled_at,
                 latitude, longitude)
             VALUES (?1, ?2, ?3, ?4, ?4, ?4, ?5, ?6)
             ON CONFLICT (id) DO UPDATE SET
                 quartier = excluded.quartier, building = excluded.building,
                 enrolled_at = excluded.enrolled_at, latitude = excluded.latitude,
                 longitude = excluded.longitude",
            params![
                agent_id,
                site.quartier,
                site.building,
                ns(now),
                site.latitude,
                site.longitude
            ],
        )
        .map_err(store)?;
        tx.commit().map_err(store)?;
        Ok((agent_id, site))
    }

    fn latest_results(&self) -> Result<Vec<(Delivery, ResultRecord)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT r.agent_id, r.quartier, r.building, r.record
             FROM results r
             JOIN (SELECT agent_id, COALESCE(access_name, access_kind) AS access,
                          MAX(started_at) AS latest
                   FROM results GROUP BY agent_id, COALESCE(access_name, access_kind)) l
               ON r.agent_id = l.agent_id
              AND COALESCE(r.access_name, r.access_kind) = l.access
              AND r.started_at = l.latest",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok((
                Delivery {
                    agent_id: row.get(0)?,
                    quartier: row.get(1)?,
                    building: row.get(2)?,
                },
                row.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (delivery, record) = row?;
            // A row that no longer parses (written by a newer version) is skipped.
            if let Ok(r) = ResultRecord::from_json(record.as_bytes()) {
                out.push((delivery, r));
            }
        }
        Ok(out)
    }

    fn enrolment(&self, agent_id: &str) -> Result<Option<Site>, StoreError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT quartier, building, latitude, longitude FROM agents
                 WHERE id = ?1 AND enrolled_at IS NOT NULL",
                params![agent_id],
                |r| {
                    Ok(Site {
                        quartier: r.get(0)?,
                        building: r.get(1)?,
                        latitude: r.get(2)?,
                        longitude: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    fn results(&self, q: &ResultQuery) -> Result<ResultPage, StoreError> {
        if q.limit == 0 || q.limit > MAX_PAGE {
            return Err(StoreError::Query(format!(
                "limit={} is outside 1..={MAX_PAGE}",
                q.limit
            )));
        }
        let (after_t, after_id) = match &q.cursor {
            Some(c) => {
                let (t, id) = decode_cursor(c)?;
                (t, id.to_string())
            }
            None => (i64::MIN, String::new()),
        };
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT started_at, id, record, agent_id, quartier, building FROM results
             WHERE (started_at, id) > (?1, ?2)
               AND started_at >= ?3 AND started_at < ?4
               AND (?5 IS NULL OR agent_id = ?5)
             ORDER BY started_at, id
             LIMIT ?6",
        )?;
        let rows = stmt.query_map(
            params![
                after_t,
                after_id,
                q.from.map(ns).unwrap_or(i64::MIN),
                q.to.map(ns).unwrap_or(i64::MAX),
                q.agent,
                q.limit as i64 + 1
            ],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    StoredResult {
                        record: row.get(2)?,
                        agent_id: row.get(3)?,
                        quartier: row.get(4)?,
                        building: row.get(5)?,
                    },
                ))
            },
        )?;
        let mut results = Vec::new();
        let mut last = None;
        let mut more = false;
        for row in rows {
            let (t, id, stored) = row?;
            if results.len() == q.limit {
                more = true;
                break;
            }
            results.push(stored);
            last = Some((t, id));
        }
        let next_cursor = match (more, last) {
            (true, Some((t, id))) => uuid::Uuid::try_parse(&id)
                .ok()
                .map(|u| encode_cursor(t, &u)),
            _ => None,
        };
        Ok(ResultPage {
            results,
            next_cursor,
        })
    }

    fn agents(&self) -> Result<Vec<AgentRow>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT a.id, a.quartier, a.building, a.version, a.first_seen, a.last_seen,
                    (SELECT COUNT(*) FROM results r WHERE r.agent_id = a.id),
                    a.enrolled_at, a.latitude, a.longitude, a.health, a.revoked_at
             FROM agents a ORDER BY a.id",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok(AgentRow {
                id: row.get(0)?,
                quartier: row.get(1)?,
                building: row.get(2)?,
                version: row.get(3)?,
                first_seen: from_ns(row.get(4)?),
                last_seen: from_ns(row.get(5)?),
                results: row.get::<_, i64>(6)? as u64,
                enrolled_at: row.get::<_, Option<i64>>(7)?.map(from_ns),
                latitude: row.get(8)?,
                longitude: row.get(9)?,
                health: row
                    .get::<_, Option<String>>(10)?
                    .and_then(|h| serde_json::from_str(&h).ok()),
                revoked_at: row.get::<_, Option<i64>>(11)?.map(from_ns),
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn prune(&self, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        let deleted = self.lock().execute(
            "DELETE FROM results WHERE rowid IN
                 (SELECT rowid FROM results WHERE started_at < ?1 ORDER BY started_at LIMIT ?2)",
            params![ns(before), limit as i64],
        )?;
        Ok(deleted)
    }

    fn backup(&self, path: &Path) -> Result<(), StoreError> {
        if path.exists() {
            return Err(StoreError::Query(format!(
                "{} exists; give a new file",
                path.display()
            )));
        }
        let target = path.to_string_lossy().into_owned();
        // VACUUM INTO reads in one transaction: a snapshot as of its start, written
        // compacted to a new file, without blocking the writer (WAL).
        match &self.path {
            Some(p) => {
                let conn = Connection::open_with_flags(
                    p,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                conn.busy_timeout(std::time::Duration::from_secs(5))?;
                conn.execute("VACUUM INTO ?1", params![target])?;
            }
            None => {
                self.lock().execute("VACUUM INTO ?1", params![target])?;
            }
        }
        Ok(())
    }

    fn revoke(&self, agent_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let changed = self.lock().execute(
            "UPDATE agents SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
            params![agent_id, ns(now)],
        )?;
        Ok(changed == 1)
    }

    fn revoked_at(&self, agent_id: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT revoked_at FROM agents WHERE id = ?1",
                params![agent_id],
                |r| r.get::<_, Option<i64>>(0),
            )
            .optional()?
            .flatten()
            .map(from_ns))
    }

    fn report_scan(
        &self,
        scope: &ReportScope,
        with_ids: bool,
        sink: &mut dyn ReportSink,
    ) -> Result<(), StoreError> {
        // A file store reads on a connection of its own, in one read transaction: a
        // consistent snapshot, while ingest goes on (WAL).
        let own;
        let shared;
        let conn: &Connection = match &self.path {
            Some(path) => {
                own = Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                own.busy_timeout(std::time::Duration::from_secs(5))?;
                own.pragma_update(None, "cache_size", -16_384)?;
                &own
            }
            None => {
                shared = self.lock();
                &shared
            }
        };
        conn.execute_batch("BEGIN")?;
        let result = scan(conn, scope, with_ids, sink);
        let _ = conn.execute_batch("COMMIT");
        result
    }

    fn site_known(
        &self,
        quartier: Option<&str>,
        building: Option<&str>,
    ) -> Result<bool, StoreError> {
        let conn = self.lock();
        let known = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM report_accesses
                            WHERE (?1 IS NULL OR quartier = ?1) AND (?2 IS NULL OR building = ?2))
                 OR EXISTS (SELECT 1 FROM tokens
                            WHERE (?1 IS NULL OR quartier = ?1) AND (?2 IS NULL OR building = ?2))",
            params![quartier, building],
            |row| row.get::<_, bool>(0),
        )?;
        Ok(known)
    }

    fn healthy(&self) -> bool {
        self.lock()
            .query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
            .optional()
            .is_ok_and(|v| v == Some(1))
    }
}

/// The body of [`Store::report_scan`], inside its read transaction.
fn scan(
    conn: &Connection,
    scope: &ReportScope,
    with_ids: bool,
    sink: &mut dyn ReportSink,
) -> Result<(), StoreError> {
    let (from, to) = (ns(scope.from), ns(scope.to));
    let mut stmt = conn.prepare(
        "SELECT id, agent_id, access, quartier, building, kind, first_at, interval_s
         FROM report_accesses
         WHERE (?1 IS NULL OR quartier = ?1) AND (?2 IS NULL OR building = ?2) AND first_at < ?3
         ORDER BY id",
    )?;
    let accesses = stmt
        .query_map(params![scope.quartier, scope.building, to], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                ScheduledAccess {
                    agent_id: row.get(1)?,
                    access: row.get(2)?,
                    quartier: row.get(3)?,
                    building: row.get(4)?,
                    kind: row.get(5)?,
                    first_at: from_ns(row.get(6)?),
                    interval_s: row.get(7)?,
                },
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    sink.accesses(accesses.iter().map(|(_, a)| a.clone()).collect());
    let id = if with_ids {
        // The record may be gone (retention); a reused rowid must not name another.
        "(SELECT r.id FROM results r WHERE r.rowid = f.result_rowid AND r.started_at = f.started_at)"
    } else {
        "NULL"
    };
    // Per access, a range of its clustered rows: the period is a seek, not a filter.
    let mut stmt = conn.prepare(&format!(
        "SELECT started_at, outcome, reason, flags, down_bps, up_bps, down_goodput_bps,
                target_down_bps, verdict_down, idle_s, loaded_s, probes_sent,
                probes_received, version, {id}
         FROM report_facts f
         WHERE access_id = ?1 AND started_at >= ?2 AND started_at < ?3
         ORDER BY started_at"
    ))?;
    for (access_id, a) in &accesses {
        let mut rows = stmt.query(params![access_id, from, to])?;
        while let Some(row) = rows.next()? {
            let opt = |i: usize| -> Result<Option<&str>, rusqlite::Error> {
                let v = row.get_ref(i)?;
                v.as_str_or_null().map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(i, v.data_type(), Box::new(e))
                })
            };
            let fact = Fact {
                quartier: &a.quartier,
                building: &a.building,
                agent_id: &a.agent_id,
                access: &a.access,
                kind: &a.kind,
                started_at_ns: row.get(0)?,
                outcome: opt(1)?.unwrap_or(""),
                reason: opt(2)?,
                flags: opt(3)?.unwrap_or(""),
                down_bps: row.get(4)?,
                up_bps: row.get(5)?,
                down_goodput_bps: row.get(6)?,
                target_down_bps: row.get(7)?,
                verdict_down: opt(8)?,
                idle_s: row.get(9)?,
                loaded_s: row.get(10)?,
                probes_sent: row.get(11)?,
                probes_received: row.get(12)?,
                version: opt(13)?.unwrap_or(""),
                id: opt(14)?,
            };
            sink.fact(&fact).map_err(StoreError::Query)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Delivery, ResultQuery};
    use chrono::TimeZone;
    use sonde_proto::*;

    fn record(i: u32, agent: &str) -> ResultRecord {
        let started = Utc
            .timestamp_opt(1_800_000_000 + i64::from(i) * 60, 0)
            .single()
            .unwrap_or_default();
        ResultRecord {
            schema_version: SCHEMA_VERSION,
            id: uuid::Uuid::now_v7(),
            agent: AgentInfo {
                id: Some(agent.into()),
                version: "0.1.0".into(),
            },
            site: sonde_proto::Site::default(),
            access: Access {
                name: Some("fibre".into()),
                kind: AccessKind::Ftth,
                interface: None,
                link_speed_bps: None,
                mtu: None,
            },
            run: Run {
                started_at: started,
                ended_at: started,
                engine: Engine::SondeHttp,
                responder: ResponderRef {
                    url: "http://r".into(),
                    version: None,
                    address: None,
                },
                directions: vec![Direction::Down],
                streams: 8,
                max_duration_s: 10.0,
                interval_s: None,
                cross_traffic_bytes: None,
                cpu_busy_ratio: None,
            },
            download: None,
            upload: None,
            idle_latency: None,
            radio: None,
            flags: vec![],
            verdict: Verdict {
                target_down_bps: Some(1e9),
                target_up_bps: None,
                tolerance: 0.02,
                down: VerdictOutcome::Inconclusive,
                up: VerdictOutcome::NoTarget,
            },
            status: Status {
                outcome: Outcome::Ok,
                reason: None,
                message: None,
            },
            methodology_version: METHODOLOGY_VERSION.into(),
        }
    }

    fn delivery(agent: &str) -> Delivery {
        Delivery {
            agent_id: agent.into(),
            quartier: Some("q1".into()),
            building: Some("b1".into()),
        }
    }

    #[test]
    fn processes_opening_a_new_store_at_once_migrate_it_once() {
        let dir = std::env::temp_dir().join(format!("sonde-race-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        // Eight openers race on a file that does not exist yet, in 30 rounds. Before
        // the fixes, losers failed with "table ... already exists" (two migrations)
        // or "database is locked" (two connections switching a new file to WAL at
        // once, which SQLite reports without waiting, as a deadlock).
        for round in 0..30 {
            let path = dir.join(format!("c{round}.sqlite"));
            let start = std::sync::Arc::new(std::sync::Barrier::new(8));
            let openers: Vec<_> = (0..8)
                .map(|_| {
                    let path = path.clone();
                    let start = start.clone();
                    std::thread::spawn(move || {
                        start.wait();
                        SqliteStore::open(&path).map(|s| s.schema_version())
                    })
                })
                .collect();
            for o in openers {
                let v = o.join().expect("thread");
                let v = v.unwrap_or_else(|e| panic!("round {round}: {e}"));
                assert_eq!(v.expect("version"), MIGRATIONS.len() as i64);
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_access_keeps_its_first_and_latest_start_and_the_latest_interval() {
        let s = SqliteStore::in_memory().expect("store");
        let with = |i: u32, interval: f64| {
            let mut r = record(i, "a1");
            r.access.name = Some("fibre".into());
            r.run.interval_s = Some(interval);
            r
        };
        // Out of order within one transaction, then an older one in a later one.
        s.insert(
            &delivery("a1"),
            &[with(5, 600.0), with(9, 900.0), with(7, 700.0)],
            Utc::now(),
        )
        .expect("insert");
        s.insert(&delivery("a1"), &[with(2, 200.0)], Utc::now())
            .expect("insert");
        let row: (i64, i64, f64, i64) = s
            .lock()
            .query_row(
                "SELECT first_at, last_at, interval_s,
                        (SELECT COUNT(*) FROM report_facts f WHERE f.access_id = a.id)
                 FROM report_accesses a WHERE agent_id = 'a1' AND access = 'fibre'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .expect("access row");
        assert_eq!(row.0, ns(record(2, "a1").run.started_at));
        assert_eq!(row.1, ns(record(9, "a1").run.started_at));
        assert_eq!(row.2, 900.0, "the interval of the latest result");
        assert_eq!(row.3, 4);
    }

    fn token(hash: &str, expires_in_s: i64) -> NewToken {
        let now = Utc::now();
        NewToken {
            hash: hash.into(),
            quartier: "q9".into(),
            building: "b9".into(),
            latitude: Some(48.8),
            longitude: None,
            created_at: now,
            expires_at: now + chrono::Duration::seconds(expires_in_s),
        }
    }

    #[test]
    fn a_token_enrols_one_agent_once_before_it_expires() {
        let s = SqliteStore::in_memory().expect("store");
        s.create_token(&token("h1", 3600)).expect("token");
        s.create_token(&token("h2", -1)).expect("expired token");
        assert!(
            s.create_token(&token("h1", 10)).is_err(),
            "hashes are unique"
        );
        let now = Utc::now();
        assert_eq!(s.enrolment("agent-1").expect("lookup"), None);
        let name = |id: &'static str| move |_: &super::Site| id.to_string();
        let (id, site) = s.enrol("h1", now, &name("agent-1")).expect("enrol");
        assert_eq!((id.as_str(), site.building.as_str()), ("agent-1", "b9"));
        assert_eq!(s.enrolment("agent-1").expect("lookup"), Some(site));
        assert!(matches!(
            s.enrol("h1", now, &name("agent-2")),
            Err(EnrolError::Used(_))
        ));
        assert!(matches!(
            s.enrol("h2", now, &name("agent-3")),
            Err(EnrolError::Expired(_))
        ));
        assert!(matches!(
            s.enrol("nope", now, &name("agent-4")),
            Err(EnrolError::Unknown)
        ));
        let agents = s.agents().expect("agents");
        assert_eq!(agents.len(), 1, "refused enrolments leave no agent");
        assert_eq!(agents[0].latitude, Some(48.8));
        assert!(agents[0].enrolled_at.is_some());
        // Health from an upload shows in the agent's row.
        let health = sonde_proto::wire::Health {
            spool_depth: 3,
            version: "9.9.9".into(),
            ..Default::default()
        };
        s.insert_batches(
            &[Batch {
                delivery: Delivery {
                    agent_id: "agent-1".into(),
                    quartier: Some("q9".into()),
                    building: Some("b9".into()),
                },
                records: vec![record(1, "agent-1")],
                raw: vec![sonde_proto::wire::RawRecord::of(&record(1, "agent-1"))],
                health: Some(health),
            }],
            now,
        )
        .expect("insert");
        let agents = s.agents().expect("agents");
        assert_eq!(
            agents[0].health.as_ref().map(|h| h["spool_depth"].clone()),
            Some(3.into())
        );
        assert_eq!(agents[0].version.as_deref(), Some("9.9.9"));
    }

    #[test]
    fn a_resent_batch_is_stored_once() {
        let s = SqliteStore::in_memory().expect("store");
        let batch: Vec<_> = (0..10).map(|i| record(i, "a1")).collect();
        let now = Utc::now();
        assert_eq!(
            s.insert(&delivery("a1"), &batch, now).expect("insert"),
            Inserted {
                new: 10,
                duplicates: 0,
                fresh: vec![true; 10]
            }
        );
        assert_eq!(
            s.insert(&delivery("a1"), &batch[3..], now).expect("again"),
            Inserted {
                new: 0,
                duplicates: 7,
                fresh: vec![false; 7]
            }
        );
        let page = s
            .results(&ResultQuery {
                limit: 100,
                ..Default::default()
            })
            .expect("page");
        assert_eq!(page.results.len(), 10);
        let agents = s.agents().expect("agents");
        assert_eq!(agents.len(), 1);
        assert_eq!(
            (agents[0].results, agents[0].quartier.as_deref()),
            (10, Some("q1"))
        );
    }

    #[test]
    fn pages_cover_every_result_once_in_time_order_with_filters() {
        let s = SqliteStore::in_memory().expect("store");
        let now = Utc::now();
        let a: Vec<_> = (0..25).map(|i| record(i, "a1")).collect();
        let b: Vec<_> = (0..7).map(|i| record(i, "a2")).collect();
        s.insert(&delivery("a1"), &a, now).expect("a1");
        s.insert(&delivery("a2"), &b, now).expect("a2");
        let mut seen = Vec::new();
        let mut q = ResultQuery {
            limit: 4,
            agent: Some("a1".into()),
            ..Default::default()
        };
        for _ in 0..20 {
            let page = s.results(&q).expect("page");
            seen.extend(
                page.results
                    .iter()
                    .map(|v| v.to_json()["id"].as_str().unwrap_or("").to_string()),
            );
            match page.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => break,
            }
        }
        let want: Vec<String> = a.iter().map(|r| r.id.to_string()).collect();
        assert_eq!(seen, want, "every a1 result once, in start order");
        // Time window: minutes 5..10 of both agents.
        let from = Utc.timestamp_opt(1_800_000_000 + 5 * 60, 0).single();
        let to = Utc.timestamp_opt(1_800_000_000 + 10 * 60, 0).single();
        let page = s
            .results(&ResultQuery {
                from,
                to,
                limit: 100,
                ..Default::default()
            })
            .expect("window");
        assert_eq!(page.results.len(), 5 + 2);
        assert!(s
            .results(&ResultQuery {
                limit: 0,
                ..Default::default()
            })
            .is_err());
        assert!(s
            .results(&ResultQuery {
                limit: 5,
                cursor: Some("junk".into()),
                ..Default::default()
            })
            .is_err());
    }

    #[test]
    fn results_written_under_an_older_schema_survive_the_migrations() {
        let dir = std::env::temp_dir().join(format!("sonde-migrate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("old.sqlite");
        let _ = std::fs::remove_file(&path);
        let r = record(3, "a1");
        {
            // A database as version 2 of the schema left it, with one result.
            let mut conn = Connection::open(&path).expect("raw");
            for (i, sql) in MIGRATIONS[..2].iter().enumerate() {
                let tx = conn.transaction().expect("tx");
                tx.execute_batch(sql).expect("old migration");
                tx.pragma_update(None, "user_version", i as i64 + 1)
                    .expect("version");
                tx.commit().expect("commit");
            }
            conn.execute(
                "INSERT INTO results (id, agent_id, access_kind, started_at, outcome,
                     received_at, record) VALUES (?1, 'a1', 'ftth', ?2, 'ok', 0, ?3)",
                params![r.id.to_string(), ns(r.run.started_at), r.to_json()],
            )
            .expect("old row");
        }
        let s = SqliteStore::open(&path).expect("migrate");
        assert_eq!(s.schema_version().expect("v"), MIGRATIONS.len() as i64);
        let page = s
            .results(&ResultQuery {
                limit: 10,
                agent: Some("a1".into()),
                ..Default::default()
            })
            .expect("page");
        assert_eq!(page.results.len(), 1);
        assert_eq!(page.results[0].to_json()["id"], r.id.to_string());
        // The report facts were filled from the stored record.
        let fact: (Option<f64>, Option<String>, String, String) = s
            .lock()
            .query_row(
                "SELECT down_bps, verdict_down, version, flags FROM report_facts f
                 JOIN report_accesses a ON a.id = f.access_id WHERE a.agent_id = 'a1'",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .expect("fact");
        assert_eq!(fact.0, r.download.as_ref().map(|d| d.ip_rate_bps));
        assert_eq!(fact.1.as_deref(), Some(r.verdict.down.as_str()));
        assert_eq!(fact.2, r.agent.version);
        assert_eq!(fact.3, flags_text(&r.flags));
        // The id stays unique after the move.
        let again = s
            .insert(&delivery("a1"), std::slice::from_ref(&r), Utc::now())
            .expect("insert");
        assert_eq!(again.duplicates, 1);
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn migrations_apply_once_survive_reopen_and_refuse_newer_files() {
        let dir = std::env::temp_dir().join(format!("sonde-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("c.sqlite");
        let _ = std::fs::remove_file(&path);
        {
            let s = SqliteStore::open(&path).expect("create");
            assert_eq!(
                s.schema_version().expect("version"),
                MIGRATIONS.len() as i64
            );
            s.insert(&delivery("a1"), &[record(1, "a1")], Utc::now())
                .expect("insert");
        }
        {
            let s = SqliteStore::open(&path).expect("reopen");
            assert_eq!(
                s.results(&ResultQuery {
                    limit: 10,
                    ..Default::default()
                })
                .expect("page")
                .results
                .len(),
                1
            );
            assert!(s.healthy());
        }
        {
            let conn = Connection::open(&path).expect("raw");
            conn.pragma_update(None, "user_version", 99).expect("bump");
        }
        assert!(matches!(
            SqliteStore::open(&path),
            Err(StoreError::TooNew { found: 99, .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
