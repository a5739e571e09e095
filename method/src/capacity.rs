//! IP-layer capacity by RFC 9097 over the UDP Speed Test Protocol (RFC 9946): the
//! receiver's accounting of load PDUs into trials and sub-intervals, as the Status PDUs
//! report it, and the figures of a test from its sub-intervals (docs/METHODOLOGY.md
//! §10). Time is passed in as nanoseconds of the wall clock, the clock the protocol's
//! timestamps carry.

use sonde_proto::udpst::{Load, SendingRate, Status, SubInterval, TestAction, NO_DELAY};

/// Sequence numbers remembered to tell a duplicate from a late datagram.
const HISTORY: usize = 32;

/// Nanoseconds of a (seconds, nanoseconds) wire timestamp.
pub fn stamp_ns((s, ns): (u32, u32)) -> i64 {
    i64::from(s) * 1_000_000_000 + i64::from(ns)
}

/// The wire timestamp of `ns` (seconds wrap as the protocol's 32 bits do).
pub fn ns_stamp(ns: i64) -> (u32, u32) {
    let s = ns.div_euclid(1_000_000_000);
    (
        (s & 0xffff_ffff) as u32,
        ns.rem_euclid(1_000_000_000) as u32,
    )
}

fn ms(ns: i64) -> i64 {
    ns.div_euclid(1_000_000)
}

/// The receiving side of one test connection: counts load PDUs, measures loss,
/// reordering, delay variation and round trips, and writes the Status PDU of each
/// trial. Behaves as OB-UDPST's receiver, so either implementation can face the other.
#[derive(Debug, Clone)]
pub struct Receiver {
    trial_ms: u32,
    sub_interval_ms: u32,
    started_ns: Option<i64>,
    last_seq: u32,
    history: [u32; HISTORY],
    history_at: usize,
    status_seq: u32,
    /// Since the last Status PDU.
    trial: Trial,
    trial_started_ns: i64,
    clock_delta_min: Option<i64>,
    rtt_min: Option<u32>,
    rtt_var_sample: Option<u32>,
    delay_min_updated: bool,
    echoed: (u32, u32),
    active: SubInterval,
    active_started_ns: Option<i64>,
    accum_ms: u32,
    saved: SubInterval,
    saved_seq: u32,
    closed: Vec<SubInterval>,
    last_load_ns: Option<i64>,
}

/// What a trial accumulates.
#[derive(Debug, Clone, Copy, Default)]
struct Trial {
    datagrams: u32,
    bytes: u32,
    loss: u32,
    ooo: u32,
    dup: u32,
    dv_min: Option<u32>,
    dv_max: u32,
    dv_sum: u32,
    dv_count: u32,
}

fn fresh_sub_interval() -> SubInterval {
    SubInterval {
        delay_var_min: NO_DELAY,
        rtt_var_min: NO_DELAY,
        ..SubInterval::default()
    }
}

impl Receiver {
    /// A receiver with the activation's trial and sub-interval lengths, starting at
    /// `now_ns` (the activation).
    pub fn new(trial_ms: u16, sub_interval_ms: u16, now_ns: i64) -> Self {
        Receiver {
            trial_ms: u32::from(trial_ms.max(1)),
            sub_interval_ms: u32::from(sub_interval_ms.max(1)),
            started_ns: None,
            last_seq: 0,
            history: [0; HISTORY],
            history_at: 0,
            status_seq: 0,
            trial: Trial::default(),
            trial_started_ns: now_ns,
            clock_delta_min: None,
            rtt_min: None,
            rtt_var_sample: None,
            delay_min_updated: false,
            echoed: (0, 0),
            active: fresh_sub_interval(),
            active_started_ns: None,
            accum_ms: 0,
            saved: SubInterval::default(),
            saved_seq: 0,
            closed: Vec::new(),
            last_load_ns: None,
        }
    }

