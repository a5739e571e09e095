//! What the two directions of a UDPST test share: the wall clock the protocol's
//! timestamps carry, the silence that ends a test, and what a finished test leaves.

use crate::net::target::ClientError;
use sonde_proto::udpst::SubInterval;
use sonde_proto::FailureReason;
use std::time::Duration;

/// Silence after which a running test has failed (OB-UDPST's own bound: a 1 s warning
/// plus 2 s).
pub const NO_TRAFFIC: Duration = Duration::from_secs(3);

/// What a test left: the receiver's sub-intervals, and datagrams that were no PDU the
/// test expected (counted, never fatal: a flood on the port must not end a test).
#[derive(Debug, Clone, Default)]
pub struct Ended {
    /// Sub-intervals, in order, as the receiver measured them.
    pub sub_intervals: Vec<SubInterval>,
    /// Datagrams ignored.
    pub ignored: u64,
    /// Smallest round trip the receiver saw, ms.
    pub rtt_min_ms: Option<u32>,
}

/// What an I/O error during a running test means: a closed port (the kernel heard
/// ICMP port unreachable) is a server that stopped mid-test.
pub fn mid_test(context: &str, e: &std::io::Error) -> ClientError {
    if e.kind() == std::io::ErrorKind::ConnectionRefused {
        ClientError::new(
            FailureReason::StreamError,
            format!("the UDPST server stopped mid-test: its port is closed ({context})"),
        )
    } else {
        ClientError::io(context, e)
    }
}

/// Nanoseconds since the Unix epoch, on the wall clock.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}
