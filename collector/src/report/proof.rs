//! A report's proof that its results are the ones the collector logged: the checkpoint
//! the report was built on (`STEM.checkpoint`, a signed note: a fresh one is signed
//! when the report is written) and, for every stored result of the report's scope, one
//! line of `STEM.proofs.jsonl`: its id, its leaf, the hash of its stored bytes and the
//! inclusion proof of that leaf in the checkpoint's tree. Both files are listed in the
//! signed manifest. [`check`] is what `report verify` runs on them, offline, with the
//! collector's public key.

use crate::log::{self as tlog, CheckpointKey};
use serde::{Deserialize, Serialize};
use sonde_store::log::{self, Hash};
use sonde_store::{ReportScope, Store, StoreError};
use std::collections::HashMap;
use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};

/// Suffix of the checkpoint's file name.
pub const CHECKPOINT_SUFFIX: &str = ".checkpoint";
/// Suffix of the proofs' file name.
pub const PROOFS_SUFFIX: &str = ".proofs.jsonl";

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
}

/// The proof files written.
#[derive(Debug)]
pub struct Written {
    /// `STEM.checkpoint`.
    pub checkpoint: PathBuf,
    /// `STEM.proofs.jsonl`.
    pub proofs: PathBuf,
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
    store.log_leaves_in(scope, &mut |id, leaf, bytes| {
        if leaf >= size {
            return Ok(());
        }
        let hash = log::leaf_hash(bytes.as_bytes());
        let proof = log::inclusion(leaf, size, &read)?;
        if !log::check_inclusion(&proof, size, root, leaf, hash) {
            contradicted.push(id.to_string());
        }
        let line = Line {
            id: id.to_string(),
            leaf,
            leaf_hash: hash.to_string(),
            proof: proof.iter().map(ToString::to_string).collect(),
        };
        let text = serde_json::to_string(&line).map_err(|e| StoreError::Backend(e.to_string()))?;
        writeln!(out, "{text}").map_err(|e| StoreError::Backend(e.to_string()))?;
        results += 1;
        Ok(())
    })?;
    out.flush().map_err(io(&proofs))?;
    Ok(Some(Written {
        checkpoint,
        proofs,
        results,
        contradicted,
    }))
}

/// What [`check`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// Leaves of the checkpoint.
    pub size: u64,
    /// Its root, base64.
    pub root: String,
    /// Results whose proof checked.
    pub results: u64,
}

/// Checks a report's checkpoint (signed by `public`), every proof line against it and,
/// with the report's raw results (`raw`, CSV), that each of their results has a proof;
/// says which result fails and why.
pub fn check(
    checkpoint: &Path,
    proofs: &Path,
    raw: Option<&Path>,
    public: &[u8],
) -> Result<Checked, String> {
    let note = std::fs::read_to_string(checkpoint)
        .map_err(|e| format!("{}: {e}", checkpoint.display()))?;
    let cp = tlog::open_checkpoint(&note, public)
        .map_err(|e| format!("{}: {e}", checkpoint.display()))?;
    let file = std::fs::File::open(proofs).map_err(|e| format!("{}: {e}", proofs.display()))?;
    let name = proofs.display();
    let mut proven = std::collections::HashSet::new();
    for (n, text) in std::io::BufReader::new(file).lines().enumerate() {
        let text = text.map_err(|e| format!("{name}: {e}"))?;
        let at = n + 1;
        let line: Line = serde_json::from_str(&text)
            .map_err(|e| format!("{name}:{at}: not a proof line: {e}"))?;
        let hash = |s: &str| {
            Hash::parse_hash(s).map_err(|_| format!("{name}:{at}: {s:?} is not a base64 hash"))
        };
        let leaf = hash(&line.leaf_hash)?;
        let proof = line
            .proof
            .iter()
            .map(|h| hash(h))
            .collect::<Result<Vec<_>, _>>()?;
        if !log::check_inclusion(&proof, cp.size, cp.root, line.leaf, leaf) {
            return Err(format!(
                "{name}:{at}: result {} (leaf {}) is not in the checkpoint's log of {} leaves: its bytes are not those the log holds (edited after it was stored), or the proof was altered",
                line.id, line.leaf, cp.size
            ));
        }
        proven.insert(line.id);
    }
    if let Some(raw) = raw {
        every_result_proven(raw, &proven)?;
    }
    Ok(Checked {
        size: cp.size,
        root: cp.root.to_string(),
        results: proven.len() as u64,
    })
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
