//! The transparency log as a regulator's monitor sees it: results delivered by a real
//! agent over QUIC to a real collector, its signed checkpoints and proofs over HTTP,
//! `sonde-collector log verify` following the log from run to run, and catching an
//! operator who deleted a result from the store and rebuilt the log without it.

use sonde_e2e::pipeline::{record, scratch, seed_spool, Agent, AgentSetup, Collector};
use sonde_e2e::run_bounded;
use sonde_store::log::{self, Hash};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Delivers `n` fresh results through a real agent and waits until the collector holds
/// `total`.
fn deliver(collector: &Collector, state: &Path, n: usize, total: usize) {
    seed_spool(state, n, |i| record(i as i64));
    let agent = Agent::start(
        state.parent().expect("agent dir"),
        collector,
        &AgentSetup::uploader(1000, 20),
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    while collector.all_results().len() < total {
        assert!(Instant::now() < deadline, "the results did not arrive");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(agent);
}

/// Waits for a checkpoint of `size` leaves; returns its note.
fn checkpoint_of(collector: &Collector, size: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((200, note)) = sonde_e2e::http_get(&collector.http, "/api/v1/log/checkpoint") {
            if note.lines().nth(1) == Some(&size.to_string()) {
                return note;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint of {size} leaves within 30 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `log verify` against the collector, with its key and a state file.
fn monitor(collector: &Collector, key: &Path, state: &Path) -> sonde_e2e::Run {
    let mut cmd = Command::new(sonde_e2e::bin("sonde-collector"));
    cmd.args([
        "log",
        "verify",
        "--url",
        &format!("http://{}", collector.http),
    ])
    .arg("--key")
    .arg(key)
    .arg("--state")
    .arg(state);
    run_bounded(cmd, Duration::from_secs(60))
}

#[test]
fn a_monitor_follows_the_log_and_names_a_rewritten_history() {
    let dir = scratch("log-monitor");
    let mut collector = Collector::configure_with(&dir, "", "[log]\ncheckpoint_every = \"1s\"\n");
    collector.start();
    let state = dir.join("agent").join("state");
    collector.enroll("b-log", &state);
    let run = collector.cli(&["report", "key"]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let key = dir.join("collector.pub");
    std::fs::write(&key, run.stdout()).expect("key file");
    let public = sonde_collector::report::sign::parse_public(&run.stdout()).expect("a key");
    let seen = dir.join("monitor.json");

    deliver(&collector, &state, 10, 10);
    let note = checkpoint_of(&collector, 10);
    let run = monitor(&collector, &key, &seen);
    assert_eq!(run.code(), 0, "{} {}", run.stdout(), run.stderr());
    assert!(
        run.stdout().contains("ok: checkpoint of 10 leaves"),
        "{}",
        run.stdout()
    );

    // Every stored result is provably in the signed tree.
    let checkpoint = sonde_collector::log::open_checkpoint(&note, &public).expect("signed");
    for r in collector.all_results() {
        let id = r["id"].as_str().expect("id");
        let (code, proof) = collector.get(&format!("/api/v1/log/inclusion?result={id}"));
        assert_eq!(code, 200, "{proof}");
        let hashes: Vec<Hash> = proof["proof"]
            .as_array()
            .expect("proof")
            .iter()
            .map(|h| Hash::parse_hash(h.as_str().expect("b64")).expect("hash"))
            .collect();
        let leaf = Hash::parse_hash(proof["leaf_hash"].as_str().expect("leaf")).expect("hash");
        let index = proof["leaf"].as_u64().expect("index");
        assert!(
            log::check_inclusion(&hashes, 10, checkpoint.root, index, leaf),
            "{proof}"
        );
    }
    let (code, _) = collector.get("/api/v1/log/consistency?from=11&to=10");
    assert_eq!(code, 400);

    // The log grows: the next run checks the new checkpoint extends the last.
    deliver(&collector, &state, 5, 15);
    checkpoint_of(&collector, 15);
    let run = monitor(&collector, &key, &seen);
    assert_eq!(run.code(), 0, "{} {}", run.stdout(), run.stderr());
    assert!(
        run.stdout().contains("extends the one of 10 seen before"),
        "{}",
        run.stdout()
    );

    // The operator deletes a result and rebuilds the log without it.
    collector.stop();
    let db = rusqlite::Connection::open(dir.join("collector/collector.sqlite")).expect("db");
    db.execute_batch(
        "DELETE FROM results WHERE rowid = (SELECT min(rowid) FROM results);
         DELETE FROM log_leaves; DELETE FROM log_hashes; DELETE FROM log_checkpoints;",
    )
    .expect("rewrite");
    drop(db);
    collector.start();
    checkpoint_of(&collector, 14);
    let run = monitor(&collector, &key, &seen);
    assert_eq!(run.code(), 1, "{} {}", run.stdout(), run.stderr());
    assert!(
        run.stdout().contains("the log shrank from 15 to 14 leaves"),
        "{}",
        run.stdout()
    );
    // Growing past the size seen does not hide it.
    deliver(&collector, &state, 5, 19);
    checkpoint_of(&collector, 19);
    let run = monitor(&collector, &key, &seen);
    assert_eq!(run.code(), 1, "{} {}", run.stdout(), run.stderr());
    assert!(
        run.stdout()
            .contains("the checkpoint of 19 leaves does not extend the one of 15"),
        "{}",
        run.stdout()
    );
    collector.stop();
}

#[test]
fn log_verify_needs_the_collectors_key_and_a_collector_that_answers() {
    let dir = scratch("log-monitor-bad");
    let mut cmd = Command::new(sonde_e2e::bin("sonde-collector"));
    cmd.args(["log", "verify", "--url", "http://127.0.0.1:9"]);
    cmd.env_remove("SONDE_REPORT_KEY");
    let run = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(run.code(), 64, "no key: {}", run.stderr());
    let key = dir.join("k.pub");
    std::fs::write(&key, "ed25519 00").expect("key");
    let mut cmd = Command::new(sonde_e2e::bin("sonde-collector"));
    cmd.args(["log", "verify", "--url", "http://127.0.0.1:9", "--key"])
        .arg(&key);
    let run = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(run.code(), 64, "a malformed key: {}", run.stderr());
    let collector = Collector::start_in(&dir);
    let run = collector.cli(&["report", "key"]);
    std::fs::write(&key, run.stdout()).expect("key");
    // A collector that stored nothing has no checkpoint yet: named, exit 69.
    let mut cmd = Command::new(sonde_e2e::bin("sonde-collector"));
    cmd.args([
        "log",
        "verify",
        "--url",
        &format!("http://{}", collector.http),
        "--key",
    ])
    .arg(&key);
    let run = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(run.code(), 69, "{}", run.stderr());
    assert!(
        run.stderr().contains("no checkpoint yet"),
        "{}",
        run.stderr()
    );
}
