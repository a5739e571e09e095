//! A report's proof that its results are the ones the collector logged and the agents
//! signed (docs/METHODOLOGY.md §7.6):
//!
//! - `STEM.checkpoint`: the log's checkpoint the report was built on, a signed note
//!   (a fresh one is signed when the report is written);
//! - `STEM.proofs.jsonl`: one line per stored result of the report's scope, in leaf
//!   order: its id, its leaf, its agent and site, its exact stored bytes and, when its
//!   agent signed it, its envelope (place in the agent's chain, signature);
//! - `STEM.tree.json`: one batch inclusion proof of all those leaves in the
//!   checkpoint's tree ([`sonde_store::log::batch_inclusion`]);
//! - `STEM.agents.json`: the agents' public signing keys.
//!
//! All are listed in the signed manifest. [`check`] is what `report verify` runs on
//! them, offline, with the collector's public key; it hands back each result as
//! reports read it, for the figures to be recomputed ([`super::recompute`]).

use crate::ingest::signed::{sha256, Claim};
use crate::log::{self as tlog, CheckpointKey};
use serde::{Deserialize, Serialize};
use sonde_proto::wire::{hex, Envelope, Rotation};
use sonde_store::log::{self, Hash};
use sonde_store::rows::ReportRow;
use sonde_store::{Delivery, ReportScope, Store, StoreError};
use std::collections::HashMap;
use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};

/// Suffix of the checkpoint's file name.
pub const CHECKPOINT_SUFFIX: &str = ".checkpoint";
/// Suffix of the results' file name.
pub const PROOFS_SUFFIX: &str = ".proofs.jsonl";
/// Suffix of the batch proof's file name.
pub const TREE_SUFFIX: &str = ".tree.json";
/// Suffix of the agents' public keys' file name.
pub const AGENTS_SUFFIX: &str = ".agents.json";

/// One result, as proven.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// The result's id.
    pub id: String,
    /// Its leaf in the log.
    pub leaf: u64,
    /// The agent that delivered it.
    pub agent: String,
    /// Its quartier ('' when none).
    pub quartier: String,
    /// Its building ('' when none).
    pub building: String,
    /// Its exact stored bytes: the log's leaf, and what its agent signed.
    pub record: String,
    /// Its agent's signature: its place in the agent's chain (absent: stored unsigned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<Envelope>,
}

/// `STEM.tree.json`: the hashes that, with the leaves of the report's results, give
/// the checkpoint's root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// Leaves of the checkpoint's tree.
    pub size: u64,
    /// The leaf hash the log holds for each result, in the results' order, base64:
    /// proven by the batch proof, then compared with the hash of each result's bytes,
    /// so an edited result is named.
    pub leaves: Vec<String>,
    /// The batch proof's hashes, base64, in the order the tree's walk meets them.
    pub hashes: Vec<String>,
}

/// A checkpoint signed for a report.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// Leaves it covers.
    pub size: u64,
    /// Their root.
    pub root: Hash,
    /// The signed note.
    pub note: String,
}

impl Sealed {
    /// How the report's header names it: the log's origin, its size and root.
    pub fn name(&self) -> String {
        let origin = self.note.lines().next().unwrap_or_default();
        format!("{origin} {} {}", self.size, self.root)
    }
}

/// The proof files written.
#[derive(Debug)]
pub struct Written {
    /// The files, in the manifest's order.
    pub files: Vec<PathBuf>,
    /// Results proven.
    pub results: u64,
    /// Results whose stored bytes are not those the log holds (edited after they were
    /// stored): their ids. Their lines are written all the same, and fail [`check`].
    pub contradicted: Vec<String>,
}

/// Why the proof files could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Signs a checkpoint of the log as it stands (when it grew) and returns the latest;
/// none while the log is empty.
pub fn seal(store: &dyn Store, key: &dyn CheckpointKey) -> Result<Option<Sealed>, ProofError> {
    tlog::checkpoint(store, key, chrono::Utc::now())?;
    let Some((size, note)) = store.latest_checkpoint()? else {
        return Ok(None);
    };
    let root = tlog::open_checkpoint(&note, key.public())
        .map_err(StoreError::Backend)?
        .root;
    Ok(Some(Sealed { size, root, note }))
}

