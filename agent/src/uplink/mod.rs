//! The link from the agent to its collector: batches of spooled results out, ids
//! committed back. [`Link`] is what the daemon's uplink loop talks to: [`quic::QuicLink`]
//! in production (mutual TLS to the collector the agent enrolled with); a test joins an
//! agent to a collector's ingest in one process with a link of its own. Failures are
//! retried with exponential backoff and full jitter ([`Backoff`]).

pub mod link;
pub mod quic;

pub use link::{fitting, Backoff, Link, Outgoing, UplinkError, ANSWER_TIMEOUT, MAX_BATCH_BYTES};
pub use quic::QuicLink;
