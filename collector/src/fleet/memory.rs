//! The fleet's series kept in this collector's memory ([`Fleet`]): one set per
//! building, access and direction, updated when results are committed (and rebuilt
//! from the store on start), never computed from result history when `/metrics` is
//! scraped. Each agent's state is shared copy-on-write: a scrape copies the map of
//! agents under the lock, then renders without it, so commits never wait for a scrape.
//!
//! Labels are bounded by the fleet: `quartier`, `building`, `agent`, `access`,
//! `direction`, `state`, `outcome`, `reason`, `kind`, `version` and the building's
//! coordinates. No result id, no address, no free text. Agents silent for longer than
//! the horizon are dropped.
//!
//! The series are kept in plain structures and written in the Prometheus text format
//! directly: for a fleet of 10 000 agents (430 000 series) the prometheus crate's
//! registry took over a second per scrape (`sonde-metrics-bench`), this a fraction of
//! that. The collector's own metrics still go through the crate (`metrics.rs`).

use chrono::{DateTime, Utc};
use sonde_proto::metrics::{self as m, Metric};
use sonde_proto::wire::Health;
use sonde_proto::{Direction, Engine, ResultRecord, VerdictOutcome};
use sonde_store::Delivery;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, RwLock};

/// Latest figures of one direction.
#[derive(Debug, Default, Clone)]
struct Directed {
    throughput: Option<f64>,
    /// The latest UDPST test's MaxIPLayerCapacity, beside the latest TCP figure.
    capacity: Option<f64>,
    /// The latest responsiveness measured, RPM.
    rpm: Option<f64>,
    target: Option<f64>,
    met: Option<f64>,
    loaded: Option<f64>,
}

#[derive(Debug, Default, Clone)]
struct AccessState {
    kind: String,
    result_ts: Option<f64>,
    down: Directed,
    up: Directed,
    idle: Option<f64>,
    jitter: Option<f64>,
    loss: Option<f64>,
    wifi_signal: Option<f64>,
    lte_rsrp: Option<f64>,
    lte_rsrq: Option<f64>,
    lte_sinr: Option<f64>,
    tests: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Default, Clone)]
struct AgentState {
    quartier: String,
    building: String,
    /// `agent="…",building="…",quartier="…"`, escaped once.
    site: String,
    last_seen: Option<DateTime<Utc>>,
    last_seen_s: Option<f64>,
    spool: Option<f64>,
    spool_full: Option<f64>,
    held: Option<f64>,
    version: Option<String>,
    coordinates: Option<(String, String)>,
    /// Whether `coordinates` came from the box's health (they follow it) rather than
    /// from its token (kept).
    coordinates_from_agent: bool,
    plan: Option<f64>,
    evictions: u64,
    missed: u64,
    suppressed: u64,
    failures: BTreeMap<String, u64>,
    /// Last health counters seen, to turn restarts into increments.
    seen_evictions: u64,
    seen_missed: u64,
    seen_suppressed: u64,
    seen_failures: BTreeMap<String, u64>,
    accesses: BTreeMap<String, AccessState>,
}

/// The fleet's series.
#[derive(Debug)]
pub struct Fleet {
    agents: RwLock<BTreeMap<String, Arc<AgentState>>>,
    horizon: chrono::Duration,
}

/// A label value, escaped for the text format.
fn esc(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1e3
}

/// Counter increments from an agent's own counter (restarts count from zero again).
fn delta(now: u64, before: &mut u64) -> u64 {
    let d = if now >= *before { now - *before } else { now };
    *before = now;
    d
}

