//! Writes: the group commit of several agents' batches in a few batched statements
//! (each record stored verbatim, its report row beside it, its access's schedule kept
//! up to date, its log leaf appended), tokens and enrolments, revocations, retention,
//! plans and leases.

use crate::error::Error;
use postgres::{Client, Transaction};
use sonde_store::rows::{nanos, ReportRow};
use sonde_store::{Batch, EnrolError, Inserted, NewToken, Site, StoreError};
use std::borrow::Cow;
use std::collections::HashMap;

/// The advisory lock every result-writing transaction takes ("sonde" + 2): writers
/// from several collectors take turns, so the log's leaves keep one order and a
/// result sent to two collectors at once is stored once.
const WRITE_LOCK: i64 = 0x736f_6e64_6502;

/// One record of a group commit.
struct Item<'a> {
    batch: usize,
    row: ReportRow,
    json: Cow<'a, str>,
    envelope: Option<String>,
    name: Option<&'a str>,
}

fn items(batches: &[Batch]) -> Vec<Item<'_>> {
    let mut out = Vec::new();
    for (b, batch) in batches.iter().enumerate() {
        for (i, r) in batch.records.iter().enumerate() {
            out.push(Item {
                batch: b,
                row: ReportRow::of(&batch.delivery, r),
                json: match batch.raw.get(i) {
                    Some(raw) => Cow::Borrowed(raw.as_str()),
                    None => Cow::Owned(r.to_json()),
                },
                envelope: batch
                    .signed
                    .as_ref()
                    .and_then(|s| s.envelopes.get(i))
                    .and_then(|e| serde_json::to_string(e).ok()),
                name: r.access.name.as_deref(),
            });
        }
    }
    out
}

