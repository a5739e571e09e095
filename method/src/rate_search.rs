//! The server's side of RFC 9097's rate search: the sending-rate table (each row a
//! sending rate, as RFC 9946's Status and Test Activation PDUs carry it) and the
//! search that moves along it after each trial, TR-471's Algorithm B (ITU-T Y.1540
//! Annex B) or the optional multiplicative Algorithm C (docs/METHODOLOGY.md §10).
//!
//! The table is laid out as OB-UDPST 9.0.0 lays its own, so a row index means the same
//! rate to either server: up to 1 Gb/s one row per Mb/s (two timers, every 100 µs and
//! every 1 ms, plus an add-on datagram sized for the last Mb/s), then 100 Mb/s steps.
//! Pure: no clock, no socket; the caller feeds it each trial's Status PDU.

use sonde_proto::udpst::{SendingRate, Status, NO_DELAY, RATE_RANDOM_BIT};

/// Rows in the table.
pub const ROWS: usize = 1153;
/// The first timer's interval, µs.
const TIMER1_US: u32 = 100;
/// The second timer's interval, µs.
const TIMER2_US: u32 = 1000;
/// Largest IP packet below 1 Gb/s (and above it without jumbo sizes), bytes.
const L3_PACKET: u32 = 1250;
/// Largest IP packet with the traditional MTU option.
const L3_PACKET_TRADITIONAL: u32 = 1500;
/// Largest jumbo IP packet.
const L3_PACKET_JUMBO: u32 = 9000;
/// UDP and IPv4 headers.
const L3_OVERHEAD: u32 = 28;
/// Most datagrams a timer sends at once.
const MAX_BURST: u32 = 100;
/// A congestion backs off this many high-speed steps.
const BACKUP_STEPS: usize = 3;
/// Algorithm C's first wait before it retries a fast ramp-up, in trials.
const RETRY_TRIALS: u32 = 5;

/// The sending-rate table, for one test's datagram size options.
#[derive(Debug, Clone, PartialEq)]
pub struct RateTable {
    rows: Vec<SendingRate>,
    /// The last row of the fine (1 Mb/s) part: fast ramp-ups stop here.
    high_speed: usize,
}

