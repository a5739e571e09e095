//! Report integrity: a manifest of the SHA-256 digests of a report's files, signed with
//! the collector's Ed25519 report key. Verifying needs only the files and the public
//! key (`sonde-collector report key` prints it), not the collector.

use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use sonde_proto::wire::{hex, unhex};
use std::path::{Path, PathBuf};

/// File name of the report key in the collector's data directory (PKCS#8, 0600).
pub const KEY_FILE: &str = "report-key.pk8";
/// Suffix of a manifest's file name.
pub const MANIFEST_SUFFIX: &str = ".manifest.json";
/// Suffix of a signature's file name.
pub const SIGNATURE_SUFFIX: &str = ".manifest.sig";

/// Why signing or verifying failed; each names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file is not an Ed25519 PKCS#8 key.
    #[error("{0}: not an Ed25519 key")]
    BadKey(PathBuf),
    /// A public key given to verify is malformed.
    #[error("{0}: not a sonde report public key (expected \"ed25519 <64 hex digits>\")")]
    BadPublicKey(String),
    /// The manifest is not one.
    #[error("{path}: not a sonde report manifest: {why}")]
    BadManifest {
        /// The manifest.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The signature does not match the manifest and key.
    #[error(
        "{0}: the signature does not match (the manifest was altered, or signed by another key)"
    )]
    BadSignature(PathBuf),
    /// The manifest was signed by another key than the one given.
    #[error("{path}: signed by key {found}, not by the given key {expected}")]
    OtherKey {
        /// The manifest.
        path: PathBuf,
        /// Key id in the manifest.
        found: String,
        /// Key id given.
        expected: String,
    },
    /// A report file differs from its digest.
    #[error("{0}: altered (its SHA-256 differs from the signed manifest)")]
    Altered(PathBuf),
    /// A report file named by the manifest is missing.
    #[error("{0}: missing")]
    Missing(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SignError + '_ {
    move |source| SignError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The collector's report key.
#[derive(Debug)]
pub struct ReportKey {
    pair: Ed25519KeyPair,
}

impl ReportKey {
    /// Loads `data_dir/report-key.pk8`, making it on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<ReportKey, SignError> {
        let _lock = crate::ca::key_lock(data_dir).map_err(io(data_dir))?;
        let path = data_dir.join(KEY_FILE);
        if !path.exists() {
            std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
            let doc = ReportKey::generate_pkcs8(&path)?;
            crate::ca::write_private(&path, &doc).map_err(|e| SignError::Io {
                path: path.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
        }
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        ReportKey::from_pkcs8(&bytes, &path)
    }

    /// A new key's PKCS#8 bytes; `origin` names where it is for, for errors.
    pub fn generate_pkcs8(origin: &Path) -> Result<Vec<u8>, SignError> {
        let rng = ring::rand::SystemRandom::new();
        Ed25519KeyPair::generate_pkcs8(&rng)
            .map(|doc| doc.as_ref().to_vec())
            .map_err(|_| SignError::BadKey(origin.to_path_buf()))
    }

    /// The key from its PKCS#8 bytes (what `report-key.pk8` holds); `origin` names
    /// where they came from, for errors.
    pub fn from_pkcs8(bytes: &[u8], origin: &Path) -> Result<ReportKey, SignError> {
        let pair = Ed25519KeyPair::from_pkcs8(bytes)
            .map_err(|_| SignError::BadKey(origin.to_path_buf()))?;
        Ok(ReportKey { pair })
    }

    /// The public key as `report key` prints it: `ed25519 <hex>`.
    pub fn public_text(&self) -> String {
        format!("ed25519 {}", hex(self.pair.public_key().as_ref()))
    }

    /// The Ed25519 public key's 32 bytes.
    pub fn public(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// Short id of the public key: the first 16 hex digits of its SHA-256.
    pub fn key_id(&self) -> String {
        key_id(self.pair.public_key().as_ref())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }

    fn signer(&self) -> Signer {
        Signer {
            algorithm: "ed25519".into(),
            public_key: hex(self.pair.public_key().as_ref()),
            key_id: self.key_id(),
        }
    }
}

impl crate::log::CheckpointKey for ReportKey {
    fn public(&self) -> &[u8] {
        ReportKey::public(self)
    }

    fn key_id(&self) -> String {
        ReportKey::key_id(self)
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        ReportKey::sign(self, message)
    }
}

fn key_id(public: &[u8]) -> String {
    hex(&ring::digest::digest(&ring::digest::SHA256, public).as_ref()[..8])
}

/// One file of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// File name, in the manifest's directory.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// Who signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signer {
    /// `ed25519`.
    pub algorithm: String,
    /// Public key, hex.
    pub public_key: String,
    /// [`ReportKey::key_id`].
    pub key_id: String,
}

/// The signed manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version (1).
    pub sonde_report_manifest: u32,
    /// The report's period, scope and versions.
    pub report: serde_json::Value,
    /// The report's files.
    pub files: Vec<FileDigest>,
    /// The key that signed it.
    pub signer: Signer,
}

/// Digest of bytes in memory.
pub fn digest(name: &str, bytes: &[u8]) -> FileDigest {
    FileDigest {
        name: name.to_string(),
        bytes: bytes.len() as u64,
        sha256: hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref()),
    }
}

