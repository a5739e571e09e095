//! A fleet of simulated agents for the benchmarks: each enrols over QUIC with its own
//! one-time token and key (as `sonde-agent enroll` does) and keeps its mutual-TLS
//! connection open with keep-alives (as `sonde-agent run` does).

use crate::pipeline::raw;
use sonde_collector::ca::Ca;
use sonde_collector::ingest;
use sonde_proto::wire::{self, Enroll, FrameDecoder, Message};
use sonde_store::NewToken;
use sonde_store_sqlite::SqliteStore;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// `[quic]` lines for a collector facing a simulated fleet: the simulated agents all
/// enrol from 127.0.0.1, 64 at once (their connections linger a moment after), where a real fleet comes from as many addresses
/// as boxes (the per-address bound on strangers would refuse most of them).
pub const FROM_ONE_ADDRESS: &str =
    "max_unauthenticated = 256\nmax_unauthenticated_per_address = 256";

/// A client configuration like an agent's: keep-alives hold the connection open.
pub fn client_config(
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

/// The next frame the collector sends on `recv`; `None` once the stream or the
/// connection ended.
pub async fn next_frame(recv: &mut quinn::RecvStream, d: &mut FrameDecoder) -> Option<Message> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if let Some(m) = d.poll().expect("collector frames") {
            return Some(m);
        }
        let n = recv.read(&mut buf).await.ok()??;
        d.push(&buf[..n]);
    }
}

/// The next frame the collector sends on `recv`, which must come.
pub async fn answer(recv: &mut quinn::RecvStream, d: &mut FrameDecoder) -> Message {
    next_frame(recv, d)
        .await
        .expect("the collector answers on an open stream")
}

/// A simulated agent's identity, as a client configuration.
#[derive(Clone)]
pub struct Agent {
    /// Its client configuration (certificate, key, pinned CA).
    pub config: quinn::ClientConfig,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Agent")
    }
}

/// Enrols one agent over QUIC with `token`.
pub async fn enrol(
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

/// Enrols one agent per token, at most 64 at once.
pub async fn enrol_all(
    endpoints: &[quinn::Endpoint],
    addr: SocketAddr,
    ca: &rustls::pki_types::CertificateDer<'static>,
    tokens: Vec<String>,
) -> Vec<Agent> {
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::new();
    for (i, token) in tokens.into_iter().enumerate() {
        let endpoint = endpoints[i % endpoints.len()].clone();
        let (ca, gate) = (ca.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _p = gate.acquire().await.expect("gate");
            enrol(&endpoint, addr, &ca, token).await
        }));
    }
    let mut agents = Vec::new();
    for t in tasks {
        agents.push(t.await.expect("enrol task"));
    }
    agents
}

/// Opens each agent's mutual-TLS connection, at most 64 handshakes at once.
pub async fn connect_all(
    endpoints: &[quinn::Endpoint],
    addr: SocketAddr,
    agents: Vec<Agent>,
) -> Vec<quinn::Connection> {
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
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
    let mut conns = Vec::new();
    for t in tasks {
        conns.push(t.await.expect("connect task"));
    }
    conns
}

/// Tokens for buildings `b0`… of `quartier`, written into the collector's store before
/// it starts (as `token create` would, a thousand times faster).
pub fn tokens(store: &dyn sonde_store::Store, ca: &Ca, quartier: &str, n: usize) -> Vec<String> {
    let now = chrono::Utc::now();
    (0..n)
        .map(|i| {
            let t = ingest::new_token(ca);
            store
                .create_token(&NewToken {
                    hash: ingest::token_hash(&t),
                    quartier: quartier.into(),
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
}

/// A collector for a simulated fleet: configured in `dir`, `agents` tokens for
/// buildings `b0`… of quartier `bench` written before it starts, then started.
#[derive(Debug)]
pub struct Bench {
    /// The running collector.
    pub collector: crate::pipeline::Collector,
    /// Its data directory.
    pub data_dir: std::path::PathBuf,
    /// Its CA.
    pub ca: Ca,
    /// One enrolment token per simulated agent.
    pub tokens: Vec<String>,
    /// Its QUIC address.
    pub addr: SocketAddr,
}

impl Bench {
    /// Starts it, its store the SQLite file in its data directory.
    pub fn start(dir: &std::path::Path, agents: usize) -> Bench {
        Bench::start_on(dir, agents, None)
    }

    /// Starts it, its store the PostgreSQL database at `url` when given.
    pub fn start_on(dir: &std::path::Path, agents: usize, url: Option<&str>) -> Bench {
        let extra = url.map_or(String::new(), |u| format!("[store]\nurl = \"{u}\"\n"));
        let mut collector =
            crate::pipeline::Collector::configure_with(dir, FROM_ONE_ADDRESS, &extra);
        let data_dir = dir.join("collector");
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let ca = Ca::load_or_create(&data_dir, "sonde collector CA").expect("CA");
        let store: Box<dyn sonde_store::Store> = match url {
            Some(u) => Box::new(sonde_store_postgres::PostgresStore::open(u).expect("store")),
            None => Box::new(SqliteStore::open(&data_dir.join("collector.sqlite")).expect("store")),
        };
        let tokens = tokens(&*store, &ca, "bench", agents);
        drop(store);
        collector.start();
        let addr = collector
            .quic
            .replace("localhost", "127.0.0.1")
            .parse()
            .expect("quic addr");
        Bench {
            collector,
            data_dir,
            ca,
            tokens,
            addr,
        }
    }
}

/// Prints a benchmark's figures: one JSON object, or a table under `title`.
pub fn print_report(title: &str, report: &serde_json::Value, json: bool) {
    if json {
        println!("{report}");
        return;
    }
    println!("{title}");
    for (k, v) in report.as_object().into_iter().flatten() {
        match v.as_f64() {
            Some(f) if v.is_f64() => println!("  {k:<32} {f:>12.3}"),
            _ => println!("  {k:<32} {v:>12}"),
        }
    }
}
