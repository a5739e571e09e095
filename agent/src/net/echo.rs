//! UDP echo trains: probes sent at a fixed interval, each lost unless its echo is back
//! within the loss timeout. The idle train runs before any load; a loaded train runs
//! alongside each throughput direction until told to stop. Figures are computed by
//! `sonde_method::latency::summarize`, a pure function of the probes' outcomes.

use sonde_method::latency::{Probe, LOSS_TIMEOUT};
use sonde_proto::echo::{EchoPacket, Kind, MAX_LEN};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::Instant;

/// Size of each probe datagram (header plus padding).
const PROBE_LEN: usize = 64;

/// How a train runs.
#[derive(Debug, Clone, Copy)]
pub struct Train {
    /// Gap between probes.
    pub interval: Duration,
    /// Probes to send at most.
    pub max_count: u32,
}

/// Runs a train on a connected socket until `max_count` probes are sent or `stop`
/// turns true, then waits for outstanding echoes up to [`LOSS_TIMEOUT`].
/// `reference` is the instant `sent_at` is measured from.
pub async fn run(
    sock: &UdpSocket,
    train: Train,
    reference: Instant,
    mut stop: watch::Receiver<bool>,
) -> Vec<Probe> {
    let session: u32 = rand::random();
    let mut probes: Vec<Probe> = Vec::new();
    let mut send_times: Vec<Instant> = Vec::new();
    let mut buf = [0u8; MAX_LEN + 1];
    let mut next_send = Instant::now();
    let mut stopped = false;
    let mut outstanding = 0usize;
    loop {
        let sending = !stopped && (probes.len() as u32) < train.max_count;
        if !sending {
            let last = send_times.last().copied().unwrap_or_else(Instant::now);
            if outstanding == 0 || Instant::now() >= last + LOSS_TIMEOUT {
                break;
            }
        }
        let drain_deadline = send_times.last().copied().unwrap_or_else(Instant::now) + LOSS_TIMEOUT;
        let wake = if sending { next_send } else { drain_deadline };
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {
                if sending {
                    let now = Instant::now();
                    let seq = probes.len() as u32;
                    let packet = EchoPacket {
                        kind: Kind::Request,
                        session,
                        seq,
                        client_send_ns: now.duration_since(reference).as_nanos() as u64,
                        server_recv_ns: 0,
                    };
                    let mut out = [0u8; PROBE_LEN];
                    if packet.encode(&mut out).is_some() {
                        // A send error (no route yet, buffer full) is a lost probe.
                        let _ = sock.send(&out).await;
                    }
                    probes.push(Probe { sent_at: now.duration_since(reference), rtt: None });
                    send_times.push(now);
                    outstanding += 1;
                    next_send += train.interval;
                }
            }
            r = sock.recv(&mut buf) => {
                let Ok(n) = r else { continue };
                let now = Instant::now();
                let Ok(reply) = EchoPacket::decode(&buf[..n]) else { continue };
                if reply.kind != Kind::Reply || reply.session != session {
                    continue;
                }
                let Some(i) = usize::try_from(reply.seq).ok().filter(|&i| i < probes.len()) else { continue };
                let rtt = now.duration_since(send_times[i]);
                if probes[i].rtt.is_none() && rtt <= LOSS_TIMEOUT {
                    probes[i].rtt = Some(rtt);
                    outstanding -= 1;
                }
            }
            _ = stop.changed(), if !stopped => stopped = true,
        }
    }
    probes
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonde_method::latency::summarize;

    #[tokio::test]
    async fn train_against_a_local_echo_counts_lost_probes() {
        // A peer that echoes every other probe: half the train is lost.
        let peer = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = peer.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let mut n_seen = 0u32;
            while let Ok((n, from)) = peer.recv_from(&mut buf).await {
                n_seen += 1;
                if n_seen % 2 == 1 {
                    if let Ok(len) = sonde_proto::echo::reply_in_place(&mut buf[..n], 1) {
                        let _ = peer.send_to(&buf[..len], from).await;
                    }
                }
            }
        });
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        sock.connect(addr).await.expect("connect");
        let (_tx, rx) = watch::channel(false);
        let train = Train {
            interval: Duration::from_millis(10),
            max_count: 10,
        };
        let probes = run(&sock, train, Instant::now(), rx).await;
        let s = summarize(&probes);
        assert_eq!((s.sent, s.received), (10, 5), "{probes:?}");
    }
}