/// Stores several agents' batches in one transaction; see
/// `sonde_store::ResultWriter::insert_batches`.
pub fn insert_batches(
    c: &mut Client,
    batches: &[Batch],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Inserted>, Error> {
    let now_ns = nanos(now);
    let items = items(batches);
    let mut tx = c.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
    let fresh = claim(&mut tx, &items)?;
    let new: Vec<(&Item<'_>, i64)> = items
        .iter()
        .zip(&fresh)
        .filter_map(|(it, f)| f.map(|rid| (it, rid)))
        .collect();
    insert_results(&mut tx, &new, batches, now_ns)?;
    let accesses = upsert_accesses(&mut tx, &new)?;
    insert_facts(&mut tx, &new, &accesses)?;
    crate::log::append(
        &mut tx,
        &new.iter()
            .map(|(it, rid)| (*rid, it.json.as_bytes()))
            .collect::<Vec<_>>(),
    )?;
    upsert_agents(&mut tx, batches, now_ns)?;
    advance_chains(&mut tx, batches, now_ns)?;
    tx.commit()?;
    let mut out = vec![Inserted::default(); batches.len()];
    for (it, f) in items.iter().zip(&fresh) {
        let done = &mut out[it.batch];
        match f {
            Some(_) => done.new += 1,
            None => done.duplicates += 1,
        }
        done.fresh.push(f.is_some());
    }
    Ok(out)
}

/// Claims each record's id; the row id of each one stored now (`None`: stored before,
/// or earlier in this commit).
fn claim(tx: &mut Transaction<'_>, items: &[Item<'_>]) -> Result<Vec<Option<i64>>, Error> {
    let ids: Vec<&str> = items.iter().map(|i| i.row.id.as_str()).collect();
    let started: Vec<i64> = items.iter().map(|i| i.row.started_at_ns).collect();
    let rows = tx.query(
        "INSERT INTO result_keys (id, row_id, started_at)
         SELECT k.id, nextval('results_row_id'), k.started
         FROM UNNEST($1::text[], $2::int8[]) WITH ORDINALITY AS k(id, started, ord)
         ORDER BY k.ord
         ON CONFLICT (id) DO NOTHING
         RETURNING id, row_id",
        &[&ids, &started],
    )?;
    let mut claimed: HashMap<String, i64> = rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
        .collect();
    // A repeated id gets its row once: the first time it is met.
    Ok(items
        .iter()
        .map(|i| claimed.remove(i.row.id.as_str()))
        .collect())
}

fn insert_results(
    tx: &mut Transaction<'_>,
    new: &[(&Item<'_>, i64)],
    batches: &[Batch],
    now_ns: i64,
) -> Result<(), Error> {
    if new.is_empty() {
        return Ok(());
    }
    let col = |f: &dyn Fn(&Item<'_>) -> Option<String>| -> Vec<Option<String>> {
        new.iter().map(|(it, _)| f(it)).collect()
    };
    let row_ids: Vec<i64> = new.iter().map(|(_, r)| *r).collect();
    let ids = col(&|i| Some(i.row.id.clone()));
    let agents = col(&|i| Some(i.row.agent_id.clone()));
    let quartiers = col(&|i| batches[i.batch].delivery.quartier.clone());
    let buildings = col(&|i| batches[i.batch].delivery.building.clone());
    let kinds = col(&|i| Some(i.row.kind.to_string()));
    let names = col(&|i| i.name.map(str::to_string));
    let started: Vec<i64> = new.iter().map(|(i, _)| i.row.started_at_ns).collect();
    let outcomes = col(&|i| Some(i.row.outcome.to_string()));
    let records: Vec<&str> = new.iter().map(|(i, _)| i.json.as_ref()).collect();
    let envelopes = col(&|i| i.envelope.clone());
    tx.execute(
        "INSERT INTO results (row_id, id, agent_id, quartier, building, access_kind,
             access_name, started_at, outcome, received_at, record, envelope)
         SELECT u.row_id, u.id, u.agent_id, u.quartier, u.building, u.kind, u.name,
                u.started, u.outcome, $10, u.record, u.envelope
         FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::int8[], $9::text[], $11::text[], $12::text[])
             AS u(row_id, id, agent_id, quartier, building, kind, name, started, outcome,
                  record, envelope)",
        &[
            &row_ids, &ids, &agents, &quartiers, &buildings, &kinds, &names, &started, &outcomes,
            &now_ns, &records, &envelopes,
        ],
    )?;
    Ok(())
}

/// An access this commit stores results of: its row (first met), first and latest
/// start, and interval.
struct Touched<'a> {
    row: &'a ReportRow,
    first: i64,
    last: i64,
    interval: Option<f64>,
}

/// Upserts the accesses of the new results once each, with their final figures;
/// their ids by (agent, access).
fn upsert_accesses(
    tx: &mut Transaction<'_>,
    new: &[(&Item<'_>, i64)],
) -> Result<HashMap<(String, String), i64>, Error> {
    let mut order: Vec<(String, String)> = Vec::new();
    let mut touched: HashMap<(String, String), Touched<'_>> = HashMap::new();
    for (it, _) in new {
        let row = &it.row;
        let key = (row.agent_id.clone(), row.access.clone());
        let t = touched.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            Touched {
                row,
                first: row.started_at_ns,
                last: row.started_at_ns,
                interval: row.interval_s,
            }
        });
        t.first = t.first.min(row.started_at_ns);
        if row.started_at_ns >= t.last {
            t.last = row.started_at_ns;
            t.interval = row.interval_s.or(t.interval);
        }
    }
    if order.is_empty() {
        return Ok(HashMap::new());
    }
    let ts: Vec<&Touched<'_>> = order.iter().map(|k| &touched[k]).collect();
    let text =
        |f: &dyn Fn(&ReportRow) -> String| -> Vec<String> { ts.iter().map(|t| f(t.row)).collect() };
    let firsts: Vec<i64> = ts.iter().map(|t| t.first).collect();
    let lasts: Vec<i64> = ts.iter().map(|t| t.last).collect();
    let intervals: Vec<Option<f64>> = ts.iter().map(|t| t.interval).collect();
    let rows = tx.query(
        "INSERT INTO report_accesses (agent_id, access, quartier, building, kind, first_at,
             last_at, interval_s)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                              $6::int8[], $7::int8[], $8::float8[])
         ON CONFLICT (agent_id, access) DO UPDATE SET
             quartier = excluded.quartier, building = excluded.building,
             kind = excluded.kind,
             first_at = LEAST(report_accesses.first_at, excluded.first_at),
             interval_s = CASE WHEN excluded.last_at >= report_accesses.last_at
                 THEN COALESCE(excluded.interval_s, report_accesses.interval_s)
                 ELSE report_accesses.interval_s END,
             last_at = GREATEST(report_accesses.last_at, excluded.last_at)
         RETURNING agent_id, access, id",
        &[
            &text(&|r| r.agent_id.clone()),
            &text(&|r| r.access.clone()),
            &text(&|r| r.quartier.clone()),
            &text(&|r| r.building.clone()),
            &text(&|r| r.kind.to_string()),
            &firsts,
            &lasts,
            &intervals,
        ],
    )?;
    Ok(rows
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get::<_, i64>(2)))
        .collect())
}

