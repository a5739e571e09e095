//! `GET /metrics`: the fleet's series ([`crate::fleet::Fleet`], kept up to date at
//! commit in an injected registry) and the collector's own `sonde_collector_*`, built
//! at each scrape from the ingest's counters. A scrape drops the series of silent
//! agents, then encodes; it never reads the store.

use crate::ingest::Ingest;
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use sonde_proto::metrics::{self as m, Metric};
use std::sync::atomic::Ordering;

fn counter(registry: &Registry, metric: &Metric, value: u64) {
    if let Ok(c) = IntCounter::new(metric.name, metric.help) {
        c.inc_by(value);
        let _ = registry.register(Box::new(c));
    }
}

/// What `/metrics` serves.
#[derive(Debug)]
pub struct Exporter {
    ingest: std::sync::Arc<Ingest>,
    registry: Registry,
    /// The last page and when it was rendered: concurrent scrapes within
    /// [`PAGE_MAX_AGE`] share one render.
    page: std::sync::Mutex<Option<(std::time::Instant, std::sync::Arc<String>)>>,
    last_len: std::sync::atomic::AtomicUsize,
    http: Option<std::sync::Arc<crate::transport::http::Gate>>,
}

/// How long a rendered page is served again to other scrapers.
pub const PAGE_MAX_AGE: std::time::Duration = std::time::Duration::from_millis(500);

impl Exporter {
    /// Serves the fleet of `ingest`, its counters, and whatever else is registered in
    /// `registry` (injected: nothing is global).
    pub fn new(ingest: std::sync::Arc<Ingest>, registry: Registry) -> Self {
        Exporter {
            ingest,
            registry,
            page: std::sync::Mutex::new(None),
            last_len: std::sync::atomic::AtomicUsize::new(0),
            http: None,
        }
    }

    /// Also exports the HTTP port's refusals and cuts, from `gate`.
    pub fn with_http(mut self, gate: std::sync::Arc<crate::transport::http::Gate>) -> Self {
        self.http = Some(gate);
        self
    }

    /// The metrics text (Prometheus text format 0.0.4), rendered at most once per
    /// [`PAGE_MAX_AGE`] however many scrape at once.
    pub fn page(&self) -> std::sync::Arc<String> {
        let mut cached = self.page.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, page)) = cached.as_ref() {
            if at.elapsed() < PAGE_MAX_AGE {
                return page.clone();
            }
        }
        let page = std::sync::Arc::new(self.render());
        *cached = Some((std::time::Instant::now(), page.clone()));
        page
    }

    /// Renders the page now.
    pub fn render(&self) -> String {
        // The page is about as large as last time: allocate it once.
        let hint = self.last_len.load(std::sync::atomic::Ordering::Relaxed);
        let mut out = String::with_capacity(hint + hint / 8);
        if let Some(fleet) = self.ingest.fleet() {
            fleet.sweep(chrono::Utc::now());
            fleet.render(&mut out);
        }
        let mut families = self.registry.gather();
        families.extend(own(&self.ingest, self.http.as_deref()).gather());
        let mut own_text = Vec::new();
        let _ = TextEncoder::new().encode(&families, &mut own_text);
        out.push_str(&String::from_utf8_lossy(&own_text));
        self.last_len
            .store(out.len(), std::sync::atomic::Ordering::Relaxed);
        out
    }
}

/// The collector's own metrics, from `ingest`'s counters.
fn own(ingest: &Ingest, http: Option<&crate::transport::http::Gate>) -> Registry {
    let registry = Registry::new();
    let labelled = |metric: &Metric, label: &str, values: Vec<(&str, u64)>| {
        if let Ok(c) = IntCounterVec::new(Opts::new(metric.name, metric.help), &[label]) {
            for (v, n) in values {
                c.with_label_values(&[v]).inc_by(n);
            }
            let _ = registry.register(Box::new(c));
        }
    };
    let rejects = ingest.rejects();
    labelled(
        &m::COLLECTOR_REJECTS,
        "reason",
        rejects.iter().map(|(r, n)| (r.as_str(), *n)).collect(),
    );
    if let Some(gate) = http {
        labelled(
            &m::COLLECTOR_HTTP_REFUSED,
            "reason",
            gate.cuts()
                .into_iter()
                .map(|(c, n)| (c.as_str(), n))
                .collect(),
        );
    }
    let s = ingest.commit_stats();
    labelled(
        &m::COLLECTOR_RESULTS,
        "kind",
        vec![
            ("new", s.results_new.load(Ordering::Relaxed)),
            ("duplicate", s.results_duplicate.load(Ordering::Relaxed)),
        ],
    );
    for (metric, value) in [
        (m::COLLECTOR_UPLOADS, s.batches.load(Ordering::Relaxed)),
        (m::COLLECTOR_COMMITS, s.commits.load(Ordering::Relaxed)),
        (
            m::COLLECTOR_COMMIT_FAILURES,
            s.failures.load(Ordering::Relaxed),
        ),
        (m::COLLECTOR_FRAMES_SKIPPED, ingest.frames_skipped()),
        (m::COLLECTOR_FUTURE_DATED, ingest.future_dated()),
        (m::COLLECTOR_RESULTS_MISSING, ingest.missing()),
        (m::COLLECTOR_ENROLMENTS, ingest.enrolments()),
        (m::COLLECTOR_PLANS_PUSHED, ingest.plans_pushed()),
    ] {
        counter(&registry, &metric, value);
    }
    let _ = registry.register(Box::new(s.commit_seconds.clone()));
    for (metric, value) in [
        (m::COLLECTOR_CONNECTIONS, ingest.connections()),
        (m::COLLECTOR_PLAN_VERSION, ingest.plan_version()),
    ] {
        if let Ok(g) = IntGauge::new(metric.name, metric.help) {
            g.set(value as i64);
            let _ = registry.register(Box::new(g));
        }
    }
    registry
}
