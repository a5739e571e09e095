//! Several responders per access: taken in turn with `rotate`, each counted on its own,
//! and a responder that is down replaced by the next one; the result says which served.

use sonde_e2e::pipeline::{scratch, Agent, AgentSetup, Collector};
use std::collections::BTreeSet;
use std::time::Duration;

#[test]
fn responders_take_turns_and_one_that_is_down_is_replaced() {
    let dir = scratch("responders");
    let (a, b) = (
        sonde_e2e::Responder::start(&[]),
        sonde_e2e::Responder::start(&[]),
    );
    let collector = Collector::start_in(&dir);
    let adir = dir.join("agent");
    collector.enroll("b-rotate", &adir.join("state"));
    let agent = Agent::start(
        &adir,
        &collector,
        &AgentSetup {
            access_extra: "rotate = true".into(),
            // Two URLs in the access's list (the setup writes `responders = ["…"]`).
            ..AgentSetup::probing(format!("{}\", \"{}", a.url(), b.url()))
        },
    );
    let s = agent.wait_status("both responders served", Duration::from_secs(60), |s| {
        let by = &s["responder_tests_total"]["loop"];
        by["1"].as_u64().unwrap_or(0) >= 1 && by["2"].as_u64().unwrap_or(0) >= 1
    });
    let served_before = s["results_total"].as_u64().unwrap_or(0);
    // The second responder goes down: its turns fall to the first.
    drop(b);
    agent.wait_status("two more results", Duration::from_secs(60), |s| {
        s["results_total"].as_u64().unwrap_or(0) >= served_before + 2 && s["spool_depth"] == 0
    });
    drop(agent);
    let results = collector.all_results();
    let urls: BTreeSet<String> = results
        .iter()
        .map(|r| {
            r["run"]["responder"]["url"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert!(
        urls.contains(&a.url()) || urls.contains(&format!("{}/", a.url())),
        "{urls:?}"
    );
    assert_eq!(
        urls.len(),
        2,
        "each result names the responder that served it: {urls:?}"
    );
    // After the kill, every result was measured (failed over), none lost to the dead one.
    let last_two: Vec<&serde_json::Value> = results.iter().rev().take(2).collect();
    for r in last_two {
        assert_eq!(r["status"]["outcome"], "ok", "{r}");
        assert!(
            r["run"]["responder"]["url"]
                .as_str()
                .unwrap_or_default()
                .starts_with(&a.url()),
            "{r}"
        );
    }
}

#[test]
#[cfg_attr(not(sonde_iperf3), ignore = "needs iperf3 (Debian package iperf3)")]
fn a_busy_iperf3_server_fails_over_to_the_next_responder() {
    let dir = scratch("responders-iperf3");
    let server = sonde_e2e::Iperf3Server::start(&[]);
    // Another client holds the iperf3 server for the whole test: it answers
    // ACCESS_DENIED.
    let holder = server.hold();
    let sonde = sonde_e2e::Responder::start(&[]);
    let collector = Collector::start_in(&dir);
    let adir = dir.join("agent");
    collector.enroll("b-iperf3", &adir.join("state"));
    let agent = Agent::start(
        &adir,
        &collector,
        &AgentSetup {
            ..AgentSetup::probing(format!("{}\", \"{}", server.url("127.0.0.1"), sonde.url()))
        },
    );
    agent.wait_status("a result delivered", Duration::from_secs(60), |s| {
        s["results_total"].as_u64().unwrap_or(0) >= 1 && s["spool_depth"] == 0
    });
    drop(agent);
    drop(holder);
    let results = collector.all_results();
    let r = results.first().expect("one result");
    assert_eq!(r["status"]["outcome"], "ok", "{r}");
    assert_eq!(r["run"]["engine"], "sonde-http", "{r}");
    assert!(
        r["run"]["responder"]["url"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&sonde.url()),
        "the sonde responder served, after the busy iperf3 server: {r}"
    );
}
