//! `sonde-collector` library: the configuration, the `Store` boundary with its
//! embedded SQLite implementation, ingest and enrolment, the CA, the QUIC listener,
//! the HTTP API and the collector's own metrics. The binary holds the commands.
#![warn(missing_docs)]

pub mod config;
pub mod fleet;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod pki;
pub mod quic;
pub mod report;