impl RateTable {
    /// The table for a test with `jumbo` datagram sizes above 1 Gb/s allowed, or with
    /// the `traditional` 1500-byte MTU sizes (the Setup Request's modifiers).
    pub fn new(jumbo: bool, traditional: bool) -> Self {
        let (packet, bursts, addons) = if traditional {
            (L3_PACKET_TRADITIONAL, 8, 11)
        } else {
            (L3_PACKET, 10, 9)
        };
        let payload = packet - L3_OVERHEAD;
        let mut rows = Vec::with_capacity(ROWS);
        // Up to 1 Gb/s: `fast` datagrams every 100 µs, `slow` every 1 ms, and an add-on
        // datagram every 1 ms sized for `mbps` more.
        'fine: for fast in 0..=bursts {
            for slow in 0..10u32 {
                let mut row = SendingRate::default();
                if fast > 0 {
                    row.tx_interval1_us = TIMER1_US;
                    row.udp_payload1 = payload;
                    row.burst_size1 = fast;
                }
                if slow > 0 {
                    row.tx_interval2_us = TIMER2_US;
                    row.udp_payload2 = payload;
                    row.burst_size2 = slow;
                }
                if fast == 0 && slow == 0 {
                    // Row 0: one datagram of random size every 50 ms.
                    row.tx_interval2_us = 50_000;
                    row.udp_addon2 = payload | RATE_RANDOM_BIT;
                }
                rows.push(row);
                if !traditional && fast == bursts {
                    break 'fine;
                }
                for mbps in 1..=addons {
                    let mut row = row;
                    row.tx_interval2_us = TIMER2_US;
                    row.udp_addon2 = mbps * 1000 / 8 - L3_OVERHEAD;
                    rows.push(row);
                    if rows.len() > 1000 {
                        break 'fine;
                    }
                }
            }
        }
        let high_speed = rows.len() - 1;
        let (payload, first) = if jumbo {
            // Bigger datagrams first (never a size a 1500-byte IPv6 path carries, so
            // fragmented and whole datagrams are not mixed), then bigger bursts.
            let mut size = L3_PACKET + 125;
            while size <= L3_PACKET_JUMBO {
                rows.push(SendingRate {
                    tx_interval1_us: TIMER1_US,
                    udp_payload1: size - L3_OVERHEAD,
                    burst_size1: 10,
                    ..SendingRate::default()
                });
                size += 125;
            }
            (L3_PACKET_JUMBO - L3_OVERHEAD, 11)
        } else if traditional {
            (payload, 9)
        } else {
            (payload, 11)
        };
        let mut burst = first;
        while rows.len() < ROWS {
            rows.push(SendingRate {
                tx_interval1_us: TIMER1_US,
                udp_payload1: payload,
                burst_size1: burst.min(MAX_BURST),
                ..SendingRate::default()
            });
            burst += 1;
        }
        RateTable { rows, high_speed }
    }

    /// Row `index` (the last one beyond the end).
    pub fn row(&self, index: usize) -> SendingRate {
        self.rows[index.min(self.rows.len() - 1)]
    }

    /// Rows in the table.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Never: the table always has its rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The last row of the fine part.
    pub fn high_speed_threshold(&self) -> usize {
        self.high_speed
    }

    /// The IP-layer rate of row `index` over IPv4, bit/s (random sizes at their mean).
    pub fn ip_rate_bps(&self, index: usize) -> f64 {
        let r = self.row(index);
        let per_s = |interval: u32| {
            if interval == 0 {
                0.0
            } else {
                1e6 / f64::from(interval)
            }
        };
        let packet = |v: u32| {
            let max = f64::from(v & !RATE_RANDOM_BIT);
            let size = if v & RATE_RANDOM_BIT != 0 {
                // Uniform from the smallest load PDU to the maximum.
                (52.0 + max) / 2.0
            } else {
                max
            };
            (size + f64::from(L3_OVERHEAD)) * 8.0
        };
        let one = |size: u32, count: u32| {
            if size == 0 {
                0.0
            } else {
                packet(size) * f64::from(count)
            }
        };
        per_s(r.tx_interval1_us) * one(r.udp_payload1, r.burst_size1)
            + per_s(r.tx_interval2_us) * (one(r.udp_payload2, r.burst_size2) + one(r.udp_addon2, 1))
    }
}

/// Which search moves along the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// TR-471 §5.2.1 / Y.1540 Annex B: fast steps of `high_speed_delta` rows while
    /// nothing is wrong, single rows once congestion was seen.
    B,
    /// Doubles the row every other good trial, and retries the fast ramp-up after a
    /// growing wait.
    C,
}

/// The search's parameters, as the Test Activation accepted them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchParams {
    /// Algorithm B or C.
    pub algorithm: Algorithm,
    /// Delay variation below which the rate may rise, ms.
    pub low_thresh_ms: u32,
    /// Delay variation above which the rate falls, ms.
    pub upper_thresh_ms: u32,
    /// Sequence errors a trial may have and still count as good.
    pub seq_err_thresh: u32,
    /// Bad trials in a row that end the fast ramp-up.
    pub slow_adjust_thresh: u32,
    /// Rows of one fast step.
    pub high_speed_delta: usize,
    /// Reordered and duplicated datagrams are no sequence errors.
    pub ignore_ooo_dup: bool,
    /// Judge delay by the trial's mean one-way variation rather than the round trip's.
    pub use_one_way_delay: bool,
    /// A fixed row instead of a search (`None`: search from row 0).
    pub fixed: Option<usize>,
    /// The search starts at `fixed` rather than staying there.
    pub fixed_is_start: bool,
    /// Sub-intervals at the start without adjustment.
    pub suppress_sub_intervals: u32,
}

impl Default for SearchParams {
    /// OB-UDPST's and TR-471's defaults.
    fn default() -> Self {
        SearchParams {
            algorithm: Algorithm::B,
            low_thresh_ms: 30,
            upper_thresh_ms: 90,
            seq_err_thresh: 10,
            slow_adjust_thresh: 3,
            high_speed_delta: 10,
            ignore_ooo_dup: true,
            use_one_way_delay: false,
            fixed: None,
            fixed_is_start: false,
            suppress_sub_intervals: 0,
        }
    }
}

/// The search's state: the current row and its counters.
#[derive(Debug, Clone)]
pub struct RateSearch {
    params: SearchParams,
    rows: usize,
    high_speed: usize,
    index: usize,
    slow_count: u32,
    /// Algorithm C: the next good trial doubles the row.
    double_next: bool,
    retry_count: u32,
    retry_thresh: u32,
}

