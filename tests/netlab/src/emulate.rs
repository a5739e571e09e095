//! The link emulator's logic for one direction, without I/O: random loss, a bottleneck
//! (a fixed rate behind a drop-tail queue, or a mahimahi capacity trace) and a FIFO
//! delay line with bounded jitter. Time is passed in as nanoseconds since the emulator
//! started.

use rand::{rngs::SmallRng, Rng, SeedableRng};
use std::collections::VecDeque;
use std::time::Duration;

/// Bytes one mahimahi delivery opportunity can carry.
pub const OPPORTUNITY_BYTES: usize = 1500;

/// A mahimahi packet-delivery trace: each entry is a millisecond offset giving one
/// opportunity to deliver a packet of up to [`OPPORTUNITY_BYTES`]; the trace repeats
/// with period = its last offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// Offsets in milliseconds, non-decreasing.
    pub offsets_ms: Vec<u64>,
}

/// Why a trace file is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TraceError {
    /// A line is not a non-negative integer.
    #[error("line {line}: {text:?} is not a millisecond offset")]
    NotANumber {
        /// 1-based line number.
        line: usize,
        /// The offending text.
        text: String,
    },
    /// Offsets go backwards.
    #[error("line {line}: offset {offset} ms is before the previous line's {previous} ms")]
    Backwards {
        /// 1-based line number.
        line: usize,
        /// The offset.
        offset: u64,
        /// The previous offset.
        previous: u64,
    },
    /// Nothing usable.
    #[error("the trace has no delivery opportunity after 0 ms (it needs a positive period)")]
    Empty,
}

impl Trace {
    /// Parses mahimahi text: one integer millisecond offset per line; blank lines are
    /// ignored.
    pub fn parse(text: &str) -> Result<Trace, TraceError> {
        let mut offsets_ms = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let t = raw.trim();
            if t.is_empty() {
                continue;
            }
            let offset: u64 = t.parse().map_err(|_| TraceError::NotANumber {
                line: i + 1,
                text: t.chars().take(40).collect(),
            })?;
            if let Some(&previous) = offsets_ms.last() {
                if offset < previous {
                    return Err(TraceError::Backwards {
                        line: i + 1,
                        offset,
                        previous,
                    });
                }
            }
            offsets_ms.push(offset);
        }
        if offsets_ms.last().copied().unwrap_or(0) == 0 {
            return Err(TraceError::Empty);
        }
        Ok(Trace { offsets_ms })
    }

    /// Period of the trace, milliseconds.
    pub fn period_ms(&self) -> u64 {
        self.offsets_ms.last().copied().unwrap_or(1)
    }

    /// Mean capacity of the trace, bit/s, at `scale`.
    pub fn mean_bps(&self, scale: f64) -> f64 {
        self.offsets_ms.len() as f64 * OPPORTUNITY_BYTES as f64 * 8.0 * scale
            / (self.period_ms() as f64 / 1000.0)
    }
}

/// Bytes of the virtio-net header TUN puts before each packet when opened with
/// IFF_VNET_HDR (`struct virtio_net_hdr`).
pub const VNET_HDR_LEN: usize = 10;

/// Wire bytes of a frame read from TUN with a virtio-net header in front: an ordinary
/// packet counts its IP length plus `overhead`; a GSO packet (a TCP super-packet the
/// kernel's GRO built) counts every segment it stands for, each with its IP and TCP
/// headers plus `overhead`, exactly as a link would carry them once cut.
pub fn wire_bytes(frame: &[u8], overhead: u64) -> u64 {
    let Some(packet) = frame.get(VNET_HDR_LEN..) else {
        return frame.len() as u64 + overhead;
    };
    let plain = packet.len() as u64 + overhead;
    let gso_type = frame[1] & 0x7f;
    let gso_size = u16::from_le_bytes([frame[4], frame[5]]) as u64;
    if gso_type == 0 || gso_size == 0 {
        return plain;
    }
    let ip_header = match packet.first().map(|b| b >> 4) {
        Some(4) => ((packet[0] & 0x0f) as usize) * 4,
        Some(6) => 40,
        _ => return plain,
    };
    let l4_header = match gso_type {
        // TCPv4, TCPv6: the data offset of the TCP header.
        1 | 4 => match packet.get(ip_header + 12) {
            Some(b) => ((b >> 4) as usize) * 4,
            None => return plain,
        },
        // UFO, UDP_L4: an 8-byte UDP header.
        3 | 5 => 8,
        _ => return plain,
    };
    let headers = (ip_header + l4_header) as u64;
    let Some(payload) = (packet.len() as u64).checked_sub(headers) else {
        return plain;
    };
    let segments = payload.div_ceil(gso_size).max(1);
    payload + segments * (headers + overhead)
}