    /// Counts a load PDU received at `now_ns`.
    pub fn on_load(&mut self, load: &Load, now_ns: i64) {
        self.started_ns.get_or_insert(now_ns);
        self.last_load_ns = Some(now_ns);
        let payload = u32::from(load.udp_payload);
        self.active.rx_datagrams += 1;
        self.active.rx_bytes += u64::from(payload);
        self.trial.datagrams += 1;
        self.trial.bytes = self.trial.bytes.wrapping_add(payload);
        let first = self.last_seq == 0;
        let seq = load.seq;
        if seq > self.last_seq {
            let lost = seq - self.last_seq - 1;
            self.trial.loss += lost;
            self.active.loss += lost;
            self.last_seq = seq;
            self.remember(seq);
        } else if self.history.contains(&seq) {
            self.trial.dup += 1;
            self.active.dup += 1;
            return;
        } else {
            // Late: it was counted lost when a later one came.
            self.trial.ooo += 1;
            self.active.ooo += 1;
            self.trial.loss = self.trial.loss.saturating_sub(1);
            self.active.loss = self.active.loss.saturating_sub(1);
            self.remember(seq);
            return;
        }
        self.round_trip(load, now_ns);
        self.one_way(load, now_ns, first);
    }

    fn remember(&mut self, seq: u32) {
        self.history[self.history_at] = seq;
        self.history_at = (self.history_at + 1) % HISTORY;
    }

    /// A load PDU echoing a new Status PDU's send time closes a round trip, less the
    /// time the sender held it.
    fn round_trip(&mut self, load: &Load, now_ns: i64) {
        if load.status_time == self.echoed || load.status_time == (0, 0) {
            return;
        }
        self.echoed = load.status_time;
        let elapsed = ms(now_ns - stamp_ns(load.status_time)).max(0) as u32;
        let held = u32::from(load.rtt_response_delay_ms);
        let rtt = elapsed.saturating_sub(held);
        if self.rtt_min.is_none_or(|m| rtt < m) {
            self.rtt_min = Some(rtt);
            self.delay_min_updated = true;
        }
        let var = rtt - self.rtt_min.unwrap_or(rtt);
        self.rtt_var_sample = Some(var);
        self.active.rtt_var_min = self.active.rtt_var_min.min(var);
        self.active.rtt_var_max = self.active.rtt_var_max.max(var);
    }

    /// One-way delay variation: the clock difference above its minimum.
    fn one_way(&mut self, load: &Load, now_ns: i64, first: bool) {
        let delta = ms(now_ns - stamp_ns(load.sent));
        let min = match self.clock_delta_min {
            Some(m) if !first && delta >= m => m,
            _ => {
                self.clock_delta_min = Some(delta);
                self.delay_min_updated = true;
                if first {
                    return;
                }
                delta
            }
        };
        let var = (delta - min).clamp(0, i64::from(u32::MAX - 1)) as u32;
        let t = &mut self.trial;
        t.dv_min = Some(t.dv_min.map_or(var, |m| m.min(var)));
        t.dv_max = t.dv_max.max(var);
        t.dv_sum = t.dv_sum.wrapping_add(var);
        t.dv_count += 1;
        let s = &mut self.active;
        s.delay_var_min = s.delay_var_min.min(var);
        s.delay_var_max = s.delay_var_max.max(var);
        s.delay_var_sum = s.delay_var_sum.wrapping_add(var);
        s.delay_var_count += 1;
    }

    /// The Status PDU due at `now_ns` (one per trial interval), with `rate` (the
    /// server's current row; zero from a client) and `action`; `None` until the first
    /// load PDU arrived. Closes the sub-interval when it is due.
    pub fn status(&mut self, now_ns: i64, action: TestAction, rate: SendingRate) -> Option<Status> {
        self.started_ns?;
        let rx_stopped = self
            .last_load_ns
            .is_some_and(|t| now_ns - t >= 1_000_000_000);
        self.status_seq += 1;
        let t = self.trial;
        let status = Status {
            action,
            rx_stopped,
            seq: self.status_seq,
            rate,
            sub_interval_seq: self.saved_seq,
            sub_interval: self.saved,
            loss: t.loss,
            ooo: t.ooo,
            dup: t.dup,
            clock_delta_min: self.clock_delta_min.unwrap_or(0) as u32,
            delay_var_min: t.dv_min.unwrap_or(NO_DELAY),
            delay_var_max: t.dv_max,
            delay_var_sum: t.dv_sum,
            delay_var_count: t.dv_count,
            rtt_min: self.rtt_min.unwrap_or(NO_DELAY),
            rtt_var_sample: self.rtt_var_sample.unwrap_or(NO_DELAY),
            delay_min_updated: u8::from(self.delay_min_updated),
            reserved1: 0,
            reserved2: 0,
            trial_us: ((now_ns - self.trial_started_ns).max(0) / 1000) as u32,
            trial_datagrams: t.datagrams,
            trial_bytes: t.bytes,
            sent: ns_stamp(now_ns),
            tail: Status::tail_with(0, 0, 0, false),
        };
        self.trial = Trial::default();
        self.trial_started_ns = now_ns;
        self.rtt_var_sample = None;
        self.delay_min_updated = false;
        self.tick_sub_interval(now_ns);
        Some(status)
    }

