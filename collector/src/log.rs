//! The transparency log of stored results, as the collector signs and serves it.
//!
//! The store appends every result it stores to the log ([`sonde_store::log`]: RFC 6962
//! hashing). Here, at a fixed cadence (`[log] checkpoint_every`, 60 s), the collector
//! signs a checkpoint of the log as it stands: a C2SP tlog-checkpoint (origin, size,
//! root hash) in a C2SP signed note, signed with the collector's Ed25519 report key
//! (the one `report key` prints, so a regulator trusts one key for reports and log).
//! The note's key name is the checkpoint's origin, `sonde-collector/<key id>`.
//! [`Monitor`] is the other side: what `sonde-collector log verify` runs to check that
//! a log never rewrites what it showed before.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use sonde_store::log::{self, Hash};
use sonde_store::{Store, StoreError};
use tlog_tiles::Checkpoint;

/// The collector's Ed25519 key, as checkpoints need it (the report key implements it).
pub trait CheckpointKey: Send + Sync {
    /// The public key's 32 bytes.
    fn public(&self) -> &[u8];
    /// Short id of the public key (hex), which names the log's origin.
    fn key_id(&self) -> String;
    /// Signs `message`.
    fn sign(&self, message: &[u8]) -> Vec<u8>;
}

/// The key checkpoints are signed with now: a rotation may replace it while the
/// collector runs.
pub trait CurrentSigner: Send + Sync {
    /// The key now, whole for one checkpoint.
    fn signer(&self) -> std::sync::Arc<dyn CheckpointKey>;
}

/// The algorithm byte of an Ed25519 key in a signed note.
const ED25519: u8 = 1;

/// The log's origin (first line of its checkpoints, and the note's key name).
pub fn origin(key_id: &str) -> String {
    format!("sonde-collector/{key_id}")
}

/// The note verifier key of `public` (an Ed25519 public key) under `name`, as C2SP
/// signed-note writes it: `name+hex key id+base64(0x01 ‖ key)`.
pub fn verifier_key(name: &str, public: &[u8]) -> String {
    let mut encoded = vec![ED25519];
    encoded.extend_from_slice(public);
    let id = signed_note::key_id(name, &encoded);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&encoded);
    format!("{name}+{id:08x}+{b64}")
}

/// The report key as a note signer.
struct NoteSigner<'a> {
    key: &'a dyn CheckpointKey,
    name: String,
    id: u32,
}

impl signed_note::Signer for NoteSigner<'_> {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(self.key.sign(msg))
    }
}

/// The signed note of a checkpoint of `size` leaves whose root is `root`.
pub fn sign_checkpoint(key: &dyn CheckpointKey, size: u64, root: Hash) -> Result<String, String> {
    let name = origin(&key.key_id());
    let mut encoded = vec![ED25519];
    encoded.extend_from_slice(key.public());
    let signer = NoteSigner {
        key,
        id: signed_note::key_id(&name, &encoded),
        name: name.clone(),
    };
    let text = Checkpoint::new(&name, size, root, "")
        .map_err(|e| format!("checkpoint: {e:?}"))?
        .to_bytes();
    let mut note = signed_note::Note::new(&text, &[]).map_err(|e| e.to_string())?;
    note.add_sigs(&[&signer]).map_err(|e| e.to_string())?;
    String::from_utf8(note.to_bytes()).map_err(|e| e.to_string())
}

/// A checkpoint whose signature checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// Leaves covered.
    pub size: u64,
    /// Root hash of those leaves.
    pub root: Hash,
    /// The note as received.
    pub note: String,
}

/// Reads a signed checkpoint and checks its signature with the collector's public key
/// (`public`, Ed25519); says what is wrong otherwise.
pub fn open_checkpoint(note: &str, public: &[u8]) -> Result<Checked, String> {
    let parsed = signed_note::Note::from_bytes(note.as_bytes())
        .map_err(|e| format!("not a signed note: {e}"))?;
    let cp = Checkpoint::from_bytes(parsed.text())
        .map_err(|_| "the note holds no C2SP checkpoint".to_string())?;
    let verifier = signed_note::StandardVerifier::new(&verifier_key(cp.origin(), public))
        .map_err(|e| format!("cannot make a verifier for {}: {e}", cp.origin()))?;
    let known = signed_note::VerifierList::new(vec![Box::new(verifier)]);
    parsed.verify(&known).map_err(|e| match e {
        signed_note::NoteError::UnverifiedNote => format!(
            "checkpoint of {}: not signed by the given key (signed by another key, or its origin is another log's)",
            cp.origin()
        ),
        other => format!("checkpoint of {}: {other}", cp.origin()),
    })?;
    Ok(Checked {
        size: cp.size(),
        root: *cp.hash(),
        note: note.to_string(),
    })
}

