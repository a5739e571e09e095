//! Link profiles: the emulated accesses netlab builds (rates per direction, one-way
//! delay, jitter, loss, capacity traces), and the goodput ceiling each one implies.

use crate::emulate::{PathSpec, Trace, OPPORTUNITY_BYTES};
use std::time::Duration;

/// TCP payload per full segment with a 1500-byte MTU and TCP timestamps.
pub const PAYLOAD_PER_PACKET: f64 = 1448.0;
/// Bytes tbf counts per full packet on a veth: the Ethernet header (14) + 1500 of IP.
pub const TBF_BYTES_PER_PACKET: f64 = 1514.0;

/// One agent-side link.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkSpec {
    /// Download rate shaped by tbf, bit/s; `None` leaves it unshaped (trace links).
    pub down_bps: Option<u64>,
    /// Upload rate shaped by tbf, bit/s.
    pub up_bps: Option<u64>,
    /// What the emulator does towards the agent.
    pub down: PathSpec,
    /// What the emulator does towards the responder.
    pub up: PathSpec,
    /// The emulator moves GSO super-packets (GRO on the link's veths, virtio-net
    /// headers on its TUN devices) instead of single packets: what lets it carry a
    /// gigabit on 2 cores. Only for links without random loss or a trace, whose
    /// per-packet decisions it would coarsen.
    pub offload: bool,
}

impl LinkSpec {
    /// A link shaped by tbf only, no emulator.
    pub fn shaped(down_bps: u64, up_bps: u64) -> Self {
        LinkSpec {
            down_bps: Some(down_bps),
            up_bps: Some(up_bps),
            down: PathSpec::default(),
            up: PathSpec::default(),
            offload: false,
        }
    }

    /// Whether the link needs the userspace emulator (delay, jitter, loss or a trace).
    pub fn needs_emulator(&self) -> bool {
        [&self.down, &self.up].iter().any(|p| {
            !p.delay.is_zero()
                || !p.jitter.is_zero()
                || p.loss > 0.0
                || p.trace.is_some()
                || p.rate_bps.is_some()
        })
    }

    /// Highest TCP goodput the link allows in a direction, bit/s (docs/METHODOLOGY.md,
    /// "Accuracy"): tbf counts 1514 bytes per 1448 of payload; the emulator's rate
    /// counts the IP packet plus its overhead (14, so the same); a trace delivers one
    /// packet of up to 1500 IP bytes per opportunity.
    pub fn ceiling_bps(&self, down: bool) -> Option<f64> {
        self.limit(down, PAYLOAD_PER_PACKET, OPPORTUNITY_BYTES as f64)
    }

    /// Highest IP-layer rate the link allows in a direction for IP packets of `packet`
    /// bytes (UDPST's load datagrams are 1250: 1222 payload bytes, 28 of headers),
    /// bit/s: tbf and the emulator count 14 bytes more per packet; a trace delivers one
    /// packet per opportunity.
    pub fn ip_ceiling_bps(&self, down: bool, packet: f64) -> Option<f64> {
        self.limit(down, packet, packet)
    }

    /// The rate of `carried` bytes in each IP packet of `packet` bytes the link allows:
    /// tbf counts 14 bytes more per packet ([`TBF_BYTES_PER_PACKET`] for 1500), the
    /// emulator its overhead, a trace one packet per opportunity.
    fn limit(&self, down: bool, carried: f64, packet: f64) -> Option<f64> {
        let (rate, path) = self.direction(down);
        let tbf_overhead = TBF_BYTES_PER_PACKET - OPPORTUNITY_BYTES as f64;
        let tbf = rate.map(|r| r as f64 * carried / (packet + tbf_overhead));
        let emulated = path
            .rate_bps
            .filter(|_| path.trace.is_none())
            .map(|r| r as f64 * carried / (packet + path.overhead_bytes as f64));
        let trace = path
            .trace
            .as_ref()
            .map(|(t, scale)| t.mean_bps(*scale) * carried / OPPORTUNITY_BYTES as f64);
        [tbf, emulated, trace]
            .into_iter()
            .flatten()
            .reduce(f64::min)
    }

    /// Configured rate of a direction (tbf's, the emulator's, or the trace's mean),
    /// bit/s.
    pub fn rate_bps(&self, down: bool) -> Option<f64> {
        let (rate, path) = self.direction(down);
        rate.map(|r| r as f64)
            .or_else(|| path.rate_bps.map(|r| r as f64))
            .or_else(|| path.trace.as_ref().map(|(t, s)| t.mean_bps(*s)))
    }

