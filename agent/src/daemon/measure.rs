//! The measure loop: the scheduler says which access is due, its test runs
//! ([`super::probe`]), the budget is charged, the result is counted and spooled
//! (fsync) before anything else happens to it. One access at a time.

use super::probe;
use super::shared::{stopped, with_spool, Shared};
use super::status::NextRun;
use crate::config::Access;
use chrono::DateTime;
use sonde_method::budget::Plan;
use sonde_method::schedule::{Due, Scheduler};
use sonde_proto::wire::RawRecord;
use sonde_proto::{Outcome, ResultRecord};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Runs until `stop` turns true.
pub async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut scheduler = scheduler(&shared);
    // Results the spool could not take (disk full): kept here and retried, never dropped.
    let mut pending: Vec<ResultRecord> = Vec::new();
    loop {
        let due = tokio::select! {
            due = next_due(&shared, &mut scheduler) => due,
            _ = stopped(&mut stop) => return,
        };
        let Some(due) = due else { return };
        let access = &shared.config.accesses[due.access];
        if due.missed > 0 {
            tracing::warn!(access = %access.name, missed = due.missed, "scheduled runs missed");
        }
        let plan = budget_plan(&shared, access);
        let record = tokio::select! {
            r = probe::run(&shared, access, plan) => r,
            _ = stopped(&mut stop) => return,
        };
        charge(&shared, access, plan, &record).await;
        account(&shared, access, &due, &record);
        pending.push(record);
        pending = spool(&shared, pending).await;
        shared.write_status().await;
    }
}

/// The box's schedule: a phase per box, from its identity (its agent id; before
/// enrolment, a random seed kept in the state directory), so boxes configured alike,
/// even in one building, do not all probe at once.
fn scheduler(shared: &Shared) -> Scheduler {
    let cadences: Vec<_> = shared
        .config
        .accesses
        .iter()
        .map(|a| a.cadence.clone())
        .collect();
    Scheduler::new(
        &cadences,
        shared.clock.now_ms(),
        seed_of(&shared.phase_seed),
    )
}

/// The random seed of a box not enrolled yet, made once and kept in `state_dir`
/// (blocking file work).
pub fn box_seed(state_dir: &std::path::Path) -> String {
    let path = state_dir.join(SEED_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        if !text.trim().is_empty() {
            return text.trim().to_string();
        }
    }
    let seed = format!("{:016x}", rand::random::<u64>());
    if let Err(e) = crate::state::files::write_atomic(&path, seed.as_bytes(), 0o600) {
        // Still a seed of its own for this run; the phase may change at restart.
        tracing::warn!(error = %e, path = %path.display(), "cannot keep the schedule seed");
    }
    seed
}

/// The file of [`box_seed`].
const SEED_FILE: &str = "schedule.seed";

fn seed_of(text: &str) -> u64 {
    // FNV-1a: a stable phase per box across restarts and versions.
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Waits for the next run that is due, showing it in the status meanwhile.
async fn next_due(shared: &Shared, scheduler: &mut Scheduler) -> Option<Due> {
    loop {
        let (i, at) = scheduler.next_due()?;
        let next = NextRun {
            access: shared.config.accesses[i].name.clone(),
            at: DateTime::from_timestamp_millis(at as i64).unwrap_or_default(),
        };
        shared.board.update(|s| s.next_run = Some(next));
        shared.write_status().await;
        let wait = Duration::from_millis(at.saturating_sub(shared.clock.now_ms()));
        tokio::time::sleep(wait).await;
        if let Some(due) = scheduler.take_due(shared.clock.now_ms()) {
            return Some(due);
        }
    }
}

/// What the access's data budget allows this test (`None`: no budget).
fn budget_plan(shared: &Shared, access: &Access) -> Option<Plan> {
    let budget = access.budget?;
    let now = shared.clock.now();
    let used = shared
        .ledger
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .used(&access.name, now);
    let interval = Duration::from_millis(access.cadence.interval_ms);
    Some(sonde_method::budget::plan(
        budget,
        used,
        now,
        interval,
        access.max_bps(),
    ))
}

/// Charges the test's bytes to the access's budget, durably (off the async workers).
async fn charge(shared: &Shared, access: &Access, plan: Option<Plan>, record: &ResultRecord) {
    if access.budget.is_none() {
        return;
    }
    let allowance = match plan {
        Some(Plan::Run { allowance }) => allowance,
        _ => 0,
    };
    let bytes = sonde_method::budget::charge(record, allowance, access.max_bps());
    let now = shared.clock.now();
    let (ledger, name) = (shared.ledger.clone(), access.name.clone());
    let written = sonde_cli::blocking::run(move || {
        ledger
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(&name, now, bytes)
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    if let Err(e) = written {
        tracing::error!(error = %e, "cannot write the data budget ledger");
        shared
            .board
            .update(|s| s.last_error = Some(format!("budget: {e}")));
    }
    shared.update_budgets(now);
}

/// Counts the result: runs, misses, failures, the responder that served it, and the
/// latest result of the access for `/metrics`.
fn account(shared: &Shared, access: &Access, due: &Due, record: &ResultRecord) {
    tracing::info!(
        access = %access.name,
        id = %record.id,
        outcome = %record.status.outcome,
        down_bps = record.download.as_ref().map(|t| t.ip_rate_bps),
        up_bps = record.upload.as_ref().map(|t| t.ip_rate_bps),
        "measured"
    );
    let served = access
        .responders
        .iter()
        .position(|u| u.as_str() == record.run.responder.url)
        .filter(|_| record.download.is_some() || record.upload.is_some());
    shared.board.update(|s| {
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
            let reason = record.status.reason.map_or("other", |r| r.as_str());
            *s.failures_total.entry(reason.to_string()).or_default() += 1;
        }
    });
    let mut latest = shared.latest.lock().unwrap_or_else(|e| e.into_inner());
    let name = access.name.clone();
    *latest
        .1
        .entry((name.clone(), record.status.outcome.as_str().into()))
        .or_default() += 1;
    latest.0.insert(name, record.clone());
}

/// Spools `batch` durably and wakes the uplink; what the spool could not take is
/// returned, to be kept in memory and tried again with the next result.
async fn spool(shared: &Shared, batch: Vec<ResultRecord>) -> Vec<ResultRecord> {
    let raw: Vec<_> = batch.iter().map(|r| (r.id, RawRecord::of(r))).collect();
    let spooled = with_spool(&shared.spool, move |s| {
        let mut evicted = 0;
        for (id, r) in &raw {
            evicted += s.push_raw(*id, r)?.evicted;
        }
        Ok(evicted)
    })
    .await;
    match spooled {
        Ok(evicted) => {
            if evicted > 0 {
                tracing::warn!(evicted, "spool full: oldest results evicted");
            }
            shared.wake.notify_one();
            Vec::new()
        }
        Err(e) => {
            tracing::error!(error = %e, kept = batch.len(), "cannot spool; keeping the results in memory and retrying");
            shared.board.update(|s| {
                s.last_error = Some(format!("spool: {e}"));
                *s.failures_total.entry("spool_write".into()).or_default() += 1;
            });
            batch
        }
    }
}
