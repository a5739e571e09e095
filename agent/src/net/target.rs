//! Where a responder is and how to reach it: its address resolved once, sockets bound
//! to the probed interface, and the error every measuring step reports, classified by
//! the record's failure reasons.

use crate::net::netif::{self, TcpInfo};
use sonde_proto::FailureReason;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// Patience for connecting and for a response head.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a request to the responder failed, classified for the result record.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ClientError {
    /// Failure class.
    pub reason: FailureReason,
    /// One-line detail.
    pub message: String,
}

impl ClientError {
    /// An error of this class.
    pub fn new(reason: FailureReason, message: impl Into<String>) -> Self {
        ClientError {
            reason,
            message: message.into(),
        }
    }

    pub(crate) fn io(context: &str, e: &std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        let reason = match e.kind() {
            ConnectionRefused => FailureReason::Refused,
            TimedOut => FailureReason::Timeout,
            _ if e.raw_os_error() == Some(libc::ENODEV) => FailureReason::Interface,
            _ if e.raw_os_error() == Some(libc::EPERM) => FailureReason::Interface,
            _ => FailureReason::StreamError,
        };
        ClientError::new(reason, format!("{context}: {e}"))
    }
}

/// Where the responder is and how to reach it.
#[derive(Debug, Clone)]
pub struct Target {
    /// Resolved address.
    pub addr: SocketAddr,
    /// Host header value.
    pub host: String,
    /// Interface to bind every socket to.
    pub interface: Option<String>,
}

/// What one data stream moved.
#[derive(Debug, Clone, Default)]
pub struct StreamStats {
    /// Payload bytes moved.
    pub bytes: u64,
    /// TCP_INFO at the end, when it could be read.
    pub info: Option<TcpInfo>,
}

impl Target {
    /// A TCP connection to the target, bound to its interface.
    pub(crate) async fn connect(&self) -> Result<TcpStream, ClientError> {
        match tokio::time::timeout(
            CONNECT_TIMEOUT,
            netif::connect_tcp(self.addr, self.interface.as_deref()),
        )
        .await
        {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(ClientError::io(&format!("connecting to {}", self.addr), &e)),
            Err(_) => Err(ClientError::new(
                FailureReason::Timeout,
                format!("no answer from {} within {CONNECT_TIMEOUT:?}", self.addr),
            )),
        }
    }
}

/// Resolves the responder URL to one address.
pub async fn resolve(url: &url::Url) -> Result<(SocketAddr, String), ClientError> {
    let host = url
        .host_str()
        .ok_or_else(|| ClientError::new(FailureReason::Dns, "the responder URL has no host"))?;
    let port = url
        .port()
        .unwrap_or_else(|| crate::engine::EngineKind::of(url).map_or(80, |e| e.default_port()));
    let host_header = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let lookup_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let lookup = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::lookup_host((lookup_host.as_str(), port)),
    )
    .await;
    match lookup {
        Err(_) => Err(ClientError::new(
            FailureReason::Dns,
            format!("resolving {host}: no answer within 5 s"),
        )),
        Ok(Err(e)) => Err(ClientError::new(
            FailureReason::Dns,
            format!("resolving {host}: {e}"),
        )),
        Ok(Ok(mut addrs)) => addrs
            .next()
            .map(|a| (a, host_header))
            .ok_or_else(|| ClientError::new(FailureReason::Dns, format!("{host} has no address"))),
    }
}
