//! `sonde-ingest-bench`: how fast a real `sonde-collector serve` (its own process,
//! SQLite with durable commits) ingests results pushed over QUIC by many simulated
//! agents on loopback. A benchmark, not a test: it prints figures, asserts nothing
//! about time.
//!
//! Each simulated agent enrols over QUIC with its own one-time token and key, keeps
//! its mutual-TLS connection open, and uploads its results in batches, waiting for
//! each acknowledgement (sent after commit) before the next batch, as the real agent
//! does. Figures: results/s over the upload phase, time to ack per batch (p50, p99),
//! connections held at once, and results found in the store afterwards.
//!
//! Usage: cargo run --release -p sonde-e2e --bin sonde-ingest-bench --
//!        [--agents N] [--results N] [--batch N] [--json]

use sonde_collector::ca::Ca;
use sonde_collector::ingest;
use sonde_e2e::pipeline::{raw, scratch, Collector};
use sonde_proto::wire::{self, Enroll, FrameDecoder, Health, Message, RejectReason, Upload};
use sonde_proto::ResultRecord;
use sonde_store::prelude::*;
use sonde_store::{NewToken, ResultQuery};
use sonde_store_sqlite::SqliteStore;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    agents: usize,
    results: usize,
    batch: usize,
    json: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut out = Args {
        agents: 1000,
        results: 100,
        batch: 100,
        json: false,
    };
    let mut args = std::env::args().skip(1);
    let num = |v: Option<String>, name: &str, max: usize| {
        v.and_then(|v| v.parse().ok())
            .filter(|n| (1..=max).contains(n))
            .ok_or(format!("{name} needs a number in 1..={max}"))
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--agents" => out.agents = num(args.next(), "--agents", 5000)?,
            "--results" => out.results = num(args.next(), "--results", 100_000)?,
            "--batch" => out.batch = num(args.next(), "--batch", 1000)?,
            "--json" => out.json = true,
            "-h" | "--help" => {
                return Err(
                    "usage: sonde-ingest-bench [--agents N (1000)] [--results N per agent (100)] \
                     [--batch N (100)] [--json]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(out)
}

/// A client configuration like an agent's: keep-alives hold the connection open.
fn client_config(
    ca: &rustls::pki_types::CertificateDer<'static>,
    identity: Option<(
        rustls::pki_types::CertificateDer<'static>,
        rustls::pki_types::PrivateKeyDer<'static>,
    )>,
) -> quinn::ClientConfig {
    let mut config = raw::client_config(ca, identity);
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(10)));
    config.transport_config(Arc::new(transport));
    config
}

async fn answer(recv: &mut quinn::RecvStream, d: &mut FrameDecoder) -> Message {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if let Some(m) = d.poll().expect("collector frames") {
            return m;
        }
        let n = recv
            .read(&mut buf)
            .await
            .expect("read")
            .expect("stream open");
        d.push(&buf[..n]);
    }
}

struct Agent {
    config: quinn::ClientConfig,
}

