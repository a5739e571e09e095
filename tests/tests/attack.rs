//! Strangers against a real `sonde-collector serve` process, each attack bounded in
//! count and time, on loopback; what a legitimate agent still gets is measured
//! (docs/OPERATIONS.md, "Threat model").

use sonde_e2e::attack::{self, closed, idle_strangers};
use sonde_e2e::pipeline::{raw, scratch, Collector};
use std::net::SocketAddr;
use std::time::Duration;

fn quic_addr(c: &Collector) -> SocketAddr {
    c.quic
        .replace("localhost", "127.0.0.1")
        .parse()
        .expect("addr")
}

#[test]
fn idle_strangers_cannot_take_the_agents_connection_slots() {
    let dir = scratch("attack-slots");
    // 100 agent slots, and strangers' own budget: 16 at once, 4 per address, 3 s to enrol.
    let collector = {
        let mut c = Collector::configure_with(
            &dir,
            "max_connections = 100\nmax_unauthenticated = 16\nmax_unauthenticated_per_address = 4\nenrol_timeout = \"3s\"",
            "",
        );
        c.start();
        c
    };
    let state = dir.join("agent");
    collector.enroll("b-legit", &state);
    let (cert, key) = attack::identity(&state);
    let addr = quic_addr(&collector);
    let ca = collector.ca_cert();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        // 300 strangers connect and say nothing: three times the agents' slots.
        let strangers = idle_strangers(addr, &ca, 300).await;
        assert!(!strangers.is_empty(), "the handshake itself is open to all");
        // The agent connects and uploads meanwhile: every batch acknowledged.
        let config = raw::client_config(&ca, Some((cert, key)));
        let (acks, failures) = attack::upload(addr, config, 20, 10, Duration::from_secs(10)).await;
        assert!(failures.is_empty(), "{failures:?}");
        assert_eq!(acks.len(), 20);
        // Strangers beyond their budget were closed at once; the others within the
        // enrolment deadline (3 s), heard within a few more.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while closed(&strangers) < strangers.len() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert_eq!(
            closed(&strangers),
            strangers.len(),
            "every idle stranger closed"
        );
    });
    let busy = collector.metric("sonde_collector_rejects_total{reason=\"busy\"}");
    let late = collector.metric("sonde_collector_rejects_total{reason=\"enrolment_timeout\"}");
    assert!(
        busy > 0.0 && late > 0.0,
        "busy {busy}, enrolment timeouts {late}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn frames_that_never_end_leave_the_collectors_memory_flat() {
    let dir = scratch("attack-memory");
    let collector = Collector::start_in(&dir);
    let state = dir.join("agent");
    collector.enroll("b-legit", &state);
    let (cert, key) = attack::identity(&state);
    let addr = quic_addr(&collector);
    let ca = collector.ca_cert();
    let pid = collector.pid().expect("pid");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let before = attack::rss(pid);
    let (sent, during) = runtime.block_on(async {
        // Three strangers try to push 700 MiB of frames that never end (20 s at most).
        let strangers = idle_strangers(addr, &ca, 3).await;
        let pushing: Vec<_> = strangers
            .into_iter()
            .map(|c| {
                tokio::spawn(attack::endless_frames(
                    c,
                    240 << 20,
                    Duration::from_secs(20),
                ))
            })
            .collect();
        // Meanwhile an agent uploads.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let config = raw::client_config(&ca, Some((cert, key)));
        let uploads = attack::upload(addr, config, 10, 20, Duration::from_secs(10)).await;
        let mut sent = 0;
        for p in pushing {
            sent += p.await.unwrap_or(0);
        }
        (sent, uploads)
    });
    let after = attack::rss(pid);
    let grown = after.saturating_sub(before) as f64 / (1 << 20) as f64;
    eprintln!(
        "strangers got {:.0} MiB in; collector RSS {:.0} → {:.0} MiB",
        sent as f64 / (1 << 20) as f64,
        before as f64 / (1 << 20) as f64,
        after as f64 / (1 << 20) as f64
    );
    assert!(during.1.is_empty(), "the agent was served: {:?}", during.1);
    assert!(grown < 64.0, "RSS grew by {grown:.0} MiB");
    let refused = collector.metric("sonde_collector_rejects_total{reason=\"oversize\"}");
    assert!(
        refused > 0.0,
        "frames over the strangers' bound are refused, counted"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_revoked_agent_is_cut_off_on_its_open_connection_within_seconds() {
    let dir = scratch("attack-revoked");
    let collector = Collector::start_in(&dir);
    let state = dir.join("agent");
    let id = collector.enroll("b-revoked", &state);
    let (cert, key) = attack::identity(&state);
    let addr = quic_addr(&collector);
    let config = raw::client_config(&collector.ca_cert(), Some((cert, key)));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let revoked_at = std::sync::Arc::new(std::sync::Mutex::new(None::<std::time::Instant>));
    let acked_after = runtime.block_on(async {
        let conn = raw::connect(addr, config).await.expect("connect");
        let (mut send, mut recv) = conn.open_bi().await.expect("stream");
        let mut d = sonde_proto::wire::FrameDecoder::new(1 << 20);
        let mut buf = vec![0u8; 65536];
        let mut acked_after = Vec::new();
        // One upload every 200 ms on one open connection, for 12 s; revoked after 3.
        let start = std::time::Instant::now();
        let mut batch = 0u64;
        while start.elapsed() < Duration::from_secs(12) {
            if start.elapsed() > Duration::from_secs(3)
                && revoked_at.lock().expect("lock").is_none()
            {
                let run = collector.cli(&["agent", "revoke", &id]);
                assert_eq!(run.code(), 0, "{}", run.stderr());
                *revoked_at.lock().expect("lock") = Some(std::time::Instant::now());
            }
            batch += 1;
            let frame = sonde_proto::wire::encode(&sonde_proto::wire::Message::Upload(
                sonde_proto::wire::Upload {
                    batch,
                    health: Default::default(),
                    results: vec![sonde_proto::wire::RawRecord::of(
                        &sonde_e2e::pipeline::record(1),
                    )],
                    signatures: None,
                },
            ));
            if send.write_all(&frame).await.is_err() {
                break;
            }
            let answer = loop {
                if let Ok(Some(m)) = d.poll() {
                    break Some(m);
                }
                match tokio::time::timeout(Duration::from_secs(5), recv.read(&mut buf)).await {
                    Ok(Ok(Some(n))) => d.push(&buf[..n]),
                    _ => break None,
                }
            };
            match answer {
                Some(sonde_proto::wire::Message::Ack(_)) => {
                    if let Some(t) = *revoked_at.lock().expect("lock") {
                        acked_after.push(t.elapsed());
                    }
                }
                _ => break,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        acked_after
    });
    // Uploads acknowledged after the revocation: only within the watch's period.
    let late: Vec<_> = acked_after
        .iter()
        .filter(|d| **d > Duration::from_secs(4))
        .collect();
    assert!(
        late.is_empty(),
        "acknowledged after the revocation: {acked_after:?}"
    );
    assert!(collector.metric("sonde_collector_rejects_total{reason=\"revoked\"}") >= 1.0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_ack_that_frees_nothing_backs_off_instead_of_resending_at_once() {
    use sonde_e2e::pipeline::{seed_spool, Agent, AgentSetup};
    let dir = scratch("attack-storm");
    let mut collector = Collector::start_in(&dir);
    let adir = dir.join("agent");
    collector.enroll("b-storm", &adir.join("state"));
    collector.stop();
    seed_spool(&adir.join("state"), 50, |_| sonde_e2e::pipeline::record(5));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let seen = runtime.block_on(attack::acking_nothing(
        quic_addr(&collector),
        &collector.data_dir(),
    ));
    let agent = Agent::start(&adir, &collector, &AgentSetup::uploader(1000, 10));
    std::thread::sleep(Duration::from_secs(10));
    let uploads = seen.load(std::sync::atomic::Ordering::Relaxed);
    let status = agent.status();
    drop(agent);
    eprintln!(
        "uploads in 10 s against a collector that acknowledges nothing: {uploads} (runs measured meanwhile: {})",
        status["results_total"]
    );
    // Backoff from 1 s up to retry_max (2 s here): a handful, not hundreds a second.
    assert!((1..=20).contains(&uploads), "{uploads} uploads in 10 s");
    // Nothing left the spool: the 50 seeded, and any run the agent's own schedule made
    // meanwhile (its hourly access's phase may fall in these 10 s).
    let measured = status["results_total"].as_u64().unwrap_or(0);
    assert_eq!(
        status["spool_depth"].as_u64(),
        Some(50 + measured),
        "nothing left the spool: {status}"
    );
    assert!(
        status["uplink_errors_total"]["nothing_acknowledged"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "{status}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
