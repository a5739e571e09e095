//! The store-and-forward path with real processes: `sonde-collector serve` (SQLite,
//! QUIC), agents enrolled through `token create` and `sonde-agent enroll`, and
//! `sonde-agent run` daemons with their on-disk spools.
//!
//! - collector crash: three agents with 200 spooled results each upload while the
//!   collector is SIGKILLed at random moments and restarted; every result ends up
//!   stored exactly once and every spool drains;
//! - collector outage: agents keep measuring and spooling, then catch up, with their
//!   original timestamps;
//! - full spool: the oldest results are evicted, counted by the agent and reported to
//!   the collector in its health.

use sonde_agent::state::spool::Spool;
use sonde_e2e::pipeline::{self, record, scratch, Agent, AgentSetup, Collector};
use sonde_e2e::Responder;
use sonde_proto::ResultRecord;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Spools `n` records into `state_dir`'s spool, a minute apart, a day ago; their ids.
fn seed_spool(state_dir: &std::path::Path, n: usize) -> Vec<String> {
    pipeline::seed_spool(state_dir, n, |i| record(24 * 60 - i as i64))
}

fn ids_by_agent(results: &[serde_json::Value]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in results {
        out.entry(r["agent"]["id"].as_str().unwrap_or("?").to_string())
            .or_default()
            .push(r["id"].as_str().unwrap_or("?").to_string());
    }
    out
}