impl Fleet {
    /// The fleet's series; agents silent longer than `horizon` are dropped.
    pub fn new(horizon: std::time::Duration) -> Fleet {
        Fleet {
            agents: RwLock::new(BTreeMap::new()),
            horizon: chrono::Duration::from_std(horizon).unwrap_or(chrono::Duration::days(1)),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<AgentState>>> {
        self.agents.write().unwrap_or_else(|e| e.into_inner())
    }

    fn agent<'a>(
        agents: &'a mut BTreeMap<String, Arc<AgentState>>,
        delivery: &Delivery,
    ) -> &'a mut AgentState {
        let q = delivery.quartier.clone().unwrap_or_default();
        let b = delivery.building.clone().unwrap_or_default();
        // Copied only when a scrape still holds the previous state.
        let a = Arc::make_mut(agents.entry(delivery.agent_id.clone()).or_default());
        if a.site.is_empty() || a.quartier != q || a.building != b {
            a.site = format!(
                "agent=\"{}\",building=\"{}\",quartier=\"{}\"",
                esc(&delivery.agent_id),
                esc(&b),
                esc(&q)
            );
            a.quartier = q;
            a.building = b;
        }
        a
    }

    /// Records a committed result of `delivery`'s agent (`new`: not a re-send).
    pub fn result(&self, delivery: &Delivery, r: &ResultRecord, new: bool) {
        let access = r
            .access
            .name
            .clone()
            .unwrap_or_else(|| r.access.kind.as_str().to_string());
        let mut agents = self.write();
        let a = Self::agent(&mut agents, delivery);
        let started = r.run.started_at;
        a.last_seen = Some(a.last_seen.map_or(started, |t| t.max(started)));
        let s = a.accesses.entry(access).or_default();
        s.kind = r.access.kind.as_str().to_string();
        if new {
            *s.tests.entry(r.status.outcome.as_str()).or_default() += 1;
        }
        // Gauges hold the latest result: an older one (a backfill) does not replace it.
        let t = seconds(started);
        if s.result_ts.is_some_and(|old| old > t) {
            return;
        }
        s.result_ts = Some(t);
        let udpst = r.run.engine == Engine::Udpst;
        let cap = r.capacity.as_ref();
        for (dir, figure, capacity, target, verdict) in [
            (
                Direction::Down,
                r.download.as_ref(),
                cap.and_then(|c| c.down.as_ref()),
                r.verdict.target_down_bps,
                r.verdict.down,
            ),
            (
                Direction::Up,
                r.upload.as_ref(),
                cap.and_then(|c| c.up.as_ref()),
                r.verdict.target_up_bps,
                r.verdict.up,
            ),
        ] {
            let d = if dir == Direction::Up {
                &mut s.up
            } else {
                &mut s.down
            };
            // Exported in bytes, Prometheus' base unit; dashboards multiply by 8. A
            // UDPST test replaces the latest capacity, any other test the latest TCP
            // figure: an access measured both ways keeps both series.
            if udpst {
                d.capacity = capacity.map(|c| c.max_ip_capacity_bps / 8.0);
            } else if r.run.engine != Engine::Nq {
                d.throughput = figure.map(|t| t.ip_rate_bps / 8.0);
            }
            // A result with responsiveness replaces the latest; others leave it.
            if let Some(f) = r.responsiveness.as_ref().and_then(|x| x.of(dir)) {
                d.rpm = Some(f.rpm);
            }
            d.target = target.map(|t| t / 8.0);
            d.met = match verdict {
                VerdictOutcome::Met => Some(1.0),
                VerdictOutcome::NotMet => Some(0.0),
                _ => None,
            };
            d.loaded = figure
                .and_then(|t| t.loaded_latency.as_ref())
                .and_then(|x| x.median_s);
        }
        s.idle = r.idle_latency.as_ref().and_then(|l| l.median_s);
        s.jitter = r.idle_latency.as_ref().and_then(|l| l.jitter_s);
        s.loss = r.idle_latency.as_ref().map(|l| l.loss_ratio);
        let wifi = r.radio.as_ref().and_then(|x| x.wifi.as_ref());
        let lte = r.radio.as_ref().and_then(|x| x.lte.as_ref());
        s.wifi_signal = wifi.and_then(|w| w.signal_dbm);
        s.lte_rsrp = lte.and_then(|l| l.rsrp_dbm);
        s.lte_rsrq = lte.and_then(|l| l.rsrq_db);
        s.lte_sinr = lte.and_then(|l| l.sinr_db);
    }

