//! Several collectors sharing one store behind an agent's address list
//! (`[collector] address = ["A", "B"]`): the agent uploads to the first, and when it
//! is killed (`kill -9`, mid-upload) moves to the next within seconds, with nothing
//! lost and nothing stored twice; an agent enrolled through one collector uploads
//! through the other; each collector's `/metrics` shows what the other ingested
//! (`[metrics] refresh`). Real processes and real QUIC; the shared store is one SQLite
//! file (WAL, several processes) until the PostgreSQL store exists.

use sonde_e2e::pipeline::{record, scratch, seed_spool, Agent, AgentSetup, Collector};
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// Each collector rebuilds its series from the shared store every second.
const REFRESH: &str = "[metrics]\nrefresh = \"1s\"\n";

/// A second collector on its own ports, sharing the data directory (keys, CA, store)
/// of the one configured in `first`.
fn sharing(dir: &Path, first: &Path) -> Collector {
    let c = Collector::configure_with(dir, "", REFRESH);
    let text = std::fs::read_to_string(&c.config).expect("config");
    let shared = first.join("collector");
    std::fs::write(
        &c.config,
        text.replace(
            "data_dir = \"collector\"",
            &format!("data_dir = \"{}\"", shared.display()),
        ),
    )
    .expect("config");
    c
}

#[test]
fn an_agent_fails_over_to_the_next_collector_when_one_is_killed_and_loses_nothing() {
    let dir = scratch("failover");
    for d in ["a", "b"] {
        std::fs::create_dir_all(dir.join(d)).expect("dir");
    }
    let mut a = Collector::configure_with(&dir.join("a"), "", REFRESH);
    a.start();
    let mut b = sharing(&dir.join("b"), &dir.join("a"));
    b.start();
    // Enrolled through A; B (same CA, same store) knows it as well.
    let adir = dir.join("agent");
    let agent_id = a.enroll("b-failover", &adir.join("state"));
    const N: usize = 600;
    let seeded: HashSet<String> = seed_spool(&adir.join("state"), N, |i| record(i as i64))
        .into_iter()
        .collect();
    let setup = AgentSetup {
        more_collectors: vec![b.quic.clone()],
        ..AgentSetup::uploader(1000, 10)
    };
    let mut agent = Agent::start(&adir, &a, &setup);
    // Killed once uploads are under way.
    let deadline = Instant::now() + Duration::from_secs(60);
    while b.stored_ids().1 < 60 {
        assert!(Instant::now() < deadline && !agent.exited(), "no upload");
        std::thread::sleep(Duration::from_millis(20));
    }
    a.kill9();
    let killed = Instant::now();
    // Whatever A committed is in; from here on only B stores.
    let before = b.stored_ids().1;
    // B ingested none of them, yet its /metrics has the agent's latest result.
    let deadline = Instant::now() + Duration::from_secs(10);
    let series = format!("sonde_throughput_bytes_per_second{{agent=\"{agent_id}\"");
    loop {
        let (_, metrics) = sonde_e2e::http_get(&b.http, "/metrics").expect("B's /metrics");
        if metrics.contains(&series) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{series} not in B's /metrics:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut moved = None;
    let deadline = killed + Duration::from_secs(90);
    loop {
        let (ids, rows) = b.stored_ids();
        if moved.is_none() && rows > before {
            moved = Some(killed.elapsed());
        }
        if ids.len() == N {
            break;
        }
        assert!(
            Instant::now() < deadline && !agent.exited(),
            "{} of {N} stored 90 s after the kill; the agent's log:\n{}",
            ids.len(),
            std::fs::read_to_string(&agent.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (ids, rows) = b.stored_ids();
    assert_eq!(ids, seeded, "every result, and only those");
    assert_eq!(rows, N, "none stored twice");
    let log = std::fs::read_to_string(&agent.log).unwrap_or_default();
    assert!(
        log.contains("uploading to this collector") && log.contains(&b.quic),
        "{log}"
    );
    eprintln!(
        "killed with {before} of {N} stored; uploads resumed through the other collector {:?} later",
        moved.expect("uploads resumed")
    );
    drop(agent);
    b.stop();
}
