//! Plans with real processes: `sonde-collector serve` (SQLite, QUIC), `plan apply`
//! from the command line, and `sonde-agent run` daemons enrolled in building `b1` of
//! quartier `q-test`, whose `agent.toml` points at a responder nobody listens on.
//!
//! - a running agent picks up a new responder without restart, acknowledges the
//!   version, and the collector sees it;
//! - a bad plan is refused with every problem listed; a plan the box cannot run (an
//!   interface it lacks) is refused by the agent, said in its health, and the previous
//!   plan keeps running;
//! - an agent stopped during a plan change gets it on reconnect; restarted without its
//!   controller it runs its last plan;
//! - a suppression window stops runs, counted as suppressed, not missed;
//! - an agent that does not know plan frames (skips them by length) keeps uploading;
//! - a revoked box and a stranger get no plan.

use sonde_e2e::pipeline::{scratch, Agent, AgentSetup, Collector};
use sonde_e2e::Responder;
use std::path::Path;
use std::time::{Duration, Instant};

/// A plan for building b1 of q-test: one access `planned` on `lo` probing `responder`
/// every 10 s, with `extra` lines after the access (e.g. a suppression).
fn plan(responder: &str, extra: &str) -> String {
    format!(
        "[[group]]\nquartier = \"q-test\"\nbuildings = [\"b1\"]\n\n\
         [[group.access]]\nname = \"planned\"\nkind = \"ftth\"\ninterface = \"lo\"\n\
         responders = [\"{responder}\"]\nevery = \"10s\"\njitter = \"1s\"\nmax_duration = 1\nstreams = 1\n{extra}"
    )
}

/// `plan apply --file` with `text`; the run.
fn apply(collector: &Collector, dir: &Path, name: &str, text: &str) -> sonde_e2e::Run {
    let file = dir.join(name);
    std::fs::write(&file, text).expect("write plan");
    collector.cli(&["plan", "apply", "--file", file.to_str().expect("utf-8")])
}

