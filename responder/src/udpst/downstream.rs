//! A downstream test, server side: the sender thread sends the current row; every
//! Status PDU the client sends moves the rate search and is echoed in the next load
//! PDUs (so the client measures round trips). At the test's end the load PDUs carry the
//! stop until the client confirms it.

use super::session::{log_end, split, test_time, Accepted};
use sonde_proto::udpst::*;
use sonde_udpst::sender::{self, lock, Phase, Steer};
use sonde_udpst::NO_TRAFFIC;
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// Sends until the client confirms the stop; `true` when it did.
pub async fn run(socket: UdpSocket, mut t: Accepted) -> bool {
    let Some((socket, sender_socket)) = split(socket) else {
        return false;
    };
    let steer = Arc::new(Mutex::new(Steer {
        rate: t.table.row(t.search.index()),
        ..Steer::default()
    }));
    let sender = sender::spawn(sender_socket, steer.clone());
    let stop_at = Instant::now() + test_time(&t.activation);
    let mut last_heard = Instant::now();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let (mut last_seq, mut last_sub) = (0u32, 0u32);
    let mut reported = Vec::new();
    let confirmed = loop {
        let stopping = lock(&steer).phase == Phase::Stopping;
        let wake = if stopping {
            last_heard + NO_TRAFFIC
        } else {
            stop_at.min(last_heard + NO_TRAFFIC)
        };
        match tokio::time::timeout_at(wake, socket.recv(&mut buf)).await {
            Ok(Ok(n)) => match Pdu::decode(&buf[..n]) {
                Ok(Pdu::Status(status)) => {
                    last_heard = Instant::now();
                    if status.sub_interval_seq != last_sub && status.sub_interval_seq > 0 {
                        last_sub = status.sub_interval_seq;
                        reported.push(status.sub_interval);
                    }
                    if status.action != TestAction::Test {
                        break true;
                    }
                    steer_by(&steer, &mut t, &status, &mut last_seq);
                }
                Ok(Pdu::Activation(_)) => {
                    // Our answer was lost: the client asks again.
                    let _ = socket.send(&t.answer).await;
                }
                _ => {}
            },
            // The client's port closed: after the stop it left (its confirmation may
            // be what we have not read), before it the client died.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => break stopping,
            Ok(Err(_)) | Err(_) => {}
        }
        if Instant::now() >= stop_at {
            let mut s = lock(&steer);
            if s.phase == Phase::Test {
                s.phase = Phase::Stopping;
            }
        }
        if last_heard.elapsed() >= NO_TRAFFIC {
            tracing::info!(peer = %t.peer, "UDPST: the client fell silent; test ended");
            break false;
        }
    };
    lock(&steer).phase = Phase::End;
    let sent = tokio::task::spawn_blocking(move || sender.join())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    log_end(&t, "down", &reported, confirmed);
    tracing::debug!(
        datagrams = sent.datagrams,
        refused = sent.refused,
        "UDPST sender"
    );
    confirmed
}

/// A client's Status PDU: echoed from now on, and the rate search moved by it.
fn steer_by(steer: &Mutex<Steer>, t: &mut Accepted, status: &Status, last_seq: &mut u32) {
    let mut s = lock(steer);
    s.status_seq_err = if status.seq > *last_seq {
        (status.seq - *last_seq - 1).min(u32::from(u16::MAX)) as u16
    } else {
        u16::MAX
    };
    *last_seq = (*last_seq).max(status.seq);
    s.status_sent = status.sent;
    s.status_heard = Some(std::time::Instant::now());
    if s.phase == Phase::Test {
        s.rate = t.table.row(t.search.adjust(status));
    }
}
