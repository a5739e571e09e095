//! Helpers for the store-and-forward tests: a real `sonde-collector serve` on fixed
//! loopback ports (so it can be killed and restarted where agents expect it), tokens
//! and enrolment through the real command lines, agent daemons with their own state
//! directories, and reads of the collector's HTTP API.

use crate::{bin, run_bounded};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A fresh directory under the system temp dir, removed first if it exists.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sonde-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A loopback port free for TCP and for UDP at the time of asking.
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let port = tcp.local_addr().expect("addr").port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port");
}

/// A `sonde-collector serve` process with its configuration and state.
#[derive(Debug)]
pub struct Collector {
    child: Option<Child>,
    /// Its configuration file.
    pub config: PathBuf,
    /// HTTP API address.
    pub http: String,
    /// QUIC address agents use (`localhost:PORT`).
    pub quic: String,
}

impl Collector {
    /// Writes a configuration in `dir` (fixed free ports) without starting it.
    pub fn configure(dir: &Path) -> Collector {
        Collector::configure_with(dir, "", "")
    }

    /// Like [`Collector::configure`], with more lines in `[quic]` and after it.
    pub fn configure_with(dir: &Path, quic_extra: &str, extra: &str) -> Collector {
        let (http, quic) = (free_port(), free_port());
        let config = dir.join("collector.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = \"collector\"\n[http]\nlisten = \"127.0.0.1:{http}\"\n\
                 [quic]\nlisten = \"127.0.0.1:{quic}\"\n{quic_extra}\n{extra}\n"
            ),
        )
        .expect("write collector config");
        Collector {
            child: None,
            config,
            http: format!("127.0.0.1:{http}"),
            quic: format!("localhost:{quic}"),
        }
    }

    /// Configures and starts a collector in `dir`.
    pub fn start_in(dir: &Path) -> Collector {
        let mut c = Collector::configure(dir);
        c.start();
        c
    }

    /// Starts (or restarts) the process and waits until it listens.
    pub fn start(&mut self) {
        self.start_under(&[]);
    }

    /// Like [`Collector::start`], run under `prefix` (e.g. `prlimit --nofile=1024`).
    pub fn start_under(&mut self, prefix: &[&str]) {
        assert!(self.child.is_none(), "already running");
        let config = self.config.display().to_string();
        let (child, _) = crate::start_logged_under(
            prefix,
            "sonde-collector",
            &["serve", "--config", &config, "--log-format", "json"],
            "collector listening",
        );
        self.child = Some(child);
    }

    /// Whether the process runs.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (10 s at most, then SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `sonde-collector ARGS --config CONFIG`, bounded to two minutes.
    pub fn cli(&self, args: &[&str]) -> crate::Run {
        let mut cmd = Command::new(bin("sonde-collector"));
        cmd.args(args).arg("--config").arg(&self.config);
        run_bounded(cmd, Duration::from_secs(120))
    }

    /// `sonde-collector report` of `[from, to]` in `format` into `out`; asserts success.
    pub fn report(
        &self,
        from: &str,
        to: &str,
        format: &str,
        out: &Path,
        more: &[&str],
    ) -> crate::Run {
        let out = out.to_string_lossy();
        let mut args = vec![
            "report", "--from", from, "--to", to, "--format", format, "--out", &out,
        ];
        args.extend(more);
        let run = self.cli(&args);
        assert_eq!(run.code(), 0, "report {args:?}: {}", run.stderr());
        run
    }

    /// `token create` for `building`; the token.
    pub fn token(&self, building: &str) -> String {
        let mut cmd = Command::new(bin("sonde-collector"));
        cmd.args([
            "token",
            "create",
            "--quartier",
            "q-test",
            "--building",
            building,
        ])
        .arg("--config")
        .arg(&self.config);
        let run = run_bounded(cmd, Duration::from_secs(30));
        assert_eq!(run.code(), 0, "token create: {}", run.stderr());
        run.stdout().trim().to_string()
    }

    /// Enrols an agent whose state goes in `state_dir`; returns its id.
    pub fn enroll(&self, building: &str, state_dir: &Path) -> String {
        let token = self.token(building);
        let mut cmd = Command::new(bin("sonde-agent"));
        cmd.args(["enroll", "--collector", &self.quic, "--token", &token])
            .arg("--state-dir")
            .arg(state_dir);
        let run = run_bounded(cmd, Duration::from_secs(60));
        assert_eq!(run.code(), 0, "enroll: {}", run.stderr());
        let out = run.stdout();
        out.split_whitespace()
            .nth(2)
            .unwrap_or_else(|| panic!("agent id in {out:?}"))
            .to_string()
    }

    /// GET `path` on the HTTP API: status and JSON body.
    pub fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let (code, body) = crate::http_get(&self.http, path).expect("the collector's API answers");
        (
            code,
            serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// The distinct ids among the stored results, read through the API, and how many
    /// rows there were (more rows than ids: a result stored twice).
    pub fn stored_ids(&self) -> (std::collections::HashSet<String>, usize) {
        let all = self.all_results();
        let ids = all
            .iter()
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .collect();
        (ids, all.len())
    }

    /// Every stored result, through the paged API.
    pub fn all_results(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        for _ in 0..10_000 {
            let (code, page) = self.get(&format!("/api/v1/results?limit=1000{cursor}"));
            assert_eq!(code, 200, "{page}");
            out.extend(page["results"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => return out,
            }
        }
        panic!("more than 10000 pages");
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// An agent's settings for a test.
#[derive(Debug, Clone)]
pub struct AgentSetup {
    /// Responder URL of its one access.
    pub responder: String,
    /// `every` of the access.
    pub every: String,
    /// Spool bound.
    pub max_results: u64,
    /// Results per upload.
    pub batch: usize,
    /// Port of the agent's own `/metrics` on 127.0.0.1, if wanted.
    pub metrics_port: Option<u16>,
    /// More lines for the access's table (e.g. `budget_month = "1GB"`).
    pub access_extra: String,
    /// The access's kind (`ftth`, `4g`, …).
    pub kind: &'static str,
    /// More top-level tables (e.g. `[radio]`), written before the access.
    pub extra: String,
    /// More collectors (QUIC `HOST:PORT`) after the one it is started with, sharing its
    /// store: the agent fails over to them in order.
    pub more_collectors: Vec<String>,
}

/// A running `sonde-agent run`.
#[derive(Debug)]
pub struct Agent {
    child: Child,
    /// Its state directory.
    pub state_dir: PathBuf,
    /// Its log file.
    pub log: PathBuf,
}

impl Agent {
    /// Whether the daemon has exited (a refused configuration exits at once).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Writes a configuration into `dir` and starts the daemon; state in `dir/state`.
    pub fn start(dir: &Path, collector: &Collector, setup: &AgentSetup) -> Agent {
        let state_dir = dir.join("state");
        let config = dir.join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "[site]\nquartier = \"q\"\nbuilding = \"b\"\nlatitude = 48.8\nlongitude = 2.3\n\
                 [collector]\naddress = [{}]\nstate_dir = \"{}\"\nretry_max = \"2s\"\nbatch = {}\n\
                 [spool]\nmax_results = {}\n\
                 [busy]\nthreshold = \"off\"\ncpu_percent = 100\n{}\n\
                 [[access]]\nname = \"loop\"\nkind = \"{}\"\ninterface = \"lo\"\n\
                 responders = [\"{}\"]\nevery = \"{}\"\njitter = \"1s\"\nmax_duration = 1\n{}\n{}",
                std::iter::once(&collector.quic)
                    .chain(&setup.more_collectors)
                    .map(|a| format!("\"{a}\""))
                    .collect::<Vec<_>>()
                    .join(", "),
                state_dir.display(),
                setup.batch,
                setup.max_results,
                setup.extra,
                setup.kind,
                setup.responder,
                setup.every,
                setup.access_extra,
                setup
                    .metrics_port
                    .map(|p| format!("[metrics]\nlisten = \"127.0.0.1:{p}\"\n"))
                    .unwrap_or_default()
            ),
        )
        .expect("write agent config");
        let log = dir.join("agent.log");
        let child = Command::new(bin("sonde-agent"))
            .args(["run", "--config"])
            .arg(&config)
            .env(
                "RUST_LOG",
                std::env::var("SONDE_TEST_AGENT_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn sonde-agent run");
        Agent {
            child,
            state_dir,
            log,
        }
    }

    /// `sonde-agent status --json`, once the daemon wrote one.
    pub fn status(&self) -> serde_json::Value {
        status(&self.state_dir)
    }

    /// Polls the status until `f` holds (at most `timeout`); the last status.
    pub fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status();
            if f(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "agent never reached {what:?} in {timeout:?}; status {s}\nlog:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM and wait for a clean exit (10 s at most).
    pub fn stop(mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sonde-collector report verify FILE --key KEY`.
pub fn verify_report(file: &Path, key: &Path) -> crate::Run {
    let mut cmd = Command::new(bin("sonde-collector"));
    cmd.args(["report", "verify"])
        .arg(file)
        .arg("--key")
        .arg(key);
    run_bounded(cmd, Duration::from_secs(60))
}

/// `sonde-agent status --state-dir DIR --json` (Null when there is no status yet).
pub fn status(state_dir: &Path) -> serde_json::Value {
    let mut cmd = Command::new(bin("sonde-agent"));
    cmd.args(["status", "--json", "--state-dir"]).arg(state_dir);
    let run = run_bounded(cmd, Duration::from_secs(30));
    serde_json::from_str(run.stdout().trim()).unwrap_or(serde_json::Value::Null)
}

impl Collector {
    /// The collector's data directory (next to its configuration).
    pub fn data_dir(&self) -> PathBuf {
        self.config
            .parent()
            .unwrap_or(Path::new("."))
            .join("collector")
    }

    /// The CA certificate agents pin.
    pub fn ca_cert(&self) -> rustls::pki_types::CertificateDer<'static> {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_file(self.data_dir().join("ca.cert.pem"))
            .expect("the collector's CA certificate")
    }

    /// The value of the metric line starting with `series` in `/metrics` (0 when absent).
    pub fn metric(&self, series: &str) -> f64 {
        let (_, out) = crate::http_get(&self.http, "/metrics").expect("/metrics answers");
        out.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }
}

/// A QUIC client of the collector speaking raw frames, for tests that send what no
/// agent would.
pub mod raw {
    use sonde_proto::wire::{FrameDecoder, Message};
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    /// Client configuration trusting `ca`, presenting `identity` if any.
    pub fn client_config(
        ca: &rustls::pki_types::CertificateDer<'static>,
        identity: Option<(
            rustls::pki_types::CertificateDer<'static>,
            rustls::pki_types::PrivateKeyDer<'static>,
        )>,
    ) -> quinn::ClientConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone()).expect("CA");
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_root_certificates(roots);
        let mut tls = match identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(vec![cert], key)
                .expect("client cert"),
            None => builder.with_no_client_auth(),
        };
        tls.alpn_protocols = vec![b"sonde/1".to_vec()];
        quinn::ClientConfig::new(Arc::new(
            quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC crypto"),
        ))
    }

    /// Connects to `addr` as `localhost`.
    pub async fn connect(
        addr: SocketAddr,
        config: quinn::ClientConfig,
    ) -> Result<quinn::Connection, quinn::ConnectionError> {
        let mut endpoint =
            quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client");
        endpoint.set_default_client_config(config);
        endpoint.connect(addr, "localhost").expect("connect").await
    }

    /// Sends `bytes` on a new stream, finishes it and reads the answer (5 s at most).
    pub async fn exchange(conn: &quinn::Connection, bytes: &[u8]) -> Vec<Message> {
        let (mut send, mut recv) = conn.open_bi().await.expect("stream");
        send.write_all(bytes).await.expect("send");
        let _ = send.finish();
        let reply = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1 << 20))
            .await
            .expect("an answer within 5 s")
            .expect("read");
        let mut d = FrameDecoder::new(1 << 20);
        d.push(&reply);
        let mut out = Vec::new();
        while let Ok(Some(m)) = d.poll() {
            out.push(m);
        }
        out
    }
}

/// A result as an agent makes it (the schema's example with a fresh id), started
/// `minutes_ago` minutes ago.
pub fn record(minutes_ago: i64) -> sonde_proto::ResultRecord {
    let mut r = sonde_proto::ResultRecord::schema_example();
    r.id = uuid::Uuid::now_v7();
    r.run.started_at = chrono::Utc::now() - chrono::Duration::minutes(minutes_ago);
    r.run.ended_at = r.run.started_at + chrono::Duration::seconds(12);
    r
}

/// Spools `n` records made by `make(i)` into `state_dir`'s spool, as a daemon would
/// have; returns their ids, oldest first.
pub fn seed_spool(
    state_dir: &Path,
    n: usize,
    mut make: impl FnMut(usize) -> sonde_proto::ResultRecord,
) -> Vec<String> {
    let mut spool =
        sonde_agent::state::spool::Spool::open(&state_dir.join("spool.sqlite"), 1_000_000)
            .expect("spool");
    (0..n)
        .map(|i| {
            let r = make(i);
            spool.push(&r).expect("push");
            r.id.to_string()
        })
        .collect()
}

impl AgentSetup {
    /// An agent probing `responder` (its FTTH access on `lo`) every 10 s, keeping 100
    /// results, uploading 10 at a time; change fields with struct update syntax.
    pub fn probing(responder: String) -> AgentSetup {
        AgentSetup {
            responder,
            every: "10s".into(),
            max_results: 100,
            batch: 10,
            metrics_port: None,
            access_extra: String::new(),
            kind: "ftth",
            extra: String::new(),
            more_collectors: Vec::new(),
        }
    }

    /// An agent that only uploads what it has spooled: its one access points at a
    /// port nobody listens on and runs hourly.
    pub fn uploader(max_results: u64, batch: usize) -> AgentSetup {
        AgentSetup {
            every: "1h".into(),
            max_results,
            batch,
            ..AgentSetup::probing("http://127.0.0.1:9".into())
        }
    }
}
