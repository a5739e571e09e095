//! The fleet's latest figures as Prometheus series: one set per building, access and
//! direction, updated when results are committed (and rebuilt from the store on
//! start), never computed from result history when `/metrics` is scraped.
//!
//! Labels are bounded by the fleet: `quartier`, `building`, `agent`, `access`,
//! `direction`, `state`, `outcome`, `reason`, `kind`, `version` and the building's
//! coordinates. No result id, no address, no free text. Series of an agent silent for
//! longer than the horizon are removed.

use crate::store::Delivery;
use chrono::{DateTime, Utc};
use prometheus::{GaugeVec, IntCounterVec, Opts, Registry};
use sonde_proto::wire::Health;
use sonde_proto::{Direction, Outcome, ResultRecord, VerdictOutcome};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

const SITE: &[&str] = &["quartier", "building", "agent"];
const ACCESS: &[&str] = &["quartier", "building", "agent", "access"];
const DIRECTED: &[&str] = &["quartier", "building", "agent", "access", "direction"];

/// What is known of an agent, to remove its series when it falls silent.
#[derive(Debug, Default, Clone)]
struct Known {
    quartier: String,
    building: String,
    last_seen: Option<DateTime<Utc>>,
    accesses: BTreeSet<String>,
    kinds: BTreeMap<String, String>,
    version: Option<String>,
    coordinates: Option<(String, String)>,
    outcomes: BTreeSet<(String, String)>,
    failure_reasons: BTreeSet<String>,
    /// Last health counters seen, to turn them into counter increments.
    evictions: u64,
    missed: u64,
    failures: BTreeMap<String, u64>,
}

/// The fleet's series.
pub struct Fleet {
    throughput: GaugeVec,
    target: GaugeVec,
    target_met: GaugeVec,
    latency: GaugeVec,
    jitter: GaugeVec,
    loss: GaugeVec,
    result_ts: GaugeVec,
    tests: IntCounterVec,
    access_info: GaugeVec,
    last_seen: GaugeVec,
    spool: GaugeVec,
    evictions: IntCounterVec,
    missed: IntCounterVec,
    failures: IntCounterVec,
    agent_info: GaugeVec,
    building_info: GaugeVec,
    known: Mutex<BTreeMap<String, Known>>,
    horizon: chrono::Duration,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("horizon", &self.horizon)
            .finish_non_exhaustive()
    }
}

fn gauge(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<GaugeVec> {
    let g = GaugeVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn counter(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Up => "up",
        _ => "down",
    }
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Partial => "partial",
        Outcome::Failed => "failed",
        _ => "unknown",
    }
}

