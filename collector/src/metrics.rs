//! `GET /metrics`: the fleet's series ([`crate::fleet::Fleet`], kept up to date at
//! commit in an injected registry) and the collector's own `sonde_collector_*`, built
//! at each scrape from the ingest's counters. A scrape drops the series of silent
//! agents, then encodes; it never reads the store.

use crate::ingest::Ingest;
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use std::sync::atomic::Ordering;

fn counter(registry: &Registry, name: &str, help: &str, value: u64) {
    if let Ok(c) = IntCounter::new(name, help) {
        c.inc_by(value);
        let _ = registry.register(Box::new(c));
    }
}

/// What `/metrics` serves.
#[derive(Debug)]
pub struct Exporter {
    ingest: std::sync::Arc<Ingest>,
    fleet_registry: Registry,
}

impl Exporter {
    /// Serves `ingest`'s counters and the series registered in `fleet_registry`.
    pub fn new(ingest: std::sync::Arc<Ingest>, fleet_registry: Registry) -> Self {
        Exporter {
            ingest,
            fleet_registry,
        }
    }

    /// The metrics text (Prometheus text format 0.0.4).
    pub fn render(&self) -> String {
        if let Some(fleet) = self.ingest.fleet() {
            fleet.sweep(chrono::Utc::now());
        }
        let mut families = self.fleet_registry.gather();
        families.extend(own(&self.ingest).gather());
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&families, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The collector's own metrics, from `ingest`'s counters.
fn own(ingest: &Ingest) -> Registry {
    let registry = Registry::new();
    if let Ok(rejects) = IntCounterVec::new(
        Opts::new(
            "sonde_collector_rejects_total",
            "Frames, enrolments and connections refused, by reason.",
        ),
        &["reason"],
    ) {
        for (reason, n) in ingest.rejects() {
            let name = serde_json::to_value(reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "unknown".into());
            rejects.with_label_values(&[name.as_str()]).inc_by(n);
        }
        let _ = registry.register(Box::new(rejects));
    }
    let s = ingest.commit_stats();
    if let Ok(results) = IntCounterVec::new(
        Opts::new(
            "sonde_collector_results_total",
            "Results committed, by whether they were new or re-sent.",
        ),
        &["kind"],
    ) {
        results
            .with_label_values(&["new"])
            .inc_by(s.results_new.load(Ordering::Relaxed));
        results
            .with_label_values(&["duplicate"])
            .inc_by(s.results_duplicate.load(Ordering::Relaxed));
        let _ = registry.register(Box::new(results));
    }
    counter(
        &registry,
        "sonde_collector_uploads_total",
        "Agent uploads committed and acknowledged.",
        s.batches.load(Ordering::Relaxed),
    );
    counter(
        &registry,
        "sonde_collector_commits_total",
        "Store transactions committed (each may hold several uploads).",
        s.commits.load(Ordering::Relaxed),
    );
    counter(
        &registry,
        "sonde_collector_commit_failures_total",
        "Store transactions that failed (nothing acknowledged).",
        s.failures.load(Ordering::Relaxed),
    );
    let _ = registry.register(Box::new(s.commit_seconds.clone()));
    counter(
        &registry,
        "sonde_collector_enrolments_total",
        "Agents enrolled.",
        ingest.enrolments(),
    );
    if let Ok(g) = IntGauge::new(
        "sonde_collector_agent_connections",
        "Agent QUIC connections held now.",
    ) {
        g.set(ingest.connections() as i64);
        let _ = registry.register(Box::new(g));
    }
    registry
}