/// Digest of a file, read in blocks.
pub fn digest_file(path: &Path) -> Result<FileDigest, SignError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        ctx.update(&buf[..n]);
    }
    Ok(FileDigest {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        bytes,
        sha256: hex(ctx.finish().as_ref()),
    })
}

/// The manifest's text and its signature line, for `files` described by `report`.
pub fn manifest(
    key: &ReportKey,
    report: serde_json::Value,
    files: Vec<FileDigest>,
) -> (String, String) {
    let m = Manifest {
        sonde_report_manifest: 1,
        report,
        files,
        signer: key.signer(),
    };
    let mut text = serde_json::to_string_pretty(&m).unwrap_or_default();
    text.push('\n');
    let sig = format!("ed25519 {}\n", hex(&key.sign(text.as_bytes())));
    (text, sig)
}

/// Writes the manifest and signature of the report files `files` (in one directory),
/// named after `stem`. Returns their paths.
pub fn sign_files(
    key: &ReportKey,
    report: serde_json::Value,
    files: &[PathBuf],
    dir: &Path,
    stem: &str,
) -> Result<(PathBuf, PathBuf), SignError> {
    let digests = files
        .iter()
        .map(|f| digest_file(f))
        .collect::<Result<Vec<_>, _>>()?;
    let (text, sig) = manifest(key, report, digests);
    let m = dir.join(format!("{stem}{MANIFEST_SUFFIX}"));
    let s = dir.join(format!("{stem}{SIGNATURE_SUFFIX}"));
    std::fs::write(&m, text).map_err(io(&m))?;
    std::fs::write(&s, sig).map_err(io(&s))?;
    Ok((m, s))
}

/// The manifest belonging to a report file, its manifest or its signature.
pub fn manifest_of(file: &Path) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.ends_with(MANIFEST_SUFFIX) {
        return file.to_path_buf();
    }
    let stem = name
        .strip_suffix(SIGNATURE_SUFFIX)
        .map(str::to_string)
        .unwrap_or_else(|| {
            let base = name.rsplit_once('.').map_or(name.as_str(), |(b, _)| b);
            base.strip_suffix(".results").unwrap_or(base).to_string()
        });
    file.with_file_name(format!("{stem}{MANIFEST_SUFFIX}"))
}

/// Parses a public key as `report key` prints it.
pub fn parse_public(text: &str) -> Result<Vec<u8>, SignError> {
    let t = text.trim();
    t.strip_prefix("ed25519 ")
        .and_then(|h| unhex(h.trim()))
        .filter(|k| k.len() == 32)
        .ok_or_else(|| SignError::BadPublicKey(t.chars().take(80).collect()))
}

/// What a successful verification checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The manifest.
    pub manifest: PathBuf,
    /// The files whose digests matched.
    pub files: Vec<FileDigest>,
    /// The key that signed.
    pub key_id: String,
    /// Whether that key was the one given (otherwise the manifest's own).
    pub pinned: bool,
}