/// Writes the proofs of `scope`'s results against `sealed` beside the report
/// (`dir/STEM.*`).
pub fn write(
    store: &dyn Store,
    sealed: &Sealed,
    scope: &ReportScope,
    dir: &Path,
    stem: &str,
) -> Result<Written, ProofError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ProofError::Io { path, source }
    };
    let backend = |e: std::io::Error| StoreError::Backend(e.to_string());
    let checkpoint = dir.join(format!("{stem}{CHECKPOINT_SUFFIX}"));
    std::fs::write(&checkpoint, &sealed.note).map_err(io(&checkpoint))?;
    let proofs = dir.join(format!("{stem}{PROOFS_SUFFIX}"));
    let file = std::fs::File::create(&proofs).map_err(io(&proofs))?;
    let mut out = std::io::BufWriter::new(file);
    let mut leaves = Vec::new();
    let mut held = Vec::new();
    let mut contradicted = Vec::new();
    let stored_hash = |l: u64| store.log_hashes(&[tlog_tiles::stored_hash_index(0, l)]);
    store.log_leaves_in(scope, &mut |l| {
        if l.leaf >= sealed.size {
            return Ok(());
        }
        let hash = log::leaf_hash(l.bytes.as_bytes());
        let logged = stored_hash(l.leaf)?
            .first()
            .copied()
            .unwrap_or(log::EMPTY_HASH);
        if logged != hash {
            contradicted.push(l.id.to_string());
        }
        held.push(logged);
        let line = Line {
            id: l.id.to_string(),
            leaf: l.leaf,
            agent: l.agent_id.to_string(),
            quartier: l.site.0.to_string(),
            building: l.site.1.to_string(),
            record: l.bytes.to_string(),
            envelope: l.envelope.and_then(|e| serde_json::from_str(e).ok()),
        };
        serde_json::to_writer(&mut out, &line).map_err(|e| StoreError::Backend(e.to_string()))?;
        out.write_all(b"\n").map_err(backend)?;
        leaves.push(l.leaf);
        Ok(())
    })?;
    out.flush().map_err(io(&proofs))?;
    let mut files = vec![checkpoint, proofs];
    if !leaves.is_empty() {
        let hashes = log::batch_inclusion(&leaves, sealed.size, &|i| store.log_hashes(i))?;
        let tree = Tree {
            size: sealed.size,
            leaves: held.iter().map(ToString::to_string).collect(),
            hashes: hashes.iter().map(ToString::to_string).collect(),
        };
        let path = dir.join(format!("{stem}{TREE_SUFFIX}"));
        let text = serde_json::to_string(&tree).map_err(|e| StoreError::Backend(e.to_string()))?;
        std::fs::write(&path, text).map_err(io(&path))?;
        files.push(path);
    }
    files.push(write_agents(store, dir, stem)?);
    Ok(Written {
        files,
        results: leaves.len() as u64,
        contradicted,
    })
}

/// Writes `STEM.agents.json`: each agent's first signing key and its rotations.
fn write_agents(store: &dyn Store, dir: &Path, stem: &str) -> Result<PathBuf, ProofError> {
    let agents = dir.join(format!("{stem}{AGENTS_SUFFIX}"));
    let mut keys: std::collections::BTreeMap<String, String> =
        store.signing_keys()?.into_iter().collect();
    let mut rotations: std::collections::BTreeMap<String, Vec<Rotation>> = Default::default();
    for (agent, r) in store.key_rotations(None)? {
        rotations.entry(agent).or_default().push(r);
    }
    // Each agent's first key: the one its first rotation retired.
    for (agent, r) in &rotations {
        if let Some(first) = r.first() {
            keys.insert(agent.clone(), first.from.clone());
        }
    }
    let text = serde_json::to_string_pretty(
        &serde_json::json!({ "agents": keys, "rotations": rotations }),
    )
    .map_err(|e| StoreError::Backend(e.to_string()))?;
    std::fs::write(&agents, text).map_err(|source| ProofError::Io {
        path: agents.clone(),
        source,
    })?;
    Ok(agents)
}

/// What [`check`] found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Checked {
    /// Leaves of the checkpoint.
    pub size: u64,
    /// Its root, base64.
    pub root: String,
    /// Results whose proof checked.
    pub results: u64,
    /// Of those, signed by their agent (signature and chain checked).
    pub signed: u64,
    /// Agents whose results are signed.
    pub agents: u64,
    /// Places missing from an agent's chain between two of its results in the report.
    pub gaps: Vec<Gap>,
    /// Results stored unsigned from agents that sign (id, agent): held in memory on a
    /// full disk, or added by the collector.
    pub unsigned: Vec<(String, String)>,
    /// Every result as reports read it, in leaf order.
    pub rows: Vec<ReportRow>,
}

