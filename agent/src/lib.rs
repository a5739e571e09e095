//! `sonde-agent` library: what the agent's commands are made of.
//!
//! - [`engine`]: one measurement by the engine a responder URL names, over one driver;
//! - [`net`], [`context`]: sockets, interfaces, the busy line, radio context;
//! - [`state`]: the spool, the budget ledger, atomic files;
//! - [`identity`]: enrolment and the mutual-TLS identity;
//! - [`uplink`]: the link to the collector (QUIC), with backoff;
//! - [`daemon`]: `run`, the measure and uplink loops, status and `/metrics`;
//! - [`config`]: the configuration, checked as a whole.
//!
//! The pure methodology (sampling, verdict, schedule, budgets) is `sonde-method`.

pub mod config;
pub mod context;
pub mod daemon;
pub mod engine;
pub mod identity;
pub mod net;
pub mod state;
pub mod uplink;
