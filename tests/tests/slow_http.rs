//! Slow HTTP clients against a real `sonde-collector serve`: thousands of connections
//! that send nothing or trickle a header, from many loopback addresses, while a
//! legitimate reader asks for `/healthz`. Bounded in count (4,700 sockets) and time
//! (about 20 s).

use socket2::{Domain, Socket, Type};
use sonde_e2e::pipeline::{scratch, Collector};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A connection from `source` to `to`, or `None` when the collector's queue is full.
fn connect_from(source: Ipv4Addr, to: SocketAddr) -> Option<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
    s.bind(&SocketAddr::from((source, 0)).into()).ok()?;
    s.connect_timeout(&to.into(), Duration::from_millis(100))
        .ok()?;
    let s: TcpStream = s.into();
    s.set_nonblocking(true).ok()?;
    Some(s)
}

/// One fresh connection, one `GET /healthz`, 5 s at most: whether it was answered.
fn legit_request(to: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&to, Duration::from_secs(5)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out.starts_with(b"HTTP/1.1 200")
}

#[test]
fn slow_and_idle_http_clients_leave_the_api_answering() {
    raise_own_nofile(6000);
    let dir = scratch("slow-http");
    let mut collector = Collector::configure(&dir);
    // As started from a shell or a unit without LimitNOFILE: 1024 descriptors, which
    // the collector cannot raise, so its connection cap has to hold.
    collector.start_under(&["prlimit", "--nofile=1024:1024"]);
    let to: SocketAddr = collector.http.parse().expect("addr");

    let started = Instant::now();
    let mut held = Vec::new();
    // One greedy address: 100 connections, over its share.
    for _ in 0..100 {
        held.extend(connect_from(Ipv4Addr::new(127, 0, 0, 9), to));
    }
    // 4,600 from 80 addresses, under the per-address share: half idle, half trickling.
    // A collector that stops accepting makes connects wait: 20 s of opening at most.
    let mut attempted = 100;
    for i in 0..4600u32 {
        if started.elapsed() > Duration::from_secs(20) {
            break;
        }
        attempted += 1;
        let source = Ipv4Addr::new(127, 0, 1, 10 + (i % 80) as u8);
        held.extend(connect_from(source, to));
    }
    let opened = held.len();
    let (mut answered, mut asked) = (0, 0);
    while asked < 10 && started.elapsed() < Duration::from_secs(60) {
        for (n, s) in held.iter_mut().enumerate() {
            if n % 2 == 0 {
                let _ = s.write(if n % 7 == 0 { b"G" } else { b"E" });
            }
        }
        asked += 1;
        answered += usize::from(legit_request(to));
        std::thread::sleep(Duration::from_secs(1));
    }
    drop(held);
    let refused = |reason: &str| {
        collector.metric(&format!(
            "sonde_collector_http_refused_total{{reason=\"{reason}\"}}"
        ))
    };
    let (address, evicted) = (refused("address"), refused("evicted"));
    eprintln!(
        "{attempted} attacking connections attempted, {opened} opened; legitimate requests answered {answered}/{asked}; \
         refused per address {address}, evicted {evicted}"
    );
    assert_eq!(answered, 10, "legitimate requests answered");
    assert!(
        opened > 1024,
        "the attack outnumbered the descriptors: {opened}"
    );
    assert!(address > 0.0, "the greedy address was refused");
    assert!(evicted > 0.0, "idle connections were evicted for newcomers");
    collector.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The test itself holds thousands of sockets.
fn raise_own_nofile(want: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    let max = limit.maximum.unwrap_or(u64::MAX);
    limit.current = Some(want.min(max));
    let _ = setrlimit(Resource::Nofile, limit);
}
