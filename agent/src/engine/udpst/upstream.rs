//! An upstream test: the agent sends load PDUs as the server's sending-rate row says
//! (each Status PDU carries the row its search chose), and keeps the sub-interval
//! statistics the server measured, until the server's stop, which the agent confirms.
//!
//! The sending is `sonde_udpst::sender`'s thread; this side listens and steers it.

use crate::engine::options::{Progress, ProgressFn};
use crate::engine::udpst::shared::{mid_test, Ended, NO_TRAFFIC};
use crate::net::target::ClientError;
use sonde_proto::udpst::*;
use sonde_proto::{Direction, FailureReason};
use sonde_udpst::sender::{self, lock, Phase, Steer};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

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
    let sender = sender::spawn(sender_socket, steer.clone());
    let listened = listen(&socket, &steer, bound, progress).await;
    if listened.is_err() {
        lock(&steer).phase = Phase::End;
    }
    let _ = tokio::task::spawn_blocking(move || sender.join()).await;
    listened
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
                s.phase = Phase::Confirm;
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
