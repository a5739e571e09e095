//! Today's agent against a collector from the future: every answer the collector
//! sends is preceded by a frame of a kind today's agent does not know. The agent
//! enrols, uploads, and keeps working: it skips those frames by their length and
//! counts them. (The other way round, today's collector against a newer agent, is
//! `collector/tests/quic.rs`.)

use sonde_agent::identity;
use sonde_agent::uplink::{Link, Outgoing, QuicLink};
use sonde_collector::ca::{agent_id_of, Ca};
use sonde_collector::ingest::{self, Ingest};
use sonde_collector::transport::quic;
use sonde_proto::wire::{self, Health, RawRecord};
use sonde_proto::ResultRecord;
use sonde_store::prelude::*;
use sonde_store::{Delivery, NewToken, ResultQuery};
use sonde_store_sqlite::SqliteStore;
use std::sync::Arc;
use std::time::Duration;

/// A newer collector's extra frame: kind 0x42, with a payload today's agent cannot read.
fn from_the_future() -> Vec<u8> {
    wire::frame(0x42, br#"{"plan": {"version": 7, "accesses": []}}"#)
}

/// Serves `conn` as the collector would, each answer preceded by a future frame.
async fn serve(conn: quinn::Connection, ingest: Arc<Ingest>, store: Arc<SqliteStore>) {
    let delivery = conn
        .peer_identity()
        .and_then(|i| {
            i.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .and_then(|certs| certs.first().and_then(agent_id_of))
        .and_then(|id| {
            let site = store.enrolment(&id).ok().flatten()?;
            Some(Delivery {
                agent_id: id,
                quartier: Some(site.quartier),
                building: Some(site.building),
            })
        });
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        let mut session = ingest.session(delivery.clone(), "future".into());
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(Some(n)) = recv.read(&mut buf).await {
            let reply = ingest
                .receive(&mut session, &buf[..n], chrono::Utc::now())
                .await;
            if !reply.send.is_empty() {
                let mut out = from_the_future();
                out.extend(&reply.send);
                if send.write_all(&out).await.is_err() {
                    break;
                }
            }
            if reply.close {
                break;
            }
        }
        let _ = send.finish();
    }
}

#[tokio::test]
async fn todays_agent_enrols_and_uploads_past_frames_it_does_not_know() {
    let ca = Arc::new(Ca::generate("future CA").expect("ca"));
    let server_cert = ca
        .issue_server(vec!["localhost".into()])
        .expect("server certificate");
    let config = quic::server_config(ca.as_ref(), server_cert).expect("server config");
    let endpoint =
        quinn::Endpoint::server(config, "127.0.0.1:0".parse().expect("addr")).expect("bind");
    let port = endpoint.local_addr().expect("addr").port();
    let store = Arc::new(SqliteStore::in_memory().expect("store"));
    let ingest = Arc::new(Ingest::new(store.clone(), Some(ca.clone()), None, 1 << 22));
    let (i, s) = (ingest.clone(), store.clone());
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            if let Ok(conn) = incoming.await {
                tokio::spawn(serve(conn, i.clone(), s.clone()));
            }
        }
    });
    let token = ingest::new_token(ca.as_ref());
    let now = chrono::Utc::now();
    store
        .create_token(&NewToken {
            hash: ingest::token_hash(&token),
            quartier: "q".into(),
            building: "b".into(),
            latitude: None,
            longitude: None,
            created_at: now,
            expires_at: now + chrono::Duration::hours(1),
        })
        .expect("token");
    let dir = std::env::temp_dir().join(format!("sonde-future-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let address = format!("localhost:{port}");
    let id = identity::enroll(&address, &token, &dir, Duration::from_secs(10))
        .await
        .expect("enrolled past the future frame");

    let mut link = QuicLink::new(vec![address.clone()], dir.clone());
    let mut sent = Vec::new();
    for round in 0..3 {
        let mut r = ResultRecord::schema_example();
        r.id = uuid::Uuid::now_v7();
        let raw = RawRecord::of(&r);
        let committed = link
            .send(
                Outgoing {
                    results: vec![raw.clone()],
                    signatures: None,
                },
                Health::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("upload {round}: {e}"));
        assert_eq!(committed, vec![r.id]);
        sent.push(raw.as_str().to_string());
    }
    assert_eq!(link.unknown_frames(), 3, "one skipped before each answer");
    assert_eq!(link.agent_id(), Some(id.info.agent_id.clone()));
    let stored = store
        .results(&ResultQuery {
            limit: 10,
            ..Default::default()
        })
        .expect("results");
    assert_eq!(stored.results.len(), 3);
    // The records arrived as the agent encoded them, byte for byte.
    let kept: Vec<&str> = stored.results.iter().map(|r| r.record.as_str()).collect();
    for bytes in &sent {
        assert!(kept.contains(&bytes.as_str()), "stored verbatim");
    }
    link.disconnect();
    let _ = std::fs::remove_dir_all(&dir);
}
