//! Ingest without a transport: bytes of one agent's stream go in, frames to send back
//! come out. Uploads are committed ([`committer`]) before their ids are acknowledged;
//! anything that is not a valid frame is refused with a reason, counted, and ends the
//! stream; a frame of a kind from a newer agent is skipped and counted. The agent's
//! identity and site come from the [`Delivery`] the transport established (its
//! certificate and enrolment record), never from the payload. A connection without a
//! certificate may only enrol ([`enrolment`]). The QUIC transport wraps this.

pub mod committer;
pub mod enrolment;
pub mod signed;

pub use committer::{
    CommitStats, Committer, MAX_GROUP_RESULTS, MAX_QUEUED_RESULTS, MAX_QUEUE_WAIT,
};
pub use enrolment::{new_agent_id, new_token, token_hash, DEFAULT_TOKEN_TTL};

use crate::ca::CertificateAuthority;
use crate::fleet::FleetView;
use crate::plans::InForce;
use chrono::{DateTime, Utc};
use sonde_proto::wire::{
    self, Ack, Enroll, FrameDecoder, Message, RawRecord, Reject, RejectReason, Upload,
};
use sonde_proto::ResultRecord;
use sonde_store::{Batch, Delivery, Store};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The ingest side of the collector.
pub struct Ingest {
    store: Arc<dyn Store>,
    fleet: Option<Arc<dyn FleetView>>,
    committer: Committer,
    ca: Option<Arc<dyn CertificateAuthority>>,
    max_payload: usize,
    rejects: Mutex<BTreeMap<RejectReason, u64>>,
    enrolments: AtomicU64,
    connections: AtomicU64,
    frames_skipped: AtomicU64,
    future_dated: AtomicU64,
    /// Results agents' chains show missing (signed on the box, never arrived).
    missing: AtomicU64,
    in_flight: AtomicU64,
    /// Revoked agents and when, as the store last said (watched by the server).
    revoked: std::sync::RwLock<std::collections::HashMap<String, DateTime<Utc>>>,
    /// The plan in force, as the store last said (watched by the server).
    plan: tokio::sync::watch::Sender<Option<Arc<InForce>>>,
    plans_pushed: AtomicU64,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("max_payload", &self.max_payload)
            .finish_non_exhaustive()
    }
}

/// Why a revoked agent is refused.
pub fn revoked_message(agent_id: &str, at: DateTime<Utc>) -> String {
    format!(
        "agent {agent_id} was revoked on {}; enrol it again with a new token (its results stay on the box)",
        at.format("%Y-%m-%d %H:%M UTC")
    )
}

/// Largest frame a connection without a certificate may send (an enrolment is a token
/// and a certificate request: about 1 KiB).
pub const MAX_ENROLMENT_FRAME: usize = 16 * 1024;

/// One agent stream being read.
#[derive(Debug)]
pub struct Session {
    decoder: FrameDecoder,
    delivery: Option<Delivery>,
    peer: String,
    /// Set when the connection's agent was revoked: why its uploads are refused.
    pub revoked: Option<String>,
    /// The plan version the agent said it runs (0: none) or last refused, from its
    /// latest upload's health; `None` before its first upload.
    agent_plan: Option<(u64, Option<u64>)>,
    /// The plan version last sent on this stream.
    plan_sent: Option<u64>,
}

impl Session {
    /// Bytes of the frame in progress held now.
    pub fn buffered(&self) -> usize {
        self.decoder.buffered()
    }
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

impl Ingest {
    /// Ingest into `store`, refusing frames above `max_payload` bytes. Without a `ca`
    /// enrolments are refused. Committed results and health update `fleet`.
    pub fn new(
        store: Arc<dyn Store>,
        ca: Option<Arc<dyn CertificateAuthority>>,
        fleet: Option<Arc<dyn FleetView>>,
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
            future_dated: AtomicU64::new(0),
            missing: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            revoked: Default::default(),
            plan: tokio::sync::watch::Sender::new(None),
            plans_pushed: AtomicU64::new(0),
        }
    }