    /// Records an agent's delivery at `now` with its health.
    pub fn health(&self, delivery: &Delivery, health: Option<&Health>, now: DateTime<Utc>) {
        let mut agents = self.write();
        let a = Self::agent(&mut agents, delivery);
        a.last_seen = Some(a.last_seen.map_or(now, |t| t.max(now)));
        a.last_seen_s = Some(a.last_seen_s.map_or(seconds(now), |t| t.max(seconds(now))));
        let Some(h) = health else {
            return;
        };
        // The box's configured position, when its token gave none.
        if let Some(p) = h.position.and_then(|p| p.checked()) {
            if a.coordinates.is_none() || a.coordinates_from_agent {
                a.coordinates = Some((format!("{:.5}", p.latitude), format!("{:.5}", p.longitude)));
                a.coordinates_from_agent = true;
            }
        }
        a.spool = Some(h.spool_depth as f64);
        a.spool_full = Some(if h.spool_full { 1.0 } else { 0.0 });
        a.held = Some(h.held_results as f64);
        a.evictions += delta(h.evictions_total, &mut a.seen_evictions);
        a.missed += delta(h.missed_runs_total, &mut a.seen_missed);
        if let Some(p) = &h.plan {
            a.plan = Some(p.version as f64);
            let suppressed = p.schedules.values().map(|c| c.suppressions).sum();
            a.suppressed += delta(suppressed, &mut a.seen_suppressed);
        }
        for (reason, n) in &h.failures_total {
            // Reasons are the agent's stable names; anything else is folded.
            let reason = if reason.len() <= 32
                && reason
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
            {
                reason.clone()
            } else {
                "other".to_string()
            };
            let d = delta(*n, a.seen_failures.entry(reason.clone()).or_default());
            *a.failures.entry(reason).or_default() += d;
        }
        if !h.version.is_empty() && h.version.len() <= 32 {
            a.version = Some(h.version.clone());
        }
    }

    /// Records a building's coordinates, from the enrolment of `agent`.
    pub fn building(&self, agent: &str, quartier: &str, building: &str, lat: f64, lon: f64) {
        let delivery = Delivery {
            agent_id: agent.to_string(),
            quartier: Some(quartier.to_string()),
            building: Some(building.to_string()),
        };
        let mut agents = self.write();
        let a = Self::agent(&mut agents, &delivery);
        a.coordinates = Some((format!("{lat:.5}"), format!("{lon:.5}")));
        a.coordinates_from_agent = false;
    }

    /// Drops agents silent since before `now - horizon`; returns how many.
    pub fn sweep(&self, now: DateTime<Utc>) -> usize {
        let cutoff = now - self.horizon;
        let mut agents = self.write();
        let before = agents.len();
        agents.retain(|_, a| a.last_seen.is_none_or(|t| t >= cutoff));
        before - agents.len()
    }

    /// Appends the fleet's series to `out` in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        // A copy of the map (each agent's state shared, not copied): the lock is held
        // for that only.
        let agents = self
            .agents
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        render_directed(out, &agents);
        render_latency(out, &agents);
        render_per_access(out, &agents);
        render_tests_and_kinds(out, &agents);
        render_agents(out, &agents);
        render_buildings(out, &agents);
    }
}

type Agents = BTreeMap<String, Arc<AgentState>>;

/// `# HELP` and `# TYPE` of `m`.
fn family(out: &mut String, m: &Metric) {
    out.push_str(&m.header());
}

/// Throughput, target and verdict per access and direction.
fn render_directed(out: &mut String, agents: &Agents) {
    type Pick = fn(&Directed) -> Option<f64>;
    let directed: [(Metric, Pick); 5] = [
        (m::THROUGHPUT, |d| d.throughput),
        (m::IP_CAPACITY, |d| d.capacity),
        (m::RESPONSIVENESS, |d| d.rpm),
        (m::TARGET, |d| d.target),
        (m::TARGET_MET, |d| d.met),
    ];
    for (metric, pick) in directed {
        family(out, &metric);
        for a in agents.values() {
            for (access, s) in &a.accesses {
                for (dir, d) in [(Direction::Down, &s.down), (Direction::Up, &s.up)] {
                    if let Some(v) = pick(d) {
                        let _ = writeln!(
                            out,
                            "{}{{{},access=\"{}\",direction=\"{dir}\"}} {v}",
                            metric.name,
                            a.site,
                            esc(access)
                        );
                    }
                }
            }
        }
    }
}

