//! Operating the collector: revoking an agent, an online backup taken under ingest load
//! and restored, and rotating the report key. Real processes, real QUIC, real SQLite.

use sonde_e2e::pipeline::{
    record, scratch, seed_spool, verify_report as verify, Agent, AgentSetup, Collector,
};
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

fn wait_results(collector: &Collector, n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while collector.all_results().len() < n {
        assert!(Instant::now() < deadline, "{n} results never arrived");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_revoked_agent_is_refused_with_its_reason_and_keeps_its_spool() {
    let dir = scratch("revoke");
    let mut collector = Collector::start_in(&dir);
    let adir = dir.join("agent");
    let state = adir.join("state");
    let id = collector.enroll("b-revoke", &state);
    seed_spool(&state, 20, |i| record(i as i64));
    let agent = Agent::start(&adir, &collector, &AgentSetup::uploader(1000, 10));
    wait_results(&collector, 20, Duration::from_secs(60));
    agent.stop();

    // An unknown id is a usage error; the real one is revoked.
    let run = collector.cli(&["agent", "revoke", "nobody"]);
    assert_eq!(run.code(), 64, "{}", run.stderr());
    assert!(run.stderr().contains("nobody"), "{}", run.stderr());
    let run = collector.cli(&["agent", "revoke", &id]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let list = collector.cli(&["agent", "list"]);
    assert!(list.stdout().contains("revoked"), "{}", list.stdout());
    let (_, agents) = collector.get("/api/v1/agents");
    assert!(agents["agents"][0]["revoked_at"].is_string(), "{agents}");

    // Its next connection: refused with the reason, nothing stored, nothing dropped.
    seed_spool(&state, 10, |i| record(100 + i as i64));
    collector.stop();
    collector.start();
    let agent = Agent::start(&adir, &collector, &AgentSetup::uploader(1000, 10));
    let status = agent.wait_status("refused as revoked", Duration::from_secs(60), |s| {
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("Revoked") && e.contains("revoked on"))
    });
    assert_eq!(status["spool_depth"], 10, "{status}");
    assert_eq!(collector.all_results().len(), 20);
    assert!(collector.metric("sonde_collector_rejects_total{reason=\"revoked\"}") >= 1.0);
    agent.stop();
    assert_eq!(sonde_e2e::pipeline::status(&state)["spool_depth"], 10);
}

#[test]
fn a_backup_under_load_restores_every_result_acknowledged_before_it_began() {
    let dir = scratch("backup");
    let collector = Collector::start_in(&dir);
    // Three agents with deep spools upload in small batches: ingest runs throughout.
    let mut agents = Vec::new();
    for n in 0..3 {
        let adir = dir.join(format!("agent{n}"));
        collector.enroll(&format!("b-backup-{n}"), &adir.join("state"));
        seed_spool(&adir.join("state"), 4000, |i| record(i as i64 % 5000));
        agents.push(adir);
    }
    let running: Vec<Agent> = agents
        .iter()
        .map(|a| Agent::start(a, &collector, &AgentSetup::uploader(10_000, 5)))
        .collect();
    wait_results(&collector, 500, Duration::from_secs(60));
    // Everything stored now was acknowledged (ack follows commit) or is about to be.
    let before: HashSet<String> = collector
        .all_results()
        .iter()
        .map(|r| r["id"].as_str().unwrap_or_default().to_string())
        .collect();
    let backup = dir.join("backup.sqlite");
    let run = collector.cli(&["backup", "--out", backup.to_str().expect("utf-8")]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let after = collector.all_results().len();
    assert!(
        after > before.len() && after < 12_000,
        "the backup ran while results were arriving ({} then {after})",
        before.len()
    );
    // A second backup to the same file is refused rather than overwriting it.
    let again = collector.cli(&["backup", "--out", backup.to_str().expect("utf-8")]);
    assert_eq!(again.code(), 1);
    drop(running);

    // Restore into a second collector: refused while it runs, then every result
    // stored before the backup began is there.
    let rdir = dir.join("restored");
    std::fs::create_dir_all(&rdir).expect("dir");
    let mut restored = Collector::start_in(&rdir);
    let refused = restored.cli(&["restore", "--from", backup.to_str().expect("utf-8")]);
    assert_eq!(refused.code(), 64, "{}", refused.stderr());
    assert!(refused.stderr().contains("stop it"), "{}", refused.stderr());
    restored.stop();
    let junk = dir.join("junk.sqlite");
    std::fs::write(&junk, b"not a database at all").expect("junk");
    let bad = restored.cli(&["restore", "--from", junk.to_str().expect("utf-8")]);
    assert_eq!(bad.code(), 64, "{}", bad.stderr());
    let run = restored.cli(&["restore", "--from", backup.to_str().expect("utf-8")]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    restored.start();
    let got: HashSet<String> = restored
        .all_results()
        .iter()
        .map(|r| r["id"].as_str().unwrap_or_default().to_string())
        .collect();
    let missing: Vec<&String> = before.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "{} results missing from the restore",
        missing.len()
    );
    // The restored collector reports as the original did.
    let (_, agents) = restored.get("/api/v1/agents");
    assert_eq!(agents["agents"].as_array().map(Vec::len), Some(3));
}

fn report(collector: &Collector, out: &Path) {
    let run = collector.cli(&[
        "report",
        "--from",
        "2026-01-01",
        "--to",
        "2026-01-02",
        "--format",
        "json",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
}

fn public_key(collector: &Collector, out: &Path) {
    let run = collector.cli(&["report", "key"]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    std::fs::write(out, run.stdout()).expect("key");
}

#[test]
fn rotating_the_report_key_keeps_old_reports_verifiable_with_the_old_key() {
    let dir = scratch("rotate-report-key");
    let collector = Collector::configure(&dir);
    // A store to report from (token create makes it), no server needed.
    collector.token("b-rotate");
    let old_report = dir.join("old.json");
    report(&collector, &old_report);
    let old_key = dir.join("old.pub");
    public_key(&collector, &old_key);

    // The documented rotation: keep the old key aside, a new one is made on next use.
    let data = collector.data_dir();
    std::fs::rename(
        data.join("report-key.pk8"),
        data.join("report-key.pk8.2026-01"),
    )
    .expect("rotate");
    let new_report = dir.join("new.json");
    report(&collector, &new_report);
    let new_key = dir.join("new.pub");
    public_key(&collector, &new_key);
    assert_ne!(std::fs::read(&old_key).ok(), std::fs::read(&new_key).ok());

    assert_eq!(verify(&old_report, &old_key).code(), 0);
    assert_eq!(verify(&new_report, &new_key).code(), 0);
    let cross = verify(&old_report, &new_key);
    assert_eq!(cross.code(), 1);
    assert!(
        cross.stderr().contains("not by the given key"),
        "{}",
        cross.stderr()
    );
}

#[test]
fn rotating_the_ca_refuses_old_identities_and_re_enrolled_agents_lose_nothing() {
    let dir = scratch("rotate-ca");
    let mut collector = Collector::start_in(&dir);
    let adir = dir.join("agent");
    let state = adir.join("state");
    collector.enroll("b-ca", &state);
    seed_spool(&state, 10, |i| record(i as i64));
    let agent = Agent::start(&adir, &collector, &AgentSetup::uploader(1000, 10));
    wait_results(&collector, 10, Duration::from_secs(60));
    agent.stop();

    // The documented rotation: stop, move the CA aside, start (a new CA is made).
    collector.stop();
    let data = collector.data_dir();
    let old = data.join("ca-retired");
    std::fs::create_dir_all(&old).expect("dir");
    for f in ["ca.key.pem", "ca.cert.pem"] {
        std::fs::rename(data.join(f), old.join(f)).expect("move the CA aside");
    }
    collector.start();
    assert_ne!(
        std::fs::read(data.join("ca.cert.pem")).ok(),
        std::fs::read(old.join("ca.cert.pem")).ok(),
        "a new CA"
    );

    // The old identity no longer connects; its results wait in the spool.
    seed_spool(&state, 5, |i| record(100 + i as i64));
    let agent = Agent::start(&adir, &collector, &AgentSetup::uploader(1000, 10));
    let s = agent.wait_status("refused by the new CA", Duration::from_secs(60), |s| {
        s["uplink_errors_total"]
            .as_object()
            .is_some_and(|m| !m.is_empty())
    });
    assert_eq!(s["spool_depth"], 5, "{s}");
    agent.stop();

    // Re-enrol with a token of the new CA (the spool stays), restart: all arrive.
    std::fs::remove_file(state.join("identity.json")).expect("retire the identity");
    collector.enroll("b-ca", &state);
    let agent = Agent::start(&adir, &collector, &AgentSetup::uploader(1000, 10));
    wait_results(&collector, 15, Duration::from_secs(60));
    agent.wait_status("spool drained", Duration::from_secs(30), |s| {
        s["spool_depth"] == 0
    });
}
