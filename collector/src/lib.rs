//! `sonde-collector` library: what the collector's commands are made of.
//!
//! - [`server`]: the collector as a library function with a real drain;
//! - [`ingest`]: frames, the group-commit writer, enrolment;
//! - [`transport`]: QUIC with mutual TLS;
//! - [`ca`]: the certificate authority, behind a seam;
//! - [`keys`]: the CA and report key, from files or sealed in a shared store;
//! - [`api`]: the HTTP API, one module per resource;
//! - [`fleet`], [`metrics`]: the fleet's series and `/metrics`;
//! - [`log`]: the transparency log's signed checkpoints, and their monitor;
//! - [`plans`]: the plans pushed to agents, their versions and diffs;
//! - [`report`]: compliance reports (figures from `sonde-method`), rendered and signed;
//! - [`config`]: the configuration, every problem at once;
//! - [`guard`]: the store, checked to be called off the async workers.
//!
//! The store is reached through `sonde-store`'s role traits only.
#![warn(missing_docs)]

pub mod api;
pub mod ca;
pub mod config;
pub mod fleet;
pub mod guard;
pub mod ingest;
pub mod keys;
pub mod log;
pub mod metrics;
pub mod plans;
pub mod report;
pub mod server;
pub mod transport;
