//! `sonde-method`: the methodology of docs/METHODOLOGY.md as pure code, shared by the
//! agent and the collector. Every function takes time as an argument: no clock, no
//! I/O, no runtime, so each rule is tested on virtual time.
//!
//! - [`access`]: what an access to probe must be, in `agent.toml` and in plans;
//! - [`sampler`]: 100 ms sampling, warm-up trimming and the stop rule (§1);
//! - [`latency`]: a UDP echo train's figures (§2);
//! - [`verdict`]: the IP-layer rate against the target, with its one tolerance (§3);
//! - [`schedule`]: when each access is probed (§4);
//! - [`budget`]: monthly data budgets (§8);
//! - [`capacity`]: IP-layer capacity over UDPST, the receiver and the figures (§10);
//! - [`report`]: compliance report figures from stored results (§7).
#![warn(missing_docs)]

pub mod access;
pub mod budget;
pub mod capacity;
pub mod latency;
pub mod rate_search;
pub mod report;
pub mod rpm;
pub mod sampler;
pub mod schedule;
pub mod verdict;
