//! Real QUIC on loopback: an agent enrols with a one-time token and a certificate
//! request, then uploads with the certificate it got and has its ids acknowledged
//! after commit; tokens that are unknown, expired or used are refused with their
//! reason; a client without a certificate may not upload; one from another CA is
//! refused at the handshake; garbage on a stream is refused with a reason while other
//! agents keep being served.

use sonde_collector::ca::{Ca, Issued};
use sonde_collector::ingest::{self, Ingest};
use sonde_collector::server;
use sonde_collector::transport::quic;
use sonde_proto::wire::{
    self, Enroll, FrameDecoder, Health, Message, RawRecord, RejectReason, Upload,
};
use sonde_proto::ResultRecord;
use sonde_store::prelude::*;
use sonde_store::{NewToken, ResultQuery};
use sonde_store_sqlite::SqliteStore;
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
    ca: Arc<Ca>,
    store: Arc<SqliteStore>,
    ingest: Arc<Ingest>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// A token for building `b1` of quartier `q1`, valid for `ttl_s` seconds.
fn token(server: &Server, ttl_s: i64) -> String {
    let t = ingest::new_token(server.ca.as_ref());
    let now = chrono::Utc::now();
    server
        .store
        .create_token(&NewToken {
            hash: ingest::token_hash(&t),
            quartier: "q1".into(),
            building: "b1".into(),
            latitude: None,
            longitude: None,
            created_at: now,
            expires_at: now + chrono::Duration::seconds(ttl_s),
        })
        .expect("token");
    t.to_string()
}

fn csr() -> (String, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().expect("key");
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .expect("params")
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem");
    (csr, key)
}

/// Enrols over QUIC with `token`; the collector's answer.
async fn enrol_with(server: &Server, token: &str, csr_pem: &str) -> Message {
    let conn = connect(server, None, &server.ca)
        .await
        .expect("a client without a certificate may connect to enrol");
    let frame = wire::encode(&Message::Enroll(Enroll {
        token: token.into(),
        csr_pem: csr_pem.into(),
    }));
    let mut answer = exchange(&conn, &frame).await;
    assert_eq!(answer.len(), 1, "{answer:?}");
    answer.remove(0)
}

/// Enrols an agent and returns the identity it would keep.
async fn enrolled(server: &Server) -> (String, Issued) {
    let (csr_pem, key) = csr();
    let t = token(server, 600);
    match enrol_with(server, &t, &csr_pem).await {
        Message::Enrolled(e) => {
            assert_eq!(e.building, "b1");
            assert_eq!(
                e.ca_pem,
                sonde_collector::ca::cert_pem(server.ca.cert()),
                "the CA to pin"
            );
            let (_, pem) = x509_parser::pem::parse_x509_pem(e.cert_pem.as_bytes()).expect("pem");
            let issued = Issued {
                cert: pem.contents.into(),
                key: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            };
            (e.agent_id, issued)
        }
        other => panic!("expected an enrolment: {other:?}"),
    }
}

async fn start() -> Server {
    start_with_limit(100).await
}

