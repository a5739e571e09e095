//! `sonde-responder` as a black box: info document, download sizes and durations,
//! upload reports, UDP echo, and the refusal of bad requests while others are served.

use sonde_e2e::Responder;
use sonde_proto::echo::{EchoPacket, Kind};
use sonde_proto::responder::{Info, UploadReport};
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// Sends raw bytes, returns (status code, headers+body as text) of the answer.
fn raw(responder: &Responder, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(responder.http).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(request).expect("send");
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        if out.len() > 64 * 1024 * 1024 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

fn get(responder: &Responder, path: &str) -> (u16, String) {
    raw(
        responder,
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

fn body(text: &str) -> &str {
    text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}

#[test]
fn info_tells_the_udp_port_limits_and_version() {
    let r = Responder::start(&["--max-streams", "12", "--max-duration", "20"]);
    let (code, text) = get(&r, "/api/v1/info");
    assert_eq!(code, 200, "{text}");
    let info: Info = serde_json::from_str(body(&text)).expect("info document");
    assert_eq!(info.service, "sonde-responder");
    assert_eq!(info.udp_port, r.udp_port);
    assert_eq!(info.limits.max_streams, 12);
    assert_eq!(info.limits.max_duration_ms, 20_000);
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
}

#[test]
fn download_serves_exactly_the_size_asked() {
    let r = Responder::start(&[]);
    let mut s = TcpStream::connect(r.http).expect("connect");
    s.write_all(b"GET /download?bytes=1000000 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("read");
    let head_end = all.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
    let head = String::from_utf8_lossy(&all[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-length: 1000000"), "{head}");
    assert_eq!(all.len() - head_end, 1_000_000);
    // Incompressible: no byte value dominates.
    let zeros = all[head_end..].iter().filter(|&&b| b == 0).count();
    assert!(zeros < 10_000, "{zeros} zero bytes in 1 MB");
}

#[test]
fn download_by_duration_ends_in_time() {
    let r = Responder::start(&[]);
    let started = Instant::now();
    let mut s = TcpStream::connect(r.http).expect("connect");
    s.write_all(b"GET /download?duration_ms=300 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut sink = Vec::new();
    s.read_to_end(&mut sink).expect("read");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(
        sink.len() > 1_000_000,
        "served {} bytes in 300 ms",
        sink.len()
    );
}

#[test]
fn upload_is_counted_in_server_side_bins() {
    let r = Responder::start(&[]);
    let payload = vec![0xa5u8; 3_000_000];
    let mut req = b"POST /upload?test=t1 HTTP/1.1\r\nHost: t\r\nContent-Length: 3000000\r\nConnection: close\r\n\r\n".to_vec();
    req.extend_from_slice(&payload);
    let (code, text) = raw(&r, &req);
    assert_eq!(code, 200, "{text}");
    assert!(body(&text).contains("3000000"));
    let (code, text) = get(&r, "/upload/t1");
    assert_eq!(code, 200, "{text}");
    let report: UploadReport = serde_json::from_str(body(&text)).expect("report");
    assert_eq!(report.bytes, 3_000_000);
    assert_eq!(report.bins.iter().sum::<u64>(), 3_000_000);
    assert_eq!(
        (report.streams, report.failed_streams, report.bin_ms),
        (1, 0, 100)
    );
}

#[test]
fn bad_requests_get_4xx_and_others_keep_being_served() {
    let r = Responder::start(&["--max-bytes", "1000000"]);
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"GET /download?bytes=2000000 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec(), 413),
        (b"GET /download?bytes=-1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec(), 400),
        (b"GET /download HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec(), 400),
        (b"GET /download?duration_ms=99999999 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec(), 400),
        (b"POST /upload HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx".to_vec(), 400),
        (b"POST /upload?test=../etc HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx".to_vec(), 400),
        (b"POST /upload?test=big HTTP/1.1\r\nHost: t\r\nContent-Length: 5000000\r\nConnection: close\r\n\r\n".to_vec(), 413),
        (b"GET /upload/nosuchtest HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec(), 404),
        (b"DELETE /download HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec(), 405),
        (b"GET /nothing-here HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec(), 404),
        (b"\x16\x03\x01\x02\x00garbage that is not HTTP\r\n\r\n".to_vec(), 400),
        (format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "a".repeat(200_000)).into_bytes(), 431),
    ];
    for (req, want) in cases {
        let (code, text) = raw(&r, &req);
        assert_eq!(
            code,
            want,
            "{}: {text:.200}",
            String::from_utf8_lossy(&req[..req.len().min(60)])
        );
        // Still serving after each refusal.
        let (ok, _) = get(&r, "/api/v1/info");
        assert_eq!(ok, 200);
    }
}

#[test]
fn upload_beyond_the_byte_limit_is_cut_with_413() {
    let r = Responder::start(&["--max-bytes", "100000"]);
    let mut req =
        b"POST /upload?test=chunky HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..4 {
        req.extend_from_slice(b"10000\r\n");
        req.extend_from_slice(&vec![1u8; 0x10000]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let (code, _) = raw(&r, &req);
    assert_eq!(code, 413);
}

#[test]
fn udp_echo_answers_requests_only() {
    let r = Responder::start(&[]);
    let port = r.udp_port.expect("udp port");
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.connect(("127.0.0.1", port)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    // Garbage and replies are dropped silently.
    sock.send(b"hello, is this thing on?").expect("send");
    let mut reply_kind = [0u8; 32];
    EchoPacket {
        kind: Kind::Reply,
        session: 1,
        seq: 1,
        client_send_ns: 1,
        server_recv_ns: 0,
    }
    .encode(&mut reply_kind)
    .expect("room");
    sock.send(&reply_kind).expect("send");
    let mut buf = [0u8; 2048];
    assert!(
        sock.recv(&mut buf).is_err(),
        "no answer to garbage or replies"
    );
    // A request comes back as a reply with the server's time.
    let mut req = [0u8; 64];
    EchoPacket {
        kind: Kind::Request,
        session: 9,
        seq: 3,
        client_send_ns: 77,
        server_recv_ns: 0,
    }
    .encode(&mut req)
    .expect("room");
    sock.send(&req).expect("send");
    let n = sock.recv(&mut buf).expect("echo");
    assert_eq!(n, 64);
    let p = EchoPacket::decode(&buf[..n]).expect("reply");
    assert_eq!(
        (p.kind, p.session, p.seq, p.client_send_ns),
        (Kind::Reply, 9, 3, 77)
    );
    assert!(p.server_recv_ns > 0);
}

/// A request datagram of `len` bytes.
fn echo_request(seq: u32, len: usize) -> Vec<u8> {
    let mut req = vec![0u8; len];
    EchoPacket {
        kind: Kind::Request,
        session: 5,
        seq,
        client_send_ns: 1,
        server_recv_ns: 0,
    }
    .encode(&mut req)
    .expect("room");
    req
}

#[test]
fn udp_echo_answers_one_address_at_its_rate_and_others_in_full() {
    let r = Responder::start(&["--echo-rate", "100"]);
    let port = r.udp_port.expect("udp port");
    // A flood aimed (as if forged) from one address: 2,000 requests over a second, in
    // bursts of 100 every 50 ms (the socket buffers take them), replies counted as
    // they come.
    let flood = UdpSocket::bind("127.0.0.1:0").expect("bind");
    flood.connect(("127.0.0.1", port)).expect("connect");
    flood
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let reader = flood.try_clone().expect("clone");
    let counting = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut answered = 0usize;
        while reader.recv(&mut buf).is_ok() {
            answered += 1;
        }
        answered
    });
    let started = Instant::now();
    for seq in 0..2000 {
        let _ = flood.send(&echo_request(seq, 64));
        if seq % 100 == 99 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let answered = counting.join().expect("reader");
    // The burst (200) and the rate for the time it took, nothing like 2,000.
    let bound = 200.0 + 100.0 * (elapsed + 0.3) + 5.0;
    eprintln!("flood: 2000 sent in {elapsed:.2} s, {answered} answered (bound {bound:.0})");
    assert!(answered as f64 <= bound, "{answered} > {bound}");
    assert!(answered >= 200, "the burst is answered: {answered}");
    let mut buf = [0u8; 2048];
    // Meanwhile another address, probing like an agent (every 20 ms), loses nothing.
    let agent = UdpSocket::bind("127.0.0.2:0").expect("bind");
    agent.connect(("127.0.0.1", port)).expect("connect");
    agent
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut received = 0;
    for seq in 0..50 {
        agent.send(&echo_request(seq, 64)).expect("send");
        if agent.recv(&mut buf).is_ok() {
            received += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(received, 50);
}

#[test]
fn sigterm_stops_the_responder_gracefully() {
    let r = Responder::start(&["--shutdown-grace", "2"]);
    // A long download in flight must not keep it alive past the grace period.
    let mut s = TcpStream::connect(r.http).expect("connect");
    s.write_all(b"GET /download?duration_ms=20000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    let mut buf = [0u8; 1024];
    s.read_exact(&mut buf).expect("download started");
    let started = Instant::now();
    let status = r.terminate(Duration::from_secs(10)).expect("exited");
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn bad_arguments_exit_64() {
    for args in [
        vec!["--listen", "not-an-address"],
        vec!["--listen", "127.0.0.1:0", "--max-streams", "0"],
        vec!["--nope"],
        vec![],
    ] {
        let mut cmd = std::process::Command::new(sonde_e2e::bin("sonde-responder"));
        cmd.args(&args);
        let run = sonde_e2e::run_bounded(cmd, Duration::from_secs(10));
        assert_eq!(run.code(), 64, "{args:?}: {}", run.stderr());
        assert_eq!(run.stderr().trim().lines().count(), 1, "{}", run.stderr());
    }
}

/// A CPU cgroup (v1 `cpu` controller, or v2) with a quota of `cpus` CPUs; removed on
/// drop. `None` when this kernel offers neither.
struct CpuQuota(std::path::PathBuf);

impl CpuQuota {
    fn new(cpus: f64) -> Option<CpuQuota> {
        let name = format!("sonde-quota-{}", std::process::id());
        let v1 = std::path::Path::new("/sys/fs/cgroup/cpu");
        if v1.join("cpu.cfs_quota_us").exists() {
            let dir = v1.join(name);
            std::fs::create_dir_all(&dir).ok()?;
            std::fs::write(dir.join("cpu.cfs_period_us"), "100000").ok()?;
            std::fs::write(
                dir.join("cpu.cfs_quota_us"),
                format!("{}", (cpus * 100_000.0) as u64),
            )
            .ok()?;
            return Some(CpuQuota(dir));
        }
        let v2 = std::path::Path::new("/sys/fs/cgroup");
        if v2.join("cgroup.controllers").exists() {
            let dir = v2.join(name);
            std::fs::create_dir_all(&dir).ok()?;
            std::fs::write(
                dir.join("cpu.max"),
                format!("{} 100000", (cpus * 100_000.0) as u64),
            )
            .ok()?;
            return Some(CpuQuota(dir));
        }
        None
    }

    fn admit(&self, pid: u32) {
        std::fs::write(self.0.join("cgroup.procs"), pid.to_string()).expect("move into the cgroup");
    }
}

impl Drop for CpuQuota {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
#[cfg_attr(
    not(sonde_root),
    ignore = "needs root: puts the responder under a CPU quota (cgroup)"
)]
fn a_responder_at_its_cpu_limit_makes_the_result_server_limited() {
    let quota = CpuQuota::new(0.2).expect("a CPU cgroup");
    let responder = Responder::start(&[]);
    quota.admit(responder.pid());
    let mut cmd = std::process::Command::new(sonde_e2e::bin("sonde-agent"));
    cmd.args([
        "probe",
        "--responder",
        &responder.url(),
        "--max-duration",
        "3",
        "--json",
    ]);
    let run = sonde_e2e::run_bounded(cmd, Duration::from_secs(60));
    let r: serde_json::Value = serde_json::from_str(run.stdout().trim()).expect("record");
    let flags: Vec<&str> = r["flags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str())
        .collect();
    assert!(
        flags.contains(&"server_limited"),
        "{flags:?}: {}",
        run.stderr()
    );
    // The responder says so itself.
    let (code, text) = get(&responder, "/api/v1/load?window_ms=10000");
    assert_eq!(code, 200);
    let load: serde_json::Value = serde_json::from_str(body(&text)).expect("load");
    assert!(
        load["cpu_busy_max"].as_f64().unwrap_or(0.0) >= 0.9,
        "{load}"
    );
    drop(responder);
}

#[test]
fn an_idle_responder_reports_a_low_load() {
    let responder = Responder::start(&[]);
    std::thread::sleep(Duration::from_millis(500));
    let (code, text) = get(&responder, "/api/v1/load?window_ms=400");
    assert_eq!(code, 200, "{text}");
    let load: serde_json::Value = serde_json::from_str(body(&text)).expect("load");
    assert!(load["cpu_busy_max"].as_f64().unwrap_or(1.0) < 0.5, "{load}");
    assert!(load["cores"].as_u64().unwrap_or(0) >= 1);
}