/// Places missing from an agent's chain between two of its results in a report: lost,
/// deleted, or outside the report's scope.
#[derive(Debug, Clone, PartialEq)]
pub struct Gap {
    /// The agent.
    pub agent: String,
    /// The first and last places missing.
    pub places: (u64, u64),
    /// What holds the places on either side ("result ID", or a key rotation).
    pub between: (String, String),
}

impl std::fmt::Display for Gap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (a, b) = self.places;
        let n = b - a + 1;
        write!(
            f,
            "agent {}: {n} result{} missing from its chain (place{} {a}{}), between {} and {}",
            self.agent,
            if n == 1 { "" } else { "s" },
            if n == 1 { "" } else { "s" },
            if n == 1 {
                String::new()
            } else {
                format!("–{b}")
            },
            self.between.0,
            self.between.1
        )
    }
}

/// The files a report's proof is in.
#[derive(Debug, Clone, Copy)]
pub struct Files<'a> {
    /// `STEM.checkpoint`.
    pub checkpoint: &'a Path,
    /// `STEM.proofs.jsonl`.
    pub proofs: &'a Path,
    /// `STEM.tree.json` (absent when the report has no result).
    pub tree: Option<&'a Path>,
    /// `STEM.agents.json`, when the report has one.
    pub agents: Option<&'a Path>,
    /// `STEM.results.csv`, when the report has one.
    pub raw: Option<&'a Path>,
}

/// One line read and checked on its own: its leaf hash, its row, its statement's hash.
struct Read {
    line: Line,
    hash: Hash,
    row: ReportRow,
    statement: Option<String>,
}

/// Lines checked at a time, shared among the cores.
const CHUNK: usize = 4096;

/// Checks a report's checkpoint (signed by `public`), that every result's bytes are
/// in it (the batch proof), every agent's signature and chain (with the keys the
/// report ships) and, with the raw results, that each of them has a proof; says which
/// result fails and why.
pub fn check(files: Files<'_>, public: &[u8]) -> Result<Checked, String> {
    let (checkpoint, proofs) = (files.checkpoint, files.proofs);
    let note = std::fs::read_to_string(checkpoint)
        .map_err(|e| format!("{}: {e}", checkpoint.display()))?;
    let cp = tlog::open_checkpoint(&note, public)
        .map_err(|e| format!("{}: {e}", checkpoint.display()))?;
    let keys = match files.agents {
        Some(p) => agent_keys(p)?,
        None => Keys::default(),
    };
    let file = std::fs::File::open(proofs).map_err(|e| format!("{}: {e}", proofs.display()))?;
    let name = proofs.display().to_string();
    let (held, hashes) = match files.tree {
        Some(tree) => read_tree(tree, cp.size)?,
        None => (Vec::new(), Vec::new()),
    };
    let tree_name = files
        .tree
        .map(|t| t.display().to_string())
        .unwrap_or_default();
    let mut walk = Walk {
        keys: &keys,
        held: &held,
        size: cp.size,
        chains: Chains::default(),
        out: Checked {
            size: cp.size,
            root: cp.root.to_string(),
            ..Checked::default()
        },
        leaves: Vec::new(),
        ids: std::collections::HashSet::new(),
    };
    let mut lines = std::io::BufReader::with_capacity(1 << 20, file)
        .lines()
        .enumerate();
    loop {
        let mut chunk = Vec::with_capacity(CHUNK);
        for (n, text) in lines.by_ref().take(CHUNK) {
            chunk.push((n + 1, text.map_err(|e| format!("{name}: {e}"))?));
        }
        if chunk.is_empty() {
            break;
        }
        for (n, read) in read_lines(&chunk, &keys, &name)? {
            walk.take(read)
                .map_err(|why| format!("{name}:{n}: {why}"))?;
        }
    }
    let Walk {
        mut out,
        leaves,
        ids,
        chains,
        ..
    } = walk;
    if held.len() != leaves.len() {
        return Err(format!(
            "{tree_name}: {} leaf hashes for the {} results of {name}",
            held.len(),
            leaves.len()
        ));
    }
    if !leaves.is_empty() && !log::check_batch(&hashes, cp.size, cp.root, &leaves) {
        return Err(format!(
            "{tree_name}: the {} results' leaves are not in the checkpoint's log of {} leaves: the batch proof was altered, or a result moved",
            leaves.len(),
            cp.size
        ));
    }
    if let Some(raw) = files.raw {
        every_result_proven(raw, &ids)?;
    }
    out.results = leaves.len() as u64;
    out.agents = chains.last.len() as u64;
    out.gaps = chains.gaps;
    Ok(out)
}

