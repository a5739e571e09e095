//! An upstream test, server side: the load PDUs are counted ([`Receiver`]); every
//! trial a Status PDU tells the client what arrived, the last sub-interval, and the row
//! to send next, chosen by the rate search from that trial. At the test's end the
//! status carries the stop until the client confirms it with a load PDU.

use super::session::{log_end, test_time, Accepted};
use sonde_method::capacity::Receiver;
use sonde_proto::udpst::*;
use sonde_udpst::{batch, now_ns, NO_TRAFFIC};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// Receives until the client confirms the stop; `true` when it did.
pub async fn run(socket: UdpSocket, mut t: Accepted) -> bool {
    let a = t.activation;
    let mut rx = Receiver::new(a.trial_ms, a.sub_interval_ms, now_ns());
    let Ok(mut batch) = batch::Receiver::new(&socket) else {
        return false;
    };
    let trial = Duration::from_millis(u64::from(a.trial_ms.max(1)));
    let started = Instant::now();
    let stop_at = started + test_time(&a);
    let (mut next_status, mut last_heard) = (started + trial, started);
    let mut action = TestAction::Test;
    let confirmed = loop {
        let (mut confirmed, mut again) = (false, false);
        let got = tokio::time::timeout_at(
            next_status.min(last_heard + NO_TRAFFIC),
            batch.recv(&socket, |datagram| match Pdu::decode(datagram) {
                Ok(Pdu::Load(load)) => {
                    rx.on_load(&load, now_ns());
                    confirmed |= load.action != TestAction::Test;
                }
                Ok(Pdu::Activation(_)) => again = true,
                _ => {}
            }),
        )
        .await;
        match got {
            Ok(Ok(_)) => last_heard = Instant::now(),
            // The client's port closed: after the stop it left, before it it died.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                break action != TestAction::Test
            }
            Ok(Err(_)) | Err(_) => {}
        }
        if confirmed {
            break true;
        }
        if again {
            let _ = socket.send(&t.answer).await;
        }
        let now = Instant::now();
        if now >= next_status {
            next_status = (next_status + trial).max(now);
            if now >= stop_at {
                action = TestAction::Stop2;
            }
            if let Some(mut status) = rx.status(now_ns(), action, SendingRate::default()) {
                let row = if action == TestAction::Test {
                    t.search.adjust(&status)
                } else {
                    t.search.index()
                };
                status.rate = t.table.row(row);
                let version = t.activation.version;
                let _ = socket.send(&status.encode_for(version)).await;
            }
        }
        if last_heard.elapsed() >= NO_TRAFFIC {
            tracing::info!(peer = %t.peer, "UDPST: the client fell silent; test ended");
            break false;
        }
    };
    log_end(&t, "up", rx.sub_intervals(), confirmed);
    confirmed
}
