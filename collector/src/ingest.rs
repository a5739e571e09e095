//! Ingest without a transport: bytes of one agent's stream go in, frames to send back
//! come out. Uploads are committed to the store before their ids are acknowledged;
//! anything that is not a valid frame is refused with a reason, counted, and ends the
//! stream. The agent's identity and site come from the [`Delivery`] the transport
//! established (its certificate and enrolment record), never from the payload. A
//! connection without a certificate may only enrol. The QUIC listener wraps this.
//!
//! Commits go through one writer thread ([`Committer`]) that gathers the uploads
//! waiting at that moment into one transaction (group commit): one fsync serves many
//! agents, which is what lets a fleet backfill quickly.

use crate::fleet::Fleet;
use crate::pki::{Ca, PkiError};
use chrono::{DateTime, Utc};
use sonde_proto::wire::{
    self, Ack, EnrolToken, Enroll, Enrolled, FrameDecoder, Message, RawRecord, Reject, RejectReason,
};
use sonde_proto::ResultRecord;
use sonde_store::{Batch, Delivery, EnrolError, Inserted, Store};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Results gathered into one transaction at most.
pub const MAX_GROUP_RESULTS: usize = 20_000;
/// Results waiting for the writer at most. An upload beyond this waits for room
/// without reading more from its stream, so QUIC flow control slows the agents down
/// instead of the collector buffering (or parsing) a whole fleet's backfill at once.
pub const MAX_QUEUED_RESULTS: usize = 50_000;
/// An upload that found no room for this long is refused with `unavailable`
/// (counted); the agent retries after its backoff. Below the agents' answer timeout.
pub const MAX_QUEUE_WAIT: Duration = Duration::from_secs(12);

struct Job {
    batch: Batch,
    done: oneshot::Sender<Result<Inserted, String>>,
    permits: usize,
}

/// Counters of the commit path, read by `/metrics`.
#[derive(Debug)]
pub struct CommitStats {
    /// Results newly stored.
    pub results_new: AtomicU64,
    /// Results re-sent and already stored.
    pub results_duplicate: AtomicU64,
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Uploads committed.
    pub batches: AtomicU64,
    /// Total time spent committing, microseconds.
    pub commit_us: AtomicU64,
    /// Transactions that failed.
    pub failures: AtomicU64,
    /// Time of each transaction, from its start to its durable commit.
    pub commit_seconds: prometheus::Histogram,
}

impl Default for CommitStats {
    fn default() -> Self {
        let opts = prometheus::HistogramOpts::new(
            "sonde_collector_commit_seconds",
            "Time to commit a group of uploads durably (fsync included).",
        )
        .buckets(vec![
            0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
        ]);
        CommitStats {
            results_new: AtomicU64::new(0),
            results_duplicate: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            commit_us: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            commit_seconds: prometheus::Histogram::with_opts(opts)
                .unwrap_or_else(|_| unreachable!("static histogram options are valid")),
        }
    }
}

/// The single writer: commits uploads in groups, then answers each.
#[derive(Debug, Clone)]
pub struct Committer {
    jobs: mpsc::Sender<Job>,
    stats: Arc<CommitStats>,
    room: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").finish_non_exhaustive()
    }
}

impl Committer {
    /// Starts the writer thread over `store`. It stops when every handle is dropped.
    pub fn start(store: Arc<dyn Store>) -> Committer {
        let (jobs, mut rx) = mpsc::channel::<Job>(4096);
        let stats = Arc::new(CommitStats::default());
        let room = Arc::new(tokio::sync::Semaphore::new(MAX_QUEUED_RESULTS));
        let s = stats.clone();
        let r = room.clone();
        let spawned = std::thread::Builder::new()
            .name("sonde-commit".into())
            .spawn(move || {
                while let Some(first) = rx.blocking_recv() {
                    let mut group = vec![first];
                    let mut n = group[0].batch.records.len();
                    while n < MAX_GROUP_RESULTS {
                        match rx.try_recv() {
                            Ok(job) => {
                                n += job.batch.records.len();
                                group.push(job);
                            }
                            Err(_) => break,
                        }
                    }
                    let permits: usize = group.iter().map(|j| j.permits).sum();
                    commit_group(store.as_ref(), group, &s);
                    r.add_permits(permits);
                }
            });
        if let Err(e) = spawned {
            // Without a thread every commit fails with `unavailable`: agents keep
            // their results and retry; nothing is lost.
            tracing::error!(error = %e, "cannot start the commit thread");
        }
        Committer { jobs, stats, room }
    }

