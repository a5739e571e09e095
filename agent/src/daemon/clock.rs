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
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
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
