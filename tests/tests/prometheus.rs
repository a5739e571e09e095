//! The dashboards and rules against a real Prometheus (Debian package `prometheus`)
//! scraping a real collector fed with generated results from several quartiers,
//! buildings and accesses over QUIC: every expression of every dashboard panel and
//! variable, and every rule, is evaluated through Prometheus' HTTP API and must succeed
//! and return data. A dashboard naming a metric or label the collector does not export
//! fails the same check (shown below). `promtool check metrics` on the collector's
//! output, `promtool check rules` and `promtool test rules` are clean.

use sonde_e2e::pipeline::{free_port, raw, scratch, Collector};
use sonde_proto::wire::{self, Health, Message, Upload};
use sonde_proto::{AccessKind, ResultRecord, VerdictOutcome};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn http_get(addr: &str, path: &str) -> (u16, String) {
    sonde_e2e::http_get(addr, path).unwrap_or((0, String::new()))
}

/// Evaluates `expr` now; `Ok(series)` when it succeeded and returned data.
fn evaluate(prom: &str, expr: &str) -> Result<usize, String> {
    let q: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("query", expr)
        .finish();
    let (code, body) = http_get(prom, &format!("/api/v1/query?{q}"));
    let v: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("{expr}: HTTP {code}: {e}: {body}"))?;
    if v["status"] != "success" {
        return Err(format!("{expr}: {}", v["error"]));
    }
    let n = match v["data"]["resultType"].as_str() {
        Some("vector") | Some("matrix") => v["data"]["result"].as_array().map_or(0, Vec::len),
        Some("scalar") => 1,
        _ => 0,
    };
    if n == 0 {
        return Err(format!("{expr}: no data"));
    }
    Ok(n)
}

/// Every PromQL expression of a dashboard file: panel targets, and variable queries
/// (`label_values(X, l)` evaluated as `count by (l) (X)`), with variables set to `.*`.
fn dashboard_expressions(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let d: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not valid JSON: {e}", path.display()))?;
    let subst = |e: &str| {
        e.replace("$quartier", ".*")
            .replace("$building", ".*")
            .replace("$access", ".*")
    };
    let mut out = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                out.push(subst(e));
            }
        }
    }
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(q) = v["query"]["query"].as_str() {
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|s| s.strip_suffix(')'))
                .ok_or_else(|| format!("{}: variable query {q:?}", path.display()))?;
            let (series, label) = inner
                .rsplit_once(',')
                .ok_or_else(|| format!("{}: variable query {q:?}", path.display()))?;
            out.push(subst(&format!(
                "count by ({}) ({})",
                label.trim(),
                series.trim()
            )));
        }
    }
    if out.is_empty() {
        return Err(format!("{}: no expressions", path.display()));
    }
    Ok(out)
}

/// `(kind, name or expression)` of every rule: `("record", name)`, `("expr", …)`.
fn rule_expressions(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).expect("rules file");
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i].trim_start();
        let indent = lines[i].len() - l.len();
        if let Some(name) = l.strip_prefix("- record:").or(l.strip_prefix("record:")) {
            out.push(("record".to_string(), name.trim().to_string()));
        }
        if let Some(e) = l.strip_prefix("expr:") {
            let e = e.trim();
            if e == "|" {
                let mut block = Vec::new();
                while i + 1 < lines.len() {
                    let next = lines[i + 1];
                    let ni = next.len() - next.trim_start().len();
                    if !next.trim().is_empty() && ni <= indent {
                        break;
                    }
                    block.push(next.trim());
                    i += 1;
                }
                out.push(("expr".to_string(), block.join(" ")));
            } else {
                out.push(("expr".to_string(), e.to_string()));
            }
        }
        i += 1;
    }
    out
}