    fn direction(&self, down: bool) -> (Option<u64>, &PathSpec) {
        if down {
            (self.down_bps, &self.down)
        } else {
            (self.up_bps, &self.up)
        }
    }
}

/// Names of the built-in profiles, in benchmark order.
pub const PROFILES: [&str; 6] = [
    "ftth-1g",
    "ftth-2g5",
    "4g-150",
    "4g-lossy",
    "wifi-300",
    "lte-trace",
];

/// Gigabit profiles with a real round-trip time, shaped by the emulator itself; run by
/// `sonde-netlab accuracy` after the default ones (docs/METHODOLOGY.md §6.1).
pub const FAR_PROFILES: [&str; 3] = ["ftth-1g-20ms", "ftth-1g-40ms", "ftth-2g5-5ms"];

/// Profiles for measuring netlab itself, not benchmarked.
pub const TOOL_PROFILES: [&str; 1] = ["emu-40ms"];

/// The same 100/20 Mb/s line with a 20 ms round trip behind a shallow queue (10 ms at
/// its rate) and behind a deep one (500 ms, bufferbloat): what responsiveness (RPM)
/// tells apart and throughput does not (docs/METHODOLOGY.md §11).
pub const RPM_PROFILES: [&str; 2] = ["rpm-shallow", "rpm-bufferbloat"];

/// Every built-in profile's name: benchmark, far and tool profiles.
pub fn known() -> Vec<&'static str> {
    PROFILES
        .iter()
        .chain(FAR_PROFILES.iter())
        .chain(TOOL_PROFILES.iter())
        .chain(RPM_PROFILES.iter())
        .copied()
        .collect()
}

/// A link whose rate, queue and delay all live in the emulator, moving GSO
/// super-packets: `down`/`up` bit/s, `rtt` split evenly between the directions, and a
/// drop-tail queue of 50 ms at each rate (tbf's limit on the other profiles).
pub fn far(down: u64, up: u64, rtt: Duration) -> LinkSpec {
    queued(down, up, rtt, Duration::from_millis(50))
}

/// Like [`far`], with a drop-tail queue of `queue` at each direction's rate.
pub fn queued(down: u64, up: u64, rtt: Duration, queue: Duration) -> LinkSpec {
    let path = |rate: u64| PathSpec {
        delay: rtt / 2,
        rate_bps: Some(rate),
        queue_bytes: (rate as f64 / 8.0 * queue.as_secs_f64()) as usize,
        ..PathSpec::default()
    };
    LinkSpec {
        down_bps: None,
        up_bps: None,
        down: path(down),
        up: path(up),
        offload: true,
    }
}

fn delayed(one_way: Duration, jitter: Duration, loss: f64) -> PathSpec {
    PathSpec {
        delay: one_way,
        jitter,
        loss,
        ..PathSpec::default()
    }
}

/// A built-in profile. `trace` feeds both directions of `lte-trace` (every packet, ACKs
/// included, takes one delivery opportunity, as in mahimahi); without one, a synthetic
/// LTE-like trace is used.
pub fn builtin(name: &str, trace: Option<(Trace, f64)>) -> Option<LinkSpec> {
    let ms = Duration::from_millis;
    let us = Duration::from_micros;
    let link = |down: u64, up: u64, one_way: Duration, jitter: Duration, loss: f64| LinkSpec {
        down_bps: Some(down),
        up_bps: Some(up),
        down: delayed(one_way, jitter, loss),
        up: delayed(one_way, jitter, loss),
        offload: false,
    };
    Some(match name {
        // FTTH profiles are shaped by tbf alone: the userspace emulator cannot carry
        // multi-gigabit rates on 2 cores, so their RTT is the veth path's (≈ 0.1 ms)
        // rather than ~2 ms; see docs/METHODOLOGY.md §6.
        "ftth-1g" => LinkSpec::shaped(1_000_000_000, 500_000_000),
        "ftth-2g5" => LinkSpec::shaped(2_500_000_000, 1_000_000_000),
        "4g-150" => link(150_000_000, 50_000_000, ms(20), Duration::ZERO, 0.0),
        "4g-lossy" => link(150_000_000, 50_000_000, ms(25), Duration::ZERO, 0.005),
        "wifi-300" => link(300_000_000, 300_000_000, ms(2), us(1500), 0.0),
        "ftth-1g-20ms" => far(1_000_000_000, 500_000_000, ms(20)),
        "ftth-1g-40ms" => far(1_000_000_000, 500_000_000, ms(40)),
        "ftth-2g5-5ms" => far(2_500_000_000, 1_000_000_000, ms(5)),
        "rpm-shallow" => queued(100_000_000, 20_000_000, ms(20), ms(10)),
        "rpm-bufferbloat" => queued(100_000_000, 20_000_000, ms(20), ms(500)),
        // Not a benchmark profile: no shaping, 40 ms RTT, to measure what the
        // emulator itself can carry.
        "emu-40ms" => LinkSpec {
            down_bps: None,
            up_bps: None,
            down: delayed(ms(20), Duration::ZERO, 0.0),
            up: delayed(ms(20), Duration::ZERO, 0.0),
            offload: false,
        },
        "lte-trace" => {
            let (t, scale) = trace.unwrap_or_else(|| (synthetic_lte(), 1.0));
            LinkSpec {
                down_bps: None,
                up_bps: None,
                down: PathSpec {
                    delay: ms(20),
                    trace: Some((t.clone(), scale)),
                    ..PathSpec::default()
                },
                up: PathSpec {
                    delay: ms(20),
                    trace: Some((t, scale)),
                    ..PathSpec::default()
                },
                offload: false,
            }
        }
        _ => return None,
    })
}

