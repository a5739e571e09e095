//! The controller's side of plans: reading and checking a plan file, keeping each
//! version in the store, the version in force for ingest (watched in the store, so a
//! plan applied by `sonde-collector plan apply` reaches a running collector's agents),
//! and what changed between two versions.

use chrono::{DateTime, Utc};
use sonde_proto::plan::{AccessSpec, Group, PlanFile};
use sonde_store::{PlanVersion, Store, StoreError};
use std::collections::BTreeSet;

/// The plan in force.
#[derive(Debug, Clone, PartialEq)]
pub struct InForce {
    /// Its version.
    pub version: u64,
    /// When it took effect.
    pub applied_at: DateTime<Utc>,
    /// The plan.
    pub plan: PlanFile,
}

impl InForce {
    /// A stored version, read back; `None` when its document no longer parses (written
    /// by a newer collector).
    pub fn of(stored: &PlanVersion) -> Option<InForce> {
        let plan = serde_json::from_str(&stored.document).ok()?;
        Some(InForce {
            version: stored.version,
            applied_at: stored.applied_at,
            plan,
        })
    }
}

/// Reads a plan file: JSON when it starts with `{`, TOML otherwise. `Err` holds every
/// problem, one line each (parse errors first; then the methodology's checks).
pub fn parse(text: &str, origin: &str) -> Result<PlanFile, Vec<String>> {
    let parsed: Result<PlanFile, String> = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| e.to_string())
    } else {
        toml::from_str(text).map_err(|e| e.to_string())
    };
    let plan = parsed.map_err(|e| {
        vec![format!(
            "{origin}: {}",
            e.split_whitespace().collect::<Vec<_>>().join(" ")
        )]
    })?;
    sonde_method::access::check_plan(&plan)?;
    Ok(plan)
}

/// What `apply` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A new version.
    New(u64),
    /// The plan is the one in force already: no new version.
    Unchanged(u64),
}

/// Keeps `plan` (checked) as the next version in force from `at`, unless it is the one
/// in force already.
pub fn apply(store: &dyn Store, plan: &PlanFile, at: DateTime<Utc>) -> Result<Applied, StoreError> {
    if let Some(current) = latest(store)? {
        if current.plan == *plan {
            return Ok(Applied::Unchanged(current.version));
        }
    }
    let document =
        serde_json::to_string(plan).map_err(|e| StoreError::Query(format!("plan: {e}")))?;
    store.apply_plan(&document, at).map(Applied::New)
}

/// The latest version, read back.
pub fn latest(store: &dyn Store) -> Result<Option<InForce>, StoreError> {
    let Some(v) = store.plan_version()? else {
        return Ok(None);
    };
    Ok(store.plan(v)?.as_ref().and_then(InForce::of))
}

