//! `sonde-log-bench`: what signed, chained, logged results cost (issue: evidence that
//! survives a dispute). A benchmark, not a test: it prints figures and asserts nothing
//! about time.
//!
//! - signing on the agent: the spool's seal of one result (leaf hash, statement,
//!   Ed25519), µs a result;
//! - checking at ingest: the collector's check of one envelope (leaf hash, Ed25519
//!   verification), µs a result;
//! - a report's proof over N results (default 10⁶): a log of N leaves built with the
//!   store's hashing, a checkpoint signed with a collector key, `STEM.proofs.jsonl`
//!   written with every result's inclusion proof and its agent's envelope (one agent
//!   per 1000 results), then `report verify`'s check of it (checkpoint, every proof,
//!   every signature and chain), timed: bytes a result, file size, seconds.
//!
//! Usage: cargo run --release -p sonde-e2e --bin sonde-log-bench -- [--results N] [--json]

use sonde_agent::identity::signing::{leaf_hash, SigningKey};
use sonde_collector::report::proof::{self, Line};
use sonde_collector::report::sign::ReportKey;
use sonde_e2e::pipeline::scratch;
use sonde_proto::wire::{hex, Envelope};
use sonde_store::log::{self, Hash};
use sonde_store::StoreError;
use std::collections::HashMap;
use std::io::Write as _;
use std::time::Instant;

