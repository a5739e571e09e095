//! Bad input against a real `sonde-collector serve` process: each is refused with its
//! reason, counted in `/metrics` (`sonde_collector_rejects_total{reason=…}`), and the
//! collector keeps enrolling and serving real agents throughout.
//!
//! Random datagrams at the QUIC port; a valid TLS session (no certificate) followed by
//! garbage, an oversize frame, a frame of an unknown version and an upload; expired,
//! reused and unknown tokens; a client whose certificate another CA signed.

use sonde_e2e::pipeline::{raw, record, scratch, seed_spool, Agent, AgentSetup, Collector};
use sonde_e2e::{bin, run_bounded};
use sonde_proto::wire::{self, Health, Message, RejectReason, Upload};
use std::process::Command;
use std::time::Duration;

fn reject_of(answer: &[Message]) -> RejectReason {
    match answer {
        [Message::Reject(r)] => r.reason,
        other => panic!("expected one reject, got {other:?}"),
    }
}

fn enroll_cli(collector: &Collector, token: &str, state_dir: &std::path::Path) -> (i32, String) {
    let mut cmd = Command::new(bin("sonde-agent"));
    cmd.args(["enroll", "--collector", &collector.quic, "--token", token])
        .arg("--state-dir")
        .arg(state_dir);
    let run = run_bounded(cmd, Duration::from_secs(60));
    (run.code(), run.stderr())
}

#[test]
fn bad_input_is_refused_counted_and_harmless_to_other_agents() {
    let dir = scratch("rejects");
    let collector = Collector::start_in(&dir);
    let addr: std::net::SocketAddr = collector
        .quic
        .replace("localhost", "127.0.0.1")
        .parse()
        .expect("addr");
    let reason =
        |r: &str| collector.metric(&format!("sonde_collector_rejects_total{{reason=\"{r}\"}}"));

    // Random datagrams: dropped by the QUIC stack, nothing answers, nothing breaks.
    let noise = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    for len in [1usize, 64, 1200, 1400] {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 131 + len) as u8).collect();
        noise.send_to(&bytes, addr).expect("noise");
    }

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mut oversize = wire::MAGIC.to_vec();
        oversize.extend_from_slice(&[wire::VERSION, 1]);
        oversize.extend_from_slice(&(512u32 << 20).to_be_bytes());
        let upload = wire::encode(&Message::Upload(Upload {
            batch: 1,
            health: Health::default(),
            results: vec![sonde_proto::wire::RawRecord::of(
                &sonde_proto::ResultRecord::schema_example(),
            )],
            signatures: None,
        }));
        let mut future = upload.clone();
        future[4] = 7;
        for (bytes, want) in [
            (b"garbage, not a frame".to_vec(), RejectReason::BadFrame),
            (oversize, RejectReason::Oversize),
            (future, RejectReason::UnsupportedVersion),
            (upload, RejectReason::Unauthenticated),
        ] {
            // A connection without a certificate serves one stream: one each.
            let conn = raw::connect(addr, raw::client_config(&collector.ca_cert(), None))
                .await
                .expect("a session without a certificate (to enrol)");
            assert_eq!(reject_of(&raw::exchange(&conn, &bytes).await), want);
        }
        // A certificate from another CA: refused at the handshake.
        let other = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "intruder");
        let cert = params.self_signed(&other).expect("cert");
        let foreign = raw::client_config(
            &collector.ca_cert(),
            Some((
                cert.der().clone(),
                rustls::pki_types::PrivateKeyDer::Pkcs8(other.serialize_der().into()),
            )),
        );
        if let Ok(conn) = raw::connect(addr, foreign).await {
            // TLS 1.3: the client may finish before the server's verdict arrives.
            if let Ok((mut s, mut r)) = conn.open_bi().await {
                let _ = s.write_all(b"x").await;
                let _ = s.finish();
                assert!(
                    r.read_to_end(1024).await.is_err(),
                    "foreign certificate served"
                );
            }
        }
    });

    // Tokens: reused, unknown, expired.
    let token = collector.token("b-ok");
    let (code, _) = enroll_cli(&collector, &token, &dir.join("first"));
    assert_eq!(code, 0);
    let (code, err) = enroll_cli(&collector, &token, &dir.join("second"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("token_used"), "{err}");
    let fingerprint = token.rsplit('.').next().expect("fingerprint");
    let unknown = format!("st1.{}.{fingerprint}", "ab".repeat(16));
    let (code, err) = enroll_cli(&collector, &unknown, &dir.join("third"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("token_unknown"), "{err}");
    let expired = {
        // As if made long ago: written into the collector's store directly.
        use sonde_store::prelude::*;
        use sonde_store::NewToken;
        let t: sonde_proto::wire::EnrolToken = token.parse().expect("token");
        let t = sonde_proto::wire::EnrolToken {
            secret: [7; 16],
            ..t
        };
        let store =
            sonde_store_sqlite::SqliteStore::open(&collector.data_dir().join("collector.sqlite"))
                .expect("store");
        let then = chrono::Utc::now() - chrono::Duration::days(8);
        store
            .create_token(&NewToken {
                hash: sonde_collector::ingest::token_hash(&t),
                quartier: "q".into(),
                building: "b-old".into(),
                latitude: None,
                longitude: None,
                created_at: then,
                expires_at: then + chrono::Duration::days(7),
            })
            .expect("token");
        t.to_string()
    };
    let (code, err) = enroll_cli(&collector, &expired, &dir.join("fourth"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("token_expired"), "{err}");

    for (r, n) in [
        ("bad_frame", 1.0),
        ("oversize", 1.0),
        ("unsupported_version", 1.0),
        ("unauthenticated", 1.0),
        ("token_used", 1.0),
        ("token_unknown", 1.0),
        ("token_expired", 1.0),
    ] {
        assert_eq!(reason(r), n, "rejects of reason {r}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while reason("handshake") < 1.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        reason("handshake") >= 1.0,
        "the foreign certificate's handshake is counted"
    );

    // Meanwhile, a real agent enrols and delivers.
    let adir = dir.join("agent");
    collector.enroll("b-good", &adir.join("state"));
    let ids = seed_spool(&adir.join("state"), 5, |_| record(0));
    let agent = Agent::start(&adir, &collector, &AgentSetup::uploader(1000, 100));
    agent.wait_status("delivered", Duration::from_secs(30), |s| {
        s["spool_depth"] == 0 && s["uploaded_total"].as_u64().unwrap_or(0) >= 5
    });
    let stored = collector.all_results();
    for id in &ids {
        assert!(stored.iter().any(|r| r["id"] == id.as_str()), "{id} stored");
    }
    assert_eq!(
        collector.metric("sonde_collector_results_total{kind=\"new\"}"),
        stored.len() as f64
    );
    assert!(agent.stop().is_some_and(|s| s.success()));
    let _ = std::fs::remove_dir_all(&dir);
}
