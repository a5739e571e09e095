//! What the two directions of a UDPST test share: the wall clock the protocol's
//! timestamps carry, the silence that ends a test, and what a finished test leaves.

use crate::net::target::ClientError;
use sonde_proto::udpst::SubInterval;
use sonde_proto::FailureReason;

pub use sonde_udpst::{now_ns, NO_TRAFFIC};

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
