//! The link from the agent to its collector: batches of spooled results out, the
//! collector's answers back ([`quic`], mutual TLS), with backoff between failures.

pub mod quic;

pub use quic::{fitting, Backoff, Uplink, UplinkError, ANSWER_TIMEOUT, MAX_BATCH_BYTES};