/// The proof lines read so far, in order.
struct Walk<'a> {
    keys: &'a Keys,
    /// The leaf hashes the log holds, one per line.
    held: &'a [Hash],
    /// Leaves of the checkpoint.
    size: u64,
    chains: Chains,
    out: Checked,
    leaves: Vec<(u64, Hash)>,
    ids: std::collections::HashSet<String>,
}

impl Walk<'_> {
    /// The next line, read and its signature checked: its leaf, the bytes the log
    /// holds there, its place in its agent's chain.
    fn take(&mut self, read: Read) -> Result<(), String> {
        let Read {
            line,
            hash,
            row,
            statement,
        } = read;
        let id = &line.id;
        if self.leaves.last().is_some_and(|l| l.0 >= line.leaf) || line.leaf >= self.size {
            return Err(format!(
                "result {id} at leaf {}: leaves must rise and stay below the checkpoint's {}",
                line.leaf, self.size
            ));
        }
        let logged = self.held.get(self.leaves.len()).ok_or_else(|| {
            format!("result {id} has no leaf hash in the batch proof ({TREE_SUFFIX})")
        })?;
        if *logged != hash {
            return Err(format!(
                "result {id} (leaf {}): its bytes hash to {hash}, the log holds {logged} at leaf {}: edited after it was stored",
                line.leaf, line.leaf
            ));
        }
        if let (Some(e), Some(statement)) = (&line.envelope, statement) {
            self.chains.follow(self.keys, &line, e, statement)?;
            self.out.signed += 1;
        } else if self.keys.schedule.contains_key(&line.agent) {
            self.out.unsigned.push((id.clone(), line.agent.clone()));
        }
        self.leaves.push((line.leaf, hash));
        self.ids.insert(line.id);
        self.out.rows.push(row);
        Ok(())
    }
}

/// Parses and checks `chunk`'s lines on every core: each line's JSON, its leaf hash,
/// its record and, when signed, its agent's signature.
fn read_lines(
    chunk: &[(usize, String)],
    keys: &Keys,
    name: &str,
) -> Result<Vec<(usize, Read)>, String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let part = chunk.len().div_ceil(cores).max(1);
    std::thread::scope(|s| {
        let workers: Vec<_> = chunk
            .chunks(part)
            .map(|lines| {
                s.spawn(move || {
                    let mut read = Vec::with_capacity(lines.len());
                    let mut claims = Vec::with_capacity(lines.len());
                    let mut signed = Vec::with_capacity(lines.len());
                    for (n, text) in lines {
                        let (r, claim) =
                            read_line(text, keys).map_err(|why| format!("{name}:{n}: {why}"))?;
                        if let Some(c) = claim {
                            claims.push(c);
                            signed.push(read.len());
                        }
                        read.push((*n, r));
                    }
                    if let Some(i) = crate::ingest::signed::first_bad(&claims) {
                        let (n, r) = &read[signed[i]];
                        let (id, agent) = (&r.line.id, &r.line.agent);
                        let seq = r.line.envelope.as_ref().map_or(0, |e| e.seq);
                        return Err(format!(
                            "{name}:{n}: result {id}: agent {agent}'s signature does not match its bytes and place {seq}"
                        ));
                    }
                    Ok(read)
                })
            })
            .collect();
        let mut all = Vec::with_capacity(chunk.len());
        for w in workers {
            all.extend(
                w.join()
                    .map_err(|_| format!("{name}: a checker thread failed"))??,
            );
        }
        Ok(all)
    })
}

