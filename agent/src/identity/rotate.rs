//! Rotating the agent's signing key (docs/METHODOLOGY.md §7.6): a new key is made
//! beside the current one (`signing-key.next.pk8`), the spool records the rotation as
//! the chain's next place, signed by the key it retires, and the new key takes the
//! current one's file (the old one is kept as `signing-key.retired-PLACE.pk8`). A crash
//! at any step leaves either the old key and no rotation, or a rotation that
//! [`finish`] completes at the next start.

use super::signing::{SigningError, SigningKey, SIGNING_KEY_FILE};
use crate::state::spool::Spool;
use sonde_proto::wire::Rotation;
use std::path::Path;

/// The new key's file until the rotation is complete.
pub const NEXT_KEY_FILE: &str = "signing-key.next.pk8";

/// Retires the agent's signing key for a new one; the rotation recorded.
pub fn rotate(dir: &Path, spool: &mut Spool) -> Result<Rotation, SigningError> {
    finish(dir, spool)?;
    let old = SigningKey::load(&dir.join(SIGNING_KEY_FILE))?;
    let next = SigningKey::create(&dir.join(NEXT_KEY_FILE))?;
    let rotation = spool
        .rotate(&old, &next.public_text())
        .map_err(|e| SigningError(e.to_string()))?;
    finish(dir, spool)?;
    Ok(rotation)
}

/// Completes a rotation the spool recorded but whose key file was not moved yet, and
/// drops a new key the spool never recorded (a rotation interrupted before).
pub fn finish(dir: &Path, spool: &Spool) -> Result<(), SigningError> {
    sonde_cli::blocking::check("the signing key");
    let next = dir.join(NEXT_KEY_FILE);
    if !next.exists() {
        return Ok(());
    }
    let fail = |e: std::io::Error| SigningError(format!("{}: {e}", next.display()));
    let key = SigningKey::load(&next)?;
    let last = spool
        .last_rotation()
        .map_err(|e| SigningError(e.to_string()))?;
    match last {
        Some(r) if r.to == key.public_text() => {
            let current = dir.join(SIGNING_KEY_FILE);
            if current.exists() {
                let retired = dir.join(format!("signing-key.retired-{}.pk8", r.seq));
                std::fs::rename(&current, retired).map_err(fail)?;
            }
            std::fs::rename(&next, &current).map_err(fail)?;
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        }
        _ => std::fs::remove_file(&next).map_err(fail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ED25519};
    use sonde_proto::wire::{unhex, Envelope};

    fn public(text: &str) -> Vec<u8> {
        unhex(text.trim_start_matches("ed25519 ")).expect("hex")
    }

    #[test]
    fn a_rotation_is_signed_by_the_old_key_chained_and_the_new_key_signs_after_it() {
        let dir = std::env::temp_dir().join(format!("sonde-rotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let old = std::sync::Arc::new(SigningKey::load_or_create(&dir).expect("key"));
        let mut spool = Spool::open(&dir.join("spool.sqlite"), 100).expect("spool");
        spool.sign_with(old.clone());
        let mut r = sonde_proto::ResultRecord::schema_example();
        spool.push(&r).expect("push");
        let r1 = spool.peek(1).expect("peek")[0]
            .envelope
            .clone()
            .expect("signed");

        let rotation = rotate(&dir, &mut spool).expect("rotated");
        assert_eq!(
            (rotation.seq, rotation.from.clone()),
            (2, old.public_text())
        );
        let statement = Rotation::statement(2, &rotation.prev, &rotation.from, &rotation.to);
        let sig = unhex(&rotation.sig).expect("hex");
        UnparsedPublicKey::new(&ED25519, public(&old.public_text()))
            .verify(statement.as_bytes(), &sig)
            .expect("signed by the retired key");
        assert_eq!(
            rotation.prev,
            super::super::signing::sha256(
                Envelope::statement(
                    1,
                    &r1.prev,
                    &super::super::signing::leaf_hash(
                        spool.peek(1).expect("peek")[0].record.as_str().as_bytes()
                    )
                )
                .as_bytes()
            ),
            "it follows the first result"
        );
        let new = std::sync::Arc::new(SigningKey::load_or_create(&dir).expect("new key"));
        assert_eq!(new.public_text(), rotation.to, "the new key took the file");
        assert!(dir.join("signing-key.retired-2.pk8").exists());
        assert!(!dir.join(NEXT_KEY_FILE).exists());
        spool.sign_with(new.clone());
        r.id = uuid::Uuid::now_v7();
        spool.push(&r).expect("push");
        let e3 = spool.peek(2).expect("peek")[1]
            .envelope
            .clone()
            .expect("signed");
        assert_eq!(
            e3.seq, 3,
            "the result after the rotation takes the next place"
        );
        assert_eq!(
            spool.pending_rotations().expect("pending"),
            vec![rotation.clone()]
        );
        spool.rotations_sent(2).expect("sent");
        assert!(spool.pending_rotations().expect("pending").is_empty());

        // A new key the spool never recorded (a crash before the spool's commit) is
        // dropped; the current key stays.
        SigningKey::create(&dir.join(NEXT_KEY_FILE)).expect("stray");
        finish(&dir, &spool).expect("finish");
        assert!(!dir.join(NEXT_KEY_FILE).exists());
        assert_eq!(
            SigningKey::load_or_create(&dir).expect("key").public_text(),
            new.public_text()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
