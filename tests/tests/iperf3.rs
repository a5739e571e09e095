//! The iperf3 engine against Debian's stock `iperf3 -s`: it measures both directions,
//! its figure agrees with iperf3's own client within 5 % (on a loopback shaped to
//! 1 Gb/s and on a netlab link), and a busy server, or something else on the port, is
//! a clear failure. Reported as ignored, with the reason, where iperf3 (or root, for
//! namespaces) is missing.

use sonde_e2e::{bin, prefixed, Iperf3Server};
use sonde_proto::{Direction, Engine, FailureReason, Outcome, ResultRecord};
use std::time::Duration;

/// The tests of this file that move traffic run one at a time.
use sonde_e2e::measuring_alone as alone;

/// `sonde-agent probe --json`, run through `prefix` (e.g. `ip netns exec NS`).
fn probe(prefix: &[&str], args: &[&str]) -> (i32, ResultRecord, String) {
    let mut cmd = prefixed(prefix, bin("sonde-agent"));
    cmd.arg("probe").args(args).arg("--json");
    let run = sonde_e2e::run_bounded(cmd, Duration::from_secs(90));
    let record = ResultRecord::from_json(run.stdout().trim().as_bytes())
        .unwrap_or_else(|e| panic!("one record ({e}): {} {}", run.stdout(), run.stderr()));
    (run.code(), record, run.stderr())
}

