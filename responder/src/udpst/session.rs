//! What every test connection shares: the server's limits, an activated test, its
//! time, its socket halves and its closing line.

use sonde_method::capacity::figures;
use sonde_method::rate_search::{RateSearch, RateTable};
use sonde_proto::udpst::{Activation, SubInterval};
use sonde_udpst::auth::{sign, verify, KeyFile, Keys};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;

/// What the server allows.
#[derive(Debug, Clone)]
pub struct Config {
    /// Tests running at once, all addresses together.
    pub max_tests: u32,
    /// Longest test, s.
    pub max_test_s: u16,
    /// Shared keys by id: when set, every test must authenticate (mode 1).
    pub keys: Option<Arc<KeyFile>>,
}

/// An authenticated test's keys: the server signs with one, checks the client's
/// control PDUs with the other.
#[derive(Debug, Clone)]
pub struct Signer {
    /// Derived from the shared key and the Setup Request's time.
    pub keys: Keys,
    /// The shared key's id.
    pub key_id: u8,
}

/// `pdu` signed with the server's key when the test is authenticated.
pub fn seal(signer: Option<&Signer>, mut pdu: Vec<u8>) -> Vec<u8> {
    if let Some(s) = signer {
        let now = sonde_udpst::now_ns() / 1_000_000_000;
        sign(&mut pdu, &s.keys.server, now as u32, s.key_id);
    }
    pdu
}

/// Whether the client's control PDU `raw` is acceptable: authenticated by the client's
/// key, or any when the test is not authenticated.
pub fn opens(signer: Option<&Signer>, raw: &[u8]) -> bool {
    signer.is_none_or(|s| verify(raw, &s.keys.client))
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
    /// The activation answer as sent (signed when the test is authenticated), sent
    /// again when the client asks again.
    pub answer: Vec<u8>,
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
