//! Moving a store from SQLite to PostgreSQL (`sonde-collector migrate`): every table
//! copied as it is, row ids and the transparency log's leaves and hashes included, so
//! the log's root, every inclusion proof and every signed checkpoint stay valid; then
//! both sides counted, and both sides' results digested, read back.

use crate::error::Error;
use crate::PostgresStore;
use postgres::types::ToSql;
use rusqlite::types::Value;
use sha2::{Digest, Sha256};
use sonde_store::StoreError;
use std::path::Path;

/// A column's type in PostgreSQL.
#[derive(Clone, Copy)]
enum Kind {
    Int,
    Real,
    Text,
    Bytes,
    Bool,
}
use Kind::*;

/// A table copied: its name, its columns (the SQLite expression read for each when
/// the names differ), their types.
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, &'static str, Kind)],
}

const fn t(name: &'static str, columns: &'static [(&'static str, &'static str, Kind)]) -> Table {
    Table { name, columns }
}

/// Every table but `leases` (a lease held on the old store means nothing on the new).
const TABLES: &[Table] = &[
    t(
        "results",
        &[
            ("row_id", "rowid", Int),
            ("id", "id", Text),
            ("agent_id", "agent_id", Text),
            ("quartier", "quartier", Text),
            ("building", "building", Text),
            ("access_kind", "access_kind", Text),
            ("access_name", "access_name", Text),
            ("started_at", "started_at", Int),
            ("outcome", "outcome", Text),
            ("received_at", "received_at", Int),
            ("record", "record", Text),
            ("envelope", "envelope", Text),
        ],
    ),
    t(
        "result_keys",
        &[
            ("id", "id", Text),
            ("row_id", "rowid", Int),
            ("started_at", "started_at", Int),
        ],
    ),
    t(
        "agents",
        &[
            ("id", "id", Text),
            ("quartier", "quartier", Text),
            ("building", "building", Text),
            ("version", "version", Text),
            ("first_seen", "first_seen", Int),
            ("last_seen", "last_seen", Int),
            ("enrolled_at", "enrolled_at", Int),
            ("latitude", "latitude", Real),
            ("longitude", "longitude", Real),
            ("health", "health", Text),
            ("health_at", "health_at", Int),
            ("revoked_at", "revoked_at", Int),
            ("position_from_agent", "position_from_agent", Bool),
        ],
    ),
    t(
        "tokens",
        &[
            ("hash", "hash", Text),
            ("quartier", "quartier", Text),
            ("building", "building", Text),
            ("latitude", "latitude", Real),
            ("longitude", "longitude", Real),
            ("created_at", "created_at", Int),
            ("expires_at", "expires_at", Int),
            ("used_at", "used_at", Int),
            ("agent_id", "agent_id", Text),
        ],
    ),
    t(
        "report_accesses",
        &[
            ("id", "id", Int),
            ("agent_id", "agent_id", Text),
            ("access", "access", Text),
            ("quartier", "quartier", Text),
            ("building", "building", Text),
            ("kind", "kind", Text),
            ("first_at", "first_at", Int),
            ("last_at", "last_at", Int),
            ("interval_s", "interval_s", Real),
        ],
    ),
    t(
        "report_facts",
        &[
            ("access_id", "access_id", Int),
            ("started_at", "started_at", Int),
            ("result_rowid", "result_rowid", Int),
            ("outcome", "outcome", Text),
            ("reason", "reason", Text),
            ("flags", "flags", Text),
            ("down_bps", "down_bps", Real),
            ("up_bps", "up_bps", Real),
            ("down_goodput_bps", "down_goodput_bps", Real),
            ("target_down_bps", "target_down_bps", Real),
            ("verdict_down", "verdict_down", Text),
            ("idle_s", "idle_s", Real),
            ("loaded_s", "loaded_s", Real),
            ("probes_sent", "probes_sent", Int),
            ("probes_received", "probes_received", Int),
            ("version", "version", Text),
            ("streams", "streams", Int),
            ("interval_s", "interval_s", Real),
            ("cap_down_bps", "cap_down_bps", Real),
            ("cap_up_bps", "cap_up_bps", Real),
            ("rpm_down", "rpm_down", Real),
            ("rpm_up", "rpm_up", Real),
        ],
    ),
    t(
        "plans",
        &[
            ("version", "version", Int),
            ("applied_at", "applied_at", Int),
            ("document", "document", Text),
        ],
    ),
    t(
        "log_leaves",
        &[("leaf", "leaf", Int), ("result_rowid", "result_rowid", Int)],
    ),
    t(
        "log_hashes",
        &[("idx", "idx", Int), ("hash", "hash", Bytes)],
    ),
    t(
        "log_checkpoints",
        &[
            ("size", "size", Int),
            ("made_at", "made_at", Int),
            ("note", "note", Text),
        ],
    ),
    t(
        "agent_keys",
        &[
            ("agent_id", "agent_id", Text),
            ("public_key", "public_key", Text),
            ("registered_at", "registered_at", Int),
        ],
    ),
    t(
        "agent_chains",
        &[
            ("agent_id", "agent_id", Text),
            ("seq", "seq", Int),
            ("hash", "hash", Text),
        ],
    ),
    t(
        "chain_gaps",
        &[
            ("agent_id", "agent_id", Text),
            ("from_seq", "from_seq", Int),
            ("to_seq", "to_seq", Int),
            ("found_at", "found_at", Int),
        ],
    ),
    t(
        "key_rotations",
        &[
            ("agent_id", "agent_id", Text),
            ("seq", "seq", Int),
            ("body", "body", Text),
            ("rotated_at", "rotated_at", Int),
        ],
    ),
];

