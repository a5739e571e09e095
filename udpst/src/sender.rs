//! The load sender: a thread that sends load PDUs as a sending-rate row says (two
//! timers, every `tx_interval1` and `tx_interval2` µs, each with its burst, the second
//! with its add-on datagram), echoing the peer's last Status PDU. Rows send every 100 µs
//! or every 1 ms, finer than the async runtime's timers, hence a thread. A timer that
//! fell behind catches up by at most 10 intervals, so a stalled thread never bursts a
//! second's worth at once. Equal sizes leave in GSO trains.
//!
//! The client sends what the server's Status PDUs say (an upstream test); the server
//! sends what its own rate search says (a downstream test). Whoever owns the [`Steer`]
//! changes the row, the echo and the phase; the thread reads it before every round.

use crate::batch;
use sonde_method::capacity::ns_stamp;
use sonde_proto::udpst::{
    Load, SendingRate, TestAction, LOAD_HEADER_LEN, MAX_DATAGRAM, RATE_RANDOM_BIT,
};
use std::net::UdpSocket as StdSocket;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Smallest UDP payload of a load PDU over IPv4 (its header plus the 20 bytes IPv6
/// takes away), as OB-UDPST draws random sizes.
pub const MIN_PAYLOAD: u32 = 52;
/// Most UDP payload bytes one GSO send carries (the kernel's 64 KiB less headers).
const GSO_BYTES: usize = 65_000;
/// Most intervals a late timer sends at once.
const CATCH_UP: u32 = 10;

/// Where the sender is in a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// Send the row.
    #[default]
    Test,
    /// The server stops the test: one stop-marked datagram per timer round until the
    /// client confirms (the owner then ends).
    Stopping,
    /// The client confirms the server's stop with one stop-marked datagram, and ends.
    Confirm,
    /// End now.
    End,
}

/// What the owner tells the sender.
#[derive(Debug, Clone, Copy, Default)]
pub struct Steer {
    /// The row to send.
    pub rate: SendingRate,
    /// Send time of the peer's last Status PDU, echoed in every load PDU.
    pub status_sent: (u32, u32),
    /// When that Status PDU arrived.
    pub status_heard: Option<Instant>,
    /// Status PDUs missing before it.
    pub status_seq_err: u16,
    /// The phase.
    pub phase: Phase,
    /// The owner's receiving side heard nothing for a while (the load PDUs' flag).
    pub rx_stopped: bool,
}

/// The sender's [`Steer`], shared with its owner.
pub type Shared = Arc<Mutex<Steer>>;

/// Locks a shared steer (a panicked holder left it as it was).
pub fn lock(steer: &Mutex<Steer>) -> MutexGuard<'_, Steer> {
    steer.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a sender did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// Datagrams the kernel took.
    pub datagrams: u64,
    /// Datagrams refused by a full send buffer (they took no sequence number).
    pub refused: u64,
}

/// Starts the sender thread on a connected, non-blocking `socket`.
pub fn spawn(socket: StdSocket, steer: Shared) -> std::thread::JoinHandle<Sent> {
    std::thread::spawn(move || run(socket, &steer))
}

/// Where load PDUs go: the connected socket, its batched sender and a buffer.
struct Out {
    socket: StdSocket,
    batch: Option<batch::Sender>,
    peer: std::net::SocketAddr,
    ipv6: bool,
    buf: Vec<u8>,
    /// Sequence number of the last load PDU the kernel took.
    seq: u32,
    sent: Sent,
}

impl Out {
    fn new(socket: StdSocket) -> Option<Out> {
        let peer = socket.peer_addr().ok()?;
        // Without GSO each datagram goes alone.
        let batch = batch::Sender::new(&socket).ok();
        Some(Out {
            socket,
            batch,
            peer,
            ipv6: peer.is_ipv6(),
            buf: vec![0u8; MAX_DATAGRAM * 64],
            seq: 0,
            sent: Sent::default(),
        })
    }

    /// The UDP payload of one datagram of a row's `size` (a random one up to the rest
    /// when [`RATE_RANDOM_BIT`] is set), IPv6 keeping the IPv4 packet sizes.
    fn length(&self, size: u32) -> usize {
        let max = size & !RATE_RANDOM_BIT;
        let mut len = if size & RATE_RANDOM_BIT != 0 && max > MIN_PAYLOAD {
            MIN_PAYLOAD + rand::random::<u32>() % (max - MIN_PAYLOAD + 1)
        } else {
            max
        };
        if self.ipv6 && len >= MIN_PAYLOAD {
            len -= 20;
        }
        (len as usize).clamp(LOAD_HEADER_LEN, MAX_DATAGRAM)
    }

    /// Sends `count` datagrams of a row's `size`: equal sizes in GSO trains, random
    /// ones alone. Datagrams the kernel refused (a full buffer) take no sequence number,
    /// as OB-UDPST's sender does.
    fn burst(&mut self, s: &Steer, action: TestAction, size: u32, count: u32) {
        let random = size & RATE_RANDOM_BIT != 0;
        let most = self
            .batch
            .as_ref()
            .map_or(1, |b| b.max_segments().clamp(1, 64));
        let mut left = count as usize;
        while left > 0 {
            let len = self.length(size);
            let n = if random { 1 } else { train(left, most, len) };
            for i in 0..n {
                let at = i * len;
                let header = header(s, action, self.seq + 1 + i as u32, len as u16);
                let _ = header.encode_into(&mut self.buf[at..at + len]);
            }
            let contents = &self.buf[..n * len];
            let sent = match (&self.batch, n) {
                (Some(b), n) if n > 1 => b.send(&self.socket, self.peer, contents, len).is_ok(),
                _ => self.socket.send(contents).is_ok(),
            };
            if sent {
                self.seq += n as u32;
                self.sent.datagrams += n as u64;
            } else {
                self.sent.refused += n as u64;
            }
            left -= n;
        }
    }
}