/// Idle and loaded latency per access.
fn render_latency(out: &mut String, agents: &Agents) {
    family(out, &m::LATENCY);
    for a in agents.values() {
        for (access, s) in &a.accesses {
            let access = esc(access);
            if let Some(v) = s.idle {
                let _ = writeln!(out, "sonde_latency_seconds{{{},access=\"{access}\",direction=\"none\",state=\"idle\"}} {v}", a.site);
            }
            for (dir, d) in [(Direction::Down, &s.down), (Direction::Up, &s.up)] {
                if let Some(v) = d.loaded {
                    let _ = writeln!(out, "sonde_latency_seconds{{{},access=\"{access}\",direction=\"{dir}\",state=\"loaded\"}} {v}", a.site);
                }
            }
        }
    }
}

/// Jitter, loss, the latest result's time and radio figures per access.
fn render_per_access(out: &mut String, agents: &Agents) {
    type PickA = fn(&AccessState) -> Option<f64>;
    let per_access: [(Metric, PickA); 7] = [
        (m::JITTER, |s| s.jitter),
        (m::LOSS, |s| s.loss),
        (m::RESULT_TIMESTAMP, |s| s.result_ts),
        (m::WIFI_SIGNAL, |s| s.wifi_signal),
        (m::LTE_RSRP, |s| s.lte_rsrp),
        (m::LTE_RSRQ, |s| s.lte_rsrq),
        (m::LTE_SINR, |s| s.lte_sinr),
    ];
    for (metric, pick) in per_access {
        family(out, &metric);
        for a in agents.values() {
            for (access, s) in &a.accesses {
                if let Some(v) = pick(s) {
                    let _ = writeln!(
                        out,
                        "{}{{{},access=\"{}\"}} {v}",
                        metric.name,
                        a.site,
                        esc(access)
                    );
                }
            }
        }
    }
}

/// Results by outcome, and each access's kind.
fn render_tests_and_kinds(out: &mut String, agents: &Agents) {
    family(out, &m::TESTS);
    for a in agents.values() {
        for (access, s) in &a.accesses {
            for (outcome, n) in &s.tests {
                let _ = writeln!(
                    out,
                    "sonde_tests_total{{{},access=\"{}\",outcome=\"{outcome}\"}} {n}",
                    a.site,
                    esc(access)
                );
            }
        }
    }
    family(out, &m::ACCESS_INFO);
    for a in agents.values() {
        for (access, s) in &a.accesses {
            let _ = writeln!(
                out,
                "sonde_access_info{{{},access=\"{}\",kind=\"{}\"}} 1",
                a.site,
                esc(access),
                esc(&s.kind)
            );
        }
    }
}

/// Each agent's last delivery, spool, counters and version.
fn render_agents(out: &mut String, agents: &Agents) {
    type PickG = fn(&AgentState) -> Option<f64>;
    let gauges: [(Metric, PickG); 5] = [
        (m::AGENT_LAST_SEEN, |a| a.last_seen_s),
        (m::SPOOL_RESULTS, |a| a.spool),
        (m::SPOOL_FULL, |a| a.spool_full),
        (m::RESULTS_HELD, |a| a.held),
        (m::PLAN_VERSION, |a| a.plan),
    ];
    for (metric, pick) in gauges {
        family(out, &metric);
        for a in agents.values() {
            if let Some(v) = pick(a) {
                let _ = writeln!(out, "{}{{{}}} {v}", metric.name, a.site);
            }
        }
    }
    type PickC = fn(&AgentState) -> u64;
    let counters: [(Metric, PickC); 3] = [
        (m::SPOOL_EVICTIONS, |a| a.evictions),
        (m::MISSED_RUNS, |a| a.missed),
        (m::SUPPRESSED_RUNS, |a| a.suppressed),
    ];
    for (metric, pick) in counters {
        family(out, &metric);
        // Known only from agents that sent their health.
        for a in agents.values().filter(|a| a.spool.is_some()) {
            let _ = writeln!(out, "{}{{{}}} {}", metric.name, a.site, pick(a));
        }
    }
    family(out, &m::FAILURES);
    for a in agents.values() {
        for (reason, n) in &a.failures {
            let _ = writeln!(
                out,
                "sonde_agent_failures_total{{{},reason=\"{}\"}} {n}",
                a.site,
                esc(reason)
            );
        }
    }
    family(out, &m::AGENT_INFO);
    for a in agents.values() {
        if let Some(v) = &a.version {
            let _ = writeln!(
                out,
                "sonde_agent_info{{{},version=\"{}\"}} 1",
                a.site,
                esc(v)
            );
        }
    }
}

