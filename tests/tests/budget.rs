//! A data budget on a real agent: each test stops at its allowance, the month's use is
//! kept in `budget.json`, shown in `status` and `/metrics`, and once the budget cannot
//! hold another test, tests are skipped with the reason `budget` and never exceed it.

use sonde_e2e::pipeline::{free_port, scratch, Agent, AgentSetup, Collector};
use std::time::Duration;

#[test]
fn tests_shrink_then_skip_and_the_budget_is_never_exceeded() {
    let dir = scratch("budget");
    let responder = sonde_e2e::Responder::start(&[]);
    let collector = Collector::start_in(&dir);
    let adir = dir.join("agent");
    collector.enroll("b-budget", &adir.join("state"));
    let port = free_port();
    // FTTH (1 Gb/s target, so up to 2 Gb/s): one minimal test is about 502 MB; 1 GB
    // holds one or two, then tests are skipped.
    let budget: u64 = 1_000_000_000;
    let agent = Agent::start(
        &adir,
        &collector,
        &AgentSetup {
            metrics_port: Some(port),
            access_extra: "budget_month = \"1GB\"".into(),
            ..AgentSetup::probing(responder.url())
        },
    );
    let status = agent.wait_status(
        "a test skipped for the budget",
        Duration::from_secs(120),
        |s| s["failures_total"]["budget"].as_u64().unwrap_or(0) >= 1,
    );
    let used = status["budgets"]["loop"]["used_bytes"]
        .as_u64()
        .expect("budget use in status");
    assert_eq!(
        status["budgets"]["loop"]["budget_bytes"].as_u64(),
        Some(budget)
    );
    assert!(used <= budget, "{used} > {budget}");
    assert!(used > 0, "the tests that ran were charged");
    // The ledger on disk agrees (it survives restarts).
    let ledger: serde_json::Value = serde_json::from_slice(
        &std::fs::read(adir.join("state/budget.json")).expect("budget.json"),
    )
    .expect("JSON");
    assert!(ledger["used"]["loop"].as_u64().unwrap_or(0) >= used);
    // The agent's /metrics shows it.
    let (_, page) = sonde_e2e::http_get(&format!("127.0.0.1:{port}"), "/metrics").expect("metrics");
    assert!(
        page.contains("sonde_agent_budget_bytes{access=\"loop\"} 1000000000"),
        "{page}"
    );
    assert!(
        page.contains("sonde_agent_budget_used_bytes{access=\"loop\"}"),
        "{page}"
    );
    agent.wait_status("skip uploaded", Duration::from_secs(30), |s| {
        s["spool_depth"] == 0
    });
    drop(agent);

    // At the collector: the tests that ran stopped at their allowance of 125 MB a
    // direction (each stream carries its share, rounded up to whole 256 KiB upload
    // blocks; an upload's carried bytes count whole TCP segments: within 10 %), far
    // inside the 125 MB overshoot the plan reserves; the skipped ones say why.
    let results = collector.all_results();
    let skipped: Vec<_> = results
        .iter()
        .filter(|r| r["status"]["reason"] == "budget")
        .collect();
    assert!(!skipped.is_empty());
    assert!(skipped[0]["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("monthly data budget"));
    for r in results.iter().filter(|r| r["status"]["reason"] != "budget") {
        for dir in ["download", "upload"] {
            if let Some(b) = r[dir]["bytes_total"].as_u64() {
                assert!(b <= 137_500_000, "{dir} moved {b} bytes past its allowance");
            }
        }
    }
}
