//! The QUIC link to the collector (quinn, TLS 1.3, the agent's certificate): one
//! connection and one stream, reopened after a failure. The identity is read from the
//! state directory until the agent is enrolled, so a box installed before its
//! enrolment starts uploading as soon as `sonde-agent enroll` has run.
//!
//! A reader task per connection takes every frame the collector sends: answers to
//! uploads go to the waiting upload, plans (sent unasked, between uploads) to the
//! daemon's plan receiver ([`Link::take_plans`]), frames of unknown kinds are skipped
//! and counted.

use super::link::{Link, Outgoing, UplinkError, ANSWER_TIMEOUT};
use crate::identity::{self, Identity};
use futures_util::future::BoxFuture;
use sonde_proto::plan::AgentPlan;
use sonde_proto::wire::{self, FrameDecoder, Health, Message, Upload};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use uuid::Uuid;

/// How long a QUIC handshake may take before the collector counts as unreachable
/// (QUIC over UDP gets no "connection refused").
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

struct Connection {
    conn: quinn::Connection,
    send: quinn::SendStream,
    /// Answers to uploads, from the reader task; an error ends the connection.
    answers: mpsc::UnboundedReceiver<Result<Message, UplinkError>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The agent's side of the QUIC uplink: one connection and one stream, reopened on
/// failure.
pub struct QuicLink {
    /// The collectors, in order of preference.
    addresses: Vec<String>,
    /// The one connected to, or tried next.
    current: usize,
    state_dir: PathBuf,
    identity: Option<Identity>,
    endpoint: Option<quinn::Endpoint>,
    link: Option<Connection>,
    next_batch: u64,
    unknown_frames: Arc<AtomicU64>,
    plans: mpsc::UnboundedSender<AgentPlan>,
    plans_out: Option<mpsc::UnboundedReceiver<AgentPlan>>,
}

impl std::fmt::Debug for QuicLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicLink")
            .field("address", &self.addresses.get(self.current))
            .field("connected", &self.link.is_some())
            .finish_non_exhaustive()
    }
}

impl QuicLink {
    /// A link to the collectors at `addresses` (`HOST:PORT`, in order of preference,
    /// sharing one store) as the agent whose identity is (or will be, once enrolled) in
    /// `state_dir`.
    pub fn new(addresses: Vec<String>, state_dir: PathBuf) -> Self {
        let (plans, plans_out) = mpsc::unbounded_channel();
        QuicLink {
            addresses,
            current: 0,
            state_dir,
            identity: None,
            endpoint: None,
            link: None,
            next_batch: 1,
            unknown_frames: Arc::new(AtomicU64::new(0)),
            plans,
            plans_out: Some(plans_out),
        }
    }

    /// Whether a connection is open.
    pub fn connected(&self) -> bool {
        self.link.is_some()
    }

    /// Reads the identity from the state directory, until there is one.
    async fn load_identity(&mut self) -> Result<(), UplinkError> {
        if self.identity.is_none() {
            let dir = self.state_dir.clone();
            let loaded = sonde_cli::blocking::run(move || Identity::load(&dir))
                .await
                .map_err(|e| UplinkError::Identity(e.to_string()))?;
            match loaded {
                Ok(Some(id)) => {
                    tracing::info!(agent = %id.info.agent_id, "enrolled: uploads start");
                    self.identity = Some(id);
                }
                Ok(None) => {}
                Err(e) => return Err(UplinkError::Identity(e.to_string())),
            }
        }
        self.identity
            .as_ref()
            .map(|_| ())
            .ok_or(UplinkError::NotEnrolled)
    }

    async fn connection(&mut self) -> Result<&mut Connection, UplinkError> {
        if self
            .link
            .as_ref()
            .is_some_and(|l| l.conn.close_reason().is_some())
        {
            self.link = None;
        }
        if self.link.is_none() {
            let attempt = self.connect().await;
            if attempt.is_err() {
                self.next_collector();
            }
            attempt?;
        }
        self.link.as_mut().ok_or(UplinkError::NotEnrolled)
    }

