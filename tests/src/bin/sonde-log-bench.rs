//! `sonde-log-bench`: what signed, chained, logged results cost (issue: evidence that
//! survives a dispute). A benchmark, not a test: it prints figures and asserts nothing
//! about time.
//!
//! - signing on the agent: the spool's seal of one result (leaf hash, statement,
//!   Ed25519), µs a result;
//! - checking at ingest: the collector's check of one envelope (leaf hash, Ed25519
//!   verification), µs a result;
//! - a report's proof over N results (default 10⁶): a log of N × SHARE leaves built
//!   with the store's hashing (the report's results are every SHARE-th leaf), a
//!   checkpoint signed with a collector key, `STEM.proofs.jsonl` written with every
//!   result's bytes and its agent's envelope (one agent per 1000 results) and
//!   `STEM.tree.json` with their batch inclusion proof; then `report verify`'s checks
//!   of them (checkpoint, batch proof, every signature and chain) and its recomputation
//!   of the figures, timed: bytes a result, file size, seconds.
//!
//! Usage: cargo run --release -p sonde-e2e --bin sonde-log-bench -- [--results N] [--share K] [--json]

use sonde_agent::identity::signing::{leaf_hash, SigningKey};
use sonde_collector::ingest::signed;
use sonde_collector::report::proof::{self, Line};
use sonde_collector::report::recompute;
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
    /// The report holds every SHARE-th leaf of the log (the others are another
    /// quartier's), so its batch proof carries the others' hashes.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    share: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// The id of the `i`-th record.
fn record_id(i: u64) -> uuid::Uuid {
    uuid::Uuid::from_u64_pair(0x5eed, i)
}

