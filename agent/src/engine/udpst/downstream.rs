//! A downstream test: the server sends load PDUs at the rate its search chose; the
//! agent counts them ([`Receiver`]) and reports every trial interval in a Status PDU,
//! until the server's stop, which the agent confirms.

use crate::engine::options::{Progress, ProgressFn};
use crate::engine::udpst::shared::{mid_test, now_ns, Ended, NO_TRAFFIC};
use crate::net::target::ClientError;
use sonde_method::capacity::Receiver;
use sonde_proto::udpst::{Activation, Pdu, SendingRate, TestAction, IPV4_UDP_OVERHEAD};
use sonde_proto::{Direction, FailureReason};
use sonde_udpst::batch;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// Receives until the server stops the test, `bound` at most.
pub async fn run(
    socket: &UdpSocket,
    accepted: &Activation,
    bound: Duration,
    progress: &ProgressFn,
) -> Result<Ended, ClientError> {
    let started = Instant::now();
    let deadline = started + bound;
    let mut rx = Receiver::new(accepted.trial_ms, accepted.sub_interval_ms, now_ns());
    let trial = Duration::from_millis(u64::from(accepted.trial_ms.max(1)));
    let mut batch = batch::Receiver::new(socket)
        .map_err(|e| ClientError::io("UDPST: preparing the receiver", &e))?;
    let mut next_status = started + trial;
    let mut last_heard = started;
    let (mut ignored, mut stopped) = (0u64, false);
    loop {
        let wake = next_status.min(deadline);
        let got = tokio::time::timeout_at(
            wake,
            batch.recv(socket, |datagram| match Pdu::decode(datagram) {
                Ok(Pdu::Load(load)) => {
                    rx.on_load(&load, now_ns());
                    stopped |= load.action != TestAction::Test;
                }
                _ => ignored += 1,
            }),
        )
        .await;
        match got {
            Ok(Ok(_)) => last_heard = Instant::now(),
            Ok(Err(e)) => return Err(mid_test("receiving load", &e)),
            Err(_) => {}
        }
        if stopped {
            // The server's stop: confirm it in one last status.
            if let Some(s) = rx.status(now_ns(), TestAction::Stop2, SendingRate::default()) {
                let _ = socket.send(&s.encode_for(accepted.version)).await;
            }
            return Ok(Ended {
                sub_intervals: rx.sub_intervals().to_vec(),
                ignored,
                rtt_min_ms: rx.rtt_min_ms(),
            });
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(ClientError::new(
                FailureReason::Timeout,
                format!("the UDPST test did not end within {bound:?}"),
            ));
        }
        if now >= next_status {
            next_status = (next_status + trial).max(now);
            report(socket, &mut rx, accepted.version, started, progress).await?;
            if last_heard.elapsed() >= NO_TRAFFIC {
                return Err(ClientError::new(
                    FailureReason::StreamError,
                    format!(
                        "the UDPST server sent nothing for {NO_TRAFFIC:?}: it stopped mid-test"
                    ),
                ));
            }
        }
    }
}

/// Sends the trial's Status PDU (in the layout of protocol `version`), and the
/// progress of each new sub-interval.
async fn report(
    socket: &UdpSocket,
    rx: &mut Receiver,
    version: u16,
    started: Instant,
    progress: &ProgressFn,
) -> Result<(), ClientError> {
    let before = rx.sub_intervals().len();
    if let Some(s) = rx.status(now_ns(), TestAction::Test, SendingRate::default()) {
        socket
            .send(&s.encode_for(version))
            .await
            .map_err(|e| mid_test("sending status", &e))?;
    }
    if let Some(last) = rx.sub_intervals().get(before) {
        progress(Progress {
            direction: Direction::Down,
            elapsed: started.elapsed(),
            rate_bps: last.ip_rate_bps(IPV4_UDP_OVERHEAD),
        });
    }
    Ok(())
}
