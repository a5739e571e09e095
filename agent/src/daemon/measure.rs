//! The measure loop: the scheduler says which access is due, its test runs
//! ([`super::probe`]), the budget is charged, the result is counted and spooled
//! (fsync) before anything else happens to it. One access at a time.

use super::clock::StepWatch;
use super::probe;
use super::shared::{spool_held, stopped, Shared};
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

/// Runs until `stop` turns true. A new plan ([`Shared::replan`]) replaces the
/// accesses and the schedule between two tests, never during one.
pub async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut accesses = shared.accesses();
    let mut scheduler = scheduler(&shared, &accesses);
    let mut watch = StepWatch::new(shared.clock.as_ref());
    loop {
        let due = tokio::select! {
            due = next_due(&shared, &accesses, &mut scheduler, &mut watch) => due,
            _ = shared.replan.notified() => {
                accesses = shared.accesses();
                scheduler = self::scheduler(&shared, &accesses);
                continue;
            }
            _ = stopped(&mut stop) => return,
        };
        let Some(due) = due else { return };
        let access = &accesses[due.access];
        if due.missed > 0 {
            tracing::warn!(access = %access.name, missed = due.missed, "scheduled runs missed");
        }
        if let Some(reason) = shared.suppressed(&access.name, shared.clock.now()) {
            suppressed(&shared, access, &due, &reason);
            shared.write_status().await;
            continue;
        }
        let plan = budget_plan(&shared, access);
        let record = tokio::select! {
            r = async {
                // An upload in flight finishes first; none starts until the test ends.
                let _line = shared.line.lock().await;
                probe::run(&shared, access, plan).await
            } => r,
            _ = stopped(&mut stop) => return,
        };
        charge(&shared, access, plan, &record).await;
        account(&shared, access, &due, &record);
        keep(&shared, &record).await;
        shared.write_status().await;
    }
}

/// The box's schedule: a phase per box, from its identity (its agent id; before
/// enrolment, a random seed kept in the state directory), so boxes configured alike,
/// even in one building, do not all probe at once.
fn scheduler(shared: &Shared, accesses: &[Access]) -> Scheduler {
    let cadences: Vec<_> = accesses.iter().map(|a| a.cadence.clone()).collect();
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

/// The longest the measure loop sleeps before looking at the clock again: a step back
/// is noticed within this.
const CLOCK_CHECK: Duration = Duration::from_secs(10);

/// Waits for the next run that is due, showing it in the status meanwhile. The wait
/// is on the monotonic clock, in steps of at most [`CLOCK_CHECK`]; when the wall clock
/// steps (NTP setting a wrong clock right), the schedule starts again from the new
/// time: the step is logged and counted, no run is counted missed for it, and no run
/// waits for the old time to come back.
async fn next_due(
    shared: &Shared,
    accesses: &[Access],
    scheduler: &mut Scheduler,
    watch: &mut StepWatch,
) -> Option<Due> {
    let mut shown = None;
    loop {
        if let Some(step_ms) = watch.check(shared.clock.as_ref()) {
            tracing::warn!(
                step_s = step_ms as f64 / 1e3,
                "the wall clock stepped; the schedule starts again from the new time"
            );
            shared.board.update(|s| s.clock_steps_total += 1);
            *scheduler = self::scheduler(shared, accesses);
        }
        let (i, at) = scheduler.next_due()?;
        if shown != Some((i, at)) {
            shown = Some((i, at));
            let next = NextRun {
                access: accesses[i].name.clone(),
                at: DateTime::from_timestamp_millis(at as i64).unwrap_or_default(),
            };
            shared.board.update(|s| s.next_run = Some(next));
            shared.write_status().await;
        }
        let wait = Duration::from_millis(at.saturating_sub(shared.clock.now_ms()));
        if !wait.is_zero() {
            tokio::time::sleep(wait.min(CLOCK_CHECK)).await;
            continue;
        }
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
        let failed = record.status.outcome == Outcome::Failed;
        if failed {
            let reason = record.status.reason.map_or("other", |r| r.as_str());
            *s.failures_total.entry(reason.to_string()).or_default() += 1;
        }
        let counters = s.plan.schedules.entry(access.name.clone()).or_default();
        counters.invocations += 1;
        counters.overlaps += due.missed;
        counters.failures += u64::from(failed);
    });
    let mut latest = shared.latest.lock().unwrap_or_else(|e| e.into_inner());
    let name = access.name.clone();
    *latest
        .1
        .entry((name.clone(), record.status.outcome.as_str().into()))
        .or_default() += 1;
    latest.0.insert(name, record.clone());
}

/// A run a suppression window covers: counted as suppressed (not missed), no test.
fn suppressed(shared: &Shared, access: &Access, due: &Due, reason: &str) {
    tracing::info!(access = %access.name, %reason, "run suppressed by the plan");
    shared.board.update(|s| {
        s.missed_runs_total += due.missed;
        let counters = s.plan.schedules.entry(access.name.clone()).or_default();
        counters.suppressions += 1;
        counters.overlaps += due.missed;
    });
}

/// Spools the result durably (with any held before it) and wakes the uplink. What the
/// spool cannot take stays held in memory ([`super::held`]), and goes up from there.
async fn keep(shared: &Shared, record: &ResultRecord) {
    let dropped = shared
        .held
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(record.id, RawRecord::of(record));
    if dropped {
        tracing::error!(
            bound = super::held::MAX_HELD,
            "spool unwritable and results held in memory at their bound: the oldest was dropped"
        );
    }
    spool_held(shared).await;
    shared.wake.notify_one();
}
