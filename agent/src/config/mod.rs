//! The agent's configuration file (TOML): the site, the collector, the spool and the
//! accesses to probe. [`load`] checks everything before anything starts and reports
//! every problem at once, each with its field path (`access[1].responders[0]: ...`).

use crate::net::netif;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Where the box is.
    pub site: SiteConfig,
    /// The collector and the agent's state.
    pub collector: CollectorConfig,
    /// The on-disk spool.
    #[serde(default)]
    pub spool: SpoolConfig,
    /// The accesses to probe (`[[access]]`, at least one).
    #[serde(default)]
    pub access: Vec<AccessConfig>,
    /// The agent's own `/metrics`, for the operator on site (off without this table).
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    /// Deferring tests while the line or the box is busy.
    #[serde(default)]
    pub busy: BusyConfig,
    /// Where the radio context of 4G accesses is read.
    #[serde(default)]
    pub radio: RadioConfig,
}

/// `[radio]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadioConfig {
    /// D-Bus address of ModemManager's bus (default: the system bus).
    #[serde(default)]
    pub dbus_address: Option<String>,
}

/// `[busy]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusyConfig {
    /// Other traffic on the access (down and up together) above which a test waits,
    /// e.g. `25kB/s` (the default); `off` never waits.
    #[serde(default = "default_busy_threshold")]
    pub threshold: String,
    /// Time between checks while busy (default 30s).
    #[serde(default = "default_busy_recheck")]
    pub recheck: String,
    /// Checks after the first before the test is skipped as `busy` (default 3).
    #[serde(default = "default_busy_checks")]
    pub checks: u32,
    /// CPU busy share of the box, percent, above which a test waits (default 30).
    #[serde(default = "default_busy_cpu")]
    pub cpu_percent: f64,
    /// Cross-traffic during a test, as a fraction of the test's bytes, above which the
    /// result is flagged `cross_traffic` (default 0.05).
    #[serde(default = "default_cross_traffic")]
    pub cross_traffic: f64,
}

impl Default for BusyConfig {
    fn default() -> Self {
        BusyConfig {
            threshold: default_busy_threshold(),
            recheck: default_busy_recheck(),
            checks: default_busy_checks(),
            cpu_percent: default_busy_cpu(),
            cross_traffic: default_cross_traffic(),
        }
    }
}

fn default_busy_threshold() -> String {
    "25kB/s".into()
}
fn default_busy_recheck() -> String {
    "30s".into()
}
fn default_busy_checks() -> u32 {
    3
}
fn default_busy_cpu() -> f64 {
    30.0
}
fn default_cross_traffic() -> f64 {
    0.05
}

/// `[busy]`, checked.
#[derive(Debug, Clone)]
pub struct Busy {
    /// Other traffic threshold, bytes/s; `None`: off.
    pub threshold: Option<f64>,
    /// Time between checks.
    pub recheck: Duration,
    /// Checks after the first.
    pub checks: u32,
    /// CPU busy share limit (0 to 1); `None`: off (100 %).
    pub cpu_limit: Option<f64>,
    /// Cross-traffic fraction that flags a result.
    pub cross_traffic: f64,
}

/// `[metrics]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of `/metrics` (default 127.0.0.1:9101: this box only).
    #[serde(default = "default_metrics_listen")]
    pub listen: String,
}

fn default_metrics_listen() -> String {
    "127.0.0.1:9101".into()
}

/// `[site]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Quartier (district) id.
    pub quartier: String,
    /// Building id.
    pub building: String,
    /// WGS84 latitude, degrees.
    pub latitude: f64,
    /// WGS84 longitude, degrees.
    pub longitude: f64,
}

/// `[collector]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// The collector's QUIC address, `HOST:PORT`; or several collectors sharing one
    /// store, in order of preference: the agent uploads to the first that answers and
    /// moves to the next when it stops answering.
    #[serde(deserialize_with = "one_or_many")]
    pub address: Vec<String>,
    /// The agent's state: identity (key, certificate, pinned CA) and spool.
    pub state_dir: PathBuf,
    /// Longest wait between reconnection attempts (exponential backoff with jitter
    /// up to this; default 5m).
    #[serde(default = "default_retry_max")]
    pub retry_max: String,
    /// Results per upload batch (default 500).
    #[serde(default = "default_batch")]
    pub batch: usize,
}

