//! `sonde-store-sqlite`, the embedded store: one SQLite file in WAL mode,
//! `synchronous=FULL` so a commit is on disk before a write returns, schema brought up
//! to date by numbered migrations (`migrations/NNNN_*.sql`, applied in order, recorded
//! in `user_version`). One writer connection for the group commit; reads run on
//! connections of their own ([`readers`]), so they never wait for its transaction.
#![warn(missing_docs)]

mod chain;
mod checkpoint;
mod columns;
mod error;
mod log;
mod migrate;
mod read;
mod readers;
mod scan;
mod write;

pub use error::Error;
pub use migrate::{check_backup, migrate, MIGRATIONS};
pub use read::MAX_PAGE;

use chrono::{DateTime, Utc};
use readers::{Reader, Readers};
use rusqlite::{Connection, OptionalExtension};
use sonde_proto::ResultRecord;
use sonde_store::{
    AgentRow, Batch, Chains, Delivery, EnrolError, Enrolments, Inserted, Maintenance, NewToken,
    PlanVersion, Plans, ReportScope, ReportSink, ReportSource, ResultPage, ResultQuery,
    ResultReader, ResultWriter, ScheduledAccess, SealedKeys, Site, StoreError, TransparencyLog,
};
use std::path::Path;
use std::sync::Mutex;

/// The SQLite store.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// The file, for readers on their own connection (`None` in memory).
    path: Option<std::path::PathBuf>,
    readers: Option<Readers>,
    checkpointer: Option<checkpoint::Checkpointer>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open = || -> Result<Self, Error> {
            let mut store = Self::setup(Connection::open(path)?)?;
            store.path = Some(path.to_path_buf());
            store.readers = Some(Readers::new(path.to_path_buf()));
            store.lock().pragma_update(None, "wal_autocheckpoint", 0)?;
            store.checkpointer = Some(checkpoint::Checkpointer::start(path)?);
            Ok(store)
        };
        Ok(open()?)
    }

    /// An in-memory store, for tests.
    pub fn in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().map_err(Error::from)?;
        Ok(Self::setup(conn)?)
    }

    fn setup(mut conn: Connection) -> Result<Self, Error> {
        // First: another process may hold the file's lock (a migration, a checkpoint).
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate::set_wal(&conn)?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // 64 MiB of page cache: a group commit of many uploads never spills pages to
        // the WAL before its COMMIT.
        conn.pragma_update(None, "cache_size", -65_536)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let before: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        migrate(&mut conn)?;
        // Once, when the log appears: afterwards a result without a leaf was put in
        // the file behind the store's back, and stays out of the log.
        if before < log::MIGRATION {
            let appended = log::catch_up(&mut conn)?;
            if appended > 0 {
                tracing::info!(
                    appended,
                    "results stored before the transparency log appended to it"
                );
            }
        }
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            path: None,
            readers: None,
            checkpointer: None,
        })
    }

    /// The writer connection.
    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll
        // back on drop), so the connection stays usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection to read on: one of its own for a file, the writer's in memory.
    fn reader(&self) -> Result<Reader<'_>, Error> {
        Ok(match &self.readers {
            Some(r) => Reader::Own(Some(r.take()?), r),
            None => Reader::Shared(self.lock()),
        })
    }

    /// Checks that `path` is a sound sonde store this code can open (integrity, schema
    /// version), without changing it; returns how many results it holds.
    pub fn check_backup(path: &Path) -> Result<u64, StoreError> {
        Ok(check_backup(path)?)
    }

    /// Schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        let v = self
            .lock()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(Error::from)?;
        Ok(v)
    }
}

impl ResultWriter for SqliteStore {
    fn insert_batches(
        &self,
        batches: &[Batch],
        now: DateTime<Utc>,
    ) -> Result<Vec<Inserted>, StoreError> {
        Ok(write::insert_batches(&mut self.lock(), batches, now)?)
    }
}

impl TransparencyLog for SqliteStore {
    fn log_size(&self) -> Result<u64, StoreError> {
        Ok(log::size(&*self.reader()?)?)
    }

    fn log_hashes(&self, indexes: &[u64]) -> Result<Vec<sonde_store::log::Hash>, StoreError> {
        log::hashes(&*self.reader()?, indexes)
    }

    fn log_leaf(&self, result_id: &str) -> Result<Option<(u64, String)>, StoreError> {
        Ok(log::leaf(&*self.reader()?, result_id)?)
    }

