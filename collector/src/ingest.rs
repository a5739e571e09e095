//! Ingest without a transport: bytes of one agent's stream go in, frames to send back
//! come out. Uploads are committed to the store before their ids are acknowledged;
//! anything that is not a valid frame is refused with a reason, counted, and ends the
//! stream. The agent's identity and site come from the [`Delivery`] the transport
//! established (its certificate), never from the payload. The QUIC listener wraps this.

use crate::store::{Delivery, Store};
use chrono::{DateTime, Utc};
use sonde_proto::wire::{self, Ack, FrameDecoder, Message, Reject, RejectReason};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The ingest side of the collector.
pub struct Ingest {
    store: Arc<dyn Store>,
    max_payload: usize,
    rejects: Mutex<BTreeMap<RejectReason, u64>>,
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
    delivery: Delivery,
}

/// What to do after some bytes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// Frames to send back, in order.
    pub send: Vec<u8>,
    /// Whether the stream must be closed (after sending).
    pub close: bool,
}

impl Ingest {
    /// Ingest into `store`, refusing frames above `max_payload` bytes.
    pub fn new(store: Arc<dyn Store>, max_payload: usize) -> Self {
        Ingest {
            store,
            max_payload,
            rejects: Mutex::new(BTreeMap::new()),
        }
    }

    /// A session for a stream from the agent the transport authenticated.
    pub fn session(&self, delivery: Delivery) -> Session {
        Session {
            decoder: FrameDecoder::new(self.max_payload),
            delivery,
        }
    }

    /// Rejects so far, by reason.
    pub fn rejects(&self) -> BTreeMap<RejectReason, u64> {
        self.rejects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn count(&self, reason: RejectReason) {
        *self
            .rejects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    /// Handles bytes received on `session`'s stream at `now`.
    pub fn receive(&self, session: &mut Session, bytes: &[u8], now: DateTime<Utc>) -> Reply {
        session.decoder.push(bytes);
        let mut reply = Reply::default();
        loop {
            match session.decoder.poll() {
                Ok(None) => return reply,
                Ok(Some(Message::Upload(mut upload))) => {
                    for r in &mut upload.results {
                        // Identity and site are the transport's, whatever the payload says.
                        r.agent.id = Some(session.delivery.agent_id.clone());
                        r.site.quartier = session.delivery.quartier.clone();
                        r.site.building = session.delivery.building.clone();
                    }
                    match self.store.insert(&session.delivery, &upload.results, now) {
                        Ok(_) => {
                            let ack = Ack {
                                batch: upload.batch,
                                committed: upload.results.iter().map(|r| r.id).collect(),
                            };
                            reply.send.extend(wire::encode(&Message::Ack(ack)));
                        }
                        Err(e) => {
                            // Nothing is acknowledged: the agent keeps the batch and retries.
                            self.count(RejectReason::Unavailable);
                            tracing::warn!(agent = %session.delivery.agent_id, error = %e, "commit failed");
                            let reject = Reject {
                                batch: Some(upload.batch),
                                reason: RejectReason::Unavailable,
                                message: "the collector could not commit; retry later".into(),
                            };
                            reply.send.extend(wire::encode(&Message::Reject(reject)));
                        }
                    }
                }
                Ok(Some(_)) => {
                    return self.refuse(
                        session,
                        reply,
                        RejectReason::BadMessage,
                        "agents send uploads only".into(),
                    )
                }
                Err(e) => {
                    let message = e.to_string();
                    return self.refuse(session, reply, e.reason(), message);
                }
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
        tracing::info!(agent = %session.delivery.agent_id, ?reason, %message, "frame refused");
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
    use crate::store::sqlite::SqliteStore;
    use crate::store::ResultQuery;
    use sonde_proto::wire::{Health, Upload};
    use sonde_proto::ResultRecord;

    fn record() -> ResultRecord {
        let mut r = ResultRecord::schema_example();
        r.id = uuid::Uuid::now_v7();
        r
    }

    fn setup() -> (Arc<SqliteStore>, Ingest, Session) {
        let store = Arc::new(SqliteStore::in_memory().expect("store"));
        let ingest = Ingest::new(store.clone(), 64 * 1024);
        let session = ingest.session(Delivery {
            agent_id: "agent-7".into(),
            quartier: Some("q".into()),
            building: Some("b".into()),
        });
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
            results,
        }))
    }

    #[test]
    fn uploads_are_committed_then_acknowledged_and_resends_are_harmless() {
        let (store, ingest, mut s) = setup();
        let mut spoofed = record();
        spoofed.agent.id = Some("someone-else".into());
        let rs = vec![record(), spoofed];
        let ids: Vec<_> = rs.iter().map(|r| r.id).collect();
        let reply = ingest.receive(&mut s, &upload(1, rs.clone()), Utc::now());
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
        let mut reply = ingest.receive(&mut s, &bytes[..7], Utc::now());
        assert!(reply.send.is_empty());
        reply = ingest.receive(&mut s, &bytes[7..], Utc::now());
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
        for r in &page.results {
            assert_eq!(
                r["agent"]["id"], "agent-7",
                "identity from the transport, not the payload"
            );
            assert_eq!(r["site"]["quartier"], "q");
        }
    }

    #[test]
    fn bad_input_is_refused_with_a_counted_reason_and_closes_the_stream() {
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
            let mut s = ingest.session(Delivery {
                agent_id: "a".into(),
                quartier: None,
                building: None,
            });
            let reply = ingest.receive(&mut s, bytes, Utc::now());
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