    /// Commits `batch` (with whatever else is waiting) and returns once it is durable.
    /// Waits for room while the writer has [`MAX_QUEUED_RESULTS`] waiting; refuses
    /// after [`MAX_QUEUE_WAIT`].
    pub async fn commit(&self, batch: Batch) -> Result<Inserted, String> {
        let permits = batch.records.len().clamp(1, MAX_QUEUED_RESULTS);
        let room = tokio::time::timeout(MAX_QUEUE_WAIT, self.room.acquire_many(permits as u32))
            .await
            .map_err(|_| "the collector is busy".to_string())?
            .map_err(|_| "the commit thread is gone".to_string())?;
        // Given back by the writer once the group holding this batch is committed.
        room.forget();
        let (done, wait) = oneshot::channel();
        self.jobs
            .send(Job {
                batch,
                done,
                permits,
            })
            .await
            .map_err(|_| "the commit thread is gone".to_string())?;
        wait.await
            .map_err(|_| "the commit thread is gone".to_string())?
    }

    /// The commit counters.
    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }
}

fn commit_group(store: &dyn Store, group: Vec<Job>, stats: &CommitStats) {
    let (batches, waiters): (Vec<Batch>, Vec<_>) =
        group.into_iter().map(|j| (j.batch, j.done)).unzip();
    let started = Instant::now();
    let result = store.insert_batches(&batches, Utc::now());
    let took = started.elapsed();
    stats
        .commit_us
        .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    stats.commit_seconds.observe(took.as_secs_f64());
    match result {
        Ok(done) => {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats
                .batches
                .fetch_add(batches.len() as u64, Ordering::Relaxed);
            for (inserted, waiter) in done.into_iter().zip(waiters) {
                stats
                    .results_new
                    .fetch_add(inserted.new as u64, Ordering::Relaxed);
                stats
                    .results_duplicate
                    .fetch_add(inserted.duplicates as u64, Ordering::Relaxed);
                let _ = waiter.send(Ok(inserted));
            }
        }
        Err(e) => {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            let message = e.to_string();
            for waiter in waiters {
                let _ = waiter.send(Err(message.clone()));
            }
        }
    }
}

/// The ingest side of the collector.
pub struct Ingest {
    store: Arc<dyn Store>,
    fleet: Option<Arc<Fleet>>,
    committer: Committer,
    ca: Option<Arc<Ca>>,
    max_payload: usize,
    rejects: Mutex<BTreeMap<RejectReason, u64>>,
    enrolments: AtomicU64,
    connections: AtomicU64,
    frames_skipped: AtomicU64,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("max_payload", &self.max_payload)
            .finish_non_exhaustive()
    }
}

/// One agent stream being read.
#[derive(Debug)]
pub struct Session {
    decoder: FrameDecoder,
    delivery: Option<Delivery>,
    peer: String,
    /// Set when the connection's agent was revoked: why its uploads are refused.
    pub revoked: Option<String>,
}

/// What to do after some bytes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// Frames to send back, in order.
    pub send: Vec<u8>,
    /// Whether the stream must be closed (after sending).
    pub close: bool,
}

