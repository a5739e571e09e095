//! The agent's identity: a key pair made on the box, the certificate the collector's
//! CA signed for it at enrolment, and the CA certificate pinned from then on. Files in
//! the state directory; the key is written mode 0600 and never leaves the box.
//!
//! Enrolment: the token carries the fingerprint of the collector's CA, so on its very
//! first contact the agent accepts only a collector whose certificate chains to that
//! CA. It sends the token and a certificate request, and receives its certificate.

pub mod rotate;
pub mod signing;

use crate::state::files::{write_atomic, FileError};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde::{Deserialize, Serialize};
use sonde_proto::wire::{self, EnrolToken, Enroll, Enrolled, FrameDecoder, Message};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The agent's private key (PEM, mode 0600).
pub const KEY_FILE: &str = "agent.key.pem";
/// The agent's certificate (PEM).
pub const CERT_FILE: &str = "agent.cert.pem";
/// The collector's CA certificate (PEM), pinned.
pub const CA_FILE: &str = "ca.cert.pem";
/// Who the agent is (JSON).
pub const IDENTITY_FILE: &str = "identity.json";

/// Identity errors, each one line.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A stored file is not what it should be.
    #[error("{0}")]
    Corrupt(String),
    /// The agent is enrolled already.
    #[error(
        "already enrolled as {agent_id} (in {dir}); remove {dir}/{IDENTITY_FILE} to enrol again"
    )]
    AlreadyEnrolled {
        /// Its id.
        agent_id: String,
        /// State directory.
        dir: String,
    },
    /// Reaching the collector failed.
    #[error("collector {address}: {message}")]
    Connect {
        /// The address.
        address: String,
        /// Why.
        message: String,
    },
    /// The collector refused the enrolment.
    #[error("the collector refused the enrolment ({reason}): {message}")]
    Refused {
        /// Stable reason name.
        reason: String,
        /// Detail.
        message: String,
    },
    /// Making the key or request failed.
    #[error("key pair: {0}")]
    Key(#[from] rcgen::Error),
    /// TLS configuration refused.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
}