/// Checks the signature of the manifest belonging to `file`, then every file it lists.
/// With `public_key`, the manifest must be signed by that key.
pub fn verify(file: &Path, public_key: Option<&[u8]>) -> Result<Verified, SignError> {
    let path = manifest_of(file);
    if !path.exists() {
        return Err(SignError::Missing(path));
    }
    let text = std::fs::read(&path).map_err(io(&path))?;
    let bad = |why: String| SignError::BadManifest {
        path: path.clone(),
        why,
    };
    let m: Manifest = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    if m.signer.algorithm != "ed25519" {
        return Err(bad(format!("algorithm {:?}", m.signer.algorithm)));
    }
    let embedded = unhex(&m.signer.public_key)
        .filter(|k| k.len() == 32)
        .ok_or_else(|| bad("public key is not 32 bytes of hex".into()))?;
    let key = match public_key {
        Some(k) if k != embedded.as_slice() => {
            return Err(SignError::OtherKey {
                path,
                found: key_id(&embedded),
                expected: key_id(k),
            })
        }
        Some(k) => k.to_vec(),
        None => embedded,
    };
    let sig_path = path.with_file_name(
        path.file_name()
            .map(|n| {
                n.to_string_lossy()
                    .replace(MANIFEST_SUFFIX, SIGNATURE_SUFFIX)
            })
            .unwrap_or_default(),
    );
    let sig_text = std::fs::read_to_string(&sig_path).map_err(io(&sig_path))?;
    let sig = sig_text
        .trim()
        .strip_prefix("ed25519 ")
        .and_then(unhex)
        .ok_or_else(|| SignError::BadSignature(sig_path.clone()))?;
    UnparsedPublicKey::new(&ED25519, &key)
        .verify(&text, &sig)
        .map_err(|_| SignError::BadSignature(path.clone()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    for f in &m.files {
        if f.name.contains('/') || f.name.contains('\\') || f.name.starts_with('.') {
            return Err(bad(format!("file name {:?}", f.name)));
        }
        let p = dir.join(&f.name);
        if !p.exists() {
            return Err(SignError::Missing(p));
        }
        let d = digest_file(&p)?;
        if d.sha256 != f.sha256 || d.bytes != f.bytes {
            return Err(SignError::Altered(p));
        }
    }
    Ok(Verified {
        manifest: path,
        files: m.files,
        key_id: key_id(&key),
        pinned: public_key.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sonde-sign-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("dir");
        d
    }

    #[test]
    fn every_byte_of_every_file_and_of_the_manifest_is_covered() {
        let dir = scratch("bytes");
        let key = ReportKey::load_or_create(&dir.join("keys")).expect("key");
        // The key persists: a second load is the same key.
        let again = ReportKey::load_or_create(&dir.join("keys")).expect("key");
        assert_eq!(key.public_text(), again.public_text());
        let report = dir.join("r.csv");
        let raw = dir.join("r.results.csv");
        std::fs::write(&report, b"level,quartier\naccess,q1\n").expect("write");
        std::fs::write(&raw, b"id,down_bps\n1,2\n").expect("write");
        let (m, _) = sign_files(
            &key,
            serde_json::json!({"from": "x"}),
            &[report.clone(), raw.clone()],
            &dir,
            "r",
        )
        .expect("sign");
        let pk = parse_public(&key.public_text()).expect("pk");
        for f in [&report, &raw, &m] {
            let ok = verify(f, Some(&pk)).expect("verifies");
            assert_eq!(ok.files.len(), 2);
        }
        // Flip each byte of each file in turn: every change is caught, naming the file.
        for f in [&report, &raw, &m] {
            let original = std::fs::read(f).expect("read");
            for i in 0..original.len() {
                let mut changed = original.clone();
                changed[i] ^= 0x01;
                std::fs::write(f, &changed).expect("write");
                let err = verify(&report, Some(&pk)).expect_err("a changed byte is caught");
                let text = err.to_string();
                assert!(
                    text.contains(&*f.file_name().unwrap_or_default().to_string_lossy()),
                    "byte {i} of {}: {text}",
                    f.display()
                );
            }
            std::fs::write(f, &original).expect("restore");
        }
        assert!(verify(&report, Some(&pk)).is_ok());
        // Another key is refused even though the manifest verifies with its own.
        let other = ReportKey::load_or_create(&dir.join("other")).expect("other");
        let other_pk = parse_public(&other.public_text()).expect("pk");
        assert!(matches!(
            verify(&report, Some(&other_pk)),
            Err(SignError::OtherKey { .. })
        ));
        assert!(verify(&report, None).expect("self-consistent").key_id == key.key_id());
        // A deleted file is named.
        std::fs::remove_file(&raw).expect("rm");
        assert!(matches!(verify(&report, None), Err(SignError::Missing(p)) if p == raw));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn manifests_are_found_from_any_of_the_report_files() {
        let d = Path::new("/x");
        for f in [
            "r.csv",
            "r.results.csv",
            "r.json",
            "r.html",
            "r.manifest.sig",
            "r.manifest.json",
        ] {
            assert_eq!(manifest_of(&d.join(f)), d.join("r.manifest.json"), "{f}");
        }
        assert!(parse_public("ed25519 00").is_err());
        assert!(parse_public(&format!("ed25519 {}", "ab".repeat(32))).is_ok());
    }
}
