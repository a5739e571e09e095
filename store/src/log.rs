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
        assert!(consistency(6, 5, &read).is_err());
    }
}
