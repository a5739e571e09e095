//! When each access is probed: a steady cadence per access, shifted by a fixed phase
//! (so boxes configured alike do not all probe at once) and a bounded random jitter,
//! never within a few seconds of the top of an hour, and one probe at a time on the
//! box. Pure code on a virtual clock: times are milliseconds since the Unix epoch.

use rand::{rngs::SmallRng, Rng, SeedableRng};

/// Runs are kept this far (ms) from an hour boundary, where every cron job lands
/// (less for cadences under a minute: a twelfth of the interval).
pub const HOUR_GUARD_MS: u64 = 5_000;

/// The guard band of an interval.
fn guard(interval_ms: u64) -> u64 {
    HOUR_GUARD_MS.min(interval_ms / 12)
}
const HOUR_MS: u64 = 3_600_000;

/// How one access is scheduled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cadence {
    /// Time between runs, ms (≥ 10 s).
    pub interval_ms: u64,
    /// Each run moves by up to ± this, ms (≤ a quarter of the interval).
    pub jitter_ms: u64,
}

/// A run to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// Index of the access.
    pub access: usize,
    /// When it was due, ms.
    pub at_ms: u64,
    /// Whole slots that passed without a run since this access's last run.
    pub missed: u64,
}

#[derive(Debug, Clone)]
struct Slot {
    cadence: Cadence,
    /// Phase of this access within its interval.
    phase_ms: u64,
    /// Start of the slot the next run belongs to.
    slot_ms: u64,
    /// Planned time of the next run.
    next_ms: u64,
}

/// The box's schedule.
#[derive(Debug, Clone)]
pub struct Scheduler {
    slots: Vec<Slot>,
    rng: SmallRng,
}

/// Moves `t` out of the guard band around the hour, towards the side it is on, so a
/// run never crosses into another slot (slots that span an hour start on it).
fn avoid_hour(t: u64, guard: u64) -> u64 {
    let into = t % HOUR_MS;
    if into < guard {
        t - into + guard
    } else if into > HOUR_MS - guard {
        t - into + HOUR_MS - guard
    } else {
        t
    }
}

impl Scheduler {
    /// A schedule for `cadences` starting at `now_ms`. `seed` (e.g. a hash of the agent
    /// id) fixes each access's phase, so a box keeps its slots across restarts.
    pub fn new(cadences: &[Cadence], now_ms: u64, seed: u64) -> Self {
        let mut phase_rng = SmallRng::seed_from_u64(seed);
        let slots = cadences
            .iter()
            .map(|c| {
                let interval = c.interval_ms.max(1);
                let jitter = c.jitter_ms.min(interval / 4);
                // Phase away from the slot edges by more than the jitter.
                let phase_ms =
                    jitter + phase_rng.random_range(0..=(interval - 2 * jitter).max(1) - 1);
                let slot_ms = now_ms - now_ms % interval;
                let mut s = Slot {
                    cadence: Cadence {
                        interval_ms: interval,
                        jitter_ms: jitter,
                    },
                    phase_ms,
                    slot_ms,
                    next_ms: 0,
                };
                if slot_ms + phase_ms < now_ms {
                    s.slot_ms += interval;
                }
                s
            })
            .collect();
        let mut sched = Scheduler {
            slots,
            rng: SmallRng::seed_from_u64(seed ^ now_ms),
        };
        for i in 0..sched.slots.len() {
            sched.plan(i, now_ms);
        }
        sched
    }

    /// Plans access `i`'s next run in its slot, never before `not_before_ms`.
    fn plan(&mut self, i: usize, not_before_ms: u64) {
        let j = self.slots[i].cadence.jitter_ms as i64;
        let offset = if j > 0 {
            self.rng.random_range(-j..=j)
        } else {
            0
        };
        let s = &mut self.slots[i];
        let planned = (s.slot_ms + s.phase_ms).saturating_add_signed(offset);
        let t = planned.max(not_before_ms);
        let g = guard(s.cadence.interval_ms);
        let moved = avoid_hour(t, g);
        // Moving back would be in the past: go past the hour instead.
        s.next_ms = if moved < not_before_ms {
            t - t % HOUR_MS + HOUR_MS + g
        } else {
            moved
        };
    }

