//! The collector's certificate authority: it signs the collector's server certificate
//! and the agents' client certificates, whose common name is the agent id. Ingest and
//! transport see it through [`CertificateAuthority`]; [`Ca`] keeps its key in the data
//! directory (several collectors will share one by another implementation).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// What ingest and the transport ask of a certificate authority.
pub trait CertificateAuthority: Send + Sync + std::fmt::Debug {
    /// The CA's certificate: what agents pin, and what their certificates chain to.
    fn cert(&self) -> &CertificateDer<'static>;

    /// Checks an agent's certificate request (PEM) before anything is used up.
    fn check_request(
        &self,
        csr_pem: &str,
    ) -> Result<rcgen::CertificateSigningRequestParams, PkiError>;

    /// Signs a checked request as agent `agent_id` (the certificate's common name);
    /// the certificate in PEM.
    fn sign_agent_request(
        &self,
        request: rcgen::CertificateSigningRequestParams,
        agent_id: &str,
    ) -> Result<String, PkiError>;

    /// A server certificate for `names`.
    fn issue_server(&self, names: Vec<String>) -> Result<Issued, PkiError>;
}

impl CertificateAuthority for Ca {
    fn cert(&self) -> &CertificateDer<'static> {
        Ca::cert(self)
    }

    fn check_request(
        &self,
        csr_pem: &str,
    ) -> Result<rcgen::CertificateSigningRequestParams, PkiError> {
        Ca::check_request(self, csr_pem)
    }

    fn sign_agent_request(
        &self,
        request: rcgen::CertificateSigningRequestParams,
        agent_id: &str,
    ) -> Result<String, PkiError> {
        Ca::sign_agent_request(self, request, agent_id)
    }

    fn issue_server(&self, names: Vec<String>) -> Result<Issued, PkiError> {
        Ca::issue_server(self, names)
    }
}

/// PKI errors.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Generating or signing failed.
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// Reading or writing the CA's files failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A stored CA certificate is not PEM.
    #[error("{0}: not a PEM certificate")]
    Pem(std::path::PathBuf),
    /// An agent's certificate request is unreadable, badly signed or asks for more
    /// than a client certificate.
    #[error("certificate request: {0}")]
    Csr(String),
}

/// First 16 bytes of the SHA-256 of a certificate (DER): what tokens carry so an agent
/// can recognise the collector's CA on first contact.
pub fn fingerprint(cert: &CertificateDer<'_>) -> [u8; 16] {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest.as_ref()[..16]);
    out
}

/// PEM text of a certificate.
pub fn cert_pem(cert: &CertificateDer<'_>) -> String {
    pem_block("CERTIFICATE", cert.as_ref())
}

fn pem_block(label: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(label, der))
}

/// File of the CA's private key in the collector's data directory (mode 0600).
pub const CA_KEY_FILE: &str = "ca.key.pem";
/// File of the CA's certificate in the collector's data directory.
pub const CA_CERT_FILE: &str = "ca.cert.pem";

fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Name of the lock file that serialises the making of key material in a data dir.
pub const LOCK_FILE: &str = ".keys.lock";

/// Holds `dir`'s key lock (an exclusive `flock` on `dir/.keys.lock`) until dropped, so
/// two processes starting at once on a new data directory (a `token create` beside a
/// starting `serve`) make its keys once and both use them.
pub(crate) fn key_lock(dir: &std::path::Path) -> Result<std::fs::File, std::io::Error> {
    std::fs::create_dir_all(dir)?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))?;
    f.lock()?;
    Ok(f)
}

/// Writes `contents` whole (or not at all: a kill leaves no half key) to a file
/// readable by its owner only.
pub(crate) fn write_private(path: &std::path::Path, contents: &[u8]) -> Result<(), PkiError> {
    sonde_cli::files::write_atomic(path, contents, 0o600).map_err(io(path))
}

/// A certificate and its private key.
#[derive(Debug)]
pub struct Issued {
    /// The certificate.
    pub cert: CertificateDer<'static>,
    /// Its key (PKCS#8).
    pub key: PrivateKeyDer<'static>,
}