/// A deterministic LTE-like capacity trace: capacity changing every 200 ms along a
/// bounded random walk between 20 and 120 Mb/s, with a 2 s period so that every test of
/// a few seconds sees the trace's mean (the ceiling the benchmark compares with).
pub fn synthetic_lte() -> Trace {
    use rand::{rngs::SmallRng, Rng, SeedableRng};
    let mut rng = SmallRng::seed_from_u64(0x5017_de17);
    let mut offsets_ms = Vec::new();
    let mut mbps: f64 = 70.0;
    let mut credit = 0.0;
    for step in 0..10u64 {
        mbps = (mbps + rng.random_range(-15.0..15.0)).clamp(20.0, 120.0);
        let per_ms = mbps * 1e6 / 8.0 / OPPORTUNITY_BYTES as f64 / 1000.0;
        for ms in 0..200u64 {
            credit += per_ms;
            while credit >= 1.0 {
                offsets_ms.push(step * 200 + ms + 1);
                credit -= 1.0;
            }
        }
    }
    Trace { offsets_ms }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_count_what_tbf_counts_per_packet() {
        let l = LinkSpec::shaped(150_000_000, 50_000_000);
        // TCP: 1448 payload bytes per 1514 counted; UDPST: 1250 IP bytes per 1264.
        assert!((l.ceiling_bps(true).expect("rate") - 150e6 * 1448.0 / 1514.0).abs() < 1e-3);
        let ip = l.ip_ceiling_bps(false, 1250.0).expect("rate");
        assert!((ip - 50e6 * 1250.0 / 1264.0).abs() < 1e-3);
        let emu = builtin("ftth-1g-40ms", None).expect("profile");
        let (tcp, udp) = (
            emu.ceiling_bps(true).expect("rate"),
            emu.ip_ceiling_bps(true, 1250.0).expect("rate"),
        );
        assert!(udp > tcp, "{udp} {tcp}");
    }

    #[test]
    fn every_named_profile_exists_and_unknown_ones_do_not() {
        for p in known() {
            assert!(builtin(p, None).is_some(), "{p}");
        }
        assert!(builtin("5g-mmwave", None).is_none());
    }

    #[test]
    fn ceilings_follow_tbf_accounting() {
        let l = builtin("ftth-1g", None).expect("profile");
        let c = l.ceiling_bps(true).expect("shaped");
        assert!((c - 1e9 * 1448.0 / 1514.0).abs() < 1.0);
        assert!(!l.needs_emulator());
        let l = builtin("4g-150", None).expect("profile");
        assert!(l.needs_emulator());
        assert!((l.ceiling_bps(false).expect("shaped") - 50e6 * 1448.0 / 1514.0).abs() < 1.0);
    }

    #[test]
    fn synthetic_trace_is_lte_like() {
        let t = synthetic_lte();
        assert_eq!(t.period_ms(), 2_000);
        let mean = t.mean_bps(1.0);
        assert!((20e6..120e6).contains(&mean), "{mean}");
        assert_eq!(
            Trace::parse(
                &t.offsets_ms
                    .iter()
                    .map(|o| format!("{o}\n"))
                    .collect::<String>()
            ),
            Ok(t)
        );
    }
}