/// What one direction of the link does to packets.
#[derive(Debug, Clone, PartialEq)]
pub struct PathSpec {
    /// One-way delay.
    pub delay: Duration,
    /// Each packet's delay varies uniformly within ±jitter, never reordering.
    pub jitter: Duration,
    /// Probability of dropping each packet.
    pub loss: f64,
    /// Trace-driven capacity, with its rate scale.
    pub trace: Option<(Trace, f64)>,
    /// Fixed capacity, bit/s: packets leave the queue back to back at this rate, each
    /// counted as its wire bytes (see [`wire_bytes`]). Ignored when a trace is set.
    pub rate_bps: Option<u64>,
    /// Bytes of framing counted per packet at `rate_bps` beyond the IP packet: 14, an
    /// Ethernet header, counts exactly what tbf counts on a veth.
    pub overhead_bytes: u64,
    /// Bottleneck queue (trace or rate), bytes; drop-tail beyond. For a rate the bytes
    /// are wire bytes.
    pub queue_bytes: usize,
}

impl Default for PathSpec {
    fn default() -> Self {
        PathSpec {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            trace: None,
            rate_bps: None,
            overhead_bytes: 14,
            queue_bytes: 1_500_000,
        }
    }
}

/// Counters of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathStats {
    /// Packets received.
    pub received: u64,
    /// Packets dropped by random loss.
    pub lost: u64,
    /// Packets dropped because the bottleneck queue was full.
    pub overflowed: u64,
    /// Packets delivered.
    pub delivered: u64,
    /// Wire bytes a rate bottleneck accepted (so sent, or about to be).
    pub wire_bytes: u64,
}

/// One direction of the emulated link.
#[derive(Debug)]
pub struct Path {
    spec: PathSpec,
    rng: SmallRng,
    /// Waiting for a trace opportunity.
    bottleneck: VecDeque<Vec<u8>>,
    bottleneck_bytes: usize,
    /// Index of the next opportunity, counted over repetitions of the trace.
    next_opportunity: u64,
    /// `(due_ns, packet)` in due order.
    line: VecDeque<(u64, Vec<u8>)>,
    last_due: u64,
    /// When the rate bottleneck finishes sending what it holds, ns.
    busy_until: u64,
    /// Counters.
    pub stats: PathStats,
}

impl Path {
    /// A path with this spec and random seed.
    pub fn new(spec: PathSpec, seed: u64) -> Self {
        Path {
            spec,
            rng: SmallRng::seed_from_u64(seed),
            bottleneck: VecDeque::new(),
            bottleneck_bytes: 0,
            next_opportunity: 0,
            line: VecDeque::new(),
            last_due: 0,
            busy_until: 0,
            stats: PathStats::default(),
        }
    }

    /// Framing bytes counted per packet at the rate.
    pub fn overhead_bytes(&self) -> u64 {
        self.spec.overhead_bytes
    }

    fn opportunity_ns(&self, k: u64) -> u64 {
        let Some((trace, scale)) = &self.spec.trace else {
            return u64::MAX;
        };
        let n = trace.offsets_ms.len() as u64;
        let cycle = k / n;
        let ms = cycle * trace.period_ms() + trace.offsets_ms[(k % n) as usize];
        (ms as f64 * 1e6 / scale) as u64
    }

    /// A packet (an IP packet, no other header) arrives at `now`.
    pub fn push(&mut self, now: u64, packet: Vec<u8>) {
        let wire = packet.len() as u64 + self.spec.overhead_bytes;
        self.push_sized(now, packet, wire);
    }