/// A collector serving in this process (`server::run`, as `serve` does), on
/// loopback ports of its own, with an in-memory store.
async fn start_with_limit(max_connections: usize) -> Server {
    let dir = std::env::temp_dir().join(format!(
        "sonde-quic-{}-{}",
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("collector.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = {:?}\n[http]\nlisten = \"127.0.0.1:0\"\n[quic]\nlisten = \"127.0.0.1:0\"\nnames = [\"localhost\"]\nmax_connections = {max_connections}\n",
            dir.display().to_string()
        ),
    )
    .expect("config");
    let config = sonde_collector::config::load(&path).expect("valid config");
    let ca = Arc::new(Ca::generate("sonde test CA").expect("ca"));
    let store = Arc::new(SqliteStore::in_memory().expect("store"));
    let deps = server::Deps {
        store: store.clone(),
        ca: ca.clone(),
        report_key: sonde_collector::report::sign::ReportKey::load_or_create(&dir)
            .expect("report key"),
        seal: None,
        registry: prometheus::Registry::new(),
    };
    let bound = server::Server::bind(config, deps).await.expect("bind");
    let addr = bound.quic_addr().expect("addr");
    let ingest = bound.ingest().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(bound.run(async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        ca,
        store,
        ingest,
        stop,
        task,
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
    identity: Option<sonde_collector::ca::Issued>,
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
    let server = start().await;
    let (agent_id, identity) = enrolled(&server).await;
    assert!(agent_id.starts_with("b1-"), "{agent_id}");
    let conn = connect(&server, Some(identity), &server.ca)
        .await
        .expect("handshake with the enrolled certificate");
    let rs = [record(), record()];
    let ids: Vec<_> = rs.iter().map(|r| r.id).collect();
    let frame = wire::encode(&Message::Upload(Upload {
        batch: 9,
        health: Health::default(),
        results: rs.iter().map(RawRecord::of).collect(),
        signatures: None,
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
        page.results[0].to_json()["agent"]["id"],
        agent_id.as_str(),
        "identity from the certificate"
    );
    assert_eq!(
        page.results[0].to_json()["site"]["building"],
        "b1",
        "site from the enrolment"
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
        results: vec![RawRecord::of(&record())],
        signatures: None,
    }));
    assert!(matches!(
        exchange(&conn, &again).await.as_slice(),
        [Message::Ack(_)]
    ));
}

#[tokio::test]
async fn bad_tokens_and_requests_are_refused_with_their_reason() {
    let server = start().await;
    let (csr_pem, _) = csr();
    let used = token(&server, 600);
    assert!(matches!(
        enrol_with(&server, &used, &csr_pem).await,
        Message::Enrolled(_)
    ));
    let unknown = ingest::new_token(server.ca.as_ref()).to_string();
    let expired = token(&server, -1);
    let fresh = token(&server, 600);
    let cases = [
        (used.as_str(), csr_pem.as_str(), RejectReason::TokenUsed),
        (
            unknown.as_str(),
            csr_pem.as_str(),
            RejectReason::TokenUnknown,
        ),
        ("st1.nonsense", csr_pem.as_str(), RejectReason::TokenUnknown),
        (
            expired.as_str(),
            csr_pem.as_str(),
            RejectReason::TokenExpired,
        ),
        (fresh.as_str(), "not a CSR", RejectReason::BadCsr),
    ];
    for (t, c, reason) in cases {
        match enrol_with(&server, t, c).await {
            Message::Reject(r) => assert_eq!(r.reason, reason, "{}", r.message),
            other => panic!("{reason:?}: expected a reject, got {other:?}"),
        }
    }
    // A bad request does not use the token up.
    assert!(matches!(
        enrol_with(&server, &fresh, &csr_pem).await,
        Message::Enrolled(_)
    ));
    let rejects = server.ingest.rejects();
    for reason in [
        RejectReason::TokenUsed,
        RejectReason::TokenExpired,
        RejectReason::BadCsr,
    ] {
        assert_eq!(rejects.get(&reason), Some(&1), "{reason:?}: {rejects:?}");
    }
    assert_eq!(rejects.get(&RejectReason::TokenUnknown), Some(&2));
    assert_eq!(server.ingest.enrolments(), 2);
}

#[tokio::test]
async fn clients_without_an_enrolled_certificate_cannot_upload() {
    let server = start().await;
    let upload = wire::encode(&Message::Upload(Upload {
        batch: 1,
        health: Health::default(),
        results: vec![RawRecord::of(&record())],
        signatures: None,
    }));
    let no_cert = connect(&server, None, &server.ca)
        .await
        .expect("connects, to enrol");
    match exchange(&no_cert, &upload).await.as_slice() {
        [Message::Reject(r)] => assert_eq!(r.reason, RejectReason::Unauthenticated),
        other => panic!("expected a reject: {other:?}"),
    }
    // Signed by the CA but never enrolled (e.g. a record restored from an old backup).
    let stray = connect(
        &server,
        Some(server.ca.issue_agent("stray").expect("cert")),
        &server.ca,
    )
    .await
    .expect("handshake");
    match exchange(&stray, &upload).await.as_slice() {
        [Message::Reject(r)] => assert_eq!(r.reason, RejectReason::Unauthenticated),
        other => panic!("expected a reject: {other:?}"),
    }
    assert_eq!(
        server.ingest.rejects().get(&RejectReason::Unauthenticated),
        Some(&2)
    );
    let other_ca = Ca::generate("someone else").expect("ca");
    let foreign = connect(
        &server,
        Some(other_ca.issue_agent("intruder").expect("cert")),
        &server.ca,
    )
    .await;
    let refused = match foreign {
        Err(_) => true,
        // TLS 1.3 may finish the client's side before the server's verdict: the first
        // stream then fails.
        Ok(conn) => {
            let (mut s, mut r) = conn.open_bi().await.expect("stream");
            let _ = s.write_all(b"x").await;
            let _ = s.finish();
            r.read_to_end(1024).await.is_err()
        }
    };
    assert!(refused, "a certificate from another CA was accepted");
    for _ in 0..50 {
        if server.ingest.rejects().get(&RejectReason::Handshake) == Some(&1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        server.ingest.rejects().get(&RejectReason::Handshake),
        Some(&1),
        "the failed handshake is counted"
    );
    assert!(server
        .store
        .results(&ResultQuery {
            limit: 10,
            ..Default::default()
        })
        .expect("page")
        .results
        .is_empty());
    // The collector still serves a proper agent.
    let (_, identity) = enrolled(&server).await;
    let conn = connect(&server, Some(identity), &server.ca)
        .await
        .expect("handshake");
    assert!(matches!(
        exchange(&conn, &upload).await.as_slice(),
        [Message::Ack(_)]
    ));
}

#[tokio::test]
async fn malformed_input_is_refused_and_counted_while_others_are_served() {
    let server = start().await;
    // Random datagrams at the QUIC port: quinn drops what is not QUIC before any
    // connection exists (no answer, no state); the collector keeps serving.
    let noise = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for len in [1usize, 20, 1200, 1500] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        noise.send_to(&bytes, server.addr).expect("send noise");
    }
    let (_, identity) = enrolled(&server).await;
    let conn = connect(&server, Some(identity), &server.ca)
        .await
        .expect("handshake after the noise");
    let mut oversize = wire::MAGIC.to_vec();
    oversize.extend_from_slice(&[wire::VERSION, 1]);
    oversize.extend_from_slice(&(64u32 << 20).to_be_bytes());
    let mut future_version = wire::encode(&Message::Upload(Upload {
        batch: 1,
        health: Health::default(),
        results: vec![RawRecord::of(&record())],
        signatures: None,
    }));
    future_version[4] = 9;
    let cases = [
        (
            b"\x16\x03\x01garbage after a valid TLS session".to_vec(),
            RejectReason::BadFrame,
        ),
        (oversize, RejectReason::Oversize),
        (future_version, RejectReason::UnsupportedVersion),
    ];
    for (bytes, reason) in &cases {
        match exchange(&conn, bytes).await.as_slice() {
            [Message::Reject(r)] => assert_eq!(r.reason, *reason, "{}", r.message),
            other => panic!("{reason:?}: expected a reject, got {other:?}"),
        }
        assert_eq!(server.ingest.rejects().get(reason), Some(&1), "{reason:?}");
    }
    // Nothing of the refused frames was stored; a proper upload on the same
    // connection still goes through.
    let upload = wire::encode(&Message::Upload(Upload {
        batch: 2,
        health: Health::default(),
        results: vec![RawRecord::of(&record())],
        signatures: None,
    }));
    assert!(matches!(
        exchange(&conn, &upload).await.as_slice(),
        [Message::Ack(_)]
    ));
    let stored = server
        .store
        .results(&ResultQuery {
            limit: 10,
            ..Default::default()
        })
        .expect("page");
    assert_eq!(stored.results.len(), 1);
}

#[tokio::test]
async fn a_result_dated_in_the_future_is_stored_and_flagged() {
    let server = start().await;
    let (_, identity) = enrolled(&server).await;
    let conn = connect(&server, Some(identity), &server.ca)
        .await
        .expect("handshake");
    // A box booted a day ahead (no battery clock, NTP not there yet), and one whose
    // result waited a week in its spool.
    let mut ahead = record();
    ahead.run.started_at = chrono::Utc::now() + chrono::Duration::days(1);
    ahead.run.ended_at = ahead.run.started_at;
    let mut late = record();
    late.run.started_at = chrono::Utc::now() - chrono::Duration::days(7);
    late.run.ended_at = late.run.started_at;
    let upload = wire::encode(&Message::Upload(Upload {
        batch: 1,
        health: Health::default(),
        results: vec![RawRecord::of(&ahead), RawRecord::of(&late)],
        signatures: None,
    }));
    assert!(matches!(
        exchange(&conn, &upload).await.as_slice(),
        [Message::Ack(_)]
    ));
    assert_eq!(server.ingest.future_dated(), 1);
    let page = server
        .store
        .results(&ResultQuery {
            limit: 10,
            ..Default::default()
        })
        .expect("page");
    let shown: Vec<_> = page.results.iter().map(|r| r.to_json()).collect();
    let of = |id: uuid::Uuid| {
        shown
            .iter()
            .find(|v| v["id"] == id.to_string())
            .cloned()
            .expect("stored")
    };
    assert_eq!(
        of(ahead.id)["collector_flags"],
        serde_json::json!(["future_dated"])
    );
    assert!(
        of(late.id).get("collector_flags").is_none(),
        "late is normal"
    );
    assert!(of(late.id)["received_at"].is_string());
}

#[tokio::test]
async fn ingest_refuses_the_records_import_refuses() {
    let server = start().await;
    let (_, identity) = enrolled(&server).await;
    let conn = connect(&server, Some(identity), &server.ca)
        .await
        .expect("handshake");
    // Another schema version, and one record of 3 MiB (import's bound is 64 KiB),
    // each beside a good record: the upload is refused whole, nothing is stored.
    let mut v2 = serde_json::to_value(record()).expect("json");
    v2["schema_version"] = 2.into();
    let mut big = serde_json::to_value(record()).expect("json");
    big["padding"] = "x".repeat(3 << 20).into();
    for (i, bad) in [v2, big].into_iter().enumerate() {
        let upload = wire::encode(&Message::Upload(Upload {
            batch: i as u64,
            health: Health::default(),
            results: vec![
                RawRecord::of(&record()),
                RawRecord::from_json(bad.to_string()).expect("JSON"),
            ],
            signatures: None,
        }));
        match exchange(&conn, &upload).await.as_slice() {
            [Message::Reject(r)] => {
                assert_eq!(r.reason, RejectReason::BadRecord, "{}", r.message);
                assert!(
                    r.message.starts_with("result 1 of the upload"),
                    "{}",
                    r.message
                );
            }
            other => panic!("case {i}: expected a reject, got {other:?}"),
        }
    }
    assert_eq!(
        server.ingest.rejects().get(&RejectReason::BadRecord),
        Some(&2)
    );
    let stored = server
        .store
        .results(&ResultQuery {
            limit: 10,
            ..Default::default()
        })
        .expect("page");
    assert!(
        stored.results.is_empty(),
        "nothing of a refused upload is stored"
    );
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_and_counted() {
    let server = start_with_limit(2).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(enrolled(&server).await.1);
    }
    // Two agents hold the two agent slots; the third is closed as busy.
    let mut held = Vec::new();
    for id in ids.iter().take(2) {
        held.push(
            connect(&server, Some(clone(id)), &server.ca)
                .await
                .expect("slot"),
        );
    }
    let third = connect(&server, Some(clone(&ids[2])), &server.ca)
        .await
        .expect("handshake");
    let closed = tokio::time::timeout(Duration::from_secs(5), third.closed())
        .await
        .expect("closed at once");
    assert!(
        matches!(&closed, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == quic::CLOSE_BUSY.into()),
        "{closed:?}"
    );
    assert_eq!(server.ingest.rejects().get(&RejectReason::Busy), Some(&1));
    // Strangers (no certificate) do not take agent slots: one can still connect.
    let stranger = connect(&server, None, &server.ca).await.expect("stranger");
    assert!(stranger.close_reason().is_none());
    // Room again once an agent leaves.
    let a = held.remove(0);
    a.close(0u32.into(), b"bye");
    drop(a);
    let mut again = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let c = connect(&server, Some(clone(&ids[2])), &server.ca)
            .await
            .expect("handshake");
        tokio::time::sleep(Duration::from_millis(50)).await;
        if c.close_reason().is_none() {
            again = Some(c);
            break;
        }
    }
    assert!(
        again.is_some(),
        "a slot freed by a closed connection is reused"
    );
}

fn clone(i: &Issued) -> Issued {
    Issued {
        cert: i.cert.clone(),
        key: i.key.clone_key(),
    }
}

#[tokio::test]
async fn a_frame_of_a_kind_from_the_future_is_skipped_and_the_stream_goes_on() {
    let server = start().await;
    let (_, identity) = enrolled(&server).await;
    let conn = connect(&server, Some(identity), &server.ca)
        .await
        .expect("handshake");
    // A newer agent sends a frame of kind 77 with a payload, then an upload, on one
    // stream.
    let r = record();
    let mut bytes = wire::frame(77, br#"{"plan_ack": 3, "padding": "xxxxxxxxxxxxxxxx"}"#);
    bytes.extend(wire::encode(&Message::Upload(Upload {
        batch: 4,
        health: Health::default(),
        results: vec![RawRecord::of(&r)],
        signatures: None,
    })));
    match exchange(&conn, &bytes).await.as_slice() {
        [Message::Ack(ack)] => assert_eq!(ack.committed, vec![r.id]),
        other => panic!("expected only the upload's ack: {other:?}"),
    }
    assert_eq!(server.ingest.frames_skipped(), 1);
    assert!(server.ingest.rejects().is_empty(), "nothing refused");
}

#[tokio::test]
async fn records_are_stored_as_the_agent_encoded_them() {
    let server = start().await;
    let (agent_id, identity) = enrolled(&server).await;
    let conn = connect(&server, Some(identity), &server.ca)
        .await
        .expect("handshake");
    // The agent's own encoding: another field order, spacing, a field this collector
    // does not know, and a payload identity that is not the certificate's.
    let mut v = serde_json::to_value(record()).expect("json");
    v["agent"]["id"] = "someone-else".into();
    v["a_field_from_2030"] = serde_json::json!({"x": [1, 2.50, "é"]});
    let text = format!("{{ \"zz\": 1,\n {} }}", {
        let s = serde_json::to_string(&v).expect("json");
        s[1..s.len() - 1].to_string()
    });
    let raw = RawRecord::from_json(text.clone()).expect("JSON");
    let frame = wire::encode(&Message::Upload(Upload {
        batch: 1,
        health: Health::default(),
        results: vec![raw],
        signatures: None,
    }));
    assert!(matches!(
        exchange(&conn, &frame).await.as_slice(),
        [Message::Ack(_)]
    ));
    let page = server
        .store
        .results(&ResultQuery {
            limit: 10,
            ..Default::default()
        })
        .expect("page");
    assert_eq!(page.results[0].record, text, "stored byte for byte");
    assert_eq!(page.results[0].agent_id, agent_id, "identity in its column");
    assert_eq!(page.results[0].to_json()["agent"]["id"], agent_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_collector_acknowledges_what_it_commits_and_joins_its_writer() {
    let server = start().await;
    let mut agents = Vec::new();
    for _ in 0..4 {
        let (_, identity) = enrolled(&server).await;
        agents.push(
            connect(&server, Some(identity), &server.ca)
                .await
                .expect("handshake"),
        );
    }
    // Each agent uploads batch after batch on one stream, noting what was acked.
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let uploads: Vec<_> = agents
        .into_iter()
        .map(|conn| {
            let acked = acked.clone();
            tokio::spawn(async move {
                let Ok((mut send, mut recv)) = conn.open_bi().await else {
                    return;
                };
                let mut d = FrameDecoder::new(1 << 20);
                let mut buf = vec![0u8; 65536];
                for batch in 0..10_000u64 {
                    let rs: Vec<_> = (0..20).map(|_| record()).collect();
                    let frame = wire::encode(&Message::Upload(Upload {
                        batch,
                        health: Health::default(),
                        results: rs.iter().map(RawRecord::of).collect(),
                        signatures: None,
                    }));
                    if send.write_all(&frame).await.is_err() {
                        return;
                    }
                    let answer = loop {
                        if let Ok(Some(m)) = d.poll() {
                            break Some(m);
                        }
                        match recv.read(&mut buf).await {
                            Ok(Some(n)) => d.push(&buf[..n]),
                            _ => break None,
                        }
                    };
                    match answer {
                        Some(Message::Ack(a)) => {
                            acked.lock().expect("lock").extend(a.committed);
                        }
                        _ => return,
                    }
                }
            })
        })
        .collect();
    // Stop once uploads are well under way.
    while acked.lock().expect("lock").len() < 400 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let Server {
        stop,
        task,
        store,
        ingest,
        ..
    } = server;
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("the drain ends")
        .expect("task")
        .expect("run");
    for u in uploads {
        let _ = tokio::time::timeout(Duration::from_secs(5), u).await;
    }
    assert!(
        !ingest.committer().running(),
        "the commit thread was joined"
    );
    // Every acknowledged result is stored: nothing was acked that was not committed.
    let acked = acked.lock().expect("lock").clone();
    let mut stored = std::collections::HashSet::new();
    let mut q = ResultQuery {
        limit: 1000,
        ..Default::default()
    };
    loop {
        let page = store.results(&q).expect("page");
        stored.extend(
            page.results
                .iter()
                .map(|r| r.to_json()["id"].as_str().unwrap_or("").to_string()),
        );
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    let missing = acked
        .iter()
        .filter(|id| !stored.contains(&id.to_string()))
        .count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} acknowledged results not stored",
        acked.len()
    );
}