struct Prometheus {
    child: Child,
    addr: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prometheus scraping the collector every second with sonde's rules; writing every
/// sample (rules' too) to `remote_write` when given.
fn start_prometheus(dir: &Path, collector_http: &str, remote_write: Option<&str>) -> Prometheus {
    let rules = PathBuf::from(ROOT).join("dashboards/rules/sonde.rules.yml");
    let config = dir.join("prometheus.yml");
    let remote = remote_write.map_or(String::new(), |url| {
        format!("remote_write:\n  - url: {url}\n    queue_config:\n      batch_send_deadline: 1s\n")
    });
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: sonde\n    static_configs:\n      - targets: [\"{collector_http}\"]\n{remote}",
            rules.display()
        ),
    )
    .expect("prometheus config");
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).expect("log"))
        .spawn()
        .expect("start prometheus");
    Prometheus { child, addr }
}

fn record(access: &str, kind: AccessKind, minutes_ago: i64, met: bool) -> ResultRecord {
    let mut r = ResultRecord::schema_example();
    r.id = uuid::Uuid::now_v7();
    r.access.name = Some(access.into());
    r.access.kind = kind;
    r.run.started_at = chrono::Utc::now() - chrono::Duration::minutes(minutes_ago);
    r.run.ended_at = r.run.started_at + chrono::Duration::seconds(20);
    let target = if kind == AccessKind::Ftth { 1e9 } else { 150e6 };
    if let Some(d) = r.download.as_mut() {
        d.ip_rate_bps = if met { target * 1.05 } else { target * 0.6 };
    }
    r.verdict.target_down_bps = Some(target);
    // Radio context as the agent reads it (values from a real modem and access point).
    r.radio = match kind {
        AccessKind::FourG => Some(sonde_proto::Radio {
            lte: Some(sonde_proto::LteRadio {
                technology: Some("lte".into()),
                operator: Some("208-01".into()),
                band: Some("B3".into()),
                rsrp_dbm: Some(-97.0),
                rsrq_db: Some(-10.0),
                sinr_db: Some(12.4),
                rssi_dbm: Some(-67.0),
                cell_id: Some("0x01A2B3C".into()),
            }),
            ..Default::default()
        }),
        AccessKind::Wifi => Some(sonde_proto::Radio {
            wifi: Some(sonde_proto::WifiRadio {
                frequency_mhz: Some(5180),
                channel: Some(36),
                signal_dbm: Some(-58.0),
                tx_bitrate_bps: Some(866_700_000),
                rx_bitrate_bps: Some(780_000_000),
                ..Default::default()
            }),
            ..Default::default()
        }),
        _ => None,
    };
    r.verdict.down = if met {
        VerdictOutcome::Met
    } else {
        VerdictOutcome::NotMet
    };
    r
}

/// A UDPST test of `access` (4G), as the agent records one.
fn capacity_record(access: &str, minutes_ago: i64) -> ResultRecord {
    let mut r = ResultRecord::capacity_example();
    r.id = uuid::Uuid::now_v7();
    r.access.name = Some(access.into());
    r.access.kind = AccessKind::FourG;
    r.run.started_at = chrono::Utc::now() - chrono::Duration::minutes(minutes_ago);
    r.run.ended_at = r.run.started_at + chrono::Duration::seconds(20);
    r.verdict.target_down_bps = Some(150e6);
    r.verdict.down = VerdictOutcome::Met;
    r
}

/// A responsiveness test of `access` (the nq engine), as the agent records one.
fn rpm_record(access: &str, minutes_ago: i64) -> ResultRecord {
    let mut r = ResultRecord::responsiveness_example();
    r.id = uuid::Uuid::now_v7();
    r.access.name = Some(access.into());
    r.access.kind = AccessKind::Ftth;
    r.run.started_at = chrono::Utc::now() - chrono::Duration::minutes(minutes_ago);
    r.run.ended_at = r.run.started_at + chrono::Duration::seconds(20);
    r
}

