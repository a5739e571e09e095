//! Full disks against real processes: a small tmpfs is filled under them, then
//! freed. What is checked: health says so with the reason, nothing acknowledged is
//! lost, and work resumes by itself once there is room. Root only (mounts).

use sonde_e2e::attack;
use sonde_e2e::disk::Tmpfs;
use sonde_e2e::pipeline::{raw, scratch, Collector};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn quic_addr(c: &Collector) -> SocketAddr {
    c.quic
        .replace("localhost", "127.0.0.1")
        .parse()
        .expect("addr")
}

/// `read()` until `want` holds of it, `timeout` at most; the last reading.
fn poll_until<T>(timeout: Duration, read: impl Fn() -> T, want: impl Fn(&T) -> bool) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let got = read();
        if want(&got) || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `/healthz` until `want(status, body)` holds, 20 s at most; the last answer.
fn healthz_until(c: &Collector, want: impl Fn(u16, &str) -> bool) -> (u16, String) {
    poll_until(
        Duration::from_secs(20),
        || sonde_e2e::http_get(&c.http, "/healthz").expect("/healthz answers"),
        |(status, body)| want(*status, body),
    )
}

#[test]
#[cfg_attr(not(sonde_root), ignore = "needs root: mounts a tmpfs")]
fn a_collector_on_a_full_disk_says_so_in_its_health_and_loses_nothing() {
    let dir = scratch("full-disk-collector");
    let mut collector = Collector::configure(&dir);
    let disk = Tmpfs::mount(&collector.data_dir(), 24);
    collector.start();
    let state = dir.join("agent");
    collector.enroll("b-disk", &state);
    let (cert, key) = attack::identity(&state);
    let (addr, ca) = (quic_addr(&collector), collector.ca_cert());
    let config = || raw::client_config(&ca, Some((cert.clone(), key.clone_key())));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let upload = |batches| {
        runtime.block_on(attack::upload(
            addr,
            config(),
            batches,
            50,
            Duration::from_secs(15),
        ))
    };

    let (acked, failures) = upload(2);
    assert!(failures.is_empty(), "{failures:?}");
    let (status, body) = healthz_until(&collector, |s, _| s == 200);
    assert_eq!((status, body.trim()), (200, "ok"));

    // The disk fills up (say, logs of another program): not ok, with the reason.
    assert!(disk.fill() > 0);
    let (status, body) = healthz_until(&collector, |s, _| s == 503);
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("not ok: storage full"), "{body}");
    // An upload meanwhile is either stored or refused, never acknowledged and lost.
    let (during, _) = upload(1);

    // Room is back: commits go through again, and so does health.
    disk.free();
    let (after, failures) = upload(2);
    assert!(failures.is_empty(), "{failures:?}");
    let (status, body) = healthz_until(&collector, |s, _| s == 200);
    assert_eq!((status, body.trim()), (200, "ok"));
    let stored = collector.all_results().len();
    assert_eq!(stored, 50 * (acked.len() + during.len() + after.len()));
    collector.stop();
    drop(disk);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The agent's `/metrics` value of `series` (None when the page or the line is missing).
