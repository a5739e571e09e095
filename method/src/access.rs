//! What an access to probe must be, whoever writes it: the agent's `agent.toml` and a
//! collector's plan go through the same checks, so a plan the collector accepts is one
//! an agent runs (bar its interfaces, which only the box can check). Every problem is
//! reported at once, each with its field path (`access[1].responders[0]: ...`).

use crate::schedule::Cadence;
use sonde_proto::plan::{AccessSpec, PlanFile, Suppression};
use sonde_proto::AccessKind;
use std::collections::BTreeMap;
use std::time::Duration;

/// Responder URL schemes with their default ports: `http` (a sonde responder) and
/// `iperf3` (a stock iperf3 server).
pub const SCHEMES: [(&str, u16); 4] = [
    ("http", 80),
    ("iperf3", 5201),
    ("udpst", 24601),
    ("https", 443),
];

/// A checked access.
#[derive(Debug, Clone)]
pub struct Access {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: AccessKind,
    /// Interface.
    pub interface: String,
    /// Responder URLs.
    pub responders: Vec<url::Url>,
    /// Whether runs take the responders in turn.
    pub rotate: bool,
    /// IP-layer targets `(down, up)`, bit/s: configured, else the kind's defaults.
    pub targets: (Option<f64>, Option<f64>),
    /// When it runs.
    pub cadence: Cadence,
    /// Streams.
    pub streams: u32,
    /// Cap per direction.
    pub max_duration: Duration,
    /// Monthly data budget, bytes.
    pub budget: Option<u64>,
    /// Responsiveness to measure after each throughput test, when asked.
    pub rpm: Option<Rpm>,
}

/// An access's responsiveness measurement (§11).
#[derive(Debug, Clone, PartialEq)]
pub struct Rpm {
    /// The network-quality configuration URL; `None`: the responder's own.
    pub config: Option<url::Url>,
    /// PEM certificates to trust for it instead of the system's roots.
    pub ca: Option<std::path::PathBuf>,
}

impl Access {
    /// The fastest the access's line is expected to go, bit/s: twice its highest
    /// target (1 Gb/s without one). Bounds what can arrive after a stop.
    pub fn max_bps(&self) -> f64 {
        let t = self
            .targets
            .0
            .into_iter()
            .chain(self.targets.1)
            .fold(0.0, f64::max);
        if t > 0.0 {
            2.0 * t
        } else {
            1e9
        }
    }
}

/// Parses a byte size: a number with an optional unit, decimal (`B`, `kB`, `MB`, `GB`,
/// `TB`) or binary (`KiB`, `MiB`, `GiB`, `TiB`).
pub fn parse_bytes(s: &str) -> Option<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "kB" | "KB" | "k" => 1e3,
        "MB" | "M" => 1e6,
        "GB" | "G" => 1e9,
        "TB" | "T" => 1e12,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let v = n * mult;
    (0.0..1e18).contains(&v).then_some(v as u64)
}

/// A duration like `15m`, or a problem naming `field`.
pub fn duration(field: &str, text: &str, problems: &mut Vec<String>) -> Option<Duration> {
    humantime::parse_duration(text)
        .map_err(|e| {
            problems.push(format!(
                "{field}: {text:?} is not a duration like 15m ({e})"
            ))
        })
        .ok()
}