impl Fleet {
    /// The fleet's series, registered in `registry`; series of agents silent longer
    /// than `horizon` are dropped.
    pub fn new(registry: &Registry, horizon: std::time::Duration) -> prometheus::Result<Fleet> {
        let dir_labels = DIRECTED;
        let mut lat_labels = DIRECTED.to_vec();
        lat_labels.push("state");
        let mut outcome_labels = ACCESS.to_vec();
        outcome_labels.push("outcome");
        let mut kind_labels = ACCESS.to_vec();
        kind_labels.push("kind");
        let mut reason_labels = SITE.to_vec();
        reason_labels.push("reason");
        let mut version_labels = SITE.to_vec();
        version_labels.push("version");
        Ok(Fleet {
            throughput: gauge(registry, "sonde_throughput_bits_per_second",
                "Latest IP-layer throughput of the access in this direction (METHODOLOGY.md §1).", dir_labels)?,
            target: gauge(registry, "sonde_target_bits_per_second",
                "IP-layer target of the access in this direction.", dir_labels)?,
            target_met: gauge(registry, "sonde_target_met",
                "1 when the latest result met the target (within the tolerance), 0 when it did not.", dir_labels)?,
            latency: gauge(registry, "sonde_latency_seconds",
                "Latest median round-trip time: idle (direction=\"none\") or loaded during a direction.", &lat_labels)?,
            jitter: gauge(registry, "sonde_jitter_seconds",
                "Latest idle jitter (mean absolute difference of consecutive RTTs).", ACCESS)?,
            loss: gauge(registry, "sonde_packet_loss_ratio",
                "Latest idle UDP probe loss ratio.", ACCESS)?,
            result_ts: gauge(registry, "sonde_result_timestamp_seconds",
                "Start time of the latest result of the access (Unix seconds).", ACCESS)?,
            tests: counter(registry, "sonde_tests_total",
                "Results received, by outcome.", &outcome_labels)?,
            access_info: gauge(registry, "sonde_access_info",
                "1 for each access, with its kind (ftth, 4g, wifi, other).", &kind_labels)?,
            last_seen: gauge(registry, "sonde_agent_last_seen_timestamp_seconds",
                "When the agent last delivered (results or health), Unix seconds.", SITE)?,
            spool: gauge(registry, "sonde_agent_spool_results",
                "Results waiting in the agent's spool, as of its latest upload.", SITE)?,
            evictions: counter(registry, "sonde_agent_spool_evictions_total",
                "Results the agent evicted from its full spool.", SITE)?,
            missed: counter(registry, "sonde_agent_missed_runs_total",
                "Scheduled runs the agent could not make.", SITE)?,
            failures: counter(registry, "sonde_agent_failures_total",
                "Failed measurements reported by the agent, by reason.", &reason_labels)?,
            agent_info: gauge(registry, "sonde_agent_info",
                "1 for each agent, with its version.", &version_labels)?,
            building_info: gauge(registry, "sonde_building_info",
                "1 for each building, with its coordinates (for maps).",
                &["quartier", "building", "latitude", "longitude"])?,
            known: Mutex::new(BTreeMap::new()),
            horizon: chrono::Duration::from_std(horizon).unwrap_or(chrono::Duration::days(1)),
        })
    }