/// iperf3's own client, `-P 4` for 6 s, in `reverse` for the download: the median of
/// the receiver's 1-second rates after the first (its warm-up), in bit/s, and the
/// payload bytes moved. The receiver's intervals are the client's own for a download
/// and the server's (`--get-server-output`) for an upload. Its end-of-test average with
/// `-O 1` is not used: the server restarts its count at its own omit timer, and that
/// average was once 6 % above the ceiling of a 50 Mb/s link.
fn iperf3_client(prefix: &[&str], host: &str, port: u16, reverse: bool) -> (f64, f64) {
    let mut cmd = prefixed(prefix, "iperf3");
    cmd.args(["-c", host, "-p", &port.to_string(), "-P", "4", "-t", "6"])
        .args(["-J", "--get-server-output"]);
    if reverse {
        cmd.arg("-R");
    }
    let run = sonde_e2e::run_bounded(cmd, Duration::from_secs(60));
    assert_eq!(run.code(), 0, "iperf3 client: {}", run.stdout());
    let v: serde_json::Value = serde_json::from_str(&run.stdout()).expect("iperf3 -J");
    let intervals = |doc: &serde_json::Value| -> Vec<(f64, f64)> {
        doc["intervals"]
            .as_array()
            .map(|ivs| {
                ivs.iter()
                    .map(|i| {
                        let sum = &i["sum"];
                        (
                            sum["bits_per_second"].as_f64().unwrap_or(0.0),
                            sum["bytes"].as_f64().unwrap_or(0.0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let ours = intervals(&v);
    let receiver = if reverse {
        ours.clone()
    } else {
        intervals(&v["server_output_json"])
    };
    let mut rates: Vec<f64> = receiver.iter().skip(1).map(|(r, _)| *r).collect();
    assert!(rates.len() >= 4, "iperf3 intervals: {}", run.stdout());
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    let carried = ours.iter().map(|(_, b)| b).sum();
    (median, carried)
}

/// Measures with iperf3's client, then sonde, then iperf3 again, both directions, and
/// checks each sonde figure is within 5 % of iperf3's: of the nearer of the two
/// iperf3 runs around it. The machine is shared, and what it lends the loopback can
/// change within a minute (CI once read sonde 8 % under one iperf3 run taken 7 s
/// later, both far under the link's ceiling): bracketing sonde between two runs
/// compares it with iperf3 as the machine was at the time. A burst of CPU steal can
/// still fall on sonde's run alone, so the whole comparison gets three attempts.
fn agrees_with_iperf3(prefix: &[&str], host: &str, server: &Iperf3Server, place: &str) {
    sonde_e2e::in_one_of(3, |_| bracketed(prefix, host, server, place));
}

/// One attempt of [`agrees_with_iperf3`]: iperf3, sonde, iperf3.
fn bracketed(
    prefix: &[&str],
    host: &str,
    server: &Iperf3Server,
    place: &str,
) -> Result<(), String> {
    let url = server.url(host);
    let before = [true, false].map(|reverse| iperf3_client(prefix, host, server.port, reverse));
    let (code, r, stderr) = probe(prefix, &["--responder", &url, "--streams", "4"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(r.run.engine, Engine::Iperf3);
    assert_eq!(r.status.outcome, Outcome::Ok, "{:?}", r.status);
    let after = [true, false].map(|reverse| iperf3_client(prefix, host, server.port, reverse));
    let directions = [r.download.as_ref(), r.upload.as_ref()];
    for (i, ours) in directions.into_iter().enumerate() {
        let ours = ours.expect("both directions measured");
        let (a, b) = (before[i].0, after[i].0);
        let (lo, hi) = (a.min(b), a.max(b));
        let g = ours.goodput_bps;
        // Distance to the nearer iperf3 figure; 0 between them.
        let err = if g < lo {
            g / lo - 1.0
        } else if g > hi {
            g / hi - 1.0
        } else {
            0.0
        };
        println!(
            "{place} {:?}: sonde {:.1} Mb/s ({:?}, {:.1} s, {:.0} MB), iperf3 before {:.1} after {:.1} Mb/s ({:.0} MB): {err:+.4}",
            ours.direction,
            g / 1e6,
            ours.stop_reason,
            ours.duration_s,
            ours.bytes_total as f64 / 1e6,
            a / 1e6,
            b / 1e6,
            before[i].1 / 1e6,
        );
        if err.abs() > 0.05 {
            return Err(format!(
                "{place} {:?}: sonde {g} vs iperf3 {a} before and {b} after: {err:+.3}",
                ours.direction,
            ));
        }
    }
    Ok(())
}

#[test]
#[cfg_attr(not(sonde_iperf3), ignore = "needs iperf3 (Debian package iperf3)")]
fn both_directions_are_measured_against_a_stock_iperf3_server() {
    let _alone = alone();
    let server = Iperf3Server::start(&[]);
    let (code, r, stderr) = probe(
        &[],
        &[
            "--responder",
            &server.url("127.0.0.1"),
            "--streams",
            "3",
            "--max-duration",
            "3",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(r.run.engine, Engine::Iperf3);
    assert_eq!(r.status.outcome, Outcome::Ok, "{:?}", r.status);
    assert!(
        r.idle_latency.is_none(),
        "iperf3 has no echo: no latency figure"
    );
    for (t, dir) in [(&r.download, Direction::Down), (&r.upload, Direction::Up)] {
        let t = t.as_ref().expect("measured");
        assert_eq!(t.direction, dir);
        assert_eq!(t.streams, 3, "{dir:?}: {}", r.to_json());
        assert!(t.goodput_bps > 1e6, "{dir:?}: {}", t.goodput_bps);
        assert!(
            t.duration_s <= 3.5,
            "{dir:?}: capped at 3 s: {}",
            t.duration_s
        );
        assert!(t.bytes_total >= t.bytes_measured, "{dir:?}");
    }
    assert_eq!(
        r.run.responder.address.as_deref(),
        Some(format!("127.0.0.1:{}", server.port).as_str())
    );
}

#[test]
#[cfg_attr(not(sonde_iperf3), ignore = "needs iperf3 (Debian package iperf3)")]
fn a_busy_iperf3_server_is_a_clear_failure() {
    let server = Iperf3Server::start(&[]);
    // Another client holds the server.
    let holder = server.hold();
    let (code, r, stderr) = probe(&[], &["--responder", &server.url("127.0.0.1")]);
    drop(holder);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(r.status.outcome, Outcome::Failed);
    assert_eq!(r.status.reason, Some(FailureReason::ResponderBusy));
    let message = r.status.message.unwrap_or_default();
    assert!(message.contains("ACCESS_DENIED"), "{message}");
    assert!(r.download.is_none() && r.upload.is_none());
}

#[test]
fn something_else_on_the_port_is_named_and_never_hangs() {
    // A service that greets first, as SSH does.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let greeter = std::thread::spawn(move || {
        use std::io::Write;
        for _ in 0..2 {
            if let Ok((mut s, _)) = listener.accept() {
                let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    });
    let started = std::time::Instant::now();
    let (code, r, stderr) = probe(
        &[],
        &[
            "--responder",
            &format!("iperf3://127.0.0.1:{port}"),
            "--direction",
            "down",
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(r.status.reason, Some(FailureReason::ResponderError));
    let message = r.status.message.unwrap_or_default();
    assert!(
        message.contains("expected state PARAM_EXCHANGE") && message.contains("iperf3 server"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(greeter);
}

#[test]
#[cfg_attr(
    not(all(sonde_root, sonde_iperf3)),
    ignore = "needs root (a namespace) and iperf3 (Debian package iperf3)"
)]
fn on_a_loopback_shaped_to_1_gbit_sonde_agrees_with_iperf3_within_5_percent() {
    let _alone = alone();
    // Unshaped, loopback measures the CPU (the single-threaded server is the limit and
    // each client steals a different share of the 2 cores): shaped, it is a link.
    let lo = sonde_netlab::ShapedLoopback::create(1_000_000_000).expect("namespace");
    let server = Iperf3Server::start(&lo.exec());
    agrees_with_iperf3(&lo.exec(), "127.0.0.1", &server, "loopback 1 Gb/s");
}

#[test]
#[cfg_attr(
    not(all(sonde_root, sonde_iperf3)),
    ignore = "needs root (namespaces) and iperf3 (Debian package iperf3)"
)]
fn on_a_netlab_link_sonde_agrees_with_iperf3_within_5_percent() {
    let _alone = alone();
    use sonde_netlab::topology::RESPONDER_IP;
    let mut t = sonde_netlab::Topology::create(&sonde_netlab::Spec {
        links: vec![sonde_netlab::LinkSpec::shaped(200_000_000, 50_000_000)],
        collector: false,
    })
    .expect("topology");
    let exec = ["ip", "netns", "exec", &t.responder_ns];
    let server = Iperf3Server::start(&exec);
    let agent = ["ip", "netns", "exec", &t.agent_ns.clone()];
    agrees_with_iperf3(
        &agent,
        &RESPONDER_IP.to_string(),
        &server,
        "netlab 200/50 Mb/s",
    );
    drop(server);
    t.teardown();
}

/// A server that runs one reverse test as `iperf3 -s` does, then hangs up at
/// `TEST_END` instead of exchanging results. Returns its port.
fn server_hanging_up_after_the_test() -> (u16, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let (mut ctrl, _) = listener.accept().expect("control");
        let mut cookie = [0u8; 37];
        ctrl.read_exact(&mut cookie).expect("cookie");
        ctrl.write_all(&[9]).expect("PARAM_EXCHANGE");
        let mut len = [0u8; 4];
        ctrl.read_exact(&mut len).expect("length");
        let mut params = vec![0u8; u32::from_be_bytes(len) as usize];
        ctrl.read_exact(&mut params).expect("parameters");
        let params: serde_json::Value = serde_json::from_slice(&params).expect("JSON");
        assert_eq!(params["reverse"], true, "{params}");
        let streams = params["parallel"].as_u64().expect("parallel");
        ctrl.write_all(&[10]).expect("CREATE_STREAMS");
        let mut data = Vec::new();
        for _ in 0..streams {
            let (mut s, _) = listener.accept().expect("stream");
            let mut c = [0u8; 37];
            s.read_exact(&mut c).expect("stream cookie");
            assert_eq!(c, cookie);
            data.push(s);
        }
        ctrl.write_all(&[1, 2]).expect("TEST_START, TEST_RUNNING");
        let writers: Vec<_> = data
            .iter()
            .map(|s| {
                let mut s = s.try_clone().expect("clone");
                std::thread::spawn(move || {
                    let block = vec![0u8; 128 * 1024];
                    while s.write_all(&block).is_ok() {}
                })
            })
            .collect();
        let mut end = [0u8; 1];
        ctrl.read_exact(&mut end).expect("TEST_END");
        assert_eq!(end[0], 4);
        for s in &data {
            let _ = s.shutdown(Shutdown::Both);
        }
        for w in writers {
            let _ = w.join();
        }
        // Hangs up: no EXCHANGE_RESULTS.
    });
    (port, server)
}

#[test]
fn a_server_that_hangs_up_before_the_results_costs_its_count_not_the_figure() {
    let _alone = alone();
    let (port, server) = server_hanging_up_after_the_test();
    let (code, r, stderr) = probe(
        &[],
        &[
            "--responder",
            &format!("iperf3://127.0.0.1:{port}"),
            "--direction",
            "down",
            "--streams",
            "2",
            "--max-duration",
            "2",
        ],
    );
    server.join().expect("the server saw a whole test");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(r.status.outcome, Outcome::Ok, "{:?}", r.status);
    let down = r.download.expect("the figure stands");
    assert!(down.goodput_bps > 1e6, "{}", down.goodput_bps);
    assert_eq!(down.streams, 2);
}
