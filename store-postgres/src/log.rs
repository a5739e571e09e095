//! The transparency log in PostgreSQL: leaves appended in the transaction that stores
//! their results (all of a group commit's at once), the tree's stored hashes beside
//! them, and the signed checkpoints. The hashing is [`sonde_store::log`]'s.

use crate::error::Error;
use crate::Sender;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, Transaction};
use sonde_store::log::Hash;
use sonde_store::{ReportScope, StoreError};
use std::cell::RefCell;
use std::collections::HashMap;

const SIZE: &str = "SELECT COALESCE(MAX(leaf) + 1, 0) FROM log_leaves";

/// Leaves in the log.
pub fn size(c: &mut Client) -> Result<u64, Error> {
    Ok(c.query_one(SIZE, &[])?.get::<_, i64>(0) as u64)
}

fn to_hash(i: u64, bytes: Option<Vec<u8>>) -> Result<Hash, StoreError> {
    bytes
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(Hash)
        .ok_or_else(|| StoreError::Backend(format!("transparency log: no stored hash {i}")))
}

/// The stored hashes at `indexes`.
pub fn hashes(c: &mut Client, indexes: &[u64]) -> Result<Vec<Hash>, Error> {
    let found = read_hashes(&mut |sql, p| c.query(sql, p), indexes)?;
    Ok(indexes
        .iter()
        .map(|&i| to_hash(i, found.get(&i).cloned()))
        .collect::<Result<_, _>>()?)
}

type Query<'a> =
    dyn FnMut(&str, &[&(dyn ToSql + Sync)]) -> Result<Vec<postgres::Row>, postgres::Error> + 'a;

/// The stored hashes among `indexes`, in one query.
fn read_hashes(
    query: &mut Query<'_>,
    indexes: &[u64],
) -> Result<HashMap<u64, Vec<u8>>, postgres::Error> {
    let wanted: Vec<i64> = indexes.iter().map(|&i| i as i64).collect();
    let rows = query(
        "SELECT idx, hash FROM log_hashes WHERE idx = ANY($1)",
        &[&wanted],
    )?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, Vec<u8>>(1)))
        .collect())
}

/// Appends `new` (each result's row id and stored bytes), in order, as the next
/// leaves: the hashes computed here, read from the table only for the tree's edge
/// before this commit, and written in two statements.
pub fn append(tx: &mut Transaction<'_>, new: &[(i64, &[u8])]) -> Result<(), Error> {
    if new.is_empty() {
        return Ok(());
    }
    let n0 = tx.query_one(SIZE, &[])?.get::<_, i64>(0) as u64;
    let known: RefCell<HashMap<u64, Hash>> = RefCell::new(HashMap::new());
    let tx = RefCell::new(tx);
    let read = |indexes: &[u64]| -> Result<Vec<Hash>, StoreError> {
        let missing: Vec<u64> = {
            let k = known.borrow();
            indexes
                .iter()
                .copied()
                .filter(|i| !k.contains_key(i))
                .collect()
        };
        if !missing.is_empty() {
            let mut t = tx.borrow_mut();
            let found = read_hashes(&mut |sql, p| t.query(sql, p), &missing)
                .map_err(|e| StoreError::from(Error::from(e)))?;
            let mut k = known.borrow_mut();
            for i in missing {
                k.insert(i, to_hash(i, found.get(&i).cloned())?);
            }
        }
        let k = known.borrow();
        Ok(indexes.iter().map(|i| k[i]).collect())
    };
    let (mut idx, mut bytes) = (Vec::<i64>::new(), Vec::<Vec<u8>>::new());
    for (k, (_, leaf)) in new.iter().enumerate() {
        let (first, hashes) = sonde_store::log::append(n0 + k as u64, leaf, &read)?;
        let mut kn = known.borrow_mut();
        for (j, h) in hashes.into_iter().enumerate() {
            let at = first + j as u64;
            idx.push(at as i64);
            bytes.push(h.0.to_vec());
            kn.insert(at, h);
        }
    }
    let leaves: Vec<i64> = (0..new.len()).map(|k| (n0 + k as u64) as i64).collect();
    let rows: Vec<i64> = new.iter().map(|(r, _)| *r).collect();
    let tx = tx.into_inner();
    tx.execute(
        "INSERT INTO log_hashes (idx, hash) SELECT * FROM UNNEST($1::int8[], $2::bytea[])",
        &[&idx, &bytes],
    )?;
    tx.execute(
        "INSERT INTO log_leaves (leaf, result_rowid) SELECT * FROM UNNEST($1::int8[], $2::int8[])",
        &[&leaves, &rows],
    )?;
    Ok(())
}