/// Reads every record of an upload; the first that is not a record of this schema
/// refuses the whole upload (nothing of it is stored).
fn parse_all(raw: &[RawRecord]) -> Result<Vec<ResultRecord>, String> {
    raw.iter()
        .enumerate()
        .map(|(i, r)| {
            r.parse()
                .map_err(|e| format!("result {i} of the upload: {e}"))
        })
        .collect()
}

/// How long an enrolment token lives by default.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// SHA-256 (hex) of a token's secret: what the store keeps.
pub fn token_hash(token: &EnrolToken) -> String {
    wire::hex(ring::digest::digest(&ring::digest::SHA256, &token.secret).as_ref())
}

/// A fresh token for the CA `ca`.
pub fn new_token(ca: &Ca) -> EnrolToken {
    EnrolToken {
        secret: rand::random(),
        ca_fingerprint: crate::pki::fingerprint(ca.cert()),
    }
}

/// An agent id for an agent of `building`: the building, cleaned to `[a-z0-9-]`, and
/// a random suffix.
pub fn new_agent_id(building: &str) -> String {
    let mut slug: String = building
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    slug = slug.trim_matches('-').to_string();
    if slug.is_empty() {
        slug = "agent".into();
    }
    format!("{slug}-{}", wire::hex(&rand::random::<[u8; 3]>()))
}

