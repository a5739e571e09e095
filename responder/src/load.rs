//! The responder's own CPU load, so agents can tell when the server, not the access,
//! was the limit: this process's CPU time (from `/proc/self/stat`) is sampled every
//! 100 ms as a share of the CPUs it may use (its cores, or its cgroup's CPU quota), and
//! the last minute is kept.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sampling interval.
pub const INTERVAL: Duration = Duration::from_millis(100);
/// History kept.
pub const KEEP: Duration = Duration::from_secs(60);
/// Clock ticks per second of `/proc` times (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// This process's user + system CPU time, seconds, from `/proc/self/stat` text.
pub fn cpu_seconds(stat: &str) -> Option<f64> {
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is the state (field 3); utime and stime are fields 14 and 15.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// Busy share of `cpus` CPUs' worth of time (a fraction under a CPU quota) over an
/// interval of `wall` in which the process used `cpu` seconds.
pub fn share_of(cpu: f64, wall: Duration, cpus: f64) -> f64 {
    let capacity = wall.as_secs_f64() * cpus;
    if capacity > 0.0 {
        (cpu / capacity).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// CPUs' worth of time this process's cgroup may use (a CFS quota, v1 or v2), when
/// one is set.
pub fn cgroup_cpus() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let read = |f: String| std::fs::read_to_string(f).ok();
        if controllers.split(',').any(|c| c == "cpu") {
            let dir = format!("/sys/fs/cgroup/cpu{path}");
            let quota: f64 = read(format!("{dir}/cpu.cfs_quota_us"))?
                .trim()
                .parse()
                .ok()?;
            let period: f64 = read(format!("{dir}/cpu.cfs_period_us"))?
                .trim()
                .parse()
                .ok()?;
            return (quota > 0.0 && period > 0.0).then(|| quota / period);
        }
        if id == "0" && controllers.is_empty() {
            let max = read(format!("/sys/fs/cgroup{path}/cpu.max"))?;
            let mut f = max.split_whitespace();
            let (quota, period) = (f.next()?, f.next()?.parse::<f64>().ok()?);
            return quota.parse::<f64>().ok().map(|q| q / period);
        }
    }
    None
}

/// Samples of the last minute: when each 100 ms window ended, and its busy share.
#[derive(Debug, Default)]
pub struct Monitor {
    samples: Mutex<VecDeque<(Instant, f64)>>,
    /// Cores this process may run on.
    pub cores: usize,
}

impl Monitor {
    /// Starts sampling on a thread of its own.
    pub fn start() -> std::sync::Arc<Monitor> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let m = std::sync::Arc::new(Monitor {
            samples: Mutex::new(VecDeque::new()),
            cores,
        });
        let weak = std::sync::Arc::downgrade(&m);
        let _ = std::thread::Builder::new()
            .name("sonde-load".into())
            .spawn(move || {
                let read = || {
                    std::fs::read_to_string("/proc/self/stat")
                        .ok()
                        .and_then(|s| cpu_seconds(&s))
                };
                let (mut t0, mut c0) = (Instant::now(), read());
                loop {
                    std::thread::sleep(INTERVAL);
                    let Some(m) = weak.upgrade() else { return };
                    let (t1, c1) = (Instant::now(), read());
                    if let (Some(a), Some(b)) = (c0, c1) {
                        // The CPUs it may use: its cores, or fewer under a CPU quota.
                        let cpus = cgroup_cpus().map_or(m.cores as f64, |q| q.min(m.cores as f64));
                        m.push(t1, share_of(b - a, t1 - t0, cpus));
                    }
                    (t0, c0) = (t1, c1);
                }
            });
        m
    }

    fn push(&self, at: Instant, busy: f64) {
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        s.push_back((at, busy));
        while s.front().is_some_and(|(t, _)| at.duration_since(*t) > KEEP) {
            s.pop_front();
        }
    }

    /// Highest busy share of the windows that ended within the last `window`.
    pub fn max_within(&self, window: Duration) -> f64 {
        let now = Instant::now();
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(t, _)| now.duration_since(*t) <= window)
            .map(|(_, b)| *b)
            .fold(0.0, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_comes_from_utime_and_stime_whatever_the_name() {
        // A real /proc/self/stat line; the command name holds a space and a ')'.
        let stat = "4242 (sonde resp)) S 1 4242 4242 0 -1 4194560 812 0 0 0 250 50 0 0 20 0 9 0 \
                    12345 1000000 500 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(cpu_seconds(stat), Some(3.0));
        assert_eq!(cpu_seconds("garbage"), None);
        // 0.19 s of CPU in 100 ms on 2 cores: 95 % busy.
        assert!((share_of(0.19, Duration::from_millis(100), 2.0) - 0.95).abs() < 1e-9);
        assert_eq!(share_of(5.0, Duration::from_millis(100), 1.0), 1.0);
        // Under a quota of a fifth of a CPU, 19 ms in 100 ms is 95 % busy.
        assert!((share_of(0.019, Duration::from_millis(100), 0.2) - 0.95).abs() < 1e-9);
    }

    #[test]
    fn the_busiest_recent_window_is_reported() {
        let m = Monitor {
            samples: Mutex::new(VecDeque::new()),
            cores: 2,
        };
        let now = Instant::now();
        m.push(now - Duration::from_secs(30), 0.99);
        m.push(now - Duration::from_secs(2), 0.40);
        m.push(now, 0.70);
        assert_eq!(m.max_within(Duration::from_secs(5)), 0.70);
        assert_eq!(m.max_within(Duration::from_secs(40)), 0.99);
    }
}
