//! The UDPST engine (RFC 9946 / RFC 9097 IP-layer capacity) against the Broadband
//! Forum's OB-UDPST 9.0.0, built from `../shared/peers/obudpst` by this crate's build
//! script: sonde's client measures an OB-UDPST server in both directions on a tbf link
//! and agrees with OB-UDPST's own client and with the link's IP ceiling, and OB-UDPST's
//! client measures sonde's server (`sonde-responder --udpst`) as sonde's does; a server that
//! is no UDPST server, no server, a refusal and a server that dies mid-test are each a
//! clear failure within the test's bound. Ignored, with the reason, where cmake (or
//! root, for namespaces) is missing.

use sonde_e2e::{bin, prefixed};
use sonde_proto::{FailureReason, Outcome, ResultRecord};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The tests of this file that move traffic run one at a time.
use sonde_e2e::measuring_alone as alone;

/// OB-UDPST's binary, as the build script made it.
#[cfg(sonde_udpst)]
const UDPST: &str = env!("SONDE_UDPST_BIN");
#[cfg(not(sonde_udpst))]
const UDPST: &str = "udpst";

/// An OB-UDPST server, killed on drop.
struct UdpstServer(Child);

impl UdpstServer {
    /// `udpst [ARGS] -p PORT` through `prefix`; waits until its control port is bound.
    fn start(prefix: &[&str], port: u16, args: &[&str]) -> UdpstServer {
        let mut cmd = prefixed(prefix, UDPST);
        cmd.args(args)
            .args(["-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = UdpstServer(cmd.spawn().expect("udpst"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let out = prefixed(prefix, "ss")
                .args(["-Hlun", &format!("sport = :{port}")])
                .output()
                .expect("ss");
            if !out.stdout.is_empty() {
                return child;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("udpst not listening on {port} after 10 s");
    }
}

impl Drop for UdpstServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sonde-agent probe --json` through `prefix`, bounded.
fn probe(prefix: &[&str], args: &[&str], bound: Duration) -> (ResultRecord, String) {
    let mut cmd = prefixed(prefix, bin("sonde-agent"));
    cmd.arg("probe").args(args).arg("--json");
    let run = sonde_e2e::run_bounded(cmd, bound);
    let record = ResultRecord::from_json(run.stdout().trim().as_bytes())
        .unwrap_or_else(|e| panic!("one record ({e}): {} {}", run.stdout(), run.stderr()));
    (record, run.stderr())
}

/// OB-UDPST's own client: its maximum IP-layer capacity, bit/s, and the loss ratio in
/// that sub-interval.
fn udpst_client(prefix: &[&str], host: &str, port: u16, up: bool, seconds: u32) -> (f64, f64) {
    let mut cmd = prefixed(prefix, UDPST);
    cmd.arg(if up { "-u" } else { "-d" })
        .args(["-j", "-f", "json", "-t", &seconds.to_string()])
        .arg(format!("{host}:{port}"));
    let run = sonde_e2e::run_bounded(cmd, Duration::from_secs(u64::from(seconds) + 20));
    let v: serde_json::Value = serde_json::from_str(run.stdout().trim())
        .unwrap_or_else(|e| panic!("udpst -f json ({e}): {}", run.stdout()));
    let mbps = v["Output"]["AtMax"]["MaxIPLayerCapacity"]
        .as_f64()
        .unwrap_or_else(|| panic!("no capacity in {}", run.stdout()));
    let loss = v["Output"]["AtMax"]["LossRatioAtMax"]
        .as_f64()
        .unwrap_or(f64::NAN);
    (mbps * 1e6, loss)
}

#[test]
#[cfg_attr(
    not(all(sonde_root, sonde_udpst)),
    ignore = "needs root (namespaces) and cmake with a C compiler (Debian packages cmake, gcc) to build OB-UDPST"
)]
fn sonde_measures_an_obudpst_server_as_its_own_client_does_on_tbf_150_50() {
    agrees_with_obudpst(Server::Obudpst, 150_000_000, 50_000_000, 8, 0.02, 20);
}

#[test]
#[cfg_attr(
    not(all(sonde_root, sonde_udpst)),
    ignore = "needs root (namespaces) and cmake with a C compiler (Debian packages cmake, gcc) to build OB-UDPST"
)]
fn obudpsts_client_measures_sondes_server_as_sondes_client_does_on_tbf_150_50() {
    agrees_with_obudpst(Server::Sonde, 150_000_000, 50_000_000, 8, 0.02, 20);
}

#[test]
#[cfg_attr(
    not(all(sonde_root, sonde_udpst)),
    ignore = "needs root (namespaces) and cmake with a C compiler (Debian packages cmake, gcc) to build OB-UDPST"
)]
fn obudpsts_client_measures_sondes_server_as_sondes_client_does_on_tbf_1000_500() {
    agrees_with_obudpst(Server::Sonde, 1_000_000_000, 500_000_000, 10, 0.15, 20);
}

#[test]
#[cfg_attr(
    not(all(sonde_root, sonde_udpst)),
    ignore = "needs root (namespaces) and cmake with a C compiler (Debian packages cmake, gcc) to build OB-UDPST"
)]
fn sonde_measures_an_obudpst_server_as_its_own_client_does_on_tbf_1000_500() {
    // The search climbs about 200 Mb/s a second below 1 Gb/s, so 10 s tests. 85,000
    // datagrams a second through tbf on veth, a sender and a receiver load both cores
    // of this shared machine: OB-UDPST's own client read from 895 to 927 Mb/s down
    // and from 444 to 484 up in four runs, sonde (a debug build here) from 892 to 982
    // and from 449 to 494. This test checks the gigabit path works both ways, within
    // 15 %; the agreement figures come from the release build's benchmark.
    agrees_with_obudpst(Server::Obudpst, 1_000_000_000, 500_000_000, 10, 0.15, 20);
}

#[test]
#[cfg_attr(
    not(all(sonde_root, sonde_udpst)),
    ignore = "needs root (namespaces) and cmake with a C compiler (Debian packages cmake, gcc) to build OB-UDPST"
)]
fn sonde_measures_an_obudpst_server_in_protocol_version_11_on_tbf_150_50() {
    // The layouts of versions 11 to 19 (OB-UDPST before 9), which OB-UDPST 9's server
    // still speaks to a client that asks for them.
    agrees_with_obudpst(Server::Obudpst, 150_000_000, 50_000_000, 8, 0.02, 11);
}

#[test]
#[cfg_attr(
    not(all(sonde_root, sonde_udpst)),
    ignore = "needs root (namespaces) and cmake with a C compiler (Debian packages cmake, gcc) to build OB-UDPST"
)]
fn sondes_server_serves_protocol_version_11_on_tbf_150_50() {
    // A CPE with an OB-UDPST client before 9 speaks version 11 to sonde's server.
    agrees_with_obudpst(Server::Sonde, 150_000_000, 50_000_000, 8, 0.02, 11);
}

/// Which UDPST server a test measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    /// OB-UDPST's `udpst -j`.
    Obudpst,
    /// `sonde-responder --udpst`.
    Sonde,
}

/// On a netlab link shaped with tbf to `down`/`up` bit/s: sonde's client against a
/// `server` in protocol `version`, then OB-UDPST's own client (version 20) against the
/// same server, `seconds` per direction; each figure within `tolerance` of the link's
/// IP ceiling and of OB-UDPST's (three attempts: the machine is shared).
fn agrees_with_obudpst(
    which: Server,
    down: u64,
    up: u64,
    seconds: u32,
    tolerance: f64,
    version: u16,
) {
    let _alone = alone();
    use sonde_netlab::topology::RESPONDER_IP;
    let link = sonde_netlab::LinkSpec::shaped(down, up);
    let mut t = sonde_netlab::Topology::create(&sonde_netlab::Spec {
        links: vec![link.clone()],
        collector: false,
    })
    .expect("topology");
    let responder = ["ip", "netns", "exec", &t.responder_ns.clone()];
    let agent = ["ip", "netns", "exec", &t.agent_ns.clone()];
    let port = 24601;
    let server = match which {
        Server::Obudpst => Some(UdpstServer::start(&responder, port, &["-j"])),
        Server::Sonde => {
            t.start_responder().expect("sonde-responder --udpst");
            None
        }
    };
    let host = RESPONDER_IP.to_string();
    let place = format!(
        "tbf {}/{}, {which:?} server, version {version}",
        down / 1_000_000,
        up / 1_000_000
    );
    let query = if version == 20 {
        String::new()
    } else {
        format!("?version={version}")
    };
    // UDPST's load datagrams are 1250-byte IP packets, which tbf counts as 1264.
    let ceiling = |is_down: bool| {
        link.ip_ceiling_bps(is_down, sonde_netlab::capacity::UDPST_PACKET)
            .expect("a shaped link")
    };
    // Three attempts: a debug build on 2 shared cores, the rest of the suite before
    // it; a bias of sonde's would fail every one.
    sonde_e2e::in_one_of(3, |_| {
        let (r, stderr) = probe(
            &agent,
            &[
                "--responder",
                &format!("udpst://{host}:{port}{query}"),
                "--max-duration",
                &seconds.to_string(),
            ],
            Duration::from_secs(60),
        );
        assert_eq!(r.status.outcome, Outcome::Ok, "{:?} {stderr}", r.status);
        assert_eq!(r.run.engine, sonde_proto::Engine::Udpst);
        let c = r.capacity.expect("a capacity section");
        assert_eq!(c.protocol_version, version);
        let mut problems = Vec::new();
        for (is_down, f) in [(true, c.down.expect("down")), (false, c.up.expect("up"))] {
            let (theirs, their_loss) = udpst_client(&agent, &host, port, !is_down, seconds);
            let ours = f.max_ip_capacity_bps;
            let (to_ceiling, to_theirs) = (ours / ceiling(is_down) - 1.0, ours / theirs - 1.0);
            let name = if is_down { "down" } else { "up" };
            println!(
                "{place} {name}: sonde {:.2} Mb/s, udpst {:.2} Mb/s, ceiling {:.2} Mb/s: {to_ceiling:+.4} / {to_theirs:+.4}; loss at max {:.4} (udpst {their_loss:.4}), sub-intervals {:?}",
                ours / 1e6,
                theirs / 1e6,
                ceiling(is_down) / 1e6,
                f.loss_ratio_at_max,
                f.sub_interval_rates_bps.iter().map(|r| (r / 1e5).round() / 10.0).collect::<Vec<_>>(),
            );
            assert_eq!(f.sub_interval_rates_bps.len(), seconds as usize);
            assert!(
                ours <= ceiling(is_down) * 1.01,
                "{name} above the ceiling: {ours}"
            );
            if to_ceiling.abs() > tolerance || to_theirs.abs() > tolerance {
                problems.push(format!(
                    "{name}: {to_ceiling:+.4} to the ceiling, {to_theirs:+.4} to udpst"
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    });
    drop(server);
    t.teardown();
}

#[test]
#[cfg_attr(
    not(sonde_udpst),
    ignore = "needs cmake with a C compiler (Debian packages cmake, gcc) to build OB-UDPST"
)]
fn a_refused_setup_is_named_in_the_servers_terms() {
    // A server that wants jumbo sizes, a client that does not: the server refuses.
    let port = sonde_e2e::pipeline::free_port();
    let _server = UdpstServer::start(&[], port, &[]);
    let started = Instant::now();
    let (r, _) = probe(
        &[],
        &["--responder", &format!("udpst://127.0.0.1:{port}")],
        Duration::from_secs(30),
    );
    assert_eq!(r.status.outcome, Outcome::Failed);
    assert_eq!(r.status.reason, Some(FailureReason::ResponderError));
    let message = r.status.message.unwrap_or_default();
    assert!(
        message.contains("refused the setup") && message.contains("add ?jumbo to the URL"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn something_that_is_no_udpst_server_is_named_and_never_hangs() {
    // A UDP service that answers everything with its own bytes.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = socket.local_addr().expect("addr").port();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let answering = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        if let Ok((_, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(b"+OK hello from a DNS-ish thing", from);
        }
    });
    let started = Instant::now();
    let (r, _) = probe(
        &[],
        &["--responder", &format!("udpst://127.0.0.1:{port}")],
        Duration::from_secs(30),
    );
    answering.join().expect("answered");
    assert_eq!(r.status.reason, Some(FailureReason::ResponderError));
    let message = r.status.message.unwrap_or_default();
    assert!(message.contains("is not a UDPST server"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn no_server_at_all_is_refused_or_timed_out_within_its_bound() {
    // A port nobody listens on: loopback answers ICMP port unreachable.
    let port = sonde_e2e::pipeline::free_port();
    let started = Instant::now();
    let (r, _) = probe(
        &[],
        &["--responder", &format!("udpst://127.0.0.1:{port}")],
        Duration::from_secs(30),
    );
    assert_eq!(r.status.outcome, Outcome::Failed);
    assert!(
        matches!(
            r.status.reason,
            Some(FailureReason::Refused | FailureReason::Timeout)
        ),
        "{:?}",
        r.status
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
#[cfg_attr(
    not(sonde_udpst),
    ignore = "needs cmake with a C compiler (Debian packages cmake, gcc) to build OB-UDPST"
)]
fn a_server_that_dies_mid_test_is_a_failure_within_seconds() {
    let _alone = alone();
    let port = sonde_e2e::pipeline::free_port();
    let mut server = UdpstServer::start(&[], port, &["-j"]);
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        let _ = server.0.kill();
        let _ = server.0.wait();
    });
    let started = Instant::now();
    let (r, _) = probe(
        &[],
        &[
            "--responder",
            &format!("udpst://127.0.0.1:{port}"),
            "--direction",
            "down",
            "--max-duration",
            "20",
        ],
        Duration::from_secs(60),
    );
    killer.join().expect("killed");
    assert_eq!(r.status.outcome, Outcome::Failed);
    let message = r.status.message.clone().unwrap_or_default();
    assert!(message.contains("stopped mid-test"), "{:?}", r.status);
    // Killed after 3 s, noticed after 3 s of silence: well before the 20 s test ends.
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_byte_allowance_is_refused_before_any_traffic() {
    // Nothing listens: the refusal comes before any datagram is sent.
    let (r, _) = probe(
        &[],
        &["--responder", "udpst://127.0.0.1:9", "--max-bytes", "10MB"],
        Duration::from_secs(30),
    );
    assert_eq!(r.status.reason, Some(FailureReason::Budget));
    assert!(r
        .status
        .message
        .unwrap_or_default()
        .contains("cannot keep to a byte allowance"));
    assert!(r.capacity.is_none());
}

#[test]
#[cfg_attr(
    not(sonde_udpst),
    ignore = "needs cmake with a C compiler (Debian packages cmake, gcc) to build OB-UDPST"
)]
fn a_datagram_flood_on_the_agents_port_costs_nothing() {
    let _alone = alone();
    let port = sonde_e2e::pipeline::free_port();
    let _server = UdpstServer::start(&[], port, &["-j"]);
    let mut cmd = std::process::Command::new(bin("sonde-agent"));
    cmd.args(["probe", "--responder", &format!("udpst://127.0.0.1:{port}")])
        .args(["--direction", "down", "--max-duration", "5", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut agent = cmd.spawn().expect("sonde-agent");
    // The agent's test socket: the UDP socket of its process once the test runs. A
    // loaded machine may take seconds to start a debug build: wait while it runs.
    let pid = agent.id();
    let spawned = Instant::now();
    let deadline = spawned + Duration::from_secs(30);
    let mut target = None;
    while target.is_none() && Instant::now() < deadline {
        if let Ok(Some(status)) = agent.try_wait() {
            let out = agent.wait_with_output().expect("agent output");
            panic!(
                "the agent ended ({status}) before its test socket was seen: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let out = std::process::Command::new("ss")
            .args(["-Hunap"])
            .output()
            .expect("ss");
        target = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.contains(&format!("pid={pid},")) && !l.contains(&format!(":{port} ")))
            .and_then(|l| l.split_whitespace().nth(3).map(str::to_string));
        std::thread::sleep(Duration::from_millis(100));
    }
    let target = target.expect("the agent's UDP socket within 30 s");
    println!(
        "the agent's test socket appeared after {:?}",
        spawned.elapsed()
    );
    // A stranger floods it for 2 s with load-looking datagrams, bounded in count.
    let flooder = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut forged = vec![0u8; 1222];
    forged[..2].copy_from_slice(&sonde_proto::udpst::LOAD_ID.to_be_bytes());
    forged[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    // Each claims 60,000 payload bytes: counted, they would add over 100 Gb/s.
    forged[8..10].copy_from_slice(&60_000u16.to_be_bytes());
    let (started, mut sent) = (Instant::now(), 0u64);
    while started.elapsed() < Duration::from_secs(2) && sent < 2_000_000 {
        if flooder.send_to(&forged, &target).is_ok() {
            sent += 1;
        }
    }
    let out = agent.wait_with_output().expect("agent ends");
    let r = ResultRecord::from_json(String::from_utf8_lossy(&out.stdout).trim().as_bytes())
        .expect("one record");
    println!("flooded {target} with {sent} datagrams in 2 s");
    assert!(sent > 1000, "the flood ran: {sent}");
    assert_eq!(r.status.outcome, Outcome::Ok, "{:?}", r.status);
    let down = r.capacity.and_then(|c| c.down).expect("a download figure");
    // Loopback carries a few Gb/s; the stranger's datagrams were never counted.
    assert!(down.max_ip_capacity_bps < 20e9, "{:?}", down);
    // Nor did its sequence number (2^32 - 1) wreck the loss count.
    assert!(down.loss_ratio < 0.5, "{:?}", down);
    assert_eq!(down.sub_interval_rates_bps.len(), 5);
}

/// A Setup Request for test `ident`, with `auth_mode`.
fn setup_request(ident: u16, version: u16, auth_mode: u8) -> Vec<u8> {
    use sonde_proto::udpst::*;
    Setup {
        version,
        auth: Auth {
            mode: auth_mode,
            ..Auth::default()
        },
        ..Setup::request(ident, 0, 1)
    }
    .encode()
}

/// A stranger's socket on another loopback address, answers awaited for 300 ms.
fn stranger(ip: &str) -> std::net::UdpSocket {
    let s = std::net::UdpSocket::bind((ip, 0)).expect("bind a stranger");
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    s
}

/// Every PDU the stranger's socket got until it fell quiet (bounded).
fn answers(s: &std::net::UdpSocket) -> Vec<sonde_proto::udpst::Pdu> {
    let mut buf = [0u8; 9000];
    let mut got = Vec::new();
    for _ in 0..10_000 {
        match s.recv(&mut buf) {
            Ok(n) => got.extend(sonde_proto::udpst::Pdu::decode(&buf[..n]).ok()),
            Err(_) => break,
        }
    }
    got
}

/// The Setup Responses among `pdus`: (code, test port).
fn setup_answers(pdus: &[sonde_proto::udpst::Pdu]) -> Vec<(u8, u16)> {
    pdus.iter()
        .filter_map(|p| match p {
            sonde_proto::udpst::Pdu::Setup(s) => Some((s.response, s.test_port)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_stranger_on_sondes_server_gets_no_reflection_and_an_agent_still_measures() {
    let _alone = alone();
    let port = sonde_e2e::pipeline::free_port();
    let udpst = format!("127.0.0.1:{port}");
    let _responder = sonde_e2e::Responder::start(&["--udpst", &udpst, "--udpst-max-tests", "5"]);
    let control: std::net::SocketAddr = udpst.parse().expect("addr");
    let a = stranger("127.0.0.2");
    // Junk and PDUs that are no Setup Request: dropped, never answered.
    let mut junk = vec![0u8; 1222];
    for i in 0..20_000u32 {
        junk[..4].copy_from_slice(&i.to_be_bytes());
        let _ = a.send_to(&junk[..(i as usize % 1222) + 1], control);
    }
    junk[..2].copy_from_slice(&sonde_proto::udpst::LOAD_ID.to_be_bytes());
    let _ = a.send_to(&junk, control);
    assert!(answers(&a).is_empty(), "junk was answered");
    // A protocol version older than any it speaks (11 is the oldest), a key this
    // server does not have: refused by name.
    let _ = a.send_to(&setup_request(1, 10, 0), control);
    let _ = a.send_to(&setup_request(2, 20, 1), control);
    assert_eq!(setup_answers(&answers(&a)), vec![(2, 0), (4, 0)]);
    // Two tests set up and never activated: the third from this address is refused.
    for ident in [10, 11, 12] {
        let _ = a.send_to(&setup_request(ident, 20, 0), control);
    }
    let got = setup_answers(&answers(&a));
    let codes: Vec<u8> = got.iter().map(|g| g.0).collect();
    assert_eq!(codes, vec![1, 1, 13], "{got:?}");
    // A third party cannot activate the stranger's test towards itself.
    let b = stranger("127.0.0.3");
    let test_port = got[0].1;
    let activation = sonde_proto::udpst::Activation::decode(&hex_line("us c>s activation"))
        .expect("recorded activation");
    let _ = b.send_to(&activation.encode(), ("127.0.0.1", test_port));
    assert!(answers(&b).is_empty(), "a forged activation was answered");
    // The agent still gets a slot (the stranger may hold half of the five) and
    // measures, while the stranger
    // floods the control port (bounded: 2 s, 2,000,000 datagrams).
    let flood = std::thread::spawn(move || {
        let (started, mut sent) = (Instant::now(), 0u64);
        while started.elapsed() < Duration::from_secs(2) && sent < 2_000_000 {
            if a.send_to(&setup_request(10, 20, 0), control).is_ok() {
                sent += 1;
            }
        }
        sent
    });
    let (r, stderr) = probe(
        &[],
        &[
            "--responder",
            &format!("udpst://{udpst}"),
            "--direction",
            "down",
            "--max-duration",
            "5",
        ],
        Duration::from_secs(30),
    );
    let flooded = flood.join().expect("flood");
    println!("the stranger sent {flooded} setups during the agent's test");
    assert_eq!(r.status.outcome, Outcome::Ok, "{:?} {stderr}", r.status);
    let down = r.capacity.and_then(|c| c.down).expect("a download figure");
    assert_eq!(down.sub_interval_rates_bps.len(), 5, "{down:?}");
    assert!(down.max_ip_capacity_bps > 100e6, "{down:?}");
}

#[test]
fn a_busy_server_is_asked_again_until_a_connection_frees() {
    let _alone = alone();
    let port = sonde_e2e::pipeline::free_port();
    let udpst = format!("127.0.0.1:{port}");
    // Two connections in all: one address may hold one.
    let _responder = sonde_e2e::Responder::start(&["--udpst", &udpst, "--udpst-max-tests", "2"]);
    // A setup from the agent's own address, never activated: it holds that one
    // connection until the server's 3 s activation wait ends, as the connections of
    // the agent's previous test do while they end.
    let holder = stranger("127.0.0.1");
    let _ = holder.send_to(&setup_request(77, 20, 0), udpst.as_str());
    let held = setup_answers(&answers(&holder));
    assert_eq!(held.iter().map(|h| h.0).collect::<Vec<_>>(), vec![1]);
    let (r, stderr) = probe(
        &[],
        &[
            "--responder",
            &format!("udpst://{udpst}"),
            "--direction",
            "down",
            "--max-duration",
            "2",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(r.status.outcome, Outcome::Ok, "{:?} {stderr}", r.status);
    let down = r.capacity.and_then(|c| c.down).expect("a download figure");
    assert!(down.max_ip_capacity_bps > 10e6, "{down:?}");
}

/// The bytes of the first recorded PDU whose line starts with `prefix`.
fn hex_line(prefix: &str) -> Vec<u8> {
    let t = include_str!("../../proto/testdata/udpst-obudpst-9.0.0.txt");
    let line = t
        .lines()
        .find(|l| l.starts_with(prefix))
        .expect("recorded line");
    let hex = line.split(' ').nth(4).expect("bytes");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
#[cfg_attr(
    not(sonde_udpst),
    ignore = "needs cmake with a C compiler (Debian packages cmake, gcc) to build OB-UDPST"
)]
fn sondes_client_follows_an_obudpst_servers_jumbo_rows_on_a_jumbo_path() {
    let _alone = alone();
    // OB-UDPST's server as it runs by default: jumbo datagrams above 1 Gb/s. Loopback
    // carries 9000-byte datagrams; the client asks for them with ?jumbo.
    let port = sonde_e2e::pipeline::free_port();
    let _server = UdpstServer::start(&[], port, &[]);
    let (r, stderr) = probe(
        &[],
        &[
            "--responder",
            &format!("udpst://127.0.0.1:{port}?jumbo"),
            "--max-duration",
            "8",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(r.status.outcome, Outcome::Ok, "{:?} {stderr}", r.status);
    let c = r.capacity.expect("capacity");
    for f in [c.down.expect("down"), c.up.expect("up")] {
        println!("jumbo rows: {:?}", f.sub_interval_rates_bps);
        // Rows above 1 Gb/s send datagrams of 1375 bytes and more: past it, they came.
        assert!(f.max_ip_capacity_bps > 1.05e9, "{f:?}");
    }
    // A query the engine does not know is refused by name, before any traffic.
    let (r, _) = probe(
        &[],
        &["--responder", &format!("udpst://127.0.0.1:{port}?fast=yes")],
        Duration::from_secs(30),
    );
    assert_eq!(r.status.outcome, Outcome::Failed);
    assert!(r
        .status
        .message
        .unwrap_or_default()
        .contains("takes only ?jumbo"));
}

/// A key file of one key, `0,KEY`, in a scratch folder.
/// An older server's control port in front of a real one on `to`: a setup in
/// version 20 is refused as OB-UDPST before 9 refuses it (code 2, with its own version
/// 11); any other goes to `to`, and its answer comes back. Runs until `stop`, 60 s at
/// most; returns the port it listens on and, at the end, the versions it was asked.
fn older_server_in_front_of(
    to: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (u16, std::thread::JoinHandle<Vec<u16>>) {
    use sonde_proto::udpst::{Setup, SETUP_BAD_VERSION, SETUP_RESPONSE};
    let front = std::net::UdpSocket::bind("127.0.0.1:0").expect("front");
    front
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let port = front.local_addr().expect("addr").port();
    let back = std::net::UdpSocket::bind("127.0.0.1:0").expect("back");
    back.connect(("127.0.0.1", to)).expect("connect");
    back.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let thread = std::thread::spawn(move || {
        let (mut asked, mut buf) = (Vec::new(), [0u8; 2048]);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !stop.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
            let Ok((n, client)) = front.recv_from(&mut buf) else {
                continue;
            };
            let Ok(mut setup) = Setup::decode(&buf[..n]) else {
                continue;
            };
            asked.push(setup.version);
            if setup.version == 20 {
                setup.request = SETUP_RESPONSE;
                setup.response = SETUP_BAD_VERSION;
                setup.version = 11;
                let _ = front.send_to(&setup.encode(), client);
            } else if back.send(&buf[..n]).is_ok() {
                if let Ok(m) = back.recv(&mut buf) {
                    let _ = front.send_to(&buf[..m], client);
                }
            }
        }
        asked
    });
    (port, thread)
}

#[test]
#[cfg_attr(
    not(sonde_udpst),
    ignore = "needs cmake with a C compiler (Debian packages cmake, gcc) to build OB-UDPST"
)]
fn a_server_of_an_older_version_is_asked_again_in_its_own() {
    let _alone = alone();
    let port = sonde_e2e::pipeline::free_port();
    let _server = UdpstServer::start(&[], port, &["-j"]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (front, asked) = older_server_in_front_of(port, stop.clone());
    for direction in ["down", "up"] {
        let (r, stderr) = probe(
            &[],
            &[
                "--responder",
                &format!("udpst://127.0.0.1:{front}"),
                "--direction",
                direction,
                "--max-duration",
                "5",
            ],
            Duration::from_secs(30),
        );
        assert_eq!(r.status.outcome, Outcome::Ok, "{:?} {stderr}", r.status);
        let c = r.capacity.expect("capacity");
        assert_eq!(c.protocol_version, 11, "the older server's version");
        let f = c.down.or(c.up).expect("the direction's figures");
        assert_eq!(f.sub_interval_rates_bps.len(), 5, "{direction}");
        assert!(f.max_ip_capacity_bps > 1e6, "{direction}: {f:?}");
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let asked = asked.join().expect("front");
    assert_eq!(asked, vec![20, 11, 20, 11], "each test asked 20, then 11");
    // A key cannot be used with it: sonde authenticates in version 20 only.
    let keys = key_file("udpst-old-key", "secret");
    let (r, _) = download(&format!(
        "udpst://127.0.0.1:{port}?version=11&key_file={}",
        keys.display()
    ));
    assert_eq!(r.status.outcome, Outcome::Failed);
    let message = r.status.message.unwrap_or_default();
    assert!(message.contains("version 20 only"), "{message}");
}

fn key_file(name: &str, key: &str) -> std::path::PathBuf {
    let dir = sonde_e2e::pipeline::scratch(name);
    let path = dir.join("udpst.keys");
    std::fs::write(&path, format!("# a test key\n0,{key}\n")).expect("key file");
    path
}

/// A 5 s download from `url`: the record and the agent's stderr.
fn download(url: &str) -> (ResultRecord, String) {
    probe(
        &[],
        &[
            "--responder",
            url,
            "--direction",
            "down",
            "--max-duration",
            "5",
        ],
        Duration::from_secs(30),
    )
}

#[test]
#[cfg_attr(
    not(sonde_udpst_auth),
    ignore = "needs cmake, a C compiler and libssl-dev (Debian packages cmake, gcc, libssl-dev) to build OB-UDPST with authentication"
)]
fn a_shared_key_authenticates_against_obudpst_and_sonde_and_a_wrong_key_is_named() {
    let _alone = alone();
    let right = key_file("udpst-key-right", "right-key");
    let wrong = key_file("udpst-key-wrong", "wrong-key");
    let url = |port: u16, file: &std::path::Path| {
        format!("udpst://127.0.0.1:{port}?key_file={}", file.display())
    };
    // OB-UDPST's server with the key: ours authenticates, a wrong key and none do not.
    let port = sonde_e2e::pipeline::free_port();
    let server = UdpstServer::start(&[], port, &["-j", "-a", "right-key"]);
    let (r, stderr) = download(&url(port, &right));
    assert_eq!(r.status.outcome, Outcome::Ok, "{:?} {stderr}", r.status);
    assert!(r.capacity.and_then(|c| c.down).is_some());
    for (u, why) in [
        (url(port, &wrong), "authentication failed at the server"),
        (
            format!("udpst://127.0.0.1:{port}"),
            "authentication required by the server",
        ),
    ] {
        let started = Instant::now();
        let (r, _) = download(&u);
        let message = r.status.message.unwrap_or_default();
        assert!(message.contains(why), "{u}: {message}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    drop(server);
    // sonde's server with the key: ours and OB-UDPST's client authenticate.
    let port = sonde_e2e::pipeline::free_port();
    let control = format!("127.0.0.1:{port}");
    let _responder = sonde_e2e::Responder::start(&[
        "--udpst",
        &control,
        "--udpst-key-file",
        &right.display().to_string(),
    ]);
    let (r, stderr) = download(&url(port, &right));
    assert_eq!(r.status.outcome, Outcome::Ok, "{:?} {stderr}", r.status);
    let (r, _) = download(&url(port, &wrong));
    let message = r.status.message.unwrap_or_default();
    assert!(
        message.contains("authentication failed at the server"),
        "{message}"
    );
    assert!(message.contains("is not the server's"), "{message}");
    let theirs = |key: &str| {
        let mut cmd = std::process::Command::new(UDPST);
        cmd.args(["-d", "-j", "-t", "5", "-f", "json", "-a", key, &control]);
        let run = sonde_e2e::run_bounded(cmd, Duration::from_secs(30));
        serde_json::from_str::<serde_json::Value>(run.stdout().trim()).expect("udpst json")
    };
    let ok = theirs("right-key");
    assert_eq!(ok["ErrorStatus"], 0, "{ok}");
    assert!(
        ok["Output"]["AtMax"]["MaxIPLayerCapacity"].as_f64() > Some(10.0),
        "{ok}"
    );
    let refused = theirs("wrong-key");
    assert_ne!(refused["ErrorStatus"], 0, "{refused}");
    assert!(
        refused.to_string().contains("Authentication failure"),
        "{refused}"
    );
}

#[test]
#[cfg_attr(
    not(all(sonde_root, sonde_udpst)),
    ignore = "needs root (namespaces) and cmake with a C compiler (Debian packages cmake, gcc) to build OB-UDPST"
)]
fn four_connections_add_up_to_the_link_against_either_server() {
    let _alone = alone();
    use sonde_netlab::topology::RESPONDER_IP;
    let link = sonde_netlab::LinkSpec::shaped(150_000_000, 50_000_000);
    let mut t = sonde_netlab::Topology::create(&sonde_netlab::Spec {
        links: vec![link.clone()],
        collector: false,
    })
    .expect("topology");
    let responder = ["ip", "netns", "exec", &t.responder_ns.clone()];
    let agent = ["ip", "netns", "exec", &t.agent_ns.clone()];
    t.start_responder()
        .expect("sonde-responder --udpst on 24601");
    let _theirs = UdpstServer::start(&responder, 24602, &["-j"]);
    let ceiling = |down: bool| {
        link.ip_ceiling_bps(down, sonde_netlab::capacity::UDPST_PACKET)
            .expect("a shaped link")
    };
    for port in [24601, 24602] {
        sonde_e2e::in_one_of(2, |_| {
            let url = format!("udpst://{RESPONDER_IP}:{port}?connections=4");
            let (r, stderr) = probe(
                &agent,
                &["--responder", &url, "--max-duration", "8"],
                Duration::from_secs(60),
            );
            assert_eq!(
                r.status.outcome,
                Outcome::Ok,
                "{url}: {:?} {stderr}",
                r.status
            );
            let c = r.capacity.expect("capacity");
            assert_eq!(c.connections, 4);
            let mut problems = Vec::new();
            for (down, f) in [(true, c.down.expect("down")), (false, c.up.expect("up"))] {
                let to_ceiling = f.max_ip_capacity_bps / ceiling(down) - 1.0;
                println!(
                    "{url} down={down}: {:.2} Mb/s, {to_ceiling:+.4} to the ceiling",
                    f.max_ip_capacity_bps / 1e6
                );
                assert!(to_ceiling < 0.01, "above the ceiling: {to_ceiling:+.4}");
                if to_ceiling.abs() > 0.02 {
                    problems.push(format!("down={down}: {to_ceiling:+.4}"));
                }
            }
            if problems.is_empty() {
                Ok(())
            } else {
                Err(problems.join("; "))
            }
        });
    }
    t.teardown();
}
