//! Plans: what each box measures, when and against what, decided by the collector
//! (the controller) and pushed to the agents (RFC 7594's "measurement tasks" and
//! "schedules", RFC 8193's "suppressions" and "capabilities", kept small).
//!
//! - [`PlanFile`] is what an operator writes (TOML or JSON): groups of buildings, each
//!   with its accesses (the fields of `agent.toml`'s `[[access]]`, [`AccessSpec`]) and
//!   its suppression windows.
//! - [`AgentPlan`] is what one agent receives: the plan version and the group that
//!   applies to its building, in the [`Kind::Plan`](crate::wire::Kind::Plan) frame.
//! - [`PlanState`] is what the agent says back in its health: the version it runs,
//!   whether it still hears its controller, its capabilities and per-schedule counters.
//!
//! Checking the values (durations, URLs, targets) is the methodology's business
//! (`sonde_method::access`); this module holds the shapes and the group lookup.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One access to probe, as `agent.toml`'s `[[access]]` and a plan's `[[group.access]]`
/// write it. Defaults are the agent's.
///
/// Fields this side does not know are kept in [`unknown`](AccessSpec::unknown) rather
/// than failing the whole document: the checks (`sonde_method::access`) report each one
/// as a problem, so an operator's typo is refused with its name, and an agent older
/// than its plan refuses that plan visibly (keeping its previous one) instead of
/// dropping the connection that carried it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessSpec {
    /// Unique name, e.g. `fibre`.
    pub name: String,
    /// `ftth`, `4g`, `wifi` or `other`.
    pub kind: String,
    /// Interface the access is reached through.
    pub interface: String,
    /// Responder URLs, in order of preference.
    pub responders: Vec<String>,
    /// Start each run with the next responder in turn instead of always the first;
    /// either way, a responder that does not answer is replaced by the following one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rotate: bool,
    /// Download target, Mb/s at the IP layer (default: the kind's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_down_mbps: Option<f64>,
    /// Upload target, Mb/s at the IP layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_up_mbps: Option<f64>,
    /// Time between runs, e.g. `15m` (at least 10 s; mind data caps).
    #[serde(default = "default_every")]
    pub every: String,
    /// Each run moves by up to ± this (at most a quarter of `every`).
    #[serde(default = "default_jitter")]
    pub jitter: String,
    /// Parallel TCP streams.
    #[serde(default = "default_streams")]
    pub streams: u32,
    /// Cap per direction, seconds.
    #[serde(default = "default_max_duration")]
    pub max_duration: f64,
    /// Monthly data budget of the access's tests, e.g. `20GB` or `500MiB` (none by
    /// default). Tests shrink, or are skipped with the reason `budget`, rather than
    /// exceed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_month: Option<String>,
    /// Measure responsiveness (RPM, draft-ietf-ippm-responsiveness) after each
    /// throughput test, against the responder's network-quality server or `rpm_config`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rpm: bool,
    /// The network-quality configuration URL (`https://…/.well-known/nq`) to measure
    /// RPM against instead of the responder's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm_config: Option<String>,
    /// PEM certificates (a file on the box) to trust for that server instead of the
    /// system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm_ca: Option<String>,
    /// Fields this side does not know, by name.
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

fn default_every() -> String {
    "15m".into()
}
fn default_jitter() -> String {
    "2m".into()
}
fn default_streams() -> u32 {
    8
}
fn default_max_duration() -> f64 {
    10.0
}

/// A window in which tests do not run (maintenance, a building's works): runs falling
/// in it are counted as suppressed, not missed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suppression {
    /// Start (inclusive).
    pub from: DateTime<Utc>,
    /// End (exclusive).
    pub until: DateTime<Utc>,
    /// Why, for the record and the report.
    pub reason: String,
    /// The accesses concerned, by name; none: every access of the group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accesses: Vec<String>,
    /// Fields this side does not know (see [`AccessSpec::unknown`]).
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

impl Suppression {
    /// Whether a run of `access` at `at` is suppressed by this window.
    pub fn covers(&self, access: &str, at: DateTime<Utc>) -> bool {
        self.from <= at
            && at < self.until
            && (self.accesses.is_empty() || self.accesses.iter().any(|a| a == access))
    }
}

/// The buildings a group applies to and what they measure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Quartier id.
    pub quartier: String,
    /// Building ids; none: every building of the quartier that no group names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buildings: Vec<String>,
    /// Accesses to probe (`[[group.access]]`).
    #[serde(default)]
    pub access: Vec<AccessSpec>,
    /// Suppression windows (`[[group.suppress]]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suppress: Vec<Suppression>,
}

impl Group {
    /// Whether this group names `building` of `quartier` itself (not quartier-wide).
    fn names(&self, quartier: &str, building: &str) -> bool {
        self.quartier == quartier && self.buildings.iter().any(|b| b == building)
    }

    /// Whether this group is the quartier-wide one of `quartier`.
    fn quartier_wide(&self, quartier: &str) -> bool {
        self.quartier == quartier && self.buildings.is_empty()
    }
}

/// A plan as an operator writes it: `[[group]]` tables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    /// The groups; a building takes the group that names it, else its quartier's
    /// quartier-wide group, else none (it runs without a plan: its `agent.toml`).
    #[serde(default, rename = "group")]
    pub groups: Vec<Group>,
}

impl PlanFile {
    /// The group that applies to `building` of `quartier`.
    pub fn group_for(&self, quartier: &str, building: &str) -> Option<&Group> {
        self.groups
            .iter()
            .find(|g| g.names(quartier, building))
            .or_else(|| self.groups.iter().find(|g| g.quartier_wide(quartier)))
    }