/// The leaf of result `id`: its index and its stored bytes.
pub fn leaf(c: &mut Client, id: &str) -> Result<Option<(u64, String)>, Error> {
    Ok(c.query_opt(
        "SELECT l.leaf, r.record FROM result_keys k
         JOIN results r ON r.row_id = k.row_id AND r.started_at = k.started_at
         JOIN log_leaves l ON l.result_rowid = r.row_id
         WHERE k.id = $1",
        &[&id],
    )?
    .map(|r| (r.get::<_, i64>(0) as u64, r.get(1))))
}

/// A leaf of a scope, owned, as the reader thread sends it.
pub struct Leaf {
    pub id: String,
    pub leaf: u64,
    pub record: String,
    pub agent_id: String,
    pub envelope: Option<String>,
    pub quartier: String,
    pub building: String,
}

fn scope_params(scope: &ReportScope) -> (i64, i64) {
    (
        sonde_store::rows::nanos(scope.from),
        sonde_store::rows::nanos(scope.to),
    )
}

/// Sends the leaves of the stored results of `scope`, in leaf order, as read.
pub fn leaves_in(c: &mut Client, scope: &ReportScope, out: &Sender<Leaf>) -> Result<(), Error> {
    let (from, to) = scope_params(scope);
    let params: [&(dyn ToSql + Sync); 4] = [&from, &to, &scope.quartier, &scope.building];
    let mut rows = c.query_raw(
        "SELECT r.id, l.leaf, r.record, r.agent_id, r.envelope, r.quartier, r.building
         FROM results r
         JOIN log_leaves l ON l.result_rowid = r.row_id
         WHERE r.started_at >= $1 AND r.started_at < $2
           AND ($3::text IS NULL OR r.quartier = $3) AND ($4::text IS NULL OR r.building = $4)
         ORDER BY l.leaf",
        params,
    )?;
    while let Some(row) = rows.next()? {
        out.send(Leaf {
            id: row.get(0),
            leaf: row.get::<_, i64>(1) as u64,
            record: row.get(2),
            agent_id: row.get(3),
            envelope: row.get(4),
            quartier: row.get::<_, Option<String>>(5).unwrap_or_default(),
            building: row.get::<_, Option<String>>(6).unwrap_or_default(),
        })?;
    }
    Ok(())
}

/// How many stored results of `scope` are among the first `size` leaves.
pub fn count_in(c: &mut Client, scope: &ReportScope, size: u64) -> Result<u64, Error> {
    let (from, to) = scope_params(scope);
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM results r JOIN log_leaves l ON l.result_rowid = r.row_id
             WHERE r.started_at >= $1 AND r.started_at < $2
               AND ($3::text IS NULL OR r.quartier = $3)
               AND ($4::text IS NULL OR r.building = $4)
               AND l.leaf < $5",
            &[&from, &to, &scope.quartier, &scope.building, &(size as i64)],
        )?
        .get(0);
    Ok(n as u64)
}

/// Keeps a checkpoint (the first of its size).
pub fn keep_checkpoint(c: &mut Client, size: u64, note: &str, at_ns: i64) -> Result<(), Error> {
    c.execute(
        "INSERT INTO log_checkpoints (size, made_at, note) VALUES ($1, $2, $3)
         ON CONFLICT (size) DO NOTHING",
        &[&(size as i64), &at_ns, &note],
    )?;
    Ok(())
}

/// The latest checkpoint.
pub fn latest_checkpoint(c: &mut Client) -> Result<Option<(u64, String)>, Error> {
    Ok(c.query_opt(
        "SELECT size, note FROM log_checkpoints ORDER BY size DESC LIMIT 1",
        &[],
    )?
    .map(|r| (r.get::<_, i64>(0) as u64, r.get(1))))
}