    /// Sets the plan in force: streams of connected agents push it.
    pub fn set_plan(&self, plan: Option<Arc<InForce>>) {
        self.plan.send_replace(plan);
    }

    /// The plan in force, changing.
    pub fn plan_watch(&self) -> tokio::sync::watch::Receiver<Option<Arc<InForce>>> {
        self.plan.subscribe()
    }

    /// The version of the plan in force (0: none).
    pub fn plan_version(&self) -> u64 {
        self.plan.borrow().as_ref().map_or(0, |p| p.version)
    }

    /// Plan frames sent to agents since start.
    pub fn plans_pushed(&self) -> u64 {
        self.plans_pushed.load(Ordering::Relaxed)
    }

    /// The frame pushing the plan in force to `session`'s agent, when it has a
    /// plan for the agent's building that the agent neither runs, nor refused, nor was
    /// sent on this stream. Nothing before the agent's first upload (its version is
    /// not known yet).
    pub fn plan_frame(&self, session: &mut Session) -> Option<Vec<u8>> {
        let (runs, refused) = session.agent_plan?;
        let delivery = session.delivery.as_ref()?;
        let plan = self.plan.borrow().clone()?;
        if runs == plan.version
            || refused == Some(plan.version)
            || session.plan_sent == Some(plan.version)
        {
            return None;
        }
        let (q, b) = (delivery.quartier.as_deref()?, delivery.building.as_deref()?);
        let pushed = plan.plan.for_site(plan.version, plan.applied_at, q, b)?;
        session.plan_sent = Some(plan.version);
        self.plans_pushed.fetch_add(1, Ordering::Relaxed);
        tracing::info!(agent = %delivery.agent_id, version = plan.version, "plan pushed");
        Some(wire::encode(&Message::Plan(pushed)))
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The fleet's series, when kept.
    pub fn fleet(&self) -> Option<&Arc<dyn FleetView>> {
        self.fleet.as_ref()
    }

    /// The writer.
    pub fn committer(&self) -> &Committer {
        &self.committer
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

    /// Uploads being committed now (what a drain waits for).
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The revoked agents, as the store says now.
    pub fn set_revoked(&self, revoked: Vec<(String, DateTime<Utc>)>) {
        *self.revoked.write().unwrap_or_else(|e| e.into_inner()) = revoked.into_iter().collect();
    }

    /// Why `agent_id`'s uploads are refused, when it was revoked.
    pub fn revocation(&self, agent_id: &str) -> Option<String> {
        let revoked = self.revoked.read().unwrap_or_else(|e| e.into_inner());
        revoked
            .get(agent_id)
            .map(|at| revoked_message(agent_id, *at))
    }

    /// Frames of kinds this collector does not know, skipped since start.
    pub fn frames_skipped(&self) -> u64 {
        self.frames_skipped.load(Ordering::Relaxed)
    }

    /// Results received dated more than [`sonde_store::FUTURE_DATED`] after their
    /// arrival (a box's wrong clock), since start.
    pub fn future_dated(&self) -> u64 {
        self.future_dated.load(Ordering::Relaxed)
    }

    /// Results agents' chains showed missing since start.
    pub fn missing(&self) -> u64 {
        self.missing.load(Ordering::Relaxed)
    }

    /// Agents enrolled since start.
    pub fn enrolments(&self) -> u64 {
        self.enrolments.load(Ordering::Relaxed)
    }

    /// A session for a stream from `delivery` (the agent the transport authenticated),
    /// or from an unauthenticated peer that may only enrol.
    pub fn session(&self, delivery: Option<Delivery>, peer: String) -> Session {
        // A peer without a certificate may only send an enrolment: a small frame.
        let bound = match delivery {
            Some(_) => self.max_payload,
            None => MAX_ENROLMENT_FRAME,
        };
        Session {
            decoder: FrameDecoder::new(bound),
            delivery,
            peer,
            revoked: None,
            agent_plan: None,
            plan_sent: None,
        }
    }

    /// Refuses `session`'s stream as busy (no room to buffer its frame), counted: the
    /// frame to send.
    pub fn refuse_busy(&self, session: &mut Session) -> Vec<u8> {
        let reply = self.refuse(
            session,
            Reply::default(),
            RejectReason::Unavailable,
            "the collector is busy; retry later".into(),
        );
        reply.send
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
                    let plan = upload.health.plan.as_ref();
                    let agent_plan = (
                        plan.map_or(0, |p| p.version),
                        plan.and_then(|p| p.refused.as_ref()).map(|r| r.version),
                    );
                    match self.upload(session, upload).await {
                        Ok(frame) => {
                            reply.send.extend(frame);
                            session.agent_plan = Some(agent_plan);
                            if let Some(push) = self.plan_frame(session) {
                                reply.send.extend(push);
                            }
                        }
                        Err((reason, why)) => return self.refuse(session, reply, reason, why),
                    }
                }
                Ok(Some(Message::Enroll(enroll))) => {
                    reply.send.extend(self.enrol(session, enroll, now).await);
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
                    let why = "agents send uploads or an enrolment only".to_string();
                    return self.refuse(session, reply, RejectReason::BadMessage, why);
                }
                Err(e) => {
                    let message = e.to_string();
                    return self.refuse(session, reply, e.reason(), message);
                }
            }
        }
    }

    /// Counts results dated in the future: stored as measured, flagged by the API (the
    /// box's clock is wrong).
    fn count_future_dated(&self, agent_id: &str, records: &[ResultRecord]) {
        let horizon = Utc::now() + sonde_store::FUTURE_DATED;
        let ahead = records
            .iter()
            .filter(|r| r.run.started_at > horizon)
            .count();
        if ahead > 0 {
            self.future_dated.fetch_add(ahead as u64, Ordering::Relaxed);
            tracing::warn!(
                agent = agent_id,
                results = ahead,
                "results dated in the future: the box's clock is wrong"
            );
        }
    }

    /// Checks an upload's signatures on the blocking pool ([`signed::check`]); counts
    /// the gaps found.
    async fn signed(
        &self,
        agent_id: &str,
        results: &[sonde_proto::wire::RawRecord],
        ids: &[uuid::Uuid],
        signatures: sonde_proto::wire::Signatures,
    ) -> Result<sonde_store::Signed, signed::Refusal> {
        let (store, agent, raw, ids) = (
            self.store.clone(),
            agent_id.to_string(),
            results.to_vec(),
            ids.to_vec(),
        );
        let checked = sonde_cli::blocking::run(move || {
            signed::check(store.as_ref(), &agent, &raw, &ids, &signatures, Utc::now())
        })
        .await
        .unwrap_or_else(|e| Err((RejectReason::Unavailable, e.to_string())))?;
        let missing: u64 = checked.gaps.iter().map(|(a, b)| b - a + 1).sum();
        if missing > 0 {
            self.missing.fetch_add(missing, Ordering::Relaxed);
            tracing::warn!(agent = agent_id, missing, gaps = ?checked.gaps, "results missing from an agent's chain: signed on the box, never arrived");
        }
        Ok(checked)
    }

    /// Commits an upload: the frame to answer with (an ack, or `unavailable` when the
    /// commit failed), or why the upload is refused and the stream closed.
    async fn upload(
        &self,
        session: &Session,
        upload: Upload,
    ) -> Result<Vec<u8>, (RejectReason, String)> {
        if let Some(why) = session.revoked.clone() {
            return Err((RejectReason::Revoked, why));
        }
        let Some(delivery) = session.delivery.clone() else {
            let why = "uploads need an enrolled agent's certificate; run sonde-agent enroll";
            return Err((RejectReason::Unauthenticated, why.into()));
        };
        if let Some(why) = self.revocation(&delivery.agent_id) {
            return Err((RejectReason::Revoked, why));
        }
        // Each record is read once, here, for the columns beside it; its bytes are
        // stored as the agent sent them. Identity and site are the transport's (the
        // delivery), whatever the payload says.
        let records = parse_all(&upload.results).map_err(|e| (RejectReason::BadRecord, e))?;
        let committed: Vec<_> = records.iter().map(|r| r.id).collect();
        self.count_future_dated(&delivery.agent_id, &records);
        let signed = match upload.signatures {
            Some(signatures) => Some(
                self.signed(&delivery.agent_id, &upload.results, &committed, signatures)
                    .await?,
            ),
            None => None,
        };
        let batch = Batch {
            delivery,
            records,
            raw: upload.results,
            health: Some(upload.health),
            signed,
        };
        // The fleet's series need the batch after the commit: keep what they read.
        let keep = self.fleet.as_ref().map(|_| {
            (
                batch.delivery.clone(),
                batch.records.clone(),
                batch.health.clone(),
            )
        });
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let committing = self.committer.commit(batch).await;
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let frame = match committing {
            Ok(inserted) => {
                if let (Some(fleet), Some((delivery, records, health))) = (&self.fleet, keep) {
                    for (r, fresh) in records.iter().zip(&inserted.fresh) {
                        fleet.result(&delivery, r, *fresh);
                    }
                    fleet.health(&delivery, health.as_ref(), Utc::now());
                }
                let ack = Ack {
                    batch: upload.batch,
                    committed,
                };
                wire::encode(&Message::Ack(ack))
            }
            Err(e) => {
                // Nothing is acknowledged: the agent keeps the batch and retries.
                self.count(RejectReason::Unavailable);
                tracing::warn!(peer = %session.peer, error = %e, "commit failed");
                wire::encode(&Message::Reject(Reject {
                    batch: Some(upload.batch),
                    reason: RejectReason::Unavailable,
                    message: format!("{e}; retry later"),
                }))
            }
        };
        Ok(frame)
    }

    /// Enrols the peer: the frame to send (its identity, or why not, counted). The
    /// store's transaction runs on the blocking pool.
    async fn enrol(&self, session: &Session, enroll: Enroll, now: DateTime<Utc>) -> Vec<u8> {
        let outcome = match (&session.delivery, &self.ca) {
            (Some(_), _) => Err((
                RejectReason::BadMessage,
                "this agent is enrolled already".to_string(),
            )),
            (None, None) => Err((
                RejectReason::Unavailable,
                "this collector does not enrol agents".to_string(),
            )),
            (None, Some(ca)) => {
                let (ca, store) = (ca.clone(), self.store.clone());
                sonde_cli::blocking::run(move || {
                    enrolment::enrol(ca.as_ref(), store.as_ref(), &enroll, now)
                })
                .await
                .unwrap_or_else(|e| Err((RejectReason::Unavailable, e.to_string())))
            }
        };
        match outcome {
            Ok((enrolled, site)) => {
                self.enrolments.fetch_add(1, Ordering::Relaxed);
                if let (Some(fleet), Some(lat), Some(lon)) =
                    (&self.fleet, site.latitude, site.longitude)
                {
                    fleet.building(&enrolled.agent_id, &site.quartier, &site.building, lat, lon);
                }
                tracing::info!(peer = %session.peer, agent = %enrolled.agent_id, building = %site.building, quartier = %site.quartier, "agent enrolled");
                wire::encode(&Message::Enrolled(enrolled))
            }
            Err((reason, message)) => {
                self.count(reason);
                tracing::info!(peer = %session.peer, ?reason, %message, "enrolment refused");
                wire::encode(&Message::Reject(Reject {
                    batch: None,
                    reason,
                    message,
                }))
            }
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
            signatures: None,
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
