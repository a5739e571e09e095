//! A Wi-Fi access whose interface gives no nl80211 context (this box has no Wi-Fi) is
//! still measured: its result carries the reason in `radio.unavailable`, and nothing
//! is lost. The nl80211 parsing itself is tested on recorded real replies in
//! `agent/src/wifi.rs`.

use sonde_e2e::pipeline::{scratch, Agent, AgentSetup, Collector};
use std::time::Duration;

#[test]
fn a_wifi_access_without_nl80211_is_measured_and_says_why_it_has_no_radio_context() {
    let dir = scratch("agent-wifi");
    let responder = sonde_e2e::Responder::start(&[]);
    let collector = Collector::start_in(&dir);
    let adir = dir.join("agent");
    collector.enroll("b-wifi", &adir.join("state"));
    let agent = Agent::start(
        &adir,
        &collector,
        &AgentSetup {
            kind: "wifi",
            ..AgentSetup::probing(responder.url())
        },
    );
    agent.wait_status("a result uploaded", Duration::from_secs(90), |s| {
        s["uploaded_total"].as_u64().unwrap_or(0) >= 1
    });
    drop(agent);
    let results = collector.all_results();
    let r = &results[0];
    assert_eq!(r["access"]["kind"], "wifi", "{r}");
    assert_eq!(r["status"]["outcome"], "ok", "{r}");
    assert!(r["radio"]["wifi"].is_null(), "{r}");
    let why = r["radio"]["unavailable"].as_str().unwrap_or_default();
    assert!(why.starts_with("nl80211"), "{r}");
}