/// The dashboards' files.
fn dashboards() -> Vec<PathBuf> {
    let files: Vec<PathBuf> = std::fs::read_dir(PathBuf::from(ROOT).join("dashboards"))
        .expect("dashboards/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(files.len(), 4, "overview, building, fleet, collector");
    files
}

/// A single-node VictoriaMetrics (Debian's `victoria-metrics`) on loopback, answering
/// queries up to now (its default leaves out the last 30 s, for late samples).
fn start_victoria(dir: &Path) -> Prometheus {
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new("victoria-metrics")
        .arg(format!(
            "-storageDataPath={}",
            dir.join("victoria").display()
        ))
        .arg(format!("-httpListenAddr={addr}"))
        .args(["-search.latencyOffset=0s", "-search.disableCache"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("victoria.log")).expect("log"))
        .spawn()
        .expect("start victoria-metrics");
    Prometheus { child, addr }
}

/// Waits (60 s at most) until the query API at `addr` has a few scrapes of the
/// collector and the rules' output; `log` is shown when it does not.
fn wait_until_ready(addr: &str, who: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = evaluate(addr, "count_over_time(up{job=\"sonde\"}[1m]) >= 4").is_ok()
            && evaluate(addr, "sonde:target_met:ratio_by_quartier_kind").is_ok();
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{who} had no scrape of the collector in 60 s; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Every dashboard expression and every rule evaluated at `addr` (Prometheus' query
/// API): the failures, and how many were checked.
fn dashboard_failures(
    addr: &str,
    dashboards: &[PathBuf],
    rules_dir: &Path,
) -> (Vec<String>, usize) {
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in dashboards {
        let exprs = dashboard_expressions(path).unwrap_or_else(|e| panic!("{e}"));
        for e in exprs {
            checked += 1;
            if let Err(err) = evaluate(addr, &e) {
                failures.push(format!(
                    "{}: {err}",
                    path.file_name().unwrap_or_default().to_string_lossy()
                ));
            }
        }
    }
    for (kind, e) in rule_expressions(&rules_dir.join("sonde.rules.yml")) {
        checked += 1;
        if kind == "record" {
            if let Err(err) = evaluate(addr, &e) {
                failures.push(format!("rule {e}: {err}"));
            }
            continue;
        }
        // A rule must be valid PromQL; alert conditions are rightly empty on a healthy
        // fleet, so each metric an expression uses must return data instead.
        let q: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("query", &e)
            .finish();
        let (_, body) = http_get(addr, &format!("/api/v1/query?{q}"));
        if !body.contains("\"status\":\"success\"") {
            failures.push(format!("rule expression {e}: {body}"));
        }
        for name in e
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .filter(|w| w.starts_with("sonde_"))
        {
            if let Err(err) = evaluate(addr, &format!("count({name})")) {
                failures.push(format!("rule expression {e}: metric {name}: {err}"));
            }
        }
    }
    (failures, checked)
}

/// A collector fed over QUIC by six agents (three quartiers, two buildings each) with
/// results of four accesses (throughput, responsiveness, capacity) and one refused
/// input.
fn collector_with_a_fleet(dir: &Path) -> Collector {
    let mut collector = Collector::configure(dir);
    collector.start();
    let identities = enrol_fleet(dir, &collector);
    upload_fleet(&collector, &identities);
    collector
}

/// Six enrolled agents: three quartiers, two buildings each; their state directories.
fn enrol_fleet(dir: &Path, collector: &Collector) -> Vec<PathBuf> {
    // Three quartiers, two buildings each, one agent per building with two accesses.
    let mut identities = Vec::new();
    for q in ["q-nord", "q-sud", "q-est"] {
        for b in ["b1", "b2"] {
            let mut cmd = Command::new(sonde_e2e::bin("sonde-collector"));
            cmd.args(["token", "create", "--quartier", q, "--building"])
                .arg(format!("{q}-{b}"))
                .args(["--latitude", "48.85", "--longitude", "2.35", "--config"])
                .arg(&collector.config);
            let run = sonde_e2e::run_bounded(cmd, Duration::from_secs(30));
            assert_eq!(run.code(), 0, "{}", run.stderr());
            let state = dir.join(format!("{q}-{b}"));
            let mut cmd = Command::new(sonde_e2e::bin("sonde-agent"));
            cmd.args(["enroll", "--collector", &collector.quic, "--token"])
                .arg(run.stdout().trim())
                .arg("--state-dir")
                .arg(&state);
            let run = sonde_e2e::run_bounded(cmd, Duration::from_secs(60));
            assert_eq!(run.code(), 0, "{}", run.stderr());
            identities.push(state);
        }
    }
    identities
}

/// Each agent of `identities` uploads one batch of new results, then a stranger sends
/// one refused input.
fn upload_fleet(collector: &Collector, identities: &[PathBuf]) {
    let addr: std::net::SocketAddr = collector
        .quic
        .replace("localhost", "127.0.0.1")
        .parse()
        .expect("addr");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        use rustls::pki_types::pem::PemObject;
        for (n, state) in identities.iter().enumerate() {
            let cert =
                rustls::pki_types::CertificateDer::from_pem_file(state.join("agent.cert.pem"))
                    .expect("cert");
            let key = rustls::pki_types::PrivateKeyDer::from_pem_file(state.join("agent.key.pem"))
                .expect("key");
            let conn = raw::connect(
                addr,
                raw::client_config(&collector.ca_cert(), Some((cert, key))),
            )
            .await
            .expect("mTLS");
            let results = [
                record("fibre", AccessKind::Ftth, 45, true),
                record("fibre", AccessKind::Ftth, 30, n % 2 == 0),
                // Responsiveness of the same access (the nq engine).
                rpm_record("fibre", 25),
                record("fibre", AccessKind::Ftth, 15, n % 2 == 0),
                record("mobile", AccessKind::FourG, 40, true),
                // An RFC 9097 capacity test of the same access (the udpst engine).
                capacity_record("mobile", 30),
                record("mobile", AccessKind::FourG, 20, n % 3 != 0),
                record("wifi", AccessKind::Wifi, 10, true),
            ];
            let health = Health {
                spool_depth: n as u64,
                evictions_total: 1,
                missed_runs_total: 1,
                failures_total: [("timeout".to_string(), 2u64)].into_iter().collect(),
                version: "0.1.0".into(),
                // As `sonde-agent run` says it: the plan it runs (none here).
                plan: Some(Box::default()),
                ..Default::default()
            };
            let frame = wire::encode(&Message::Upload(Upload {
                batch: 1,
                health,
                results: results
                    .iter()
                    .map(sonde_proto::wire::RawRecord::of)
                    .collect(),
                signatures: None,
            }));
            assert!(matches!(
                raw::exchange(&conn, &frame).await.as_slice(),
                [Message::Ack(_)]
            ));
        }
        // One refused input, for the collector's refusal panel.
        let conn = raw::connect(addr, raw::client_config(&collector.ca_cert(), None))
            .await
            .expect("session");
        let _ = raw::exchange(&conn, b"not a frame").await;
    });
}

#[cfg_attr(
    not(sonde_prometheus),
    ignore = "needs prometheus and promtool (apt-get install prometheus; .ci/run does)"
)]
#[test]
fn every_dashboard_panel_and_rule_returns_data_from_a_real_prometheus() {
    // Files first: every dashboard is JSON, every rule file passes promtool.
    let dashboards = dashboards();
    let rules_dir = PathBuf::from(ROOT).join("dashboards/rules");
    for args in [
        vec!["check", "rules", "sonde.rules.yml"],
        vec!["test", "rules", "sonde.rules.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(&rules_dir)
            .output()
            .expect("promtool");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let dir = scratch("prometheus");
    let mut collector = collector_with_a_fleet(&dir);

    // The collector's output is clean for promtool.
    let (code, metrics) = http_get(&collector.http, "/metrics");
    assert_eq!(code, 200);
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    {
        use std::io::Write;
        let mut stdin = check.stdin.take().expect("stdin");
        stdin.write_all(metrics.as_bytes()).expect("feed promtool");
    }
    let out = check.wait_with_output().expect("promtool");
    let findings: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    assert!(findings.is_empty(), "promtool check metrics: {findings:#?}");

    let prom = start_prometheus(&dir, &collector.http, None);
    wait_until_ready(&prom.addr, "Prometheus", &dir.join("prometheus.log"));
    let (failures, checked) = dashboard_failures(&prom.addr, &dashboards, &rules_dir);
    assert!(
        failures.is_empty(),
        "{} of {checked} expressions failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 30, "only {checked} expressions checked");

    // The same check fails for a dashboard that names a metric or a label the
    // collector does not export, with the file's name.
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        serde_json::json!({
            "panels": [
                {"targets": [{"expr": "sonde_throughput_bytes_per_second{floor=\"2\"}"}]},
                {"targets": [{"expr": "sonde_download_speed_mbps"}]}
            ],
            "templating": {"list": []}
        })
        .to_string(),
    )
    .expect("bad dashboard");
    let bad_results: Vec<_> = dashboard_expressions(&bad)
        .expect("parses")
        .iter()
        .map(|e| evaluate(&prom.addr, e))
        .collect();
    assert!(
        bad_results
            .iter()
            .all(|r| r.as_ref().is_err_and(|e| e.contains("no data"))),
        "{bad_results:?}"
    );
    std::fs::write(&bad, "{ not json").expect("write");
    let err = dashboard_expressions(&bad).expect_err("invalid JSON");
    assert!(
        err.contains("bad.json") && err.contains("not valid JSON"),
        "{err}"
    );

    collector.stop();
    drop(prom);
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg_attr(
    not(sonde_prometheus),
    ignore = "needs prometheus and promtool (apt-get install prometheus; .ci/run does)"
)]
#[cfg_attr(
    not(sonde_victoria),
    ignore = "needs victoria-metrics (apt-get install victoria-metrics; .ci/run does)"
)]
#[test]
fn the_dashboards_read_long_term_data_from_victoria_metrics_through_remote_write() {
    // As OPERATIONS.md deploys it: Prometheus scrapes and evaluates the rules, and
    // writes every sample to VictoriaMetrics, which the dashboards then read.
    let dir = scratch("victoria");
    let mut collector = Collector::configure(&dir);
    collector.start();
    let identities = enrol_fleet(&dir, &collector);
    upload_fleet(&collector, &identities);
    let vm = start_victoria(&dir);
    let prom = start_prometheus(
        &dir,
        &collector.http,
        Some(&format!("http://{}/api/v1/write", vm.addr)),
    );
    wait_until_ready(&vm.addr, "VictoriaMetrics", &dir.join("prometheus.log"));
    // More uploads once it is scraped, so the rates of the collector's own panels
    // (commits, acks) have data rather than zeros.
    upload_fleet(&collector, &identities);
    let deadline = Instant::now() + Duration::from_secs(30);
    let commits =
        "histogram_quantile(0.5, sum by (le) (rate(sonde_collector_commit_seconds_bucket[5m])))";
    while evaluate(&vm.addr, commits).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    let rules_dir = PathBuf::from(ROOT).join("dashboards/rules");
    let (failures, checked) = dashboard_failures(&vm.addr, &dashboards(), &rules_dir);
    assert!(
        failures.is_empty(),
        "{} of {checked} expressions failed on VictoriaMetrics:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 30, "only {checked} expressions checked");
    // It answers from what Prometheus wrote: the same series as Prometheus itself.
    let series = |addr: &str| evaluate(addr, "sonde_throughput_bytes_per_second");
    assert_eq!(series(&vm.addr), series(&prom.addr));
    collector.stop();
    drop(prom);
    drop(vm);
    let _ = std::fs::remove_dir_all(&dir);
}
