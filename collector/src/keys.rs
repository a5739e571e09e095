//! The keys several collectors on one PostgreSQL store share: the CA (so an agent
//! enrolled through one is trusted by all) and the report key (so every report and log
//! checkpoint is signed by one key). They are kept in the database, sealed
//! (AES-256-GCM) by a seal key file every collector holds (`[store] seal_key`): the
//! database never holds a usable key, and a rotation made through one collector reaches
//! the others through the database.
//!
//! Without a seal key the keys are files in the collector's data directory
//! ([`Ca::load_or_create`], [`ReportKey::load_or_create`]).
//!
//! A sealed key is `MAGIC`, the seal key's id (8 bytes), a random 96-bit nonce, then
//! the key material encrypted and authenticated, with its name as associated data (so
//! one name's bytes cannot stand in for another's).

use crate::ca::{Ca, PkiError};
use crate::report::sign::{ReportKey, SignError};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use sonde_proto::wire::{hex, unhex};
use sonde_store::{SealedKeys, StoreError};
use std::path::{Path, PathBuf};

/// Name of the sealed CA (its key and certificate, PEM).
pub const CA: &str = "ca";
/// Name of the sealed report key (PKCS#8).
pub const REPORT_KEY: &str = "report-key";
/// First bytes of a sealed key.
const MAGIC: &[u8; 8] = b"sondeSK1";
const ID_LEN: usize = 8;

