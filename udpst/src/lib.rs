//! The UDP Speed Test Protocol (RFC 9946) on sockets, shared by the agent's client
//! (`sonde-agent`'s `udpst://` engine) and the responder's server (`--udpst`):
//! [`batch`] moves many datagrams per system call, [`sender`] sends load PDUs at a
//! sending-rate row from a thread of its own. The PDUs are `sonde_proto::udpst`; the
//! receiver's accounting, the rate search and the figures are `sonde_method`.

#![warn(missing_docs)]

pub mod auth;
pub mod batch;
pub mod sender;

use std::net::SocketAddr;

/// Socket buffers asked for, each way: OB-UDPST's own size, room for 8 ms at 1 Gb/s.
pub const SOCKET_BUFFER: usize = 1_024_000;

/// Silence after which a running test has failed (OB-UDPST's own bound: a 1 s warning
/// plus 2 s).
pub const NO_TRAFFIC: std::time::Duration = std::time::Duration::from_secs(3);

/// Nanoseconds since the Unix epoch, on the wall clock (the clock the protocol's
/// timestamps carry).
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Asks for [`SOCKET_BUFFER`] each way: the default (about 200 kB) overflows in bursts
/// at a few hundred Mb/s; the kernel caps the request at net.core.rmem_max / wmem_max.
pub fn size_buffers(socket: &tokio::net::UdpSocket) {
    let sock = socket2::SockRef::from(socket);
    let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
}

/// The UDP, IP and (IPv6) extra header bytes of each datagram to `peer`.
pub fn overhead(peer: SocketAddr) -> u64 {
    if peer.is_ipv6() {
        sonde_proto::udpst::IPV6_UDP_OVERHEAD
    } else {
        sonde_proto::udpst::IPV4_UDP_OVERHEAD
    }
}
