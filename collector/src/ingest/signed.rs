//! An upload's signatures, checked before anything of it is stored
//! (docs/METHODOLOGY.md §7.6): the key is the one recorded for the agent the TLS
//! identity names (the first signed upload records it), every result's envelope is
//! signed by it over the result's exact bytes, and the envelopes continue the agent's
//! chain. A bad signature, another key, a place of the chain taken by another result
//! (a replay or a fork) or a result that does not follow its predecessor refuses the
//! whole upload with its reason; a gap (places that never arrived) is accepted, kept
//! and counted, since a lost result must show. A key rotation, signed by the key it
//! retires and chained like a result, changes the key for the places after it.

use ring::signature::{UnparsedPublicKey, ED25519};
use sonde_proto::wire::{hex, unhex, Envelope, RawRecord, RejectReason, Rotation, Signatures};
use sonde_store::{Signed, Store};

/// Why an upload's signatures are refused: the reason sent and counted, and a line.
pub type Refusal = (RejectReason, String);

/// SHA-256, hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// The statement's SHA-256 when `e` is the agent's signature of the record whose
/// RFC 6962 leaf hash is `leaf_hash` (hex).
pub fn verify(public: &[u8], e: &Envelope, leaf_hash: &str) -> Option<String> {
    let statement = Envelope::statement(e.seq, &e.prev, leaf_hash);
    let sig = unhex(&e.sig)?;
    UnparsedPublicKey::new(&ED25519, public)
        .verify(statement.as_bytes(), &sig)
        .ok()?;
    Some(sha256(statement.as_bytes()))
}

/// One signature to check: the public key, the signed bytes, the signature.
pub type Claim = (Vec<u8>, String, Vec<u8>);

/// Signatures checked together, 256 at a time (Ed25519 batch verification: here about
/// a fifth of the cost of one by one, and the larger the batch the cheaper, up to a few
/// hundred); a batch that fails is checked one by one, so the first bad one is found.
/// Its index, or none when every one checks.
pub fn first_bad(claims: &[Claim]) -> Option<usize> {
    const BATCH: usize = 256;
    for (c, chunk) in claims.chunks(BATCH).enumerate() {
        if batch_checks(chunk) {
            continue;
        }
        let bad = chunk.iter().position(|(key, message, sig)| {
            UnparsedPublicKey::new(&ED25519, key)
                .verify(message.as_bytes(), sig)
                .is_err()
        });
        // A batch refused whose every signature checks alone: the first is named.
        return Some(c * BATCH + bad.unwrap_or(0));
    }
    None
}

/// Whether every claim of `chunk` checks, in one batch verification.
fn batch_checks(chunk: &[Claim]) -> bool {
    let keys: Option<Vec<ed25519_dalek::VerifyingKey>> = chunk
        .iter()
        .map(|(k, _, _)| {
            let k: &[u8; 32] = k.as_slice().try_into().ok()?;
            ed25519_dalek::VerifyingKey::from_bytes(k).ok()
        })
        .collect();
    let sigs: Option<Vec<ed25519_dalek::Signature>> = chunk
        .iter()
        .map(|(_, _, s)| ed25519_dalek::Signature::from_slice(s).ok())
        .collect();
    let messages: Vec<&[u8]> = chunk.iter().map(|(_, m, _)| m.as_bytes()).collect();
    match (keys, sigs) {
        (Some(keys), Some(sigs)) => ed25519_dalek::verify_batch(&messages, &sigs, &keys).is_ok(),
        _ => false,
    }
}

/// The statement's SHA-256 when `r` is signed by the key it retires.
pub fn verify_rotation(r: &Rotation) -> Option<String> {
    let statement = Rotation::statement(r.seq, &r.prev, &r.from, &r.to);
    let public = public_key(&r.from)?;
    let sig = unhex(&r.sig)?;
    UnparsedPublicKey::new(&ED25519, &public)
        .verify(statement.as_bytes(), &sig)
        .ok()?;
    Some(sha256(statement.as_bytes()))
}