/// The versions in force during `[from, to)`, oldest first, each with when its
/// reign began and ended inside the period: what "scheduled" is counted from.
pub fn in_force_during(
    history: &[PlanVersion],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(InForce, DateTime<Utc>, DateTime<Utc>)> {
    let mut out = Vec::new();
    for (i, v) in history.iter().enumerate() {
        let end = history.get(i + 1).map_or(to, |n| n.applied_at.min(to));
        let start = v.applied_at.max(from);
        if start < end {
            if let Some(p) = InForce::of(v) {
                out.push((p, start, end));
            }
        }
    }
    out
}

/// What changed from `old` to `new`, one line each, `+` added, `-` removed, `~` changed
/// (`group paris-13/b42,b43: access fibre: every 15m -> 5m`).
pub fn diff(old: &PlanFile, new: &PlanFile) -> Vec<String> {
    let key = |g: &Group| {
        if g.buildings.is_empty() {
            format!("{}/*", g.quartier)
        } else {
            format!("{}/{}", g.quartier, g.buildings.join(","))
        }
    };
    let mut out = Vec::new();
    for g in &old.groups {
        if !new.groups.iter().any(|n| key(n) == key(g)) {
            out.push(format!("- group {}", key(g)));
        }
    }
    for g in &new.groups {
        match old.groups.iter().find(|o| key(o) == key(g)) {
            None => out.push(format!("+ group {}", key(g))),
            Some(o) => diff_group(&key(g), o, g, &mut out),
        }
    }
    out
}

fn diff_group(key: &str, old: &Group, new: &Group, out: &mut Vec<String>) {
    for a in &old.access {
        if !new.access.iter().any(|n| n.name == a.name) {
            out.push(format!("- group {key}: access {}", a.name));
        }
    }
    for a in &new.access {
        match old.access.iter().find(|o| o.name == a.name) {
            None => out.push(format!("+ group {key}: access {}", a.name)),
            Some(o) => {
                for (field, before, after) in fields(o)
                    .into_iter()
                    .zip(fields(a))
                    .filter_map(|((f, b), (_, n))| (b != n).then_some((f, b, n)))
                {
                    out.push(format!(
                        "~ group {key}: access {}: {field} {before} -> {after}",
                        a.name
                    ));
                }
            }
        }
    }
    let window = |s: &sonde_proto::plan::Suppression| {
        format!(
            "{} .. {} ({}){}",
            s.from.to_rfc3339(),
            s.until.to_rfc3339(),
            s.reason,
            if s.accesses.is_empty() {
                String::new()
            } else {
                format!(" for {}", s.accesses.join(","))
            }
        )
    };
    let before: BTreeSet<String> = old.suppress.iter().map(window).collect();
    let after: BTreeSet<String> = new.suppress.iter().map(window).collect();
    for w in before.difference(&after) {
        out.push(format!("- group {key}: suppress {w}"));
    }
    for w in after.difference(&before) {
        out.push(format!("+ group {key}: suppress {w}"));
    }
}

/// An access's fields, each as it reads in a plan.
fn fields(a: &AccessSpec) -> Vec<(&'static str, String)> {
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| v.to_string());
    vec![
        ("kind", a.kind.clone()),
        ("interface", a.interface.clone()),
        ("responders", a.responders.join(",")),
        ("rotate", a.rotate.to_string()),
        ("target_down_mbps", opt(a.target_down_mbps)),
        ("target_up_mbps", opt(a.target_up_mbps)),
        ("every", a.every.clone()),
        ("jitter", a.jitter.clone()),
        ("streams", a.streams.to_string()),
        ("max_duration", a.max_duration.to_string()),
        (
            "budget_month",
            a.budget_month.clone().unwrap_or_else(|| "-".into()),
        ),
        ("rpm", a.rpm.to_string()),
        (
            "rpm_config",
            a.rpm_config.clone().unwrap_or_else(|| "-".into()),
        ),
        ("rpm_ca", a.rpm_ca.clone().unwrap_or_else(|| "-".into())),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: &str = r#"
[[group]]
quartier = "paris-13"
buildings = ["b42"]

[[group.access]]
name = "fibre"
kind = "ftth"
interface = "eth0"
responders = ["http://r1.example:8080"]
"#;

    #[test]
    fn plans_read_as_toml_or_json_and_every_problem_is_listed() {
        let plan = parse(PLAN, "plan.toml").expect("valid");
        let json = serde_json::to_string(&plan).expect("json");
        assert_eq!(parse(&json, "plan.json").expect("json reads"), plan);
        let bad = PLAN.replace("every", "x").replace(
            "kind = \"ftth\"",
            "kind = \"5g\"\nevery = \"1s\"\njitter = \"0s\"",
        );
        let problems = parse(&bad, "plan.toml").expect_err("invalid");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("group[0].access[0].kind"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("group[0].access[0].every"),
            "{problems:?}"
        );
        let broken = parse("[[group]\n", "plan.toml").expect_err("not TOML");
        assert!(broken[0].starts_with("plan.toml: "), "{broken:?}");
    }

    #[test]
    fn a_diff_names_each_change() {
        let old = parse(PLAN, "a").expect("valid");
        let new_text = PLAN.replace("http://r1.example:8080", "http://r2.example:8080")
            + "every = \"5m\"\njitter = \"1m\"\n\n[[group.suppress]]\nfrom = \"2026-12-24T00:00:00Z\"\nuntil = \"2026-12-26T00:00:00Z\"\nreason = \"works\"\n\n[[group]]\nquartier = \"paris-19\"\n[[group.access]]\nname = \"m\"\nkind = \"4g\"\ninterface = \"wwan0\"\nresponders = [\"http://r.example\"]\n";
        let new = parse(&new_text, "b").expect("valid");
        assert_eq!(
            diff(&old, &new),
            vec![
                "~ group paris-13/b42: access fibre: responders http://r1.example:8080 -> http://r2.example:8080",
                "~ group paris-13/b42: access fibre: every 15m -> 5m",
                "~ group paris-13/b42: access fibre: jitter 2m -> 1m",
                "+ group paris-13/b42: suppress 2026-12-24T00:00:00+00:00 .. 2026-12-26T00:00:00+00:00 (works)",
                "+ group paris-19/*",
            ]
        );
        assert_eq!(diff(&new, &new), Vec::<String>::new());
        assert_eq!(
            diff(&new, &old).first().map(String::as_str),
            Some("- group paris-19/*")
        );
    }

    #[test]
    fn the_versions_in_force_during_a_period_are_cut_at_its_bounds() {
        let t = |h: i64| DateTime::from_timestamp(1_790_000_000 + h * 3600, 0).expect("time");
        let doc = serde_json::to_string(&parse(PLAN, "a").expect("valid")).expect("json");
        let v = |version, at| PlanVersion {
            version,
            applied_at: at,
            document: doc.clone(),
        };
        let history = vec![v(1, t(0)), v(2, t(10)), v(3, t(20))];
        let spans: Vec<_> = in_force_during(&history, t(5), t(15))
            .into_iter()
            .map(|(p, a, b)| (p.version, a, b))
            .collect();
        assert_eq!(spans, vec![(1, t(5), t(10)), (2, t(10), t(15))]);
        assert!(in_force_during(&history, t(-5), t(0)).is_empty());
        assert_eq!(in_force_during(&history, t(25), t(30)).len(), 1);
    }
}