/// One line: parsed, hashed, its record read as reports read it; and, when it is
/// signed, the signature to check (checked with others, [`read_lines`]).
fn read_line(text: &str, keys: &Keys) -> Result<(Read, Option<Claim>), String> {
    let line: Line = serde_json::from_str(text).map_err(|e| format!("not a proof line: {e}"))?;
    let hash = log::leaf_hash(line.record.as_bytes());
    let record = sonde_proto::ResultRecord::from_json(line.record.as_bytes())
        .map_err(|e| format!("result {}: its bytes are not a result record: {e}", line.id))?;
    if record.id.to_string() != line.id {
        return Err(format!(
            "result {}: its bytes are those of result {}",
            line.id, record.id
        ));
    }
    let site = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let delivery = Delivery {
        agent_id: line.agent.clone(),
        quartier: site(&line.quartier),
        building: site(&line.building),
    };
    let row = ReportRow::of(&delivery, &record);
    let (statement, claim) = match &line.envelope {
        None => (None, None),
        Some(e) => {
            let (id, agent) = (&line.id, &line.agent);
            let key = keys.at(agent, e.seq).ok_or_else(|| {
                format!("result {id} is signed, but the report has no key for agent {agent}")
            })?;
            let text = Envelope::statement(e.seq, &e.prev, &hex(&hash.0));
            let sig = sonde_proto::wire::unhex(&e.sig)
                .ok_or_else(|| format!("result {id}: its signature is not hex"))?;
            let statement = sha256(text.as_bytes());
            (Some(statement), Some((key.to_vec(), text, sig)))
        }
    };
    Ok((
        Read {
            line,
            hash,
            row,
            statement,
        },
        claim,
    ))
}

