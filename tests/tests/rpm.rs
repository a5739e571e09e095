//! Responsiveness (RPM): `sonde-agent probe --rpm` against a real `sonde-responder
//! --nq` on loopback (HTTP/2 over TLS, its self-signed certificate trusted by file),
//! RPM alone from an https URL, and
//! the bad inputs the issue names: a server that is not HTTPS, one without the
//! endpoints, a redirect, a certificate not trusted, each a clear reason in bounded
//! time. On netlab (root) with Cloudflare's `mach` built: both clients on the shallow
//! and the deep-queue profile.

use sonde_e2e::pipeline::{scratch, Agent, AgentSetup, Collector};
use sonde_e2e::{agent, Responder};
use sonde_proto::{Engine, Outcome, ResultRecord};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn record(run: &sonde_e2e::Run) -> ResultRecord {
    ResultRecord::from_json(run.stdout().trim().as_bytes())
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout(), run.stderr()))
}

/// A responder with its network-quality server; the certificate's file.
fn responder(dir: &std::path::Path) -> (Responder, std::path::PathBuf) {
    let ca = dir.join("nq.pem");
    let r = Responder::start(&[
        "--nq",
        "127.0.0.1:0",
        "--nq-self-signed-out",
        &ca.display().to_string(),
    ]);
    (r, ca)
}

