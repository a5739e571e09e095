//! An upstream test: the agent sends load PDUs as the server's sending-rate row says
//! (each Status PDU carries the row its search chose), and keeps the sub-interval
//! statistics the server measured, until the server's stop, which the agent confirms.
//!
//! The sender is a thread of its own: rows send every 100 µs or every 1 ms, finer than
//! the async runtime's timers. A timer that fell behind catches up by at most 10
//! intervals, so a stalled thread never bursts a second's worth at once.

use crate::engine::options::{Progress, ProgressFn};
use crate::engine::udpst::shared::{mid_test, now_ns, Ended, NO_TRAFFIC};
use crate::net::batch;
use crate::net::target::ClientError;
use sonde_method::capacity::ns_stamp;
use sonde_proto::udpst::*;
use sonde_proto::{Direction, FailureReason};
use std::net::UdpSocket as StdSocket;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// Smallest UDP payload of a load PDU over IPv4 (its header plus the 20 bytes IPv6
/// takes away), as OB-UDPST draws random sizes.
const MIN_PAYLOAD: u32 = 52;
/// Most UDP payload bytes one GSO send carries (the kernel's 64 KiB less headers).
const GSO_BYTES: usize = 65_000;
/// Most intervals a late timer sends at once.
const CATCH_UP: u32 = 10;

/// What the receiving side tells the sender.
#[derive(Debug, Clone, Copy, Default)]
struct Steer {
    rate: SendingRate,
    /// Send time of the last Status PDU, echoed in every load PDU.
    status_sent: (u32, u32),
    /// When that Status PDU arrived.
    status_heard: Option<Instant>,
    /// Status PDUs missing before it.
    status_seq_err: u16,
    /// The server stopped the test: send one confirming load PDU and end.
    stop: bool,
    /// End without confirming (a failure).
    abort: bool,
}

/// Sends and listens until the server stops the test, `bound` at most.
pub async fn run(
    socket: UdpSocket,
    accepted: &Activation,
    bound: Duration,
    progress: &ProgressFn,
) -> Result<Ended, ClientError> {
    let std_socket = socket
        .into_std()
        .map_err(|e| ClientError::io("UDPST: preparing the sender", &e))?;
    let sender_socket = std_socket
        .try_clone()
        .map_err(|e| ClientError::io("UDPST: preparing the sender", &e))?;
    let socket = UdpSocket::from_std(std_socket)
        .map_err(|e| ClientError::io("UDPST: preparing the receiver", &e))?;
    let steer = Arc::new(Mutex::new(Steer {
        rate: accepted.rate,
        ..Steer::default()
    }));
    let sender = {
        let steer = steer.clone();
        std::thread::spawn(move || send(sender_socket, &steer))
    };
    let listened = listen(&socket, &steer, bound, progress).await;
    if listened.is_err() {
        lock(&steer).abort = true;
    }
    let _ = tokio::task::spawn_blocking(move || sender.join()).await;
    listened
}

fn lock(steer: &Mutex<Steer>) -> std::sync::MutexGuard<'_, Steer> {
    steer.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads the server's Status PDUs: the row to send, the echo for round trips, and each
/// new sub-interval it measured.
async fn listen(
    socket: &UdpSocket,
    steer: &Mutex<Steer>,
    bound: Duration,
    progress: &ProgressFn,
) -> Result<Ended, ClientError> {
    let started = tokio::time::Instant::now();
    let deadline = started + bound;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut ended = Ended::default();
    let (mut last_seq, mut last_sub) = (0u32, 0u32);
    loop {
        let got = tokio::time::timeout_at(
            (tokio::time::Instant::now() + NO_TRAFFIC).min(deadline),
            socket.recv(&mut buf),
        )
        .await;
        let n = match got {
            Err(_) if tokio::time::Instant::now() >= deadline => {
                return Err(ClientError::new(
                    FailureReason::Timeout,
                    format!("the UDPST test did not end within {bound:?}"),
                ))
            }
            Err(_) => {
                return Err(ClientError::new(
                    FailureReason::StreamError,
                    format!(
                        "the UDPST server sent no status for {NO_TRAFFIC:?}: it stopped mid-test"
                    ),
                ))
            }
            Ok(Err(e)) => return Err(mid_test("receiving status", &e)),
            Ok(Ok(n)) => n,
        };
        let Ok(Pdu::Status(status)) = Pdu::decode(&buf[..n]) else {
            ended.ignored += 1;
            continue;
        };
        {
            let mut s = lock(steer);
            s.status_seq_err = if status.seq > last_seq {
                (status.seq - last_seq - 1).min(u32::from(u16::MAX)) as u16
            } else {
                u16::MAX
            };
            last_seq = last_seq.max(status.seq);
            s.status_sent = status.sent;
            s.status_heard = Some(Instant::now());
            if status.action == TestAction::Test {
                s.rate = status.rate;
            } else {
                s.stop = true;
            }
        }
        if status.rtt_min != NO_DELAY {
            ended.rtt_min_ms = Some(
                ended
                    .rtt_min_ms
                    .map_or(status.rtt_min, |m| m.min(status.rtt_min)),
            );
        }
        if status.sub_interval_seq != last_sub && status.sub_interval_seq > 0 {
            last_sub = status.sub_interval_seq;
            ended.sub_intervals.push(status.sub_interval);
            progress(Progress {
                direction: Direction::Up,
                elapsed: started.elapsed(),
                rate_bps: status.sub_interval.ip_rate_bps(IPV4_UDP_OVERHEAD),
            });
        }
        if status.action != TestAction::Test {
            return Ok(ended);
        }
    }
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

/// One of the row's two timers.
#[derive(Debug, Clone, Copy)]
struct Timer {
    next: Instant,
}

/// The sender thread: each timer sends its burst every interval of the current row.
fn send(socket: StdSocket, steer: &Mutex<Steer>) {
    let Some(mut out) = Out::new(socket) else {
        return;
    };
    let start = Instant::now();
    let jitter = || Duration::from_micros(5_000 + u64::from(rand::random::<u16>()) % 45_000);
    let mut timers = [
        Timer {
            next: start + jitter(),
        },
        Timer {
            next: start + jitter(),
        },
    ];
    loop {
        let s = *lock(steer);
        if s.abort {
            return;
        }
        if s.stop {
            out.burst(&s, TestAction::Stop2, MIN_PAYLOAD, 1);
            return;
        }
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
        for (timer, (interval_us, payload, burst, addon)) in timers.iter_mut().zip(rows) {
            if interval_us == 0 {
                timer.next = timer.next.max(now);
                continue;
            }
            let interval = Duration::from_micros(u64::from(interval_us));
            let mut intervals = 0;
            while timer.next <= now && intervals < CATCH_UP {
                out.burst(&s, TestAction::Test, payload, burst);
                if addon != 0 {
                    out.burst(&s, TestAction::Test, addon, 1);
                }
                timer.next += interval;
                intervals += 1;
            }
            if timer.next <= now {
                // Too far behind: start again from now rather than burst.
                timer.next = now + interval;
            }
            wake = wake.min(timer.next);
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
        rx_stopped: false,
        seq,
        udp_payload: size,
        status_seq_err: s.status_seq_err,
        status_time: s.status_sent,
        sent: ns_stamp(now_ns()),
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
}