impl From<FileError> for IdentityError {
    fn from(e: FileError) -> Self {
        IdentityError::Io {
            path: e.path,
            source: e.source,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `identity.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityInfo {
    /// The agent id the collector gave (its certificate's common name).
    pub agent_id: String,
    /// The collector enrolled with, `HOST:PORT`.
    pub collector: String,
    /// Quartier of the enrolment.
    pub quartier: String,
    /// Building of the enrolment.
    pub building: String,
    /// When it enrolled.
    pub enrolled_at: chrono::DateTime<chrono::Utc>,
}

/// A loaded identity, ready for mutual TLS.
#[derive(Debug)]
pub struct Identity {
    /// Who.
    pub info: IdentityInfo,
    /// The agent's certificate.
    pub cert: CertificateDer<'static>,
    /// Its key.
    pub key: PrivateKeyDer<'static>,
    /// The pinned CA.
    pub ca: CertificateDer<'static>,
}

impl Identity {
    /// Loads the identity in `dir`; `Ok(None)` when the agent is not enrolled.
    pub fn load(dir: &Path) -> Result<Option<Identity>, IdentityError> {
        sonde_cli::blocking::check("reading the identity");
        let info_path = dir.join(IDENTITY_FILE);
        if !info_path.exists() {
            return Ok(None);
        }
        let text = std::fs::read(&info_path).map_err(io(&info_path))?;
        let info: IdentityInfo = serde_json::from_slice(&text)
            .map_err(|e| IdentityError::Corrupt(format!("{}: {e}", info_path.display())))?;
        let pem = |name: &str| {
            let p = dir.join(name);
            std::fs::read(&p).map_err(io(&p)).map(|b| (p, b))
        };
        let (p, cert) = pem(CERT_FILE)?;
        let cert = CertificateDer::from_pem_slice(&cert)
            .map_err(|e| IdentityError::Corrupt(format!("{}: {e}", p.display())))?;
        let (p, ca) = pem(CA_FILE)?;
        let ca = CertificateDer::from_pem_slice(&ca)
            .map_err(|e| IdentityError::Corrupt(format!("{}: {e}", p.display())))?;
        let (p, key) = pem(KEY_FILE)?;
        let key = PrivateKeyDer::from_pem_slice(&key)
            .map_err(|e| IdentityError::Corrupt(format!("{}: {e}", p.display())))?;
        Ok(Some(Identity {
            info,
            cert,
            key,
            ca,
        }))
    }

    /// QUIC client configuration: pins the CA, presents the agent's certificate.
    pub fn client_config(&self) -> Result<quinn::ClientConfig, IdentityError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone())?;
        let mut tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![self.cert.clone()], self.key.clone_key())?;
        tls.alpn_protocols = vec![sonde_proto::wire::ALPN.to_vec()];
        quic_client(tls)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn quic_client(tls: rustls::ClientConfig) -> Result<quinn::ClientConfig, IdentityError> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| IdentityError::Corrupt(format!("QUIC crypto: {e}")))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    // A collector that died (or a path that did) is found within 8 s, and the link
    // moves to the next collector then; keep-alives every 3 s hold a healthy one open
    // (two of them may be lost). Results wait in the spool meanwhile, so a path that
    // only paused costs a reconnection, never a result.
    transport.keep_alive_interval(Some(Duration::from_secs(3)));
    transport.max_idle_timeout(Some(
        Duration::from_secs(8)
            .try_into()
            .map_err(|_| IdentityError::Corrupt("idle timeout".into()))?,
    ));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// First 16 bytes of the SHA-256 of a certificate (DER), as tokens carry it.
pub fn fingerprint(cert: &CertificateDer<'_>) -> [u8; 16] {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest.as_ref()[..16]);
    out
}

/// Accepts a server whose chain includes the CA named by a token's fingerprint and
/// whose certificate that CA signed for the name dialled.
#[derive(Debug)]
struct FingerprintVerifier {
    fingerprint: [u8; 16],
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for FingerprintVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| fingerprint(c) == self.fingerprint)
            .ok_or_else(|| {
                rustls::Error::General("the collector's CA is not the one the token names".into())
            })?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Resolves `HOST:PORT` and returns the address and the host (for the server name).
pub async fn resolve(address: &str) -> Result<(std::net::SocketAddr, String), IdentityError> {
    let fail = |message: String| IdentityError::Connect {
        address: address.to_string(),
        message,
    };
    let (host, _) = address
        .rsplit_once(':')
        .ok_or_else(|| fail("not HOST:PORT".into()))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let addr = tokio::net::lookup_host(address)
        .await
        .map_err(|e| fail(format!("cannot resolve: {e}")))?
        .next()
        .ok_or_else(|| fail("no address".into()))?;
    Ok((addr, host))
}

/// A client endpoint on the unspecified address of `peer`'s family.
pub fn client_endpoint(peer: std::net::SocketAddr) -> Result<quinn::Endpoint, IdentityError> {
    let bind: std::net::SocketAddr = if peer.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    quinn::Endpoint::client(bind).map_err(|e| IdentityError::Connect {
        address: peer.to_string(),
        message: format!("cannot open a UDP socket: {e}"),
    })
}

/// Enrols with the collector at `address` using `token`; writes the identity into
/// `dir` and returns it.
pub async fn enroll(
    address: &str,
    token: &EnrolToken,
    dir: &Path,
    timeout: Duration,
) -> Result<Identity, IdentityError> {
    let d = dir.to_path_buf();
    let existing = sonde_cli::blocking::run(move || {
        crate::state::files::ensure_dir(&d)?;
        Identity::load(&d)
    })
    .await
    .map_err(|e| IdentityError::Corrupt(e.to_string()))??;
    if let Some(existing) = existing {
        return Err(IdentityError::AlreadyEnrolled {
            agent_id: existing.info.agent_id,
            dir: dir.display().to_string(),
        });
    }
    let key = rcgen::KeyPair::generate()?;
    let csr_pem = rcgen::CertificateParams::new(Vec::<String>::new())?
        .serialize_request(&key)?
        .pem()?;
    let request = Enroll {
        token: token.to_string(),
        csr_pem,
    };
    let answer = ask(address, token, request, timeout).await?;
    let enrolled = match answer {
        Message::Enrolled(e) => e,
        Message::Reject(r) => {
            return Err(IdentityError::Refused {
                reason: r.reason.as_str().to_string(),
                message: r.message,
            });
        }
        other => {
            return Err(connect_error(
                address,
                format!("unexpected answer {other:?}"),
            ))
        }
    };
    let (address, token, dir) = (address.to_string(), token.clone(), dir.to_path_buf());
    sonde_cli::blocking::run(move || keep(&address, &token, enrolled, &key, &dir))
        .await
        .map_err(|e| IdentityError::Corrupt(e.to_string()))?
}

fn connect_error(address: &str, message: String) -> IdentityError {
    IdentityError::Connect {
        address: address.to_string(),
        message,
    }
}

/// Sends the enrolment request to the collector at `address`, which must show the CA
/// `token` names, and returns its answer (frames of unknown kinds skipped).
async fn ask(
    address: &str,
    token: &EnrolToken,
    request: Enroll,
    timeout: Duration,
) -> Result<Message, IdentityError> {
    let fail = |message: String| connect_error(address, message);
    let (addr, host) = resolve(address).await?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(FingerprintVerifier {
            fingerprint: token.ca_fingerprint,
            provider: provider(),
        }))
        .with_no_client_auth();
    tls.alpn_protocols = vec![sonde_proto::wire::ALPN.to_vec()];
    let mut endpoint = client_endpoint(addr)?;
    endpoint.set_default_client_config(quic_client(tls)?);
    let exchange = async {
        let conn = endpoint
            .connect(addr, &host)
            .map_err(|e| fail(e.to_string()))?
            .await
            .map_err(|e| fail(e.to_string()))?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| fail(e.to_string()))?;
        send.write_all(&wire::encode(&Message::Enroll(request)))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let _ = send.finish();
        let reply = recv
            .read_to_end(wire::DEFAULT_MAX_PAYLOAD)
            .await
            .map_err(|e| fail(e.to_string()))?;
        conn.close(0u32.into(), b"enrolled");
        first_known(&reply).map_err(fail)
    };
    let answer = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| {
            fail(format!(
                "no answer within {} s (is the collector running, and is this its QUIC address?)",
                timeout.as_secs()
            ))
        })??;
    endpoint.wait_idle().await;
    Ok(answer)
}

/// The first frame of `reply` of a kind this agent knows.
fn first_known(reply: &[u8]) -> Result<Message, String> {
    let mut d = FrameDecoder::new(wire::DEFAULT_MAX_PAYLOAD);
    d.push(reply);
    loop {
        // Frames of kinds this agent does not know (a newer collector) are skipped.
        match d.poll() {
            Ok(Some(Message::Unknown { .. })) => continue,
            Ok(Some(m)) => return Ok(m),
            Ok(None) => return Err("the collector closed the stream without answering".into()),
            Err(e) => return Err(format!("unreadable answer: {e}")),
        }
    }
}

/// Checks what the collector sent (its CA is the token's) and writes the identity.
fn keep(
    address: &str,
    token: &EnrolToken,
    enrolled: Enrolled,
    key: &rcgen::KeyPair,
    dir: &Path,
) -> Result<Identity, IdentityError> {
    let fail = |message: String| connect_error(address, message);
    let ca = CertificateDer::from_pem_slice(enrolled.ca_pem.as_bytes())
        .map_err(|e| fail(format!("CA certificate: {e}")))?;
    if fingerprint(&ca) != token.ca_fingerprint {
        return Err(fail("the CA sent is not the one the token names".into()));
    }
    let cert = CertificateDer::from_pem_slice(enrolled.cert_pem.as_bytes())
        .map_err(|e| fail(format!("certificate: {e}")))?;
    let info = IdentityInfo {
        agent_id: enrolled.agent_id,
        collector: address.to_string(),
        quartier: enrolled.quartier,
        building: enrolled.building,
        enrolled_at: chrono::Utc::now(),
    };
    write_atomic(&dir.join(KEY_FILE), key.serialize_pem().as_bytes(), 0o600)?;
    // The key results are signed with, made with the identity.
    signing::SigningKey::load_or_create(dir).map_err(|e| IdentityError::Corrupt(e.to_string()))?;
    write_atomic(&dir.join(CERT_FILE), enrolled.cert_pem.as_bytes(), 0o644)?;
    write_atomic(&dir.join(CA_FILE), enrolled.ca_pem.as_bytes(), 0o644)?;
    // Written last: its presence means the identity is complete.
    let json = serde_json::to_vec_pretty(&info).unwrap_or_default();
    write_atomic(&dir.join(IDENTITY_FILE), &json, 0o600)?;
    Ok(Identity {
        info,
        cert,
        key: PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes())
            .map_err(|e| IdentityError::Corrupt(format!("key: {e}")))?,
        ca,
    })
}