/// The leaf hashes the log holds and the batch proof's hashes, for a tree of `size`
/// leaves.
fn read_tree(path: &Path, size: u64) -> Result<(Vec<Hash>, Vec<Hash>), String> {
    let name = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    let tree: Tree =
        serde_json::from_str(&text).map_err(|e| format!("{name}: not a batch proof: {e}"))?;
    if tree.size != size {
        return Err(format!(
            "{name}: a proof for a log of {} leaves, the checkpoint's has {size}",
            tree.size
        ));
    }
    let parse = |hashes: &[String]| {
        hashes
            .iter()
            .map(|h| Hash::parse_hash(h).map_err(|_| format!("{name}: {h:?} is not a base64 hash")))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok((parse(&tree.leaves)?, parse(&tree.hashes)?))
}

/// The agents' keys a report ships: each agent's first key and its rotations, each
/// checked (signed by the key it retires, which is the one in force).
#[derive(Debug, Default)]
struct Keys {
    /// Agent → (place after which the key signs, the key), oldest first.
    schedule: HashMap<String, Vec<(u64, Vec<u8>)>>,
    /// Agent → its rotations with their statements' SHA-256, by place.
    rotations: HashMap<String, Vec<(Rotation, String)>>,
}

impl Keys {
    /// The key that signs place `seq` of `agent`'s chain.
    fn at(&self, agent: &str, seq: u64) -> Option<&[u8]> {
        self.schedule
            .get(agent)?
            .iter()
            .rev()
            .find(|(after, _)| *after < seq)
            .map(|(_, k)| k.as_slice())
    }
}

/// Reads `STEM.agents.json`.
fn agent_keys(path: &Path) -> Result<Keys, String> {
    use crate::ingest::signed::{public_key, verify_rotation};
    let name = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    let doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{name}: not JSON: {e}"))?;
    let agents = doc["agents"]
        .as_object()
        .ok_or(format!("{name}: no agents"))?;
    let rotations: HashMap<String, Vec<Rotation>> = match doc.get("rotations") {
        Some(r) => {
            serde_json::from_value(r.clone()).map_err(|e| format!("{name}: rotations: {e}"))?
        }
        None => HashMap::new(),
    };
    let mut keys = Keys::default();
    for (id, k) in agents {
        let text = k.as_str().unwrap_or_default();
        let first =
            public_key(text).ok_or_else(|| format!("{name}: agent {id}: not an ed25519 key"))?;
        let mut schedule = vec![(0, first)];
        let mut in_force = text.to_string();
        let mut chained = Vec::new();
        for r in rotations.get(id).into_iter().flatten() {
            let why = |what: &str| {
                format!(
                    "{name}: agent {id}: the key rotation at place {}: {what}",
                    r.seq
                )
            };
            if r.from != in_force {
                return Err(why("it retires another key than the one in force"));
            }
            let statement =
                verify_rotation(r).ok_or_else(|| why("not signed by the key it retires"))?;
            let to = public_key(&r.to).ok_or_else(|| why("the new key is not an ed25519 key"))?;
            schedule.push((r.seq, to));
            in_force.clone_from(&r.to);
            chained.push((r.clone(), statement));
        }
        keys.schedule.insert(id.clone(), schedule);
        keys.rotations.insert(id.clone(), chained);
    }
    Ok(keys)
}

/// Each agent's chain as its results come in the report, in leaf order.
#[derive(Debug, Default)]
struct Chains {
    /// Agent → its last place seen, that statement's SHA-256 and what held it.
    last: HashMap<String, (u64, String, String)>,
    /// Places missing between two of an agent's results.
    gaps: Vec<Gap>,
}

impl Chains {
    /// Checks that the line's result, whose signed statement hashes to `statement`,
    /// continues its agent's chain, through the key rotations between.
    fn follow(
        &mut self,
        keys: &Keys,
        line: &Line,
        e: &Envelope,
        statement: String,
    ) -> Result<(), String> {
        let agent = &line.agent;
        if let Some(last) = self.last.get(agent).map(|l| l.0) {
            for (r, hash) in keys.rotations.get(agent).into_iter().flatten() {
                if r.seq > last && r.seq < e.seq {
                    let what = format!("the key rotation at place {}", r.seq);
                    self.step(agent, &what, r.seq, &r.prev, hash.clone())?;
                }
            }
        }
        self.step(
            agent,
            &format!("result {}", line.id),
            e.seq,
            &e.prev,
            statement,
        )
    }

    /// `what` takes place `seq` of `agent`'s chain, naming `prev` before it.
    fn step(
        &mut self,
        agent: &str,
        what: &str,
        seq: u64,
        prev: &str,
        statement: String,
    ) -> Result<(), String> {
        if let Some((last, hash, before)) = self.last.get(agent) {
            if seq <= *last {
                return Err(format!(
                    "{what}: place {seq} of agent {agent}'s chain comes after place {last} ({before}): a replay or a fork"
                ));
            }
            if seq == last + 1 && prev != *hash {
                return Err(format!(
                    "{what} (place {seq} of agent {agent}'s chain) does not follow {before} at place {last}: the chain forks"
                ));
            }
            if seq > last + 1 {
                self.gaps.push(Gap {
                    agent: agent.to_string(),
                    places: (last + 1, seq - 1),
                    between: (before.clone(), what.to_string()),
                });
            }
        }
        self.last
            .insert(agent.to_string(), (seq, statement, what.to_string()));
        Ok(())
    }
}

/// Every result of the raw results file (those with an id: a pruned one has none) has
/// a proof.
fn every_result_proven(
    raw: &Path,
    proven: &std::collections::HashSet<String>,
) -> Result<(), String> {
    let name = raw.display();
    let mut r = csv::Reader::from_path(raw).map_err(|e| format!("{name}: {e}"))?;
    for (n, row) in r.records().enumerate() {
        let row = row.map_err(|e| format!("{name}: {e}"))?;
        let id = row.get(0).unwrap_or("");
        if !id.is_empty() && !proven.contains(id) {
            return Err(format!(
                "{name}:{}: result {id} has no proof: it is not in the log (put in the store behind its back?)",
                n + 2
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str) -> Line {
        Line {
            id: id.into(),
            leaf: 0,
            agent: "a1".into(),
            quartier: String::new(),
            building: String::new(),
            record: String::new(),
            envelope: None,
        }
    }

    fn envelope(seq: u64, prev: &str) -> Envelope {
        Envelope {
            seq,
            prev: prev.into(),
            sig: String::new(),
        }
    }

    #[test]
    fn a_chain_in_a_report_names_replays_forks_and_gaps() {
        let keys = Keys::default();
        let mut chains = Chains::default();
        chains
            .follow(
                &keys,
                &line("r1"),
                &envelope(1, Envelope::GENESIS),
                "h1".into(),
            )
            .expect("the first");
        chains
            .follow(&keys, &line("r2"), &envelope(2, "h1"), "h2".into())
            .expect("the next");
        // The same place again: a replay.
        let err = chains
            .follow(&keys, &line("r2-again"), &envelope(2, "h1"), "h2".into())
            .expect_err("a replay");
        assert!(
            err.contains("result r2-again: place 2") && err.contains("a replay or a fork"),
            "{err}"
        );
        // The next place, not after the last statement: a fork.
        let err = chains
            .follow(&keys, &line("r3"), &envelope(3, "h1"), "h3".into())
            .expect_err("a fork");
        assert!(
            err.contains("does not follow result r2 at place 2"),
            "{err}"
        );
        // Places 3 to 5 missing: kept, named with the results on either side.
        chains
            .follow(&keys, &line("r6"), &envelope(6, "h5"), "h6".into())
            .expect("a gap is no failure");
        assert_eq!(
            chains.gaps,
            vec![Gap {
                agent: "a1".into(),
                places: (3, 5),
                between: ("result r2".into(), "result r6".into()),
            }]
        );
        assert_eq!(
            chains.gaps[0].to_string(),
            "agent a1: 3 results missing from its chain (places 3–5), between result r2 and result r6"
        );
    }
}
