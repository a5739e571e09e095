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

    // The operator deletes a result and has the store rebuild the log without it (it
    // builds it once, from the stored results, when its migration runs).
    collector.stop();
    let db = rusqlite::Connection::open(dir.join("collector/collector.sqlite")).expect("db");
    db.execute_batch(
        "DELETE FROM results WHERE rowid = (SELECT min(rowid) FROM results);
         DROP TABLE log_leaves; DROP TABLE log_hashes; DROP TABLE log_checkpoints;
         DROP TABLE agent_keys; DROP TABLE agent_chains; DROP TABLE chain_gaps;
         DROP TABLE key_rotations;
         ALTER TABLE results DROP COLUMN envelope;
         ALTER TABLE report_facts DROP COLUMN rpm_down;
         ALTER TABLE report_facts DROP COLUMN rpm_up;
         DROP TABLE leases;
         PRAGMA user_version = 10;",
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

/// `report` over the last two days, in the format `out`'s extension names; its code
/// and output.
fn report(collector: &Collector, out: &Path) -> sonde_e2e::Run {
    let now = chrono::Utc::now();
    let from = (now - chrono::Duration::hours(48)).to_rfc3339();
    let to = (now + chrono::Duration::hours(1)).to_rfc3339();
    let format = out.extension().and_then(|e| e.to_str()).unwrap_or("csv");
    let out = out.to_string_lossy();
    collector.cli(&[
        "report", "--from", &from, "--to", &to, "--format", format, "--out", &out,
    ])
}

#[test]
fn every_figure_recomputes_from_the_proven_results_and_a_changed_one_is_named() {
    let (dir, mut collector, key) = twelve_results("log-figures");
    for format in ["json", "html", "csv"] {
        let out = dir.join(format!("r-{format}.{format}"));
        let run = report(&collector, &out);
        assert_eq!(run.code(), 0, "{format}: {}", run.stderr());
        let run = report_verify(&out, &key);
        assert_eq!(run.code(), 0, "{format}: {}", run.stdout());
        assert!(
            run.stdout()
                .contains("recomputed from the 12 proven results: every figure, byte for byte"),
            "{format}: {}",
            run.stdout()
        );
    }

    // A dishonest collector changes a figure of its report and signs it again, with
    // its own key: the signature holds, the figure does not recompute.
    let json = dir.join("r-json.json");
    let text = std::fs::read_to_string(&json).expect("report");
    let changed = text.replacen("\"results\": 12", "\"results\": 13", 1);
    assert_ne!(text, changed, "the report counts 12 results");
    std::fs::write(&json, changed).expect("write");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("r-json.manifest.json")).expect("manifest"))
            .expect("JSON");
    let files: Vec<std::path::PathBuf> = manifest["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| dir.join(f["name"].as_str().expect("name")))
        .collect();
    let collector_key =
        sonde_collector::report::sign::ReportKey::load_or_create(&dir.join("collector"))
            .expect("the collector's key");
    sonde_collector::report::sign::sign_files(
        &collector_key,
        manifest["report"].clone(),
        &files,
        &dir,
        "r-json",
    )
    .expect("signed again");
    let run = report_verify(&json, &key);
    assert_eq!(run.code(), 1, "{}", run.stdout());
    for part in [
        "invalid: figures do not recompute from the proven results",
        "r-json.json:",
        "the report says \"    \\\"results\\\": 13,\"",
        "its proven results give \"    \\\"results\\\": 12,\"",
    ] {
        assert!(run.stdout().contains(part), "{part}: {}", run.stdout());
    }
    collector.stop();
}

/// A collector holding 12 results delivered by a real agent; its scratch folder, and
/// its public report key's file.
fn twelve_results(name: &str) -> (std::path::PathBuf, Collector, std::path::PathBuf) {
    let dir = scratch(name);
    let mut collector = Collector::configure(&dir);
    collector.start();
    let state = dir.join("agent").join("state");
    collector.enroll("b-proof", &state);
    deliver(&collector, &state, 12, 12);
    let key = dir.join("collector.pub");
    std::fs::write(&key, collector.cli(&["report", "key"]).stdout()).expect("key file");
    (dir, collector, key)
}

/// `report verify FILE --key KEY`.
fn report_verify(file: &Path, key: &Path) -> sonde_e2e::Run {
    sonde_e2e::pipeline::verify_report(file, key)
}

