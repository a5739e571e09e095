//! RFC 9097's rate search on virtual time: the server's sending-rate table and
//! Algorithm B (`sonde_method::rate_search`) drive load PDUs through netlab's emulated
//! bottleneck (`sonde_netlab::emulate`), the receiver (`sonde_method::capacity`)
//! reports every 50 ms trial back over the emulated return path, and the test's
//! maximum IP-layer capacity lands on the bottleneck's rate. No clock and no socket:
//! each run is exact and repeatable.

use sonde_method::capacity::{figures, ns_stamp, Receiver};
use sonde_method::rate_search::{RateSearch, RateTable, SearchParams};
use sonde_netlab::emulate::{Path, PathSpec};
use sonde_proto::udpst::{Load, SendingRate, Status, TestAction, LOAD_HEADER_LEN, RATE_RANDOM_BIT};
use std::time::Duration;

const MS: u64 = 1_000_000;
/// IPv4 and UDP headers ahead of each load PDU.
const HEADERS: usize = 28;

/// The sender side: the row's two timers, and what it echoes.
struct Sender {
    next: [u64; 2],
    seq: u32,
    echo: (u32, u32),
    heard_ns: u64,
}

impl Sender {
    /// The datagrams (IP packets) the row sends at `now`.
    fn due(&mut self, row: &SendingRate, now: u64, out: &mut Vec<Vec<u8>>) {
        let timers = [
            (row.tx_interval1_us, row.udp_payload1, row.burst_size1, 0),
            (
                row.tx_interval2_us,
                row.udp_payload2,
                row.burst_size2,
                row.udp_addon2,
            ),
        ];
        for (i, (interval, payload, burst, addon)) in timers.into_iter().enumerate() {
            if interval == 0 {
                self.next[i] = now;
                continue;
            }
            while self.next[i] <= now {
                for _ in 0..burst {
                    out.push(self.packet(payload, now));
                }
                if addon != 0 {
                    out.push(self.packet(addon, now));
                }
                self.next[i] += u64::from(interval) * 1000;
            }
        }
    }

    fn packet(&mut self, size: u32, now: u64) -> Vec<u8> {
        // Random sizes at their largest: row 0 only, a datagram every 50 ms.
        let payload = ((size & !RATE_RANDOM_BIT) as usize).max(LOAD_HEADER_LEN);
        self.seq += 1;
        let mut p = vec![0u8; HEADERS + payload];
        let load = Load {
            action: TestAction::Test,
            rx_stopped: false,
            seq: self.seq,
            udp_payload: payload as u16,
            status_seq_err: 0,
            status_time: self.echo,
            sent: ns_stamp(now as i64),
            rtt_response_delay_ms: ((now - self.heard_ns) / MS) as u16,
            checksum: 0,
        };
        load.encode_into(&mut p[HEADERS..]).expect("room");
        p
    }
}

/// A `seconds`-long downstream test over `down` with a `return_delay` for the status
/// PDUs: the maximum IP-layer capacity and each sub-interval's rate, bit/s.
fn search_over(down: PathSpec, return_delay: Duration, seconds: u64) -> (f64, Vec<f64>) {
    let table = RateTable::new(false, false);
    let mut search = RateSearch::new(&table, SearchParams::default());
    let mut path = Path::new(down, 7);
    let mut rx = Receiver::new(50, 1000, 0);
    let mut tx = Sender {
        next: [5 * MS, 5 * MS],
        seq: 0,
        echo: (0, 0),
        heard_ns: 0,
    };
    let mut statuses: Vec<(u64, Status)> = Vec::new();
    let (mut sent, mut delivered) = (Vec::new(), Vec::new());
    let end = seconds * 1000 * MS + 500 * MS;
    let step = 100_000; // 100 µs, the finer timer
    let mut now = 0;
    while now < end {
        let row = table.row(search.index());
        tx.due(&row, now, &mut sent);
        for p in sent.drain(..) {
            path.push(now, p);
        }
        path.advance(now, &mut delivered);
        for p in delivered.drain(..) {
            let load = Load::decode(&p[HEADERS..]).expect("a load PDU");
            rx.on_load(&load, now as i64);
        }
        if now % (50 * MS) == 0 {
            if let Some(s) = rx.status(now as i64, TestAction::Test, SendingRate::default()) {
                statuses.push((now + return_delay.as_nanos() as u64, s));
            }
        }
        while statuses.first().is_some_and(|(at, _)| *at <= now) {
            let (_, s) = statuses.remove(0);
            search.adjust(&s);
            tx.echo = s.sent;
            tx.heard_ns = now;
        }
        now += step;
    }
    let f = figures(rx.sub_intervals(), HEADERS as u64, seconds as usize).expect("figures");
    (f.max_ip_capacity_bps, f.rates_bps)
}

fn bottleneck(rate_bps: u64, delay_ms: u64) -> PathSpec {
    PathSpec {
        delay: Duration::from_millis(delay_ms),
        rate_bps: Some(rate_bps),
        // The rate counts IP bytes only: the ceiling is the rate itself.
        overhead_bytes: 0,
        // 50 ms of queue at the rate.
        queue_bytes: (rate_bps / 8 / 20) as usize,
        ..PathSpec::default()
    }
}

#[test]
fn the_search_finds_a_150_mbit_bottleneck_within_half_a_percent() {
    let (max, rates) = search_over(bottleneck(150_000_000, 10), Duration::from_millis(10), 10);
    println!(
        "150 Mb/s, 20 ms RTT: max {:.2} Mb/s, {rates:.0?}",
        max / 1e6
    );
    assert!((max / 150e6 - 1.0).abs() < 0.005, "{max}");
}

#[test]
fn the_search_finds_a_gigabit_bottleneck_and_holds_it() {
    let (max, rates) = search_over(bottleneck(1_000_000_000, 5), Duration::from_millis(5), 10);
    println!("1 Gb/s, 10 ms RTT: max {:.2} Mb/s, {rates:.0?}", max / 1e6);
    assert!((max / 1e9 - 1.0).abs() < 0.005, "{max}");
    // Fast steps of 10 Mb/s every 50 ms: about 200 Mb/s a second until the knee.
    assert!(rates[0] < 300e6, "{rates:?}");
    // Once found, later sub-intervals stay near it: the search does not wander off.
    let late = &rates[6..];
    assert!(late.iter().all(|r| *r > 0.9e9), "{rates:?}");
}

#[test]
fn a_long_round_trip_slows_the_search_but_it_still_arrives() {
    // 4G-like: 150 Mb/s and 60 ms each way; statuses arrive 60 ms late.
    let (max, rates) = search_over(bottleneck(150_000_000, 60), Duration::from_millis(60), 10);
    println!(
        "150 Mb/s, 120 ms RTT: max {:.2} Mb/s, {rates:.0?}",
        max / 1e6
    );
    assert!((max / 150e6 - 1.0).abs() < 0.01, "{max}");
}