    fn log_leaves_in(
        &self,
        scope: &ReportScope,
        each: &mut dyn FnMut(&sonde_store::LogLeaf<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        log::leaves_in(&*self.reader()?, scope, each)
    }

    fn log_count_in(&self, scope: &ReportScope, size: u64) -> Result<u64, StoreError> {
        Ok(log::count_in(&*self.reader()?, scope, size)?)
    }

    fn keep_checkpoint(&self, size: u64, note: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let at_ns = at.timestamp_nanos_opt().unwrap_or(i64::MAX);
        Ok(log::keep_checkpoint(&self.lock(), size, note, at_ns)?)
    }

    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        Ok(log::latest_checkpoint(&*self.reader()?)?)
    }
}

/// One collector owns its SQLite file and keeps its keys in its data directory.
impl SealedKeys for SqliteStore {}

impl Chains for SqliteStore {
    fn register_signing_key(
        &self,
        agent_id: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        // Read first: the writer (and the group commit it serves) is taken only for
        // an agent's first signed upload.
        if let Some(k) = chain::key_of(&*self.reader()?, agent_id)? {
            return Ok(k);
        }
        Ok(chain::register_key(&self.lock(), agent_id, key, now)?)
    }

    fn signing_keys(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(chain::keys(&*self.reader()?)?)
    }

    fn chain_head(&self, agent_id: &str) -> Result<Option<(u64, String)>, StoreError> {
        Ok(chain::head(&*self.reader()?, agent_id)?)
    }

    fn key_rotations(
        &self,
        agent_id: Option<&str>,
    ) -> Result<Vec<(String, sonde_proto::wire::Rotation)>, StoreError> {
        Ok(chain::rotations(&*self.reader()?, agent_id)?)
    }
}

impl Enrolments for SqliteStore {
    fn create_token(&self, token: &NewToken) -> Result<(), StoreError> {
        Ok(write::create_token(&self.lock(), token)?)
    }

    fn enrol(
        &self,
        hash: &str,
        now: DateTime<Utc>,
        name: &dyn Fn(&Site) -> String,
    ) -> Result<(String, Site), EnrolError> {
        write::enrol(&mut self.lock(), hash, now, name)
    }

    fn enrolment(&self, agent_id: &str) -> Result<Option<Site>, StoreError> {
        Ok(read::enrolment(&*self.reader()?, agent_id)?)
    }

    fn revoke(&self, agent_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        Ok(write::revoke(&self.lock(), agent_id, now)?)
    }

    fn revoked_at(&self, agent_id: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(read::revoked_at(&*self.reader()?, agent_id)?)
    }

    fn revoked(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        Ok(read::revoked(&*self.reader()?)?)
    }
}

impl Plans for SqliteStore {
    fn apply_plan(&self, document: &str, at: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(write::apply_plan(&self.lock(), document, at)?)
    }

    fn plan_version(&self) -> Result<Option<u64>, StoreError> {
        Ok(read::plan_version(&*self.reader()?)?)
    }

    fn plan(&self, version: u64) -> Result<Option<PlanVersion>, StoreError> {
        Ok(read::plan(&*self.reader()?, version)?)
    }

    fn plans(&self) -> Result<Vec<PlanVersion>, StoreError> {
        Ok(read::plans(&*self.reader()?)?)
    }
}

impl ResultReader for SqliteStore {
    fn results(&self, query: &ResultQuery) -> Result<ResultPage, StoreError> {
        Ok(read::results(&*self.reader()?, query)?)
    }

    fn result(&self, id: &str) -> Result<Option<sonde_store::StoredResult>, StoreError> {
        Ok(read::result(&*self.reader()?, id)?)
    }

    fn agents(&self) -> Result<Vec<AgentRow>, StoreError> {
        Ok(read::agents(&*self.reader()?)?)
    }

    fn latest_results(&self) -> Result<Vec<(Delivery, ResultRecord)>, StoreError> {
        Ok(read::latest_results(&*self.reader()?)?)
    }

    fn site_known(
        &self,
        quartier: Option<&str>,
        building: Option<&str>,
    ) -> Result<bool, StoreError> {
        Ok(read::site_known(&*self.reader()?, quartier, building)?)
    }
}

impl ReportSource for SqliteStore {
    fn report_scan(
        &self,
        scope: &ReportScope,
        with_ids: bool,
        sink: &mut dyn ReportSink,
    ) -> Result<(), StoreError> {
        // One read transaction: a consistent snapshot while ingest goes on (WAL).
        let conn = self.reader()?;
        conn.execute_batch("BEGIN").map_err(Error::from)?;
        let result = scan::scan(&conn, scope, with_ids, sink);
        let _ = conn.execute_batch("COMMIT");
        Ok(result?)
    }