/// Checks a responder URL: a scheme of [`SCHEMES`] and a host.
pub fn responder_url(s: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(s).map_err(|e| format!("not a URL ({e})"))?;
    if !SCHEMES.iter().any(|(scheme, _)| *scheme == url.scheme()) {
        return Err(format!(
            "scheme {:?} is not supported; use http:// (a sonde responder), iperf3:// (an iperf3 server), udpst:// (a UDP Speed Test server, RFC 9946) or https://HOST/.well-known/nq (a network-quality server: responsiveness only)",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(|h| h.is_empty()) {
        return Err("the URL has no host".into());
    }
    Ok(url)
}

/// Fields a document carried that this version does not know, one problem each.
fn unknown_fields(at: &str, unknown: &BTreeMap<String, serde_json::Value>, p: &mut Vec<String>) {
    for name in unknown.keys() {
        p.push(format!("{at}: unknown field `{name}`"));
    }
}

/// Checks the `i`-th access `a` (after `earlier`) under the path `at` (`access[1]`),
/// all but its interface; the checked access when its kind and cadence are valid.
pub fn check(
    at: &str,
    a: &AccessSpec,
    earlier: &[AccessSpec],
    p: &mut Vec<String>,
) -> Option<Access> {
    unknown_fields(at, &a.unknown, p);
    if a.name.trim().is_empty() {
        p.push(format!("{at}.name: must not be empty"));
    } else if earlier.iter().any(|b| b.name == a.name) {
        p.push(format!(
            "{at}.name: {:?} is used by an earlier access",
            a.name
        ));
    }
    let kind = a
        .kind
        .parse::<AccessKind>()
        .map_err(|e| p.push(format!("{at}.kind: {e}")))
        .ok();
    if a.interface.trim().is_empty() {
        p.push(format!("{at}.interface: must not be empty"));
    }
    let responders = check_responders(at, &a.responders, p);
    for (field, v) in [
        ("target_down_mbps", a.target_down_mbps),
        ("target_up_mbps", a.target_up_mbps),
    ] {
        if v.is_some_and(|v| !(v > 0.0 && v.is_finite())) {
            p.push(format!("{at}.{field}: must be a positive number of Mb/s"));
        }
    }
    let cadence = check_cadence(at, a, p);
    if !(1..=64).contains(&a.streams) {
        p.push(format!("{at}.streams: {} is outside 1..=64", a.streams));
    }
    if !(1.0..=60.0).contains(&a.max_duration) {
        p.push(format!(
            "{at}.max_duration: {} s is outside 1..=60",
            a.max_duration
        ));
    }
    let budget = a.budget_month.as_ref().and_then(|b| {
        parse_bytes(b).or_else(|| {
            p.push(format!(
                "{at}.budget_month: {b:?} is not a size (e.g. 20GB, 500MiB)"
            ));
            None
        })
    });
    let rpm = check_rpm(at, a, &responders, p);
    let (down, up) = crate::verdict::default_targets(kind?);
    let checked = Access {
        name: a.name.clone(),
        kind: kind?,
        targets: (
            a.target_down_mbps.map(|m| m * 1e6).or(down),
            a.target_up_mbps.map(|m| m * 1e6).or(up),
        ),
        interface: a.interface.clone(),
        responders,
        rotate: a.rotate,
        cadence: cadence?,
        streams: a.streams,
        max_duration: Duration::from_secs_f64(a.max_duration.clamp(1.0, 60.0)),
        budget,
        rpm,
    };
    check_budget_fits(at, a, &checked, p);
    Some(checked)
}

/// An access's `rpm`, `rpm_config` and `rpm_ca`: an HTTPS configuration URL, a CA
/// only beside RPM, and no data budget (an RPM test is not bounded by one yet).
fn check_rpm(
    at: &str,
    a: &AccessSpec,
    responders: &[url::Url],
    p: &mut Vec<String>,
) -> Option<Rpm> {
    if !a.rpm && (a.rpm_config.is_some() || a.rpm_ca.is_some()) {
        p.push(format!(
            "{at}.rpm: rpm_config and rpm_ca need rpm = true (or are a mistake)"
        ));
    }
    let measures_rpm = a.rpm || responders.iter().any(|r| r.scheme() == "https");
    if measures_rpm && a.budget_month.is_some() {
        p.push(format!(
            "{at}.budget_month: an RPM test (rpm = true or an https:// responder) is not bounded by a data budget; remove one of them"
        ));
    }
    let config = a.rpm_config.as_ref().and_then(|c| match url::Url::parse(c) {
        Ok(u) if u.scheme() == "https" => Some(u),
        Ok(_) => {
            p.push(format!(
                "{at}.rpm_config: {c:?} is not an https:// URL (e.g. https://r.example/.well-known/nq)"
            ));
            None
        }
        Err(e) => {
            p.push(format!("{at}.rpm_config: {c:?}: {e}"));
            None
        }
    });
    a.rpm.then(|| Rpm {
        config,
        ca: a.rpm_ca.as_ref().map(std::path::PathBuf::from),
    })
}

/// A monthly budget holds at least one minimal test of the access.
fn check_budget_fits(at: &str, a: &AccessSpec, checked: &Access, p: &mut Vec<String>) {
    let Some(b) = checked.budget else {
        return;
    };
    let min = crate::budget::minimal_test(checked.max_bps());
    if b < min {
        p.push(format!(
            "{at}.budget_month: {} is smaller than one minimal test ({:.1} MB on a line of up to {:.0} Mb/s)",
            a.budget_month.as_deref().unwrap_or_default(),
            min as f64 / 1e6,
            checked.max_bps() / 1e6
        ));
    }
}

/// An access's responder URLs, at least one, each one an engine knows.
fn check_responders(at: &str, urls: &[String], p: &mut Vec<String>) -> Vec<url::Url> {
    if urls.is_empty() {
        p.push(format!(
            "{at}.responders: at least one responder URL is needed"
        ));
    }
    let mut responders = Vec::new();
    for (j, r) in urls.iter().enumerate() {
        match responder_url(r) {
            Ok(u) => responders.push(u),
            Err(e) => p.push(format!("{at}.responders[{j}]: {r:?}: {e}")),
        }
    }
    responders
}

/// An access's `every` (≥ 10 s) and `jitter` (≤ a quarter of it).
fn check_cadence(at: &str, a: &AccessSpec, p: &mut Vec<String>) -> Option<Cadence> {
    let every = duration(&format!("{at}.every"), &a.every, p);
    let jitter = duration(&format!("{at}.jitter"), &a.jitter, p);
    if let Some(e) = every.filter(|e| *e < Duration::from_secs(10)) {
        p.push(format!("{at}.every: {e:?} is shorter than 10 s"));
    }
    let (every, jitter) = (every?, jitter?);
    if jitter > every / 4 {
        p.push(format!(
            "{at}.jitter: {} is more than a quarter of every ({})",
            a.jitter, a.every
        ));
    }
    Some(Cadence {
        interval_ms: every.as_millis() as u64,
        jitter_ms: jitter.as_millis() as u64,
    })
}

/// Checks a list of accesses (`access[i]`), at least one; the checked ones.
pub fn check_all(prefix: &str, accesses: &[AccessSpec], p: &mut Vec<String>) -> Vec<Access> {
    if accesses.is_empty() {
        p.push(format!("{prefix}access: at least one access is needed"));
    }
    accesses
        .iter()
        .enumerate()
        .filter_map(|(i, a)| check(&format!("{prefix}access[{i}]"), a, &accesses[..i], p))
        .collect()
}

/// A suppression window: a start before its end, a reason, and accesses that exist.
fn check_suppression(at: &str, s: &Suppression, accesses: &[AccessSpec], p: &mut Vec<String>) {
    unknown_fields(at, &s.unknown, p);
    if s.from >= s.until {
        p.push(format!(
            "{at}: from ({}) is not before until ({})",
            s.from, s.until
        ));
    }
    if s.reason.trim().is_empty() {
        p.push(format!("{at}.reason: must not be empty"));
    }
    for (j, name) in s.accesses.iter().enumerate() {
        if !accesses.iter().any(|a| &a.name == name) {
            p.push(format!(
                "{at}.accesses[{j}]: no access of this group is named {name:?}"
            ));
        }
    }
}

/// Checks a whole plan; `Err` holds every problem, one line each with its path
/// (`group[1].access[0].every: ...`).
pub fn check_plan(plan: &PlanFile) -> Result<(), Vec<String>> {
    let mut p = Vec::new();
    if plan.groups.is_empty() {
        p.push("group: a plan needs at least one [[group]]".into());
    }
    let mut named: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut wide: BTreeMap<&str, usize> = BTreeMap::new();
    for (g, group) in plan.groups.iter().enumerate() {
        let at = format!("group[{g}]");
        if group.quartier.trim().is_empty() {
            p.push(format!("{at}.quartier: must not be empty"));
        }
        if group.buildings.is_empty() {
            if let Some(first) = wide.insert(&group.quartier, g) {
                p.push(format!(
                    "{at}: group[{first}] already covers every building of {:?}",
                    group.quartier
                ));
            }
        }
        for (j, b) in group.buildings.iter().enumerate() {
            if b.trim().is_empty() {
                p.push(format!("{at}.buildings[{j}]: must not be empty"));
            } else if let Some(first) = named.insert((&group.quartier, b), g) {
                p.push(format!(
                    "{at}.buildings[{j}]: {:?} of {:?} is already in group[{first}]",
                    b, group.quartier
                ));
            }
        }
        check_all(&format!("{at}."), &group.access, &mut p);
        for (j, s) in group.suppress.iter().enumerate() {
            check_suppression(&format!("{at}.suppress[{j}]"), s, &group.access, &mut p);
        }
    }
    if p.is_empty() {
        Ok(())
    } else {
        Err(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: &str = r#"
[[group]]
quartier = "paris-13"
buildings = ["b42", "b43"]

[[group.access]]
name = "fibre"
kind = "ftth"
interface = "eth0"
responders = ["http://r1.example:8080", "iperf3://r2.example"]

[[group.access]]
name = "mobile"
kind = "4g"
interface = "wwan0"
responders = ["http://r1.example:8080"]
every = "1h"
jitter = "10m"
streams = 1

[[group.suppress]]
from = "2026-12-24T00:00:00Z"
until = "2026-12-26T00:00:00Z"
reason = "building works"
accesses = ["fibre"]

[[group]]
quartier = "paris-13"

[[group.access]]
name = "fibre"
kind = "ftth"
interface = "eth0"
responders = ["http://r1.example:8080"]
"#;

    fn parse(text: &str) -> PlanFile {
        toml::from_str(text).expect("parses")
    }

    #[test]
    fn a_good_plan_passes_and_its_accesses_check_like_agent_toml() {
        let plan = parse(PLAN);
        check_plan(&plan).expect("valid");
        let mut p = Vec::new();
        let accesses = check_all("", &plan.groups[0].access, &mut p);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(accesses[1].kind, AccessKind::FourG);
        assert_eq!(
            accesses[1].cadence,
            Cadence {
                interval_ms: 3_600_000,
                jitter_ms: 600_000
            }
        );
        assert_eq!(accesses[0].responders[1].scheme(), "iperf3");
    }

    #[test]
    fn every_problem_of_a_plan_is_listed_with_its_path() {
        let bad = PLAN
            .replace("kind = \"4g\"", "kind = \"5g\"")
            .replace("jitter = \"10m\"", "jitter = \"30m\"")
            .replace("streams = 1", "stream = 1")
            .replace("accesses = [\"fibre\"]", "accesses = [\"fiber\"]")
            .replace("until = \"2026-12-26", "until = \"2026-12-23")
            .replace(
                "buildings = [\"b42\", \"b43\"]",
                "buildings = [\"b42\", \"b42\"]",
            )
            .replace("\"iperf3://r2.example\"", "\"ftp://x\"");
        let problems = check_plan(&parse(&bad)).expect_err("invalid");
        let want = [
            "group[0].buildings[1]: \"b42\" of \"paris-13\" is already in group[0]",
            "group[0].access[0].responders[1]: \"ftp://x\"",
            "group[0].access[1]: unknown field `stream`",
            "group[0].access[1].kind",
            "group[0].access[1].jitter",
            "group[0].suppress[0]: from",
            "group[0].suppress[0].accesses[0]: no access of this group is named \"fiber\"",
        ];
        assert_eq!(problems.len(), want.len(), "{problems:#?}");
        for (p, w) in problems.iter().zip(want) {
            assert!(p.starts_with(w), "{p} should start with {w}");
        }
    }

    #[test]
    fn two_groups_may_not_claim_one_building() {
        let twice = format!(
            "{PLAN}\n{}",
            &PLAN[PLAN
                .find("[[group]]\nquartier = \"paris-13\"\n\n")
                .expect("wide")..]
        );
        let problems = check_plan(&parse(&twice)).expect_err("twice quartier-wide");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("group[2]: group[1] already covers"),
            "{problems:?}"
        );
        let empty = check_plan(&PlanFile::default()).expect_err("empty");
        assert_eq!(
            empty,
            vec!["group: a plan needs at least one [[group]]".to_string()]
        );
        let no_access = "[[group]]\nquartier = \"q\"\n";
        let problems = check_plan(&parse(no_access)).expect_err("no access");
        assert_eq!(
            problems,
            vec!["group[0].access: at least one access is needed".to_string()]
        );
    }

    #[test]
    fn an_access_may_measure_rpm_against_an_https_configuration_without_a_budget() {
        let with = |extra: &str| {
            let text = PLAN.replacen("streams = 1", &format!("streams = 1\n{extra}"), 1);
            let mut p = Vec::new();
            let a = check_all("", &parse(&text).groups[0].access, &mut p);
            (a.get(1).and_then(|a| a.rpm.clone()), p)
        };
        let (rpm, p) = with("rpm = true");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(
            rpm,
            Some(Rpm {
                config: None,
                ca: None
            })
        );
        let (rpm, p) = with(
            "rpm = true\nrpm_config = \"https://nq.example/.well-known/nq\"\nrpm_ca = \"/etc/sonde/nq.pem\"",
        );
        assert!(p.is_empty(), "{p:?}");
        let rpm = rpm.expect("rpm");
        assert_eq!(
            rpm.config.map(|u| u.to_string()).as_deref(),
            Some("https://nq.example/.well-known/nq")
        );
        assert_eq!(rpm.ca, Some("/etc/sonde/nq.pem".into()));
        assert_eq!(with("").0, None, "off by default");
        for (extra, says) in [
            (
                "rpm = true\nrpm_config = \"http://nq.example/\"",
                "access[1].rpm_config: \"http://nq.example/\" is not an https:// URL",
            ),
            (
                "rpm_ca = \"/etc/sonde/nq.pem\"",
                "access[1].rpm: rpm_config and rpm_ca need rpm = true",
            ),
            (
                "rpm = true\nbudget_month = \"20GB\"",
                "access[1].budget_month: an RPM test",
            ),
        ] {
            let (_, p) = with(extra);
            assert_eq!(p.len(), 1, "{extra}: {p:?}");
            assert!(p[0].starts_with(says), "{extra}: {p:?}");
        }
    }

    #[test]
    fn budgets_are_sizes_and_must_hold_one_minimal_test() {
        for (text, bytes) in [
            ("20GB", 20e9 as u64),
            ("500MiB", 500 << 20),
            ("1.5GB", 1_500_000_000),
            ("42", 42),
        ] {
            assert_eq!(parse_bytes(text), Some(bytes), "{text}");
        }
        for bad in ["", "GB", "12 parsecs", "-3GB"] {
            assert_eq!(parse_bytes(bad), None, "{bad}");
        }
    }
}
