//! One scheduled test of one access: deferred while the line or the box is busy,
//! planned within its data budget, its radio context read, then probed against its
//! responders in turn until one answers, and labelled with the access, the site and
//! the agent. Always a record: a test not run says why.

use super::shared::Shared;
use crate::config::Access;
use crate::context::{busy, radio, wifi};
use crate::engine::{self as probe};
use crate::net::netif;
use sonde_method::budget::Plan;
use sonde_proto::{AccessKind, Direction, FailureReason, Flag, Outcome, ResultRecord};
use std::time::Duration;

/// Runs the test of `access` that `plan` allows (no plan: no budget).
pub async fn run(shared: &Shared, access: &Access, plan: Option<Plan>) -> ResultRecord {
    if let Some(why) = wait_while_busy(shared, access).await {
        return skipped(shared, access, FailureReason::Busy, why);
    }
    let max_bytes = match plan {
        Some(Plan::Skip { used, budget }) => {
            let why = format!(
                "monthly data budget: {:.1} of {:.1} MB used, not enough for one more test",
                used as f64 / 1e6,
                budget as f64 / 1e6
            );
            return skipped(shared, access, FailureReason::Budget, why);
        }
        Some(Plan::Run { allowance }) => Some(allowance),
        None => None,
    };
    // A radio access's context, read just before the test (2 s at most): ModemManager
    // for 4G, nl80211 for Wi-Fi.
    let radio = match access.kind {
        AccessKind::FourG => Some(
            radio::lte(
                shared.config.file.radio.dbus_address.as_deref(),
                &access.interface,
            )
            .await,
        ),
        AccessKind::Wifi => Some(wifi::context(&access.interface).await),
        _ => None,
    };
    let mut record = measure(shared, access, max_bytes).await;
    record.radio = radio;
    record
}

/// Samples the access's interface and the CPU; while busy, waits and samples again
/// (`busy.checks` times). `Some(why)` when the test is to be skipped.
async fn wait_while_busy(shared: &Shared, access: &Access) -> Option<String> {
    let b = &shared.config.busy;
    if b.threshold.is_none() && b.cpu_limit.is_none() {
        return None;
    }
    for attempt in 0..=b.checks {
        // Unreadable counters (no such interface): the test runs and says why.
        let load = busy::sample(&access.interface, Duration::from_secs(1)).await?;
        let why = busy::verdict(&load, b.threshold, b.cpu_limit)?;
        if attempt == b.checks {
            return Some(format!("{why}; skipped after {} checks", b.checks + 1));
        }
        tracing::info!(access = %access.name, reason = %why, wait = ?b.recheck, "busy: test deferred");
        shared
            .board
            .update(|s| s.last_error = Some(format!("{}: {why}; test deferred", access.name)));
        tokio::time::sleep(b.recheck).await;
    }
    None
}

/// A result for a test not run (`busy`, `budget`): scheduled, skipped, with why.
fn skipped(
    shared: &Shared,
    access: &Access,
    reason: FailureReason,
    message: String,
) -> ResultRecord {
    let opts = options(access, None, None, None);
    let mut record = probe::failed(&opts, reason, message);
    label(shared, access, &mut record);
    record
}

/// Probe options of `access` against `responder` (its first when `None`).
fn options(
    access: &Access,
    responder: Option<&url::Url>,
    interface: Option<netif::Interface>,
    max_bytes: Option<u64>,
) -> probe::Options {
    probe::Options {
        responder: responder
            .or(access.responders.first())
            .cloned()
            .unwrap_or_else(|| url::Url::parse("http://invalid.invalid/").expect("static URL")),
        interface,
        access: access.kind,
        targets: access.targets,
        streams: access.streams,
        max_duration: access.max_duration,
        directions: vec![Direction::Down, Direction::Up],
        idle_probes: 50,
        idle_interval: Duration::from_millis(20),
        max_bytes,
        rpm: access.rpm.as_ref().map(|r| probe::options::RpmOptions {
            config: r.config.clone(),
            ca: r.ca.clone(),
        }),
    }
}