    fn result_ids(&self, rows: &[(i64, i64)]) -> Result<Vec<Option<String>>, StoreError> {
        let conn = self.reader()?;
        let mut stmt = conn
            .prepare_cached("SELECT id FROM results WHERE rowid = ?1 AND started_at = ?2")
            .map_err(Error::from)?;
        let mut out = Vec::with_capacity(rows.len());
        for (rowid, started) in rows {
            let id: Option<String> = stmt
                .query_row(rusqlite::params![rowid, started], |r| r.get(0))
                .optional()
                .map_err(Error::from)?;
            out.push(id);
        }
        Ok(out)
    }

    fn report_scan_parts(
        &self,
        scope: &ReportScope,
        sinks: &mut [&mut (dyn ReportSink + Send)],
    ) -> Result<(), StoreError> {
        let Some(readers) = self.readers.as_ref().filter(|_| sinks.len() > 1) else {
            return sonde_store::split_scan(self, scope, sinks);
        };
        // One snapshot for every part: while this store holds SQLite's write lock
        // (BEGIN IMMEDIATE: no commit from this process or another can happen), each
        // part's connection opens its read transaction and reads once, which fixes
        // its snapshot (WAL); then the lock goes. Ingest waits milliseconds.
        let n = sinks.len();
        let pinned = {
            let writer = self.lock();
            writer
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(Error::from)?;
            let pinned: Result<Vec<Connection>, Error> = (0..n)
                .map(|_| {
                    let conn = readers.take()?;
                    conn.execute_batch("BEGIN")?;
                    conn.query_row(
                        "SELECT COUNT(*) FROM report_accesses WHERE id < 0",
                        [],
                        |_| Ok(()),
                    )?;
                    Ok(conn)
                })
                .collect();
            let _ = writer.execute_batch("ROLLBACK");
            pinned?
        };
        let accesses = scan::accesses(&pinned[0], scope)?;
        let mut parts: Vec<Vec<(i64, ScheduledAccess)>> = vec![Vec::new(); n];
        for (i, a) in accesses.into_iter().enumerate() {
            parts[i % n].push(a);
        }
        for (sink, part) in sinks.iter_mut().zip(&parts) {
            sink.accesses(part.iter().map(|(_, a)| a.clone()).collect());
        }
        let results: Vec<Result<(), Error>> = std::thread::scope(|s| {
            let handles: Vec<_> = sinks
                .iter_mut()
                .zip(&parts)
                .zip(pinned)
                .map(|((sink, part), conn)| {
                    s.spawn(move || -> Result<(), Error> {
                        let done = scan::facts(&conn, part, scope, false, &mut **sink);
                        let _ = conn.execute_batch("COMMIT");
                        readers.give(conn);
                        done
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::Store(StoreError::Query(
                            "a report part panicked".into(),
                        )))
                    })
                })
                .collect()
        });
        for r in results {
            r?;
        }
        Ok(())
    }
}

impl Maintenance for SqliteStore {
    fn prune(&self, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        Ok(write::prune(&self.lock(), before, limit)?)
    }

    fn lease(
        &self,
        job: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let conn = self.lock();
        let (now, until) = (
            sonde_store::rows::nanos(now),
            sonde_store::rows::nanos(until),
        );
        // One statement: taken when free, expired or already ours, atomically.
        conn.execute(
            "INSERT INTO leases (job, holder, until_ns) VALUES (?1, ?2, ?4)
             ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, until_ns = excluded.until_ns
             WHERE leases.holder = excluded.holder OR leases.until_ns <= ?3",
            rusqlite::params![job, holder, now, until],
        )
        .map_err(Error::from)?;
        let current: String = conn
            .query_row("SELECT holder FROM leases WHERE job = ?1", [job], |r| {
                r.get(0)
            })
            .map_err(Error::from)?;
        Ok(current == holder)
    }

    fn backup(&self, path: &Path) -> Result<(), StoreError> {
        let target = write::backup_target(path)?;
        // VACUUM INTO reads in one transaction: a snapshot as of its start, written
        // compacted to a new file, without blocking the writer (WAL).
        let conn = self.reader()?;
        conn.execute("VACUUM INTO ?1", [target])
            .map_err(Error::from)?;
        Ok(())
    }