/// Signs and keeps a checkpoint of the log as it stands, when it grew since the last
/// one; returns its size then.
pub fn checkpoint(
    store: &dyn Store,
    key: &dyn CheckpointKey,
    now: DateTime<Utc>,
) -> Result<Option<u64>, StoreError> {
    let size = store.log_size()?;
    let last = store.latest_checkpoint()?.map(|(s, _)| s);
    if size == 0 || last == Some(size) {
        return Ok(None);
    }
    let root = log::root(size, &|i| store.log_hashes(i))?;
    let note = sign_checkpoint(key, size, root).map_err(StoreError::Backend)?;
    store.keep_checkpoint(size, &note, now)?;
    Ok(Some(size))
}

/// Makes a checkpoint every `every` while the collector runs (the first at once), when
/// `holder` (this collector) holds the job's lease: with several collectors on one
/// store, one signs at a time (another takes over once its lease, three periods, runs
/// out).
pub async fn checkpoints(
    store: std::sync::Arc<dyn Store>,
    key: std::sync::Arc<dyn CurrentSigner>,
    every: std::time::Duration,
    holder: String,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let hold = chrono::Duration::from_std(every * 3).unwrap_or(chrono::Duration::hours(3));
    loop {
        tick.tick().await;
        let (s, k, h) = (store.clone(), key.signer(), holder.clone());
        let work = move || {
            let now = Utc::now();
            if !s.lease("log-checkpoint", &h, now, now + hold)? {
                return Ok(None);
            }
            checkpoint(s.as_ref(), k.as_ref(), now)
        };
        match sonde_cli::blocking::run(work).await {
            Ok(Ok(Some(size))) => tracing::debug!(size, "transparency log checkpoint signed"),
            Ok(Ok(None)) | Err(_) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "transparency log checkpoint failed"),
        }
    }
}

/// What a monitor saw last: a checkpoint whose signature checked.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Seen {
    /// Leaves covered.
    pub size: u64,
    /// Root hash, base64.
    pub root: String,
    /// The signed note.
    pub note: String,
}

impl Seen {
    /// What a monitor keeps of `c`.
    pub fn of(c: &Checked) -> Seen {
        Seen {
            size: c.size,
            root: c.root.to_string(),
            note: c.note.clone(),
        }
    }
}

/// Whether the checkpoint `new` extends `seen` (the last one a monitor checked), given
/// the log's consistency proof from `seen.size` to `new.size` (needed only when the
/// log grew); says how history was rewritten otherwise.
pub fn extends(seen: &Seen, new: &Checked, proof: Option<&[Hash]>) -> Result<(), String> {
    let old_root = Hash::parse_hash(&seen.root)
        .map_err(|_| format!("the kept checkpoint's root {:?} is not a hash", seen.root))?;
    if new.size < seen.size {
        return Err(format!(
            "the log shrank from {} to {} leaves: it rewrote history",
            seen.size, new.size
        ));
    }
    if new.size == seen.size {
        return if new.root == old_root {
            Ok(())
        } else {
            Err(format!(
                "two checkpoints of {} leaves with different roots ({} then {}): the log rewrote history",
                new.size, seen.root, new.root
            ))
        };
    }
    let proof = proof.ok_or("no consistency proof")?;
    if log::check_consistency(proof, seen.size, old_root, new.size, new.root) {
        Ok(())
    } else {
        Err(format!(
            "the checkpoint of {} leaves does not extend the one of {} seen before (root {}): the log rewrote history",
            new.size, seen.size, seen.root
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sign::ReportKey;

    #[test]
    fn a_checkpoint_opens_with_its_key_only_and_names_what_is_wrong() {
        let dir = std::env::temp_dir().join(format!("sonde-log-key-{}", std::process::id()));
        let other = dir.join("other");
        let key = ReportKey::load_or_create(&dir).expect("key");
        let root = log::leaf_hash(b"one result");
        let note = sign_checkpoint(&key, 1, root).expect("signed");
        assert!(
            note.starts_with(&format!("{}\n1\n", origin(&key.key_id()))),
            "{note}"
        );
        let opened = open_checkpoint(&note, key.public()).expect("opens");
        assert_eq!((opened.size, opened.root), (1, root));
        let stranger = ReportKey::load_or_create(&other).expect("another key");
        let err = open_checkpoint(&note, stranger.public()).expect_err("another key");
        assert!(err.contains("not signed by the given key"), "{err}");
        let forged = note.replacen("\n1\n", "\n2\n", 1);
        let err = open_checkpoint(&forged, key.public()).expect_err("an edited size");
        assert!(
            err.contains("invalid signature") || err.contains("signature"),
            "{err}"
        );
        let err = open_checkpoint("hello\n", key.public()).expect_err("no note");
        assert!(err.contains("not a signed note"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
