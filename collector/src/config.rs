//! The collector's configuration file (TOML). Every field is checked before anything
//! starts; all problems are reported at once, each with its field path.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// `sonde-collector serve --config FILE`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory of the collector's state: the SQLite store (`collector.sqlite`), and
    /// later its keys. Relative paths are relative to the config file.
    pub data_dir: PathBuf,
    /// The HTTP API.
    #[serde(default)]
    pub http: HttpConfig,
    /// The agents' QUIC uplink.
    #[serde(default)]
    pub quic: QuicConfig,
    /// `/metrics`.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Compliance reports.
    #[serde(default)]
    pub report: ReportConfig,
    /// How long raw results are kept.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// The transparency log of stored results.
    #[serde(default)]
    pub log: LogConfig,
    /// Where results are stored, when not in `data_dir`.
    #[serde(default)]
    pub store: StoreConfig,
}

/// `[store]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// A PostgreSQL database, shared by several collectors
    /// (`postgres://USER:PASSWORD@HOST:PORT/DATABASE`). Absent: the embedded SQLite
    /// file in `data_dir`.
    pub url: Option<String>,
    /// The seal key file (32 random bytes, hex) with which the collectors on one
    /// PostgreSQL store seal the keys they share (the CA, the report key) in the
    /// database. Made by the first collector when the database holds no sealed key;
    /// every other collector needs a copy. Relative paths are relative to the config
    /// file. Absent: the keys are files in `data_dir`.
    pub seal_key: Option<PathBuf>,
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// How often a signed checkpoint of the transparency log is made, when the log
    /// grew (default 60s; 1s to 1h).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            checkpoint_every: default_checkpoint_every(),
        }
    }
}

fn default_checkpoint_every() -> String {
    "60s".into()
}

/// `[retention]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Months raw results (the JSON records) are kept, counted from their start; 0
    /// (the default) keeps them forever. The report rows of every result are kept
    /// regardless, so reports over older periods keep their figures.
    #[serde(default)]
    pub raw_months: u32,
}

/// `[report]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// IANA time zone of the sites, for peak hours and report dates (default
    /// Europe/Paris).
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// Who issues the reports, as printed on them and signed in their header (e.g.
    /// "Ville de Paris, direction du numérique"). None by default.
    #[serde(default)]
    pub issuer: Option<String>,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            time_zone: default_time_zone(),
            issuer: None,
        }
    }
}

fn default_time_zone() -> String {
    "Europe/Paris".into()
}

/// `[metrics]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// The series of an agent silent for longer than this are dropped (default 24h).
    #[serde(default = "default_silent_horizon")]
    pub silent_horizon: String,
    /// Rebuild the fleet's series from the store this often (e.g. `30s`), beside
    /// what this collector ingests: with several collectors on one store, each one's
    /// `/metrics` then shows every agent's latest results. Off by default.
    #[serde(default)]
    pub refresh: Option<String>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            silent_horizon: default_silent_horizon(),
            refresh: None,
        }
    }
}

fn default_silent_horizon() -> String {
    "24h".into()
}

/// `[quic]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuicConfig {
    /// UDP address agents upload to and enrol at (default 127.0.0.1:4433).
    #[serde(default = "default_quic_listen")]
    pub listen: String,
    /// Names (DNS or IP) agents use to reach the collector; its server certificate
    /// carries them. Default: `localhost` and the listen address.
    #[serde(default)]
    pub names: Vec<String>,
    /// Agent connections held at most; more are refused and counted (default 5000).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections without a certificate (they may only enrol) held at most, apart
    /// from the agents' (default 64).
    #[serde(default = "default_max_unauthenticated")]
    pub max_unauthenticated: usize,
    /// Of those, at most this many from one address (default 8).
    #[serde(default = "default_max_unauthenticated_per_address")]
    pub max_unauthenticated_per_address: usize,
    /// Time a connection without a certificate has to enrol before it is closed
    /// (default 10s).
    #[serde(default = "default_enrol_timeout")]
    pub enrol_timeout: String,
}

