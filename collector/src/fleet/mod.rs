//! The fleet's latest figures, as `/metrics` serves them: the [`FleetView`] seam that
//! ingest updates at commit and the exporter renders. This collector keeps them in
//! memory ([`memory::Fleet`]); several collectors on one database will rebuild theirs
//! from the store, so every collector's `/metrics` agrees.

pub mod memory;
pub mod view;

pub use memory::Fleet;
pub use view::FleetView;

use sonde_proto::wire::Health;
use sonde_store::{Delivery, ResultReader, StoreError};

/// Rebuilds `view`'s series from the store (on start): each access's latest result and
/// each agent's latest health, coordinates and last delivery. Returns the accesses.
pub fn rebuild(view: &dyn FleetView, store: &dyn ResultReader) -> Result<usize, StoreError> {
    let latest = store.latest_results()?;
    for (delivery, r) in &latest {
        view.result(delivery, r, false);
    }
    for a in store.agents()? {
        let delivery = Delivery {
            agent_id: a.id.clone(),
            quartier: a.quartier.clone(),
            building: a.building.clone(),
        };
        let health: Option<Health> = a
            .health
            .as_ref()
            .and_then(|h| serde_json::from_value(h.clone()).ok());
        view.health(&delivery, health.as_ref(), a.last_seen);
        if let (Some(lat), Some(lon)) = (a.latitude, a.longitude) {
            view.building(
                &a.id,
                a.quartier.as_deref().unwrap_or(""),
                a.building.as_deref().unwrap_or(""),
                lat,
                lon,
            );
        }
    }
    Ok(latest.len())
}
