//! The QUIC uplink to the collector: batches of spooled results, oldest first, each
//! removed from the spool only when the collector acknowledged its id after commit.
//! Connection failures are retried with exponential backoff and full jitter.

use crate::identity::{self, Identity};
use rand::Rng;
use sonde_proto::wire::{self, FrameDecoder, Health, Message, RawRecord, RejectReason, Upload};
use std::time::Duration;
use uuid::Uuid;

/// How long to wait for the collector's answer to a batch. A collector that died
/// mid-batch sends nothing more: after this the agent reconnects and sends the batch
/// again (harmless: the collector stores each id once).
/// Above the collector's longest wait for room in its commit queue (12 s).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a QUIC handshake may take before the collector counts as unreachable
/// (QUIC over UDP gets no "connection refused").
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes of results one upload carries at most: well under the collector's frame
/// bound ([`wire::DEFAULT_MAX_PAYLOAD`]), whatever the configured batch size.
pub const MAX_BATCH_BYTES: usize = wire::DEFAULT_MAX_PAYLOAD / 2;

/// How many of `results` (oldest first) fit in one upload of at most `max_bytes` of
/// encoded records; always at least one (a record is bounded far below the frame).
pub fn fitting(results: &[RawRecord], max_bytes: usize) -> usize {
    let mut used = 0;
    for (i, r) in results.iter().enumerate() {
        // Each record's JSON plus its separator in the array.
        used += r.as_str().len() + 1;
        if used > max_bytes {
            return i.max(1);
        }
    }
    results.len()
}

/// Exponential backoff with full jitter: the n-th wait is uniform in
/// `[base/2, min(max, base·2ⁿ)]`, so a fleet that lost its collector together does not
/// come back together.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Backoff from `base` up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max: max.max(base),
            attempt: 0,
        }
    }

    /// The next wait.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let low = self.base / 2;
        if ceiling <= low {
            return ceiling;
        }
        rng.random_range(low..=ceiling)
    }

    /// After a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Why an upload did not go through. `reason()` names are counted in the health.
#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    /// No identity yet.
    #[error("not enrolled: run sonde-agent enroll")]
    NotEnrolled,
    /// Connecting failed.
    #[error("connect: {0}")]
    Connect(String),
    /// The connection or stream broke.
    #[error("connection lost: {0}")]
    Lost(String),
    /// No answer in time.
    #[error("no answer within {} s", ANSWER_TIMEOUT.as_secs())]
    Timeout,
    /// The collector refused the batch.
    #[error("refused ({reason:?}): {message}")]
    Refused {
        /// Why.
        reason: RejectReason,
        /// Detail.
        message: String,
    },
    /// The answer was not a frame.
    #[error("bad answer: {0}")]
    BadAnswer(String),
}

impl UplinkError {
    /// Stable name for counting.
    pub fn reason(&self) -> &'static str {
        match self {
            UplinkError::NotEnrolled => "not_enrolled",
            UplinkError::Connect(_) => "connect",
            UplinkError::Lost(_) => "connection_lost",
            UplinkError::Timeout => "timeout",
            UplinkError::Refused { .. } => "refused",
            UplinkError::BadAnswer(_) => "bad_answer",
        }
    }
}

struct Link {
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
}

/// The agent's side of the uplink: one connection and one stream, reopened on failure.
pub struct Uplink {
    address: String,
    endpoint: Option<quinn::Endpoint>,
    link: Option<Link>,
    next_batch: u64,
    unknown_frames: u64,
}

impl std::fmt::Debug for Uplink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uplink")
            .field("address", &self.address)
            .field("connected", &self.link.is_some())
            .finish_non_exhaustive()
    }
}

impl Uplink {
    /// An uplink to the collector at `address` (`HOST:PORT`).
    pub fn new(address: &str) -> Self {
        Uplink {
            address: address.to_string(),
            endpoint: None,
            link: None,
            next_batch: 1,
            unknown_frames: 0,
        }
    }

    /// Frames of kinds this agent does not know (from a newer collector), skipped.
    pub fn unknown_frames(&self) -> u64 {
        self.unknown_frames
    }

    /// Whether a connection is open.
    pub fn connected(&self) -> bool {
        self.link.is_some()
    }

    /// Drops the connection (after an error, or to stop).
    pub fn disconnect(&mut self) {
        if let Some(link) = self.link.take() {
            link.conn.close(0u32.into(), b"bye");
        }
    }