/// A string, or a list of strings.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(a) => vec![a],
        OneOrMany::Many(all) => all,
    })
}

fn default_retry_max() -> String {
    "5m".into()
}

fn default_batch() -> usize {
    500
}

/// `[spool]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// Results kept at most while the collector is unreachable; the oldest go first.
    #[serde(default = "default_max_results")]
    pub max_results: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            max_results: default_max_results(),
        }
    }
}

fn default_max_results() -> u64 {
    100_000
}

/// `[[access]]`: the same shape as a plan's accesses.
pub type AccessConfig = sonde_proto::plan::AccessSpec;

pub use sonde_method::access::{parse_bytes, Access};

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file as written.
    pub file: File,
    /// Its accesses, checked.
    pub accesses: Vec<Access>,
    /// `collector.retry_max`, checked.
    pub retry_max: Duration,
    /// Busy line and box.
    pub busy: Busy,
    /// `metrics.listen`, when `[metrics]` is present.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// Whether interfaces must exist on this box (false for checking a file elsewhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interfaces {
    /// Check that each access's interface exists here.
    MustExist,
    /// Do not look at this box's interfaces.
    Ignore,
}

/// Reads and checks the file; `Err` holds every problem, one line each.
pub fn load(path: &Path, interfaces: Interfaces) -> Result<Config, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("{}: cannot read: {e}", path.display())])?;
    let file: File = toml::from_str(&text).map_err(|e| {
        vec![format!(
            "{}: {}",
            path.display(),
            e.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        )]
    })?;
    check(file, interfaces)
}

use sonde_method::access::duration;

/// Checks a parsed file.
pub fn check(file: File, interfaces: Interfaces) -> Result<Config, Vec<String>> {
    let mut p = Vec::new();
    check_site(&file.site, &mut p);
    let retry_max = check_collector(&file.collector, &mut p);
    let metrics_listen = file.metrics.as_ref().and_then(|m| {
        m.listen
            .parse::<std::net::SocketAddr>()
            .map_err(|_| {
                p.push(format!(
                    "metrics.listen: {:?} is not an ADDRESS:PORT",
                    m.listen
                ))
            })
            .ok()
    });
    if file.spool.max_results == 0 {
        p.push("spool.max_results: must be at least 1".into());
    }
    if file.access.is_empty() {
        p.push("access: at least one [[access]] is needed".into());
    }
    let accesses = file
        .access
        .iter()
        .enumerate()
        .filter_map(|(i, a)| check_access(i, a, &file.access[..i], interfaces, &mut p))
        .collect();
    let busy = check_busy(&file.busy, &mut p);
    match retry_max {
        Some(retry_max) if p.is_empty() => Ok(Config {
            file,
            accesses,
            retry_max,
            busy,
            metrics_listen,
        }),
        _ => Err(p),
    }
}

/// `[site]`: names set, coordinates on the globe.
fn check_site(site: &SiteConfig, p: &mut Vec<String>) {
    for (field, value) in [
        ("site.quartier", &site.quartier),
        ("site.building", &site.building),
    ] {
        if value.trim().is_empty() {
            p.push(format!("{field}: must not be empty"));
        }
    }
    if !(-90.0..=90.0).contains(&site.latitude) {
        p.push(format!(
            "site.latitude: {} is outside -90..=90",
            site.latitude
        ));
    }
    if !(-180.0..=180.0).contains(&site.longitude) {
        p.push(format!(
            "site.longitude: {} is outside -180..=180",
            site.longitude
        ));
    }
}

/// `[collector]`; its `retry_max` when valid.
fn check_collector(c: &CollectorConfig, p: &mut Vec<String>) -> Option<Duration> {
    if c.address.is_empty() || c.address.len() > 16 {
        p.push(format!(
            "collector.address: {} addresses; give 1 to 16",
            c.address.len()
        ));
    }
    for (i, addr) in c.address.iter().enumerate() {
        let at = if c.address.len() == 1 {
            "collector.address".to_string()
        } else {
            format!("collector.address[{i}]")
        };
        if addr
            .rsplit_once(':')
            .is_none_or(|(h, port)| h.is_empty() || port.parse::<u16>().is_err())
        {
            p.push(format!("{at}: {addr:?} is not HOST:PORT"));
        }
    }
    if c.state_dir.as_os_str().is_empty() {
        p.push("collector.state_dir: must not be empty".into());
    }
    let retry_max = duration("collector.retry_max", &c.retry_max, p);
    if let Some(r) = retry_max.filter(|r| *r < Duration::from_secs(1)) {
        p.push(format!("collector.retry_max: {r:?} is shorter than 1s"));
    }
    if !(1..=1000).contains(&c.batch) {
        p.push(format!("collector.batch: {} is outside 1..=1000", c.batch));
    }
    retry_max
}

