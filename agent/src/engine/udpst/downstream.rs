//! A downstream test: the server sends load PDUs at the rate its search chose; the
//! agent counts them ([`Receiver`]) and reports every trial interval in a Status PDU,
//! until the server's stop, which the agent confirms.

use crate::engine::options::{Progress, ProgressFn};
use crate::engine::udpst::shared::{mid_test, now_ns, Ended, NO_TRAFFIC};
use crate::net::target::ClientError;
use sonde_method::capacity::Receiver;
use sonde_proto::udpst::{Activation, Pdu, SendingRate, TestAction, MAX_DATAGRAM};
use sonde_proto::{Direction, FailureReason};
use std::time::Duration;
use tokio::net::UdpSocket;

/// Receives until the server stops the test, `bound` at most.
pub async fn run(
    socket: &UdpSocket,
    accepted: &Activation,
    bound: Duration,
    progress: &ProgressFn,
) -> Result<Ended, ClientError> {
    let started = tokio::time::Instant::now();
    let deadline = started + bound;
    let mut rx = Receiver::new(accepted.trial_ms, accepted.sub_interval_ms, now_ns());
    let trial = Duration::from_millis(u64::from(accepted.trial_ms.max(1)));
    let mut tick = tokio::time::interval_at(started + trial, trial);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut last_heard = started;
    let mut ignored = 0u64;
    loop {
        tokio::select! {
            got = socket.recv(&mut buf) => {
                let n = got.map_err(|e| mid_test("receiving load", &e))?;
                last_heard = tokio::time::Instant::now();
                match Pdu::decode(&buf[..n]) {
                    Ok(Pdu::Load(load)) => {
                        rx.on_load(&load, now_ns());
                        if load.action != TestAction::Test {
                            // The server's stop: confirm it in one last status.
                            if let Some(s) = rx.status(now_ns(), TestAction::Stop2, SendingRate::default()) {
                                let _ = socket.send(&s.encode()).await;
                            }
                            return Ok(Ended {
                                sub_intervals: rx.sub_intervals().to_vec(),
                                ignored,
                                rtt_min_ms: rx.rtt_min_ms(),
                            });
                        }
                    }
                    _ => ignored += 1,
                }
            }
            _ = tick.tick() => {
                if let Some(s) = rx.status(now_ns(), TestAction::Test, SendingRate::default()) {
                    socket.send(&s.encode()).await.map_err(|e| mid_test("sending status", &e))?;
                    if s.sub_interval_seq > 0 && s.seq % 20 == 0 {
                        progress(Progress {
                            direction: Direction::Down,
                            elapsed: started.elapsed(),
                            rate_bps: s.sub_interval.ip_rate_bps(sonde_proto::udpst::IPV4_UDP_OVERHEAD),
                        });
                    }
                }
                if last_heard.elapsed() >= NO_TRAFFIC {
                    return Err(ClientError::new(
                        FailureReason::StreamError,
                        format!("the UDPST server sent nothing for {NO_TRAFFIC:?}: it stopped mid-test"),
                    ));
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Err(ClientError::new(
                    FailureReason::Timeout,
                    format!("the UDPST test did not end within {bound:?}"),
                ));
            }
        }
    }
}