#[test]
fn probe_rpm_measures_both_directions_against_the_responder() {
    let dir = scratch("rpm");
    let (responder, ca) = responder(&dir);
    let run = agent(
        &[
            "probe",
            "--responder",
            &responder.url(),
            "--rpm",
            "--rpm-ca",
            &ca.display().to_string(),
            "--max-duration",
            "5",
            "--json",
        ],
        Duration::from_secs(120),
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let r = record(&run);
    assert_eq!(r.status.outcome, Outcome::Ok, "{:?}", r.status);
    assert!(r.download.is_some() && r.upload.is_some(), "throughput too");
    let rpm = r.responsiveness.expect("a responsiveness section");
    assert_eq!(rpm.method, "draft-ietf-ippm-responsiveness-09");
    let port = responder.nq_port.expect("nq port");
    assert_eq!(
        rpm.config_url,
        format!("https://127.0.0.1:{port}/.well-known/nq")
    );
    for f in [rpm.down.expect("down"), rpm.up.expect("up")] {
        assert!(f.rpm > 0.0 && f.rpm.is_finite(), "{f:?}");
        assert!((1..=16).contains(&f.connections), "{f:?}");
        assert!(f.foreign.count > 0 && f.self_probes.count > 0, "{f:?}");
        assert!(f.bytes > 0 && f.goodput_bps > 0.0, "{f:?}");
        // The figure is the mean of the two responsivenesses it reports.
        let mean = (f.foreign.rpm + f.self_probes.rpm) / 2.0;
        assert!((f.rpm - mean).abs() < 1e-6 * mean, "{f:?}");
        let grade = match f.rpm {
            r if r < 300.0 => "poor",
            r if r < 1000.0 => "fair",
            r if r <= 6000.0 => "good",
            _ => "excellent",
        };
        assert_eq!(f.grade.as_str(), grade, "{f:?}");
    }
}

/// An access with `rpm = true`: the daemon measures responsiveness after each
/// throughput test and its result reaches the collector with both.
#[test]
fn a_daemon_access_with_rpm_delivers_results_with_responsiveness() {
    let dir = scratch("rpm-daemon");
    let (responder, ca) = responder(&dir);
    let mut collector = Collector::configure(&dir);
    collector.start();
    let adir = dir.join("agent");
    collector.enroll("b-rpm", &adir.join("state"));
    let setup = AgentSetup {
        access_extra: format!("rpm = true\nrpm_ca = \"{}\"\n", ca.display()),
        ..AgentSetup::probing(responder.url())
    };
    let mut agent = Agent::start(&adir, &collector, &setup);
    let deadline = Instant::now() + Duration::from_secs(150);
    let stored = loop {
        if let Some(r) = collector.all_results().into_iter().next() {
            break r;
        }
        assert!(
            Instant::now() < deadline && !agent.exited(),
            "no result arrived: {}",
            std::fs::read_to_string(&agent.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    drop(agent);
    assert_eq!(stored["status"]["outcome"], "ok", "{stored}");
    assert!(
        stored["download"]["ip_rate_bps"].as_f64().is_some(),
        "{stored}"
    );
    let rpm = &stored["responsiveness"];
    for dir in ["down", "up"] {
        let v = rpm[dir]["rpm"].as_f64().unwrap_or(0.0);
        assert!(v > 0.0 && v.is_finite(), "{dir}: {rpm}");
    }
}

#[test]
fn an_nq_url_measures_responsiveness_alone() {
    let dir = scratch("rpm-alone");
    let (responder, ca) = responder(&dir);
    let port = responder.nq_port.expect("nq port");
    let url = format!("https://127.0.0.1:{port}/.well-known/nq");
    let run = agent(
        &[
            "probe",
            "--responder",
            &url,
            "--rpm-ca",
            &ca.display().to_string(),
            "--direction",
            "down",
            "--max-duration",
            "5",
            "--json",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let r = record(&run);
    assert_eq!(r.run.engine, Engine::Nq);
    assert!(r.download.is_none() && r.upload.is_none());
    let rpm = r.responsiveness.expect("responsiveness");
    assert!(rpm.down.is_some() && rpm.up.is_none());
}

/// A TCP server on loopback that answers each connection with `answer` (plain text,
/// not TLS), for as long as the test runs.
fn plain_server(answer: &'static [u8]) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for c in l.incoming().take(64) {
            let Ok(mut c) = c else { continue };
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf);
            let _ = c.write_all(answer);
        }
    });
    port
}

#[test]
fn bad_servers_get_a_clear_reason_in_bounded_time() {
    let dir = scratch("rpm-bad");
    let (responder, ca) = responder(&dir);
    let nq = responder.nq_port.expect("nq port");
    let plain = plain_server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let ca = ca.display().to_string();
    let cases: Vec<(String, Option<&str>, &str)> = vec![
        // Not TLS where TLS is expected.
        (
            format!("https://127.0.0.1:{plain}/.well-known/nq"),
            Some(&ca),
            "is it an HTTPS server",
        ),
        // A TLS server without the endpoints.
        (
            format!("https://127.0.0.1:{nq}/nothing/here"),
            Some(&ca),
            "404",
        ),
        // A redirect: named, not followed.
        (
            format!("https://127.0.0.1:{nq}/.well-known/nq/"),
            Some(&ca),
            "redirects (308 Permanent Redirect to /.well-known/nq)",
        ),
        // A certificate this agent does not trust (the system's roots only).
        (
            format!("https://127.0.0.1:{nq}/.well-known/nq"),
            None,
            "certificate",
        ),
        // Nothing listens.
        (
            format!(
                "https://127.0.0.1:{}/.well-known/nq",
                sonde_e2e::pipeline::free_port()
            ),
            Some(&ca),
            "refused",
        ),
    ];
    for (url, trust, reason) in cases {
        let mut args = vec![
            "probe",
            "--responder",
            &url,
            "--max-duration",
            "5",
            "--json",
        ];
        if let Some(t) = trust {
            args.extend(["--rpm-ca", t]);
        }
        let start = Instant::now();
        let run = agent(&args, Duration::from_secs(60));
        let took = start.elapsed();
        assert_eq!(run.code(), 1, "{url}: {}", run.stderr());
        let r = record(&run);
        assert_eq!(r.status.outcome, Outcome::Failed);
        let message = r.status.message.unwrap_or_default();
        assert!(
            message.contains(reason),
            "{url}: {message:?} lacks {reason:?}"
        );
        assert!(took < Duration::from_secs(20), "{url}: {took:?}");
        eprintln!("{url}: {message} ({took:?})");
    }
}

#[test]
#[cfg_attr(not(sonde_root), ignore = "needs root: builds network namespaces")]
#[cfg_attr(
    not(sonde_mach),
    ignore = "needs cf-mach built (cargo install cf-mach --locked --root /var/cache/sonde-tools/cf-mach; .ci/run does)"
)]
fn sonde_and_mach_both_see_the_deep_queue() {
    use sonde_e2e::rpm;
    let mach = rpm::mach().expect("cf-mach, found when the tests were built");
    let _alone = sonde_e2e::measuring_alone();
    let mut rows = Vec::new();
    for profile in ["rpm-shallow", "rpm-bufferbloat"] {
        let t = rpm::topology(profile);
        let ours = rpm::sonde(&t);
        let theirs = rpm::mach_rpm(&t, &mach);
        eprintln!(
            "{profile}: sonde down {:.0} up {:.0}, mach down {:.0} up {:.0} (sonde/mach {:.2} {:.2})",
            ours.down,
            ours.up,
            theirs.down,
            theirs.up,
            ours.down / theirs.down,
            ours.up / theirs.up
        );
        rows.push((ours, theirs));
    }
    let (shallow, deep) = (rows[0], rows[1]);
    // The deep queue gives a clearly lower RPM, under download load, in both clients.
    for (who, s, d) in [("sonde", shallow.0, deep.0), ("mach", shallow.1, deep.1)] {
        assert!(d.down < 0.5 * s.down, "{who}: {d:?} vs {s:?}");
        assert!(d.up < s.up, "{who}: {d:?} vs {s:?}");
    }
}