/// Signing, checking and proving results: µs a result, bytes a result, seconds.
#[derive(Debug, clap::Parser)]
#[command(name = "sonde-log-bench", version)]
struct Args {
    /// Results in the report's proof.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    results: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// A record's bytes, as an agent encodes it, with a distinct id.
fn record(i: u64) -> String {
    let mut r = sonde_proto::ResultRecord::schema_example();
    r.id = uuid::Uuid::from_u64_pair(0x5eed, i);
    r.to_json()
}

/// µs a result of `f` over `n` results.
fn per_result(n: u64, mut f: impl FnMut(u64)) -> f64 {
    let started = Instant::now();
    for i in 0..n {
        f(i);
    }
    started.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let args = <Args as clap::Parser>::parse();
    let dir = scratch("log-bench");
    let agent = SigningKey::load_or_create(&dir).expect("an agent key");
    let public =
        sonde_proto::wire::unhex(agent.public_text().trim_start_matches("ed25519 ")).expect("hex");
    let sample: Vec<String> = (0..1000).map(record).collect();
    let record_bytes = sample[0].len();
    let sign_us = per_result(20_000, |i| {
        let r = &sample[(i % 1000) as usize];
        std::hint::black_box(agent.seal(i + 1, Envelope::GENESIS, r.as_bytes()));
    });
    let sealed: Vec<Envelope> = sample
        .iter()
        .enumerate()
        .map(|(i, r)| agent.seal(i as u64 + 1, Envelope::GENESIS, r.as_bytes()).0)
        .collect();
    let verify_us = per_result(20_000, |i| {
        let k = (i % 1000) as usize;
        let leaf = leaf_hash(sample[k].as_bytes());
        let ok = sonde_collector::ingest::signed::verify(&public, &sealed[k], &leaf);
        assert!(ok.is_some(), "a good signature");
    });
    let (proof_bytes, build_s, write_s, verify_s) = report_proof(&dir, args.results);
    let n = args.results;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "record_bytes": record_bytes,
                "sign_us_per_result": sign_us,
                "ingest_verify_us_per_result": verify_us,
                "results": n,
                "proofs_bytes": proof_bytes,
                "proof_bytes_per_result": proof_bytes as f64 / n as f64,
                "log_build_s": build_s,
                "proofs_write_s": write_s,
                "report_verify_s": verify_s,
                "report_verify_us_per_result": verify_s * 1e6 / n as f64,
            })
        );
    } else {
        println!("record of {record_bytes} bytes (the schema's example)");
        println!("{:<44} {:>12}", "figure", "value");
        println!("{:<44} {:>10.1} µs", "agent: sign a result", sign_us);
        println!(
            "{:<44} {:>10.1} µs",
            "ingest: check a result's signature", verify_us
        );
        println!(
            "{:<44} {:>10.1} s",
            format!("log of {n} leaves: build"),
            build_s
        );
        println!(
            "{:<44} {:>10.1} s",
            "proofs file: sign results, prove, write", write_s
        );
        println!(
            "{:<44} {:>10.1} MB",
            "proofs file: size",
            proof_bytes as f64 / 1e6
        );
        println!(
            "{:<44} {:>10.0} B",
            "proofs file: bytes a result",
            proof_bytes as f64 / n as f64
        );
        println!(
            "{:<44} {:>10.1} s",
            "report verify: check the proofs file", verify_s
        );
        println!(
            "{:<44} {:>10.1} µs",
            "report verify: a result",
            verify_s * 1e6 / n as f64
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Builds a log of `n` leaves, writes a report's proof of all of them (one agent per
/// 1000 results, each chain signed) and checks it as `report verify` does: the proofs
/// file's bytes, and seconds to build, to write and to check.
fn report_proof(dir: &std::path::Path, n: u64) -> (u64, f64, f64, f64) {
    let started = Instant::now();
    let (stored, leaves, root) = build_log(n);
    let build_s = started.elapsed().as_secs_f64();
    let read = |i: &[u64]| -> Result<Vec<Hash>, StoreError> {
        i.iter()
            .map(|i| {
                stored
                    .get(i)
                    .copied()
                    .ok_or(StoreError::Backend("no hash".into()))
            })
            .collect()
    };

    let started = Instant::now();
    let collector = ReportKey::load_or_create(&dir.join("collector")).expect("collector key");
    let note = sonde_collector::log::sign_checkpoint(&collector, n, root).expect("checkpoint");
    let checkpoint = dir.join("r.checkpoint");
    std::fs::write(&checkpoint, note).expect("write");
    let agents: Vec<SigningKey> = (0..n.div_ceil(1000))
        .map(|a| {
            let d = dir.join(format!("agent-{a}"));
            std::fs::create_dir_all(&d).expect("dir");
            SigningKey::load_or_create(&d).expect("agent key")
        })
        .collect();
    let keys: std::collections::BTreeMap<String, String> = agents
        .iter()
        .enumerate()
        .map(|(a, k)| (format!("agent-{a}"), k.public_text()))
        .collect();
    let agents_file = dir.join("r.agents.json");
    std::fs::write(
        &agents_file,
        serde_json::json!({ "agents": keys }).to_string(),
    )
    .expect("write");
    let proofs = dir.join("r.proofs.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&proofs).expect("create"));
    let mut heads: Vec<(u64, String)> = vec![(0, Envelope::GENESIS.to_string()); agents.len()];
    for (i, leaf) in leaves.iter().enumerate() {
        let a = i / 1000;
        let (seq, prev) = heads[a].clone();
        let (envelope, head) = seal_hash(&agents[a], seq + 1, &prev, leaf);
        heads[a] = (seq + 1, head);
        let line = Line {
            id: format!("r{i}"),
            leaf: i as u64,
            leaf_hash: leaf.to_string(),
            proof: log::inclusion(i as u64, n, &read)
                .expect("proof")
                .iter()
                .map(ToString::to_string)
                .collect(),
            agent: format!("agent-{a}"),
            envelope: Some(envelope),
        };
        writeln!(out, "{}", serde_json::to_string(&line).expect("JSON")).expect("write");
    }
    out.flush().expect("flush");
    let write_s = started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&proofs).map(|m| m.len()).unwrap_or(0);

    let started = Instant::now();
    let files = proof::Files {
        checkpoint: &checkpoint,
        proofs: &proofs,
        agents: Some(&agents_file),
        raw: None,
    };
    let checked = proof::check(files, collector.public()).expect("the proof checks");
    assert_eq!((checked.results, checked.signed), (n, n));
    (bytes, build_s, write_s, started.elapsed().as_secs_f64())
}

/// A log of `n` results built with the store's hashing: its stored hashes, the
/// leaves' hashes and the root.
fn build_log(n: u64) -> (HashMap<u64, Hash>, Vec<Hash>, Hash) {
    let stored = std::cell::RefCell::new(HashMap::<u64, Hash>::new());
    let read = |i: &[u64]| -> Result<Vec<Hash>, StoreError> {
        let s = stored.borrow();
        i.iter()
            .map(|i| {
                s.get(i)
                    .copied()
                    .ok_or(StoreError::Backend("no hash".into()))
            })
            .collect()
    };
    let mut leaves = Vec::with_capacity(n as usize);
    for i in 0..n {
        let bytes = record(i);
        leaves.push(log::leaf_hash(bytes.as_bytes()));
        let (first, hashes) = log::append(i, bytes.as_bytes(), &read).expect("append");
        let mut s = stored.borrow_mut();
        for (k, h) in hashes.into_iter().enumerate() {
            s.insert(first + k as u64, h);
        }
    }
    let root = log::root(n, &read).expect("root");
    (stored.into_inner(), leaves, root)
}

/// An agent's envelope of the record whose leaf hash is `leaf` (what the spool's seal
/// does with the record's bytes).
fn seal_hash(key: &SigningKey, seq: u64, prev: &str, leaf: &Hash) -> (Envelope, String) {
    key.seal_leaf(seq, prev, &hex(&leaf.0))
}
