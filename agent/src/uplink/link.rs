//! The link as the daemon sees it: [`Link`], its errors, backoff between failures,
//! and how many results one upload carries.

use futures_util::future::BoxFuture;
use rand::Rng;
use sonde_proto::wire::{self, Health, RawRecord, RejectReason, Signatures};
use std::time::Duration;
use uuid::Uuid;

/// What one upload carries: results, oldest first, and the agent's signatures of them
/// (none for results spooled unsigned).
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    /// The records' bytes.
    pub results: Vec<RawRecord>,
    /// Their signatures, one per result.
    pub signatures: Option<Signatures>,
}

/// One agent's connection to its collector, however it is carried.
pub trait Link: Send {
    /// Sends `out` (possibly no result: a heartbeat carrying the health) and returns
    /// the ids the collector committed. On error the link is closed; the next send
    /// opens it again.
    fn send(
        &mut self,
        out: Outgoing,
        health: Health,
    ) -> BoxFuture<'_, Result<Vec<Uuid>, UplinkError>>;

    /// The agent id this link uploads as, once the agent is enrolled.
    fn agent_id(&self) -> Option<String>;

    /// Frames of kinds this agent does not know (from a newer collector), skipped.
    fn unknown_frames(&self) -> u64;

    /// Closes the connection, if one is open.
    fn disconnect(&mut self);

    /// Where the plans the collector pushes arrive, handed out once (links that carry
    /// no plans give none).
    fn take_plans(
        &mut self,
    ) -> Option<tokio::sync::mpsc::UnboundedReceiver<sonde_proto::plan::AgentPlan>> {
        None
    }
}

/// How long to wait for the collector's answer to a batch. A collector that died
/// mid-batch sends nothing more: after this the agent reconnects and sends the batch
/// again (harmless: the collector stores each id once).
/// Above the collector's longest wait for room in its commit queue (12 s).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);
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
    /// The identity in the state directory cannot be read.
    #[error("identity: {0}")]
    Identity(String),
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
    /// The collector acknowledged a batch, yet none of its results left the spool.
    #[error("the collector acknowledged none of the results sent")]
    NothingAcknowledged,
}

impl UplinkError {
    /// Stable name for counting.
    pub fn reason(&self) -> &'static str {
        match self {
            UplinkError::NotEnrolled => "not_enrolled",
            UplinkError::Identity(_) => "identity",
            UplinkError::Connect(_) => "connect",
            UplinkError::Lost(_) => "connection_lost",
            UplinkError::Timeout => "timeout",
            UplinkError::Refused { .. } => "refused",
            UplinkError::BadAnswer(_) => "bad_answer",
            UplinkError::NothingAcknowledged => "nothing_acknowledged",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use sonde_proto::wire::{Message, Upload};
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
            signatures: None,
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
