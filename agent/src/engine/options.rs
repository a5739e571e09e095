//! What a probe is asked to do ([`Options`]), the responder URLs it accepts and the
//! engine each names ([`EngineKind`], read once from the URL's scheme), and the live
//! progress a terminal shows.

use crate::net::netif::Interface;
use sonde_proto::{AccessKind, Direction};
use std::time::Duration;

/// The measuring engine a responder URL names: read once from its scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// `http://HOST[:PORT]`: a sonde responder.
    SondeHttp,
    /// `iperf3://HOST[:PORT]`: a stock iperf3 server.
    Iperf3,
    /// `udpst://HOST[:PORT]`: a UDP Speed Test Protocol server (RFC 9946), for IP-layer
    /// capacity by RFC 9097.
    Udpst,
    /// `https://HOST[:PORT]/.well-known/nq`: a network-quality server, for
    /// responsiveness (RPM) only.
    Nq,
}

impl EngineKind {
    /// Every engine with its URL scheme and default port.
    pub const ALL: [(EngineKind, &'static str, u16); 4] = [
        (EngineKind::SondeHttp, "http", 80),
        (EngineKind::Iperf3, "iperf3", 5201),
        (EngineKind::Udpst, "udpst", sonde_proto::udpst::DEFAULT_PORT),
        (EngineKind::Nq, "https", 443),
    ];

    /// The engine `url`'s scheme names.
    pub fn of(url: &url::Url) -> Option<EngineKind> {
        Self::ALL
            .iter()
            .find(|(_, scheme, _)| *scheme == url.scheme())
            .map(|(e, _, _)| *e)
    }

    /// Port used when the URL gives none.
    pub fn default_port(self) -> u16 {
        Self::ALL
            .iter()
            .find(|(e, _, _)| *e == self)
            .map_or(80, |(_, _, port)| *port)
    }
}

/// Everything a probe needs, validated.
#[derive(Debug, Clone)]
pub struct Options {
    /// Responder base URL (`http://host:port`).
    pub responder: url::Url,
    /// Interface to bind to, already checked to exist.
    pub interface: Option<Interface>,
    /// Access kind.
    pub access: AccessKind,
    /// IP-layer targets `(down, up)`, bit/s: the kind's defaults unless configured.
    pub targets: (Option<f64>, Option<f64>),
    /// Parallel TCP streams per direction.
    pub streams: u32,
    /// Cap per direction.
    pub max_duration: Duration,
    /// Directions, in order.
    pub directions: Vec<Direction>,
    /// Idle latency probes to send.
    pub idle_probes: u32,
    /// Gap between idle latency probes.
    pub idle_interval: Duration,
    /// Payload bytes after which each direction stops (a data budget's allowance);
    /// `None`: no limit but the duration cap.
    pub max_bytes: Option<u64>,
    /// Responsiveness (RPM) to measure as well, when asked.
    pub rpm: Option<RpmOptions>,
}

/// How to measure responsiveness beside the throughput.
#[derive(Debug, Clone, Default)]
pub struct RpmOptions {
    /// The network-quality configuration URL; `None`: the sonde responder's own
    /// (`nq_port` of its info).
    pub config: Option<url::Url>,
    /// PEM certificates to trust for it instead of the system's roots.
    pub ca: Option<std::path::PathBuf>,
}

/// Live progress of a direction, for the terminal.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Direction running.
    pub direction: Direction,
    /// Time since the direction started.
    pub elapsed: Duration,
    /// Rate over the last second, bit/s.
    pub rate_bps: f64,
}

/// Receives progress updates.
pub type ProgressFn = dyn Fn(Progress) + Send + Sync;

/// Checks a responder URL: `http://HOST[:PORT]` for a sonde responder,
/// `iperf3://HOST[:PORT]` for a stock iperf3 server (the methodology's list, which
/// [`EngineKind::ALL`] follows).
pub fn responder_url(s: &str) -> Result<url::Url, String> {
    sonde_method::access::responder_url(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_the_checks_accept_has_an_engine_with_its_port() {
        for (scheme, port) in sonde_method::access::SCHEMES {
            let url = responder_url(&format!("{scheme}://r.example")).expect("accepted");
            let engine = EngineKind::of(&url).expect("an engine");
            assert_eq!(engine.default_port(), port, "{scheme}");
        }
        assert_eq!(EngineKind::ALL.len(), sonde_method::access::SCHEMES.len());
    }
}
