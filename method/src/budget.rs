//! Monthly data budgets per access: a 4G SIM's data cap is never exceeded by tests.
//!
//! The [`Ledger`] counts the bytes each access's tests used in the current calendar
//! month (UTC); the agent keeps it durably. Before a test, [`plan`] decides from what
//! is left: run with a byte allowance per direction (the probe stops a direction when
//! it reaches it), or skip with the reason `budget`. Pure code: time is passed in.
//!
//! Why it cannot be exceeded: a test uses at most its fixed part (latency trains,
//! requests), plus, per direction, its allowance and what can still arrive after the
//! stop (`overshoot`: the tick that noticed plus what was in flight). The allowance is
//! computed so that this total fits in what is left of the month, else the test is
//! skipped. The remaining budget is also spread over the runs left in the month, so
//! the last days are measured too.

use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bytes of a test besides its directions' payload: idle and loaded latency trains,
/// HTTP requests and heads, TCP and TLS handshakes (generously).
pub const FIXED_BYTES: u64 = 2 * 1024 * 1024;
/// Smallest allowance of one direction, whatever the line: 2 MiB.
pub const MIN_DIRECTION_BYTES: u64 = 2 * 1024 * 1024;

/// Smallest useful allowance of one direction on a line of up to `max_bps`: half a
/// second at that rate (a second at the target), so the sampler sees several bins.
pub fn min_direction(max_bps: f64) -> u64 {
    ((max_bps / 8.0 * 0.5).ceil() as u64).max(MIN_DIRECTION_BYTES)
}
/// Time the sampler may take to notice the allowance is reached, plus data in flight,
/// expressed as time at the line's rate.
pub const OVERSHOOT_S: f64 = 0.5;

/// Bytes that can arrive after a direction's stop, at most, on a line of `max_bps`.
pub fn overshoot(max_bps: f64) -> u64 {
    (max_bps / 8.0 * OVERSHOOT_S).ceil() as u64
}

/// The smallest budget one test fits in, on a line of `max_bps`.
pub fn minimal_test(max_bps: f64) -> u64 {
    FIXED_BYTES + 2 * (min_direction(max_bps) + overshoot(max_bps))
}

/// What to do with a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Run, stopping each direction at this many payload bytes.
    Run {
        /// Bytes per direction.
        allowance: u64,
    },
    /// Skip: the month's budget cannot hold one more test.
    Skip {
        /// Used so far this month.
        used: u64,
        /// The month's budget.
        budget: u64,
    },
}

/// Start of the calendar month (UTC) after the one holding `now`.
pub fn month_end(now: DateTime<Utc>) -> DateTime<Utc> {
    let (y, m) = if now.month() == 12 {
        (now.year() + 1, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0)
        .single()
        .unwrap_or(now)
}

/// `YYYY-MM` of `now`.
pub fn month(now: DateTime<Utc>) -> String {
    now.format("%Y-%m").to_string()
}

/// The plan for a test at `now` of an access with a monthly `budget`, `used` bytes so
/// far this month, runs every `interval`, on a line of at most `max_bps`.
pub fn plan(
    budget: u64,
    used: u64,
    now: DateTime<Utc>,
    interval: std::time::Duration,
    max_bps: f64,
) -> Plan {
    let skip = Plan::Skip { used, budget };
    let left = budget.saturating_sub(used);
    let over = overshoot(max_bps);
    // The most this test may use without exceeding the budget, whatever happens.
    let Some(room) = left.checked_sub(FIXED_BYTES + 2 * over) else {
        return skip;
    };
    // Spread what is left over the runs left in the month, this one included: a
    // test's expected cost is its fixed part, its allowances and half the overshoot.
    let to_go = (month_end(now) - now).num_milliseconds().max(0) as u128;
    let runs_left = (to_go / interval.as_millis().max(1)).max(1) as u64 + 1;
    let share = (left / runs_left).saturating_sub(FIXED_BYTES) / 2;
    let min = min_direction(max_bps);
    let allowance = (room / 2).min(share.saturating_sub(over / 2).max(min));
    if allowance < min {
        return skip;
    }
    Plan::Run { allowance }
}

/// Bytes used by the tests of each access in one month.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// `YYYY-MM` (UTC) the counts are for.
    pub month: String,
    /// Bytes used per access name.
    pub used: BTreeMap<String, u64>,
}

impl Ledger {
    /// Bytes `access` used in the month of `now`.
    pub fn used(&self, access: &str, now: DateTime<Utc>) -> u64 {
        if self.month == month(now) {
            self.used.get(access).copied().unwrap_or(0)
        } else {
            0
        }
    }

    /// Adds `bytes` to `access` in the month of `now` (a new month starts from zero).
    pub fn add(&mut self, access: &str, now: DateTime<Utc>, bytes: u64) {
        let m = month(now);
        if self.month != m {
            self.month = m;
            self.used.clear();
        }
        *self.used.entry(access.to_string()).or_default() += bytes;
    }
}

