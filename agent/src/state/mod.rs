//! What the agent keeps on disk in its state directory: the spool of results waiting
//! for the collector, the data budget ledger, and the atomic file writes both rely on.

pub mod files;
pub mod ledger;
pub mod spool;