/// Rows written per statement.
const CHUNK: usize = 5_000;

/// What a copy did.
#[derive(Debug, Clone, PartialEq)]
pub struct Copied {
    /// Rows of each table, as counted on both sides after the copy.
    pub tables: Vec<(String, u64)>,
    /// SHA-256 (hex) over every result's id and stored bytes in storing order, read
    /// back from both sides (equal, or the copy failed).
    pub digest: String,
    /// Leaves of the transparency log and its root (hex), on both sides.
    pub log: (u64, String),
}

/// One column's values.
enum Col {
    Int(Vec<Option<i64>>),
    Real(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
    Bytes(Vec<Option<Vec<u8>>>),
    Bool(Vec<Option<bool>>),
}

impl Col {
    fn new(k: Kind) -> Col {
        match k {
            Int => Col::Int(Vec::new()),
            Real => Col::Real(Vec::new()),
            Text => Col::Text(Vec::new()),
            Bytes => Col::Bytes(Vec::new()),
            Bool => Col::Bool(Vec::new()),
        }
    }

    fn push(&mut self, v: Value) {
        match (self, v) {
            (Col::Int(c), Value::Integer(i)) => c.push(Some(i)),
            (Col::Real(c), Value::Real(f)) => c.push(Some(f)),
            (Col::Real(c), Value::Integer(i)) => c.push(Some(i as f64)),
            (Col::Text(c), Value::Text(s)) => c.push(Some(s)),
            (Col::Bytes(c), Value::Blob(b)) => c.push(Some(b)),
            (Col::Bool(c), Value::Integer(i)) => c.push(Some(i != 0)),
            (Col::Int(c), _) => c.push(None),
            (Col::Real(c), _) => c.push(None),
            (Col::Text(c), _) => c.push(None),
            (Col::Bytes(c), _) => c.push(None),
            (Col::Bool(c), _) => c.push(None),
        }
    }

    fn sql_type(&self) -> &'static str {
        match self {
            Col::Int(_) => "int8[]",
            Col::Real(_) => "float8[]",
            Col::Text(_) => "text[]",
            Col::Bytes(_) => "bytea[]",
            Col::Bool(_) => "bool[]",
        }
    }