/// Why the shared keys could not be had; each names the file or the key concerned.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The seal key file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The seal key file does not hold a seal key.
    #[error("{0}: not a seal key (expected 64 hex digits: 32 random bytes)")]
    BadSealKey(PathBuf),
    /// The seal key file is missing while the database holds keys sealed by one.
    #[error(
        "{path}: no such seal key, and the database holds keys sealed by seal key {id}: \
         copy that file from a collector that has it (it is made only when the database \
         holds no sealed key)"
    )]
    MissingSealKey {
        /// The configured file.
        path: PathBuf,
        /// Id of the seal key the database's keys are sealed by.
        id: String,
    },
    /// The bytes kept under a name are not a sealed key.
    #[error("the database's {0:?} is not a sealed sonde key")]
    NotSealed(String),
    /// A key was sealed by another seal key than this collector's.
    #[error(
        "the database's {name:?} is sealed by seal key {found}, not by {path} (seal key \
         {ours}): copy the seal key file of the collectors already on this database"
    )]
    OtherSealKey {
        /// The key's name.
        name: String,
        /// Id of the seal key it was sealed by.
        found: String,
        /// This collector's seal key file.
        path: PathBuf,
        /// Its id.
        ours: String,
    },
    /// A sealed key does not open with the right seal key: its bytes were changed.
    #[error("the database's {0:?} does not open: altered in the database")]
    Altered(String),
    /// The store failed.
    #[error("the shared keys in the store: {0}")]
    Store(#[from] StoreError),
    /// The CA's material is not a CA.
    #[error("the collector's CA: {0}")]
    Pki(#[from] PkiError),
    /// The report key's material is not a report key.
    #[error("the report key: {0}")]
    Sign(#[from] SignError),
}

/// The key that seals the shared keys.
pub struct SealKey {
    key: LessSafeKey,
    id: [u8; ID_LEN],
    path: PathBuf,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealKey")
            .field("id", &self.id())
            .field("path", &self.path)
            .finish()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn id_of(key: &[u8]) -> [u8; ID_LEN] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"sonde seal key id\0");
    ctx.update(key);
    let mut id = [0; ID_LEN];
    id.copy_from_slice(&ctx.finish().as_ref()[..ID_LEN]);
    id
}

impl SealKey {
    /// The seal key of `bytes` (32), read from `path`.
    fn of(bytes: &[u8], path: &Path) -> Result<SealKey, KeyError> {
        let key = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| KeyError::BadSealKey(path.to_path_buf()))?;
        Ok(SealKey {
            key: LessSafeKey::new(key),
            id: id_of(bytes),
            path: path.to_path_buf(),
        })
    }

    /// Reads the seal key in `path`.
    pub fn load(path: &Path) -> Result<SealKey, KeyError> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let bytes = unhex(text.trim())
            .filter(|b| b.len() == AES_256_GCM.key_len())
            .ok_or_else(|| KeyError::BadSealKey(path.to_path_buf()))?;
        SealKey::of(&bytes, path)
    }

    /// Reads the seal key in `path`, checked to be the one every key `store` holds is
    /// sealed by (another one would seal the keys it does not hold yet apart from the
    /// others); when there is none, makes one there (mode 0600) if `store` holds no
    /// sealed key yet, and otherwise says which key to copy.
    pub fn load_or_create(path: &Path, store: &dyn SealedKeys) -> Result<SealKey, KeyError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        // The lock (a file beside it) only to make it: a seal key may be kept where
        // the collector cannot write, e.g. /etc/sonde.
        let _lock = match path.exists() {
            true => None,
            false => Some(crate::ca::key_lock(dir).map_err(io(dir))?),
        };
        if path.exists() {
            let seal = SealKey::load(path)?;
            for name in [CA, REPORT_KEY] {
                if let Some(sealed) = store.sealed_key(name)? {
                    let (id, _, _) = parts(name, &sealed)?;
                    if id != seal.id {
                        return Err(seal.other(name, id));
                    }
                }
            }
            return Ok(seal);
        }
        for name in [CA, REPORT_KEY] {
            if let Some(sealed) = store.sealed_key(name)? {
                return Err(KeyError::MissingSealKey {
                    path: path.to_path_buf(),
                    id: parts(name, &sealed)
                        .map(|(id, _, _)| hex(id))
                        .unwrap_or_else(|_| "(unreadable)".into()),
                });
            }
        }
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| io(path)(std::io::Error::other("no random bytes")))?;
        crate::ca::write_private(path, format!("{}\n", hex(&bytes)).as_bytes()).map_err(|e| {
            KeyError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            }
        })?;
        tracing::info!(path = %path.display(), "made the seal key: copy it to every other collector on this database");
        SealKey::of(&bytes, path)
    }

    /// The seal key's id (16 hex digits), which names it in messages without
    /// revealing it.
    pub fn id(&self) -> String {
        hex(&self.id)
    }

    /// That `name` is sealed by seal key `id`, not by this one.
    fn other(&self, name: &str, id: &[u8]) -> KeyError {
        KeyError::OtherSealKey {
            name: name.into(),
            found: hex(id),
            path: self.path.clone(),
            ours: self.id(),
        }
    }

    /// `plain` sealed under `name`.
    pub fn seal(&self, name: &str, plain: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| io(&self.path)(std::io::Error::other("no random bytes")))?;
        let mut body = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut body,
            )
            .map_err(|_| KeyError::Altered(name.into()))?;
        let mut out = Vec::with_capacity(MAGIC.len() + ID_LEN + NONCE_LEN + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// The key material `sealed` holds, checked to be `name`'s and unaltered.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
        let (id, nonce, body) = parts(name, sealed)?;
        if id != self.id {
            return Err(self.other(name, id));
        }
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| KeyError::NotSealed(name.into()))?;
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut body)
            .map_err(|_| KeyError::Altered(name.into()))?;
        Ok(plain.to_vec())
    }
}

/// A sealed key's parts: its seal key's id, its nonce and its sealed body.
type Parts<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// A sealed key's parts.
fn parts<'a>(name: &str, sealed: &'a [u8]) -> Result<Parts<'a>, KeyError> {
    let rest = sealed
        .strip_prefix(MAGIC.as_slice())
        .filter(|r| r.len() >= ID_LEN + NONCE_LEN + AES_256_GCM.tag_len())
        .ok_or_else(|| KeyError::NotSealed(name.into()))?;
    let (id, rest) = rest.split_at(ID_LEN);
    let (nonce, body) = rest.split_at(NONCE_LEN);
    Ok((id, nonce, body))
}