impl Default for QuicConfig {
    fn default() -> Self {
        QuicConfig {
            listen: default_quic_listen(),
            names: Vec::new(),
            max_connections: default_max_connections(),
            max_unauthenticated: default_max_unauthenticated(),
            max_unauthenticated_per_address: default_max_unauthenticated_per_address(),
            enrol_timeout: default_enrol_timeout(),
        }
    }
}

fn default_quic_listen() -> String {
    "127.0.0.1:4433".into()
}

fn default_max_connections() -> usize {
    5000
}

fn default_max_unauthenticated() -> usize {
    64
}

fn default_max_unauthenticated_per_address() -> usize {
    8
}

fn default_enrol_timeout() -> String {
    "10s".into()
}

/// `[http]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of `/healthz`, `/metrics` and `/api/v1/*` (default 127.0.0.1:9090).
    #[serde(default = "default_http_listen")]
    pub listen: String,
    /// Connections held at once (default 1024; lowered to fit the descriptor limit).
    /// When full, the connection silent longest without a request is cut for the
    /// newcomer.
    #[serde(default = "default_http_max")]
    pub max_connections: usize,
    /// Connections one address holds at once (default 64); more are closed at once.
    #[serde(default = "default_http_max_per_address")]
    pub max_connections_per_address: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_http_listen(),
            max_connections: default_http_max(),
            max_connections_per_address: default_http_max_per_address(),
        }
    }
}

fn default_http_max() -> usize {
    crate::transport::http::Limits::default().total
}

fn default_http_max_per_address() -> usize {
    crate::transport::http::Limits::default().per_address
}

fn default_http_listen() -> String {
    "127.0.0.1:9090".into()
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The collector's state directory (store, CA).
    pub data_dir: PathBuf,
    /// Where the store lives when it is the embedded SQLite file.
    pub store_path: PathBuf,
    /// The PostgreSQL database the store is in instead (`[store] url`).
    pub store_url: Option<String>,
    /// The seal key of the keys kept in the database (`[store] seal_key`).
    pub seal_key: Option<PathBuf>,
    /// HTTP listen address.
    pub http_listen: SocketAddr,
    /// Connections the HTTP port holds.
    pub http_limits: crate::transport::http::Limits,
    /// QUIC listen address.
    pub quic_listen: SocketAddr,
    /// Names in the server certificate.
    pub quic_names: Vec<String>,
    /// Connection limits and the enrolment deadline.
    pub admission: crate::transport::Limits,
    /// Series of agents silent longer than this are dropped.
    pub silent_horizon: std::time::Duration,
    /// Time between two rebuilds of the fleet's series from the store (`None`: only
    /// at start).
    pub metrics_refresh: Option<std::time::Duration>,
    /// Time zone of the sites, for reports.
    pub time_zone: chrono_tz::Tz,
    /// Who issues the reports.
    pub issuer: Option<String>,
    /// Months raw results are kept (0: forever).
    pub raw_months: u32,
    /// Time between two checkpoints of the transparency log.
    pub checkpoint_every: std::time::Duration,
}

pub use sonde_store::redact_url;

/// Why `[store] url` cannot name a PostgreSQL database, if it cannot.
fn store_url_problem(url: &str) -> Option<String> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") => None,
        _ => Some(format!(
            "store.url: {} is not a postgres:// URL (e.g. postgres://sonde:PASSWORD@db.example:5432/sonde)",
            redact_url(url)
        )),
    }
}

/// `[store]`'s problems.
fn check_store(store: &StoreConfig, problems: &mut Vec<String>) {
    problems.extend(store.url.as_deref().and_then(store_url_problem));
    if store.seal_key.is_some() && store.url.is_none() {
        problems.push(
            "store.seal_key: keys are sealed in a shared PostgreSQL store; set store.url \
             (or SONDE_STORE_URL) too, or remove it to keep the keys in data_dir"
                .into(),
        );
    }
}

impl Checked {
    /// Where the store is, for messages: its database's URL (password hidden), or the
    /// SQLite file.
    pub fn store_name(&self) -> String {
        match &self.store_url {
            Some(url) => redact_url(url),
            None => self.store_path.display().to_string(),
        }
    }

    /// The store path for a data directory.
    pub fn store_in(data_dir: &Path) -> PathBuf {
        data_dir.join("collector.sqlite")
    }
}