    fn known(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Known>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a committed result of `delivery`'s agent (`new`: not a re-send).
    pub fn result(&self, delivery: &Delivery, r: &ResultRecord, new: bool) {
        let q = delivery.quartier.clone().unwrap_or_default();
        let b = delivery.building.clone().unwrap_or_default();
        let a = delivery.agent_id.as_str();
        let access = r
            .access
            .name
            .clone()
            .unwrap_or_else(|| r.access.kind.as_str().to_string());
        let outcome = outcome_name(r.status.outcome);
        let started = r.run.started_at;
        {
            let mut known = self.known();
            let k = known.entry(a.to_string()).or_default();
            k.quartier = q.clone();
            k.building = b.clone();
            k.accesses.insert(access.clone());
            k.kinds
                .insert(access.clone(), r.access.kind.as_str().to_string());
            k.outcomes.insert((access.clone(), outcome.to_string()));
            let seen = k.last_seen.map_or(started, |t| t.max(started));
            k.last_seen = Some(seen);
        }
        let labels = [q.as_str(), b.as_str(), a, access.as_str()];
        if new {
            let mut l = labels.to_vec();
            l.push(outcome);
            self.tests.with_label_values(&l).inc();
        }
        let mut kind = labels.to_vec();
        kind.push(r.access.kind.as_str());
        self.access_info.with_label_values(&kind).set(1.0);
        // Gauges hold the latest result: an older one (a backfill) does not replace it.
        let ts = self.result_ts.with_label_values(&labels);
        let t = started.timestamp_millis() as f64 / 1e3;
        if ts.get() > t {
            return;
        }
        ts.set(t);
        for (dir, figure, target, verdict) in [
            (
                Direction::Down,
                r.download.as_ref(),
                r.verdict.target_down_bps,
                r.verdict.down,
            ),
            (
                Direction::Up,
                r.upload.as_ref(),
                r.verdict.target_up_bps,
                r.verdict.up,
            ),
        ] {
            let mut l = labels.to_vec();
            l.push(direction_name(dir));
            match figure {
                Some(t) => self.throughput.with_label_values(&l).set(t.ip_rate_bps),
                None => {
                    let _ = self.throughput.remove_label_values(&l);
                }
            }
            match target {
                Some(t) => self.target.with_label_values(&l).set(t),
                None => {
                    let _ = self.target.remove_label_values(&l);
                }
            }
            match verdict {
                VerdictOutcome::Met => self.target_met.with_label_values(&l).set(1.0),
                VerdictOutcome::NotMet => self.target_met.with_label_values(&l).set(0.0),
                _ => {
                    let _ = self.target_met.remove_label_values(&l);
                }
            }
            let mut ll = l.clone();
            ll.push("loaded");
            match figure
                .and_then(|t| t.loaded_latency.as_ref())
                .and_then(|x| x.median_s)
            {
                Some(s) => self.latency.with_label_values(&ll).set(s),
                None => {
                    let _ = self.latency.remove_label_values(&ll);
                }
            }
        }
        let idle = [q.as_str(), b.as_str(), a, access.as_str(), "none", "idle"];
        match r.idle_latency.as_ref() {
            Some(l) => {
                match l.median_s {
                    Some(s) => self.latency.with_label_values(&idle).set(s),
                    None => {
                        let _ = self.latency.remove_label_values(&idle);
                    }
                }
                match l.jitter_s {
                    Some(j) => self.jitter.with_label_values(&labels).set(j),
                    None => {
                        let _ = self.jitter.remove_label_values(&labels);
                    }
                }
                self.loss.with_label_values(&labels).set(l.loss_ratio);
            }
            None => {
                let _ = self.latency.remove_label_values(&idle);
                let _ = self.jitter.remove_label_values(&labels);
                let _ = self.loss.remove_label_values(&labels);
            }
        }
    }

    /// Records an agent's delivery at `now` with its health.
    pub fn health(&self, delivery: &Delivery, health: Option<&Health>, now: DateTime<Utc>) {
        let q = delivery.quartier.clone().unwrap_or_default();
        let b = delivery.building.clone().unwrap_or_default();
        let a = delivery.agent_id.as_str();
        let site = [q.as_str(), b.as_str(), a];
        self.last_seen
            .with_label_values(&site)
            .set(now.timestamp_millis() as f64 / 1e3);
        let mut known = self.known();
        let k = known.entry(a.to_string()).or_default();
        k.quartier = q.clone();
        k.building = b.clone();
        k.last_seen = Some(k.last_seen.map_or(now, |t| t.max(now)));
        let Some(h) = health else {
            return;
        };
        self.spool
            .with_label_values(&site)
            .set(h.spool_depth as f64);
        // Agent counters become counter increments; a restarted counter (lower than
        // before) counts from zero again.
        let delta = |now: u64, before: &mut u64| {
            let d = if now >= *before { now - *before } else { now };
            *before = now;
            d
        };
        self.evictions
            .with_label_values(&site)
            .inc_by(delta(h.evictions_total, &mut k.evictions));
        self.missed
            .with_label_values(&site)
            .inc_by(delta(h.missed_runs_total, &mut k.missed));
        for (reason, n) in &h.failures_total {
            // Reasons are the agent's stable names; anything else is folded.
            let reason = if reason.len() <= 32
                && reason
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
            {
                reason.as_str()
            } else {
                "other"
            };
            let before = k.failures.entry(reason.to_string()).or_default();
            let d = delta(*n, before);
            k.failure_reasons.insert(reason.to_string());
            let mut l = site.to_vec();
            l.push(reason);
            self.failures.with_label_values(&l).inc_by(d);
        }
        if !h.version.is_empty() && h.version.len() <= 32 {
            if let Some(old) = k.version.replace(h.version.clone()) {
                if old != h.version {
                    let _ = self.agent_info.remove_label_values(&[
                        q.as_str(),
                        b.as_str(),
                        a,
                        old.as_str(),
                    ]);
                }
            }
            self.agent_info
                .with_label_values(&[q.as_str(), b.as_str(), a, h.version.as_str()])
                .set(1.0);
        }
    }

    /// Records a building's coordinates.
    pub fn building(&self, agent: &str, quartier: &str, building: &str, lat: f64, lon: f64) {
        let (la, lo) = (format!("{lat:.5}"), format!("{lon:.5}"));
        self.building_info
            .with_label_values(&[quartier, building, la.as_str(), lo.as_str()])
            .set(1.0);
        let mut known = self.known();
        let k = known.entry(agent.to_string()).or_default();
        k.quartier = quartier.to_string();
        k.building = building.to_string();
        k.coordinates = Some((la, lo));
    }

    /// Removes the series of agents silent since before `now - horizon`; returns how
    /// many agents were dropped.
    pub fn sweep(&self, now: DateTime<Utc>) -> usize {
        let cutoff = now - self.horizon;
        let mut known = self.known();
        let silent: Vec<String> = known
            .iter()
            .filter(|(_, k)| k.last_seen.is_some_and(|t| t < cutoff))
            .map(|(a, _)| a.clone())
            .collect();
        for a in &silent {
            let Some(k) = known.remove(a) else { continue };
            let (q, b) = (k.quartier.as_str(), k.building.as_str());
            let site = [q, b, a.as_str()];
            let _ = self.last_seen.remove_label_values(&site);
            let _ = self.spool.remove_label_values(&site);
            let _ = self.evictions.remove_label_values(&site);
            let _ = self.missed.remove_label_values(&site);
            for r in &k.failure_reasons {
                let _ = self.failures.remove_label_values(&[q, b, a, r.as_str()]);
            }
            if let Some(v) = &k.version {
                let _ = self.agent_info.remove_label_values(&[q, b, a, v.as_str()]);
            }
            // A building keeps its marker while another agent in it still speaks.
            if let Some((la, lo)) = &k.coordinates {
                let shared = known
                    .values()
                    .any(|o| o.quartier == k.quartier && o.building == k.building);
                if !shared {
                    let _ =
                        self.building_info
                            .remove_label_values(&[q, b, la.as_str(), lo.as_str()]);
                }
            }
            for access in &k.accesses {
                let l = [q, b, a.as_str(), access.as_str()];
                let _ = self.result_ts.remove_label_values(&l);
                let _ = self.jitter.remove_label_values(&l);
                let _ = self.loss.remove_label_values(&l);
                if let Some(kind) = k.kinds.get(access) {
                    let _ = self
                        .access_info
                        .remove_label_values(&[q, b, a, access, kind.as_str()]);
                }
                let _ = self
                    .latency
                    .remove_label_values(&[q, b, a, access, "none", "idle"]);
                for d in ["down", "up"] {
                    let l = [q, b, a.as_str(), access.as_str(), d];
                    let _ = self.throughput.remove_label_values(&l);
                    let _ = self.target.remove_label_values(&l);
                    let _ = self.target_met.remove_label_values(&l);
                    let _ = self
                        .latency
                        .remove_label_values(&[q, b, a, access, d, "loaded"]);
                }
            }
            for (access, outcome) in &k.outcomes {
                let _ =
                    self.tests
                        .remove_label_values(&[q, b, a, access.as_str(), outcome.as_str()]);
            }
        }
        silent.len()
    }
}

impl Fleet {
    /// Rebuilds the series from the store (on start): each access's latest result and
    /// each agent's latest health, coordinates and last delivery.
    pub fn rebuild(
        &self,
        store: &dyn crate::store::Store,
    ) -> Result<usize, crate::store::StoreError> {
        let latest = store.latest_results()?;
        for (delivery, r) in &latest {
            self.result(delivery, r, false);
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
            self.health(&delivery, health.as_ref(), a.last_seen);
            if let (Some(lat), Some(lon)) = (a.latitude, a.longitude) {
                self.building(
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(agent: &str) -> Delivery {
        Delivery {
            agent_id: agent.into(),
            quartier: Some("q1".into()),
            building: Some("b1".into()),
        }
    }

    fn record(minutes: i64, down_bps: f64, met: bool) -> ResultRecord {
        let mut r = ResultRecord::schema_example();
        r.id = uuid::Uuid::now_v7();
        r.access.name = Some("fibre".into());
        r.run.started_at = Utc::now() + chrono::Duration::minutes(minutes);
        if let Some(d) = r.download.as_mut() {
            d.ip_rate_bps = down_bps;
        }
        r.verdict.target_down_bps = Some(1e9);
        r.verdict.down = if met {
            VerdictOutcome::Met
        } else {
            VerdictOutcome::NotMet
        };
        r
    }

    fn text(registry: &Registry) -> String {
        use prometheus::Encoder as _;
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .expect("encode");
        String::from_utf8(out).expect("utf-8")
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    const DOWN: &str =
        "{access=\"fibre\",agent=\"a1\",building=\"b1\",direction=\"down\",quartier=\"q1\"}";

    #[test]
    fn the_latest_result_wins_resends_are_not_counted_and_silent_agents_go() {
        let registry = Registry::new();
        let fleet = Fleet::new(&registry, std::time::Duration::from_secs(3600)).expect("fleet");
        let newer = record(0, 9.5e8, false);
        fleet.result(&delivery("a1"), &newer, true);
        // A backfilled, older result is counted but does not replace the latest figure.
        fleet.result(&delivery("a1"), &record(-30, 1.2e9, true), true);
        // A re-sent result is not a new test.
        fleet.result(&delivery("a1"), &newer, false);
        fleet.health(
            &delivery("a1"),
            Some(&Health {
                spool_depth: 4,
                evictions_total: 2,
                version: "0.1.0".into(),
                ..Default::default()
            }),
            Utc::now(),
        );
        fleet.building("a1", "q1", "b1", 48.8, 2.35);
        let t = text(&registry);
        assert_eq!(
            value(&t, &format!("sonde_throughput_bits_per_second{DOWN}")),
            Some(9.5e8)
        );
        assert_eq!(value(&t, &format!("sonde_target_met{DOWN}")), Some(0.0));
        assert_eq!(
            value(&t, &format!("sonde_target_bits_per_second{DOWN}")),
            Some(1e9)
        );
        assert_eq!(
            value(&t, "sonde_tests_total{access=\"fibre\",agent=\"a1\",building=\"b1\",outcome=\"ok\",quartier=\"q1\"}"),
            Some(2.0)
        );
        assert_eq!(
            value(
                &t,
                "sonde_agent_spool_evictions_total{agent=\"a1\",building=\"b1\",quartier=\"q1\"}"
            ),
            Some(2.0)
        );
        assert!(t.contains("sonde_building_info{building=\"b1\",latitude=\"48.80000\",longitude=\"2.35000\",quartier=\"q1\"} 1"));
        assert!(!t.contains(&newer.id.to_string()), "no result id in labels");
        // Health counters become increments.
        fleet.health(
            &delivery("a1"),
            Some(&Health {
                evictions_total: 5,
                ..Default::default()
            }),
            Utc::now(),
        );
        let t = text(&registry);
        assert_eq!(
            value(
                &t,
                "sonde_agent_spool_evictions_total{agent=\"a1\",building=\"b1\",quartier=\"q1\"}"
            ),
            Some(5.0)
        );
        // Silent beyond the horizon: every series of the agent goes.
        assert_eq!(fleet.sweep(Utc::now()), 0);
        assert_eq!(fleet.sweep(Utc::now() + chrono::Duration::hours(2)), 1);
        let t = text(&registry);
        assert!(!t.contains("agent=\"a1\""), "{t}");
    }
}