    async fn link(&mut self, identity: &Identity) -> Result<&mut Link, UplinkError> {
        if self
            .link
            .as_ref()
            .is_some_and(|l| l.conn.close_reason().is_some())
        {
            self.link = None;
        }
        if self.link.is_none() {
            let (addr, host) = identity::resolve(&self.address)
                .await
                .map_err(|e| UplinkError::Connect(e.to_string()))?;
            if self.endpoint.is_none() {
                let mut endpoint = identity::client_endpoint(addr)
                    .map_err(|e| UplinkError::Connect(e.to_string()))?;
                endpoint.set_default_client_config(
                    identity
                        .client_config()
                        .map_err(|e| UplinkError::Connect(e.to_string()))?,
                );
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
            self.link = Some(Link {
                conn,
                send,
                recv,
                decoder: FrameDecoder::new(wire::DEFAULT_MAX_PAYLOAD),
            });
        }
        self.link.as_mut().ok_or(UplinkError::NotEnrolled)
    }

    /// Sends `results` (possibly none: a heartbeat carrying the health) and returns
    /// the ids the collector committed.
    pub async fn send(
        &mut self,
        identity: &Identity,
        results: Vec<RawRecord>,
        health: Health,
    ) -> Result<Vec<Uuid>, UplinkError> {
        let batch = self.next_batch;
        self.next_batch += 1;
        let frame = wire::encode(&Message::Upload(Upload {
            batch,
            health,
            results,
        }));
        let outcome = self.exchange(identity, batch, &frame).await;
        if outcome.is_err() {
            self.disconnect();
        }
        outcome
    }

    async fn exchange(
        &mut self,
        identity: &Identity,
        batch: u64,
        frame: &[u8],
    ) -> Result<Vec<Uuid>, UplinkError> {
        let link = self.link(identity).await?;
        tracing::debug!(batch, bytes = frame.len(), "sending");
        let written = tokio::time::timeout(ANSWER_TIMEOUT, link.send.write_all(frame))
            .await
            .map_err(|_| UplinkError::Timeout)?;
        let (answer, skipped) = match written {
            Ok(()) => read_answer(link, ANSWER_TIMEOUT).await?,
            // A collector that refuses a frame says why, then stops reading: the reason
            // is worth a second to read before calling the connection lost.
            Err(e) => match read_answer(link, Duration::from_secs(1)).await {
                Ok((m @ Message::Reject(_), skipped)) => (m, skipped),
                _ => return Err(UplinkError::Lost(e.to_string())),
            },
        };
        self.unknown_frames += skipped;
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

/// The next frame from the collector on `link` that this agent knows, within
/// `timeout`, and how many frames of unknown kinds were skipped before it.
async fn read_answer(link: &mut Link, timeout: Duration) -> Result<(Message, u64), UplinkError> {
    tokio::time::timeout(timeout, async {
        let mut buf = vec![0u8; 64 * 1024];
        let mut skipped = 0;
        loop {
            match link
                .decoder
                .poll()
                .map_err(|e| UplinkError::BadAnswer(e.to_string()))?
            {
                Some(Message::Unknown { kind, len }) => {
                    tracing::debug!(
                        kind,
                        len,
                        "skipped a frame of a kind this agent does not know"
                    );
                    skipped += 1;
                    continue;
                }
                Some(m) => return Ok((m, skipped)),
                None => {}
            }
            match link.recv.read(&mut buf).await {
                Ok(Some(n)) => link.decoder.push(&buf[..n]),
                Ok(None) => return Err(UplinkError::Lost("stream closed".into())),
                Err(e) => return Err(UplinkError::Lost(e.to_string())),
            }
        }
    })
    .await
    .map_err(|_| UplinkError::Timeout)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use sonde_proto::ResultRecord;

    #[test]
    fn batches_are_cut_to_fit_the_frame_bound() {
        let small = ResultRecord::schema_example();
        let size = small.to_json().len() + 1;
        let many = vec![RawRecord::of(&small); 10];
        assert_eq!(fitting(&many, 100 * size), 10);
        assert_eq!(fitting(&many, 3 * size), 3);
        assert_eq!(fitting(&many, 3 * size - 1), 2);
        assert_eq!(fitting(&many, 1), 1, "one record always goes");
        assert_eq!(fitting(&[], 1), 0);
        // 500 records of the largest size the reader accepts fit in one frame: no.
        let mut big = small;
        big.flags.clear();
        let pad = sonde_proto::MAX_RECORD_BYTES - big.to_json().len() - 100;
        big.run.responder.url = "x".repeat(pad);
        let big = RawRecord::of(&big);
        let n = fitting(&vec![big.clone(); 500], MAX_BATCH_BYTES);
        assert!(n < 500 && n > 10, "{n}");
        let frame = wire::encode(&Message::Upload(Upload {
            batch: 1,
            health: Health::default(),
            results: vec![big; n],
        }));
        assert!(
            frame.len() < wire::DEFAULT_MAX_PAYLOAD,
            "{} bytes",
            frame.len()
        );
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter_and_resets() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        let mut b = Backoff::new(base, max);
        let delays: Vec<Duration> = (0..12).map(|_| b.next_delay(&mut rng)).collect();
        for (n, d) in delays.iter().enumerate() {
            let ceiling = (base * (1 << n)).min(max);
            assert!(*d >= base / 2 && *d <= ceiling, "attempt {n}: {d:?}");
        }
        assert!(delays[8..].iter().any(|d| *d > Duration::from_secs(20)));
        // Jitter: many agents failing together spread out.
        let spread: std::collections::HashSet<u128> = (0..50)
            .map(|i| {
                let mut rng = rand::rngs::SmallRng::seed_from_u64(i);
                let mut b = Backoff::new(base, max);
                (0..6)
                    .map(|_| b.next_delay(&mut rng))
                    .last()
                    .unwrap_or_default()
                    .as_millis()
            })
            .collect();
        assert!(spread.len() > 40, "{} distinct waits", spread.len());
        b.reset();
        assert!(b.next_delay(&mut rng) <= base);
    }
}