/// Where a collector's CA and report key come from.
#[derive(Clone, Copy)]
pub enum KeySource<'a> {
    /// Files in the data directory.
    Files(&'a Path),
    /// Sealed in the shared store; the data directory's files seal the first ones.
    Sealed {
        /// The data directory.
        data_dir: &'a Path,
        /// The store.
        store: &'a dyn SealedKeys,
        /// The seal key.
        seal: &'a SealKey,
    },
}

impl std::fmt::Debug for KeySource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Files(dir) => f.debug_tuple("Files").field(dir).finish(),
            KeySource::Sealed { data_dir, seal, .. } => f
                .debug_struct("Sealed")
                .field("data_dir", data_dir)
                .field("seal", seal)
                .finish(),
        }
    }
}

/// The material kept under `name`: opened from the store; or, when the store has none
/// yet, `local`'s (this collector's files), sealed and kept unless another collector
/// kept its own first, in which case that one is used.
fn shared(
    store: &dyn SealedKeys,
    seal: &SealKey,
    name: &str,
    local: impl FnOnce() -> Result<Vec<u8>, KeyError>,
) -> Result<Vec<u8>, KeyError> {
    if let Some(sealed) = store.sealed_key(name)? {
        return seal.open(name, &sealed);
    }
    let sealed = seal.seal(name, &local()?)?;
    let kept = store.keep_sealed_key(name, &sealed)?;
    if kept == sealed {
        tracing::info!(key = name, seal_key = %seal.id(), "sealed this collector's key in the database for the others");
    }
    seal.open(name, &kept)
}

fn origin(name: &str) -> PathBuf {
    PathBuf::from(format!("the database's sealed {name:?}"))
}

impl KeySource<'_> {
    /// The collector's CA, named `ca_name` when it is made.
    pub fn ca(&self, ca_name: &str) -> Result<Ca, KeyError> {
        match *self {
            KeySource::Files(dir) => Ok(Ca::load_or_create(dir, ca_name)?),
            KeySource::Sealed {
                data_dir,
                store,
                seal,
            } => {
                let pem = shared(store, seal, CA, || {
                    Ok(Ca::load_or_create(data_dir, ca_name)?.pem().into_bytes())
                })?;
                let text = String::from_utf8(pem).map_err(|_| KeyError::NotSealed(CA.into()))?;
                Ok(Ca::from_pem(&text, &origin(CA))?)
            }
        }
    }

    /// The report key.
    pub fn report_key(&self) -> Result<ReportKey, KeyError> {
        match *self {
            KeySource::Files(dir) => Ok(ReportKey::load_or_create(dir)?),
            KeySource::Sealed {
                data_dir,
                store,
                seal,
            } => {
                let der = shared(store, seal, REPORT_KEY, || {
                    ReportKey::load_or_create(data_dir)?;
                    let path = data_dir.join(crate::report::sign::KEY_FILE);
                    std::fs::read(&path).map_err(io(&path))
                })?;
                Ok(ReportKey::from_pkcs8(&der, &origin(REPORT_KEY))?)
            }
        }
    }
}

/// The report key a running collector signs with: replaced when a rotation made
/// through another collector reaches it ([`follow_report_key`]).
#[derive(Debug)]
pub struct CurrentKey(std::sync::RwLock<std::sync::Arc<ReportKey>>);

impl CurrentKey {
    /// Starts with `key`.
    pub fn new(key: ReportKey) -> CurrentKey {
        CurrentKey(std::sync::RwLock::new(std::sync::Arc::new(key)))
    }

    /// The key now: what one report or one checkpoint is signed with whole.
    pub fn get(&self) -> std::sync::Arc<ReportKey> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, key: ReportKey) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = std::sync::Arc::new(key);
    }
}

impl crate::log::CurrentSigner for CurrentKey {
    fn signer(&self) -> std::sync::Arc<dyn crate::log::CheckpointKey> {
        self.get()
    }
}