#[test]
fn collector_killed_during_uploads_loses_nothing_and_stores_each_result_once() {
    let dir = scratch("crash");
    let mut collector = Collector::start_in(&dir);
    // A responder nobody listens on: any scheduled probe fails fast; the seeded
    // results are what is uploaded.
    let setup = AgentSetup::uploader(100_000, 2);
    let mut seeded: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut agents = Vec::new();
    for n in 0..3 {
        let adir = dir.join(format!("agent{n}"));
        let id = collector.enroll(&format!("b{n}"), &adir.join("state"));
        let ids = seed_spool(&adir.join("state"), 200);
        seeded.insert(id, ids.into_iter().collect());
        agents.push(Agent::start(&adir, &collector, &setup));
    }
    // Kill the collector at pseudo-random moments while the agents upload.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    eprintln!("kill schedule seed {seed}");
    let mut x = seed;
    let mut rand_ms = |lo: u64, hi: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        lo + x % (hi - lo)
    };
    let spooled = || -> u64 {
        agents
            .iter()
            .map(|a| {
                Spool::open_read_only(&a.state_dir.join("spool.sqlite"))
                    .and_then(|s| s.depth())
                    .unwrap_or(0)
            })
            .sum()
    };
    let mut depths_at_kills = Vec::new();
    let t0 = Instant::now();
    for _ in 0..3 {
        // Wait until uploads are under way, then kill at a random moment among them.
        let before = spooled();
        let deadline = Instant::now() + Duration::from_secs(30);
        while spooled() >= before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rand_ms(0, 120)));
        collector.kill9();
        depths_at_kills.push(spooled());
        eprintln!("{:?} killed", t0.elapsed());
        std::thread::sleep(Duration::from_millis(rand_ms(100, 1500)));
        collector.start();
    }
    eprintln!("results still spooled at each kill: {depths_at_kills:?}");

    assert!(
        depths_at_kills.iter().all(|d| *d > 0),
        "every kill must land during the uploads: {depths_at_kills:?}"
    );
    eprintln!("{:?} restarted", t0.elapsed());
    for a in &agents {
        a.wait_status("an empty spool", Duration::from_secs(90), |s| {
            s["spool_depth"] == 0 && s["uploaded_total"].as_u64().unwrap_or(0) > 0
        });
    }
    eprintln!("{:?} drained", t0.elapsed());
    let results = collector.all_results();
    let by_agent = ids_by_agent(&results);
    for (agent, want) in &seeded {
        let got = by_agent.get(agent).cloned().unwrap_or_default();
        let unique: BTreeSet<String> = got.iter().cloned().collect();
        assert_eq!(unique.len(), got.len(), "{agent}: a result stored twice");
        let missing: Vec<_> = want.difference(&unique).collect();
        assert!(
            missing.is_empty(),
            "{agent}: {} results lost",
            missing.len()
        );
    }
    let all_ids: BTreeSet<_> = results.iter().map(|r| r["id"].to_string()).collect();
    assert_eq!(all_ids.len(), results.len(), "no id twice across agents");
    assert!(
        results.len() >= 600,
        "600 seeded results, {} stored",
        results.len()
    );
    for a in agents {
        assert!(a.stop().is_some_and(|s| s.success()), "agent stops cleanly");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn agents_keep_measuring_through_an_outage_and_catch_up_with_their_timestamps() {
    let dir = scratch("outage");
    let responder = Responder::start(&[]);
    let mut collector = Collector::start_in(&dir);
    let adir = dir.join("agent");
    let agent_id = collector.enroll("b-outage", &adir.join("state"));
    collector.stop();
    let setup = AgentSetup {
        max_results: 100_000,
        batch: 500,
        ..AgentSetup::probing(responder.url())
    };
    let agent = Agent::start(&adir, &collector, &setup);
    let during = agent.wait_status(
        "two spooled results and failed uploads",
        Duration::from_secs(60),
        |s| {
            s["spool_depth"].as_u64().unwrap_or(0) >= 2
                && s["uplink_errors_total"]["connect"].as_u64().unwrap_or(0) >= 1
        },
    );
    assert_eq!(during["connected"], false);
    // What the agent measured during the outage, as spooled.
    let spooled: Vec<ResultRecord> = Spool::open_read_only(&adir.join("state/spool.sqlite"))
        .expect("spool")
        .peek(100)
        .expect("peek")
        .iter()
        .map(|s| s.record.parse().expect("a record"))
        .collect();
    assert!(spooled.len() >= 2);
    let back = chrono::Utc::now();
    collector.start();
    agent.wait_status("caught up", Duration::from_secs(60), |s| {
        s["spool_depth"] == 0 && s["connected"] == true
    });
    let stored = collector.all_results();
    for r in &spooled {
        let s = stored
            .iter()
            .find(|v| v["id"] == r.id.to_string())
            .unwrap_or_else(|| panic!("{} measured during the outage was lost", r.id));
        assert_eq!(s["agent"]["id"], agent_id.as_str());
        let started: chrono::DateTime<chrono::Utc> = s["run"]["started_at"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .expect("started_at");
        assert_eq!(started, r.run.started_at, "original timestamp kept");
        assert!(started < back, "measured before the collector came back");
        assert_eq!(s["status"]["outcome"], "ok", "{s}");
    }
    assert!(agent.stop().is_some_and(|s| s.success()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_full_spool_evicts_the_oldest_and_the_evictions_are_counted_and_reported() {
    let dir = scratch("fullspool");
    let responder = Responder::start(&[]);
    let mut collector = Collector::start_in(&dir);
    let adir = dir.join("agent");
    let agent_id = collector.enroll("b-full", &adir.join("state"));
    collector.stop();
    // Five results waiting from earlier; the agent now keeps at most three.
    let old = seed_spool(&adir.join("state"), 5);
    let setup = AgentSetup {
        max_results: 3,
        batch: 500,
        ..AgentSetup::probing(responder.url())
    };
    let started = Instant::now();
    let agent = Agent::start(&adir, &collector, &setup);
    let s = agent.wait_status("an eviction", Duration::from_secs(60), |s| {
        s["results_total"].as_u64().unwrap_or(0) >= 1
    });
    assert_eq!(s["evictions_total"], 3, "5 + 1 results into 3 places: {s}");
    assert_eq!(s["spool_depth"], 3);
    let kept: Vec<String> = Spool::open_read_only(&adir.join("state/spool.sqlite"))
        .expect("spool")
        .peek(10)
        .expect("peek")
        .iter()
        .map(|r| r.id.to_string())
        .collect();
    assert_eq!(kept[..2], old[3..], "the oldest went first");
    // The collector learns of the evictions from the agent's health.
    collector.start();
    agent.wait_status("caught up", Duration::from_secs(60), |s| {
        s["spool_depth"] == 0
    });
    let (_, agents) = collector.get("/api/v1/agents");
    let row = agents["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["id"] == agent_id.as_str()).cloned())
        .expect("the agent in /api/v1/agents");
    assert_eq!(row["health"]["evictions_total"], 3, "{row}");
    eprintln!("full-spool scenario took {:?}", started.elapsed());
    assert!(agent.stop().is_some_and(|s| s.success()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn large_records_go_up_in_uploads_within_the_collectors_frame_bound() {
    // 500 records near the 64 KiB record bound with `batch = 500` would make a 32 MB
    // upload, which the collector refuses (oversize): the agent must cut its batches.
    let dir = scratch("bigrecords");
    let collector = Collector::start_in(&dir);
    let adir = dir.join("agent");
    collector.enroll("b-big", &adir.join("state"));
    let ids = pipeline::seed_spool(&adir.join("state"), 500, |_| {
        let mut r = record(60);
        r.run.responder.url = "x".repeat(60_000);
        r
    });
    let agent = Agent::start(&adir, &collector, &AgentSetup::uploader(100_000, 500));
    agent.wait_status("the big records uploaded", Duration::from_secs(120), |s| {
        s["spool_depth"] == 0 && s["uploaded_total"].as_u64().unwrap_or(0) >= 500
    });
    let stored: BTreeSet<String> = collector
        .all_results()
        .iter()
        .map(|r| r["id"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(ids.iter().all(|id| stored.contains(id)));
    assert_eq!(
        collector.metric("sonde_collector_rejects_total{reason=\"oversize\"}"),
        0.0
    );
    assert!(agent.stop().is_some_and(|s| s.success()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn boxes_configured_alike_in_one_building_probe_at_different_times() {
    let dir = scratch("phase");
    let collector = Collector::start_in(&dir);
    let mut next = Vec::new();
    for name in ["box-a", "box-b", "box-c"] {
        let box_dir = dir.join(name);
        std::fs::create_dir_all(&box_dir).expect("dir");
        collector.enroll("b", &box_dir.join("state"));
        // The same file but for the state directory: same site, same access, hourly.
        let agent = Agent::start(&box_dir, &collector, &AgentSetup::uploader(10, 10));
        let status = agent.wait_status("a next run", Duration::from_secs(20), |s| {
            s["next_run"]["at"].is_string()
        });
        let at = status["next_run"]["at"].as_str().unwrap_or_default();
        let at = chrono::DateTime::parse_from_rfc3339(at).expect("RFC 3339");
        next.push(at.timestamp_millis());
        agent.stop();
    }
    // Each run moves by up to ±1 s of jitter; alike phases would keep the three within
    // 2 s. Three phases drawn over an hour all fall within 3 s once in ~300 000.
    let spread = next.iter().max().unwrap_or(&0) - next.iter().min().unwrap_or(&0);
    assert!(spread > 3_000, "the boxes probe together: {next:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_boxs_configured_position_reaches_the_collector_when_its_token_gave_none() {
    let dir = scratch("position");
    let collector = Collector::start_in(&dir);
    let box_dir = dir.join("box");
    std::fs::create_dir_all(&box_dir).expect("dir");
    // The token names the building only; agent.toml says 48.8, 2.3.
    let id = collector.enroll("b-pos", &box_dir.join("state"));
    pipeline::seed_spool(&box_dir.join("state"), 3, |i| record(60 + i as i64));
    let agent = Agent::start(&box_dir, &collector, &AgentSetup::uploader(10, 10));
    agent.wait_status("uploaded", Duration::from_secs(30), |s| {
        s["spool_depth"] == 0 && s["last_success"].is_string()
    });
    let (_, agents) = collector.get("/api/v1/agents");
    let row = agents["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["id"] == id.as_str()))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (row["latitude"].as_f64(), row["longitude"].as_f64()),
        (Some(48.8), Some(2.3)),
        "{row}"
    );
    let (_, metrics) = sonde_e2e::http_get(&collector.http, "/metrics").expect("metrics");
    assert!(
        metrics.contains("latitude=\"48.80000\",longitude=\"2.30000\""),
        "{}",
        metrics
            .lines()
            .filter(|l| l.starts_with("sonde_building_info"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    agent.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