/// A record's bytes, as an agent encodes it, with a distinct id, 15 s after the one
/// before (a log of 2 × 10⁶ leaves spans under a year).
fn record(i: u64) -> String {
    let mut r = sonde_proto::ResultRecord::schema_example();
    r.id = record_id(i);
    r.run.started_at += chrono::Duration::seconds(15 * i as i64);
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

/// Signing and checking one result: the record's bytes, µs to sign, µs to check one
/// by one, µs to check in batches (as ingest and `report verify` do).
fn micro(dir: &std::path::Path) -> (usize, f64, f64, f64) {
    let agent = SigningKey::load_or_create(dir).expect("an agent key");
    let public =
        sonde_proto::wire::unhex(agent.public_text().trim_start_matches("ed25519 ")).expect("hex");
    let sample: Vec<String> = (0..1000).map(record).collect();
    let sign_us = per_result(20_000, |i| {
        let r = &sample[(i % 1000) as usize];
        std::hint::black_box(agent.seal(i + 1, Envelope::GENESIS, r.as_bytes()));
    });
    let sealed: Vec<Envelope> = sample
        .iter()
        .enumerate()
        .map(|(i, r)| agent.seal(i as u64 + 1, Envelope::GENESIS, r.as_bytes()).0)
        .collect();
    let one_us = per_result(20_000, |i| {
        let k = (i % 1000) as usize;
        let leaf = leaf_hash(sample[k].as_bytes());
        let ok = signed::verify(&public, &sealed[k], &leaf);
        assert!(ok.is_some(), "a good signature");
    });
    let batch_us = per_result(20, |_| {
        let claims: Vec<signed::Claim> = sample
            .iter()
            .zip(&sealed)
            .map(|(r, e)| {
                let statement = Envelope::statement(e.seq, &e.prev, &leaf_hash(r.as_bytes()));
                let sig = sonde_proto::wire::unhex(&e.sig).expect("hex");
                (public.clone(), statement, sig)
            })
            .collect();
        assert_eq!(signed::first_bad(&claims), None, "good signatures");
    }) / 1000.0;
    (sample[0].len(), sign_us, one_us, batch_us)
}

/// The figures printed: JSON key, what it is, unit.
const FIGURES: [(&str, &str, &str); 13] = [
    ("record_bytes", "a record (the schema's example)", "B"),
    ("sign_us_per_result", "agent: sign a result", "µs"),
    (
        "verify_one_us_per_result",
        "check a result's signature, one by one",
        "µs",
    ),
    (
        "verify_batch_us_per_result",
        "ingest, report verify: check one, 256 a batch",
        "µs",
    ),
    ("log_leaves", "log: leaves (report's results × --share)", ""),
    ("log_build_s", "log: build in memory", "s"),
    ("proofs_write_s", "proof files: sign, prove, write", "s"),
    (
        "proofs_mb",
        "proof files for the report's results: size",
        "MB",
    ),
    (
        "proof_bytes_per_result",
        "proof files: bytes a result (record included)",
        "B",
    ),
    ("tree_bytes_per_result", "batch proof: bytes a result", "B"),
    (
        "report_verify_s",
        "report verify: proofs, signatures, chains",
        "s",
    ),
    ("recompute_s", "report verify: recompute the figures", "s"),
    (
        "report_verify_us_per_result",
        "report verify: a result, all checks",
        "µs",
    ),
];

fn main() {
    let args = <Args as clap::Parser>::parse();
    let dir = scratch("log-bench");
    let (record_bytes, sign_us, verify_us, batch_us) = micro(&dir);
    let n = args.results;
    let t = report_proof(&dir, n, args.share);
    let check_s = t.verify_s + t.recompute_s;
    let per = |x: f64| x / n as f64;
    let values = [
        record_bytes as f64,
        sign_us,
        verify_us,
        batch_us,
        (n * args.share) as f64,
        t.build_s,
        t.write_s,
        t.bytes as f64 / 1e6,
        per(t.bytes as f64),
        per(t.tree_bytes as f64),
        t.verify_s,
        t.recompute_s,
        per(check_s * 1e6),
    ];
    let rows: Vec<(&str, &str, f64, &str)> = FIGURES
        .iter()
        .zip(values)
        .map(|((key, figure, unit), v)| (*key, *figure, v, *unit))
        .collect();
    if args.json {
        let map: serde_json::Map<String, serde_json::Value> = rows
            .iter()
            .map(|(k, _, v, _)| (k.to_string(), serde_json::json!(v)))
            .collect();
        println!("{}", serde_json::Value::Object(map));
    } else {
        println!("{:<50} {:>12}", "figure", "value");
        for (_, figure, value, unit) in &rows {
            println!("{figure:<50} {value:>12.1} {unit}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Builds a log of `n × share` leaves (the report's results are every `share`-th: the
/// others are another quartier's), writes a report's proof of its `n` results (one
/// agent per 1000 results, each chain signed) and checks it as `report verify` does:
/// the proof files' bytes, and seconds to build, to write, to check and to recompute
/// the figures.
fn report_proof(dir: &std::path::Path, n: u64, share: u64) -> Timings {
    let started = Instant::now();
    let size = n * share;
    let (stored, leaves, root) = build_log(size);
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
    let note = sonde_collector::log::sign_checkpoint(&collector, size, root).expect("checkpoint");
    let checkpoint = dir.join("r.checkpoint");
    std::fs::write(&checkpoint, note).expect("write");
    let agents_file = dir.join("r.agents.json");
    let proofs = dir.join("r.proofs.jsonl");
    let proven = write_lines(dir, &agents_file, &proofs, &leaves, n, share);
    let tree = proof::Tree {
        size,
        leaves: proven
            .iter()
            .map(|&l| leaves[l as usize].to_string())
            .collect(),
        hashes: log::batch_inclusion(&proven, size, &read)
            .expect("batch proof")
            .iter()
            .map(ToString::to_string)
            .collect(),
    };
    let tree_file = dir.join("r.tree.json");
    std::fs::write(&tree_file, serde_json::to_string(&tree).expect("JSON")).expect("write");
    let write_s = started.elapsed().as_secs_f64();
    let size_of = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let bytes = size_of(&proofs) + size_of(&tree_file);
    let tree_bytes = size_of(&tree_file);

    let started = Instant::now();
    let files = proof::Files {
        checkpoint: &checkpoint,
        proofs: &proofs,
        tree: Some(&tree_file),
        agents: Some(&agents_file),
        raw: None,
    };
    let checked = proof::check(files, collector.public()).expect("the proof checks");
    assert_eq!((checked.results, checked.signed), (n, n));
    let verify_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let inputs = inputs(n);
    let report = recompute::recompute(&inputs, checked.rows).expect("recomputed");
    assert_eq!(report.data.results, n, "every result counted");
    Timings {
        bytes,
        tree_bytes,
        build_s,
        write_s,
        verify_s,
        recompute_s: started.elapsed().as_secs_f64(),
    }
}

/// Writes the agents' keys (one agent per 1000 results) and the proof lines of the
/// `n` results at every `share`-th leaf, each signed in its agent's chain; their leaves.
fn write_lines(
    dir: &std::path::Path,
    agents_file: &std::path::Path,
    proofs: &std::path::Path,
    leaves: &[Hash],
    n: u64,
    share: u64,
) -> Vec<u64> {
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
    std::fs::write(
        agents_file,
        serde_json::json!({ "agents": keys }).to_string(),
    )
    .expect("write");
    let mut out = std::io::BufWriter::new(std::fs::File::create(proofs).expect("create"));
    let mut heads: Vec<(u64, String)> = vec![(0, Envelope::GENESIS.to_string()); agents.len()];
    let mut proven = Vec::with_capacity(n as usize);
    for i in 0..n {
        let leaf = i * share;
        let a = (i / 1000) as usize;
        let (seq, prev) = heads[a].clone();
        let (envelope, head) = seal_hash(&agents[a], seq + 1, &prev, &leaves[leaf as usize]);
        heads[a] = (seq + 1, head);
        let line = Line {
            id: record_id(leaf).to_string(),
            leaf,
            agent: format!("agent-{a}"),
            quartier: "q1".into(),
            building: format!("b{a}"),
            record: record(leaf),
            envelope: Some(envelope),
        };
        writeln!(out, "{}", serde_json::to_string(&line).expect("JSON")).expect("write");
        proven.push(leaf);
    }
    out.flush().expect("flush");
    proven
}

/// The report's inputs: every agent's access, over the records' period.
fn inputs(n: u64) -> recompute::Inputs {
    let example = sonde_proto::ResultRecord::schema_example();
    let start = example.run.started_at;
    recompute::Inputs {
        from: start - chrono::Duration::days(1),
        to: start + chrono::Duration::days(400),
        quartier: None,
        building: None,
        time_zone: "Europe/Paris".into(),
        generated_at: start + chrono::Duration::days(401),
        issuer: None,
        report_key_id: None,
        checkpoint: None,
        format: "json".into(),
        lang: "en".into(),
        accesses: (0..n.div_ceil(1000))
            .map(|a| sonde_store::ScheduledAccess {
                agent_id: format!("agent-{a}"),
                access: example.access.name.clone().unwrap_or_default(),
                quartier: "q1".into(),
                building: format!("b{a}"),
                kind: example.access.kind.as_str().to_string(),
                first_at: start,
                interval_s: Some(900.0),
            })
            .collect(),
        planned: Vec::new(),
    }
}

/// What [`report_proof`] measured.
struct Timings {
    bytes: u64,
    tree_bytes: u64,
    build_s: f64,
    write_s: f64,
    verify_s: f64,
    recompute_s: f64,
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