    fn health(&self) -> Result<(), StoreError> {
        let c = self.reader()?;
        c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
            .map_err(Error::from)?;
        Ok(())
    }

    fn space(&self) -> Option<sonde_store::Space> {
        let dir = self.path.as_deref()?.parent()?;
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let st = rustix::fs::statvfs(dir).ok()?;
        Some(sonde_store::Space {
            free_bytes: st.f_bavail.saturating_mul(st.f_frsize),
            total_bytes: st.f_blocks.saturating_mul(st.f_frsize),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columns::ns;
    use rusqlite::params;
    use sonde_store::conformance::{delivery, record};
    use sonde_store::rows::flags_text;

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
    fn results_written_under_an_older_schema_survive_the_migrations() {
        let dir = std::env::temp_dir().join(format!("sonde-migrate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("old.sqlite");
        let _ = std::fs::remove_file(&path);
        let r = record(3, "a1");
        let udpst = ResultRecord::capacity_example();
        let mut rpm = ResultRecord::responsiveness_example();
        rpm.id = uuid::Uuid::now_v7();
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
            conn.execute(
                "INSERT INTO results (id, agent_id, access_kind, started_at, outcome,
                     received_at, record) VALUES (?1, 'a2', '4g', ?2, 'ok', 0, ?3)",
                params![
                    udpst.id.to_string(),
                    ns(udpst.run.started_at),
                    udpst.to_json()
                ],
            )
            .expect("old UDPST row");
            conn.execute(
                "INSERT INTO results (id, agent_id, access_kind, started_at, outcome,
                     received_at, record) VALUES (?1, 'a3', 'ftth', ?2, 'ok', 0, ?3)",
                params![rpm.id.to_string(), ns(rpm.run.started_at), rpm.to_json()],
            )
            .expect("old RPM row");
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
        // Results stored before the log were appended to it on opening, once.
        let in_log = s.log_size().expect("log size");
        let stored: i64 = s
            .lock()
            .query_row("SELECT count(*) FROM results", [], |r| r.get(0))
            .expect("count");
        assert_eq!(in_log, stored as u64);
        drop(s);
        let s = SqliteStore::open(&path).expect("reopen");
        assert_eq!(s.log_size().expect("log size"), in_log, "appended once");
        assert!(s.log_leaf(&r.id.to_string()).expect("leaf").is_some());
        // The report facts were filled from the stored record.
        let fact: (Option<f64>, Option<String>, String, String, Option<i64>) = s
            .lock()
            .query_row(
                "SELECT down_bps, verdict_down, version, flags, streams FROM report_facts f
                 JOIN report_accesses a ON a.id = f.access_id WHERE a.agent_id = 'a1'",
                [],
                |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                    ))
                },
            )
            .expect("fact");
        assert_eq!(fact.0, r.download.as_ref().map(|d| d.ip_rate_bps));
        assert_eq!(fact.1.as_deref(), Some(r.verdict.down.as_str()));
        assert_eq!(fact.2, r.agent.version);
        assert_eq!(fact.3, flags_text(&r.flags));
        // Migration 7 read the streams the test asked for from the record.
        assert_eq!(fact.4, Some(i64::from(r.run.streams)));
        // Migration 10 read a UDPST test's capacity, the rate its verdict is on.
        let cap: (Option<f64>, Option<f64>, Option<f64>, Option<f64>) = s
            .lock()
            .query_row(
                "SELECT down_bps, up_bps, cap_down_bps, cap_up_bps FROM report_facts f
                 JOIN report_accesses a ON a.id = f.access_id WHERE a.agent_id = 'a2'",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .expect("UDPST fact");
        assert_eq!(
            cap,
            (Some(148.3e6), Some(49.4e6), Some(148.3e6), Some(49.4e6))
        );
        // Migration 14 read the RPM of each direction.
        let rpms: (Option<f64>, Option<f64>) = s
            .lock()
            .query_row(
                "SELECT rpm_down, rpm_up FROM report_facts f
                 JOIN report_accesses a ON a.id = f.access_id WHERE a.agent_id = 'a3'",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .expect("RPM fact");
        let want = rpm.responsiveness.as_ref().expect("responsiveness");
        assert_eq!(rpms.0, want.down.as_ref().map(|d| d.rpm));
        assert_eq!(rpms.1, want.up.as_ref().map(|d| d.rpm));
        assert!(rpms.0.is_some());
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
            assert!(s.health().is_ok());
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