/// Bytes to charge a test with: payload each direction moved, at the IP layer (× the
/// record's overhead ratio), plus the fixed part. A direction that ran but left no
/// figure (it failed midway) is charged its whole `allowance` and the overshoot: what
/// it moved is unknown, so the worst is assumed. A test skipped before any traffic
/// costs nothing.
pub fn charge(r: &sonde_proto::ResultRecord, allowance: u64, max_bps: f64) -> u64 {
    use sonde_proto::{FailureReason, Outcome};
    let skipped = r.status.outcome == Outcome::Failed
        && matches!(
            r.status.reason,
            Some(FailureReason::Budget | FailureReason::Busy | FailureReason::Interface)
        );
    if skipped {
        return 0;
    }
    let mut total = FIXED_BYTES as f64;
    // Nothing answered: only connection attempts crossed the line.
    let reached = r.idle_latency.is_some() || r.download.is_some() || r.upload.is_some();
    for dir in &r.run.directions {
        let t = match dir {
            sonde_proto::Direction::Down => r.download.as_ref(),
            sonde_proto::Direction::Up => r.upload.as_ref(),
            sonde_proto::Direction::Unknown => None,
        };
        total += match t {
            Some(t) => t.bytes_total as f64 * t.ip_overhead_ratio.max(1.0),
            None if reached => (allowance + overshoot(max_bps)) as f64,
            None => 0.0,
        };
    }
    // Responsiveness moves its own bytes, over TLS (counted as payload) on TCP.
    if let Some(x) = &r.responsiveness {
        let moved: u64 = [&x.down, &x.up]
            .into_iter()
            .flatten()
            .map(|f| f.bytes)
            .sum();
        total += moved as f64 * TCP_OVERHEAD;
    }
    total.ceil() as u64
}

/// IP bytes per TCP payload byte of full segments at a 1500-byte MTU with timestamps
/// (1500 ÷ 1448), for tests whose record gives no ratio of its own.
const TCP_OVERHEAD: f64 = 1500.0 / 1448.0;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A month of schedules on a virtual clock: tests every `interval`, each moving
    /// its allowance (when the line is fast enough) plus up to the overshoot, on a line
    /// whose rate varies. The budget is never exceeded, and most of it is used.
    fn simulate(budget: u64, interval: Duration, max_bps: f64, seed: u64) -> (u64, u64, u64) {
        let mut rng = seed;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % 10_000) as f64 / 10_000.0
        };
        let mut ledger = Ledger::default();
        let start = Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap();
        let end = month_end(start);
        let mut now = start;
        let (mut ran, mut skipped) = (0, 0);
        while now < end {
            let used = ledger.used("mobile", now);
            match plan(budget, used, now, interval, max_bps) {
                Plan::Run { allowance } => {
                    // The line moves at 10-100 % of its maximum for up to 10 s, then
                    // what was in flight arrives: at most the overshoot.
                    let mut moved = FIXED_BYTES;
                    for _ in 0..2 {
                        let natural = (max_bps * (0.1 + 0.9 * next()) / 8.0 * 10.0) as u64;
                        let late = (overshoot(max_bps) as f64 * next()) as u64;
                        moved += natural.min(allowance) + late;
                    }
                    ledger.add("mobile", now, moved);
                    ran += 1;
                }
                Plan::Skip { .. } => skipped += 1,
            }
            let used = ledger.used("mobile", now);
            assert!(used <= budget, "{used} > {budget} at {now}");
            now += chrono::Duration::from_std(interval).expect("interval");
        }
        let used = ledger.used("mobile", end - chrono::Duration::seconds(1));
        (used, ran, skipped)
    }

    #[test]
    fn a_months_budget_is_never_exceeded_and_is_spread_over_the_month() {
        let gb = 1_000_000_000;
        // A 20 GB SIM measured every 4 h at up to 150 Mb/s: natural tests (up to
        // 190 MB a direction) would use 60 GB.
        let (used, ran, skipped) = simulate(20 * gb, Duration::from_secs(4 * 3600), 150e6, 7);
        assert!(used <= 20 * gb);
        assert!(used > 16 * gb, "most of the budget is used: {used}");
        assert_eq!(
            skipped, 0,
            "spread, not spent early then skipped: ran {ran}"
        );
        // Too tight for the cadence (every 10 min, 600 MB): tests shrink to their
        // minimum, then are skipped; none exceeds it.
        let (used, _, skipped) = simulate(600_000_000, Duration::from_secs(600), 150e6, 11);
        assert!(used <= 600_000_000);
        assert!(skipped > 0);
        // A budget smaller than one test: every test is skipped.
        let tiny = minimal_test(150e6) - 1;
        let (used, ran, _) = simulate(tiny, Duration::from_secs(3600), 150e6, 3);
        assert_eq!((used, ran), (0, 0));
    }

    #[test]
    fn responsiveness_bytes_are_charged_at_the_ip_layer() {
        let mut r = sonde_proto::ResultRecord::responsiveness_example();
        r.download = None;
        r.upload = None;
        r.idle_latency = None;
        let x = r.responsiveness.as_ref().expect("rpm");
        let moved = x.down.as_ref().map_or(0, |f| f.bytes) + x.up.as_ref().map_or(0, |f| f.bytes);
        assert!(moved > 0);
        let want = (FIXED_BYTES as f64 + moved as f64 * 1500.0 / 1448.0).ceil() as u64;
        assert_eq!(charge(&r, 1_000_000, 1e9), want);
        r.responsiveness = None;
        assert_eq!(charge(&r, 1_000_000, 1e9), FIXED_BYTES);
    }

    #[test]
    fn a_new_month_starts_from_zero() {
        let mut l = Ledger::default();
        let jan = Utc.with_ymd_and_hms(2026, 1, 31, 23, 0, 0).unwrap();
        l.add("mobile", jan, 500);
        assert_eq!(l.used("mobile", jan), 500);
        let feb = Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap();
        assert_eq!(l.used("mobile", feb), 0);
        l.add("mobile", feb, 7);
        assert_eq!(l.used("mobile", feb), 7);
        assert_eq!(
            month_end(Utc.with_ymd_and_hms(2026, 12, 5, 0, 0, 0).unwrap()),
            Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()
        );
    }
}
