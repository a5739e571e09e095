//! The agent's view of the box's network: interface facts read from sysfs (existence,
//! link speed, MTU), sockets bound to an interface (SO_BINDTODEVICE) and the kernel's
//! TCP_INFO of a connection. Owns one of the agent's two `unsafe` blocks (one
//! getsockopt; the other reads the clock's synchronisation, `daemon::clock`).

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

/// Facts about one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Kernel name.
    pub name: String,
    /// Negotiated link speed, bit/s, when the driver reports one.
    pub link_speed_bps: Option<u64>,
    /// MTU, bytes.
    pub mtu: Option<u32>,
}

fn sysfs(name: &str) -> PathBuf {
    PathBuf::from("/sys/class/net").join(name)
}

/// The names of this box's network interfaces, sorted (none when sysfs cannot be read).
pub fn names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Looks an interface up; `Err` names it when it does not exist.
pub fn interface(name: &str) -> Result<Interface, String> {
    if name.is_empty() || name.len() > 15 || name.contains('/') || name.starts_with('.') {
        return Err(format!(
            "--interface {name:?} is not a valid interface name"
        ));
    }
    let dir = sysfs(name);
    if !dir.exists() {
        return Err(format!(
            "--interface {name:?}: no such interface on this box"
        ));
    }
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
    // Drivers without a speed (loopback, veth, tun) fail the read or report -1.
    let link_speed_bps = read("speed")
        .and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|&mbps| mbps > 0)
        .map(|mbps| mbps as u64 * 1_000_000);
    let mtu = read("mtu").and_then(|s| s.trim().parse::<u32>().ok());
    Ok(Interface {
        name: name.to_string(),
        link_speed_bps,
        mtu,
    })
}

/// The kernel's index of interface `name` (from sysfs), `None` when there is none.
pub fn index(name: &str) -> Option<u32> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return None;
    }
    std::fs::read_to_string(sysfs(name).join("ifindex"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Opens a TCP connection to `addr`, bound to `interface` when given, with Nagle off.
pub async fn connect_tcp(addr: SocketAddr, interface: Option<&str>) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(name) = interface {
        socket.bind_device(Some(name.as_bytes()))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Opens a UDP socket connected to `addr`, bound to `interface` when given.
pub async fn connect_udp(addr: SocketAddr, interface: Option<&str>) -> std::io::Result<UdpSocket> {
    let local: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().map_err(std::io::Error::other)?
    } else {
        "[::]:0".parse().map_err(std::io::Error::other)?
    };
    let socket = UdpSocket::bind(local).await?;
    if let Some(name) = interface {
        socket.bind_device(Some(name.as_bytes()))?;
    }
    socket.connect(addr).await?;
    Ok(socket)
}

/// `TCPI_OPT_TIMESTAMPS` of linux/tcp.h (not exported by the libc crate).
const TCPI_OPT_TIMESTAMPS: u8 = 1;

/// The few TCP_INFO fields sonde records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpInfo {
    /// Sender MSS: TCP payload bytes per full segment this side sends.
    pub snd_mss: u32,
    /// Receiver MSS: largest TCP payload per segment seen from the peer (the kernel
    /// measures it per segment, GRO or not).
    pub rcv_mss: u32,
    /// Whether TCP timestamps were negotiated (12 option bytes per segment).
    pub timestamps: bool,
    /// Segments retransmitted over the connection's life.
    pub total_retrans: u32,
    /// Smoothed RTT, microseconds.
    pub rtt_us: u32,
    /// Data-carrying segments received (in order or not, retransmissions included).
    pub data_segs_in: u32,
    /// Segments the peer has acknowledged or selectively acknowledged.
    pub delivered: u32,
}

/// Reads TCP_INFO of a connected stream.
pub fn tcp_info(stream: &TcpStream) -> std::io::Result<TcpInfo> {
    tcp_info_fd(stream.as_raw_fd())
}

/// Reads TCP_INFO of the socket `fd`; the caller guarantees `fd` is open.
pub fn tcp_info_fd(fd: std::os::fd::RawFd) -> std::io::Result<TcpInfo> {
    // SAFETY: `info` is a properly sized, zeroed `tcp_info`; the kernel writes at most
    // `len` bytes into it and updates `len`; `fd` is open (the caller guarantees it), and
    // getsockopt on a non-socket only fails with ENOTSOCK.
    #[allow(unsafe_code)]
    let (rc, info) = unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        (rc, info)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(TcpInfo {
        snd_mss: info.tcpi_snd_mss,
        rcv_mss: info.tcpi_rcv_mss,
        timestamps: info.tcpi_options & TCPI_OPT_TIMESTAMPS != 0,
        total_retrans: info.tcpi_total_retrans,
        rtt_us: info.tcpi_rtt,
        data_segs_in: info.tcpi_data_segs_in,
        delivered: info.tcpi_delivered,
    })
}

impl TcpInfo {
    /// TCP payload per full segment in the direction that carried the data: what this
    /// side sends (upload) or what it receives (download).
    pub fn payload_mss(&self, sending: bool) -> u32 {
        if sending {
            self.snd_mss
        } else {
            self.rcv_mss
        }
    }
}

/// IP packet size over TCP payload for full segments of `mss` payload bytes: the factor
/// that turns TCP goodput into the IP-layer rate (docs/METHODOLOGY.md, "IP-layer rate").
pub fn ip_overhead_ratio(mss: u32, timestamps: bool, ipv6: bool) -> f64 {
    if mss == 0 {
        return 1.0;
    }
    let ip_header = if ipv6 { 40 } else { 20 };
    let tcp_header = 20 + if timestamps { 12 } else { 0 };
    f64::from(mss + ip_header + tcp_header) / f64::from(mss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_ratio_for_ethernet_with_timestamps_is_1500_over_1448() {
        assert!((ip_overhead_ratio(1448, true, false) - 1500.0 / 1448.0).abs() < 1e-12);
        assert!((ip_overhead_ratio(1460, false, false) - 1500.0 / 1460.0).abs() < 1e-12);
        assert!((ip_overhead_ratio(1428, true, true) - 1500.0 / 1428.0).abs() < 1e-12);
        assert_eq!(ip_overhead_ratio(0, true, false), 1.0);
        let info = TcpInfo {
            snd_mss: 32768,
            rcv_mss: 1448,
            ..TcpInfo::default()
        };
        assert_eq!(
            (info.payload_mss(false), info.payload_mss(true)),
            (1448, 32768)
        );
    }

    #[test]
    fn loopback_exists_and_bad_names_are_named() {
        let lo = interface("lo").expect("every Linux box has lo");
        assert_eq!(lo.name, "lo");
        assert!(lo.mtu.is_some());
        let err = interface("nosuchif0").expect_err("no such interface");
        assert!(err.contains("nosuchif0"), "{err}");
        assert!(interface("../etc").is_err());
    }
}