    /// A packet arrives at `now` that a rate bottleneck counts as `wire` bytes (a GSO
    /// packet counts as the segments it stands for).
    pub fn push_sized(&mut self, now: u64, packet: Vec<u8>, wire: u64) {
        self.stats.received += 1;
        if self.spec.loss > 0.0 && self.rng.random::<f64>() < self.spec.loss {
            self.stats.lost += 1;
            return;
        }
        if self.spec.trace.is_some() {
            if self.bottleneck.is_empty() {
                // Opportunities that passed while nothing waited are gone.
                while self.opportunity_ns(self.next_opportunity) < now {
                    self.skip_idle_opportunities(now);
                }
            }
            if self.bottleneck_bytes + packet.len() > self.spec.queue_bytes {
                self.stats.overflowed += 1;
                return;
            }
            self.bottleneck_bytes += packet.len();
            self.bottleneck.push_back(packet);
        } else if let Some(rate) = self.spec.rate_bps.filter(|r| *r > 0) {
            // A serialiser behind a drop-tail queue: the backlog is what is still to be
            // sent at `now`, in wire bytes.
            let start = self.busy_until.max(now);
            let backlog = ((start - now) as u128 * rate as u128 / 8_000_000_000) as u64;
            if backlog + wire > self.spec.queue_bytes as u64 {
                self.stats.overflowed += 1;
                return;
            }
            self.busy_until = start + (wire as u128 * 8_000_000_000 / rate as u128) as u64;
            self.stats.wire_bytes += wire;
            self.delay(self.busy_until, packet);
        } else {
            self.delay(now, packet);
        }
    }

    fn skip_idle_opportunities(&mut self, now: u64) {
        // Jump whole periods first, then single opportunities.
        if let Some((trace, _)) = &self.spec.trace {
            let n = trace.offsets_ms.len() as u64;
            while self.opportunity_ns(self.next_opportunity + n) < now {
                self.next_opportunity += n;
            }
        }
        self.next_opportunity += 1;
    }

    fn delay(&mut self, at: u64, packet: Vec<u8>) {
        let base = at + self.spec.delay.as_nanos() as u64;
        let j = self.spec.jitter.as_nanos() as i64;
        let due = if j > 0 {
            let offset = self.rng.random_range(-j..=j);
            (base as i64 + offset).max(at as i64) as u64
        } else {
            base
        };
        // FIFO: jitter never reorders packets.
        let due = due.max(self.last_due);
        self.last_due = due;
        self.line.push_back((due, packet));
    }

