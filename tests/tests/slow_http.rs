//! Slow HTTP clients against a real `sonde-collector serve`: thousands of connections
//! that send nothing or trickle a header, from many loopback addresses, while a
//! legitimate reader asks for `/healthz`. Bounded in count (4,700 sockets) and time
//! (about 40 s).

use sonde_e2e::attack::{answered, connect_from, slow_http, trickle};
use sonde_e2e::pipeline::{scratch, Collector};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

#[test]
fn slow_and_idle_http_clients_leave_the_api_answering() {
    // The test itself holds thousands of sockets.
    sonde_e2e::attack::raise_nofile(6000);
    let dir = scratch("slow-http");
    let mut collector = Collector::configure(&dir);
    // As started from a shell or a unit without LimitNOFILE: 1024 descriptors, which
    // the collector cannot raise, so its connection cap has to hold.
    collector.start_under(&["prlimit", "--nofile=1024:1024"]);
    let to: SocketAddr = collector.http.parse().expect("addr");

    let started = Instant::now();
    // One greedy address: 100 connections, over its share.
    let mut held: Vec<_> = (0..100)
        .filter_map(|_| connect_from(Ipv4Addr::new(127, 0, 0, 9), to))
        .collect();
    // 4,600 from 80 addresses, under the per-address share: half idle, half trickling.
    // A collector that stops accepting makes connects wait: 20 s of opening at most.
    held.extend(slow_http(to, 4600, Duration::from_secs(20)));
    let opened = held.len();
    let (mut ok, mut asked) = (0, 0);
    while asked < 10 && started.elapsed() < Duration::from_secs(60) {
        trickle(&mut held);
        asked += 1;
        ok += usize::from(answered(to, "/healthz"));
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
        "{opened} attacking connections opened; legitimate requests answered {ok}/{asked}; \
         refused per address {address}, evicted {evicted}"
    );
    assert_eq!(ok, 10, "legitimate requests answered");
    assert!(
        opened > 1024,
        "the attack outnumbered the descriptors: {opened}"
    );
    assert!(address > 0.0, "the greedy address was refused");
    assert!(evicted > 0.0, "idle connections were evicted for newcomers");
    collector.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
