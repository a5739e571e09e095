//! What every test connection shares: the server's limits, an activated test, its
//! time, its socket halves and its closing line.

use sonde_method::capacity::figures;
use sonde_method::rate_search::{RateSearch, RateTable};
use sonde_proto::udpst::{Activation, SubInterval};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;

/// What the server allows.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Tests running at once, all addresses together.
    pub max_tests: u32,
    /// Longest test, s.
    pub max_test_s: u16,
}

/// The server's half of an activated test.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The activation as answered.
    pub activation: Activation,
    /// The rows for this test's datagram sizes.
    pub table: RateTable,
    /// The search over them.
    pub search: RateSearch,
    /// The client's address.
    pub peer: SocketAddr,
}

/// How long the test runs before the server stops it.
pub fn test_time(a: &Activation) -> Duration {
    Duration::from_secs(u64::from(a.test_s)) + STOP_AFTER
}

/// The socket for the async side and a clone for the sender thread.
pub fn split(socket: UdpSocket) -> Option<(UdpSocket, std::net::UdpSocket)> {
    let std_socket = socket.into_std().ok()?;
    let clone = std_socket.try_clone().ok()?;
    Some((UdpSocket::from_std(std_socket).ok()?, clone))
}

/// Half a second past the duration, as OB-UDPST stops.
pub const STOP_AFTER: Duration = Duration::from_millis(500);

/// The closing line of a test: its maximum IP-layer capacity as the receiver measured
/// it (the server for an upload, the client's reports for a download).
pub fn log_end(t: &Accepted, direction: &str, subs: &[SubInterval], confirmed: bool) {
    let a = &t.activation;
    let count = (u32::from(a.test_s) * 1000 / u32::from(a.sub_interval_ms.max(1))) as usize;
    let max = figures(subs, sonde_udpst::overhead(t.peer), count).map(|f| f.max_ip_capacity_bps);
    tracing::info!(
        peer = %t.peer,
        direction,
        sub_intervals = subs.len(),
        max_ip_capacity_mbps = max.map(|b| (b / 1e4).round() / 100.0),
        ran_to_stop = confirmed,
        "UDPST test ended"
    );
}
