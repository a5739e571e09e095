//! `sonde-agent` library: what the agent's commands are made of. `probe` and the
//! modules it uses measure; `spool` keeps results on disk until the collector has them.
//! The binary (`main.rs`) holds the command line.

pub mod arrivals;
pub mod budget;
pub mod busy;
pub mod client;
pub mod config;
pub mod daemon;
pub mod discover;
pub mod identity;
pub mod iperf3;
pub mod latency;
pub mod metrics;
pub mod netif;
pub mod probe;
pub mod radio;
pub mod sampler;
pub mod schedule;
pub mod spool;
pub mod uplink;
pub mod verdict;
pub mod wifi;
