//! What a stranger, a slow client or a greedy reader does to a collector, as tools for
//! the attack tests and `sonde-attack-bench`: idle unauthenticated QUIC connections,
//! frames that never end, idle and trickling HTTP connections, API readers; and a
//! legitimate agent uploading through it all, timing each acknowledgement.

use crate::pipeline::raw;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sonde_proto::wire::{self, FrameDecoder, Health, Message, RawRecord, Upload};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The identity `sonde-agent enroll` left in `state_dir`, as a client presents it.
pub fn identity(state_dir: &Path) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    use rustls::pki_types::pem::PemObject;
    let cert = CertificateDer::from_pem_file(state_dir.join("agent.cert.pem")).expect("agent cert");
    let key = PrivateKeyDer::from_pem_file(state_dir.join("agent.key.pem")).expect("agent key");
    (cert, key)
}

/// `n` QUIC connections without a certificate that never send anything; those the
/// collector accepted (64 handshakes at a time, over 8 client sockets).
pub async fn idle_strangers(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    n: usize,
) -> Vec<quinn::Connection> {
    let mut config = raw::client_config(ca, None);
    // Keep-alives: a stranger whose close was lost (a UDP drop under this load) hears
    // it again in answer to its next packet, as a real peer would, instead of only at
    // its idle timeout.
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(1)));
    config.transport_config(Arc::new(transport));
    let endpoints: Vec<quinn::Endpoint> = (0..8)
        .map(|_| quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client"))
        .collect();
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::new();
    for i in 0..n {
        let (endpoint, config, gate) = (endpoints[i % 8].clone(), config.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _p = gate.acquire().await.ok()?;
            let connecting = endpoint.connect_with(config, addr, "localhost").ok()?;
            tokio::time::timeout(Duration::from_secs(10), connecting)
                .await
                .ok()?
                .ok()
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        if let Ok(Some(c)) = t.await {
            out.push(c);
        }
    }
    out
}

/// How many of `conns` the collector has closed.
pub fn closed(conns: &[quinn::Connection]) -> usize {
    conns.iter().filter(|c| c.close_reason().is_some()).count()
}

/// A legitimate agent's uploads: `batches` batches of `per_batch` results on one
/// connection and stream, each waiting for its ack (`within` at most each). The ack
/// latency of each batch acknowledged, in seconds, and the failures.
pub async fn upload(
    addr: SocketAddr,
    config: quinn::ClientConfig,
    batches: usize,
    per_batch: usize,
    within: Duration,
) -> (Vec<f64>, Vec<String>) {
    upload_paced(addr, config, (batches, per_batch), within, Duration::ZERO).await
}

/// Like [`upload`], a batch every `pace` at most (an agent's uploads spread over a
/// phase, rather than all in its first second).
pub async fn upload_paced(
    addr: SocketAddr,
    config: quinn::ClientConfig,
    (batches, per_batch): (usize, usize),
    within: Duration,
    pace: Duration,
) -> (Vec<f64>, Vec<String>) {
    let (mut acks, mut failures) = (Vec::new(), Vec::new());
    let conn = match raw::connect(addr, config).await {
        Ok(c) => c,
        Err(e) => return (acks, vec![format!("connect: {e}")]),
    };
    let (mut send, mut recv) = match conn.open_bi().await {
        Ok(s) => s,
        Err(e) => return (acks, vec![format!("stream: {e}")]),
    };
    let mut d = FrameDecoder::new(1 << 20);
    let mut buf = vec![0u8; 64 * 1024];
    let mut tick = tokio::time::interval(pace.max(Duration::from_micros(1)));
    for batch in 0..batches as u64 {
        tick.tick().await;
        let records: Vec<RawRecord> = (0..per_batch)
            .map(|_| RawRecord::of(&crate::pipeline::record(1)))
            .collect();
        let frame = wire::encode(&Message::Upload(Upload {
            batch,
            health: Health::default(),
            results: records,
            signatures: None,
        }));
        let t = Instant::now();
        let answer = tokio::time::timeout(within, async {
            send.write_all(&frame).await.map_err(|e| e.to_string())?;
            loop {
                if let Some(m) = d.poll().map_err(|e| e.to_string())? {
                    return Ok(m);
                }
                match recv.read(&mut buf).await {
                    Ok(Some(n)) => d.push(&buf[..n]),
                    Ok(None) => return Err("stream closed".to_string()),
                    Err(e) => return Err(e.to_string()),
                }
            }
        })
        .await;
        match answer {
            Ok(Ok(Message::Ack(a))) if a.committed.len() == per_batch => {
                acks.push(t.elapsed().as_secs_f64())
            }
            Ok(Ok(other)) => failures.push(format!("batch {batch}: {other:?}")),
            Ok(Err(e)) => {
                failures.push(format!("batch {batch}: {e}"));
                break;
            }
            Err(_) => failures.push(format!("batch {batch}: no answer within {within:?}")),
        }
    }
    conn.close(0u32.into(), b"done");
    (acks, failures)
}

/// The collector process's resident memory, bytes.
pub fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Quantile `q` of sorted `v` (nearest rank), NaN when empty.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// A stranger's frames that never end: on `conn`, stream after stream, an upload
/// frame announcing 4 MiB and bytes after it, until `bytes` were sent or `within`
/// passed. The bytes the collector took.
pub async fn endless_frames(conn: quinn::Connection, bytes: usize, within: Duration) -> usize {
    let start = Instant::now();
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    while sent < bytes && start.elapsed() < within {
        let Ok(Ok((mut send, _recv))) =
            tokio::time::timeout(Duration::from_secs(2), conn.open_bi()).await
        else {
            break;
        };
        let mut header = wire::MAGIC.to_vec();
        header.extend_from_slice(&[wire::VERSION, 1]);
        header.extend_from_slice(&(4u32 << 20).to_be_bytes());
        if send.write_all(&header).await.is_err() {
            continue;
        }
        while sent < bytes && start.elapsed() < within {
            match tokio::time::timeout(Duration::from_secs(2), send.write_all(&chunk)).await {
                Ok(Ok(())) => sent += chunk.len(),
                _ => break,
            }
        }
    }
    sent
}

/// A collector that answers every upload on `addr` with an acknowledgement of nothing,
/// with the real collector's CA in `data_dir` (so its agents trust it); uploads seen.
pub async fn acking_nothing(
    addr: SocketAddr,
    data_dir: &Path,
) -> Arc<std::sync::atomic::AtomicUsize> {
    use sonde_collector::ca::Ca;
    let ca = Ca::load_or_create(data_dir, "sonde collector CA").expect("CA");
    let cert = ca
        .issue_server(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("server certificate");
    let config = sonde_collector::transport::quic::server_config(&ca, cert).expect("config");
    let endpoint = quinn::Endpoint::server(config, addr).expect("bind the collector's port");
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let Ok(conn) = incoming.await else { continue };
            let seen = counter.clone();
            tokio::spawn(async move {
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    let seen = seen.clone();
                    tokio::spawn(async move {
                        let mut d = FrameDecoder::new(1 << 22);
                        let mut buf = vec![0u8; 65536];
                        while let Ok(Some(n)) = recv.read(&mut buf).await {
                            d.push(&buf[..n]);
                            while let Ok(Some(Message::Upload(u))) = d.poll() {
                                seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                let ack = sonde_proto::wire::Ack {
                                    batch: u.batch,
                                    committed: Vec::new(),
                                };
                                if send
                                    .write_all(&wire::encode(&Message::Ack(ack)))
                                    .await
                                    .is_err()
                                {
                                    return;
                                }
                            }
                        }
                    });
                }
            });
        }
    });
    seen
}