/// The 32 bytes of a key written `ed25519 <hex>`.
pub fn public_key(text: &str) -> Option<Vec<u8>> {
    text.strip_prefix("ed25519 ")
        .and_then(unhex)
        .filter(|k| k.len() == 32)
}

/// An agent's chain as an upload continues it.
struct Chain<'a> {
    store: &'a dyn Store,
    agent_id: &'a str,
    /// The last place and its statement's SHA-256.
    head: (u64, String),
    /// The key in force, as text and bytes.
    key: (String, Vec<u8>),
    gaps: Vec<(u64, u64)>,
    rotations: Vec<Rotation>,
}

impl Chain<'_> {
    /// Takes place `seq`, whose statement names `prev` and hashes to `statement`.
    fn take(&mut self, what: &str, seq: u64, prev: &str, statement: String) -> Result<(), Refusal> {
        let (last, hash) = &self.head;
        if seq == last + 1 && prev != hash {
            return Err((
                RejectReason::ChainBroken,
                format!("{what} (place {seq}) does not follow the statement at place {last}: the chain forks"),
            ));
        }
        if seq > last + 1 {
            self.gaps.push((last + 1, seq - 1));
        }
        self.head = (seq, statement);
        Ok(())
    }

    /// Applies a key rotation; one already stored (sent again) is skipped.
    fn rotate(&mut self, r: &Rotation) -> Result<(), Refusal> {
        let unavailable = |e: sonde_store::StoreError| (RejectReason::Unavailable, e.to_string());
        if r.seq <= self.head.0 {
            let stored = self
                .store
                .key_rotations(Some(self.agent_id))
                .map_err(unavailable)?;
            if stored.iter().any(|(_, s)| s == r) {
                return Ok(());
            }
            return Err((
                RejectReason::ChainBroken,
                format!("a key rotation claims place {} of the chain, which an earlier statement holds: a replay or a fork", r.seq),
            ));
        }
        if r.from != self.key.0 {
            return Err((
                RejectReason::KeyMismatch,
                format!(
                    "a key rotation at place {} retires another key than the one in force for {}",
                    r.seq, self.agent_id
                ),
            ));
        }
        let to = public_key(&r.to).ok_or_else(|| {
            (
                RejectReason::BadSignature,
                format!(
                    "the rotation at place {} names {:?}, not an ed25519 key",
                    r.seq, r.to
                ),
            )
        })?;
        let statement = verify_rotation(r).ok_or_else(|| {
            (
                RejectReason::BadSignature,
                format!(
                    "the key rotation at place {} is not signed by the key it retires",
                    r.seq
                ),
            )
        })?;
        self.take("a key rotation", r.seq, &r.prev, statement)?;
        self.key = (r.to.clone(), to);
        self.rotations.push(r.clone());
        Ok(())
    }
}

/// The agent's chain as the store holds it, and the key in force before the upload's
/// new rotations: recorded now when the agent never signed before (its TLS identity
/// vouches for it), refused when it is another key than the one recorded.
fn open_chain<'a>(
    store: &'a dyn Store,
    agent_id: &'a str,
    signatures: &Signatures,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Chain<'a>, Refusal> {
    let bad = |why: String| (RejectReason::BadSignature, why);
    let unavailable = |e: sonde_store::StoreError| (RejectReason::Unavailable, e.to_string());
    if public_key(&signatures.key).is_none() {
        return Err(bad(format!(
            "{:?} is not an ed25519 public key",
            signatures.key
        )));
    }
    let head = store
        .chain_head(agent_id)
        .map_err(unavailable)?
        .unwrap_or((0, Envelope::GENESIS.to_string()));
    // The key before this upload's new rotations: the first signed upload records it.
    let before = signatures
        .rotations
        .iter()
        .find(|r| r.seq > head.0)
        .map_or(&signatures.key, |r| &r.from);
    let recorded = store
        .register_signing_key(agent_id, before, now)
        .map_err(unavailable)?;
    if recorded != *before {
        return Err((
            RejectReason::KeyMismatch,
            format!("signed with another key than the one recorded for {agent_id}"),
        ));
    }
    let public = public_key(&recorded).ok_or_else(|| {
        bad(format!(
            "the key recorded for {agent_id} is not an ed25519 key"
        ))
    })?;
    Ok(Chain {
        store,
        agent_id,
        head,
        key: (recorded, public),
        gaps: Vec::new(),
        rotations: Vec::new(),
    })
}

