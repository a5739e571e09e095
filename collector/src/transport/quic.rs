//! The QUIC listener (quinn, TLS 1.3 with mutual authentication): a connection with a
//! client certificate from the collector's CA is that agent; a connection without one
//! may only enrol, on one stream, before its deadline ([`admission`](super::admission)).
//! Each bidirectional stream carries frames to [`Ingest`] and its answers back, what it
//! buffers taken from a shared budget ([`budget`](super::budget)). Refusals and failed
//! handshakes are counted.

use super::admission::{Admission, Limits, HANDSHAKE_TIMEOUT};
use super::budget::{Budget, Share, BUFFER_BUDGET};
use crate::ca::{agent_id_of, CertificateAuthority, Issued};
use crate::ingest::{Ingest, Session};
use sonde_proto::wire::RejectReason;
use sonde_store::Delivery;
use std::sync::Arc;
use std::time::Duration;

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
    // A busy collector must not drop agents that wait for a commit: its own bound is a
    // minute of silence. Agents ask for less (8 s, keep-alives every 3 s, so a dead
    // collector is left quickly), and the lower of the two holds.
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(quinn::VarInt::from_u32(60_000).into()));
    // What one connection may have in flight before the collector reads it: an agent
    // uses one stream (two allowed), a batch of at most 2 MiB.
    transport.max_concurrent_bidi_streams(2u32.into());
    transport.max_concurrent_uni_streams(0u32.into());
    transport.stream_receive_window((1024 * 1024u32).into());
    transport.receive_window((2 * 1024 * 1024u32).into());
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
            // Whole or not at all: a kill here leaves no short key behind.
            let fresh: [u8; 32] = rand::random();
            sonde_cli::files::write_atomic(&path, &fresh, 0o600)?;
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

pub use sonde_proto::wire::{CLOSE_BUSY, CLOSE_ENROL_TIMEOUT, CLOSE_REVOKED, CLOSE_UNAVAILABLE};

