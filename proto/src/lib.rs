//! `sonde-proto`: the result record every sonde part carries, the small formats the
//! agent shares with the responder (info document, upload report, UDP echo packets) and
//! the agent⇄collector frames ([`wire`]). Sans-IO: no sockets, no runtime, no clock;
//! time is always passed in.
//!
//! The record is versioned ([`result::SCHEMA_VERSION`]); readers tolerate fields and enum
//! values they do not know, so newer writers never break older readers. See
//! `proto/SCHEMA.md` for the field-by-field documentation.
#![warn(missing_docs)]

pub mod echo;
pub mod metrics;
pub mod names;
pub mod plan;
pub mod responder;
pub mod result;
pub mod stats;
pub mod udpst;
pub mod wire;

pub use result::*;

/// Version of the measurement methodology implemented by this code base, as written in
/// `docs/METHODOLOGY.md`. Bumped whenever a figure's definition changes.
pub const METHODOLOGY_VERSION: &str = "4";
