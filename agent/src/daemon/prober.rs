//! How the daemon runs one probe, injected: the engines in production; a test gives
//! results of its own making, so schedules, budgets and uploads are tested on virtual
//! time without a network.

use crate::engine::{self, Options};
use futures_util::future::BoxFuture;
use sonde_proto::ResultRecord;

/// Runs one probe and returns its record (a failure is a record too).
pub trait Prober: Send + Sync + std::fmt::Debug {
    /// Probes as `opts` says.
    fn probe<'a>(&'a self, opts: &'a Options) -> BoxFuture<'a, ResultRecord>;
}

/// The measuring engines ([`engine::run`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Engines;

impl Prober for Engines {
    fn probe<'a>(&'a self, opts: &'a Options) -> BoxFuture<'a, ResultRecord> {
        Box::pin(engine::run(opts, &|_| {}))
    }
}
