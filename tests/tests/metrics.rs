//! `/metrics` of a real collector under 50 concurrent scrapers keeps answering every
//! one of them, while an agent's backlog is ingested (not stalled) meanwhile.

use sonde_e2e::pipeline::{record, scratch, seed_spool, Agent, AgentSetup, Collector};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn scrape(addr: &str) -> Option<(u16, String)> {
    sonde_e2e::http_get(addr, "/metrics")
}

#[test]
fn fifty_concurrent_scrapes_are_all_answered_while_ingest_goes_on() {
    let dir = scratch("metrics-scrapes");
    let collector = Collector::start_in(&dir);
    let adir = dir.join("agent");
    collector.enroll("b-scraped", &adir.join("state"));
    seed_spool(&adir.join("state"), 2000, |_| record(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let scrapers: Vec<_> = (0..50)
        .map(|_| {
            let (addr, stop, ok, failed) = (
                collector.http.clone(),
                stop.clone(),
                ok.clone(),
                failed.clone(),
            );
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match scrape(&addr) {
                        Some((200, body)) if body.contains("sonde_collector_results_total") => {
                            ok.fetch_add(1, Ordering::Relaxed)
                        }
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    // Small batches: many commits while the scrapers hammer /metrics.
    let agent = Agent::start(&adir, &collector, &AgentSetup::uploader(10_000, 20));
    agent.wait_status("the backlog ingested", Duration::from_secs(120), |s| {
        s["spool_depth"] == 0 && s["uploaded_total"].as_u64().unwrap_or(0) >= 2000
    });
    stop.store(true, Ordering::Relaxed);
    for s in scrapers {
        s.join().expect("scraper");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("{ok} scrapes answered during the ingest, {failed} failed");
    assert_eq!(failed, 0, "every scrape answered");
    assert!(ok >= 50, "each scraper got answers ({ok})");
    // A page is shared by the scrapes of the same half second: the count catches up.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut stored = 0.0;
    while std::time::Instant::now() < deadline {
        stored = collector.metric("sonde_collector_results_total{kind=\"new\"}");
        if stored == 2000.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(stored, 2000.0);
    assert!(agent.stop().is_some_and(|s| s.success()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_agent_serves_its_health_and_latest_results_on_localhost() {
    let dir = scratch("agent-metrics");
    let responder = sonde_e2e::Responder::start(&[]);
    let collector = Collector::start_in(&dir);
    let adir = dir.join("agent");
    collector.enroll("b-local", &adir.join("state"));
    let port = sonde_e2e::pipeline::free_port();
    let agent = Agent::start(
        &adir,
        &collector,
        &AgentSetup {
            batch: 100,
            metrics_port: Some(port),
            ..AgentSetup::probing(responder.url())
        },
    );
    agent.wait_status("one result uploaded", Duration::from_secs(60), |s| {
        s["uploaded_total"].as_u64().unwrap_or(0) >= 1
    });
    let (code, page) = scrape(&format!("127.0.0.1:{port}")).expect("agent /metrics");
    assert_eq!(code, 200);
    for series in [
        "sonde_throughput_bytes_per_second{access=\"loop\",direction=\"down\"}",
        "sonde_throughput_bytes_per_second{access=\"loop\",direction=\"up\"}",
        "sonde_target_bytes_per_second{access=\"loop\",direction=\"down\"} 125000000",
        "sonde_latency_seconds{access=\"loop\",direction=\"none\",state=\"idle\"}",
        "sonde_tests_total{access=\"loop\",outcome=\"ok\"} ",
        "sonde_agent_spool_results ",
        "sonde_agent_uploaded_total ",
        "sonde_agent_collector_connected 1",
    ] {
        assert!(page.contains(series), "{series} missing from:\n{page}");
    }
    assert!(agent.stop().is_some_and(|s| s.success()));
    let _ = std::fs::remove_dir_all(&dir);
}
