//! The schema: numbered migrations (`migrations/NNNN_*.sql`) applied in order, each in
//! its own transaction under an advisory lock (collectors starting together apply each
//! once), the versions in `schema_migrations`; and the monthly partitions of the two
//! tables that grow with every result.

use crate::error::Error;
use chrono::{Datelike, TimeZone, Utc};
use sonde_store::StoreError;

/// Migrations, in order; the number of one is its position + 1.
pub const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_schema.sql"),
    include_str!("../migrations/0002_sealed_keys.sql"),
];

/// The advisory lock key migrations and partition creation take ("sonde" + 1).
const SCHEMA_LOCK: i64 = 0x736f_6e64_6501;

/// Applies the migrations the database lacks; returns the version it is at.
pub fn migrate(client: &mut postgres::Client) -> Result<i64, Error> {
    let known = MIGRATIONS.len() as i64;
    // Looked for first: IF NOT EXISTS alone has the server send a notice, which the
    // client logs, on every start.
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        client.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    BIGINT PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )?;
    }
    loop {
        let mut tx = client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
        let current: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                &[],
            )?
            .get(0);
        if current > known {
            return Err(StoreError::TooNew {
                found: current,
                known,
            }
            .into());
        }
        let Some(sql) = MIGRATIONS.get(current as usize) else {
            return Ok(current);
        };
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&(current + 1)],
        )?;
        tx.commit()?;
        tracing::info!(version = current + 1, "PostgreSQL store migrated");
    }
}

/// A month, counted from year 0: `year * 12 + month0`.
pub type Month = i64;

/// The month holding `ns` (Unix nanoseconds).
pub fn month_of(ns: i64) -> Month {
    let t = chrono::DateTime::from_timestamp_nanos(ns);
    i64::from(t.year()) * 12 + i64::from(t.month0())
}

/// The first nanosecond of `month`, or `None` past what an `i64` holds.
fn start_ns(month: Month) -> Option<i64> {
    let (year, month0) = (month.div_euclid(12), month.rem_euclid(12));
    let t = Utc
        .with_ymd_and_hms(i32::try_from(year).ok()?, month0 as u32 + 1, 1, 0, 0, 0)
        .single()?;
    t.timestamp_nanos_opt()
}

/// Creates the partitions of `month` (results and report rows) unless they exist.
pub fn ensure_month(client: &mut postgres::Client, month: Month) -> Result<(), Error> {
    let bound = |m: Month| match start_ns(m) {
        Some(ns) => ns.to_string(),
        None if m <= month => "MINVALUE".to_string(),
        None => "MAXVALUE".to_string(),
    };
    let (from, to) = (bound(month), bound(month + 1));
    let name = format!(
        "m{:04}{:02}",
        month.div_euclid(12).clamp(0, 9999),
        month.rem_euclid(12) + 1
    );
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
    for table in ["results", "report_facts"] {
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {table}_{name} PARTITION OF {table}
                 FOR VALUES FROM ({from}) TO ({to})"
        ))?;
    }
    tx.commit()?;
    Ok(())
}