/// What one trial said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trial {
    Good,
    Bad,
    Neither,
}

impl RateSearch {
    /// A search over `table` with `params`, at its starting row.
    pub fn new(table: &RateTable, params: SearchParams) -> Self {
        let start = match params.fixed {
            Some(i) if params.fixed_is_start || params.suppress_sub_intervals == 0 => i,
            _ => 0,
        };
        RateSearch {
            params,
            rows: table.len(),
            high_speed: table.high_speed_threshold(),
            index: start.min(table.len() - 1),
            slow_count: 0,
            double_next: false,
            retry_count: 0,
            retry_thresh: RETRY_TRIALS,
        }
    }

    /// The current row.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Moves after a trial the receiver reported in `status` (its loss, reordering,
    /// duplicates, delay variation and sub-interval); returns the new row.
    pub fn adjust(&mut self, status: &Status) -> usize {
        let p = self.params;
        if p.suppress_sub_intervals > 0 && status.sub_interval_seq < p.suppress_sub_intervals {
            if let (Some(_), false) = (p.fixed, p.fixed_is_start) {
                self.index = 0;
            }
            return self.index;
        }
        if let (Some(i), false) = (p.fixed, p.fixed_is_start) {
            self.index = i.min(self.rows - 1);
            return self.index;
        }
        let trial = self.judge(status);
        match p.algorithm {
            Algorithm::B => self.step_b(trial),
            Algorithm::C => self.step_c(trial),
        }
        self.index
    }

    fn judge(&self, status: &Status) -> Trial {
        let p = self.params;
        let mut errors = u64::from(status.loss);
        if !p.ignore_ooo_dup {
            errors += u64::from(status.ooo) + u64::from(status.dup);
        }
        let delay = if p.use_one_way_delay {
            (status.delay_var_count > 0).then(|| {
                let sum = u64::from(status.delay_var_sum) * 10;
                ((sum / u64::from(status.delay_var_count) + 5) / 10) as u32
            })
        } else {
            (status.rtt_var_sample != NO_DELAY).then_some(status.rtt_var_sample)
        };
        // Without a sample the delay reads as the low threshold: no reason to move.
        let delay = delay.unwrap_or(p.low_thresh_ms);
        let errors_ok = errors <= u64::from(p.seq_err_thresh);
        if errors_ok && delay < p.low_thresh_ms {
            Trial::Good
        } else if !errors_ok || delay > p.upper_thresh_ms {
            Trial::Bad
        } else {
            Trial::Neither
        }
    }

    fn back_off(&mut self) {
        let back = self.params.high_speed_delta * BACKUP_STEPS;
        self.index = self.index.saturating_sub(back);
    }

    fn step_b(&mut self, trial: Trial) {
        let p = self.params;
        match trial {
            Trial::Good => {
                if self.index < self.high_speed && self.slow_count < p.slow_adjust_thresh {
                    self.index = (self.index + p.high_speed_delta).min(self.high_speed);
                    self.slow_count = 0;
                } else if self.index < self.rows - 1 {
                    self.index += 1;
                }
            }
            Trial::Bad => {
                self.slow_count += 1;
                if self.index < self.high_speed && self.slow_count == p.slow_adjust_thresh {
                    self.back_off();
                } else {
                    self.index = self.index.saturating_sub(1);
                }
            }
            Trial::Neither => {}
        }
    }