    /// Connects to the current collector.
    async fn connect(&mut self) -> Result<(), UplinkError> {
        let address = self
            .addresses
            .get(self.current)
            .ok_or_else(|| UplinkError::Connect("no collector address".into()))?;
        let (addr, host) = identity::resolve(address)
            .await
            .map_err(|e| UplinkError::Connect(e.to_string()))?;
        // One endpoint per address family: collectors may differ.
        let family = |a: std::net::SocketAddr| a.is_ipv6();
        if self
            .endpoint
            .as_ref()
            .and_then(|e| e.local_addr().ok())
            .is_some_and(|l| family(l) != family(addr))
        {
            self.endpoint = None;
        }
        if self.endpoint.is_none() {
            let identity = self.identity.as_ref().ok_or(UplinkError::NotEnrolled)?;
            let config = identity
                .client_config()
                .map_err(|e| UplinkError::Connect(e.to_string()))?;
            let mut endpoint =
                identity::client_endpoint(addr).map_err(|e| UplinkError::Connect(e.to_string()))?;
            endpoint.set_default_client_config(config);
            self.endpoint = Some(endpoint);
        }
        let endpoint = self.endpoint.as_ref().ok_or(UplinkError::NotEnrolled)?;
        tracing::debug!(%addr, "connecting to the collector");
        let connecting = endpoint
            .connect(addr, &host)
            .map_err(|e| UplinkError::Connect(e.to_string()))?;
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| UplinkError::Connect("handshake timed out".into()))?
            .map_err(|e| UplinkError::Connect(e.to_string()))?;
        let (send, recv) = tokio::time::timeout(CONNECT_TIMEOUT, conn.open_bi())
            .await
            .map_err(|_| UplinkError::Connect("no stream within the timeout".into()))?
            .map_err(|e| UplinkError::Connect(e.to_string()))?;
        tracing::debug!(%addr, "connected");
        let (answer, answers) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_frames(
            recv,
            answer,
            self.plans.clone(),
            self.unknown_frames.clone(),
        ));
        self.link = Some(Connection {
            conn,
            send,
            answers,
            reader,
        });
        if self.addresses.len() > 1 {
            tracing::info!(collector = %address, "uploading to this collector");
        }
        Ok(())
    }

    /// The next attempt goes to the next collector (when there are several).
    fn next_collector(&mut self) {
        if self.addresses.len() > 1 {
            self.current = (self.current + 1) % self.addresses.len();
        }
    }

    async fn exchange(&mut self, batch: u64, frame: &[u8]) -> Result<Vec<Uuid>, UplinkError> {
        let link = self.connection().await?;
        tracing::debug!(batch, bytes = frame.len(), "sending");
        let written = tokio::time::timeout(ANSWER_TIMEOUT, link.send.write_all(frame))
            .await
            .map_err(|_| UplinkError::Timeout)?;
        let answer = match written {
            Ok(()) => read_answer(link, ANSWER_TIMEOUT).await?,
            // A collector that refuses a frame says why, then stops reading: the reason
            // is worth a second to read before calling the connection lost.
            Err(e) => match read_answer(link, Duration::from_secs(1)).await {
                Ok(m @ Message::Reject(_)) => m,
                _ => return Err(UplinkError::Lost(e.to_string())),
            },
        };
        match answer {
            Message::Ack(ack) if ack.batch == batch => Ok(ack.committed),
            Message::Ack(ack) => Err(UplinkError::BadAnswer(format!(
                "ack for batch {} while waiting for {batch}",
                ack.batch
            ))),
            Message::Reject(r) => Err(UplinkError::Refused {
                reason: r.reason,
                message: r.message,
            }),
            other => Err(UplinkError::BadAnswer(format!("unexpected {other:?}"))),
        }
    }
}