/// A TCP connection from `source` to `to` (non-blocking once open), or `None` when the
/// peer's accept queue is full (100 ms).
pub fn connect_from(source: std::net::Ipv4Addr, to: SocketAddr) -> Option<std::net::TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
    s.bind(&SocketAddr::from((source, 0)).into()).ok()?;
    s.connect_timeout(&to.into(), Duration::from_millis(100))
        .ok()?;
    let s: std::net::TcpStream = s.into();
    s.set_nonblocking(true).ok()?;
    Some(s)
}

/// Slow HTTP clients: up to `n` connections to `to` from 80 loopback addresses
/// (127.0.1.10–89, under a per-address share of 64), opened within `within`; they send
/// nothing until [`trickle`] makes half of them send a byte each.
pub fn slow_http(to: SocketAddr, n: usize, within: Duration) -> Vec<std::net::TcpStream> {
    let started = Instant::now();
    (0..n)
        .take_while(|_| started.elapsed() < within)
        .filter_map(|i| connect_from(std::net::Ipv4Addr::new(127, 0, 1, 10 + (i % 80) as u8), to))
        .collect()
}

/// One byte of a request line on every other connection: trickling headers.
pub fn trickle(conns: &mut [std::net::TcpStream]) {
    use std::io::Write;
    for s in conns.iter_mut().step_by(2) {
        let _ = s.write(b"G");
    }
}

