//! The QUIC listener (quinn, TLS 1.3 with mutual authentication): a connection with a
//! client certificate from the collector's CA is that agent; a connection without one
//! may only enrol. Each bidirectional stream carries frames to [`Ingest`] and its
//! answers back. Connections beyond the limit are refused before the handshake; failed
//! handshakes are counted.

use crate::ca::{agent_id_of, CertificateAuthority, Issued};
use crate::ingest::Ingest;
use sonde_proto::wire::RejectReason;
use sonde_store::Delivery;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Errors building the listener.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    /// TLS configuration refused.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// Client verifier refused.
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// QUIC crypto configuration refused.
    #[error("QUIC: {0}")]
    Crypto(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Server configuration: a client certificate, when presented, must be signed by
/// `ca`; clients without one may connect, to enrol only. The server sends its CA with
/// its certificate, so an agent holding only the CA's fingerprint (from its token)
/// can check it.
pub fn server_config(
    ca: &dyn CertificateAuthority,
    server: Issued,
) -> Result<quinn::ServerConfig, QuicError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert().clone())?;
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .allow_unauthenticated()
            .build()?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![server.cert, ca.cert().clone()], server.key)?;
    tls.alpn_protocols = vec![sonde_proto::wire::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    // A busy collector must not drop agents that wait for a commit: agents send
    // keep-alives every 15 s; a minute of silence means the agent is gone.
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(quinn::VarInt::from_u32(60_000).into()));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// Client configuration of an agent: pins `ca`, presents `identity`.
pub fn client_config(
    ca_cert: &rustls::pki_types::CertificateDer<'static>,
    identity: Option<Issued>,
) -> Result<quinn::ClientConfig, QuicError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.clone())?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots);
    let mut tls = match identity {
        Some(id) => builder.with_client_auth_cert(vec![id.cert], id.key)?,
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![sonde_proto::wire::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    Ok(quinn::ClientConfig::new(Arc::new(crypto)))
}

/// File (in the data directory, mode 0600) of the key stateless resets are derived
/// from. Kept across restarts, so that after a crash the new process can tell agents
/// at once that their old connection is gone, instead of leaving them waiting for an
/// answer that will never come.
pub const RESET_KEY_FILE: &str = "quic-reset.key";

/// The reset key kept in `dir`, made on first use.
pub fn reset_key(dir: &std::path::Path) -> std::io::Result<ring::hmac::Key> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(RESET_KEY_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) if b.len() == 32 => b,
        Ok(_) => {
            return Err(std::io::Error::other(format!(
                "{}: not a 32-byte key",
                path.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let fresh: [u8; 32] = rand::random();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            f.write_all(&fresh)?;
            f.sync_all()?;
            fresh.to_vec()
        }
        Err(e) => return Err(e),
    };
    Ok(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &bytes))
}

/// A server endpoint on `listen` whose stateless resets survive restarts (key in
/// `data_dir`).
pub fn endpoint(
    listen: std::net::SocketAddr,
    config: quinn::ServerConfig,
    data_dir: &std::path::Path,
) -> std::io::Result<quinn::Endpoint> {
    let key = reset_key(data_dir)?;
    // Connection ids are checked with a key too: derive it from the same secret, so
    // the restarted process recognises its predecessor's ids and answers them with a
    // reset rather than dropping them.
    let tag = ring::hmac::sign(&key, b"sonde connection ids");
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&tag.as_ref()[..8]);
    let cid_key = u64::from_le_bytes(cid_key);
    let mut config_e = quinn::EndpointConfig::new(Arc::new(key));
    config_e.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    let socket = std::net::UdpSocket::bind(listen)?;
    quinn::Endpoint::new(
        config_e,
        Some(config),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

/// Accepts agents on `endpoint` until it is closed, holding at most `max_connections`.
pub async fn serve(endpoint: quinn::Endpoint, ingest: Arc<Ingest>, max_connections: usize) {
    let slots = Arc::new(Semaphore::new(max_connections));
    while let Some(incoming) = endpoint.accept().await {
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            ingest.count(RejectReason::Busy);
            incoming.refuse();
            continue;
        };
        let ingest = ingest.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let peer = incoming.remote_address();
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    ingest.count(RejectReason::Handshake);
                    tracing::info!(%peer, error = %e, "handshake failed");
                    return;
                }
            };
            ingest.connection(true);
            if let Err(e) = connection(conn, ingest.clone()).await {
                tracing::debug!(%peer, error = %e, "agent connection ended");
            }
            ingest.connection(false);
        });
    }
}

/// The agent a certificate names, with the site of its enrolment, and why its uploads
/// are refused when it was revoked. Store lookups: run on the blocking pool.
fn identify(agent_id: String, ingest: &Ingest) -> (Option<Delivery>, Option<String>) {
    let store = ingest.store();
    let delivery = match store.enrolment(&agent_id) {
        Ok(Some(site)) => Delivery {
            agent_id,
            quartier: Some(site.quartier),
            building: Some(site.building),
        },
        Ok(None) => {
            tracing::warn!(agent = %agent_id, "certificate of an agent with no enrolment record");
            return (None, None);
        }
        Err(e) => {
            tracing::warn!(agent = %agent_id, error = %e, "enrolment lookup failed");
            return (None, None);
        }
    };
    let revoked = match store.revoked_at(&delivery.agent_id) {
        Ok(Some(at)) => Some(format!(
            "agent {} was revoked on {}; enrol it again with a new token (its results stay on the box)",
            delivery.agent_id,
            at.format("%Y-%m-%d %H:%M UTC")
        )),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(agent = %delivery.agent_id, error = %e, "revocation lookup failed");
            None
        }
    };
    (Some(delivery), revoked)
}

/// The agent id the connection's client certificate names, if it has one.
fn certificate_agent(conn: &quinn::Connection) -> Option<String> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    certs.first().and_then(agent_id_of)
}

async fn connection(conn: quinn::Connection, ingest: Arc<Ingest>) -> anyhow::Result<()> {
    let (delivery, revoked) = match certificate_agent(&conn) {
        Some(agent_id) => {
            let i = ingest.clone();
            sonde_cli::blocking::run(move || identify(agent_id, &i)).await?
        }
        None => (None, None),
    };
    if let Some(why) = &revoked {
        tracing::warn!(reason = %why, "connection of a revoked agent");
    }
    let peer = match &delivery {
        Some(d) => d.agent_id.clone(),
        None => conn.remote_address().to_string(),
    };
    loop {
        let (mut send, mut recv) = conn.accept_bi().await?;
        let mut session = ingest.session(delivery.clone(), peer.clone());
        session.revoked = revoked.clone();
        let ingest = ingest.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(Some(n)) = recv.read(&mut buf).await {
                let reply = ingest
                    .receive(&mut session, &buf[..n], chrono::Utc::now())
                    .await;
                if !reply.send.is_empty() && send.write_all(&reply.send).await.is_err() {
                    return;
                }
                if reply.close {
                    let _ = recv.stop(0u32.into());
                    break;
                }
            }
            let _ = send.finish();
        });
    }
}