fn agent_metric(port: u16, series: &str) -> Option<f64> {
    let (_, page) = sonde_e2e::http_get(&format!("127.0.0.1:{port}"), "/metrics")?;
    page.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Polls the agent's metric until `want` holds (`timeout` at most); the last value.
fn agent_metric_until(
    port: u16,
    series: &str,
    timeout: Duration,
    want: impl Fn(f64) -> bool,
) -> f64 {
    poll_until(
        timeout,
        || agent_metric(port, series).unwrap_or(f64::NAN),
        |v| want(*v),
    )
}

#[test]
#[cfg_attr(not(sonde_root), ignore = "needs root: mounts a tmpfs")]
fn an_agent_on_a_full_disk_starts_sends_straight_up_and_loses_nothing() {
    use sonde_e2e::pipeline::{free_port, Agent, AgentSetup};
    let dir = scratch("full-disk-agent");
    let mut collector = Collector::start_in(&dir);
    let adir = dir.join("agent");
    let state = adir.join("state");
    let disk = Tmpfs::mount(&state, 4);
    collector.enroll("b-agent-disk", &state);
    // The box's disk is full before the agent starts.
    assert!(disk.fill() > 0);
    let port = free_port();
    // Three accesses every 10 s to a port nobody listens on: a failed result each
    // (quick), about 18 a minute.
    let extra = (1..=2)
        .map(|i| {
            format!(
                "[[access]]\nname = \"dead{i}\"\nkind = \"ftth\"\ninterface = \"lo\"\n\
                 responders = [\"http://127.0.0.1:9\"]\nevery = \"10s\"\njitter = \"1s\"\nmax_duration = 1\n"
            )
        })
        .collect::<String>();
    let agent = Agent::start(
        &adir,
        &collector,
        &AgentSetup {
            every: "10s".into(),
            metrics_port: Some(port),
            extra,
            ..AgentSetup::probing("http://127.0.0.1:9".into())
        },
    );
    let log = || std::fs::read_to_string(&agent.log).unwrap_or_default();
    // It runs, says its spool is full, and its results reach the collector anyway.
    let full = agent_metric_until(
        port,
        "sonde_agent_spool_full",
        Duration::from_secs(40),
        |v| v == 1.0,
    );
    assert_eq!(
        full,
        1.0,
        "spool_full on the agent's /metrics; log:\n{}",
        log()
    );
    let deadline = Instant::now() + Duration::from_secs(40);
    while collector.all_results().len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        collector.all_results().len() >= 3,
        "straight up; log:\n{}",
        log()
    );
    let (_, agents) = collector.get("/api/v1/agents");
    let page = sonde_e2e::http_get(&collector.http, "/metrics")
        .expect("metrics")
        .1;
    assert!(
        page.lines()
            .any(|l| l.starts_with("sonde_agent_spool_full{") && l.ends_with(" 1")),
        "the collector sees it in the health: {agents}"
    );

    // The collector goes away: results are held in memory meanwhile.
    collector.stop();
    let held = agent_metric_until(
        port,
        "sonde_agent_results_held",
        Duration::from_secs(40),
        |v| v >= 2.0,
    );
    assert!(held >= 2.0, "held {held}; log:\n{}", log());
    collector.start();
    let held = agent_metric_until(
        port,
        "sonde_agent_results_held",
        Duration::from_secs(40),
        |v| v == 0.0,
    );
    assert_eq!(held, 0.0, "held results went up; log:\n{}", log());

    // Room is back: the spool takes writes again.
    disk.free();
    let full = agent_metric_until(
        port,
        "sonde_agent_spool_full",
        Duration::from_secs(40),
        |v| v == 0.0,
    );
    assert_eq!(full, 0.0, "log:\n{}", log());
    agent.stop();
    // Nothing measured was lost: every result is at the collector or in the spool.
    let status = sonde_e2e::pipeline::status(&state);
    let measured = status["results_total"].as_u64().expect("results_total");
    // A result may be both: committed by the collector while the agent stopped before
    // reading the ack; it goes up again at the next start and is stored once.
    let spooled: std::collections::BTreeSet<String> =
        sonde_agent::state::spool::Spool::open_read_only(&state.join("spool.sqlite"))
            .and_then(|s| s.peek(10_000))
            .expect("spool")
            .into_iter()
            .map(|r| r.id.to_string())
            .collect();
    let stored: std::collections::BTreeSet<String> = collector
        .all_results()
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(status["held_dropped_total"], 0);
    assert_eq!(
        stored.union(&spooled).count() as u64,
        measured,
        "stored {} ∪ spooled {}",
        stored.len(),
        spooled.len()
    );
    collector.stop();
    drop(disk);
    let _ = std::fs::remove_dir_all(&dir);
}