/// Records the cross-traffic and the CPU's busy share during the test, and flags the
/// result when either was too high (METHODOLOGY.md §5).
fn observe(
    shared: &Shared,
    access: &Access,
    record: &mut ResultRecord,
    counters: Option<busy::Counters>,
    cpu: Option<busy::Cpu>,
) {
    let ran = record.download.is_some() || record.upload.is_some();
    if !ran {
        return;
    }
    // On a loopback interface both ends are this box: every byte is counted twice and
    // no household shares it.
    let loopback = busy::is_loopback(&access.interface);
    let counters = counters.filter(|_| !loopback);
    if let (Some(before), Ok(after)) = (counters, busy::Counters::read(&access.interface)) {
        let test: f64 = [record.download.as_ref(), record.upload.as_ref()]
            .into_iter()
            .flatten()
            .map(|t| t.bytes_total as f64 * t.ip_overhead_ratio.max(1.0))
            .sum();
        let cross = busy::cross_traffic(
            after.since(&before),
            test,
            sonde_method::budget::FIXED_BYTES,
        );
        record.run.cross_traffic_bytes = Some(cross);
        if cross as f64 > shared.config.busy.cross_traffic * test
            && !record.flags.contains(&Flag::CrossTraffic)
        {
            record.flags.push(Flag::CrossTraffic);
        }
    }
    if let (Some(before), Some(after)) = (cpu, busy::Cpu::read()) {
        if let Some(share) = after.busy_since(&before) {
            record.run.cpu_busy_ratio = Some(share);
            if share >= busy::CPU_LIMITED && !record.flags.contains(&Flag::CpuLimited) {
                record.flags.push(Flag::CpuLimited);
            }
        }
    }
}

/// Names the access, its schedule, site and agent in `record`.
fn label(shared: &Shared, access: &Access, record: &mut ResultRecord) {
    record.access.interface = Some(access.interface.clone());
    record.access.name = Some(access.name.clone());
    record.run.interval_s = Some(access.cadence.interval_ms as f64 / 1e3);
    record.site.quartier = Some(shared.config.file.site.quartier.clone());
    record.site.building = Some(shared.config.file.site.building.clone());
    record.agent.id = shared.board.snapshot().agent_id;
    record.run.clock_synchronised = shared.clock.synchronised();
}

/// Waits before another round when every responder said it was busy with other tests:
/// their tests last 30 s at most.
const BUSY_ROUNDS: [Duration; 2] = [Duration::from_secs(15), Duration::from_secs(30)];

/// Probes `access`, trying its responders in order until one answers; when all were
/// busy with other tests, tries them all again after [`BUSY_ROUNDS`].
async fn measure(shared: &Shared, access: &Access, max_bytes: Option<u64>) -> ResultRecord {
    let mut record = measure_round(shared, access, max_bytes).await;
    for wait in BUSY_ROUNDS {
        if record.status.reason != Some(FailureReason::ResponderBusy)
            || record.download.is_some()
            || record.upload.is_some()
        {
            break;
        }
        // A little jitter, so boxes refused together do not come back together.
        let wait = wait + Duration::from_millis(rand::random::<u64>() % 5_000);
        tracing::info!(access = %access.name, ?wait, "every responder busy with other tests; trying again");
        tokio::time::sleep(wait).await;
        record = measure_round(shared, access, max_bytes).await;
    }
    record
}

/// One round over the access's responders, in order until one answers.
async fn measure_round(shared: &Shared, access: &Access, max_bytes: Option<u64>) -> ResultRecord {
    let interface = netif::interface(&access.interface);
    let mut last = None;
    // In turn when rotating, else in the configured order; the others follow as
    // fail-overs.
    let first = if access.rotate {
        let mut runs = shared.runs.lock().unwrap_or_else(|e| e.into_inner());
        let n = runs.entry(access.name.clone()).or_default();
        *n += 1;
        (*n - 1) % access.responders.len().max(1)
    } else {
        0
    };
    let order = access.responders[first..]
        .iter()
        .chain(&access.responders[..first]);
    for responder in order {
        let opts = options(
            access,
            Some(responder),
            interface.as_ref().ok().cloned(),
            max_bytes,
        );
        let counters = busy::Counters::read(&access.interface).ok();
        let cpu = busy::Cpu::read();
        let mut record = match &interface {
            Ok(_) => shared.prober.probe(&opts).await,
            // Never measure unbound: the figure would be another access's.
            Err(e) => probe::failed(&opts, FailureReason::Interface, e.clone()),
        };
        label(shared, access, &mut record);
        observe(shared, access, &mut record, counters, cpu);
        let unreachable = record.status.outcome == Outcome::Failed
            && record.download.is_none()
            && record.upload.is_none();
        if !unreachable {
            return record;
        }
        tracing::info!(responder = %responder, message = ?record.status.message, "responder unreachable; trying the next");
        last = Some(record);
    }
    // Every responder failed: the last attempt's record says why.
    last.unwrap_or_else(|| unreachable!("config checks at least one responder"))
}