/// The report rows of the new results.
fn insert_facts(
    tx: &mut Transaction<'_>,
    new: &[(&Item<'_>, i64)],
    accesses: &HashMap<(String, String), i64>,
) -> Result<(), Error> {
    if new.is_empty() {
        return Ok(());
    }
    let rows: Vec<&ReportRow> = new.iter().map(|(i, _)| &i.row).collect();
    let f64s = |f: &dyn Fn(&ReportRow) -> Option<f64>| -> Vec<Option<f64>> {
        rows.iter().map(|r| f(r)).collect()
    };
    let i64s = |f: &dyn Fn(&ReportRow) -> Option<i64>| -> Vec<Option<i64>> {
        rows.iter().map(|r| f(r)).collect()
    };
    let texts = |f: &dyn Fn(&ReportRow) -> Option<String>| -> Vec<Option<String>> {
        rows.iter().map(|r| f(r)).collect()
    };
    let access_ids = i64s(&|r| {
        accesses
            .get(&(r.agent_id.clone(), r.access.clone()))
            .copied()
    });
    let handles: Vec<i64> = new.iter().map(|(_, rid)| *rid).collect();
    tx.execute(
        "INSERT INTO report_facts (access_id, started_at, result_rowid, outcome, reason,
             flags, down_bps, up_bps, down_goodput_bps, target_down_bps, verdict_down,
             idle_s, loaded_s, probes_sent, probes_received, version, streams, interval_s,
             cap_down_bps, cap_up_bps, rpm_down, rpm_up)
         SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::text[], $5::text[],
             $6::text[], $7::float8[], $8::float8[], $9::float8[], $10::float8[], $11::text[],
             $12::float8[], $13::float8[], $14::int8[], $15::int8[], $16::text[], $17::int8[],
             $18::float8[], $19::float8[], $20::float8[], $21::float8[], $22::float8[])",
        &[
            &access_ids,
            &i64s(&|r| Some(r.started_at_ns)),
            &handles,
            &texts(&|r| Some(r.outcome.to_string())),
            &texts(&|r| r.reason.map(str::to_string)),
            &texts(&|r| Some(r.flags.clone())),
            &f64s(&|r| r.down_bps),
            &f64s(&|r| r.up_bps),
            &f64s(&|r| r.down_goodput_bps),
            &f64s(&|r| r.target_down_bps),
            &texts(&|r| Some(r.verdict_down.to_string())),
            &f64s(&|r| r.idle_s),
            &f64s(&|r| r.loaded_s),
            &i64s(&|r| r.probes_sent),
            &i64s(&|r| r.probes_received),
            &texts(&|r| Some(r.version.clone())),
            &i64s(&|r| r.streams),
            &f64s(&|r| r.interval_s),
            &f64s(&|r| r.cap_down_bps),
            &f64s(&|r| r.cap_up_bps),
            &f64s(&|r| r.rpm_down),
            &f64s(&|r| r.rpm_up),
        ],
    )?;
    Ok(())
}

