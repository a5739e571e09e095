//! The transparency log's hashing, kept alike by every backend. Hashing is RFC 6962's
//! (a leaf hashes as SHA-256(0x00 ‖ bytes), a node as SHA-256(0x01 ‖ left ‖ right)), so
//! a root, an inclusion proof or a consistency proof checks with any RFC 6962 / 9162
//! verifier. The tree is kept as Go's `sumdb/tlog` keeps it, through `tlog_tiles`
//! (Cloudflare's port, which also writes C2SP checkpoints): each appended leaf stores
//! its hash and the hashes of the subtrees it completes (just under two a leaf), so the
//! root and the proofs of any size the log ever had are read back from stored hashes,
//! never recomputed from the leaves.

use crate::StoreError;
use std::cell::RefCell;
pub use tlog_tiles::{record_hash as leaf_hash, Hash, EMPTY_HASH};

/// Reads stored hashes by index, in the order asked.
pub type Read<'a> = &'a dyn Fn(&[u64]) -> Result<Vec<Hash>, StoreError>;

/// `tlog_tiles`' reader over a backend's, keeping the backend's error.
struct Reader<'a> {
    read: Read<'a>,
    failed: RefCell<Option<StoreError>>,
}

impl tlog_tiles::HashReader for Reader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        match (self.read)(indexes) {
            Ok(h) if h.len() == indexes.len() => Ok(h),
            Ok(_) => Err(tlog_tiles::Error::IndexesNotInTree),
            Err(e) => {
                *self.failed.borrow_mut() = Some(e);
                Err(tlog_tiles::Error::IndexesNotInTree)
            }
        }
    }
}

