//! The seam between ingest and `/metrics`: what updates the fleet's series at commit
//! and renders them at scrape.

use chrono::{DateTime, Utc};
use sonde_proto::wire::Health;
use sonde_proto::ResultRecord;
use sonde_store::Delivery;

/// The fleet's series: updated at commit, rendered at scrape.
pub trait FleetView: Send + Sync + std::fmt::Debug {
    /// A committed result of `delivery`'s agent (`new`: not a re-send).
    fn result(&self, delivery: &Delivery, r: &ResultRecord, new: bool);
    /// An agent's delivery at `now`, with its health.
    fn health(&self, delivery: &Delivery, health: Option<&Health>, now: DateTime<Utc>);
    /// A building's coordinates, from the enrolment of `agent`.
    fn building(&self, agent: &str, quartier: &str, building: &str, lat: f64, lon: f64);
    /// Drops agents silent since before `now` minus the horizon; how many.
    fn sweep(&self, now: DateTime<Utc>) -> usize;
    /// Appends the series to `out` in the Prometheus text format.
    fn render(&self, out: &mut String);
}