/// How often a running collector looks for a report key rotated in the store.
pub const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Takes the report key sealed in `store` as `current` when it is another one (a
/// rotation made through another collector, or `keys rotate`); whether it changed.
pub fn follow_report_key(
    store: &dyn SealedKeys,
    seal: &SealKey,
    current: &CurrentKey,
) -> Result<bool, KeyError> {
    let Some(sealed) = store.sealed_key(REPORT_KEY)? else {
        return Ok(false);
    };
    let key = ReportKey::from_pkcs8(&seal.open(REPORT_KEY, &sealed)?, &origin(REPORT_KEY))?;
    let old = current.get();
    if key.public() == old.public() {
        return Ok(false);
    }
    tracing::info!(from = %old.key_id(), to = %key.key_id(), "the report key was rotated: reports and checkpoints are signed with the new one");
    current.set(key);
    Ok(true)
}

/// Moves `dir/name` aside (to `name.before-rotation-UNIXTIME`), if it is there.
fn move_aside(dir: &Path, name: &str, at: i64) -> Result<(), KeyError> {
    let path = dir.join(name);
    if path.exists() {
        let aside = dir.join(format!("{name}.before-rotation-{at}"));
        std::fs::rename(&path, &aside).map_err(io(&path))?;
        tracing::info!(from = %path.display(), to = %aside.display(), "moved the old key aside");
    }
    Ok(())
}

impl KeySource<'_> {
    fn data_dir(&self) -> &Path {
        match *self {
            KeySource::Files(dir) => dir,
            KeySource::Sealed { data_dir, .. } => data_dir,
        }
    }

    /// Replaces the report key with a new one and returns it. The old key's file,
    /// if any, is moved aside in the data directory (reports signed with it verify
    /// with its public key only). Running collectors use the new one once restarted.
    pub fn rotate_report_key(&self) -> Result<ReportKey, KeyError> {
        let at = chrono::Utc::now().timestamp();
        let _lock = crate::ca::key_lock(self.data_dir()).map_err(io(self.data_dir()))?;
        move_aside(self.data_dir(), crate::report::sign::KEY_FILE, at)?;
        drop(_lock);
        match *self {
            KeySource::Files(_) => self.report_key(),
            KeySource::Sealed { store, seal, .. } => {
                let der = ReportKey::generate_pkcs8(&origin(REPORT_KEY))?;
                store.replace_sealed_key(REPORT_KEY, &seal.seal(REPORT_KEY, &der)?)?;
                Ok(ReportKey::from_pkcs8(&der, &origin(REPORT_KEY))?)
            }
        }
    }

    /// Replaces the CA with a new one named `ca_name` and returns it: every box must
    /// then be enrolled again. The old CA's files, if any, are moved aside.
    pub fn rotate_ca(&self, ca_name: &str) -> Result<Ca, KeyError> {
        let at = chrono::Utc::now().timestamp();
        let _lock = crate::ca::key_lock(self.data_dir()).map_err(io(self.data_dir()))?;
        move_aside(self.data_dir(), crate::ca::CA_KEY_FILE, at)?;
        move_aside(self.data_dir(), crate::ca::CA_CERT_FILE, at)?;
        drop(_lock);
        match *self {
            KeySource::Files(_) => self.ca(ca_name),
            KeySource::Sealed { store, seal, .. } => {
                let ca = Ca::generate(ca_name)?;
                store.replace_sealed_key(CA, &seal.seal(CA, ca.pem().as_bytes())?)?;
                Ok(ca)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// The store's side, as PostgreSQL keeps it: bytes under a name, the first kept.
    #[derive(Default)]
    struct Kept(Mutex<HashMap<String, Vec<u8>>>);

    impl SealedKeys for Kept {
        fn sealed_key(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self.0.lock().expect("lock").get(name).cloned())
        }

        fn keep_sealed_key(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
            let mut kept = self.0.lock().expect("lock");
            Ok(kept
                .entry(name.into())
                .or_insert_with(|| sealed.to_vec())
                .clone())
        }

        fn replace_sealed_key(&self, name: &str, sealed: &[u8]) -> Result<(), StoreError> {
            self.0
                .lock()
                .expect("lock")
                .insert(name.into(), sealed.to_vec());
            Ok(())
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sonde-keys-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    #[test]
    fn a_sealed_key_opens_only_with_its_seal_key_and_its_name_unaltered() {
        let dir = scratch("seal");
        let store = Kept::default();
        let seal = SealKey::load_or_create(&dir.join("seal.key"), &store).expect("made");
        let sealed = seal.seal(REPORT_KEY, b"secret").expect("sealed");
        assert!(
            !sealed.windows(6).any(|w| w == b"secret"),
            "the store never sees the key"
        );
        assert_eq!(seal.open(REPORT_KEY, &sealed).expect("opens"), b"secret");
        assert!(matches!(
            seal.open(CA, &sealed),
            Err(KeyError::Altered(n)) if n == CA
        ));
        let mut flipped = sealed.clone();
        *flipped.last_mut().expect("byte") ^= 1;
        assert!(matches!(
            seal.open(REPORT_KEY, &flipped),
            Err(KeyError::Altered(_))
        ));
        assert!(matches!(
            seal.open(REPORT_KEY, b"sondeSK1short"),
            Err(KeyError::NotSealed(_))
        ));
        let other =
            SealKey::load_or_create(&dir.join("other.key"), &Kept::default()).expect("another key");
        let e = other
            .open(REPORT_KEY, &sealed)
            .expect_err("another seal key");
        assert!(
            e.to_string().contains(&seal.id()) && e.to_string().contains(&other.id()),
            "{e}"
        );
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.join("seal.key"))
                .expect("file")
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let again = SealKey::load(&dir.join("seal.key")).expect("read back");
        assert_eq!(again.open(REPORT_KEY, &sealed).expect("opens"), b"secret");
        // Kept where the collector cannot write (as /etc/sonde is to its user): read.
        let ro = dir.join("ro");
        std::fs::create_dir_all(&ro).expect("dir");
        std::fs::copy(dir.join("seal.key"), ro.join("seal.key")).expect("copy");
        let readonly = std::os::unix::fs::PermissionsExt::from_mode(0o500);
        std::fs::set_permissions(&ro, readonly).expect("read-only");
        let kept = SealKey::load_or_create(&ro.join("seal.key"), &store);
        std::fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("writable");
        assert_eq!(kept.expect("read where it cannot write").id(), seal.id());
        assert!(!ro.join(crate::ca::LOCK_FILE).exists());
        std::fs::write(dir.join("bad.key"), "not hex\n").expect("write");
        assert!(matches!(
            SealKey::load(&dir.join("bad.key")),
            Err(KeyError::BadSealKey(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_first_collectors_keys_are_every_collectors() {
        let dir = scratch("share");
        let store = Kept::default();
        let seal_a = SealKey::load_or_create(&dir.join("a/seal.key"), &store).expect("made");
        let a = KeySource::Sealed {
            data_dir: &dir.join("a"),
            store: &store,
            seal: &seal_a,
        };
        let (ca_a, report_a) = (a.ca("sonde CA").expect("CA"), a.report_key().expect("key"));
        // The second collector has its own data directory (no key files) and a copy of
        // the seal key only.
        let missing = SealKey::load_or_create(&dir.join("b/seal.key"), &store)
            .expect_err("B has no seal key yet");
        assert!(
            missing.to_string().contains(&seal_a.id()),
            "names the key to copy: {missing}"
        );
        // Another seal key is refused at once, before it seals anything the store
        // lacks (a collector that took only the report key so far).
        std::fs::create_dir_all(dir.join("b")).expect("dir");
        std::fs::write(dir.join("b/seal.key"), "00".repeat(32)).expect("write");
        let lone = Kept::default();
        lone.keep_sealed_key(REPORT_KEY, &seal_a.seal(REPORT_KEY, b"k").expect("sealed"))
            .expect("kept");
        let e = SealKey::load_or_create(&dir.join("b/seal.key"), &lone).expect_err("refused");
        assert!(matches!(e, KeyError::OtherSealKey { .. }), "{e}");
        assert_eq!(lone.sealed_key(CA).expect("read"), None, "nothing sealed");
        std::fs::copy(dir.join("a/seal.key"), dir.join("b/seal.key")).expect("copy");
        let seal_b = SealKey::load_or_create(&dir.join("b/seal.key"), &store).expect("copied");
        let b = KeySource::Sealed {
            data_dir: &dir.join("b"),
            store: &store,
            seal: &seal_b,
        };
        let (ca_b, report_b) = (b.ca("sonde CA").expect("CA"), b.report_key().expect("key"));
        assert_eq!(ca_a.cert(), ca_b.cert());
        assert_eq!(report_a.public(), report_b.public());
        assert!(
            !dir.join("b").join(crate::ca::CA_KEY_FILE).exists(),
            "B never writes the CA's key to its disk"
        );
        // B issues certificates that chain to the one CA.
        let agent = ca_b.issue_agent("agent-1").expect("issued");
        let (_, ca) = x509_parser::parse_x509_certificate(ca_a.cert().as_ref()).expect("ca");
        let (_, leaf) = x509_parser::parse_x509_certificate(agent.cert.as_ref()).expect("leaf");
        assert!(leaf.verify_signature(Some(ca.public_key())).is_ok());

        // A rotation through B reaches A through the store; A's old files go aside.
        let rotated = b.rotate_report_key().expect("rotated");
        assert_ne!(rotated.public(), report_a.public());
        assert_eq!(a.report_key().expect("key").public(), rotated.public());
        let running = CurrentKey::new(a.report_key().expect("key"));
        assert!(!follow_report_key(&store, &seal_a, &running).expect("looked"));
        let again = b.rotate_report_key().expect("rotated again");
        assert!(follow_report_key(&store, &seal_a, &running).expect("looked"));
        assert_eq!(
            running.get().public(),
            again.public(),
            "a running collector follows"
        );
        let new_ca = a.rotate_ca("sonde CA").expect("rotated");
        assert_ne!(new_ca.cert(), ca_a.cert());
        assert_eq!(b.ca("sonde CA").expect("CA").cert(), new_ca.cert());
        assert!(!dir.join("a").join(crate::ca::CA_KEY_FILE).exists());
        assert!(std::fs::read_dir(dir.join("a")).expect("dir").any(|e| e
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .starts_with("ca.key.pem.before-rotation-")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_collector_moving_to_sealed_keys_keeps_its_own() {
        // A collector that ran on files (on SQLite, before `migrate`) keeps its CA and
        // report key when it first runs with a seal key: its agents stay enrolled and
        // its published key stays the one.
        let dir = scratch("move");
        let files = KeySource::Files(&dir);
        let (ca, key) = (
            files.ca("sonde CA").expect("CA"),
            files.report_key().expect("key"),
        );
        let store = Kept::default();
        let seal = SealKey::load_or_create(&dir.join("seal.key"), &store).expect("made");
        let sealed = KeySource::Sealed {
            data_dir: &dir,
            store: &store,
            seal: &seal,
        };
        assert_eq!(sealed.ca("sonde CA").expect("CA").cert(), ca.cert());
        assert_eq!(sealed.report_key().expect("key").public(), key.public());
        assert!(store.sealed_key(CA).expect("read").is_some());
        assert!(store.sealed_key(REPORT_KEY).expect("read").is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rotating_file_keys_moves_the_old_ones_aside() {
        let dir = scratch("files");
        let files = KeySource::Files(&dir);
        let (ca, key) = (
            files.ca("sonde CA").expect("CA"),
            files.report_key().expect("key"),
        );
        let (new_ca, new_key) = (
            files.rotate_ca("sonde CA").expect("CA"),
            files.rotate_report_key().expect("key"),
        );
        assert_ne!(ca.cert(), new_ca.cert());
        assert_ne!(key.public(), new_key.public());
        assert_eq!(files.report_key().expect("kept").public(), new_key.public());
        assert_eq!(files.ca("sonde CA").expect("kept").cert(), new_ca.cert());
        let aside = std::fs::read_dir(&dir)
            .expect("dir")
            .filter(|e| {
                e.as_ref()
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .contains(".before-rotation-")
            })
            .count();
        assert_eq!(aside, 3, "the CA's key and certificate and the report key");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
