//! The daemon's wall clock, injected: the system's in production, and in tests one
//! that follows tokio's clock, so a paused runtime runs a virtual day of schedule,
//! uploads and outages in seconds. Waiting is always tokio's (`sleep`, `Instant`).

use chrono::{DateTime, Utc};

/// Wall-clock time as the daemon sees it.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> DateTime<Utc>;

    /// Now, in milliseconds since the Unix epoch (what the scheduler counts in).
    fn now_ms(&self) -> u64 {
        self.now().timestamp_millis().max(0) as u64
    }

    /// Whether the clock is synchronised to a time source (NTP), when known. A box
    /// without a battery-backed clock boots at a wrong time until NTP steps it.
    fn synchronised(&self) -> Option<bool> {
        None
    }
}

/// A wall-clock step: the wall clock moved by more than this beyond what the monotonic
/// clock did between two readings.
pub const STEP: std::time::Duration = std::time::Duration::from_secs(5);

/// Watches the wall clock against the monotonic one, to tell a step (NTP setting a
/// wrong clock right, an operator) from time passing.
#[derive(Debug, Clone, Copy)]
pub struct StepWatch {
    wall_ms: i64,
    mono: tokio::time::Instant,
}

impl StepWatch {
    /// Starts watching from `clock`'s now.
    pub fn new(clock: &dyn Clock) -> StepWatch {
        StepWatch {
            wall_ms: clock.now().timestamp_millis(),
            mono: tokio::time::Instant::now(),
        }
    }

    /// The step since the last reading (ms, signed; `None` when within [`STEP`]), and
    /// starts again from now.
    pub fn check(&mut self, clock: &dyn Clock) -> Option<i64> {
        let now = StepWatch::new(clock);
        let expected = self.wall_ms + now.mono.duration_since(self.mono).as_millis() as i64;
        let step = now.wall_ms - expected;
        *self = now;
        (step.unsigned_abs() > STEP.as_millis() as u64).then_some(step)
    }
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    #[allow(unsafe_code)]
    fn synchronised(&self) -> Option<bool> {
        // adjtimex(2) with no modes only reads: the kernel's STA_UNSYNC status bit is
        // what `timedatectl` shows as "System clock synchronized".
        // SAFETY: a zeroed timex with modes 0 is a valid read-only request; the
        // kernel writes only into the struct it is given.
        let (state, t) = unsafe {
            let mut t: libc::timex = std::mem::zeroed();
            (libc::adjtimex(&mut t), t)
        };
        (state >= 0).then_some(t.status & libc::STA_UNSYNC == 0 && state != libc::TIME_ERROR)
    }
}

/// A wall clock that starts at a given time and advances with tokio's clock: under
/// `tokio::time::pause()` it advances only as virtual time does.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start: DateTime<Utc>,
    base: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading `start` now.
    pub fn starting_at(start: DateTime<Utc>) -> TokioClock {
        TokioClock {
            start,
            base: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(self.base.elapsed()).unwrap_or_default();
        self.start + elapsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock that can be stepped.
    #[derive(Debug)]
    struct Stepped(TokioClock, std::sync::atomic::AtomicI64);

    impl Clock for Stepped {
        fn now(&self) -> DateTime<Utc> {
            self.0.now()
                + chrono::Duration::milliseconds(self.1.load(std::sync::atomic::Ordering::Relaxed))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_step_is_told_from_time_passing() {
        let start = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let clock = Stepped(TokioClock::starting_at(start), Default::default());
        let mut watch = StepWatch::new(&clock);
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        assert_eq!(watch.check(&clock), None, "an hour passing is no step");
        clock
            .1
            .store(86_400_000, std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(std::time::Duration::from_secs(10)).await;
        assert_eq!(watch.check(&clock), Some(86_400_000));
        clock
            .1
            .store(86_400_000 - 3_600_000, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(watch.check(&clock), Some(-3_600_000));
        assert_eq!(watch.check(&clock), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_follows_virtual_time() {
        let start = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let clock = TokioClock::starting_at(start);
        assert_eq!(clock.now(), start);
        tokio::time::sleep(std::time::Duration::from_secs(86_400)).await;
        assert_eq!((clock.now() - start).num_seconds(), 86_400);
        assert_eq!(clock.now_ms(), 1_800_086_400_000);
    }
}