    /// Moves time to `now`: delivers what is due into `out`.
    pub fn advance(&mut self, now: u64, out: &mut Vec<Vec<u8>>) {
        while !self.bottleneck.is_empty() {
            let at = self.opportunity_ns(self.next_opportunity);
            if at > now {
                break;
            }
            self.next_opportunity += 1;
            if let Some(p) = self.bottleneck.pop_front() {
                self.bottleneck_bytes -= p.len();
                self.delay(at, p);
            }
        }
        while self.line.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, p)) = self.line.pop_front() {
                self.stats.delivered += 1;
                out.push(p);
            }
        }
    }

    /// When something next becomes due, if anything waits.
    pub fn next_wake(&self) -> Option<u64> {
        let line = self.line.front().map(|(d, _)| *d);
        let trace =
            (!self.bottleneck.is_empty()).then(|| self.opportunity_ns(self.next_opportunity));
        match (line, trace) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn pkt(n: u8) -> Vec<u8> {
        vec![n; 1500]
    }

    #[test]
    fn delay_holds_packets_for_the_one_way_delay() {
        let mut p = Path::new(
            PathSpec {
                delay: Duration::from_millis(20),
                ..PathSpec::default()
            },
            1,
        );
        p.push(0, pkt(1));
        p.push(5 * MS, pkt(2));
        let mut out = Vec::new();
        p.advance(19 * MS, &mut out);
        assert!(out.is_empty());
        assert_eq!(p.next_wake(), Some(20 * MS));
        p.advance(20 * MS, &mut out);
        assert_eq!(out, vec![pkt(1)]);
        p.advance(25 * MS, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(p.next_wake(), None);
    }

    #[test]
    fn jitter_stays_within_bounds_and_never_reorders() {
        let spec = PathSpec {
            delay: Duration::from_millis(2),
            jitter: Duration::from_micros(1500),
            ..PathSpec::default()
        };
        let mut p = Path::new(spec, 7);
        for i in 0..1000u64 {
            p.push(i * MS / 10, (i as u32).to_be_bytes().to_vec());
        }
        let mut out = Vec::new();
        let mut last = 0;
        let mut t = 0;
        while t < 200 * MS {
            p.advance(t, &mut out);
            t += MS / 20;
        }
        for pkt in &out {
            let i = u32::from_be_bytes([pkt[0], pkt[1], pkt[2], pkt[3]]);
            assert!(i >= last, "reordered");
            last = i;
        }
        assert_eq!(out.len(), 1000);
        // Delays fall in [0.5, 3.5] ms: check through the wake times of a fresh path.
        let mut q = Path::new(
            PathSpec {
                delay: Duration::from_millis(2),
                jitter: Duration::from_micros(1500),
                ..PathSpec::default()
            },
            9,
        );
        let mut seen = Vec::new();
        for i in 0..500u64 {
            let now = i * 10 * MS;
            q.push(now, pkt(0));
            let due = q.next_wake().expect("queued");
            seen.push(due - now);
            q.advance(due, &mut Vec::new());
        }
        assert!(
            seen.iter().all(|&d| (MS / 2..=7 * MS / 2).contains(&d)),
            "{seen:?}"
        );
        let spread = seen.iter().max().unwrap_or(&0) - seen.iter().min().unwrap_or(&0);
        assert!(spread > 2 * MS, "jitter is used: {spread}");
    }

    #[test]
    fn loss_rate_is_the_configured_probability() {
        let mut p = Path::new(
            PathSpec {
                loss: 0.02,
                ..PathSpec::default()
            },
            42,
        );
        for i in 0..100_000 {
            p.push(i, pkt(0));
        }
        let rate = p.stats.lost as f64 / 100_000.0;
        // 2 % ± 5 standard deviations of a binomial(100000, 0.02).
        assert!(
            (rate - 0.02).abs() < 5.0 * (0.02f64 * 0.98 / 100_000.0).sqrt(),
            "{rate}"
        );
    }

    #[test]
    fn trace_paces_deliveries_and_repeats() {
        let trace = Trace::parse("1\n1\n3\n4\n").expect("trace");
        assert_eq!(trace.period_ms(), 4);
        let spec = PathSpec {
            trace: Some((trace, 1.0)),
            ..PathSpec::default()
        };
        let mut p = Path::new(spec, 1);
        for i in 0..10 {
            p.push(0, pkt(i));
        }
        let mut out = Vec::new();
        p.advance(MS, &mut out);
        assert_eq!(out.len(), 2, "two opportunities at 1 ms");
        p.advance(3 * MS, &mut out);
        assert_eq!(out.len(), 3);
        p.advance(4 * MS, &mut out);
        assert_eq!(out.len(), 4);
        // Next period: 5, 5, 7, 8 ms.
        p.advance(5 * MS, &mut out);
        assert_eq!(out.len(), 6);
        assert_eq!(p.next_wake(), Some(7 * MS));
    }

    #[test]
    fn trace_scale_multiplies_the_rate_and_idle_opportunities_are_lost() {
        let trace = Trace::parse("1\n2\n").expect("trace");
        assert_eq!(trace.mean_bps(1.0), 2.0 * 1500.0 * 8.0 / 0.002);
        let spec = PathSpec {
            trace: Some((trace, 2.0)),
            ..PathSpec::default()
        };
        let mut p = Path::new(spec, 1);
        // Idle for 1 s: the opportunities of that second cannot be banked.
        p.push(1000 * MS, pkt(1));
        p.push(1000 * MS, pkt(2));
        p.push(1000 * MS, pkt(3));
        let mut out = Vec::new();
        p.advance(1000 * MS, &mut out);
        assert!(
            out.len() <= 1,
            "no burst from banked opportunities: {}",
            out.len()
        );
        p.advance(1000 * MS + 2 * MS, &mut out);
        assert_eq!(out.len(), 3, "scale 2: an opportunity every 0.5 ms");
    }

    #[test]
    fn bad_traces_name_the_line() {
        assert_eq!(
            Trace::parse("1\n2\nfoo\n"),
            Err(TraceError::NotANumber {
                line: 3,
                text: "foo".into()
            })
        );
        assert_eq!(
            Trace::parse("5\n3\n"),
            Err(TraceError::Backwards {
                line: 2,
                offset: 3,
                previous: 5
            })
        );
        assert_eq!(Trace::parse("\n0\n"), Err(TraceError::Empty));
        assert_eq!(Trace::parse(""), Err(TraceError::Empty));
    }

    /// A TCP/IPv4 frame behind a virtio-net header: `payload` bytes, GSO size `gso`.
    fn gso_frame(gso: u16, payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; VNET_HDR_LEN + 20 + 32 + payload];
        f[1] = if gso > 0 { 1 } else { 0 };
        f[4..6].copy_from_slice(&gso.to_le_bytes());
        f[VNET_HDR_LEN] = 0x45;
        f[VNET_HDR_LEN + 9] = 6;
        f[VNET_HDR_LEN + 20 + 12] = 8 << 4;
        f
    }

    #[test]
    fn wire_bytes_count_every_segment_of_a_gso_packet() {
        // 10 full segments and one of 100 bytes: 11 × (52 header + 14 Ethernet).
        assert_eq!(wire_bytes(&gso_frame(1448, 14_580), 14), 14_580 + 11 * 66);
        // A full-size segment counts 1514 bytes, as tbf counts it on a veth.
        assert_eq!(wire_bytes(&gso_frame(1448, 1448), 14), 1514);
        assert_eq!(wire_bytes(&gso_frame(0, 1448), 14), 1514);
        // A pure ACK (no payload) is one packet.
        assert_eq!(wire_bytes(&gso_frame(1448, 0), 14), 66);
        // Garbage never panics and counts as one packet.
        assert_eq!(wire_bytes(&[0, 1, 0, 0, 200, 5], 14), 20);
        assert_eq!(wire_bytes(&[0, 1, 0, 0, 200, 5, 0, 0, 0, 0, 0x45], 14), 15);
    }

    #[test]
    fn rate_bottleneck_serialises_at_the_rate_and_drops_the_tail() {
        // 8 Mb/s is one byte per microsecond: a 986-byte packet + 14 takes 1 ms.
        let spec = PathSpec {
            rate_bps: Some(8_000_000),
            queue_bytes: 3000,
            delay: Duration::from_millis(10),
            ..PathSpec::default()
        };
        let mut p = Path::new(spec, 1);
        for i in 0..5 {
            p.push(0, vec![i; 986]);
        }
        assert_eq!(p.stats.overflowed, 2, "three fit in 3000 wire bytes");
        let mut out = Vec::new();
        p.advance(11 * MS - 1, &mut out);
        assert!(out.is_empty());
        p.advance(11 * MS, &mut out);
        assert_eq!(out.len(), 1, "sent by 1 ms, then 10 ms of delay");
        assert_eq!(p.next_wake(), Some(12 * MS));
        p.advance(13 * MS, &mut out);
        assert_eq!(out.len(), 3);
        // Room again once the queue drained: a packet at 3 ms leaves at 4 ms.
        p.push(3 * MS, vec![9; 986]);
        assert_eq!(p.next_wake(), Some(14 * MS));
    }

    #[test]
    fn rate_bottleneck_carries_its_rate_over_a_second_of_overload() {
        // 100 Mb/s offered 200 Mb/s of 1500-byte packets for a second.
        let spec = PathSpec {
            rate_bps: Some(100_000_000),
            queue_bytes: 625_000,
            ..PathSpec::default()
        };
        let mut p = Path::new(spec, 1);
        let gap = 1514 * 8 * 1_000_000_000 / 200_000_000;
        let mut out = Vec::new();
        let mut t = 0;
        while t < 1_000 * MS {
            p.push(t, vec![0; 1500]);
            p.advance(t, &mut out);
            t += gap;
        }
        let carried = out.len() as f64 * 1514.0 * 8.0;
        assert!(
            (carried / 100e6 - 1.0).abs() < 0.002,
            "carried {carried} bit in 1 s"
        );
        assert!(p.stats.overflowed > 0);
    }

    #[test]
    fn bottleneck_queue_drops_tail_when_full() {
        let trace = Trace::parse("1000\n").expect("trace");
        let spec = PathSpec {
            trace: Some((trace, 1.0)),
            queue_bytes: 3000,
            ..PathSpec::default()
        };
        let mut p = Path::new(spec, 1);
        for i in 0..5 {
            p.push(0, pkt(i));
        }
        assert_eq!(p.stats.overflowed, 3);
    }
}