    fn param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Col::Int(c) => c,
            Col::Real(c) => c,
            Col::Text(c) => c,
            Col::Bytes(c) => c,
            Col::Bool(c) => c,
        }
    }
}

fn sqlite_err(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(format!("reading the SQLite store: {e}"))
}

/// Copies the SQLite store at `from` (brought up to date by its migrations first) into
/// `to`, which must hold no result yet; `progress` is told each table as it is done.
pub fn copy_from_sqlite(
    from: &Path,
    to: &PostgresStore,
    progress: &mut (dyn FnMut(&str, u64) + Send),
) -> Result<Copied, StoreError> {
    crate::run_outside_tokio(|| copy(from, to, progress))
}

fn copy(
    from: &Path,
    to: &PostgresStore,
    progress: &mut (dyn FnMut(&str, u64) + Send),
) -> Result<Copied, StoreError> {
    // Opening migrates the file, so its tables are the ones copied here.
    let source = sonde_store_sqlite::SqliteStore::open(from)?;
    drop(source);
    let src =
        rusqlite::Connection::open_with_flags(from, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(sqlite_err)?;
    let held: i64 =
        to.with(|c| Ok(c.query_one("SELECT count(*) FROM result_keys", &[])?.get(0)))?;
    if held > 0 {
        return Err(StoreError::Query(format!(
            "{} already holds {held} results; migrate into an empty database",
            to.shown
        )));
    }
    // Partitions for every month the results span.
    let months: Vec<i64> = {
        let mut q = src
            .prepare("SELECT DISTINCT started_at FROM results")
            .map_err(sqlite_err)?;
        let starts = q
            .query_map([], |r| r.get::<_, i64>(0))
            .map_err(sqlite_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sqlite_err)?;
        let mut m: Vec<i64> = starts.into_iter().map(crate::schema::month_of).collect();
        m.sort_unstable();
        m.dedup();
        m
    };
    to.with(|c| {
        for &m in &months {
            crate::schema::ensure_month(c, m)?;
        }
        Ok(())
    })?;
    // Here, not through `with`: this runs off tokio's threads already, and the SQLite
    // connection stays on this one.
    let mut write = || -> Result<(), Error> {
        let mut c = to.conn(None)?;
        let mut tx = c.transaction()?;
        for table in TABLES {
            let n = copy_table(&src, &mut tx, table)?;
            progress(table.name, n);
        }
        tx.batch_execute(
            "SELECT setval('results_row_id', GREATEST((SELECT MAX(row_id) FROM results), 1));
             SELECT setval(pg_get_serial_sequence('report_accesses', 'id'),
                           GREATEST((SELECT MAX(id) FROM report_accesses), 1));",
        )?;
        tx.commit()?;
        Ok(())
    };
    write()?;
    check(&src, from, to)
}

/// Copies one table in chunks; how many rows.
fn copy_table(
    src: &rusqlite::Connection,
    tx: &mut postgres::Transaction<'_>,
    table: &Table,
) -> Result<u64, Error> {
    let reads: Vec<&str> = table.columns.iter().map(|c| c.1).collect();
    let writes: Vec<&str> = table.columns.iter().map(|c| c.0).collect();
    let mut q = src
        .prepare(&format!(
            "SELECT {} FROM {}",
            reads.join(", "),
            table.name.replace("result_keys", "results")
        ))
        .map_err(|e| Error::Store(sqlite_err(e)))?;
    let mut rows = q.query([]).map_err(|e| Error::Store(sqlite_err(e)))?;
    let fresh = || -> Vec<Col> { table.columns.iter().map(|c| Col::new(c.2)).collect() };
    let mut cols = fresh();
    let (mut n, mut pending) = (0u64, 0usize);
    let types: Vec<String> = (1..=writes.len())
        .map(|i| format!("${i}::{}", cols[i - 1].sql_type()))
        .collect();
    let sql = format!(
        "INSERT INTO {} ({}) SELECT * FROM UNNEST({})",
        table.name,
        writes.join(", "),
        types.join(", ")
    );
    let flush = |cols: &mut Vec<Col>, tx: &mut postgres::Transaction<'_>| -> Result<(), Error> {
        let params: Vec<&(dyn ToSql + Sync)> = cols.iter().map(|c| c.param()).collect();
        tx.execute(&sql, &params)?;
        *cols = fresh();
        Ok(())
    };
    while let Some(row) = rows.next().map_err(|e| Error::Store(sqlite_err(e)))? {
        for (i, col) in cols.iter_mut().enumerate() {
            col.push(
                row.get::<_, Value>(i)
                    .map_err(|e| Error::Store(sqlite_err(e)))?,
            );
        }
        n += 1;
        pending += 1;
        if pending == CHUNK {
            flush(&mut cols, tx)?;
            pending = 0;
        }
    }
    if pending > 0 {
        flush(&mut cols, tx)?;
    }
    Ok(n)
}

