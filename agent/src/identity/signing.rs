//! The agent's signing key: Ed25519, made on the box (at enrolment, or at the first
//! start of an agent enrolled before signing existed), kept in the state directory
//! (mode 0600), never sent anywhere but its public half.
//!
//! It is not the TLS key. The TLS key proves who connects and is replaced with its
//! certificate; the signing key proves who measured, over the life of the evidence, so
//! it is kept apart, and a stolen connection (or a renewed certificate) does not touch
//! it. Ed25519 signatures are deterministic and cheap to check by the million in a
//! regulator's `report verify`.

use crate::state::files::write_atomic;
use ring::signature::{Ed25519KeyPair, KeyPair};
use sonde_proto::wire::{hex, Envelope, Rotation};
use std::path::Path;

/// The signing key's file in the state directory (PKCS#8, mode 0600).
pub const SIGNING_KEY_FILE: &str = "signing-key.pk8";

/// Why the signing key could not be made or read: the file and the reason.
#[derive(Debug, thiserror::Error)]
#[error("signing key {0}")]
pub struct SigningError(pub String);

/// The agent's signing key.
#[derive(Debug)]
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// Loads `dir/signing-key.pk8`, making it when there is none.
    pub fn load_or_create(dir: &Path) -> Result<SigningKey, SigningError> {
        let path = dir.join(SIGNING_KEY_FILE);
        if !path.exists() {
            return SigningKey::create(&path);
        }
        SigningKey::load(&path)
    }

    /// Makes a new key in `path` (mode 0600, written atomically).
    pub fn create(path: &Path) -> Result<SigningKey, SigningError> {
        let fail = |why: String| SigningError(format!("{}: {why}", path.display()));
        let doc = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .map_err(|_| fail("cannot make an Ed25519 key".into()))?;
        write_atomic(path, doc.as_ref(), 0o600).map_err(|e| SigningError(e.to_string()))?;
        SigningKey::load(path)
    }

    /// Reads the key in `path`.
    pub fn load(path: &Path) -> Result<SigningKey, SigningError> {
        let fail = |why: String| SigningError(format!("{}: {why}", path.display()));
        let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        let pair =
            Ed25519KeyPair::from_pkcs8(&bytes).map_err(|_| fail("not an Ed25519 key".into()))?;
        Ok(SigningKey { pair })
    }

    /// Signs the rotation to the key `to`, at place `seq` after the statement whose
    /// SHA-256 is `prev`; and the SHA-256 (hex) of its statement.
    pub fn sign_rotation(&self, seq: u64, prev: &str, to: &str) -> (Rotation, String) {
        let from = self.public_text();
        let statement = Rotation::statement(seq, prev, &from, to);
        let sig = hex(self.pair.sign(statement.as_bytes()).as_ref());
        let next = sha256(statement.as_bytes());
        (
            Rotation {
                seq,
                prev: prev.to_string(),
                from,
                to: to.to_string(),
                sig,
            },
            next,
        )
    }

    /// The public key as the collector records it: `ed25519 <64 hex digits>`.
    pub fn public_text(&self) -> String {
        format!("ed25519 {}", hex(self.pair.public_key().as_ref()))
    }

    /// The envelope of the record whose bytes are `record`, number `seq` of the chain,
    /// after the statement whose SHA-256 is `prev` (hex); and the SHA-256 (hex) of its
    /// own statement, the next one's `prev`.
    pub fn seal(&self, seq: u64, prev: &str, record: &[u8]) -> (Envelope, String) {
        self.seal_leaf(seq, prev, &leaf_hash(record))
    }

    /// Like [`SigningKey::seal`], for the record whose RFC 6962 leaf hash (hex) is
    /// `leaf`.
    pub fn seal_leaf(&self, seq: u64, prev: &str, leaf: &str) -> (Envelope, String) {
        let statement = Envelope::statement(seq, prev, leaf);
        let sig = hex(self.pair.sign(statement.as_bytes()).as_ref());
        let next = sha256(statement.as_bytes());
        (
            Envelope {
                seq,
                prev: prev.to_string(),
                sig,
            },
            next,
        )
    }
}

/// SHA-256, hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// The RFC 6962 leaf hash of a record's bytes (SHA-256 of 0x00 and them), hex.
pub fn leaf_hash(record: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&[0]);
    ctx.update(record);
    hex(ctx.finish().as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ED25519};

    #[test]
    fn a_key_is_made_once_kept_private_and_its_seals_chain_and_verify() {
        let dir = std::env::temp_dir().join(format!("sonde-signing-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let key = SigningKey::load_or_create(&dir).expect("made");
        let again = SigningKey::load_or_create(&dir).expect("loaded");
        assert_eq!(key.public_text(), again.public_text(), "made once");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join(SIGNING_KEY_FILE))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (first, h1) = key.seal(1, Envelope::GENESIS, b"{\"a\":1}");
        let (second, _) = key.seal(2, &h1, b"{\"a\":2}");
        assert_eq!(second.prev, h1);
        let public = &key.pair.public_key().as_ref().to_vec();
        let check = |e: &Envelope, record: &[u8]| {
            let statement = Envelope::statement(e.seq, &e.prev, &leaf_hash(record));
            let sig = sonde_proto::wire::unhex(&e.sig).expect("hex");
            UnparsedPublicKey::new(&ED25519, public)
                .verify(statement.as_bytes(), &sig)
                .is_ok()
        };
        assert!(check(&first, b"{\"a\":1}"));
        assert!(!check(&first, b"{\"a\":1} "), "one byte more");
        assert!(
            !check(
                &Envelope {
                    seq: 3,
                    ..second.clone()
                },
                b"{\"a\":2}"
            ),
            "another place"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