/// Runs `f` with a reader over `read`; a failure names the backend's error when it
/// was one.
fn with<T>(
    read: Read<'_>,
    what: &str,
    f: impl FnOnce(&Reader<'_>) -> Result<T, tlog_tiles::Error>,
) -> Result<T, StoreError> {
    let r = Reader {
        read,
        failed: RefCell::new(None),
    };
    f(&r).map_err(|e| match r.failed.into_inner() {
        Some(backend) => backend,
        None => StoreError::Backend(format!("transparency log, {what}: {e}")),
    })
}

/// Appending leaf `n` (the log holds `n` leaves) with `bytes`: the hashes to store and
/// the index of the first (the others follow it).
pub fn append(n: u64, bytes: &[u8], read: Read<'_>) -> Result<(u64, Vec<Hash>), StoreError> {
    let hashes = with(read, "appending", |r| {
        tlog_tiles::stored_hashes(n, bytes, r)
    })?;
    Ok((tlog_tiles::stored_hash_index(0, n), hashes))
}

/// The root hash of the first `size` leaves.
pub fn root(size: u64, read: Read<'_>) -> Result<Hash, StoreError> {
    with(read, "root", |r| tlog_tiles::tree_hash(size, r))
}

/// The proof that leaf `index` is in the tree of the first `size` leaves.
pub fn inclusion(index: u64, size: u64, read: Read<'_>) -> Result<Vec<Hash>, StoreError> {
    if index >= size {
        return Err(StoreError::Backend(format!(
            "leaf {index} is not in a tree of {size} leaves"
        )));
    }
    with(read, "inclusion proof", |r| {
        tlog_tiles::prove_record(size, index, r)
    })
}

/// The proof that the tree of the first `from` leaves is a prefix of the tree of the
/// first `to`.
pub fn consistency(from: u64, to: u64, read: Read<'_>) -> Result<Vec<Hash>, StoreError> {
    if from > to {
        return Err(StoreError::Backend(format!(
            "a tree of {from} leaves cannot be a prefix of one of {to}"
        )));
    }
    with(read, "consistency proof", |r| {
        tlog_tiles::prove_tree(to, from, r)
    })
}

/// Whether `proof` shows the leaf hashing to `leaf` at `index` in the tree of `size`
/// leaves whose root is `root`.
pub fn check_inclusion(proof: &[Hash], size: u64, root: Hash, index: u64, leaf: Hash) -> bool {
    tlog_tiles::check_record(&proof.to_vec(), size, root, index, leaf).is_ok()
}

/// The proof that the leaves at `indexes` (ascending, distinct, each below `size`)
/// are all in the tree of the first `size` leaves: walking the tree as RFC 6962's MTH
/// splits it, the hash of every largest subtree that holds none of them, in the order
/// met. With the leaves' own hashes these give the root ([`check_batch`]). It replaces
/// one audit path per leaf: a subtree shared by many leaves' paths is sent once, and
/// the neighbouring leaves of a report need no hash at all.
pub fn batch_inclusion(
    indexes: &[u64],
    size: u64,
    read: Read<'_>,
) -> Result<Vec<Hash>, StoreError> {
    if indexes.windows(2).any(|w| w[0] >= w[1]) || indexes.last().is_some_and(|&i| i >= size) {
        return Err(StoreError::Backend(format!(
            "a batch proof needs ascending leaves below {size}"
        )));
    }
    let mut out = Vec::new();
    let mut spans = Vec::new();
    batch_spans(0, size, indexes, &mut spans);
    for (lo, hi) in spans {
        let need = tlog_tiles::sub_tree_index(lo, hi, Vec::new());
        let hashes = read(&need)?;
        if hashes.len() != need.len() {
            return Err(StoreError::Backend(format!(
                "transparency log: hashes of leaves {lo}..{hi} missing"
            )));
        }
        // The stored hashes are the subtree's perfect parts, left to right: the
        // rightmost joins its left neighbour first, as MTH's split does.
        let mut parts = hashes.into_iter().rev();
        let last = parts.next().unwrap_or(EMPTY_HASH);
        out.push(parts.fold(last, |right, left| tlog_tiles::node_hash(left, right)));
    }
    Ok(out)
}

/// The subtrees of `[lo, hi)` holding none of `indexes` (those in `[lo, hi)`,
/// ascending), in MTH's walk order.
fn batch_spans(lo: u64, hi: u64, indexes: &[u64], out: &mut Vec<(u64, u64)>) {
    if indexes.is_empty() {
        out.push((lo, hi));
        return;
    }
    if hi - lo == 1 {
        return;
    }
    let k = split(hi - lo);
    let cut = indexes.partition_point(|&i| i < lo + k);
    batch_spans(lo, lo + k, &indexes[..cut], out);
    batch_spans(lo + k, hi, &indexes[cut..], out);
}

/// MTH's split of `n > 1` leaves: the largest power of two below `n`.
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// Whether `proof` ([`batch_inclusion`]) shows the `leaves` (index and leaf hash,
/// ascending by index) all to be in the tree of `size` leaves whose root is `root`.
/// Every leaf and every hash of the proof must be used, once.
pub fn check_batch(proof: &[Hash], size: u64, root: Hash, leaves: &[(u64, Hash)]) -> bool {
    if leaves.is_empty()
        || leaves.windows(2).any(|w| w[0].0 >= w[1].0)
        || leaves.last().is_some_and(|l| l.0 >= size)
    {
        return false;
    }
    let mut hashes = proof.iter();
    let got = batch_root(0, size, leaves, &mut hashes);
    got == Some(root) && hashes.next().is_none()
}

/// The hash of `[lo, hi)` from the `leaves` in it and the proof's next hashes.
fn batch_root(
    lo: u64,
    hi: u64,
    leaves: &[(u64, Hash)],
    proof: &mut std::slice::Iter<'_, Hash>,
) -> Option<Hash> {
    if leaves.is_empty() {
        return proof.next().copied();
    }
    if hi - lo == 1 {
        return Some(leaves[0].1);
    }
    let k = split(hi - lo);
    let cut = leaves.partition_point(|l| l.0 < lo + k);
    let left = batch_root(lo, lo + k, &leaves[..cut], proof)?;
    let right = batch_root(lo + k, hi, &leaves[cut..], proof)?;
    Some(tlog_tiles::node_hash(left, right))
}

/// Whether `proof` shows the tree (`from`, `old`) to be a prefix of (`to`, `new`).
pub fn check_consistency(proof: &[Hash], from: u64, old: Hash, to: u64, new: Hash) -> bool {
    tlog_tiles::check_tree(&proof.to_vec(), to, new, from, old).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A log in memory: `leaves` appended, its stored hashes by index.
    fn build(leaves: u64) -> HashMap<u64, Hash> {
        let store = RefCell::new(HashMap::new());
        for n in 0..leaves {
            let read = |i: &[u64]| -> Result<Vec<Hash>, StoreError> {
                let s = store.borrow();
                Ok(i.iter().filter_map(|i| s.get(i).copied()).collect())
            };
            let (first, hashes) = append(n, format!("leaf {n}").as_bytes(), &read).expect("append");
            let mut s = store.borrow_mut();
            for (k, h) in hashes.into_iter().enumerate() {
                s.insert(first + k as u64, h);
            }
        }
        store.into_inner()
    }

    /// RFC 6962's MTH, from the leaves, for the reference.
    fn mth(leaves: &[Vec<u8>]) -> Hash {
        use sha2::Digest as _;
        match leaves.len() {
            0 => EMPTY_HASH,
            1 => leaf_hash(&leaves[0]),
            n => {
                let k = n.next_power_of_two() / 2;
                let mut h = sha2::Sha256::new();
                h.update([1u8]);
                h.update(mth(&leaves[..k]).0);
                h.update(mth(&leaves[k..]).0);
                Hash(h.finalize().into())
            }
        }
    }

    #[test]
    fn roots_are_rfc_6962_and_proofs_check_for_every_size() {
        let stored = build(37);
        let read = |i: &[u64]| -> Result<Vec<Hash>, StoreError> {
            i.iter()
                .map(|i| {
                    stored
                        .get(i)
                        .copied()
                        .ok_or(StoreError::Backend("gone".into()))
                })
                .collect()
        };
        let leaves: Vec<Vec<u8>> = (0..37).map(|n| format!("leaf {n}").into_bytes()).collect();
        for size in 1..=37u64 {
            let r = root(size, &read).expect("root");
            assert_eq!(r, mth(&leaves[..size as usize]), "size {size}");
            for index in [0, size / 2, size - 1] {
                let p = inclusion(index, size, &read).expect("inclusion");
                let leaf = leaf_hash(&leaves[index as usize]);
                assert!(check_inclusion(&p, size, r, index, leaf));
                let other = leaf_hash(b"an edited leaf");
                assert!(!check_inclusion(&p, size, r, index, other));
            }
            for from in [1, size / 3, size] {
                let old = root(from.max(1), &read).expect("old root");
                let p = consistency(from.max(1), size, &read).expect("consistency");
                assert!(check_consistency(&p, from.max(1), old, size, r));
                let forged = leaf_hash(b"another history");
                assert!(!check_consistency(&p, from.max(1), forged, size, r));
            }
        }
        assert!(inclusion(5, 5, &read).is_err());
        // Batch proofs: every subset pattern checks, and any change is caught.
        for size in 1..=37u64 {
            let r = root(size, &read).expect("root");
            for pattern in [1u64, 3, 5, 0b1011, 0xffff_ffff, 0x5555_5555, 1 << 36] {
                let idx: Vec<u64> = (0..size).filter(|i| pattern >> (i % 37) & 1 == 1).collect();
                if idx.is_empty() {
                    continue;
                }
                let p = batch_inclusion(&idx, size, &read).expect("batch");
                let mut leaves: Vec<(u64, Hash)> = idx
                    .iter()
                    .map(|&i| (i, leaf_hash(&leaves[i as usize])))
                    .collect();
                assert!(check_batch(&p, size, r, &leaves), "size {size} {idx:?}");
                // No longer than the audit paths it replaces.
                let paths: usize = idx
                    .iter()
                    .map(|&i| inclusion(i, size, &read).expect("path").len())
                    .sum();
                assert!(p.len() <= paths);
                let mut longer = p.clone();
                longer.push(r);
                assert!(!check_batch(&longer, size, r, &leaves));
                leaves[0].1 = leaf_hash(b"an edited leaf");
                assert!(!check_batch(&p, size, r, &leaves), "edited, size {size}");
                if leaves.len() > 1 {
                    leaves.remove(0);
                    assert!(!check_batch(&p, size, r, &leaves), "dropped, size {size}");
                }
            }
        }
        assert!(batch_inclusion(&[3, 2], 5, &read).is_err());
        assert!(batch_inclusion(&[5], 5, &read).is_err());
        assert!(consistency(6, 5, &read).is_err());
    }
}