    /// Sub-intervals close on a trial's boundary once their period, less half a
    /// trial, has passed: the first Status PDU opens the first one.
    fn tick_sub_interval(&mut self, now_ns: i64) {
        let Some(start) = self.active_started_ns else {
            self.active = fresh_sub_interval();
            self.active_started_ns = Some(now_ns);
            return;
        };
        let elapsed_ms = ms(now_ns - start);
        if elapsed_ms <= i64::from(self.sub_interval_ms) - i64::from(self.trial_ms / 2) {
            return;
        }
        self.accum_ms += elapsed_ms.max(0) as u32;
        self.active.delta_us = ((now_ns - start).max(0) / 1000) as u32;
        self.active.accum_ms = self.accum_ms;
        self.saved = self.active;
        self.saved_seq += 1;
        self.closed.push(self.active);
        self.active = fresh_sub_interval();
        self.active_started_ns = Some(now_ns);
    }

    /// The smallest round trip seen, ms.
    pub fn rtt_min_ms(&self) -> Option<u32> {
        self.rtt_min
    }

    /// The sub-intervals closed so far, in order.
    pub fn sub_intervals(&self) -> &[SubInterval] {
        &self.closed
    }
}

/// The figures of one direction of a capacity test, from its sub-intervals (TR-471's
/// names in the comments).
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// Maximum IP-layer capacity: the highest sub-interval rate, bit/s
    /// (MaxIPLayerCapacity).
    pub max_ip_capacity_bps: f64,
    /// Which sub-interval (from 1) had it.
    pub max_at: usize,
    /// Loss ratio in that sub-interval (LossRatioAtMax).
    pub loss_ratio_at_max: f64,
    /// Round-trip variation range in that sub-interval, s (RTTRangeAtMax).
    pub rtt_range_at_max_s: Option<f64>,
    /// One-way delay variation range in that sub-interval, s (PDVRangeAtMax).
    pub pdv_range_at_max_s: Option<f64>,
    /// Loss ratio over the whole test.
    pub loss_ratio: f64,
    /// Each sub-interval's IP-layer rate, bit/s.
    pub rates_bps: Vec<f64>,
}

/// The sub-intervals of a test over several connections, as one: the i-th of each
/// connection summed (datagrams, bytes, loss, reordering, duplicates), its duration the
/// connections' mean (they close on the same 1 s boundaries of each receiver, within a
/// trial), its delay ranges the widest. A connection that ended early adds nothing to
/// the later ones.
pub fn aggregate(connections: &[Vec<SubInterval>]) -> Vec<SubInterval> {
    let longest = connections.iter().map(Vec::len).max().unwrap_or(0);
    (0..longest)
        .map(|i| {
            let each: Vec<&SubInterval> = connections.iter().filter_map(|c| c.get(i)).collect();
            let mut sum = SubInterval {
                delay_var_min: NO_DELAY,
                rtt_var_min: NO_DELAY,
                ..SubInterval::default()
            };
            let mut delta: u64 = 0;
            for s in &each {
                sum.rx_datagrams += s.rx_datagrams;
                sum.rx_bytes += s.rx_bytes;
                sum.loss += s.loss;
                sum.ooo += s.ooo;
                sum.dup += s.dup;
                sum.delay_var_min = sum.delay_var_min.min(s.delay_var_min);
                sum.delay_var_max = sum.delay_var_max.max(s.delay_var_max);
                sum.delay_var_sum = sum.delay_var_sum.wrapping_add(s.delay_var_sum);
                sum.delay_var_count += s.delay_var_count;
                sum.rtt_var_min = sum.rtt_var_min.min(s.rtt_var_min);
                sum.rtt_var_max = sum.rtt_var_max.max(s.rtt_var_max);
                sum.accum_ms = sum.accum_ms.max(s.accum_ms);
                delta += u64::from(s.delta_us);
            }
            sum.delta_us = (delta / each.len().max(1) as u64) as u32;
            sum
        })
        .collect()
}