/// Checks `signatures` of `results` (ids `ids`) from `agent_id`, and the key rotations
/// they carry, in place order; what the batch stores.
pub fn check(
    store: &dyn Store,
    agent_id: &str,
    results: &[RawRecord],
    ids: &[uuid::Uuid],
    signatures: &Signatures,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Signed, Refusal> {
    let bad = |why: String| (RejectReason::BadSignature, why);
    let unavailable = |e: sonde_store::StoreError| (RejectReason::Unavailable, e.to_string());
    if signatures.envelopes.len() != results.len() {
        return Err(bad(format!(
            "{} signatures for {} results",
            signatures.envelopes.len(),
            results.len()
        )));
    }
    let mut chain = open_chain(store, agent_id, signatures, now)?;
    let mut rotations = signatures.rotations.iter().peekable();
    let mut claims: Vec<Claim> = Vec::with_capacity(results.len());
    for ((e, raw), id) in signatures.envelopes.iter().zip(results).zip(ids) {
        while let Some(r) = rotations.next_if(|r| r.seq < e.seq) {
            chain.rotate(r)?;
        }
        let leaf = hex(&sonde_store::log::leaf_hash(raw.as_str().as_bytes()).0);
        let text = Envelope::statement(e.seq, &e.prev, &leaf);
        let statement = sha256(text.as_bytes());
        let sig =
            unhex(&e.sig).ok_or_else(|| bad(format!("result {id}: its signature is not hex")))?;
        claims.push((chain.key.1.clone(), text, sig));
        if e.seq <= chain.head.0 {
            // Sent again after a lost acknowledgement: it is stored already.
            if store
                .log_leaf(&id.to_string())
                .map_err(unavailable)?
                .is_some()
            {
                continue;
            }
            return Err((
                RejectReason::ChainBroken,
                format!("result {id} claims place {} of the chain, which an earlier result holds: a replay or a fork", e.seq),
            ));
        }
        chain.take(&format!("result {id}"), e.seq, &e.prev, statement)?;
    }
    for r in rotations {
        chain.rotate(r)?;
    }
    if let Some(i) = first_bad(&claims) {
        let (id, e) = (&ids[i], &signatures.envelopes[i]);
        return Err(bad(format!(
            "result {id}: the signature does not match its bytes and place {}",
            e.seq
        )));
    }
    if chain.key.0 != signatures.key {
        return Err((
            RejectReason::KeyMismatch,
            format!(
                "the upload names another key than the one its rotations lead to for {agent_id}"
            ),
        ));
    }
    Ok(Signed {
        envelopes: signatures.envelopes.clone(),
        head: chain.head,
        gaps: chain.gaps,
        rotations: chain.rotations,
        key: chain.key.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    #[test]
    fn batches_of_signatures_check_and_the_first_bad_one_is_named() {
        let doc = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).expect("key");
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).expect("pair");
        let public = pair.public_key().as_ref().to_vec();
        let mut claims: Vec<Claim> = (0..300)
            .map(|i| {
                let m = format!("sonde-result/1\n{i}\n");
                let sig = pair.sign(m.as_bytes()).as_ref().to_vec();
                (public.clone(), m, sig)
            })
            .collect();
        assert_eq!(first_bad(&claims), None);
        assert_eq!(first_bad(&[]), None);
        claims[280].1.push('x');
        assert_eq!(first_bad(&claims), Some(280), "a changed message");
        claims[280].1.pop();
        claims[3].2[0] ^= 1;
        assert_eq!(first_bad(&claims), Some(3), "a changed signature");
        claims[3].2[0] ^= 1;
        claims[70].0 = vec![7; 32];
        assert_eq!(first_bad(&claims), Some(70), "another key");
    }
}