    fn step_c(&mut self, trial: Trial) {
        let p = self.params;
        match trial {
            Trial::Good => {
                if self.index < self.high_speed && self.slow_count < p.slow_adjust_thresh {
                    if self.index * 2 > self.high_speed {
                        self.index = self.high_speed;
                    } else {
                        self.index = self.index.max(1);
                        if self.double_next {
                            self.index *= 2;
                        }
                        self.double_next = !self.double_next;
                    }
                    self.slow_count = 0;
                } else {
                    if self.index < self.rows - 1 {
                        self.index += 1;
                        self.retry_count += 1;
                    }
                    if self.retry_count >= self.retry_thresh {
                        self.slow_count = 0;
                        self.retry_count = 0;
                        self.retry_thresh += RETRY_TRIALS;
                    }
                }
            }
            Trial::Bad => {
                self.slow_count += 1;
                if self.index < self.high_speed && self.slow_count == p.slow_adjust_thresh {
                    self.back_off();
                } else if self.index > 0 {
                    self.index -= 1;
                    self.retry_count += 1;
                    if self.retry_count >= self.retry_thresh {
                        self.slow_count = 0;
                        self.retry_count = 0;
                    }
                }
            }
            Trial::Neither => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonde_proto::udpst::{SubInterval, TestAction};

    fn status(loss: u32, rtt_var: u32) -> Status {
        Status {
            action: TestAction::Test,
            rx_stopped: false,
            seq: 1,
            rate: SendingRate::default(),
            sub_interval_seq: 5,
            sub_interval: SubInterval::default(),
            loss,
            ooo: 0,
            dup: 0,
            clock_delta_min: 0,
            delay_var_min: NO_DELAY,
            delay_var_max: 0,
            delay_var_sum: 0,
            delay_var_count: 0,
            rtt_min: 10,
            rtt_var_sample: rtt_var,
            delay_min_updated: 0,
            reserved1: 0,
            reserved2: 0,
            trial_us: 50_000,
            trial_datagrams: 0,
            trial_bytes: 0,
            sent: (0, 0),
            tail: [0; 44],
        }
    }

    #[test]
    fn the_table_has_one_row_per_megabit_up_to_a_gigabit_then_100_mbit_steps() {
        let t = RateTable::new(false, false);
        assert_eq!(t.len(), ROWS);
        assert_eq!(t.high_speed_threshold(), 1000);
        for (i, mbps) in [(1, 1.0), (10, 10.0), (99, 99.0), (100, 100.0), (555, 555.0)] {
            let r = t.ip_rate_bps(i);
            assert!((r - mbps * 1e6).abs() < 1.0, "row {i}: {r}");
        }
        assert!((t.ip_rate_bps(1000) - 1e9).abs() < 1.0);
        assert!((t.ip_rate_bps(1001) - 1.1e9).abs() < 1.0);
        assert!((t.ip_rate_bps(1002) - 1.2e9).abs() < 1.0);
        assert!(
            (t.ip_rate_bps(ROWS - 1) - 10e9).abs() < 1.0,
            "capped at bursts of 100"
        );
        // Row 0 sends one random-sized datagram every 50 ms.
        assert_eq!(t.row(0).tx_interval2_us, 50_000);
        assert_ne!(t.row(0).udp_addon2 & RATE_RANDOM_BIT, 0);
        // Rates never fall as the index grows.
        for i in 1..t.len() {
            assert!(t.ip_rate_bps(i) >= t.ip_rate_bps(i - 1), "row {i}");
        }
    }

    #[test]
    fn the_table_rows_are_the_ones_ob_udpst_sends() {
        // Rows as OB-UDPST 9.0.0's server put them in its Status PDUs (recorded in
        // proto/testdata/udpst-obudpst-9.0.0.txt and by `udpst -S`).
        let t = RateTable::new(false, false);
        let r = t.row(123);
        assert_eq!(
            (r.tx_interval1_us, r.udp_payload1, r.burst_size1),
            (100, 1222, 1)
        );
        assert_eq!(
            (
                r.tx_interval2_us,
                r.udp_payload2,
                r.burst_size2,
                r.udp_addon2
            ),
            (1000, 1222, 2, 3 * 125 - 28)
        );
        let jumbo = RateTable::new(true, false);
        assert_eq!(jumbo.len(), ROWS);
        assert_eq!(jumbo.row(1001).udp_payload1, 1375 - 28);
        assert_eq!(jumbo.row(1001).burst_size1, 10);
        assert!((jumbo.ip_rate_bps(1001) - 1.1e9).abs() < 1.0);
        let traditional = RateTable::new(false, true);
        assert_eq!(traditional.row(1).udp_addon2, 125 - 28);
        assert_eq!(traditional.row(12).udp_payload2, 1472);
        assert!((traditional.ip_rate_bps(12) - 12e6).abs() < 1.0);
    }

    #[test]
    fn every_row_a_recorded_ob_udpst_server_sent_is_in_the_table() {
        let t = RateTable::new(false, false);
        let mut seen = 0;
        for line in include_str!("../../proto/testdata/udpst-obudpst-9.0.0.txt").lines() {
            let f: Vec<&str> = line.split(' ').collect();
            if line.starts_with('#') || f.len() < 5 || f[1] != "s>c" {
                continue;
            }
            let bytes: Vec<u8> = (0..f[4].len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&f[4][i..i + 2], 16).expect("hex"))
                .collect();
            let row = match sonde_proto::udpst::Pdu::decode(&bytes).expect("pdu") {
                sonde_proto::udpst::Pdu::Status(s) => s.rate,
                sonde_proto::udpst::Pdu::Activation(a) if f[0] == "us" => a.rate,
                _ => continue,
            };
            assert!(
                (0..t.len()).any(|i| t.row(i) == row),
                "{line}: {row:?} is no row"
            );
            seen += 1;
        }
        assert!(seen >= 3, "{seen} rows checked");
    }

    #[test]
    fn algorithm_b_ramps_fast_then_steps_once_congestion_was_seen() {
        let t = RateTable::new(false, false);
        let mut s = RateSearch::new(&t, SearchParams::default());
        let good = status(0, 0);
        let bad = status(50, 0);
        assert_eq!(s.adjust(&good), 10);
        assert_eq!(s.adjust(&good), 20);
        // Two bad trials step down one row each; the third backs off 30 rows.
        assert_eq!(s.adjust(&bad), 19);
        assert_eq!(s.adjust(&bad), 18);
        assert_eq!(s.adjust(&bad), 0);
        // Congestion was seen: only single rows up from here.
        assert_eq!(s.adjust(&good), 1);
        assert_eq!(s.adjust(&good), 2);
        // Delay variation between the thresholds: no move.
        assert_eq!(s.adjust(&status(0, 50)), 2);
        // Above the upper threshold: down.
        assert_eq!(s.adjust(&status(0, 100)), 1);
    }

    #[test]
    fn the_fast_ramp_stops_at_the_high_speed_threshold() {
        let t = RateTable::new(false, false);
        let mut s = RateSearch::new(&t, SearchParams::default());
        for _ in 0..100 {
            s.adjust(&status(0, 0));
        }
        assert_eq!(s.index(), 1000, "100 fast steps of 10 rows");
        let mut s = RateSearch::new(&t, SearchParams::default());
        for _ in 0..99 {
            s.adjust(&status(0, 0));
        }
        assert_eq!(s.index(), 990);
        assert_eq!(s.adjust(&status(0, 0)), 1000);
        assert_eq!(s.adjust(&status(0, 0)), 1001);
    }

    #[test]
    fn sequence_errors_within_the_threshold_and_reordering_are_forgiven() {
        let t = RateTable::new(false, false);
        let mut s = RateSearch::new(&t, SearchParams::default());
        assert_eq!(s.adjust(&status(10, 0)), 10, "10 errors is the threshold");
        let mut reordered = status(0, 0);
        reordered.ooo = 500;
        assert_eq!(s.adjust(&reordered), 20);
        let strict = SearchParams {
            ignore_ooo_dup: false,
            ..SearchParams::default()
        };
        let mut s = RateSearch::new(&t, strict);
        assert_eq!(s.adjust(&reordered), 0);
    }

    #[test]
    fn a_fixed_row_stays_and_a_starting_row_searches() {
        let t = RateTable::new(false, false);
        let fixed = SearchParams {
            fixed: Some(300),
            ..SearchParams::default()
        };
        let mut s = RateSearch::new(&t, fixed);
        assert_eq!(s.index(), 300);
        assert_eq!(s.adjust(&status(0, 0)), 300);
        let start = SearchParams {
            fixed: Some(300),
            fixed_is_start: true,
            ..SearchParams::default()
        };
        let mut s = RateSearch::new(&t, start);
        assert_eq!(s.adjust(&status(0, 0)), 310);
    }

    #[test]
    fn algorithm_c_doubles_every_other_good_trial() {
        let t = RateTable::new(false, false);
        let c = SearchParams {
            algorithm: Algorithm::C,
            ..SearchParams::default()
        };
        let mut s = RateSearch::new(&t, c);
        let good = status(0, 0);
        let seen: Vec<usize> = (0..8).map(|_| s.adjust(&good)).collect();
        assert_eq!(seen, vec![1, 2, 2, 4, 4, 8, 8, 16]);
    }
}