/// Accepts connections on `endpoint` until it is closed: agents in their slots,
/// strangers (no certificate: enrolment only) in theirs, each within `limits`.
pub async fn serve(endpoint: quinn::Endpoint, ingest: Arc<Ingest>, limits: Limits) {
    let admission = Arc::new(Admission::new(limits));
    let budget = Budget::new(BUFFER_BUDGET);
    while let Some(incoming) = endpoint.accept().await {
        let Some(handshake) = admission.handshake() else {
            ingest.count(RejectReason::Busy);
            incoming.refuse();
            continue;
        };
        let (admission, ingest, budget) = (admission.clone(), ingest.clone(), budget.clone());
        tokio::spawn(async move {
            let peer = incoming.remote_address();
            let conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, incoming).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    ingest.count(RejectReason::Handshake);
                    tracing::info!(%peer, error = %e, "handshake failed");
                    return;
                }
                Err(_) => {
                    ingest.count(RejectReason::Handshake);
                    tracing::info!(%peer, "handshake took too long");
                    return;
                }
            };
            drop(handshake);
            let outcome = match certificate_agent(&conn) {
                Some(agent_id) => agent(conn, agent_id, &admission, ingest, budget).await,
                None => stranger(conn, &admission, ingest, budget).await,
            };
            if let Err(e) = outcome {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}

/// Refuses `conn` as busy, counted.
fn refuse_busy(conn: &quinn::Connection, ingest: &Ingest) {
    ingest.count(RejectReason::Busy);
    conn.close(
        CLOSE_BUSY.into(),
        b"the collector holds its maximum of such connections",
    );
}

/// An agent's connection, in an agent's slot.
async fn agent(
    conn: quinn::Connection,
    agent_id: String,
    admission: &Admission,
    ingest: Arc<Ingest>,
    budget: Budget,
) -> anyhow::Result<()> {
    let Some(_slot) = admission.agent() else {
        refuse_busy(&conn, &ingest);
        return Ok(());
    };
    let i = ingest.clone();
    let (delivery, revoked) = match sonde_cli::blocking::run(move || identify(agent_id, &i)).await?
    {
        Ok(known) => known,
        Err(why) => {
            // Not knowing is no refusal: the agent keeps its results and comes back.
            ingest.count(RejectReason::Unavailable);
            let mut why = format!("{why}; retry later");
            // A close frame's reason must fit one packet.
            if why.len() > 400 {
                let cut = (0..=400)
                    .rev()
                    .find(|&i| why.is_char_boundary(i))
                    .unwrap_or(0);
                why.truncate(cut);
            }
            conn.close(CLOSE_UNAVAILABLE.into(), why.as_bytes());
            return Ok(());
        }
    };
    if let Some(why) = &revoked {
        tracing::warn!(reason = %why, "connection of a revoked agent");
    }
    let peer = match &delivery {
        Some(d) => d.agent_id.clone(),
        None => conn.remote_address().to_string(),
    };
    ingest.connection(true);
    // An agent revoked before it connected reads why on its stream (a reject frame);
    // the watch is for one revoked while connected, which may never upload again.
    let agent_id = delivery
        .as_ref()
        .filter(|_| revoked.is_none())
        .map(|d| d.agent_id.clone());
    let served = tokio::select! {
        s = streams(&conn, &ingest, &budget, || {
            let mut session = ingest.session(delivery.clone(), peer.clone());
            session.revoked = revoked.clone();
            session
        }) => s,
        why = revoked_meanwhile(&ingest, agent_id) => {
            ingest.count(RejectReason::Revoked);
            tracing::warn!(reason = %why, "closing the connection of an agent revoked meanwhile");
            conn.close(CLOSE_REVOKED.into(), why.as_bytes());
            Ok(())
        }
    };
    ingest.connection(false);
    served
}

/// Resolves with the reason once `agent_id` is revoked (checked every second).
async fn revoked_meanwhile(ingest: &Ingest, agent_id: Option<String>) -> String {
    let Some(id) = agent_id else {
        return std::future::pending().await;
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if let Some(why) = ingest.revocation(&id) {
            return why;
        }
    }
}

/// A connection without a certificate: it may enrol, on one stream, in time.
async fn stranger(
    conn: quinn::Connection,
    admission: &Admission,
    ingest: Arc<Ingest>,
    budget: Budget,
) -> anyhow::Result<()> {
    let Some(_slot) = admission.stranger(conn.remote_address().ip()) else {
        refuse_busy(&conn, &ingest);
        return Ok(());
    };
    conn.set_max_concurrent_bi_streams(1u32.into());
    let peer = conn.remote_address().to_string();
    let deadline = admission.limits().enrol_timeout;
    let one = async {
        let (send, recv) = conn.accept_bi().await?;
        let session = ingest.session(None, peer.clone());
        stream(send, recv, session, ingest.clone(), budget.share()).await;
        Ok::<_, quinn::ConnectionError>(())
    };
    match tokio::time::timeout(deadline, one).await {
        Err(_) => {
            ingest.count(RejectReason::EnrolmentTimeout);
            tracing::info!(%peer, "closed: no enrolment in time");
            conn.close(CLOSE_ENROL_TIMEOUT.into(), b"no enrolment in time");
        }
        // One stream, enrolled or refused: the connection has done what it may. The
        // peer closes it once it read the answer; a peer that lingers is closed.
        Ok(_) => {
            if tokio::time::timeout(Duration::from_secs(2), conn.closed())
                .await
                .is_err()
            {
                conn.close(0u32.into(), b"done");
            }
        }
    }
    Ok(())
}

/// Serves each bidirectional stream of `conn` with a session from `session`, until
/// the connection ends.
async fn streams(
    conn: &quinn::Connection,
    ingest: &Arc<Ingest>,
    budget: &Budget,
    session: impl Fn() -> Session,
) -> anyhow::Result<()> {
    loop {
        let (send, recv) = conn.accept_bi().await?;
        let s = session();
        tokio::spawn(stream(send, recv, s, ingest.clone(), budget.share()));
    }
}

/// One stream: bytes to ingest, answers back; what its frame in progress holds is
/// taken from the shared budget.
async fn stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    mut session: Session,
    ingest: Arc<Ingest>,
    mut share: Share,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut plan = ingest.plan_watch();
    loop {
        // A plan applied meanwhile goes to the agent unasked, between its uploads.
        let n = tokio::select! {
            read = recv.read(&mut buf) => match read {
                Ok(Some(n)) => n,
                _ => break,
            },
            Ok(()) = plan.changed() => {
                if let Some(frame) = ingest.plan_frame(&mut session) {
                    if send.write_all(&frame).await.is_err() {
                        return;
                    }
                }
                continue;
            }
        };
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
        if !share.hold(session.buffered()).await {
            let refused = ingest.refuse_busy(&mut session);
            let _ = send.write_all(&refused).await;
            let _ = recv.stop(0u32.into());
            break;
        }
    }
    let _ = send.finish();
}

/// The agent a certificate names, with the site of its enrolment, and why its uploads
/// are refused when it was revoked; or why the store could not say (the connection is
/// then closed as unavailable, not refused). Store lookups: run on the blocking pool.
fn identify(
    agent_id: String,
    ingest: &Ingest,
) -> Result<(Option<Delivery>, Option<String>), String> {
    let store = ingest.store();
    let failed = |what: &str, agent: &str, e: sonde_store::StoreError| {
        tracing::warn!(agent, error = %e, "{what} lookup failed");
        format!("the collector cannot look up this agent's {what} now: {e}")
    };
    let delivery = match store.enrolment(&agent_id) {
        Ok(Some(site)) => Delivery {
            agent_id,
            quartier: Some(site.quartier),
            building: Some(site.building),
        },
        Ok(None) => {
            tracing::warn!(agent = %agent_id, "certificate of an agent with no enrolment record");
            return Ok((None, None));
        }
        Err(e) => return Err(failed("enrolment", &agent_id, e)),
    };
    let revoked = match store.revoked_at(&delivery.agent_id) {
        Ok(Some(at)) => Some(crate::ingest::revoked_message(&delivery.agent_id, at)),
        Ok(None) => None,
        Err(e) => return Err(failed("revocation", &delivery.agent_id, e)),
    };
    Ok((Some(delivery), revoked))
}

/// The agent id the connection's client certificate names, if it has one.
fn certificate_agent(conn: &quinn::Connection) -> Option<String> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    certs.first().and_then(agent_id_of)
}
