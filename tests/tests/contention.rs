//! One responder, several clients: a second test in one direction is refused with a
//! busy reply (the agent's record says so in words), a test allowed to overlap another
//! is flagged `server_contended`, and one client's slow or stalled streams cannot keep
//! the others out. Real responder processes on loopback; the "other client" comes from
//! 127.0.0.2, bounded in time.

use sonde_e2e::{agent, Responder};
use sonde_proto::{Flag, ResultRecord};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A TCP connection to `to` from the loopback address `from`.
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let local: SocketAddr = format!("{from}:0").parse().expect("addr");
    socket.bind(&local.into()).expect("bind the source");
    socket.connect(&to.into()).expect("connect");
    socket.into()
}

/// Another client's download test held open (and read) until `stop`: test `id`.
fn hold_download(r: &Responder, id: &str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let mut s = connect_from("127.0.0.2", r.http);
    let req = format!("GET /download?duration_ms=20000&test={id} HTTP/1.1\r\nHost: x\r\n\r\n");
    s.write_all(req.as_bytes()).expect("request");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0u64;
        let deadline = Instant::now() + Duration::from_secs(25);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            if let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                got += n as u64;
            }
        }
        got
    })
}

fn probe(r: &Responder, direction: &str) -> (i32, ResultRecord, String) {
    let run = agent(
        &[
            "probe",
            "--responder",
            &r.url(),
            "--direction",
            direction,
            "--max-duration",
            "2",
            "--json",
        ],
        Duration::from_secs(60),
    );
    let record: ResultRecord = serde_json::from_str(run.stdout().trim())
        .unwrap_or_else(|e| panic!("{e}: {}", run.stdout()));
    (run.code(), record, run.stderr())
}

#[test]
fn a_second_test_in_one_direction_is_refused_as_busy_with_the_reason() {
    let responder = Responder::start(&[]);
    let stop = Arc::new(AtomicBool::new(false));
    let holder = hold_download(&responder, "other-box", stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    let (code, record, _) = probe(&responder, "down");
    assert_eq!(code, 1, "{record:?}");
    assert_eq!(
        record.status.reason,
        Some(sonde_proto::FailureReason::ResponderBusy)
    );
    let message = record.status.message.clone().unwrap_or_default();
    assert!(message.contains("1 download test(s) running"), "{message}");
    // The other direction is free: an upload runs meanwhile, not flagged (the two
    // directions do not share a bottleneck).
    let (code, record, _) = probe(&responder, "up");
    assert_eq!(code, 0, "{record:?}");
    assert!(record.upload.is_some());
    assert!(
        !record.flags.contains(&Flag::ServerContended),
        "{:?}",
        record.flags
    );
    stop.store(true, Ordering::Relaxed);
    assert!(
        holder.join().expect("holder") > 0,
        "the other test was served"
    );
    // Once the other test is over (and its linger), the download runs.
    std::thread::sleep(Duration::from_secs(3));
    let (code, record, _) = probe(&responder, "down");
    assert_eq!(code, 0, "{record:?}");
}

#[test]
fn a_test_allowed_to_overlap_another_is_flagged_server_contended() {
    let responder = Responder::start(&["--max-tests", "2"]);
    let stop = Arc::new(AtomicBool::new(false));
    let holder = hold_download(&responder, "other-box", stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    let (code, record, _) = probe(&responder, "down");
    stop.store(true, Ordering::Relaxed);
    let _ = holder.join();
    assert_eq!(code, 0, "{record:?}");
    assert!(record.download.is_some());
    assert!(
        record.flags.contains(&Flag::ServerContended),
        "{:?}",
        record.flags
    );
}

#[test]
fn a_client_trickling_64_uploads_cannot_keep_the_others_out() {
    let responder = Responder::start(&[]);
    let stop = Arc::new(AtomicBool::new(false));
    // 64 uploads from 127.0.0.2 that announce a gigabyte and send one byte a second.
    let trickler = {
        let (stop, to) = (stop.clone(), responder.http);
        std::thread::spawn(move || {
            let mut conns: Vec<TcpStream> = (0..64)
                .map(|i| {
                    let mut s = connect_from("127.0.0.2", to);
                    let head = format!(
                        "POST /upload?test=slow{i} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n"
                    );
                    let _ = s.write_all(head.as_bytes());
                    s
                })
                .collect();
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                conns.retain_mut(|s| s.write_all(b"x").is_ok());
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    // Legitimate uploads from 127.0.0.1, one after the other for 25 s.
    let started = Instant::now();
    let mut probes = Vec::new();
    while started.elapsed() < Duration::from_secs(25) {
        let at = started.elapsed();
        let (code, record, _) = probe(&responder, "up");
        let served = code == 0 && record.upload.is_some();
        probes.push((
            at,
            served,
            record.status.message.clone().unwrap_or_default(),
        ));
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = trickler.join();
    let served = probes.iter().filter(|p| p.1).count();
    eprintln!("legitimate uploads served: {served} of {}", probes.len());
    // The trickle holds the upload slot until its first stream is cut as too slow
    // (after 5 s) and its linger ends; then its address waits out a penalty. Every
    // probe begun after 10 s is served.
    let late: Vec<_> = probes
        .iter()
        .filter(|p| p.0 > Duration::from_secs(10))
        .collect();
    assert!(!late.is_empty(), "{probes:?}");
    assert!(late.iter().all(|p| p.1), "{probes:?}");
}