/// The figures of `sub_intervals`, counting `overhead` IP and UDP header bytes per
/// datagram, over at most `count` of them (the test's duration ÷ the sub-interval, as
/// OB-UDPST bounds them); `None` without any.
pub fn figures(sub_intervals: &[SubInterval], overhead: u64, count: usize) -> Option<Figures> {
    let used = &sub_intervals[..sub_intervals.len().min(count)];
    let rates: Vec<f64> = used.iter().map(|s| s.ip_rate_bps(overhead)).collect();
    let (at, max) =
        rates
            .iter()
            .copied()
            .enumerate()
            .fold(None, |best: Option<(usize, f64)>, (i, r)| match best {
                Some((_, b)) if b >= r => best,
                _ => Some((i, r)),
            })?;
    let s = &used[at];
    let ratio = |lost: u64, got: u64| {
        if lost + got == 0 {
            0.0
        } else {
            lost as f64 / (lost + got) as f64
        }
    };
    let range = |min: u32, max: u32| (min != NO_DELAY).then(|| f64::from(max - min) / 1e3);
    let lost: u64 = used.iter().map(|s| u64::from(s.loss)).sum();
    let got: u64 = used.iter().map(|s| u64::from(s.rx_datagrams)).sum();
    Some(Figures {
        max_ip_capacity_bps: max,
        max_at: at + 1,
        loss_ratio_at_max: ratio(u64::from(s.loss), u64::from(s.rx_datagrams)),
        rtt_range_at_max_s: range(s.rtt_var_min, s.rtt_var_max.max(s.rtt_var_min)),
        pdv_range_at_max_s: range(s.delay_var_min, s.delay_var_max.max(s.delay_var_min)),
        loss_ratio: ratio(lost, got),
        rates_bps: rates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;
    const T0: i64 = 1_796_250_000 * 1_000_000_000;

    fn load(seq: u32, sent_ns: i64, payload: u16) -> Load {
        Load {
            action: TestAction::Test,
            rx_stopped: false,
            seq,
            udp_payload: payload,
            status_seq_err: 0,
            status_time: (0, 0),
            sent: ns_stamp(sent_ns),
            rtt_response_delay_ms: 0,
            checksum: 0,
        }
    }

    #[test]
    fn a_receiver_counts_each_trial_and_closes_a_sub_interval_every_second() {
        let mut r = Receiver::new(50, 1000, T0);
        assert!(r
            .status(T0 + 50 * MS, TestAction::Test, SendingRate::default())
            .is_none());
        // 100 datagrams of 1472 bytes every 50 ms, 10 ms on the way, for 2.2 s.
        let mut seq = 0;
        let mut statuses = Vec::new();
        for trial in 1..=44i64 {
            for i in 0..100 {
                seq += 1;
                let sent = T0 + (trial - 1) * 50 * MS + i * MS / 2;
                r.on_load(&load(seq, sent, 1472), sent + 10 * MS);
            }
            let s = r.status(
                T0 + trial * 50 * MS,
                TestAction::Test,
                SendingRate::default(),
            );
            statuses.push(s.expect("a status every trial"));
        }
        let first = statuses[0];
        assert_eq!(
            (first.seq, first.trial_datagrams, first.trial_bytes),
            (1, 100, 147_200)
        );
        assert_eq!(first.sub_interval_seq, 0, "none closed yet");
        assert_eq!((first.loss, first.delay_var_max), (0, 0));
        // The first status opens the first sub-interval; it closes after 1 s less
        // half a trial, on a trial boundary: statuses 1 → 21 (1000 ms later).
        let subs = r.sub_intervals();
        assert_eq!(subs.len(), 2);
        assert_eq!(subs[0].delta_us, 1_000_000);
        assert_eq!(subs[0].rx_datagrams, 2000);
        assert_eq!(statuses[21].sub_interval_seq, 1);
        assert_eq!(statuses[21].sub_interval, subs[0]);
        // 2000 × 1500 IP bytes in 1 s.
        assert!((subs[0].ip_rate_bps(28) - 24e6).abs() < 1.0);
    }

    #[test]
    fn loss_reordering_and_duplicates_are_told_apart() {
        let mut r = Receiver::new(50, 1000, T0);
        for seq in [1, 2, 5, 3, 3, 6] {
            r.on_load(&load(seq, T0, 100), T0 + MS);
        }
        let s = r
            .status(T0 + 50 * MS, TestAction::Test, SendingRate::default())
            .expect("status");
        // 5 skips 3 and 4 (2 lost); 3 comes late (1 lost, 1 out of order); 3 again is
        // a duplicate.
        assert_eq!((s.loss, s.ooo, s.dup), (1, 1, 1));
        assert_eq!(s.trial_datagrams, 6);
    }

    #[test]
    fn round_trips_come_from_echoed_status_times_less_the_senders_hold() {
        let mut r = Receiver::new(50, 1000, T0);
        r.on_load(&load(1, T0, 100), T0 + 5 * MS);
        let s = r
            .status(T0 + 50 * MS, TestAction::Test, SendingRate::default())
            .expect("status");
        assert_eq!(s.rtt_min, NO_DELAY);
        // The sender got the status 20 ms later, held it 3 ms, and its load took 20 ms.
        let mut l = load(2, T0 + 73 * MS, 100);
        l.status_time = s.sent;
        l.rtt_response_delay_ms = 3;
        r.on_load(&l, T0 + 93 * MS);
        let s2 = r
            .status(T0 + 100 * MS, TestAction::Test, SendingRate::default())
            .expect("status");
        assert_eq!((s2.rtt_min, s2.rtt_var_sample), (40, 0));
        // One-way: the first load set the clock difference (5 ms), the second's is 20.
        assert_eq!((s2.clock_delta_min, s2.delay_var_max), (5, 15));
    }

    #[test]
    fn the_figures_are_the_best_sub_interval_and_what_it_carried() {
        let sub = |datagrams: u32, loss: u32, rtt: (u32, u32)| SubInterval {
            rx_datagrams: datagrams,
            rx_bytes: u64::from(datagrams) * 1472,
            delta_us: 1_000_000,
            loss,
            rtt_var_min: rtt.0,
            rtt_var_max: rtt.1,
            delay_var_min: 0,
            delay_var_max: 4,
            ..SubInterval::default()
        };
        let subs = [
            sub(1000, 0, (0, 2)),
            sub(4000, 40, (1, 9)),
            sub(3000, 0, (0, 1)),
            sub(9000, 0, (0, 0)),
        ];
        let f = figures(&subs, 28, 3).expect("figures");
        assert_eq!(f.max_at, 2, "the fourth is beyond the test's duration");
        assert!((f.max_ip_capacity_bps - 48e6).abs() < 1.0);
        assert!((f.loss_ratio_at_max - 40.0 / 4040.0).abs() < 1e-12);
        assert_eq!(f.rtt_range_at_max_s, Some(0.008));
        assert_eq!(f.pdv_range_at_max_s, Some(0.004));
        assert!((f.loss_ratio - 40.0 / 8040.0).abs() < 1e-12);
        assert_eq!(f.rates_bps.len(), 3);
        assert!(figures(&[], 28, 10).is_none());
    }

    #[test]
    fn wire_stamps_round_trip() {
        let ns = T0 + 123_456_789;
        assert_eq!(stamp_ns(ns_stamp(ns)), ns);
    }

    #[test]
    fn connections_add_up_sub_interval_by_sub_interval() {
        let sub = |datagrams: u32, delta_us: u32, loss: u32| SubInterval {
            rx_datagrams: datagrams,
            rx_bytes: u64::from(datagrams) * 1222,
            delta_us,
            loss,
            delay_var_min: 1,
            delay_var_max: 4,
            rtt_var_min: 0,
            rtt_var_max: 2,
            ..SubInterval::default()
        };
        let a = vec![sub(10_000, 1_000_000, 5), sub(20_000, 1_000_000, 0)];
        let b = vec![sub(10_000, 1_020_000, 1)];
        let all = aggregate(&[a.clone(), b.clone()]);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].rx_datagrams, 20_000);
        assert_eq!(all[0].loss, 6);
        assert_eq!(all[0].delta_us, 1_010_000);
        assert_eq!(all[1].rx_datagrams, 20_000, "b had ended");
        // 10,000 datagrams of 1250 IP bytes a second each: 100 Mb/s each, about 200.
        let rate = all[0].ip_rate_bps(28);
        let sum = a[0].ip_rate_bps(28) + b[0].ip_rate_bps(28);
        assert!((rate / sum - 1.0).abs() < 0.001, "{rate} vs {sum}");
        assert_eq!(
            aggregate(std::slice::from_ref(&a)),
            a,
            "one connection is itself"
        );
    }
}
