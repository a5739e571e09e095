//! Real QUIC on loopback: an agent with a certificate from the collector's CA uploads
//! and gets its ids acknowledged after commit; a client without a certificate, or with
//! one from another CA, is refused at the handshake; garbage on a stream is refused
//! with a reason while other agents keep being served.

use sonde_collector::ingest::Ingest;
use sonde_collector::pki::Ca;
use sonde_collector::quic;
use sonde_collector::store::sqlite::SqliteStore;
use sonde_collector::store::{ResultQuery, Store};
use sonde_proto::wire::{self, FrameDecoder, Health, Message, RejectReason, Upload};
use sonde_proto::ResultRecord;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

fn record() -> ResultRecord {
    let mut r = ResultRecord::schema_example();
    r.id = uuid::Uuid::now_v7();
    r
}

struct Server {
    addr: SocketAddr,
    ca: Ca,
    store: Arc<SqliteStore>,
    ingest: Arc<Ingest>,
}

fn start() -> Server {
    let ca = Ca::generate("sonde test CA").expect("ca");
    let server = ca
        .issue_server(vec!["localhost".into()])
        .expect("server cert");
    let config = quic::server_config(&ca, server).expect("server config");
    let endpoint =
        quinn::Endpoint::server(config, "127.0.0.1:0".parse().expect("addr")).expect("bind");
    let addr = endpoint.local_addr().expect("addr");
    let store = Arc::new(SqliteStore::in_memory().expect("store"));
    let ingest = Arc::new(Ingest::new(store.clone(), 1 << 20));
    tokio::spawn(quic::serve(endpoint, ingest.clone(), 100));
    Server {
        addr,
        ca,
        store,
        ingest,
    }
}

async fn exchange(conn: &quinn::Connection, bytes: &[u8]) -> Vec<Message> {
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    send.write_all(bytes).await.expect("send");
    send.finish().expect("finish");
    let reply = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1 << 20))
        .await
        .expect("an answer within 5 s")
        .expect("read");
    let mut d = FrameDecoder::new(1 << 20);
    d.push(&reply);
    let mut out = Vec::new();
    while let Some(m) = d.poll().expect("collector frames") {
        out.push(m);
    }
    out
}

async fn connect(
    server: &Server,
    identity: Option<sonde_collector::pki::Issued>,
    ca: &Ca,
) -> Result<quinn::Connection, quinn::ConnectionError> {
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client");
    client.set_default_client_config(
        quic::client_config(ca.cert(), identity).expect("client config"),
    );
    client
        .connect(server.addr, "localhost")
        .expect("connect")
        .await
}

#[tokio::test]
async fn an_enrolled_agent_uploads_and_gets_acknowledged_after_commit() {
    let server = start();
    let conn = connect(
        &server,
        Some(server.ca.issue_agent("agent-42").expect("cert")),
        &server.ca,
    )
    .await
    .expect("handshake with a CA-signed certificate");
    let rs = vec![record(), record()];
    let ids: Vec<_> = rs.iter().map(|r| r.id).collect();
    let frame = wire::encode(&Message::Upload(Upload {
        batch: 9,
        health: Health::default(),
        results: rs,
    }));
    match exchange(&conn, &frame).await.as_slice() {
        [Message::Ack(ack)] => {
            assert_eq!(ack.batch, 9);
            assert_eq!(ack.committed, ids);
        }
        other => panic!("expected an ack: {other:?}"),
    }
    let page = server
        .store
        .results(&ResultQuery {
            limit: 10,
            ..Default::default()
        })
        .expect("page");
    assert_eq!(page.results.len(), 2, "committed before the ack");
    assert_eq!(
        page.results[0]["agent"]["id"], "agent-42",
        "identity from the certificate"
    );

    // Garbage on another stream is refused with a reason and counted; the agent's
    // connection keeps working.
    match exchange(&conn, b"\x00\x01garbage").await.as_slice() {
        [Message::Reject(r)] => assert_eq!(r.reason, RejectReason::BadFrame),
        other => panic!("expected a reject: {other:?}"),
    }
    assert_eq!(
        server.ingest.rejects().get(&RejectReason::BadFrame),
        Some(&1)
    );
    let again = wire::encode(&Message::Upload(Upload {
        batch: 10,
        health: Health::default(),
        results: vec![record()],
    }));
    assert!(matches!(
        exchange(&conn, &again).await.as_slice(),
        [Message::Ack(_)]
    ));
}

#[tokio::test]
async fn clients_without_a_certificate_from_the_ca_are_refused() {
    let server = start();
    let no_cert = connect(&server, None, &server.ca).await;
    let refused = match no_cert {
        Err(_) => true,
        // TLS 1.3 may finish the client's handshake before the server's verdict: the
        // first stream then fails.
        Ok(conn) => {
            conn.open_bi().await.is_err() || {
                let (mut s, mut r) = conn.open_bi().await.expect("stream");
                let _ = s.write_all(b"x").await;
                let _ = s.finish();
                r.read_to_end(1024).await.is_err()
            }
        }
    };
    assert!(refused, "a client without a certificate was served");
    let other_ca = Ca::generate("someone else").expect("ca");
    let foreign = connect(
        &server,
        Some(other_ca.issue_agent("intruder").expect("cert")),
        &server.ca,
    )
    .await;
    let refused = match foreign {
        Err(_) => true,
        Ok(conn) => {
            let (mut s, mut r) = conn.open_bi().await.expect("stream");
            let _ = s.write_all(b"x").await;
            let _ = s.finish();
            r.read_to_end(1024).await.is_err()
        }
    };
    assert!(refused, "a certificate from another CA was accepted");
    // The collector still serves a proper agent.
    let conn = connect(
        &server,
        Some(server.ca.issue_agent("agent-1").expect("cert")),
        &server.ca,
    )
    .await
    .expect("handshake");
    let frame = wire::encode(&Message::Upload(Upload {
        batch: 1,
        health: Health::default(),
        results: vec![record()],
    }));
    assert!(matches!(
        exchange(&conn, &frame).await.as_slice(),
        [Message::Ack(_)]
    ));
}