/// Each batch's agent row: its site, version, last delivery and health, as if the
/// batches were applied one after the other, in one statement per round (a round holds
/// each agent once; an agent's second batch in a commit goes to the next round).
fn upsert_agents(tx: &mut Transaction<'_>, batches: &[Batch], now_ns: i64) -> Result<(), Error> {
    let mut rounds: Vec<Vec<&Batch>> = Vec::new();
    let mut next: HashMap<&str, usize> = HashMap::new();
    for b in batches {
        let r = next.get(b.delivery.agent_id.as_str()).copied().unwrap_or(0);
        if rounds.len() <= r {
            rounds.push(Vec::new());
        }
        rounds[r].push(b);
        next.insert(b.delivery.agent_id.as_str(), r + 1);
    }
    let stmt = tx.prepare(UPSERT_AGENTS)?;
    for round in rounds {
        let mut cols = AgentCols::default();
        for batch in round {
            cols.push(batch);
        }
        tx.execute(
            &stmt,
            &[
                &now_ns,
                &cols.id,
                &cols.quartier,
                &cols.building,
                &cols.version,
                &cols.health,
                &cols.latitude,
                &cols.longitude,
            ],
        )?;
    }
    Ok(())
}

const UPSERT_AGENTS: &str = "INSERT INTO agents (id, quartier, building, version, first_seen,
         last_seen, health, health_at, latitude, longitude, position_from_agent)
     SELECT u.id, u.quartier, u.building, u.version, $1, $1, u.health,
            CASE WHEN u.health IS NULL THEN NULL ELSE $1::int8 END,
            u.latitude, u.longitude, u.latitude IS NOT NULL
     FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::float8[],
                 $8::float8[]) AS u(id, quartier, building, version, health, latitude, longitude)
     ON CONFLICT (id) DO UPDATE SET
         quartier = excluded.quartier, building = excluded.building,
         version = COALESCE(excluded.version, agents.version),
         last_seen = excluded.last_seen,
         health = COALESCE(excluded.health, agents.health),
         health_at = COALESCE(excluded.health_at, agents.health_at),
         latitude = CASE WHEN excluded.latitude IS NOT NULL AND (agents.position_from_agent
             OR agents.latitude IS NULL OR agents.longitude IS NULL)
             THEN excluded.latitude ELSE agents.latitude END,
         longitude = CASE WHEN excluded.latitude IS NOT NULL AND (agents.position_from_agent
             OR agents.latitude IS NULL OR agents.longitude IS NULL)
             THEN excluded.longitude ELSE agents.longitude END,
         position_from_agent = CASE WHEN excluded.latitude IS NOT NULL
             AND (agents.position_from_agent
             OR agents.latitude IS NULL OR agents.longitude IS NULL)
             THEN TRUE ELSE agents.position_from_agent END";

/// The agents of one round, column by column.
#[derive(Default)]
struct AgentCols {
    id: Vec<String>,
    quartier: Vec<Option<String>>,
    building: Vec<Option<String>>,
    version: Vec<Option<String>>,
    health: Vec<Option<String>>,
    latitude: Vec<Option<f64>>,
    longitude: Vec<Option<f64>>,
}

impl AgentCols {
    fn push(&mut self, batch: &Batch) {
        let health = batch.health.as_ref();
        self.version.push(
            health
                .map(|h| h.version.clone())
                .filter(|v| !v.is_empty())
                .or_else(|| batch.records.last().map(|r| r.agent.version.clone())),
        );
        self.health
            .push(health.and_then(|h| serde_json::to_string(h).ok()));
        // The box's configured position stands in when the token gave none, and then
        // follows the box; a position from the token is never overwritten.
        let position = health.and_then(|h| h.position).and_then(|p| p.checked());
        self.latitude.push(position.map(|p| p.latitude));
        self.longitude.push(position.map(|p| p.longitude));
        let d = &batch.delivery;
        self.id.push(d.agent_id.clone());
        self.quartier.push(d.quartier.clone());
        self.building.push(d.building.clone());
    }
}