    /// What `building` of `quartier` receives under version `version` of this plan.
    pub fn for_site(
        &self,
        version: u64,
        effective_at: DateTime<Utc>,
        quartier: &str,
        building: &str,
    ) -> Option<AgentPlan> {
        self.group_for(quartier, building).map(|g| AgentPlan {
            version,
            effective_at,
            access: g.access.clone(),
            suppress: g.suppress.clone(),
        })
    }
}

/// Collector → agent: the plan in force for the agent's building.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentPlan {
    /// Version of the plan (the collector's count of applied plans, from 1).
    pub version: u64,
    /// When this version took effect.
    pub effective_at: DateTime<Utc>,
    /// The accesses to probe, replacing `agent.toml`'s.
    pub access: Vec<AccessSpec>,
    /// Suppression windows.
    #[serde(default)]
    pub suppress: Vec<Suppression>,
}

impl AgentPlan {
    /// The window suppressing a run of `access` at `at`, if any.
    pub fn suppressed(&self, access: &str, at: DateTime<Utc>) -> Option<&Suppression> {
        self.suppress.iter().find(|s| s.covers(access, at))
    }
}

/// What the agent runs, as it says in its health.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanSource {
    /// Its `agent.toml` (no plan received yet, or none for its building).
    #[default]
    Local,
    /// The plan its controller pushed, while connected.
    Controller,
    /// The last plan received, kept on disk, while the controller is unreachable.
    ControllerLost,
}

impl PlanSource {
    /// Where the accesses of an agent running plan `version` (0: none) come from,
    /// whether its controller is `connected` or not.
    pub fn of(version: u64, connected: bool) -> PlanSource {
        match (version, connected) {
            (0, _) => PlanSource::Local,
            (_, true) => PlanSource::Controller,
            (_, false) => PlanSource::ControllerLost,
        }
    }
}

/// Counters of one schedule (an access's runs), as RFC 8193 keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleCounters {
    /// Runs started.
    pub invocations: u64,
    /// Runs not started because a suppression window covered them.
    pub suppressions: u64,
    /// Runs not started because the previous one had not finished in time (missed).
    pub overlaps: u64,
    /// Runs that ended failed.
    pub failures: u64,
}

/// The agent's plan, in its health.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanState {
    /// Version of the plan it runs (0: its `agent.toml`).
    pub version: u64,
    /// Where its accesses come from.
    pub source: PlanSource,
    /// A plan version it received but refused, and why (each problem).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<RefusedPlan>,
    /// What it can do.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Counters per access (schedule), since the agent started.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub schedules: BTreeMap<String, ScheduleCounters>,
}

/// A plan an agent could not run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedPlan {
    /// Its version.
    pub version: u64,
    /// Every problem, one line each.
    pub problems: Vec<String>,
}

/// What an agent can do (RFC 8193 capabilities).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Responder URL schemes it measures with (`http`, `iperf3`, …).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Its network interfaces.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Its version.
    #[serde(default)]
    pub version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(quartier: &str, buildings: &[&str], access: &str) -> Group {
        Group {
            quartier: quartier.into(),
            buildings: buildings.iter().map(|b| b.to_string()).collect(),
            access: vec![AccessSpec {
                name: access.into(),
                kind: "ftth".into(),
                interface: "eth0".into(),
                responders: vec!["http://r.example".into()],
                rotate: false,
                target_down_mbps: None,
                target_up_mbps: None,
                every: default_every(),
                jitter: default_jitter(),
                streams: 8,
                max_duration: 10.0,
                budget_month: None,
                rpm: false,
                rpm_config: None,
                rpm_ca: None,
                unknown: BTreeMap::new(),
            }],
            suppress: Vec::new(),
        }
    }

    #[test]
    fn a_building_takes_the_group_naming_it_before_its_quartiers() {
        let plan = PlanFile {
            groups: vec![
                group("paris-13", &[], "wide"),
                group("paris-13", &["b42"], "own"),
                group("paris-19", &["b1"], "other"),
            ],
        };
        let name = |q, b| plan.group_for(q, b).map(|g| g.access[0].name.as_str());
        assert_eq!(name("paris-13", "b42"), Some("own"));
        assert_eq!(name("paris-13", "b7"), Some("wide"));
        assert_eq!(name("paris-19", "b1"), Some("other"));
        assert_eq!(name("paris-19", "b2"), None);
        assert_eq!(name("lyon-1", "b42"), None);
        let at = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        let p = plan.for_site(3, at, "paris-13", "b7").expect("plan");
        assert_eq!((p.version, p.access[0].name.as_str()), (3, "wide"));
    }

    #[test]
    fn suppressions_cover_their_window_and_their_accesses_only() {
        let t = |s: i64| DateTime::from_timestamp(s, 0).expect("time");
        let s = Suppression {
            from: t(100),
            until: t(200),
            reason: "works".into(),
            accesses: vec!["fibre".into()],
            unknown: BTreeMap::new(),
        };
        assert!(s.covers("fibre", t(100)));
        assert!(s.covers("fibre", t(199)));
        assert!(!s.covers("fibre", t(200)), "the end is exclusive");
        assert!(!s.covers("fibre", t(99)));
        assert!(!s.covers("mobile", t(150)));
        let all = Suppression {
            accesses: vec![],
            ..s
        };
        assert!(all.covers("mobile", t(150)));
    }

    #[test]
    fn the_pushed_plan_reads_back_and_tolerates_new_fields() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        let plan = PlanFile {
            groups: vec![group("q", &["b"], "fibre")],
        }
        .for_site(1, at, "q", "b")
        .expect("plan");
        let mut json: serde_json::Value = serde_json::to_value(&plan).expect("json");
        json["from_the_future"] = serde_json::json!(1);
        let back: AgentPlan = serde_json::from_value(json).expect("reads");
        assert_eq!(back, plan);
    }
}
