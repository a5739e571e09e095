//! Full disks against real processes: a small tmpfs is filled under them, then
//! freed. What is checked: health says so with the reason, nothing acknowledged is
//! lost, and work resumes by itself once there is room. Root only (mounts).

use sonde_e2e::attack;
use sonde_e2e::disk::Tmpfs;
use sonde_e2e::pipeline::{raw, scratch, Collector};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn quic_addr(c: &Collector) -> SocketAddr {
    c.quic
        .replace("localhost", "127.0.0.1")
        .parse()
        .expect("addr")
}

/// `/healthz` until `want(status, body)` holds, 20 s at most; the last answer.
fn healthz_until(c: &Collector, want: impl Fn(u16, &str) -> bool) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = sonde_e2e::http_get(&c.http, "/healthz").expect("/healthz answers");
        if want(got.0, &got.1) || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[cfg_attr(not(sonde_root), ignore = "needs root: mounts a tmpfs")]
fn a_collector_on_a_full_disk_says_so_in_its_health_and_loses_nothing() {
    let dir = scratch("full-disk-collector");
    let mut collector = Collector::configure(&dir);
    let disk = Tmpfs::mount(&collector.data_dir(), 24);
    collector.start();
    let state = dir.join("agent");
    collector.enroll("b-disk", &state);
    let (cert, key) = attack::identity(&state);
    let (addr, ca) = (quic_addr(&collector), collector.ca_cert());
    let config = || raw::client_config(&ca, Some((cert.clone(), key.clone_key())));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let upload = |batches| {
        runtime.block_on(attack::upload(
            addr,
            config(),
            batches,
            50,
            Duration::from_secs(15),
        ))
    };

    let (acked, failures) = upload(2);
    assert!(failures.is_empty(), "{failures:?}");
    let (status, body) = healthz_until(&collector, |s, _| s == 200);
    assert_eq!((status, body.trim()), (200, "ok"));

    // The disk fills up (say, logs of another program): not ok, with the reason.
    assert!(disk.fill() > 0);
    let (status, body) = healthz_until(&collector, |s, _| s == 503);
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("not ok: storage full"), "{body}");
    // An upload meanwhile is either stored or refused, never acknowledged and lost.
    let (during, _) = upload(1);

    // Room is back: commits go through again, and so does health.
    disk.free();
    let (after, failures) = upload(2);
    assert!(failures.is_empty(), "{failures:?}");
    let (status, body) = healthz_until(&collector, |s, _| s == 200);
    assert_eq!((status, body.trim()), (200, "ok"));
    let stored = collector.all_results().len();
    assert_eq!(stored, 50 * (acked.len() + during.len() + after.len()));
    collector.stop();
    drop(disk);
    let _ = std::fs::remove_dir_all(&dir);
}
