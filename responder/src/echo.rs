//! UDP echo: answers each valid request datagram with its reply, stamped with the
//! receive time. Anything else is dropped and counted, never answered, so the port
//! cannot be used to reflect traffic.

use sonde_proto::echo::{reply_in_place, MAX_LEN};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::net::UdpSocket;

/// Serves echo requests until `stop` turns true.
pub async fn serve(sock: UdpSocket, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut buf = vec![0u8; MAX_LEN + 1];
    let (mut echoed, mut dropped) = (0u64, 0u64);
    loop {
        let (len, peer) = tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "udp receive failed");
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        match reply_in_place(&mut buf[..len], now_ns) {
            Ok(n) => {
                if sock.send_to(&buf[..n], peer).await.is_ok() {
                    echoed += 1;
                }
            }
            Err(e) => {
                dropped += 1;
                tracing::debug!(%peer, error = %e, "udp datagram dropped");
            }
        }
    }
    tracing::info!(echoed, dropped, "udp echo stopped");
}