async fn enrol(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    ca: &rustls::pki_types::CertificateDer<'static>,
    token: String,
) -> Agent {
    let key = rcgen::KeyPair::generate().expect("key");
    let csr_pem = rcgen::CertificateParams::new(Vec::<String>::new())
        .expect("params")
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem");
    let conn = endpoint
        .connect_with(client_config(ca, None), addr, "localhost")
        .expect("connect")
        .await
        .expect("handshake");
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    send.write_all(&wire::encode(&Message::Enroll(Enroll { token, csr_pem })))
        .await
        .expect("send");
    let _ = send.finish();
    let m = answer(&mut recv, &mut FrameDecoder::new(1 << 20)).await;
    conn.close(0u32.into(), b"enrolled");
    let Message::Enrolled(e) = m else {
        panic!("enrolment refused: {m:?}");
    };
    use rustls::pki_types::pem::PemObject;
    let cert =
        rustls::pki_types::CertificateDer::from_pem_slice(e.cert_pem.as_bytes()).expect("cert pem");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    Agent {
        config: client_config(ca, Some((cert, key))),
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(64);
        }
    };
    let dir = scratch("ingest-bench");
    let mut collector = Collector::configure(&dir);
    let data_dir = dir.join("collector");
    std::fs::create_dir_all(&data_dir).expect("data dir");
    // Tokens, written into the collector's store before it starts (as `token create`
    // would, a thousand times faster).
    let ca = Ca::load_or_create(&data_dir, "sonde collector CA").expect("CA");
    let ca_cert = ca.cert().clone();
    let tokens: Vec<String> = {
        let store = SqliteStore::open(&data_dir.join("collector.sqlite")).expect("store");
        let now = chrono::Utc::now();
        (0..args.agents)
            .map(|i| {
                let t = ingest::new_token(&ca);
                store
                    .create_token(&NewToken {
                        hash: ingest::token_hash(&t),
                        quartier: "bench".into(),
                        building: format!("b{i}"),
                        latitude: None,
                        longitude: None,
                        created_at: now,
                        expires_at: now + chrono::Duration::hours(1),
                    })
                    .expect("token");
                t.to_string()
            })
            .collect()
    };
    collector.start();
    let addr: SocketAddr = collector
        .quic
        .replace("localhost", "127.0.0.1")
        .parse()
        .expect("quic addr");
    let collector_pid = collector.pid();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let record_bytes = {
        let mut r = ResultRecord::schema_example();
        r.id = uuid::Uuid::now_v7();
        r.to_json().len()
    };
    let report = runtime.block_on(async {
        // A few client sockets, shared by the simulated agents.
        let endpoints: Vec<quinn::Endpoint> = (0..8)
            .map(|_| quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client"))
            .collect();
        eprintln!("enrolling {} agents over QUIC…", args.agents);
        let t_enrol = Instant::now();
        let gate = Arc::new(tokio::sync::Semaphore::new(64));
        let mut tasks = Vec::new();
        for (i, token) in tokens.into_iter().enumerate() {
            let endpoint = endpoints[i % endpoints.len()].clone();
            let ca = ca_cert.clone();
            let gate = gate.clone();
            tasks.push(tokio::spawn(async move {
                let _p = gate.acquire().await.expect("gate");
                enrol(&endpoint, addr, &ca, token).await
            }));
        }
        let mut agents = Vec::new();
        for t in tasks {
            agents.push(t.await.expect("enrol task"));
        }
        let enrol_s = t_enrol.elapsed().as_secs_f64();
        eprintln!("connecting {} agents (mutual TLS)…", agents.len());
        let t_connect = Instant::now();
        let mut conns = Vec::new();
        let mut tasks = Vec::new();
        for (i, agent) in agents.into_iter().enumerate() {
            let endpoint = endpoints[i % endpoints.len()].clone();
            let gate = gate.clone();
            tasks.push(tokio::spawn(async move {
                let _p = gate.acquire().await.expect("gate");
                endpoint
                    .connect_with(agent.config, addr, "localhost")
                    .expect("connect")
                    .await
                    .expect("mTLS handshake")
            }));
        }
        for t in tasks {
            conns.push(t.await.expect("connect task"));
        }
        let connect_s = t_connect.elapsed().as_secs_f64();
        let held = conns.iter().filter(|c| c.close_reason().is_none()).count();
        eprintln!(
            "{held} connections held; uploading {} results each in batches of {}…",
            args.results, args.batch
        );
        let open = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let start = Arc::new(tokio::sync::Barrier::new(conns.len() + 1));
        let mut tasks = Vec::new();
        for conn in conns {
            let (results, batch) = (args.results, args.batch);
            let (open, peak, start) = (open.clone(), peak.clone(), start.clone());
            tasks.push(tokio::spawn(async move {
                // Records made before the clock starts: the agent's spool holds them.
                let mut pending: Vec<wire::RawRecord> = (0..results)
                    .map(|_| {
                        let mut r = ResultRecord::schema_example();
                        r.id = uuid::Uuid::now_v7();
                        wire::RawRecord::of(&r)
                    })
                    .collect();
                let (mut send, mut recv) = conn.open_bi().await.expect("stream");
                let mut decoder = FrameDecoder::new(1 << 20);
                let mut latencies = Vec::new();
                let mut busy = 0u64;
                start.wait().await;
                let now_open = open.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now_open, Ordering::SeqCst);
                let mut n = 0u64;
                while !pending.is_empty() {
                    let take = pending.len().min(batch);
                    n += 1;
                    let frame = wire::encode(&Message::Upload(Upload {
                        batch: n,
                        health: Health::default(),
                        results: pending[..take].to_vec(),
                    }));
                    let t = Instant::now();
                    send.write_all(&frame).await.expect("send");
                    match answer(&mut recv, &mut decoder).await {
                        Message::Ack(a) if a.committed.len() == take => {
                            pending.drain(..take);
                            latencies.push(t.elapsed().as_secs_f64());
                        }
                        // Busy: back off with jitter, as the agent does, and resend.
                        Message::Reject(r) if r.reason == RejectReason::Unavailable => {
                            busy += 1;
                            let wait = 500 + (n * 7919 + busy * 104_729) % 1500;
                            tokio::time::sleep(Duration::from_millis(wait)).await;
                        }
                        other => panic!("expected an ack of {take}: {other:?}"),
                    }
                }
                open.fetch_sub(1, Ordering::SeqCst);
                (latencies, busy, conn)
            }));
        }
        start.wait().await;
        let t_upload = Instant::now();
        let cpu_before = (
            collector_pid.and_then(sonde_e2e::cpu_seconds),
            sonde_e2e::cpu_seconds(std::process::id()),
        );
        let mut latencies = Vec::new();
        let mut kept = Vec::new();
        let mut busy_total = 0u64;
        for t in tasks {
            let (l, busy, conn) = t.await.expect("upload task");
            latencies.extend(l);
            busy_total += busy;
            kept.push(conn);
        }
        let upload_s = t_upload.elapsed().as_secs_f64();
        let cpu = |before: Option<f64>, now: Option<f64>| match (before, now) {
            (Some(b), Some(n)) => n - b,
            _ => f64::NAN,
        };
        let collector_cpu_s = cpu(cpu_before.0, collector_pid.and_then(sonde_e2e::cpu_seconds));
        let agents_cpu_s = cpu(cpu_before.1, sonde_e2e::cpu_seconds(std::process::id()));
        let held_after = kept.iter().filter(|c| c.close_reason().is_none()).count();
        for c in &kept {
            c.close(0u32.into(), b"done");
        }
        latencies.sort_by(f64::total_cmp);
        serde_json::json!({
            "agents": args.agents,
            "results_per_agent": args.results,
            "batch": args.batch,
            "record_bytes": record_bytes,
            "enrol_s": enrol_s,
            "connect_s": connect_s,
            "connections_held": held,
            "connections_held_at_end": held_after,
            "peak_concurrent_uploaders": peak.load(Ordering::SeqCst),
            "upload_s": upload_s,
            "results_per_s": (args.agents * args.results) as f64 / upload_s,
            "collector_cpu_s": collector_cpu_s,
            "simulated_agents_cpu_s": agents_cpu_s,
            "results_per_collector_cpu_s": (args.agents * args.results) as f64 / collector_cpu_s,
            "ack_p50_ms": quantile(&latencies, 0.5) * 1e3,
            "ack_p99_ms": quantile(&latencies, 0.99) * 1e3,
            "ack_max_ms": latencies.last().copied().unwrap_or(f64::NAN) * 1e3,
            "busy_refusals": busy_total,
        })
    });
    collector.stop();
    let store = SqliteStore::open(&data_dir.join("collector.sqlite")).expect("store");
    let mut stored = 0usize;
    let mut q = ResultQuery {
        limit: 1000,
        ..Default::default()
    };
    loop {
        let page = store.results(&q).expect("page");
        stored += page.results.len();
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    let mut report = report;
    report["stored_after_restart"] = stored.into();
    if args.json {
        println!("{report}");
    } else {
        println!("sonde ingest benchmark (collector: SQLite WAL, synchronous=FULL, group commit)");
        for (k, v) in report.as_object().into_iter().flatten() {
            match v.as_f64() {
                Some(f) if v.is_f64() => println!("  {k:<28} {f:>12.2}"),
                _ => println!("  {k:<28} {v:>12}"),
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