/// Counts both sides, digests both sides' results, compares both logs' roots.
fn check(
    src: &rusqlite::Connection,
    from: &Path,
    to: &PostgresStore,
) -> Result<Copied, StoreError> {
    let mut tables = Vec::new();
    for table in TABLES {
        let source = if table.name == "result_keys" {
            "results"
        } else {
            table.name
        };
        let a: i64 = src
            .query_row(&format!("SELECT count(*) FROM {source}"), [], |r| r.get(0))
            .map_err(sqlite_err)?;
        let b: i64 = to.with(|c| {
            Ok(
                c.query_one(&format!("SELECT count(*) FROM {}", table.name), &[])?
                    .get(0),
            )
        })?;
        if a != b {
            return Err(StoreError::Backend(format!(
                "{}: {a} rows in {} but {b} copied",
                table.name,
                from.display()
            )));
        }
        tables.push((table.name.to_string(), a as u64));
    }
    let mut mine = Sha256::new();
    let mut q = src
        .prepare("SELECT id, record FROM results ORDER BY rowid")
        .map_err(sqlite_err)?;
    let mut rows = q.query([]).map_err(sqlite_err)?;
    while let Some(r) = rows.next().map_err(sqlite_err)? {
        digest_row(
            &mut mine,
            &r.get::<_, String>(0).map_err(sqlite_err)?,
            &r.get::<_, String>(1).map_err(sqlite_err)?,
        );
    }
    let theirs = to.with(|c| {
        let mut h = Sha256::new();
        use postgres::fallible_iterator::FallibleIterator;
        let mut it = c.query_raw(
            "SELECT id, record FROM results ORDER BY row_id",
            std::iter::empty::<&str>(),
        )?;
        while let Some(r) = it.next()? {
            digest_row(&mut h, r.get(0), r.get(1));
        }
        Ok(h)
    })?;
    let (mine, theirs) = (hex(&mine.finalize()), hex(&theirs.finalize()));
    if mine != theirs {
        return Err(StoreError::Backend(format!(
            "the results read back differ: {mine} in SQLite, {theirs} in PostgreSQL"
        )));
    }
    let sqlite = sonde_store_sqlite::SqliteStore::open(from)?;
    let root_of = |s: &dyn sonde_store::Store| -> Result<(u64, String), StoreError> {
        let size = s.log_size()?;
        let root = sonde_store::log::root(size, &|i| s.log_hashes(i))?;
        Ok((size, hex(&root.0)))
    };
    let (a, b) = (root_of(&sqlite)?, root_of(to)?);
    if a != b {
        return Err(StoreError::Backend(format!(
            "the transparency logs differ: {} leaves, root {} in SQLite; {} leaves, root {} in PostgreSQL",
            a.0, a.1, b.0, b.1
        )));
    }
    Ok(Copied {
        tables,
        digest: mine,
        log: a,
    })
}

fn digest_row(h: &mut Sha256, id: &str, record: &str) {
    h.update((id.len() as u64).to_be_bytes());
    h.update(id.as_bytes());
    h.update((record.len() as u64).to_be_bytes());
    h.update(record.as_bytes());
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