/// One `[[access]]` (the `i`-th, after `earlier`): the methodology's checks, and
/// its interface on this box when asked.
fn check_access(
    i: usize,
    a: &AccessConfig,
    earlier: &[AccessConfig],
    interfaces: Interfaces,
    p: &mut Vec<String>,
) -> Option<Access> {
    let at = format!("access[{i}]");
    let mut checked = sonde_method::access::check(&at, a, earlier, p);
    if interfaces == Interfaces::MustExist && !a.interface.trim().is_empty() {
        match resolve_interface(&a.interface, &netif::names()) {
            Ok(name) => {
                if let Err(e) = netif::interface(&name) {
                    p.push(format!(
                        "{at}.interface: {}",
                        e.trim_start_matches("--interface ")
                    ));
                }
                if let Some(c) = checked.as_mut() {
                    c.interface = name;
                }
            }
            Err(e) => p.push(format!("{at}.interface: {e}")),
        }
        // The CA file is this box's too: read it now, not at the first test.
        if let Some(ca) = &a.rpm_ca {
            if let Err(e) = crate::engine::rpm::read_ca(std::path::Path::new(ca)) {
                p.push(format!("{at}.rpm_ca: {e}"));
            }
        }
    }
    checked
}

/// The interface `wanted` names among `present`: itself, or when it is a pattern
/// (`wwan*`, `enp?s0`: one plan for boxes whose interfaces are named differently) the
/// one interface it matches.
pub fn resolve_interface(wanted: &str, present: &[String]) -> Result<String, String> {
    if !wanted.contains(['*', '?', '[']) {
        return Ok(wanted.to_string());
    }
    let pattern =
        glob::Pattern::new(wanted).map_err(|e| format!("{wanted:?} is not a pattern ({e})"))?;
    let matching: Vec<&String> = present.iter().filter(|n| pattern.matches(n)).collect();
    match matching.as_slice() {
        [one] => Ok(one.to_string()),
        [] => Err(format!(
            "no interface of this box matches {wanted:?} (it has {})",
            present.join(", ")
        )),
        many => Err(format!(
            "{wanted:?} matches {} interfaces of this box ({}); name one",
            many.len(),
            many.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Checks the accesses of a plan pushed by the controller as this box will run them
/// (interfaces included); `Err` holds every problem.
pub fn check_plan_accesses(
    accesses: &[AccessConfig],
    interfaces: Interfaces,
) -> Result<Vec<Access>, Vec<String>> {
    let mut p = Vec::new();
    if accesses.is_empty() {
        p.push("access: at least one access is needed".into());
    }
    let checked = accesses
        .iter()
        .enumerate()
        .filter_map(|(i, a)| check_access(i, a, &accesses[..i], interfaces, &mut p))
        .collect();
    if p.is_empty() {
        Ok(checked)
    } else {
        Err(p)
    }
}

/// `[busy]`.
fn check_busy(b: &BusyConfig, p: &mut Vec<String>) -> Busy {
    let threshold = match b.threshold.trim() {
        "off" => None,
        t => parse_bytes(t.trim_end_matches("/s"))
            .map(|v| v as f64)
            .or_else(|| {
                p.push(format!(
                    "busy.threshold: {:?} is not a rate (e.g. 25kB/s) or off",
                    b.threshold
                ));
                None
            }),
    };
    let recheck = duration("busy.recheck", &b.recheck, p);
    if b.checks > 10 {
        p.push(format!("busy.checks: {} is more than 10", b.checks));
    }
    if !(b.cpu_percent > 0.0 && b.cpu_percent <= 100.0) {
        p.push(format!(
            "busy.cpu_percent: {} is outside (0, 100]",
            b.cpu_percent
        ));
    }
    if !(b.cross_traffic > 0.0 && b.cross_traffic.is_finite()) {
        p.push(format!(
            "busy.cross_traffic: {} must be a positive fraction",
            b.cross_traffic
        ));
    }
    Busy {
        threshold,
        recheck: recheck.unwrap_or(Duration::from_secs(30)),
        checks: b.checks,
        cpu_limit: (b.cpu_percent < 100.0).then_some(b.cpu_percent / 100.0),
        cross_traffic: b.cross_traffic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonde_method::schedule::Cadence;
    use sonde_proto::AccessKind;

    const GOOD: &str = r#"
[site]
quartier = "paris-13"
building = "b42"
latitude = 48.83
longitude = 2.36

[collector]
address = "collector.example:4433"
state_dir = "/var/lib/sonde"

[[access]]
name = "fibre"
kind = "ftth"
interface = "lo"
responders = ["http://r1.example:8080", "iperf3://r2.example"]

[[access]]
name = "mobile"
kind = "4g"
interface = "lo"
responders = ["http://r1.example:8080"]
every = "1h"
jitter = "10m"
streams = 1
"#;

    #[test]
    fn a_good_file_gives_checked_accesses() {
        let file: File = toml::from_str(GOOD).expect("parses");
        let c = check(file, Interfaces::MustExist).expect("valid");
        assert_eq!(c.accesses.len(), 2);
        assert_eq!(
            c.accesses[0].cadence,
            Cadence {
                interval_ms: 900_000,
                jitter_ms: 120_000
            }
        );
        assert_eq!(c.accesses[1].kind, AccessKind::FourG);
        assert_eq!(c.accesses[0].responders.len(), 2);
        // A stock iperf3 server may stand among the responders.
        assert_eq!(c.accesses[0].responders[1].scheme(), "iperf3");
    }

    #[test]
    fn every_problem_is_reported_with_its_field_path() {
        let bad = GOOD
            .replace("latitude = 48.83", "latitude = 123.0")
            .replace("collector.example:4433", "no-port")
            .replace("kind = \"4g\"", "kind = \"5g\"")
            .replace(
                "interface = \"lo\"\nresponders = [\"http://r1.example:8080\"]",
                "interface = \"nosuchif0\"\nresponders = [\"ftp://x\"]",
            )
            .replace("jitter = \"10m\"", "jitter = \"30m\"")
            .replace("streams = 1", "streams = 0");
        let file: File = toml::from_str(&bad).expect("parses");
        let problems = check(file, Interfaces::MustExist).expect_err("invalid");
        let want = [
            "site.latitude",
            "collector.address",
            "access[1].kind",
            "access[1].responders[0]",
            "access[1].jitter",
            "access[1].streams",
            "access[1].interface",
        ];
        assert_eq!(problems.len(), want.len(), "{problems:#?}");
        for (p, w) in problems.iter().zip(want) {
            assert!(p.starts_with(w), "{p} should start with {w}");
        }
    }

    #[test]
    fn an_interface_pattern_names_the_one_interface_it_matches() {
        let present: Vec<String> = ["lo", "eth0", "wwan0", "wlan0", "wlan1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(resolve_interface("eth0", &present), Ok("eth0".into()));
        assert_eq!(resolve_interface("wwan*", &present), Ok("wwan0".into()));
        let many = resolve_interface("wlan?", &present).expect_err("two match");
        assert!(
            many.contains("matches 2 interfaces") && many.contains("wlan0, wlan1"),
            "{many}"
        );
        let none = resolve_interface("enp*", &present).expect_err("none");
        assert!(
            none.starts_with("no interface of this box matches \"enp*\""),
            "{none}"
        );
        // On this box: `l?` is the loopback.
        let file: File = toml::from_str(&GOOD.replace(
            "interface = \"lo\"\nresponders = [\"http://r1.example:8080\", ",
            "interface = \"l?\"\nresponders = [\"http://r1.example:8080\", ",
        ))
        .expect("parses");
        let c = check(file, Interfaces::MustExist).expect("valid");
        assert_eq!(c.accesses[0].interface, "lo");
    }

    #[test]
    fn unknown_fields_and_duplicate_names_are_refused() {
        let typo = GOOD.replace("streams = 1", "stream = 1");
        let problems =
            check(toml::from_str(&typo).expect("parses"), Interfaces::Ignore).expect_err("typo");
        assert_eq!(
            problems,
            vec!["access[1]: unknown field `stream`".to_string()]
        );
        let e = toml::from_str::<File>(
            &GOOD
                .replace("[busy]", "[bussy]")
                .replace("[site]", "[site]\nbuilding_id = 1"),
        )
        .expect_err("unknown field outside an access");
        assert!(e.to_string().contains("building_id"), "{e}");
        let dup = GOOD.replace("name = \"mobile\"", "name = \"fibre\"");
        let problems =
            check(toml::from_str(&dup).expect("parses"), Interfaces::Ignore).expect_err("dup");
        assert_eq!(
            problems,
            vec!["access[1].name: \"fibre\" is used by an earlier access".to_string()]
        );
    }

    #[test]
    fn the_collector_may_be_one_address_or_a_list_tried_in_order() {
        let one = check(toml::from_str(GOOD).expect("parses"), Interfaces::Ignore).expect("one");
        assert_eq!(one.file.collector.address, ["collector.example:4433"]);
        let two = GOOD.replace(
            "address = \"collector.example:4433\"",
            "address = [\"a.example:4433\", \"b.example:4433\"]",
        );
        let c = check(toml::from_str(&two).expect("parses"), Interfaces::Ignore).expect("two");
        assert_eq!(
            c.file.collector.address,
            ["a.example:4433", "b.example:4433"]
        );
        for (list, says) in [
            ("[]", "collector.address: 0 addresses; give 1 to 16"),
            (
                "[\"a.example:4433\", \"b.example\"]",
                "collector.address[1]: \"b.example\" is not HOST:PORT",
            ),
        ] {
            let text = GOOD.replace(
                "address = \"collector.example:4433\"",
                &format!("address = {list}"),
            );
            let problems = check(toml::from_str(&text).expect("parses"), Interfaces::Ignore)
                .expect_err("invalid");
            assert_eq!(problems, [says.to_string()]);
        }
    }

    #[test]
    fn an_rpm_ca_is_read_on_the_box_when_the_configuration_is() {
        let dir = std::env::temp_dir().join(format!("sonde-rpmca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("file");
        for (ca, says) in [
            (dir.join("missing.pem"), "cannot read certificates from"),
            (empty, "holds no certificate"),
        ] {
            let text = GOOD.replace(
                "streams = 1",
                &format!("streams = 1\nrpm = true\nrpm_ca = \"{}\"", ca.display()),
            );
            let file = toml::from_str(&text).expect("parses");
            let problems = check(file, Interfaces::MustExist).expect_err("unreadable CA");
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(
                problems[0].starts_with("access[1].rpm_ca: "),
                "{problems:?}"
            );
            assert!(problems[0].contains(says), "{problems:?}");
        }
        let c = check(
            toml::from_str(&GOOD.replace("streams = 1", "streams = 1\nrpm = true"))
                .expect("parses"),
            Interfaces::MustExist,
        )
        .expect("valid");
        assert!(c.accesses[1].rpm.is_some() && c.accesses[0].rpm.is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn budgets_must_hold_one_minimal_test() {
        // Sizes themselves: sonde_method::access's tests.
        let ok = GOOD.replace("streams = 1", "streams = 1\nbudget_month = \"20GB\"");
        let c = check(toml::from_str(&ok).expect("parses"), Interfaces::Ignore).expect("valid");
        assert_eq!(c.accesses[1].budget, Some(20_000_000_000));
        // 4G at up to 300 Mb/s: one minimal test is 2 MiB + 2 × (18.75 + 18.75) MB.
        let tiny = GOOD.replace("streams = 1", "streams = 1\nbudget_month = \"50MB\"");
        let problems = check(toml::from_str(&tiny).expect("parses"), Interfaces::Ignore)
            .expect_err("too small");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with(
                "access[1].budget_month: 50MB is smaller than one minimal test (77.1 MB"
            ),
            "{problems:?}"
        );
        let junk = GOOD.replace("streams = 1", "streams = 1\nbudget_month = \"lots\"");
        let problems = check(toml::from_str(&junk).expect("parses"), Interfaces::Ignore)
            .expect_err("not a size");
        assert!(
            problems[0].starts_with("access[1].budget_month: \"lots\""),
            "{problems:?}"
        );
    }
}
