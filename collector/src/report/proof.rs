//! A report's proof that its results are the ones the collector logged: the checkpoint
//! the report was built on (`STEM.checkpoint`, a signed note: a fresh one is signed
//! when the report is written) and, for every stored result of the report's scope, one
//! line of `STEM.proofs.jsonl`: its id, its leaf, the hash of its stored bytes and the
//! inclusion proof of that leaf in the checkpoint's tree. Both files are listed in the
//! signed manifest. [`check`] is what `report verify` runs on them, offline, with the
//! collector's public key.

use crate::log::{self as tlog, CheckpointKey};
use serde::{Deserialize, Serialize};
use sonde_proto::wire::{hex, Envelope};
use sonde_store::log::{self, Hash};
use sonde_store::{ReportScope, Store, StoreError};
use std::collections::HashMap;
use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};

/// Suffix of the checkpoint's file name.
pub const CHECKPOINT_SUFFIX: &str = ".checkpoint";
/// Suffix of the proofs' file name.
pub const PROOFS_SUFFIX: &str = ".proofs.jsonl";
/// Suffix of the agents' public keys' file name.
pub const AGENTS_SUFFIX: &str = ".agents.json";

/// One result's proof.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// The result's id.
    pub id: String,
    /// Its leaf in the log.
    pub leaf: u64,
    /// SHA-256 (RFC 6962 leaf hash) of its stored bytes, base64.
    pub leaf_hash: String,
    /// The inclusion proof in the checkpoint's tree, base64 hashes.
    pub proof: Vec<String>,
    /// The agent that delivered it.
    pub agent: String,
    /// Its agent's signature: its place in the agent's chain (absent: stored unsigned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<Envelope>,
}

/// The proof files written.
#[derive(Debug)]
pub struct Written {
    /// `STEM.checkpoint`.
    pub checkpoint: PathBuf,
    /// `STEM.proofs.jsonl`.
    pub proofs: PathBuf,
    /// `STEM.agents.json`: every agent's public signing key.
    pub agents: PathBuf,
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

/// Signs a checkpoint of the log as it stands and writes the proofs of `scope`'s
/// results against it beside the report (`dir/STEM.*`); nothing while the log is
/// empty.
pub fn write(
    store: &dyn Store,
    key: &dyn CheckpointKey,
    scope: &ReportScope,
    dir: &Path,
    stem: &str,
) -> Result<Option<Written>, ProofError> {
    tlog::checkpoint(store, key, chrono::Utc::now())?;
    let Some((size, note)) = store.latest_checkpoint()? else {
        return Ok(None);
    };
    let root = tlog::open_checkpoint(&note, key.public())
        .map_err(StoreError::Backend)?
        .root;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ProofError::Io { path, source }
    };
    let checkpoint = dir.join(format!("{stem}{CHECKPOINT_SUFFIX}"));
    std::fs::write(&checkpoint, &note).map_err(io(&checkpoint))?;
    let proofs = dir.join(format!("{stem}{PROOFS_SUFFIX}"));
    let file = std::fs::File::create(&proofs).map_err(io(&proofs))?;
    let mut out = std::io::BufWriter::new(file);
    // The upper levels of the tree serve every proof: read each stored hash once.
    let cache = std::cell::RefCell::new(HashMap::<u64, Hash>::new());
    let read = |indexes: &[u64]| -> Result<Vec<Hash>, StoreError> {
        let missing: Vec<u64> = {
            let c = cache.borrow();
            indexes
                .iter()
                .copied()
                .filter(|i| !c.contains_key(i))
                .collect()
        };
        if !missing.is_empty() {
            let got = store.log_hashes(&missing)?;
            cache.borrow_mut().extend(missing.into_iter().zip(got));
        }
        let c = cache.borrow();
        Ok(indexes.iter().map(|i| c[i]).collect())
    };
    let (mut results, mut contradicted) = (0u64, Vec::new());
    store.log_leaves_in(scope, &mut |l| {
        if l.leaf >= size {
            return Ok(());
        }
        let hash = log::leaf_hash(l.bytes.as_bytes());
        let proof = log::inclusion(l.leaf, size, &read)?;
        if !log::check_inclusion(&proof, size, root, l.leaf, hash) {
            contradicted.push(l.id.to_string());
        }
        let line = Line {
            id: l.id.to_string(),
            leaf: l.leaf,
            leaf_hash: hash.to_string(),
            proof: proof.iter().map(ToString::to_string).collect(),
            agent: l.agent_id.to_string(),
            envelope: l.envelope.and_then(|e| serde_json::from_str(e).ok()),
        };
        let text = serde_json::to_string(&line).map_err(|e| StoreError::Backend(e.to_string()))?;
        writeln!(out, "{text}").map_err(|e| StoreError::Backend(e.to_string()))?;
        results += 1;
        Ok(())
    })?;
    out.flush().map_err(io(&proofs))?;
    let agents = dir.join(format!("{stem}{AGENTS_SUFFIX}"));
    let keys: std::collections::BTreeMap<String, String> =
        store.signing_keys()?.into_iter().collect();
    let text = serde_json::to_string_pretty(&serde_json::json!({ "agents": keys }))
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    std::fs::write(&agents, text).map_err(io(&agents))?;
    Ok(Some(Written {
        checkpoint,
        proofs,
        agents,
        results,
        contradicted,
    }))
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
    /// Places missing between two of an agent's results in the report.
    pub gaps: u64,
}