/// Each building with its coordinates, once.
fn render_buildings(out: &mut String, agents: &Agents) {
    family(out, &m::BUILDING_INFO);
    let mut buildings = std::collections::BTreeSet::new();
    for a in agents.values() {
        if let Some((la, lo)) = &a.coordinates {
            buildings.insert((
                a.quartier.as_str(),
                a.building.as_str(),
                la.as_str(),
                lo.as_str(),
            ));
        }
    }
    for (q, b, la, lo) in buildings {
        let _ = writeln!(out, "sonde_building_info{{building=\"{}\",latitude=\"{la}\",longitude=\"{lo}\",quartier=\"{}\"}} 1", esc(b), esc(q));
    }
}

impl super::view::FleetView for Fleet {
    fn result(&self, delivery: &Delivery, r: &ResultRecord, new: bool) {
        Fleet::result(self, delivery, r, new)
    }

    fn health(&self, delivery: &Delivery, health: Option<&Health>, now: DateTime<Utc>) {
        Fleet::health(self, delivery, health, now)
    }

    fn building(&self, agent: &str, quartier: &str, building: &str, lat: f64, lon: f64) {
        Fleet::building(self, agent, quartier, building, lat, lon)
    }

    fn sweep(&self, now: DateTime<Utc>) -> usize {
        Fleet::sweep(self, now)
    }