/// Reads and checks a config file; `Err` lists every problem, one per line, each
/// naming its field.
pub fn load(path: &Path) -> Result<Checked, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("{}: cannot read: {e}", path.display())])?;
    let mut config: Config = toml::from_str(&text).map_err(|e| {
        vec![format!(
            "{}: {}",
            path.display(),
            e.to_string().lines().collect::<Vec<_>>().join(" ")
        )]
    })?;
    store_url_from_env(&mut config, std::env::var(STORE_URL_ENV).ok());
    let base = path.parent().unwrap_or(Path::new("."));
    check(&config, base)
}

/// The environment variable that gives the store's URL, keeping its password out of
/// the file; it wins over `[store] url`.
pub const STORE_URL_ENV: &str = "SONDE_STORE_URL";

/// `[store] url` from the environment's value, when it has one.
fn store_url_from_env(config: &mut Config, env: Option<String>) {
    if let Some(url) = env.filter(|u| !u.trim().is_empty()) {
        config.store.url = Some(url);
    }
}

/// An address field: parsed, or its problem noted.
fn address(field: &str, text: &str, problems: &mut Vec<String>) -> Option<SocketAddr> {
    text.parse::<SocketAddr>()
        .map_err(|_| problems.push(format!("{field}: {text:?} is not an ADDRESS:PORT")))
        .ok()
}

/// Checks `[quic]`: its listen address and enrolment deadline, when valid.
fn check_quic(
    quic: &QuicConfig,
    problems: &mut Vec<String>,
) -> (Option<SocketAddr>, Option<std::time::Duration>) {
    let listen = address("quic.listen", &quic.listen, problems);
    for (i, name) in quic.names.iter().enumerate() {
        if name.trim().is_empty() || name.contains(char::is_whitespace) {
            problems.push(format!(
                "quic.names[{i}]: {name:?} is not a host name or address"
            ));
        }
    }
    for (field, v) in [
        ("quic.max_connections", quic.max_connections),
        ("quic.max_unauthenticated", quic.max_unauthenticated),
        (
            "quic.max_unauthenticated_per_address",
            quic.max_unauthenticated_per_address,
        ),
    ] {
        if v == 0 {
            problems.push(format!("{field}: must be at least 1"));
        }
    }
    let enrol_timeout = humantime::parse_duration(&quic.enrol_timeout)
        .ok()
        .filter(|d| {
            (std::time::Duration::from_secs(1)..=std::time::Duration::from_secs(300)).contains(d)
        });
    if enrol_timeout.is_none() {
        problems.push(format!(
            "quic.enrol_timeout: {:?} is not a duration in 1s..=5m",
            quic.enrol_timeout
        ));
    }
    (listen, enrol_timeout)
}

/// Checks `[metrics]`: the silent horizon, when valid.
fn check_metrics(m: &MetricsConfig, problems: &mut Vec<String>) -> Option<std::time::Duration> {
    let horizon = humantime::parse_duration(&m.silent_horizon)
        .ok()
        .filter(|d| *d >= std::time::Duration::from_secs(60));
    if horizon.is_none() {
        problems.push(format!(
            "metrics.silent_horizon: {:?} is not a duration of at least 1m (e.g. 24h)",
            m.silent_horizon
        ));
    }
    if let Some(r) = m.refresh.as_ref().filter(|_| check_refresh(m).is_none()) {
        problems.push(format!(
            "metrics.refresh: {r:?} is not a duration of at least 1s (e.g. 30s)"
        ));
    }
    horizon
}

/// `[metrics] refresh`, when given and valid.
fn check_refresh(m: &MetricsConfig) -> Option<std::time::Duration> {
    m.refresh
        .as_ref()
        .and_then(|r| humantime::parse_duration(r).ok())
        .filter(|d| *d >= std::time::Duration::from_secs(1))
}

/// Checks `[log]`: the checkpoint cadence, when valid.
fn check_log(log: &LogConfig, problems: &mut Vec<String>) -> Option<std::time::Duration> {
    let every = humantime::parse_duration(&log.checkpoint_every)
        .ok()
        .filter(|d| (1..=3600).contains(&d.as_secs()));
    if every.is_none() {
        problems.push(format!(
            "log.checkpoint_every: {:?} is not a duration in 1s..=1h (e.g. 60s)",
            log.checkpoint_every
        ));
    }
    every
}