/// Waits until the collector stored a result of `agent` probed against `url`.
fn wait_result_from(collector: &Collector, url: &str, timeout: Duration) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let found = collector.all_results().into_iter().find(|r| {
            let got = r["run"]["responder"]["url"].as_str().unwrap_or_default();
            got.trim_end_matches('/') == url.trim_end_matches('/')
        });
        if let Some(r) = found {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "no result against {url} within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Waits (10 s at most) until the collector's `/metrics` shows `series` at `at_least`.
fn wait_metric(collector: &Collector, series: &str, at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while collector.metric(series) < at_least {
        assert!(
            Instant::now() < deadline,
            "{series} never reached {at_least}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The plan section of the agent's health as the collector last stored it.
fn acked_version(collector: &Collector, agent: &str) -> Option<u64> {
    let (_, agents) = collector.get("/api/v1/agents");
    agents["agents"]
        .as_array()?
        .iter()
        .find(|a| a["id"].as_str() == Some(agent))?["health"]["plan"]["version"]
        .as_u64()
}

#[test]
fn a_running_agent_takes_a_new_plan_without_restart_and_refuses_what_it_cannot_run() {
    let dir = scratch("plan-push");
    let mut collector = Collector::start_in(&dir);
    let responder = Responder::start(&[]);
    let adir = dir.join("agent");
    let id = collector.enroll("b1", &adir.join("state"));
    let agent = Agent::start(&adir, &collector, &AgentSetup::uploader(1000, 10));
    agent.wait_status("connected", Duration::from_secs(30), |s| {
        s["connected"] == true
    });
    // A bad plan: every problem listed, exit 64, nothing applied.
    let bad = plan("ftp://nowhere", "")
        .replace("kind = \"ftth\"", "kind = \"5g\"")
        .replace("every = \"10s\"", "every = \"1s\"");
    let run = apply(&collector, &dir, "bad.toml", &bad);
    assert_eq!(run.code(), 64, "{}", run.stderr());
    let err = run.stderr();
    for field in [
        "group[0].access[0].kind",
        "group[0].access[0].responders[0]",
        "group[0].access[0].every",
        "group[0].access[0].jitter",
        "4 problem(s)",
    ] {
        assert!(err.contains(field), "{field} missing in {err}");
    }
    assert!(err.contains("nothing applied"), "{err}");
    let shown = collector.cli(&["plan", "show"]);
    assert_eq!(shown.code(), 64, "no plan yet: {}", shown.stdout());

    // The plan reaches the running agent, which probes the new responder.
    let t0 = Instant::now();
    let run = apply(&collector, &dir, "v1.toml", &plan(&responder.url(), ""));
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(
        run.stdout().contains("plan version 1 in force"),
        "{}",
        run.stdout()
    );
    let s = agent.wait_status("plan 1", Duration::from_secs(20), |s| {
        s["plan"]["version"] == 1
    });
    eprintln!(
        "plan 1 running on the agent {:.1} s after apply",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(s["plan"]["capabilities"]["methods"][0], "http");
    let r = wait_result_from(&collector, &responder.url(), Duration::from_secs(40));
    assert_eq!(r["agent"]["id"], id);
    assert_eq!(r["access"]["name"], "planned");
    assert!(agent.state_dir.join("plan.json").exists());
    let (code, api) = collector.get("/api/v1/plans?version=latest&quartier=q-test&building=b1");
    assert_eq!(code, 200, "{api}");
    assert_eq!(
        (
            api["version"].as_u64(),
            api["plan"]["access"][0]["name"].as_str()
        ),
        (Some(1), Some("planned"))
    );
    assert_eq!(collector.get("/api/v1/plans?version=9").0, 404);
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked_version(&collector, &id) != Some(1) {
        assert!(
            Instant::now() < deadline,
            "the collector never heard version 1"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // A plan the box cannot run: the collector cannot know its interfaces; the agent
    // refuses it, says why, and keeps running version 1.
    let run = apply(
        &collector,
        &dir,
        "v2.toml",
        &plan(&responder.url(), "").replace("interface = \"lo\"", "interface = \"nosuchif0\""),
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let s = agent.wait_status("plan 2 refused", Duration::from_secs(20), |s| {
        s["plan"]["refused"]["version"] == 2
    });
    assert_eq!(s["plan"]["version"], 1, "the previous plan keeps running");
    let why = s["plan"]["refused"]["problems"][0]
        .as_str()
        .unwrap_or_default();
    assert!(why.starts_with("access[0].interface"), "{why}");
    let diff = collector.cli(&["plan", "diff", "--from", "1", "--to", "2"]);
    assert_eq!(
        diff.stdout().trim(),
        "~ group q-test/b1: access planned: interface lo -> nosuchif0"
    );
    drop(agent);
    collector.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_plan_applied_while_an_agent_is_away_reaches_it_and_a_box_without_its_controller_runs_its_last_plan(
) {
    let dir = scratch("plan-away");
    let mut collector = Collector::start_in(&dir);
    let responder = Responder::start(&[]);
    let adir = dir.join("agent");
    collector.enroll("b1", &adir.join("state"));
    let setup = AgentSetup::uploader(1000, 10);
    let agent = Agent::start(&adir, &collector, &setup);
    assert_eq!(
        apply(&collector, &dir, "v1.toml", &plan(&responder.url(), "")).code(),
        0
    );
    agent.wait_status("plan 1", Duration::from_secs(20), |s| {
        s["plan"]["version"] == 1
    });
    agent.stop();

    // Version 2 while the agent is stopped: it gets it when it connects again.
    let v2 = plan(&responder.url(), "").replace("every = \"10s\"", "every = \"20s\"");
    assert_eq!(apply(&collector, &dir, "v2.toml", &v2).code(), 0);
    let agent = Agent::start(&adir, &collector, &setup);
    agent.wait_status("plan 2", Duration::from_secs(30), |s| {
        s["plan"]["version"] == 2
    });
    agent.stop();

    // Without its controller, the box runs its last plan from disk.
    collector.stop();
    let agent = Agent::start(&adir, &collector, &setup);
    let s = agent.wait_status("runs plan 2 alone", Duration::from_secs(20), |s| {
        s["plan"]["version"] == 2 && s["next_run"]["access"] == "planned"
    });
    assert_eq!(s["connected"], false);
    assert_eq!(s["plan"]["source"], "controller_lost");
    let s = agent.wait_status("a planned test", Duration::from_secs(40), |s| {
        s["results_total"].as_u64() >= Some(1)
    });
    assert_eq!(
        s["plan"]["schedules"]["planned"]["invocations"],
        s["results_total"]
    );
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_suppression_window_stops_runs_and_counts_them_suppressed_not_missed() {
    let dir = scratch("plan-suppress");
    let mut collector = Collector::start_in(&dir);
    let responder = Responder::start(&[]);
    let adir = dir.join("agent");
    collector.enroll("b1", &adir.join("state"));
    let now = chrono::Utc::now();
    let window = format!(
        "\n[[group.suppress]]\nfrom = \"{}\"\nuntil = \"{}\"\nreason = \"building works\"\n",
        (now - chrono::Duration::minutes(1)).to_rfc3339(),
        (now + chrono::Duration::hours(1)).to_rfc3339()
    );
    assert_eq!(
        apply(
            &collector,
            &dir,
            "v1.toml",
            &plan(&responder.url(), &window)
        )
        .code(),
        0
    );
    let agent = Agent::start(&adir, &collector, &AgentSetup::uploader(1000, 10));
    let s = agent.wait_status("two suppressed runs", Duration::from_secs(45), |s| {
        s["plan"]["schedules"]["planned"]["suppressions"].as_u64() >= Some(2)
    });
    assert_eq!(s["plan"]["version"], 1);
    assert_eq!(s["results_total"], 0, "no test in the window");
    assert_eq!(s["missed_runs_total"], 0, "suppressed runs are not missed");
    assert_eq!(s["plan"]["schedules"]["planned"]["invocations"], 0);
    drop(agent);
    collector.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_agent_that_does_not_know_plan_frames_keeps_uploading() {
    let dir = scratch("plan-old-agent");
    let mut collector = Collector::start_in(&dir);
    let state = dir.join("agent");
    collector.enroll("b1", &state);
    assert_eq!(
        apply(&collector, &dir, "v1.toml", &plan("http://127.0.0.1:9", "")).code(),
        0
    );
    wait_metric(&collector, "sonde_collector_plan_version", 1.0);
    let (cert, key) = sonde_e2e::attack::identity(&state);
    let addr = collector
        .quic
        .replace("localhost", "127.0.0.1")
        .parse()
        .expect("addr");
    let config = sonde_e2e::pipeline::raw::client_config(&collector.ca_cert(), Some((cert, key)));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (acks, skipped) = runtime.block_on(sonde_e2e::attack::old_agent_uploads(addr, config, 5));
    assert_eq!(acks, 5, "every batch acknowledged");
    assert!(
        skipped >= 1,
        "the collector pushed its plan ({skipped} frames skipped)"
    );
    assert_eq!(collector.all_results().len(), 5);
    wait_metric(&collector, "sonde_collector_plans_pushed_total", 1.0);
    collector.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_revoked_box_and_a_stranger_get_no_plan() {
    let dir = scratch("plan-revoked");
    let mut collector = Collector::start_in(&dir);
    let state = dir.join("agent");
    let id = collector.enroll("b1", &state);
    assert_eq!(
        apply(&collector, &dir, "v1.toml", &plan("http://127.0.0.1:9", "")).code(),
        0
    );
    wait_metric(&collector, "sonde_collector_plan_version", 1.0);
    let addr = collector
        .quic
        .replace("localhost", "127.0.0.1")
        .parse()
        .expect("addr");
    let ca = collector.ca_cert();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (cert, key) = sonde_e2e::attack::identity(&state);
    let enrolled =
        sonde_e2e::pipeline::raw::client_config(&ca, Some((cert.clone(), key.clone_key())));
    let within = Duration::from_secs(3);
    // Enrolled: an ack (2), then the plan (6).
    let kinds = runtime.block_on(sonde_e2e::attack::kinds_after_one_upload(
        addr,
        enrolled.clone(),
        within,
    ));
    assert_eq!(kinds, vec![2, 6], "an enrolled agent's answer");
    // Revoked: refused (3), no plan.
    let run = collector.cli(&["agent", "revoke", &id]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    // Past two of the collector's revocation polls (2 s), so it knows before the box
    // connects: the box must still read why it is refused, not a bare close.
    std::thread::sleep(Duration::from_millis(4500));
    let kinds = runtime.block_on(sonde_e2e::attack::kinds_after_one_upload(
        addr, enrolled, within,
    ));
    assert_eq!(kinds, vec![3], "a revoked box: refused, no plan");
    // A stranger (no certificate): refused, no plan.
    let stranger = sonde_e2e::pipeline::raw::client_config(&ca, None);
    let kinds = runtime.block_on(sonde_e2e::attack::kinds_after_one_upload(
        addr, stranger, within,
    ));
    assert!(!kinds.contains(&6), "a stranger got a plan: {kinds:?}");
    assert!(
        kinds.iter().all(|k| *k == 3),
        "a stranger's answer: {kinds:?}"
    );
    collector.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