    fn render(&self, out: &mut String) {
        Fleet::render(self, out)
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

    fn text(fleet: &Fleet) -> String {
        let mut out = String::new();
        fleet.render(&mut out);
        out
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    const DOWN: &str =
        "{agent=\"a1\",building=\"b1\",quartier=\"q1\",access=\"fibre\",direction=\"down\"}";

    #[test]
    fn responsiveness_stays_until_a_result_carries_it_again() {
        let fleet = Fleet::new(std::time::Duration::from_secs(3600));
        fleet.result(&delivery("a1"), &record(0, 9.5e8, false), true);
        assert_eq!(
            value(&text(&fleet), &format!("sonde_responsiveness_rpm{DOWN}")),
            None
        );
        let mut nq = ResultRecord::responsiveness_example();
        nq.id = uuid::Uuid::now_v7();
        nq.access.name = Some("fibre".into());
        nq.run.started_at = Utc::now() + chrono::Duration::minutes(1);
        fleet.result(&delivery("a1"), &nq, true);
        let t = text(&fleet);
        let up = DOWN.replace("\"down\"", "\"up\"");
        assert_eq!(
            value(&t, &format!("sonde_responsiveness_rpm{DOWN}")),
            Some(820.0)
        );
        assert_eq!(
            value(&t, &format!("sonde_responsiveness_rpm{up}")),
            Some(310.0)
        );
        assert_eq!(
            value(&t, &format!("sonde_throughput_bytes_per_second{DOWN}")),
            Some(9.5e8 / 8.0),
            "an RPM test leaves the latest TCP figure"
        );
        // A later throughput test without RPM leaves the latest RPM.
        nq.run.started_at = Utc::now() + chrono::Duration::minutes(2);
        fleet.result(&delivery("a1"), &record(3, 9.0e8, false), true);
        let t = text(&fleet);
        assert_eq!(
            value(&t, &format!("sonde_responsiveness_rpm{DOWN}")),
            Some(820.0)
        );
    }

    #[test]
    fn a_udpst_test_sets_the_capacity_and_leaves_the_latest_tcp_figure() {
        let fleet = Fleet::new(std::time::Duration::from_secs(3600));
        fleet.result(&delivery("a1"), &record(0, 9.5e8, false), true);
        let mut udpst = ResultRecord::capacity_example();
        udpst.id = uuid::Uuid::now_v7();
        udpst.access.name = Some("fibre".into());
        udpst.run.started_at = Utc::now() + chrono::Duration::minutes(1);
        udpst.verdict.down = VerdictOutcome::Met;
        fleet.result(&delivery("a1"), &udpst, true);
        let t = text(&fleet);
        let up = DOWN.replace("\"down\"", "\"up\"");
        assert_eq!(
            value(&t, &format!("sonde_ip_capacity_bytes_per_second{DOWN}")),
            Some(148.3e6 / 8.0)
        );
        assert_eq!(
            value(&t, &format!("sonde_ip_capacity_bytes_per_second{up}")),
            Some(49.4e6 / 8.0)
        );
        assert_eq!(
            value(&t, &format!("sonde_throughput_bytes_per_second{DOWN}")),
            Some(9.5e8 / 8.0),
            "the latest TCP figure stays"
        );
        assert_eq!(value(&t, &format!("sonde_target_met{DOWN}")), Some(1.0));
        // A later TCP test leaves the capacity in turn.
        fleet.result(&delivery("a1"), &record(2, 9.0e8, false), true);
        let t = text(&fleet);
        assert_eq!(
            value(&t, &format!("sonde_throughput_bytes_per_second{DOWN}")),
            Some(9.0e8 / 8.0)
        );
        assert_eq!(
            value(&t, &format!("sonde_ip_capacity_bytes_per_second{DOWN}")),
            Some(148.3e6 / 8.0)
        );
    }

    #[test]
    fn radio_figures_of_the_latest_result_are_exported_and_none_without_radio() {
        let fleet = Fleet::new(std::time::Duration::from_secs(3600));
        let mut r = record(0, 1.6e8, true);
        r.radio = Some(sonde_proto::Radio {
            lte: Some(sonde_proto::LteRadio {
                rsrp_dbm: Some(-95.0),
                rsrq_db: Some(-11.5),
                sinr_db: Some(13.0),
                ..Default::default()
            }),
            ..Default::default()
        });
        fleet.result(&delivery("a1"), &r, true);
        let t = text(&fleet);
        let access = "{agent=\"a1\",building=\"b1\",quartier=\"q1\",access=\"fibre\"}";
        assert_eq!(
            value(&t, &format!("sonde_lte_rsrp_dbm{access}")),
            Some(-95.0)
        );
        assert_eq!(
            value(&t, &format!("sonde_lte_rsrq_db{access}")),
            Some(-11.5)
        );
        assert_eq!(value(&t, &format!("sonde_lte_sinr_db{access}")), Some(13.0));
        assert_eq!(value(&t, &format!("sonde_wifi_signal_dbm{access}")), None);
        // A newer result without radio context clears the figures rather than keep stale ones.
        fleet.result(&delivery("a1"), &record(1, 1.6e8, true), true);
        let t = text(&fleet);
        assert_eq!(value(&t, &format!("sonde_lte_rsrp_dbm{access}")), None);
    }

    #[test]
    fn the_latest_result_wins_resends_are_not_counted_and_silent_agents_go() {
        let fleet = Fleet::new(std::time::Duration::from_secs(3600));
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
        let t = text(&fleet);
        assert_eq!(
            value(&t, &format!("sonde_throughput_bytes_per_second{DOWN}")),
            Some(9.5e8 / 8.0)
        );
        assert_eq!(value(&t, &format!("sonde_target_met{DOWN}")), Some(0.0));
        assert_eq!(
            value(&t, &format!("sonde_target_bytes_per_second{DOWN}")),
            Some(1e9 / 8.0)
        );
        assert_eq!(
            value(&t, "sonde_tests_total{agent=\"a1\",building=\"b1\",quartier=\"q1\",access=\"fibre\",outcome=\"ok\"}"),
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
        let t = text(&fleet);
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
        let t = text(&fleet);
        assert!(!t.contains("agent=\"a1\""), "{t}");
    }
}
