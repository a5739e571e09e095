//! `sonde-collector` library: the configuration, the `Store` boundary with its
//! embedded SQLite implementation, and the HTTP API. The binary holds the commands.
#![warn(missing_docs)]

pub mod config;
pub mod http;
pub mod ingest;
pub mod pki;
pub mod quic;
pub mod store;