impl Ingest {
    /// Ingest into `store`, refusing frames above `max_payload` bytes. Without a `ca`
    /// enrolments are refused. Committed results and health update `fleet`.
    pub fn new(
        store: Arc<dyn Store>,
        ca: Option<Arc<Ca>>,
        fleet: Option<Arc<Fleet>>,
        max_payload: usize,
    ) -> Self {
        Ingest {
            committer: Committer::start(store.clone()),
            fleet,
            store,
            ca,
            max_payload,
            rejects: Mutex::new(BTreeMap::new()),
            enrolments: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            frames_skipped: AtomicU64::new(0),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The fleet's series, when kept.
    pub fn fleet(&self) -> Option<&Arc<Fleet>> {
        self.fleet.as_ref()
    }

    /// The commit path's counters.
    pub fn commit_stats(&self) -> &CommitStats {
        self.committer.stats()
    }

    /// Agent connections held now.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Counts a connection opened (`true`) or closed (`false`); the transport calls it.
    pub fn connection(&self, opened: bool) {
        if opened {
            self.connections.fetch_add(1, Ordering::Relaxed);
        } else {
            self.connections.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Frames of kinds this collector does not know, skipped since start.
    pub fn frames_skipped(&self) -> u64 {
        self.frames_skipped.load(Ordering::Relaxed)
    }

    /// Agents enrolled since start.
    pub fn enrolments(&self) -> u64 {
        self.enrolments.load(Ordering::Relaxed)
    }

    /// A session for a stream from `delivery` (the agent the transport authenticated),
    /// or from an unauthenticated peer that may only enrol.
    pub fn session(&self, delivery: Option<Delivery>, peer: String) -> Session {
        Session {
            decoder: FrameDecoder::new(self.max_payload),
            delivery,
            peer,
            revoked: None,
        }
    }

    /// Rejects so far, by reason.
    pub fn rejects(&self) -> BTreeMap<RejectReason, u64> {
        self.rejects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Counts a refusal (also used by the transport for failed handshakes).
    pub fn count(&self, reason: RejectReason) {
        *self
            .rejects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    /// Handles bytes received on `session`'s stream at `now`.
    pub async fn receive(&self, session: &mut Session, bytes: &[u8], now: DateTime<Utc>) -> Reply {
        session.decoder.push(bytes);
        let mut reply = Reply::default();
        loop {
            match session.decoder.poll() {
                Ok(None) => return reply,
                Ok(Some(Message::Upload(upload))) => {
                    if let Some(why) = session.revoked.clone() {
                        return self.refuse(session, reply, RejectReason::Revoked, why);
                    }
                    let Some(delivery) = session.delivery.clone() else {
                        return self.refuse(
                            session,
                            reply,
                            RejectReason::Unauthenticated,
                            "uploads need an enrolled agent's certificate; run sonde-agent enroll"
                                .into(),
                        );
                    };
                    // Each record is read once, here, for the columns beside it; its
                    // bytes are stored as the agent sent them. Identity and site are
                    // the transport's (the delivery), whatever the payload says.
                    let records = match parse_all(&upload.results) {
                        Ok(records) => records,
                        Err(message) => {
                            return self.refuse(session, reply, RejectReason::BadMessage, message)
                        }
                    };
                    let committed: Vec<_> = records.iter().map(|r| r.id).collect();
                    let batch = Batch {
                        delivery,
                        records,
                        raw: upload.results,
                        health: Some(upload.health),
                    };
                    // The fleet's series need the batch after the commit: keep what
                    // they read, not a second copy of the JSON.
                    let keep = self.fleet.as_ref().map(|_| {
                        (
                            batch.delivery.clone(),
                            batch.records.clone(),
                            batch.health.clone(),
                        )
                    });
                    match self.committer.commit(batch).await {
                        Ok(inserted) => {
                            if let (Some(fleet), Some((delivery, records, health))) =
                                (&self.fleet, keep)
                            {
                                for (r, fresh) in records.iter().zip(&inserted.fresh) {
                                    fleet.result(&delivery, r, *fresh);
                                }
                                fleet.health(&delivery, health.as_ref(), Utc::now());
                            }
                            let ack = Ack {
                                batch: upload.batch,
                                committed,
                            };
                            reply.send.extend(wire::encode(&Message::Ack(ack)));
                        }
                        Err(e) => {
                            // Nothing is acknowledged: the agent keeps the batch and retries.
                            self.count(RejectReason::Unavailable);
                            tracing::warn!(peer = %session.peer, error = %e, "commit failed");
                            let reject = Reject {
                                batch: Some(upload.batch),
                                reason: RejectReason::Unavailable,
                                message: format!("{e}; retry later"),
                            };
                            reply.send.extend(wire::encode(&Message::Reject(reject)));
                        }
                    }
                }
                Ok(Some(Message::Enroll(enroll))) => {
                    let (send, reason, message) = self.enrol(session, &enroll, now);
                    reply.send.extend(send);
                    if let Some(reason) = reason {
                        self.count(reason);
                        tracing::info!(peer = %session.peer, ?reason, %message, "enrolment refused");
                    }
                    // One enrolment per stream, whatever its outcome.
                    reply.close = true;
                    return reply;
                }
                Ok(Some(Message::Unknown { kind, len })) => {
                    // From a newer agent: skipped by its length, counted, read on.
                    self.frames_skipped.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(peer = %session.peer, kind, len, "skipped a frame of an unknown kind");
                }
                Ok(Some(_)) => {
                    return self.refuse(
                        session,
                        reply,
                        RejectReason::BadMessage,
                        "agents send uploads or an enrolment only".into(),
                    )
                }
                Err(e) => {
                    let message = e.to_string();
                    return self.refuse(session, reply, e.reason(), message);
                }
            }
        }
    }

    /// Enrols the peer: checks the request, uses the token, signs the certificate.
    /// Returns the frame to send and, when refused, the reason and message.
    fn enrol(
        &self,
        session: &Session,
        enroll: &Enroll,
        now: DateTime<Utc>,
    ) -> (Vec<u8>, Option<RejectReason>, String) {
        let refuse = |reason: RejectReason, message: String| {
            let frame = wire::encode(&Message::Reject(Reject {
                batch: None,
                reason,
                message: message.clone(),
            }));
            (frame, Some(reason), message)
        };
        if session.delivery.is_some() {
            return refuse(
                RejectReason::BadMessage,
                "this agent is enrolled already".into(),
            );
        }
        let Some(ca) = &self.ca else {
            return refuse(
                RejectReason::Unavailable,
                "this collector does not enrol agents".into(),
            );
        };
        let token: EnrolToken = match enroll.token.parse() {
            Ok(t) => t,
            Err(e) => return refuse(RejectReason::TokenUnknown, e),
        };
        // Check the request first (a bad one uses nothing up), then use the token.
        let request = match ca.check_request(&enroll.csr_pem) {
            Ok(r) => r,
            Err(e) => return refuse(RejectReason::BadCsr, e.to_string()),
        };
        let hash = token_hash(&token);
        let name = |site: &sonde_store::Site| new_agent_id(&site.building);
        let (agent_id, site) = match self.store.enrol(&hash, now, &name) {
            Ok(enrolled) => enrolled,
            Err(EnrolError::Unknown) => {
                return refuse(RejectReason::TokenUnknown, "unknown token".into())
            }
            Err(e @ EnrolError::Expired(_)) => {
                return refuse(RejectReason::TokenExpired, e.to_string())
            }
            Err(e @ EnrolError::Used(_)) => return refuse(RejectReason::TokenUsed, e.to_string()),
            Err(EnrolError::Store(e)) => {
                return refuse(RejectReason::Unavailable, format!("store: {e}"))
            }
        };
        let signed = ca.sign_agent_request(request, &agent_id);
        match signed {
            Ok(cert_pem) => {
                self.enrolments.fetch_add(1, Ordering::Relaxed);
                if let (Some(fleet), Some(lat), Some(lon)) =
                    (&self.fleet, site.latitude, site.longitude)
                {
                    fleet.building(&agent_id, &site.quartier, &site.building, lat, lon);
                }
                tracing::info!(peer = %session.peer, agent = %agent_id, building = %site.building, quartier = %site.quartier, "agent enrolled");
                let frame = wire::encode(&Message::Enrolled(Enrolled {
                    agent_id,
                    cert_pem,
                    ca_pem: crate::pki::cert_pem(ca.cert()),
                    quartier: site.quartier,
                    building: site.building,
                }));
                (frame, None, String::new())
            }
            Err(e @ PkiError::Csr(_)) => refuse(RejectReason::BadCsr, e.to_string()),
            Err(e) => refuse(RejectReason::Unavailable, e.to_string()),
        }
    }

    fn refuse(
        &self,
        session: &Session,
        mut reply: Reply,
        reason: RejectReason,
        message: String,
    ) -> Reply {
        self.count(reason);
        tracing::info!(peer = %session.peer, ?reason, %message, "frame refused");
        reply.send.extend(wire::encode(&Message::Reject(Reject {
            batch: None,
            reason,
            message,
        })));
        reply.close = true;
        reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonde_proto::wire::{Health, Upload};
    use sonde_proto::ResultRecord;
    use sonde_store::{ResultQuery, ResultReader};
    use sonde_store_sqlite::SqliteStore;

    fn record() -> ResultRecord {
        let mut r = ResultRecord::schema_example();
        r.id = uuid::Uuid::now_v7();
        r
    }

    fn setup() -> (Arc<SqliteStore>, Ingest, Session) {
        let store = Arc::new(SqliteStore::in_memory().expect("store"));
        let ingest = Ingest::new(store.clone(), None, None, 64 * 1024);
        let session = ingest.session(
            Some(Delivery {
                agent_id: "agent-7".into(),
                quartier: Some("q".into()),
                building: Some("b".into()),
            }),
            "test".into(),
        );
        (store, ingest, session)
    }

    fn decode(bytes: &[u8]) -> Vec<Message> {
        let mut d = FrameDecoder::new(1 << 20);
        d.push(bytes);
        let mut out = Vec::new();
        while let Some(m) = d.poll().expect("our own frames") {
            out.push(m);
        }
        out
    }

    fn upload(batch: u64, results: Vec<ResultRecord>) -> Vec<u8> {
        wire::encode(&Message::Upload(Upload {
            batch,
            health: Health::default(),
            results: results.iter().map(RawRecord::of).collect(),
        }))
    }

    #[tokio::test]
    async fn uploads_are_committed_then_acknowledged_and_resends_are_harmless() {
        let (store, ingest, mut s) = setup();
        let mut spoofed = record();
        spoofed.agent.id = Some("someone-else".into());
        let rs = vec![record(), spoofed];
        let ids: Vec<_> = rs.iter().map(|r| r.id).collect();
        let reply = ingest
            .receive(&mut s, &upload(1, rs.clone()), Utc::now())
            .await;
        assert!(!reply.close);
        assert_eq!(
            decode(&reply.send),
            vec![Message::Ack(Ack {
                batch: 1,
                committed: ids.clone()
            })]
        );
        // The same batch again, split across two reads: acknowledged, stored once.
        let bytes = upload(2, rs);
        let mut reply = ingest.receive(&mut s, &bytes[..7], Utc::now()).await;
        assert!(reply.send.is_empty());
        reply = ingest.receive(&mut s, &bytes[7..], Utc::now()).await;
        assert_eq!(
            decode(&reply.send),
            vec![Message::Ack(Ack {
                batch: 2,
                committed: ids
            })]
        );
        let page = store
            .results(&ResultQuery {
                limit: 10,
                ..Default::default()
            })
            .expect("page");
        assert_eq!(page.results.len(), 2);
        let stats = ingest.commit_stats();
        assert_eq!(stats.results_new.load(Ordering::Relaxed), 2);
        assert_eq!(stats.results_duplicate.load(Ordering::Relaxed), 2);
        for stored in &page.results {
            let r = stored.to_json();
            assert_eq!(
                r["agent"]["id"], "agent-7",
                "identity from the transport, not the payload"
            );
            assert_eq!(r["site"]["quartier"], "q");
        }
    }

    #[tokio::test]
    async fn bad_input_is_refused_with_a_counted_reason_and_closes_the_stream() {
        let cases: Vec<(Vec<u8>, RejectReason)> = vec![
            (b"GET / HTTP/1.1\r\n\r\n".to_vec(), RejectReason::BadFrame),
            (
                {
                    let mut f = upload(1, vec![]);
                    f[4] = 2;
                    f
                },
                RejectReason::UnsupportedVersion,
            ),
            (
                {
                    let mut f = wire::MAGIC.to_vec();
                    f.extend_from_slice(&[wire::VERSION, 1]);
                    f.extend_from_slice(&(10u32 << 20).to_be_bytes());
                    f
                },
                RejectReason::Oversize,
            ),
            (
                {
                    let mut f = wire::MAGIC.to_vec();
                    f.extend_from_slice(&[wire::VERSION, 1, 0, 0, 0, 5]);
                    f.extend_from_slice(b"{oops");
                    f
                },
                RejectReason::BadMessage,
            ),
            (
                wire::encode(&Message::Ack(Ack {
                    batch: 1,
                    committed: vec![],
                })),
                RejectReason::BadMessage,
            ),
        ];
        let (store, ingest, _) = setup();
        for (bytes, reason) in &cases {
            let mut s = ingest.session(
                Some(Delivery {
                    agent_id: "a".into(),
                    quartier: None,
                    building: None,
                }),
                "test".into(),
            );
            let reply = ingest.receive(&mut s, bytes, Utc::now()).await;
            assert!(reply.close, "{reason:?}");
            match decode(&reply.send).as_slice() {
                [Message::Reject(r)] => assert_eq!(r.reason, *reason),
                other => panic!("{reason:?}: {other:?}"),
            }
        }
        let counted = ingest.rejects();
        assert_eq!(counted.get(&RejectReason::BadMessage), Some(&2));
        assert_eq!(counted.values().sum::<u64>(), cases.len() as u64);
        assert!(store
            .results(&ResultQuery {
                limit: 10,
                ..Default::default()
            })
            .expect("page")
            .results
            .is_empty());
    }
}