/// One fresh connection, one `GET path`, 5 s at most: whether it was answered 200.
pub fn answered(to: SocketAddr, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(5)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out.starts_with(b"HTTP/1.1 200")
}

/// `n` API readers paging through `/api/v1/results` (1000 a page, from the oldest,
/// again and again) on their own threads until `stop` is set; pages read.
pub fn readers(
    http: &str,
    n: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<std::thread::JoinHandle<u64>> {
    (0..n)
        .map(|_| {
            let (http, stop) = (http.to_string(), stop.clone());
            std::thread::spawn(move || {
                // A reader's own work happens on its machine; here it shares the
                // collector's box, so it yields the CPU (nice 19) to what is measured.
                let me = rustix::thread::gettid();
                let _ = rustix::process::setpriority_process(Some(me), 19);
                let mut pages = 0;
                let mut cursor = String::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let path = format!("/api/v1/results?limit=1000{cursor}");
                    let Some((200, body)) = crate::http_get(&http, &path) else {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    };
                    pages += 1;
                    // The cursor only (parsing the page would cost this side's CPU,
                    // on the collector's machine).
                    let next = body
                        .rfind("\"next_cursor\":\"")
                        .map(|i| &body[i + 15..])
                        .and_then(|rest| rest.split('"').next());
                    cursor = next.map(|c| format!("&cursor={c}")).unwrap_or_default();
                }
                pages
            })
        })
        .collect()
}

/// Raises this process's soft limit of open descriptors to `want` (at most the hard
/// limit): an attacker holds thousands of sockets.
pub fn raise_nofile(want: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    let max = limit.maximum.unwrap_or(u64::MAX);
    limit.current = Some(want.min(max));
    let _ = setrlimit(Resource::Nofile, limit);
}

/// An agent from before plans: `n` uploads of one result each on one stream, reading
/// the collector's frames as that agent's decoder did, by their header only: an ack
/// is counted, a frame of any other kind is skipped by its length. The acks received
/// and the frames skipped.
pub async fn old_agent_uploads(
    addr: SocketAddr,
    config: quinn::ClientConfig,
    n: u64,
) -> (u64, u64) {
    let conn = raw::connect(addr, config).await.expect("connect");
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    let (mut acks, mut skipped) = (0, 0);
    for batch in 1..=n {
        let frame = wire::encode(&Message::Upload(Upload {
            batch,
            health: Health::default(),
            results: vec![RawRecord::of(&crate::pipeline::record(batch as i64))],
            signatures: None,
        }));
        send.write_all(&frame).await.expect("send");
        loop {
            let mut header = [0u8; wire::HEADER_LEN];
            let read = tokio::time::timeout(Duration::from_secs(10), recv.read_exact(&mut header));
            read.await
                .expect("an answer in time")
                .expect("a frame header");
            assert_eq!(&header[..4], b"SNDW", "a frame");
            let len = u32::from_be_bytes([header[6], header[7], header[8], header[9]]) as usize;
            let mut payload = vec![0u8; len];
            recv.read_exact(&mut payload).await.expect("the payload");
            if header[5] == 2 {
                acks += 1;
                break;
            }
            skipped += 1;
        }
    }
    conn.close(0u32.into(), b"done");
    (acks, skipped)
}

/// The kinds of the frames the collector sends, within `within`, in answer to one
/// upload of one result on a new connection (until it closes the stream).
pub async fn kinds_after_one_upload(
    addr: SocketAddr,
    config: quinn::ClientConfig,
    within: Duration,
) -> Vec<u8> {
    let mut kinds = Vec::new();
    let Ok(conn) = raw::connect(addr, config).await else {
        return kinds;
    };
    let Ok((mut send, mut recv)) = conn.open_bi().await else {
        return kinds;
    };
    let frame = wire::encode(&Message::Upload(Upload {
        batch: 1,
        health: Health::default(),
        results: vec![RawRecord::of(&crate::pipeline::record(1))],
        signatures: None,
    }));
    if send.write_all(&frame).await.is_err() {
        return kinds;
    }
    let _ = tokio::time::timeout(within, async {
        loop {
            let mut header = [0u8; wire::HEADER_LEN];
            if recv.read_exact(&mut header).await.is_err() {
                return;
            }
            let len = u32::from_be_bytes([header[6], header[7], header[8], header[9]]) as usize;
            let mut payload = vec![0u8; len];
            if recv.read_exact(&mut payload).await.is_err() {
                return;
            }
            kinds.push(header[5]);
        }
    })
    .await;
    conn.close(0u32.into(), b"done");
    kinds
}