/// The files a report's proof is in.
#[derive(Debug, Clone, Copy)]
pub struct Files<'a> {
    /// `STEM.checkpoint`.
    pub checkpoint: &'a Path,
    /// `STEM.proofs.jsonl`.
    pub proofs: &'a Path,
    /// `STEM.agents.json`, when the report has one.
    pub agents: Option<&'a Path>,
    /// `STEM.results.csv`, when the report has one.
    pub raw: Option<&'a Path>,
}

/// Checks a report's checkpoint (signed by `public`), every proof line against it,
/// every agent's signature and chain among the lines (with the keys the report ships)
/// and, with the raw results, that each of them has a proof; says which result fails
/// and why.
pub fn check(files: Files<'_>, public: &[u8]) -> Result<Checked, String> {
    let (checkpoint, proofs) = (files.checkpoint, files.proofs);
    let note = std::fs::read_to_string(checkpoint)
        .map_err(|e| format!("{}: {e}", checkpoint.display()))?;
    let cp = tlog::open_checkpoint(&note, public)
        .map_err(|e| format!("{}: {e}", checkpoint.display()))?;
    let keys = match files.agents {
        Some(p) => agent_keys(p)?,
        None => HashMap::new(),
    };
    let file = std::fs::File::open(proofs).map_err(|e| format!("{}: {e}", proofs.display()))?;
    let name = proofs.display();
    let mut proven = std::collections::HashSet::new();
    let mut chains = Chains::default();
    let mut out = Checked {
        size: cp.size,
        root: cp.root.to_string(),
        ..Checked::default()
    };
    for (n, text) in std::io::BufReader::new(file).lines().enumerate() {
        let text = text.map_err(|e| format!("{name}: {e}"))?;
        let at = format!("{name}:{}", n + 1);
        let line: Line =
            serde_json::from_str(&text).map_err(|e| format!("{at}: not a proof line: {e}"))?;
        let hash =
            |s: &str| Hash::parse_hash(s).map_err(|_| format!("{at}: {s:?} is not a base64 hash"));
        let leaf = hash(&line.leaf_hash)?;
        let proof = line
            .proof
            .iter()
            .map(|h| hash(h))
            .collect::<Result<Vec<_>, _>>()?;
        if !log::check_inclusion(&proof, cp.size, cp.root, line.leaf, leaf) {
            return Err(format!(
                "{at}: result {} (leaf {}) is not in the checkpoint's log of {} leaves: its bytes are not those the log holds (edited after it was stored), or the proof was altered",
                line.id, line.leaf, cp.size
            ));
        }
        if let Some(e) = &line.envelope {
            chains
                .follow(&keys, &line, e, &hex(&leaf.0))
                .map_err(|why| format!("{at}: {why}"))?;
            out.signed += 1;
        }
        proven.insert(line.id);
    }
    if let Some(raw) = files.raw {
        every_result_proven(raw, &proven)?;
    }
    out.results = proven.len() as u64;
    out.agents = chains.last.len() as u64;
    out.gaps = chains.gaps;
    Ok(out)
}

/// The agents' keys a report ships: agent id → Ed25519 public key.
fn agent_keys(path: &Path) -> Result<HashMap<String, Vec<u8>>, String> {
    let name = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    let doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{name}: not JSON: {e}"))?;
    let agents = doc["agents"]
        .as_object()
        .ok_or(format!("{name}: no agents"))?;
    agents
        .iter()
        .map(|(id, k)| {
            k.as_str()
                .and_then(|k| k.strip_prefix("ed25519 "))
                .and_then(sonde_proto::wire::unhex)
                .filter(|k| k.len() == 32)
                .map(|k| (id.clone(), k))
                .ok_or_else(|| format!("{name}: agent {id}: not an ed25519 key"))
        })
        .collect()
}

/// Each agent's chain as its results come in the report, in leaf order.
#[derive(Debug, Default)]
struct Chains {
    /// Agent → its last place seen and that statement's SHA-256.
    last: HashMap<String, (u64, String)>,
    /// Places missing between two of an agent's results.
    gaps: u64,
}

impl Chains {
    /// Checks the agent's signature of the line's result and that it continues the
    /// agent's chain.
    fn follow(
        &mut self,
        keys: &HashMap<String, Vec<u8>>,
        line: &Line,
        e: &Envelope,
        leaf_hex: &str,
    ) -> Result<(), String> {
        let (id, agent) = (&line.id, &line.agent);
        let key = keys.get(agent).ok_or_else(|| {
            format!("result {id} is signed, but the report has no key for agent {agent}")
        })?;
        let statement = crate::ingest::signed::verify(key, e, leaf_hex).ok_or_else(|| {
            format!(
                "result {id}: agent {agent}'s signature does not match its bytes and place {}",
                e.seq
            )
        })?;
        if let Some((seq, hash)) = self.last.get(agent) {
            if e.seq <= *seq {
                return Err(format!(
                    "result {id}: place {} of agent {agent}'s chain comes after place {seq}: a replay or a fork",
                    e.seq
                ));
            }
            if e.seq == seq + 1 && e.prev != *hash {
                return Err(format!(
                    "result {id} (place {} of agent {agent}'s chain) does not follow the result at place {seq}: the chain forks",
                    e.seq
                ));
            }
            self.gaps += e.seq - seq - 1;
        }
        self.last.insert(agent.clone(), (e.seq, statement));
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