/// The collector's CA.
#[derive(Debug)]
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert: CertificateDer<'static>,
}

fn key_der(key: &KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
}

impl Ca {
    /// A new CA named `name`, in memory only.
    pub fn generate(name: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::generate()?;
        let params = ca_params(name)?;
        let cert = params.self_signed(&key)?.der().clone();
        Ok(Ca {
            issuer: Issuer::new(params, key),
            cert,
        })
    }

    /// Loads the CA kept in `dir`, or creates it there on first start (key file mode
    /// 0600). Restarting the collector keeps every agent's certificate valid.
    ///
    /// Each file is written whole, the certificate first and the key last: the key
    /// exists only once the CA is complete, so a first start killed at any point
    /// leaves no CA (the next start makes one, over any certificate left alone).
    pub fn load_or_create(dir: &std::path::Path, name: &str) -> Result<Ca, PkiError> {
        let _lock = key_lock(dir).map_err(io(dir))?;
        let (key_path, cert_path) = (dir.join(CA_KEY_FILE), dir.join(CA_CERT_FILE));
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let (key, fresh) = if key_path.exists() {
            let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
            (KeyPair::from_pem(&key_pem)?, false)
        } else {
            (KeyPair::generate()?, true)
        };
        if !fresh && cert_path.exists() {
            let cert_pem = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
            return Ca::from_key_and_cert(key, &cert_pem, &cert_path);
        }
        if !fresh {
            // A key without its certificate: an older version killed between the two
            // writes. The collector never served, so no agent pins a certificate yet.
            tracing::warn!(key = %key_path.display(), "the CA key has no certificate: making it");
        }
        let params = ca_params(name)?;
        let cert = params.self_signed(&key)?;
        sonde_cli::files::write_atomic(&cert_path, cert.pem().as_bytes(), 0o644)
            .map_err(io(&cert_path))?;
        if fresh {
            write_private(&key_path, key.serialize_pem().as_bytes())?;
        }
        Ok(Ca {
            issuer: Issuer::new(params, key),
            cert: cert.der().clone(),
        })
    }

    /// The CA from its key and its certificate in PEM (both in `pem`, in any order),
    /// as [`Ca::pem`] gives them; `origin` names where they came from, for errors.
    pub fn from_pem(pem: &str, origin: &std::path::Path) -> Result<Ca, PkiError> {
        let blocks = pem::parse_many(pem).map_err(|_| PkiError::Pem(origin.to_path_buf()))?;
        let find = |tag: &str| {
            blocks
                .iter()
                .find(|b| b.tag() == tag)
                .map(pem::encode)
                .ok_or_else(|| PkiError::Pem(origin.to_path_buf()))
        };
        let key = KeyPair::from_pem(&find("PRIVATE KEY")?)?;
        Ca::from_key_and_cert(key, &find("CERTIFICATE")?, origin)
    }

    fn from_key_and_cert(
        key: KeyPair,
        cert_pem: &str,
        origin: &std::path::Path,
    ) -> Result<Ca, PkiError> {
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|_| PkiError::Pem(origin.to_path_buf()))?;
        Ok(Ca {
            issuer,
            cert: CertificateDer::from(pem.contents),
        })
    }

    /// The CA's key and certificate in PEM, one after the other: what
    /// [`Ca::from_pem`] reads back.
    pub fn pem(&self) -> String {
        format!(
            "{}{}",
            self.issuer.key().serialize_pem(),
            cert_pem(&self.cert)
        )
    }

    /// The CA certificate agents pin.
    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    fn issue(
        &self,
        cn: &str,
        names: Vec<String>,
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<Issued, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer)?.der().clone();
        Ok(Issued {
            cert,
            key: key_der(&key),
        })
    }

    /// The collector's server certificate for these DNS names or addresses.
    pub fn issue_server(&self, names: Vec<String>) -> Result<Issued, PkiError> {
        let cn = names
            .first()
            .cloned()
            .unwrap_or_else(|| "sonde-collector".into());
        self.issue(&cn, names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// Reads and checks an agent's certificate request (PEM): its signature proves the
    /// agent holds the key. Nothing is signed yet.
    pub fn check_request(
        &self,
        csr_pem: &str,
    ) -> Result<rcgen::CertificateSigningRequestParams, PkiError> {
        if csr_pem.len() > 16 * 1024 {
            return Err(PkiError::Csr("larger than 16 KiB".into()));
        }
        rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::Csr(e.to_string()))
    }

    /// Signs a checked request as a client certificate whose common name is
    /// `agent_id`. Only the request's public key is used: the collector alone decides
    /// what the certificate says. Returns the certificate (PEM).
    pub fn sign_agent_request(
        &self,
        mut request: rcgen::CertificateSigningRequestParams,
        agent_id: &str,
    ) -> Result<String, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, agent_id);
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        request.params = params;
        Ok(request.signed_by(&self.issuer)?.pem())
    }

    /// An agent's client certificate; its common name is the agent id.
    pub fn issue_agent(&self, agent_id: &str) -> Result<Issued, PkiError> {
        self.issue(agent_id, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
    }
}