    /// When the next run is due, and for which access.
    pub fn next_due(&self) -> Option<(usize, u64)> {
        self.slots
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.next_ms)
            .map(|(i, s)| (i, s.next_ms))
    }

    /// The run to start at `now_ms`, if one is due. The caller runs it to completion
    /// before asking again, so runs never overlap; a run delayed past its slot is still
    /// made once, and the slots it missed entirely are counted.
    pub fn take_due(&mut self, now_ms: u64) -> Option<Due> {
        let (i, at) = self.next_due()?;
        if at > now_ms {
            return None;
        }
        let interval = self.slots[i].cadence.interval_ms;
        let current_slot = now_ms - now_ms % interval;
        let s = &mut self.slots[i];
        // A run made late (a box asleep, a long run, another access's run, the hour
        // guard) stands for its own slot. The later slots whose planned time has
        // passed meanwhile get no run of their own and are counted missed; the next
        // slot whose time is still ahead keeps its run.
        let missed = now_ms.saturating_sub(s.phase_ms).saturating_sub(s.slot_ms) / interval;
        s.slot_ms += (missed + 1) * interval;
        debug_assert!(s.slot_ms + interval > current_slot);
        self.plan(i, now_ms);
        Some(Due {
            access: i,
            at_ms: at,
            missed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: u64 = 60_000;

    /// Runs a virtual day: each run takes `run_ms`; returns (access, start) pairs.
    fn simulate(
        cadences: &[Cadence],
        seed: u64,
        start: u64,
        run_ms: u64,
        until: u64,
    ) -> Vec<(usize, u64, u64)> {
        let mut s = Scheduler::new(cadences, start, seed);
        let mut now = start;
        let mut runs = Vec::new();
        while now < until {
            match s.take_due(now) {
                Some(d) => {
                    runs.push((d.access, now, d.missed));
                    now += run_ms;
                }
                None => now = s.next_due().map(|(_, t)| t).unwrap_or(until).max(now + 1),
            }
        }
        runs
    }

    proptest! {
        #[test]
        fn cadence_is_steady_bounded_and_never_on_the_hour(
            interval_min in 5u64..=180,
            jitter_pct in 0u64..=25,
            seed in any::<u64>(),
            start in 1_700_000_000_000u64..1_800_000_000_000,
        ) {
            let interval = interval_min * MIN;
            let jitter = interval * jitter_pct / 100;
            let cad = [Cadence { interval_ms: interval, jitter_ms: jitter }];
            let runs = simulate(&cad, seed, start, 30_000, start + 3 * 24 * 3_600_000);
            prop_assert!(runs.len() as u64 >= 3 * 24 * 60 / interval_min - 2);
            for w in runs.windows(2) {
                let gap = w[1].1 - w[0].1;
                // Never bunched: consecutive runs stay within the interval ± 2 jitters
                // (plus the hour guard).
                prop_assert!(gap + 2 * jitter + 2 * HOUR_GUARD_MS >= interval, "gap {gap} for {interval}");
                prop_assert!(gap <= interval + 2 * jitter + 2 * HOUR_GUARD_MS, "gap {gap} for {interval}");
            }
            for (_, t, missed) in &runs {
                let into = t % HOUR_MS;
                prop_assert!((HOUR_GUARD_MS..=HOUR_MS - HOUR_GUARD_MS).contains(&into), "run at {into} ms past the hour");
                prop_assert_eq!(*missed, 0);
            }
        }

        #[test]
        fn short_cadences_stay_steady_off_the_hour_and_never_overlap(
            interval_s in 10u64..300,
            jitter_pct in 0u64..=25,
            seed in any::<u64>(),
            start in 1_700_000_000_000u64..1_800_000_000_000,
            run_pct in 1u64..=50,
        ) {
            // Cadences under 5 minutes (tests, labs): a run that ends inside the hour
            // guard may push the next one past the hour, at most once an hour.
            let interval = interval_s * 1000;
            let jitter = interval * jitter_pct / 100;
            let g = guard(interval);
            let run_ms = interval * run_pct / 100;
            let cad = [Cadence { interval_ms: interval, jitter_ms: jitter }];
            let hours = 6;
            let runs = simulate(&cad, seed, start, run_ms, start + hours * 3_600_000);
            prop_assert!(runs.len() as u64 + hours + 2 >= hours * 3600 / interval_s);
            let mut long_gaps = 0;
            for w in runs.windows(2) {
                let gap = w[1].1 - w[0].1;
                prop_assert!(gap >= run_ms, "overlap");
                prop_assert!(gap + 2 * jitter + 2 * g >= interval, "bunched: gap {gap} for {interval}");
                if gap > interval + 2 * jitter + 2 * g {
                    long_gaps += 1;
                    prop_assert!(gap <= 2 * interval + 2 * jitter + 2 * g, "gap {gap} for {interval}");
                }
            }
            prop_assert!(long_gaps <= hours + 1, "{long_gaps} long gaps in {hours} h");
            for (_, t, _) in &runs {
                let into = t % HOUR_MS;
                prop_assert!((g..=HOUR_MS - g).contains(&into), "run at {into} ms past the hour");
            }
        }

        #[test]
        fn several_accesses_never_run_at_once(
            seed in any::<u64>(),
            run_s in 1u64..=40,
        ) {
            let cad = [
                Cadence { interval_ms: 15 * MIN, jitter_ms: 2 * MIN },
                Cadence { interval_ms: 15 * MIN, jitter_ms: 2 * MIN },
                Cadence { interval_ms: 60 * MIN, jitter_ms: 5 * MIN },
            ];
            let start = 1_750_000_000_000;
            let runs = simulate(&cad, seed, start, run_s * 1000, start + 24 * 3_600_000);
            for w in runs.windows(2) {
                prop_assert!(w[1].1 >= w[0].1 + run_s * 1000, "overlap");
            }
            accounted(&runs, run_s)?;
        }
    }

    /// Every slot of the day has its run or is counted missed, give or take the one
    /// at each end of the day.
    fn accounted(runs: &[(usize, u64, u64)], run_s: u64) -> Result<(), TestCaseError> {
        for a in 0..3 {
            let n = runs.iter().filter(|r| r.0 == a).count() as u64;
            let missed: u64 = runs.iter().filter(|r| r.0 == a).map(|r| r.2).sum();
            let want = 24 * 60 / if a == 2 { 60 } else { 15 };
            prop_assert!(
                n + missed + 1 >= want && n + missed <= want + 1,
                "access {a} ({run_s} s runs): {n} runs and {missed} missed, want {want}"
            );
            // Contention costs a run now and then, never many.
            prop_assert!(n + 3 >= want, "access {a}: {n} runs, want {want}");
        }
        Ok(())
    }

    #[test]
    fn slots_lost_to_contention_are_counted_missed() {
        // Found by the property above: two runs of access 0 were pushed past the hour
        // into the next slot, which then had no run, and nothing counted them.
        let cad = [
            Cadence {
                interval_ms: 15 * MIN,
                jitter_ms: 2 * MIN,
            },
            Cadence {
                interval_ms: 15 * MIN,
                jitter_ms: 2 * MIN,
            },
            Cadence {
                interval_ms: 60 * MIN,
                jitter_ms: 5 * MIN,
            },
        ];
        let start = 1_750_000_000_000;
        let runs = simulate(
            &cad,
            303_856_676_378_133_614,
            start,
            38_000,
            start + 24 * 3_600_000,
        );
        accounted(&runs, 38).expect("every slot run or counted");
    }

    #[test]
    fn a_long_outage_counts_missed_slots_and_runs_once() {
        let cad = [Cadence {
            interval_ms: 10 * MIN,
            jitter_ms: 0,
        }];
        let start = 1_750_000_000_000;
        let mut s = Scheduler::new(&cad, start, 1);
        let (_, first) = s.next_due().expect("due");
        assert!(s.take_due(first).is_some());
        // The box sleeps 55 minutes: the run planned 10 minutes after the first is
        // made now, 45 minutes late; the four planned after it are missed.
        let late = first + 55 * MIN;
        let d = s.take_due(late).expect("due after the outage");
        assert_eq!(d.at_ms, first + 10 * MIN);
        assert_eq!(d.missed, 4);
        assert!(
            s.take_due(late).is_none(),
            "one run, not a burst of catch-ups"
        );
    }

    #[test]
    fn the_phase_is_stable_for_a_seed_and_differs_between_boxes() {
        let cad = [Cadence {
            interval_ms: 60 * MIN,
            jitter_ms: 0,
        }];
        let now = 1_750_000_000_000;
        let a = Scheduler::new(&cad, now, 42).next_due();
        assert_eq!(a, Scheduler::new(&cad, now, 42).next_due());
        let distinct: std::collections::HashSet<_> = (0..20)
            .map(|seed| Scheduler::new(&cad, now, seed).next_due())
            .collect();
        assert!(distinct.len() >= 15, "boxes spread over the hour");
    }
}