/// Moves each signed batch's chain head forward (never back) and keeps the gaps and
/// key rotations found.
fn advance_chains(tx: &mut Transaction<'_>, batches: &[Batch], now_ns: i64) -> Result<(), Error> {
    for batch in batches {
        let Some(signed) = &batch.signed else {
            continue;
        };
        let agent = &batch.delivery.agent_id;
        tx.execute(
            "INSERT INTO agent_chains (agent_id, seq, hash) VALUES ($1, $2, $3)
             ON CONFLICT (agent_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash
             WHERE excluded.seq > agent_chains.seq",
            &[agent, &(signed.head.0 as i64), &signed.head.1],
        )?;
        for (from, to) in &signed.gaps {
            tx.execute(
                "INSERT INTO chain_gaps (agent_id, from_seq, to_seq, found_at)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (agent_id, from_seq) DO NOTHING",
                &[agent, &(*from as i64), &(*to as i64), &now_ns],
            )?;
        }
        for r in &signed.rotations {
            let body = serde_json::to_string(r).unwrap_or_default();
            tx.execute(
                "INSERT INTO key_rotations (agent_id, seq, body, rotated_at)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (agent_id, seq) DO NOTHING",
                &[agent, &(r.seq as i64), &body, &now_ns],
            )?;
        }
        if !signed.rotations.is_empty() {
            tx.execute(
                "UPDATE agent_keys SET public_key = $2 WHERE agent_id = $1",
                &[agent, &signed.key],
            )?;
        }
    }
    Ok(())
}

/// Records the agent's key unless it has one; the key recorded.
pub fn register_key(
    c: &mut Client,
    agent_id: &str,
    key: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String, Error> {
    c.execute(
        "INSERT INTO agent_keys (agent_id, public_key, registered_at) VALUES ($1, $2, $3)
         ON CONFLICT (agent_id) DO NOTHING",
        &[&agent_id, &key, &nanos(now)],
    )?;
    Ok(c.query_one(
        "SELECT public_key FROM agent_keys WHERE agent_id = $1",
        &[&agent_id],
    )?
    .get(0))
}

/// Stores a new token.
pub fn create_token(c: &mut Client, t: &NewToken) -> Result<(), Error> {
    c.execute(
        "INSERT INTO tokens (hash, quartier, building, latitude, longitude, created_at,
             expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &t.hash,
            &t.quartier,
            &t.building,
            &t.latitude,
            &t.longitude,
            &nanos(t.created_at),
            &nanos(t.expires_at),
        ],
    )?;
    Ok(())
}

/// The site of the token hashed `hash` when it can enrol now, or why not.
pub fn usable_token(
    c: &mut Client,
    hash: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Result<Site, EnrolError>, Error> {
    let row = c.query_opt(
        "SELECT quartier, building, latitude, longitude, expires_at, used_at
         FROM tokens WHERE hash = $1",
        &[&hash],
    )?;
    let Some(row) = row else {
        return Ok(Err(EnrolError::Unknown));
    };
    if let Some(used) = row.get::<_, Option<i64>>(5) {
        return Ok(Err(EnrolError::Used(from_ns(used))));
    }
    let expires_at: i64 = row.get(4);
    if expires_at <= nanos(now) {
        return Ok(Err(EnrolError::Expired(from_ns(expires_at))));
    }
    Ok(Ok(Site {
        quartier: row.get(0),
        building: row.get(1),
        latitude: row.get(2),
        longitude: row.get(3),
    }))
}

/// Takes the token for `agent_id` and records the enrolment, atomically: the token is
/// taken only if still unused and unexpired.
pub fn enrol(
    c: &mut Client,
    hash: &str,
    now: chrono::DateTime<chrono::Utc>,
    agent_id: &str,
    site: &Site,
) -> Result<Result<(), EnrolError>, Error> {
    let mut tx = c.transaction()?;
    let taken = tx.execute(
        "UPDATE tokens SET used_at = $2, agent_id = $3
         WHERE hash = $1 AND used_at IS NULL AND expires_at > $2",
        &[&hash, &nanos(now), &agent_id],
    )?;
    if taken == 0 {
        drop(tx);
        // Taken or run out since it was read: say which.
        return match usable_token(c, hash, now)? {
            Err(e) => Ok(Err(e)),
            Ok(_) => Ok(Err(EnrolError::Store(StoreError::Backend(
                "the token changed while enrolling".into(),
            )))),
        };
    }
    tx.execute(
        "INSERT INTO agents (id, quartier, building, first_seen, last_seen, enrolled_at,
             latitude, longitude)
         VALUES ($1, $2, $3, $4, $4, $4, $5, $6)
         ON CONFLICT (id) DO UPDATE SET
             quartier = excluded.quartier, building = excluded.building,
             enrolled_at = excluded.enrolled_at, latitude = excluded.latitude,
             longitude = excluded.longitude",
        &[
            &agent_id,
            &site.quartier,
            &site.building,
            &nanos(now),
            &site.latitude,
            &site.longitude,
        ],
    )?;
    tx.commit()?;
    Ok(Ok(()))
}

/// Revokes an agent; `false` when unknown. The first date is kept.
pub fn revoke(
    c: &mut Client,
    agent_id: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, Error> {
    let changed = c.execute(
        "UPDATE agents SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
        &[&agent_id, &nanos(now)],
    )?;
    Ok(changed == 1)
}

/// Deletes up to `limit` raw results started before `before`, oldest first, with
/// their ids (a pruned result sent again is stored again, as in SQLite).
pub fn prune(
    c: &mut Client,
    before: chrono::DateTime<chrono::Utc>,
    limit: usize,
) -> Result<usize, Error> {
    let n = c.execute(
        "WITH gone AS (
             SELECT row_id, started_at FROM results WHERE started_at < $1
             ORDER BY started_at LIMIT $2
         ), deleted AS (
             DELETE FROM results r USING gone
             WHERE r.row_id = gone.row_id AND r.started_at = gone.started_at
             RETURNING r.id
         )
         DELETE FROM result_keys k USING deleted WHERE k.id = deleted.id",
        &[&nanos(before), &(limit.min(i64::MAX as usize) as i64)],
    )?;
    Ok(n as usize)
}

/// See `sonde_store::Maintenance::lease`: the same one-statement lease as SQLite's.
/// Not a session advisory lock: a lease is bounded in time and outlives the pooled
/// connection that took it, which a session lock does not.
pub fn lease(
    c: &mut Client,
    job: &str,
    holder: &str,
    now: chrono::DateTime<chrono::Utc>,
    until: chrono::DateTime<chrono::Utc>,
) -> Result<bool, Error> {
    // A row comes back only when the lease was taken or renewed.
    let taken = c.query_opt(
        "INSERT INTO leases (job, holder, until_ns) VALUES ($1, $2, $4)
         ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, until_ns = excluded.until_ns
         WHERE leases.holder = excluded.holder OR leases.until_ns <= $3
         RETURNING holder",
        &[&job, &holder, &nanos(now), &nanos(until)],
    )?;
    Ok(taken.is_some())
}

/// See `sonde_store::Plans::apply_plan`.
pub fn apply_plan(
    c: &mut Client,
    document: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<u64, Error> {
    let mut tx = c.transaction()?;
    // Two operators applying at once get two versions, one after the other.
    tx.execute("LOCK TABLE plans IN EXCLUSIVE MODE", &[])?;
    let version: i64 = tx
        .query_one(
            "INSERT INTO plans (version, applied_at, document)
             SELECT COALESCE(MAX(version), 0) + 1, $1, $2 FROM plans
             RETURNING version",
            &[&nanos(at), &document],
        )?
        .get(0);
    tx.commit()?;
    Ok(version as u64)
}

/// The time `v` nanoseconds after the Unix epoch.
pub fn from_ns(v: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_nanos(v)
}
