//! The QUIC listener (quinn, TLS 1.3 with mutual authentication): each connection is
//! an agent proven by a client certificate from the collector's CA; each
//! bidirectional stream carries upload frames to [`Ingest`] and its answers back.
//! Connections beyond the limit are refused before the handshake.

use crate::ingest::Ingest;
use crate::pki::{agent_id_of, Ca, Issued};
use crate::store::Delivery;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// ALPN of sonde's uplink.
pub const ALPN: &[u8] = b"sonde/1";

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

/// Server configuration requiring a client certificate signed by `ca`.
pub fn server_config(ca: &Ca, server: Issued) -> Result<quinn::ServerConfig, QuicError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert().clone())?;
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![server.cert], server.key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    Ok(quinn::ServerConfig::with_crypto(Arc::new(crypto)))
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
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    Ok(quinn::ClientConfig::new(Arc::new(crypto)))
}

/// Accepts agents on `endpoint` until it is closed, holding at most `max_connections`.
pub async fn serve(endpoint: quinn::Endpoint, ingest: Arc<Ingest>, max_connections: usize) {
    let slots = Arc::new(Semaphore::new(max_connections));
    while let Some(incoming) = endpoint.accept().await {
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            incoming.refuse();
            continue;
        };
        let ingest = ingest.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = connection(incoming, ingest).await {
                tracing::debug!(error = %e, "agent connection ended");
            }
        });
    }
}

async fn connection(incoming: quinn::Incoming, ingest: Arc<Ingest>) -> anyhow::Result<()> {
    let conn = incoming.await?;
    let agent_id = conn
        .peer_identity()
        .and_then(|id| {
            id.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .and_then(|certs| certs.first().and_then(agent_id_of))
        .ok_or_else(|| anyhow::anyhow!("client certificate without an agent id"))?;
    loop {
        let (mut send, mut recv) = conn.accept_bi().await?;
        let mut session = ingest.session(Delivery {
            agent_id: agent_id.clone(),
            quartier: None,
            building: None,
        });
        let ingest = ingest.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(Some(n)) = recv.read(&mut buf).await {
                let reply = ingest.receive(&mut session, &buf[..n], chrono::Utc::now());
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