/// Checks a parsed file; relative paths are from `base` (the file's directory).
fn check(config: &Config, base: &Path) -> Result<Checked, Vec<String>> {
    let mut problems = Vec::new();
    let data_dir = base.join(&config.data_dir);
    if config.data_dir.as_os_str().is_empty() {
        problems.push("data_dir: must not be empty".to_string());
    }
    let http_listen = address("http.listen", &config.http.listen, &mut problems);
    if config.http.max_connections == 0 || config.http.max_connections_per_address == 0 {
        problems.push(
            "http.max_connections, http.max_connections_per_address: must be at least 1".into(),
        );
    }
    let (quic_listen, enrol_timeout) = check_quic(&config.quic, &mut problems);
    let silent_horizon = check_metrics(&config.metrics, &mut problems);
    let checkpoint_every = check_log(&config.log, &mut problems);
    check_store(&config.store, &mut problems);
    let time_zone = config.report.time_zone.parse::<chrono_tz::Tz>().ok();
    if time_zone.is_none() {
        problems.push(format!(
            "report.time_zone: {:?} is not an IANA time zone (e.g. Europe/Paris)",
            config.report.time_zone
        ));
    }
    let (
        true,
        Some(http_listen),
        Some(quic_listen),
        Some(silent_horizon),
        Some(time_zone),
        Some(enrol_timeout),
        Some(checkpoint_every),
    ) = (
        problems.is_empty(),
        http_listen,
        quic_listen,
        silent_horizon,
        time_zone,
        enrol_timeout,
        checkpoint_every,
    )
    else {
        return Err(problems);
    };
    let mut quic_names = config.quic.names.clone();
    if quic_names.is_empty() {
        quic_names.push("localhost".into());
        if !quic_listen.ip().is_unspecified() {
            quic_names.push(quic_listen.ip().to_string());
        }
    }
    Ok(Checked {
        store_path: Checked::store_in(&data_dir),
        store_url: config.store.url.clone(),
        seal_key: config.store.seal_key.as_ref().map(|p| base.join(p)),
        data_dir,
        http_listen,
        http_limits: crate::transport::http::Limits {
            total: config.http.max_connections,
            per_address: config.http.max_connections_per_address,
        },
        quic_listen,
        quic_names,
        admission: crate::transport::Limits {
            agents: config.quic.max_connections,
            strangers: config.quic.max_unauthenticated,
            strangers_per_address: config.quic.max_unauthenticated_per_address,
            enrol_timeout,
        },
        silent_horizon,
        metrics_refresh: check_refresh(&config.metrics),
        time_zone,
        issuer: config
            .report
            .issuer
            .clone()
            .filter(|i| !i.trim().is_empty()),
        raw_months: config.retention.raw_months,
        checkpoint_every,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sonde-config-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join("collector.toml");
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn a_store_url_is_checked_and_the_environment_wins_over_the_file() {
        let p = write(
            "pg-ok",
            "data_dir = \"state\"\n[store]\nurl = \"postgres://sonde:pw@db:5432/sonde\"\n",
        );
        let c = load(&p).expect("valid");
        assert_eq!(
            c.store_url.as_deref(),
            Some("postgres://sonde:pw@db:5432/sonde")
        );
        let p = write(
            "pg-bad",
            "data_dir = \"state\"\n[store]\nurl = \"mysql://db/sonde\"\n",
        );
        let problems = load(&p).expect_err("refused");
        assert!(
            problems[0].starts_with("store.url: mysql://db/sonde is not a postgres:// URL"),
            "{problems:?}"
        );
        let mut config: Config = toml::from_str("data_dir = \"s\"\n").expect("toml");
        store_url_from_env(&mut config, Some(String::new()));
        assert_eq!(config.store.url, None, "an empty variable is no URL");
        store_url_from_env(&mut config, Some("postgres:///sonde".into()));
        assert_eq!(config.store.url.as_deref(), Some("postgres:///sonde"));
    }

    #[test]
    fn a_seal_key_needs_a_shared_store_and_is_next_to_the_config() {
        let p = write(
            "seal-ok",
            "data_dir = \"state\"\n[store]\nurl = \"postgres:///sonde\"\nseal_key = \"seal.key\"\n",
        );
        let c = load(&p).expect("valid");
        assert_eq!(c.seal_key, Some(p.parent().expect("dir").join("seal.key")));
        let p = write(
            "seal-alone",
            "data_dir = \"state\"\n[store]\nseal_key = \"seal.key\"\n",
        );
        let problems = load(&p).expect_err("refused");
        assert!(
            problems[0].starts_with("store.seal_key: keys are sealed in a shared PostgreSQL"),
            "{problems:?}"
        );
    }

    #[test]
    fn relative_data_dir_is_next_to_the_config() {
        let p = write(
            "ok",
            "data_dir = \"state\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
        );
        let c = load(&p).expect("valid");
        assert_eq!(
            c.store_path,
            p.parent().expect("dir").join("state/collector.sqlite")
        );
    }

    #[test]
    fn the_checkpoint_cadence_defaults_to_a_minute_and_is_bounded() {
        let ok = write("log-default", "data_dir = \"state\"\n");
        let c = load(&ok).expect("valid");
        assert_eq!(c.checkpoint_every, std::time::Duration::from_secs(60));
        for bad in ["0s", "2h", "soon"] {
            let p = write(
                &format!("log-{bad}"),
                &format!("data_dir = \"state\"\n[log]\ncheckpoint_every = \"{bad}\"\n"),
            );
            let problems = load(&p).expect_err(bad);
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with("log.checkpoint_every:")),
                "{bad}: {problems:?}"
            );
        }
    }

    #[test]
    fn the_metrics_refresh_is_off_by_default_and_at_least_a_second() {
        let ok = write("refresh-default", "data_dir = \"state\"\n");
        assert_eq!(load(&ok).expect("valid").metrics_refresh, None);
        let on = write(
            "refresh-30s",
            "data_dir = \"state\"\n[metrics]\nrefresh = \"30s\"\n",
        );
        assert_eq!(
            load(&on).expect("valid").metrics_refresh,
            Some(std::time::Duration::from_secs(30))
        );
        for bad in ["10ms", "often"] {
            let p = write(
                &format!("refresh-{bad}"),
                &format!("data_dir = \"state\"\n[metrics]\nrefresh = \"{bad}\"\n"),
            );
            let problems = load(&p).expect_err(bad);
            assert!(
                problems.iter().any(|p| p.starts_with("metrics.refresh:")),
                "{bad}: {problems:?}"
            );
        }
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/collector.example.toml");
        let c = load(&p).expect("deploy/collector.example.toml is valid");
        assert_eq!(c.quic_names, vec!["collector.example".to_string()]);
        assert_eq!(c.admission.agents, 5000);
        assert!(c.quic_listen.ip().is_unspecified());
    }

    #[test]
    fn problems_name_their_field() {
        let p = write(
            "bad-listen",
            "data_dir = \"\"\n[http]\nlisten = \"nowhere\"\n[quic]\nlisten = \"x\"\nmax_connections = 0\n",
        );
        let problems = load(&p).expect_err("invalid");
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].starts_with("data_dir"), "{problems:?}");
        assert!(problems[1].starts_with("http.listen"), "{problems:?}");
        assert!(problems[2].starts_with("quic.listen"), "{problems:?}");
        assert!(
            problems[3].starts_with("quic.max_connections"),
            "{problems:?}"
        );
        let p = write("unknown", "data_dir = \"s\"\nkeep_forever = 3\n");
        let problems = load(&p).expect_err("unknown field");
        assert!(problems[0].contains("keep_forever"), "{problems:?}");
        let p = write(
            "zone",
            "data_dir = \"s\"\n[report]\ntime_zone = \"Europe/Pariss\"\n[retention]\nraw_months = 13\n",
        );
        let problems = load(&p).expect_err("bad zone");
        assert!(problems[0].starts_with("report.time_zone"), "{problems:?}");
        let p = write(
            "retention",
            "data_dir = \"s\"\n[retention]\nraw_months = 13\n",
        );
        let c = load(&p).expect("valid");
        assert_eq!((c.raw_months, c.time_zone), (13, chrono_tz::Europe::Paris));
    }
}
