//! An upload's signatures, checked before anything of it is stored
//! (docs/METHODOLOGY.md §7.6): the key is the one recorded for the agent the TLS
//! identity names (the first signed upload records it), every result's envelope is
//! signed by it over the result's exact bytes, and the envelopes continue the agent's
//! chain. A bad signature, another key, a place of the chain taken by another result
//! (a replay or a fork) or a result that does not follow its predecessor refuses the
//! whole upload with its reason; a gap (places that never arrived) is accepted, kept
//! and counted, since a lost result must show.

use ring::signature::{UnparsedPublicKey, ED25519};
use sonde_proto::wire::{hex, unhex, Envelope, RawRecord, RejectReason, Signatures};
use sonde_store::{Signed, Store};

/// Why an upload's signatures are refused: the reason sent and counted, and a line.
pub type Refusal = (RejectReason, String);

/// SHA-256, hex.
fn sha256(bytes: &[u8]) -> String {
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

/// Checks `signatures` of `results` (ids `ids`) from `agent_id`; what the batch stores.
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
    let public = signatures
        .key
        .strip_prefix("ed25519 ")
        .and_then(unhex)
        .filter(|k| k.len() == 32)
        .ok_or_else(|| bad(format!("{:?} is not an ed25519 public key", signatures.key)))?;
    let recorded = store
        .register_signing_key(agent_id, &signatures.key, now)
        .map_err(unavailable)?;
    if recorded != signatures.key {
        return Err((
            RejectReason::KeyMismatch,
            format!("signed with another key than the one recorded for {agent_id}"),
        ));
    }
    let (mut seq, mut hash) = store
        .chain_head(agent_id)
        .map_err(unavailable)?
        .unwrap_or((0, Envelope::GENESIS.to_string()));
    let mut gaps = Vec::new();
    for ((e, raw), id) in signatures.envelopes.iter().zip(results).zip(ids) {
        let leaf = hex(&sonde_store::log::leaf_hash(raw.as_str().as_bytes()).0);
        let Some(statement) = verify(&public, e, &leaf) else {
            return Err(bad(format!(
                "result {id}: the signature does not match its bytes and place {}",
                e.seq
            )));
        };
        if e.seq <= seq {
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
        if e.seq == seq + 1 && e.prev != hash {
            return Err((
                RejectReason::ChainBroken,
                format!(
                    "result {id} (place {}) does not follow the result at place {seq}: the chain forks",
                    e.seq
                ),
            ));
        }
        if e.seq > seq + 1 {
            gaps.push((seq + 1, e.seq - 1));
        }
        (seq, hash) = (e.seq, statement);
    }
    Ok(Signed {
        envelopes: signatures.envelopes.clone(),
        head: (seq, hash),
        gaps,
    })
}