fn ca_params(name: &str) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

/// The agent id (common name) of an agent's certificate.
pub fn agent_id_of(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_first_start_killed_between_key_and_certificate_starts_again() {
        let dir = std::env::temp_dir().join(format!("sonde-ca-half-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        // What an older version left when killed after the key, before the
        // certificate; and a temporary file of a write cut short.
        let key = KeyPair::generate().expect("key");
        std::fs::write(dir.join(CA_KEY_FILE), key.serialize_pem()).expect("key");
        std::fs::write(dir.join("ca.cert.tmp"), b"-----BEGIN CERT").expect("tmp");
        let ca = Ca::load_or_create(&dir, "sonde CA").expect("starts");
        let again = Ca::load_or_create(&dir, "sonde CA").expect("and again");
        assert_eq!(ca.cert(), again.cert(), "the certificate made is kept");
        let agent = again.issue_agent("agent-1").expect("issues");
        let (_, ca) = x509_parser::parse_x509_certificate(again.cert().as_ref()).expect("ca");
        let (_, leaf) = x509_parser::parse_x509_certificate(agent.cert.as_ref()).expect("leaf");
        assert!(leaf.verify_signature(Some(ca.public_key())).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_ca_survives_a_restart_and_its_key_is_private() {
        let dir = std::env::temp_dir().join(format!("sonde-ca-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // Processes starting at once on a new directory make one CA (before the lock,
        // the losers failed with "ca.key.pem: File exists").
        let racers: Vec<_> = (0..8)
            .map(|_| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    Ca::load_or_create(&dir, "sonde CA").map(|ca| ca.cert().to_vec())
                })
            })
            .collect();
        let certs: Vec<Vec<u8>> = racers
            .into_iter()
            .map(|r| r.join().expect("thread").expect("one CA for all"))
            .collect();
        assert!(certs.windows(2).all(|w| w[0] == w[1]));
        let first = Ca::load_or_create(&dir, "sonde CA").expect("create");
        let mode = std::fs::metadata(dir.join(CA_KEY_FILE))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let agent = first.issue_agent("agent-1").expect("agent cert");
        let second = Ca::load_or_create(&dir, "ignored on reload").expect("reload");
        assert_eq!(first.cert(), second.cert(), "the same CA after a restart");
        // A certificate issued before the restart still verifies against the CA.
        let (_, ca) = x509_parser::parse_x509_certificate(second.cert().as_ref()).expect("ca");
        let (_, leaf) = x509_parser::parse_x509_certificate(agent.cert.as_ref()).expect("leaf");
        assert!(leaf.verify_signature(Some(ca.public_key())).is_ok());
        assert_eq!(agent_id_of(&agent.cert).as_deref(), Some("agent-1"));
        // And a certificate issued after it verifies too.
        let later = second.issue_agent("agent-2").expect("agent cert");
        let (_, leaf) = x509_parser::parse_x509_certificate(later.cert.as_ref()).expect("leaf");
        assert!(leaf.verify_signature(Some(ca.public_key())).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