/// Datagrams of `len` bytes in one GSO train, of `left` to send: at most `most` (the
/// kernel's segment limit) and at most 64 KiB of payload, which the kernel otherwise
/// refuses whole (every send of a 54-datagram burst failed, and the upload stopped).
fn train(left: usize, most: usize, len: usize) -> usize {
    left.min(most).min((GSO_BYTES / len.max(1)).max(1))
}

/// The sender thread: each timer sends its burst every interval of the current row.
fn run(socket: StdSocket, steer: &Mutex<Steer>) -> Sent {
    let Some(mut out) = Out::new(socket) else {
        return Sent::default();
    };
    let start = Instant::now();
    // Each timer starts 5 to 50 ms in, as OB-UDPST's do.
    let jitter = || Duration::from_micros(5_000 + u64::from(rand::random::<u16>()) % 45_000);
    let mut timers = [start + jitter(), start + jitter()];
    loop {
        let s = *lock(steer);
        let (action, most) = match s.phase {
            Phase::End => return out.sent,
            Phase::Confirm => {
                out.burst(&s, TestAction::Stop2, MIN_PAYLOAD, 1);
                return out.sent;
            }
            Phase::Stopping => (TestAction::Stop2, 1),
            Phase::Test => (TestAction::Test, u32::MAX),
        };
        let now = Instant::now();
        let rows = [
            (
                s.rate.tx_interval1_us,
                s.rate.udp_payload1,
                s.rate.burst_size1,
                0,
            ),
            (
                s.rate.tx_interval2_us,
                s.rate.udp_payload2,
                s.rate.burst_size2,
                s.rate.udp_addon2,
            ),
        ];
        let mut wake = now + Duration::from_millis(1);
        for (next, (interval_us, payload, burst, addon)) in timers.iter_mut().zip(rows) {
            if interval_us == 0 {
                *next = (*next).max(now);
                continue;
            }
            let interval = Duration::from_micros(u64::from(interval_us));
            let mut intervals = 0;
            while *next <= now && intervals < CATCH_UP {
                if most == 1 {
                    // Stopping: one small datagram a round, whatever the row.
                    out.burst(&s, action, MIN_PAYLOAD, 1);
                } else {
                    out.burst(&s, action, payload, burst);
                    if addon != 0 {
                        out.burst(&s, action, addon, 1);
                    }
                }
                *next += interval;
                intervals += 1;
            }
            if *next <= now {
                // Too far behind: start again from now rather than burst.
                *next = now + interval;
            }
            wake = wake.min(*next);
        }
        let now = Instant::now();
        if wake > now {
            std::thread::sleep(wake - now);
        }
    }
}

/// A load PDU header echoing the last Status PDU.
fn header(s: &Steer, action: TestAction, seq: u32, size: u16) -> Load {
    Load {
        action,
        rx_stopped: s.rx_stopped,
        seq,
        udp_payload: size,
        status_seq_err: s.status_seq_err,
        status_time: s.status_sent,
        sent: ns_stamp(crate::now_ns()),
        rtt_response_delay_ms: s.status_heard.map_or(0, |t| {
            t.elapsed().as_millis().min(u128::from(u16::MAX)) as u16
        }),
        checksum: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gso_train_never_carries_more_than_64_kib() {
        // Rows near 1 Gb/s send bursts of more than 53 datagrams of 1222 bytes.
        assert_eq!(train(60, 64, 1222), 53);
        assert!(train(60, 64, 1222) * 1222 <= GSO_BYTES);
        assert_eq!(train(10, 64, 1222), 10);
        assert_eq!(train(60, 1, 1222), 1);
        assert_eq!(
            train(9, 64, 9000),
            7,
            "jumbo datagrams: 7 of 9000 bytes fit"
        );
        assert_eq!(train(3, 64, 0), 3);
    }

    #[test]
    fn a_row_is_sent_at_its_rate_and_a_stop_is_confirmed_once() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        rx.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        tx.connect(rx.local_addr().expect("addr")).expect("connect");
        tx.set_nonblocking(true).expect("nonblocking");
        // 3 datagrams every 1 ms: about 300 in 100 ms.
        let steer: Shared = Arc::new(Mutex::new(Steer {
            rate: SendingRate {
                tx_interval2_us: 1000,
                udp_payload2: 200,
                burst_size2: 3,
                ..SendingRate::default()
            },
            ..Steer::default()
        }));
        // Read meanwhile: a default receive buffer holds fewer than 300 datagrams.
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut loads = Vec::new();
            while let Ok(n) = rx.recv(&mut buf) {
                let load = Load::decode(&buf[..n]).expect("load");
                loads.push(load);
                if load.action != TestAction::Test {
                    break;
                }
            }
            loads
        });
        let thread = spawn(tx, steer.clone());
        std::thread::sleep(Duration::from_millis(150));
        lock(&steer).phase = Phase::Confirm;
        let sent = thread.join().expect("sender");
        let loads = reader.join().expect("reader");
        // It started 5 to 50 ms in; a loaded machine sends fewer, never more.
        assert!(
            (100..=450).contains(&sent.datagrams),
            "{sent:?} in about 100 to 145 ms"
        );
        assert_eq!(
            loads.len() as u64,
            sent.datagrams,
            "all arrived on loopback"
        );
        let last = loads.last().expect("one");
        assert_eq!(last.action, TestAction::Stop2, "the confirmation is last");
        assert_eq!(usize::from(last.udp_payload), MIN_PAYLOAD as usize);
        let seqs: Vec<u32> = loads.iter().map(|l| l.seq).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "in sequence");
    }
}
