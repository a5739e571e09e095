//! What the plans in force scheduled (docs/METHODOLOGY.md §7.3): for each building
//! access a plan named, the runs its cadence called for while each version was in
//! force, less its suppression windows. A closed period's count depends on the plan
//! history only, never on results that arrive later.

use chrono::{DateTime, Utc};
use sonde_proto::plan::{PlanFile, Suppression};
use std::collections::BTreeMap;

/// An access a plan scheduled in the period.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PlannedAccess {
    /// Quartier.
    pub quartier: String,
    /// Building.
    pub building: String,
    /// Access name (what the agent names its results).
    pub access: String,
    /// Access kind, as the latest version says.
    pub kind: String,
    /// Runs scheduled in the period.
    pub scheduled: u64,
    /// Its cadence in the latest version in force, seconds: the width of its
    /// time-covered buckets, so results arriving later cannot change them.
    pub every_s: f64,
}

/// Seconds of `[from, to)` outside the suppression windows covering `access`.
fn unsuppressed_s(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    access: &str,
    windows: &[Suppression],
) -> f64 {
    let mut cut: Vec<(DateTime<Utc>, DateTime<Utc>)> = windows
        .iter()
        .filter(|w| w.accesses.is_empty() || w.accesses.iter().any(|a| a == access))
        .map(|w| (w.from.max(from), w.until.min(to)))
        .filter(|(a, b)| a < b)
        .collect();
    cut.sort();
    let mut suppressed = 0.0;
    let mut reach = from;
    for (a, b) in cut {
        let a = a.max(reach);
        if b > a {
            suppressed += (b - a).num_milliseconds() as f64 / 1e3;
            reach = b;
        }
    }
    ((to - from).num_milliseconds() as f64 / 1e3 - suppressed).max(0.0)
}

/// The accesses `versions` scheduled for `sites` (quartier, building): each version is
/// `(plan, start, end)`, its reign already cut to the period. Each reign counts the
/// whole intervals of its unsuppressed time.
pub fn planned(
    versions: &[(&PlanFile, DateTime<Utc>, DateTime<Utc>)],
    sites: &[(String, String)],
) -> Vec<PlannedAccess> {
    let mut out: BTreeMap<(String, String, String), PlannedAccess> = BTreeMap::new();
    for (plan, start, end) in versions {
        for (q, b) in sites {
            let Some(group) = plan.group_for(q, b) else {
                continue;
            };
            for a in &group.access {
                let Ok(every) = humantime::parse_duration(&a.every) else {
                    continue;
                };
                let every_s = every.as_secs_f64();
                let runs = if every_s > 0.0 {
                    (unsuppressed_s(*start, *end, &a.name, &group.suppress) / every_s).floor()
                        as u64
                } else {
                    0
                };
                let entry = out
                    .entry((q.clone(), b.clone(), a.name.clone()))
                    .or_insert_with(|| PlannedAccess {
                        quartier: q.clone(),
                        building: b.clone(),
                        access: a.name.clone(),
                        kind: a.kind.clone(),
                        scheduled: 0,
                        every_s,
                    });
                entry.kind = a.kind.clone();
                entry.every_s = every_s;
                entry.scheduled += runs;
            }
        }
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(every: &str, suppress: &str) -> PlanFile {
        let text = format!(
            "[[group]]\nquartier = \"q\"\n[[group.access]]\nname = \"fibre\"\nkind = \"ftth\"\n\
             interface = \"eth0\"\nresponders = [\"http://r\"]\nevery = \"{every}\"\njitter = \"1m\"\n{suppress}"
        );
        toml::from_str(&text).expect("plan")
    }

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + h * 3600, 0).expect("time")
    }

    #[test]
    fn each_version_counts_its_reign_less_its_suppressions() {
        let hourly = plan("1h", "");
        let windows = format!(
            "[[group.suppress]]\nfrom = \"{}\"\nuntil = \"{}\"\nreason = \"works\"\n\
             [[group.suppress]]\nfrom = \"{}\"\nuntil = \"{}\"\nreason = \"overlapping\"\n",
            t(14).to_rfc3339(),
            t(18).to_rfc3339(),
            t(16).to_rfc3339(),
            t(20).to_rfc3339()
        );
        let half = plan("30m", &windows);
        let sites = vec![
            ("q".to_string(), "b1".to_string()),
            ("q".to_string(), "b2".to_string()),
            ("other".to_string(), "b3".to_string()),
        ];
        // 10 h hourly, then 14 h every 30 min with 6 h suppressed (two windows
        // overlapping by 2 h): 10 + 16 runs per building.
        let got = planned(&[(&hourly, t(0), t(10)), (&half, t(10), t(24))], &sites);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got.iter().all(|p| p.scheduled == 26 && p.access == "fibre"));
        assert_eq!(got[1].building, "b2");
        // A window for another access suppresses nothing here.
        let other = plan(
            "1h",
            &format!(
                "[[group.access]]\nname = \"m\"\nkind = \"4g\"\ninterface = \"w\"\nresponders = [\"http://r\"]\n\
                 [[group.suppress]]\nfrom = \"{}\"\nuntil = \"{}\"\nreason = \"m only\"\naccesses = [\"m\"]\n",
                t(0).to_rfc3339(),
                t(5).to_rfc3339()
            ),
        );
        let got = planned(&[(&other, t(0), t(10))], &sites[..1]);
        assert_eq!(
            got.iter()
                .map(|p| (p.access.as_str(), p.scheduled))
                .collect::<Vec<_>>(),
            vec![("fibre", 10), ("m", 20)],
            "m: every 15m (default) over the 5 h left = 20"
        );
    }
}