impl Link for QuicLink {
    fn send(
        &mut self,
        out: Outgoing,
        health: Health,
    ) -> BoxFuture<'_, Result<Vec<Uuid>, UplinkError>> {
        Box::pin(async move {
            self.load_identity().await?;
            let batch = self.next_batch;
            self.next_batch += 1;
            let frame = wire::encode(&Message::Upload(Upload {
                batch,
                health,
                results: out.results,
                signatures: out.signatures,
            }));
            let had_link = self.link.is_some();
            let outcome = self.exchange(batch, &frame).await;
            if let Err(e) = &outcome {
                self.disconnect();
                // A collector that stopped answering mid-upload: the next attempt goes
                // to the next one (a refusal is an answer, and stays).
                let silent = matches!(e, UplinkError::Timeout | UplinkError::Lost(_));
                if had_link && silent {
                    self.next_collector();
                }
            }
            outcome
        })
    }

    fn agent_id(&self) -> Option<String> {
        self.identity.as_ref().map(|i| i.info.agent_id.clone())
    }

    fn unknown_frames(&self) -> u64 {
        self.unknown_frames.load(Ordering::Relaxed)
    }

    fn take_plans(&mut self) -> Option<mpsc::UnboundedReceiver<AgentPlan>> {
        self.plans_out.take()
    }

    fn disconnect(&mut self) {
        if let Some(link) = self.link.take() {
            link.conn.close(0u32.into(), b"bye");
        }
    }
}

/// The next answer from the collector on `link`, within `timeout`.
async fn read_answer(link: &mut Connection, timeout: Duration) -> Result<Message, UplinkError> {
    match tokio::time::timeout(timeout, link.answers.recv()).await {
        Err(_) => Err(UplinkError::Timeout),
        Ok(None) => Err(UplinkError::Lost("the connection's reader ended".into())),
        Ok(Some(answer)) => answer,
    }
}

/// Reads every frame the collector sends on the stream until it ends: plans to
/// `plans`, unknown kinds counted in `unknown`, anything else to `answers`; the error
/// that ended the stream last.
async fn read_frames(
    mut recv: quinn::RecvStream,
    answers: mpsc::UnboundedSender<Result<Message, UplinkError>>,
    plans: mpsc::UnboundedSender<AgentPlan>,
    unknown: Arc<AtomicU64>,
) {
    let mut decoder = FrameDecoder::new(wire::DEFAULT_MAX_PAYLOAD);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        loop {
            match decoder.poll() {
                Ok(Some(Message::Unknown { kind, len })) => {
                    tracing::debug!(
                        kind,
                        len,
                        "skipped a frame of a kind this agent does not know"
                    );
                    unknown.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Some(Message::Plan(plan))) => {
                    tracing::debug!(version = plan.version, "plan received");
                    let _ = plans.send(plan);
                }
                Ok(Some(m)) => {
                    if answers.send(Ok(m)).is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = answers.send(Err(UplinkError::BadAnswer(e.to_string())));
                    return;
                }
            }
        }
        let ended = match recv.read(&mut buf).await {
            Ok(Some(n)) => {
                decoder.push(&buf[..n]);
                continue;
            }
            Ok(None) => UplinkError::Lost("stream closed".into()),
            Err(e) => closed(e),
        };
        let _ = answers.send(Err(ended));
        return;
    }
}

/// What a read error says: the collector's refusal when it closed the connection with
/// one of its codes (busy, revoked, unavailable), else a lost connection.
fn closed(e: quinn::ReadError) -> UplinkError {
    use sonde_proto::wire::{RejectReason, CLOSE_BUSY, CLOSE_REVOKED, CLOSE_UNAVAILABLE};
    if let quinn::ReadError::ConnectionLost(quinn::ConnectionError::ApplicationClosed(c)) = &e {
        let message = String::from_utf8_lossy(&c.reason).into_owned();
        let reason = match u32::try_from(c.error_code.into_inner()) {
            Ok(CLOSE_REVOKED) => Some(RejectReason::Revoked),
            Ok(CLOSE_BUSY) => Some(RejectReason::Busy),
            Ok(CLOSE_UNAVAILABLE) => Some(RejectReason::Unavailable),
            _ => None,
        };
        if let Some(reason) = reason {
            return UplinkError::Refused { reason, message };
        }
    }
    UplinkError::Lost(e.to_string())
}
