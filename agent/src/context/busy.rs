//! Busy line, busy box: the household's own traffic on the access, and the box's CPU.
//!
//! Before a test the agent samples the interface's byte counters and the CPU over one
//! second; while other traffic or the CPU is above its threshold it defers and checks
//! again, a few times, then skips the test with the reason `busy` (METHODOLOGY.md §5).
//! Around the test it reads them again: the bytes the interface carried beyond the
//! test's own are the cross-traffic, and the CPU's busy share says whether the box
//! could keep up.

use std::path::Path;
use std::time::Duration;

/// Share of a test's IP bytes the return direction's TCP acknowledgements add on the
/// interface (one ACK of ~66 bytes per two full segments is ~2.3 %).
pub const ACK_RATIO: f64 = 0.03;
/// CPU busy share over a test above which the result is flagged `cpu_limited`.
pub const CPU_LIMITED: f64 = 0.95;

/// Received and transmitted bytes of an interface since it came up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Bytes received.
    pub rx: u64,
    /// Bytes sent.
    pub tx: u64,
}

impl Counters {
    /// Reads `/sys/class/net/IF/statistics`.
    pub fn read(interface: &str) -> std::io::Result<Counters> {
        let dir = Path::new("/sys/class/net")
            .join(interface)
            .join("statistics");
        let read = |f: &str| -> std::io::Result<u64> {
            std::fs::read_to_string(dir.join(f))?
                .trim()
                .parse()
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        };
        Ok(Counters {
            rx: read("rx_bytes")?,
            tx: read("tx_bytes")?,
        })
    }

    /// Bytes both ways since `before`.
    pub fn since(&self, before: &Counters) -> u64 {
        self.rx.saturating_sub(before.rx) + self.tx.saturating_sub(before.tx)
    }
}

/// Whether `interface` is a loopback (ARPHRD_LOOPBACK, type 772).
pub fn is_loopback(interface: &str) -> bool {
    std::fs::read_to_string(Path::new("/sys/class/net").join(interface).join("type"))
        .is_ok_and(|t| t.trim() == "772")
}

/// Busy and total CPU time of the box (all CPUs), in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cpu {
    /// Ticks not idle.
    pub busy: u64,
    /// All ticks.
    pub total: u64,
}

impl Cpu {
    /// Parses the `cpu` line of `/proc/stat`.
    pub fn parse(stat: &str) -> Option<Cpu> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        if v.len() < 4 {
            return None;
        }
        // user nice system idle iowait irq softirq steal (guest time is in user).
        let total: u64 = v.iter().take(8).sum();
        let idle = v[3] + v.get(4).copied().unwrap_or(0);
        Some(Cpu {
            busy: total - idle,
            total,
        })
    }

    /// Reads `/proc/stat`.
    pub fn read() -> Option<Cpu> {
        Cpu::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// Busy share since `before` (0 to 1).
    pub fn busy_since(&self, before: &Cpu) -> Option<f64> {
        let total = self.total.checked_sub(before.total)?;
        let busy = self.busy.checked_sub(before.busy)?;
        (total > 0).then(|| busy as f64 / total as f64)
    }
}

/// What a pre-test sample saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    /// Other traffic on the interface, bytes/s, both ways.
    pub bytes_per_s: f64,
    /// The box's CPU busy share.
    pub cpu: Option<f64>,
}

/// Samples the interface and the CPU over `window`. `None` when the interface's
/// counters cannot be read (the test then runs and reports the interface's problem).
pub async fn sample(interface: &str, window: Duration) -> Option<Load> {
    let (c0, p0) = (Counters::read(interface).ok()?, Cpu::read());
    let started = std::time::Instant::now();
    tokio::time::sleep(window).await;
    let (c1, p1) = (Counters::read(interface).ok()?, Cpu::read());
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    Some(Load {
        bytes_per_s: c1.since(&c0) as f64 / secs,
        cpu: match (p0, p1) {
            (Some(a), Some(b)) => b.busy_since(&a),
            _ => None,
        },
    })
}

/// Why a test should wait, if it should: other traffic above `threshold` bytes/s or
/// the CPU above `cpu_limit`.
pub fn verdict(load: &Load, threshold: Option<f64>, cpu_limit: Option<f64>) -> Option<String> {
    if let Some(t) = threshold.filter(|t| load.bytes_per_s > *t) {
        return Some(format!(
            "line busy: {:.1} kB/s of other traffic (threshold {:.1} kB/s)",
            load.bytes_per_s / 1e3,
            t / 1e3
        ));
    }
    if let (Some(limit), Some(cpu)) = (cpu_limit, load.cpu) {
        if cpu > limit {
            return Some(format!(
                "box busy: CPU {:.0} % (threshold {:.0} %)",
                cpu * 100.0,
                limit * 100.0
            ));
        }
    }
    None
}

/// Bytes the interface carried during a test beyond the test's own: `carried` minus
/// the test's IP bytes, their acknowledgements and its fixed part.
pub fn cross_traffic(carried: u64, test_ip_bytes: f64, fixed: u64) -> u64 {
    let own = test_ip_bytes * (1.0 + ACK_RATIO) + fixed as f64;
    (carried as f64 - own).max(0.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_busy_share_from_proc_stat() {
        // A real /proc/stat line pair, one second apart on a 2-core box.
        let a = Cpu::parse("cpu  1000 10 500 8000 100 0 20 0 0 0\ncpu0 1 2 3 4\n").expect("a");
        let b = Cpu::parse("cpu  1100 10 540 8050 110 0 30 0 0 0\n").expect("b");
        // busy: +100 user +40 system +10 softirq = 150; total: 150 + 50 idle + 10 iowait.
        assert_eq!(b.busy_since(&a), Some(150.0 / 210.0));
        assert_eq!(Cpu::parse("intr 1 2 3"), None);
    }

    #[test]
    fn a_busy_line_or_box_is_named_with_its_figure() {
        let quiet = Load {
            bytes_per_s: 3_000.0,
            cpu: Some(0.05),
        };
        assert_eq!(verdict(&quiet, Some(25_000.0), Some(0.3)), None);
        let line = Load {
            bytes_per_s: 2_500_000.0,
            ..quiet
        };
        assert_eq!(
            verdict(&line, Some(25_000.0), Some(0.3)).as_deref(),
            Some("line busy: 2500.0 kB/s of other traffic (threshold 25.0 kB/s)")
        );
        assert_eq!(verdict(&line, None, Some(0.3)), None, "threshold off");
        let cpu = Load {
            cpu: Some(0.8),
            ..quiet
        };
        assert!(verdict(&cpu, Some(25_000.0), Some(0.3))
            .is_some_and(|m| m.starts_with("box busy: CPU 80 %")));
        // Cross-traffic: what the interface carried beyond the test's bytes and ACKs.
        assert_eq!(cross_traffic(1_000, 2_000.0, 0), 0);
        assert_eq!(
            cross_traffic(200_000_000, 100_000_000.0, 1_000_000),
            96_000_000
        );
    }

    #[test]
    fn counters_of_the_loopback_interface_are_read() {
        let c = Counters::read("lo").expect("lo counters");
        assert!(Counters::read("nosuchif0").is_err());
        let later = Counters {
            rx: c.rx + 10,
            tx: c.tx + 5,
        };
        assert_eq!(later.since(&c), 15);
        assert!(is_loopback("lo"));
        assert!(!is_loopback("nosuchif0"));
    }
}