#[test]
fn a_report_proves_its_results_and_report_verify_names_an_edited_or_smuggled_one() {
    let (dir, mut collector, key) = twelve_results("log-report");
    let db = dir.join("collector/collector.sqlite");

    // Untouched: the report names its checkpoint and proves every result.
    let clean = dir.join("clean.csv");
    let run = report(&collector, &clean);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    for f in [
        "clean.checkpoint",
        "clean.proofs.jsonl",
        "clean.tree.json",
        "clean.inputs.json",
    ] {
        assert!(
            run.stdout().contains(f),
            "{f} not written: {}",
            run.stdout()
        );
    }
    let proofs = std::fs::read_to_string(dir.join("clean.proofs.jsonl")).expect("proofs");
    assert_eq!(proofs.lines().count(), 12);
    let run = report_verify(&clean, &key);
    assert_eq!(run.code(), 0, "{} {}", run.stdout(), run.stderr());
    for line in [
        "ok log: 12 results in the checkpoint of 12 leaves",
        "ok figures: ",
        "recomputed from the 12 proven results: every figure, byte for byte",
    ] {
        assert!(run.stdout().contains(line), "{line}: {}", run.stdout());
    }
    // Without the collector's key nothing is called valid.
    let mut cmd = Command::new(sonde_e2e::bin("sonde-collector"));
    cmd.args(["report", "verify"])
        .arg(&clean)
        .env_remove("SONDE_REPORT_KEY");
    let run = run_bounded(cmd, Duration::from_secs(60));
    assert_eq!(run.code(), 2, "{}", run.stdout());
    assert!(!run.stdout().contains("valid:") || run.stdout().contains("untrusted"));

    // A result edited in the store after it was stored.
    let conn = rusqlite::Connection::open(&db).expect("db");
    conn.execute_batch(
        "UPDATE results SET record = record || ' ' WHERE rowid = (SELECT min(rowid) FROM results)",
    )
    .expect("edit");
    let edited_id: String = conn
        .query_row("SELECT id FROM results ORDER BY rowid LIMIT 1", [], |r| {
            r.get(0)
        })
        .expect("id");
    let edited = dir.join("edited.csv");
    let run = report(&collector, &edited);
    assert_eq!(run.code(), 1, "the report says so: {}", run.stderr());
    assert!(
        run.stderr().contains("not what the transparency log holds"),
        "{}",
        run.stderr()
    );
    let run = report_verify(&edited, &key);
    assert_eq!(run.code(), 1, "{} {}", run.stdout(), run.stderr());
    assert!(
        run.stdout().contains(&format!(
            "clean.proofs.jsonl:1: result {edited_id} (leaf 0): its bytes hash to"
        )) || run.stdout().contains(&format!(
            "edited.proofs.jsonl:1: result {edited_id} (leaf 0): its bytes hash to"
        )),
        "{}",
        run.stdout()
    );
    conn.execute_batch(
        "UPDATE results SET record = rtrim(record) WHERE rowid = (SELECT min(rowid) FROM results)",
    )
    .expect("undo");

    // A result put in the store behind its back, with its report row.
    conn.execute_batch(
        "INSERT INTO results (id, agent_id, quartier, building, access_kind, access_name,
             started_at, outcome, received_at, record)
         SELECT 'smuggled-result', agent_id, quartier, building, access_kind, access_name,
             started_at + 1, outcome, received_at, record
         FROM results WHERE rowid = (SELECT min(rowid) FROM results);
         CREATE TEMP TABLE f AS SELECT * FROM report_facts
             WHERE result_rowid = (SELECT min(rowid) FROM results);
         UPDATE f SET started_at = started_at + 1,
             result_rowid = (SELECT max(rowid) FROM results);
         INSERT INTO report_facts SELECT * FROM f;",
    )
    .expect("smuggle");
    drop(conn);
    let smuggled = dir.join("smuggled.csv");
    let run = report(&collector, &smuggled);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let run = report_verify(&smuggled, &key);
    assert_eq!(run.code(), 1, "{} {}", run.stdout(), run.stderr());
    assert!(
        run.stdout().contains("result smuggled-result has no proof"),
        "{}",
        run.stdout()
    );

    // A proof line lost from the proofs file, the manifest re-signed by a stranger:
    // the signature names it; the untouched report still verifies.
    let lost = std::fs::read_to_string(dir.join("clean.proofs.jsonl")).expect("proofs");
    let shorter: Vec<&str> = lost.lines().skip(1).collect();
    std::fs::write(dir.join("clean.proofs.jsonl"), shorter.join("\n") + "\n").expect("write");
    let run = report_verify(&clean, &key);
    assert_eq!(run.code(), 1, "{}", run.stdout());
    assert!(
        run.stderr().contains("clean.proofs.jsonl: altered"),
        "{}",
        run.stderr()
    );
    collector.stop();
}
