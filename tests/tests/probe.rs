//! `sonde-agent probe` against a real `sonde-responder` on loopback: the record it
//! prints, interface binding, and every bad input the measurement-core issue names.

use sonde_e2e::{agent, is_root, Responder};
use sonde_proto::{Direction, FailureReason, Outcome, ResultRecord, METHODOLOGY_VERSION};
use std::net::TcpListener;
use std::time::Duration;

fn record_of(run: &sonde_e2e::Run) -> ResultRecord {
    let out = run.stdout();
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "exactly one JSON line on stdout, got: {out}\nstderr: {}",
        run.stderr()
    );
    ResultRecord::from_json(lines[0].as_bytes()).expect("a result record")
}

#[test]
fn probe_json_holds_every_figure() {
    let responder = Responder::start(&[]);
    let run = agent(
        &[
            "probe",
            "--responder",
            &responder.url(),
            "--max-duration",
            "3",
            "--json",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code(), 0, "stderr: {}", run.stderr());
    let r = record_of(&run);
    assert_eq!(r.status.outcome, Outcome::Ok, "{:?}", r.status);
    assert_eq!(r.methodology_version, METHODOLOGY_VERSION);
    assert_eq!(r.run.directions, vec![Direction::Down, Direction::Up]);
    assert_eq!(
        r.run.responder.version.as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    let idle = r.idle_latency.as_ref().expect("idle latency");
    assert_eq!(idle.sent, 50);
    assert!(
        idle.median_s.is_some_and(|m| m > 0.0 && m < 0.1),
        "{idle:?}"
    );
    assert!(idle.jitter_s.is_some());
    assert_eq!(idle.loss_ratio, 0.0);
    for t in [r.download.as_ref(), r.upload.as_ref()] {
        let t = t.expect("both directions ran");
        assert!(t.goodput_bps > 0.0, "{t:?}");
        assert!(t.ip_rate_bps >= t.goodput_bps);
        assert!(t.bytes_total > 0 && t.bytes_measured > 0 && t.bytes_measured <= t.bytes_total);
        assert!(
            t.duration_s > 0.0 && t.duration_s <= 4.5,
            "capped at 3 s: {t:?}"
        );
        assert!(t.measured_duration_s > 0.0 && t.measured_duration_s <= t.duration_s + 0.5);
        assert!(t.samples.count >= t.samples.used && t.samples.used > 0);
        assert!(t.samples.p10_bps <= t.samples.p50_bps && t.samples.p50_bps <= t.samples.p90_bps);
        assert_eq!(t.streams, 8);
        let loaded = t.loaded_latency.as_ref().expect("loaded latency");
        assert!(loaded.sent > 0 && loaded.median_s.is_some(), "{loaded:?}");
        // The measured window is the part the figure comes from.
        let implied = t.bytes_measured as f64 * 8.0 / t.measured_duration_s;
        assert!(
            (implied / t.goodput_bps - 1.0).abs() < 0.01,
            "{implied} vs {t:?}"
        );
    }
    assert_eq!(
        r.upload.as_ref().map(|u| u.measured_at),
        Some(sonde_proto::MeasuredAt::Responder)
    );
}

#[test]
fn probe_prints_a_readable_summary_without_json() {
    let responder = Responder::start(&[]);
    let run = agent(
        &[
            "probe",
            "--responder",
            &responder.url(),
            "--max-duration",
            "1",
            "--direction",
            "down",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code(), 0, "stderr: {}", run.stderr());
    let out = run.stdout();
    assert!(
        out.contains("download") && out.contains("goodput") && out.contains("idle latency"),
        "{out}"
    );
    assert!(!out.contains("upload "), "only download was asked: {out}");
    assert_readable(&out);
}

/// Words, not Rust's debug names or wire names: no `CamelCase` word, no `[...]` list,
/// no `snake_case` name.
fn assert_readable(out: &str) {
    for word in out.split(|c: char| c.is_whitespace() || "(),;:".contains(c)) {
        let camel = word.chars().next().is_some_and(char::is_uppercase)
            && word.chars().skip(1).any(char::is_uppercase)
            && word.chars().any(char::is_lowercase)
            && word.chars().all(char::is_alphabetic);
        assert!(!camel, "debug name {word:?} in:\n{out}");
        assert!(
            !(word.contains('_') && word.chars().all(|c| c.is_ascii_lowercase() || c == '_')),
            "wire name {word:?} in:\n{out}"
        );
    }
    assert!(!out.contains('['), "{out}");
}

#[test]
fn a_failed_probe_says_why_in_words() {
    // A port nobody listens on: refused.
    let port = sonde_e2e::pipeline::free_port();
    let run = agent(
        &[
            "probe",
            "--responder",
            &format!("http://127.0.0.1:{port}"),
            "--max-duration",
            "1",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code(), 1, "stderr: {}", run.stderr());
    let out = run.stdout();
    assert!(out.contains("status        failed"), "{out}");
    assert!(
        out.contains("because       the responder refused the connection"),
        "{out}"
    );
    assert_readable(&out);
}

#[test]
#[cfg_attr(
    not(sonde_root),
    ignore = "needs root: SO_BINDTODEVICE needs CAP_NET_RAW"
)]
fn interface_lo_works_when_root() {
    assert!(is_root(), "built as root but not running as root");
    let responder = Responder::start(&[]);
    let run = agent(
        &[
            "probe",
            "--responder",
            &responder.url(),
            "--interface",
            "lo",
            "--max-duration",
            "1",
            "--direction",
            "up",
            "--json",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code(), 0, "stderr: {}", run.stderr());
    let r = record_of(&run);
    assert_eq!(r.access.interface.as_deref(), Some("lo"));
    assert!(r.upload.is_some_and(|u| u.goodput_bps > 0.0));
    assert!(r.radio.is_none(), "no radio context for a wired access");
    // As a Wi-Fi access, the probe reads the radio context first, and says why there
    // is none (loopback is never wireless); the measurement is made all the same.
    let run = agent(
        &[
            "probe",
            "--responder",
            &responder.url(),
            "--interface",
            "lo",
            "--access",
            "wifi",
            "--max-duration",
            "1",
            "--direction",
            "down",
            "--json",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code(), 0, "stderr: {}", run.stderr());
    let r = record_of(&run);
    let radio = r.radio.expect("radio context of a wifi access");
    assert!(radio.wifi.is_none());
    assert!(
        radio
            .unavailable
            .as_deref()
            .is_some_and(|w| w.starts_with("nl80211")),
        "{radio:?}"
    );
    assert!(r.download.is_some_and(|d| d.goodput_bps > 0.0));
}

#[test]
fn usage_errors_exit_64_with_one_line_naming_the_culprit() {
    let cases: [(&[&str], &str); 6] = [
        (
            &[
                "probe",
                "--responder",
                "http://127.0.0.1:9",
                "--interface",
                "nosuchif",
            ],
            "nosuchif",
        ),
        (&["probe", "--responder", "not a url"], "--responder"),
        (&["probe", "--responder", "ftp://127.0.0.1:9"], "ftp"),
        (
            &[
                "probe",
                "--responder",
                "http://127.0.0.1:9",
                "--access",
                "5g",
            ],
            "5g",
        ),
        (
            &[
                "probe",
                "--responder",
                "http://127.0.0.1:9",
                "--streams",
                "0",
            ],
            "--streams",
        ),
        (
            &["probe", "--responder", "http://127.0.0.1:9", "--frobnicate"],
            "--frobnicate",
        ),
    ];
    for (args, culprit) in cases {
        let run = agent(args, Duration::from_secs(10));
        assert_eq!(run.code(), 64, "{args:?}: {}", run.stderr());
        let err = run.stderr();
        assert_eq!(
            err.trim().lines().count(),
            1,
            "one line for {args:?}: {err}"
        );
        assert!(
            err.contains(culprit),
            "{args:?} should name {culprit}: {err}"
        );
        assert!(run.stdout().is_empty(), "nothing started for {args:?}");
    }
}

#[test]
fn refused_connection_fails_fast_with_a_reason_and_a_record() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let url = format!("http://127.0.0.1:{port}");
    let run = agent(
        &["probe", "--responder", &url, "--json"],
        Duration::from_secs(20),
    );
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(run.elapsed < Duration::from_secs(15));
    assert_eq!(run.stderr().trim().lines().count(), 1, "{}", run.stderr());
    let r = record_of(&run);
    assert_eq!(r.status.outcome, Outcome::Failed);
    assert_eq!(r.status.reason, Some(FailureReason::Refused));
}

#[test]
fn silent_responder_never_hangs_the_probe() {
    // Accepts connections (the kernel does) but never answers.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let run = agent(
        &["probe", "--responder", &url, "--json"],
        Duration::from_secs(30),
    );
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(
        run.elapsed < Duration::from_secs(15),
        "took {:?}",
        run.elapsed
    );
    let r = record_of(&run);
    assert_eq!(
        r.status.reason,
        Some(FailureReason::Timeout),
        "{:?}",
        r.status
    );
    drop(listener);
}

#[test]
fn something_else_on_the_port_is_a_responder_error() {
    // An HTTP server that is not a sonde responder: a fixed 404.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut s in listener.incoming().flatten().take(3) {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let run = agent(
        &["probe", "--responder", &url, "--json"],
        Duration::from_secs(20),
    );
    assert_eq!(run.code(), 1);
    let r = record_of(&run);
    assert_eq!(
        r.status.reason,
        Some(FailureReason::ResponderError),
        "{:?}",
        r.status
    );
    assert!(r.status.message.unwrap_or_default().contains("404"));
}

#[test]
#[cfg_attr(
    not(sonde_root),
    ignore = "needs root: runs the agent in a network namespace"
)]
fn dns_failure_is_reported_as_dns() {
    assert!(is_root(), "built as root but not running as root");
    // In a fresh namespace with no route anywhere, no lookup can leave the machine.
    struct Netns(String);
    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.0])
                .status();
        }
    }
    let agent_bin = sonde_e2e::bin("sonde-agent");
    let ns = Netns(format!("sonde-dns-{}", std::process::id()));
    let ok = std::process::Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status();
    assert!(
        ok.is_ok_and(|s| s.success()),
        "ip netns add {} failed",
        ns.0
    );
    let mut cmd = std::process::Command::new("ip");
    cmd.args(["netns", "exec", &ns.0]).arg(agent_bin).args([
        "probe",
        "--responder",
        "http://responder.sonde.invalid:8080",
        "--json",
    ]);
    let run = sonde_e2e::run_bounded(cmd, Duration::from_secs(30));
    drop(ns);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(run.elapsed < Duration::from_secs(15));
    let r = record_of(&run);
    assert_eq!(r.status.reason, Some(FailureReason::Dns), "{:?}", r.status);
}

#[test]
fn busy_responder_is_reported_as_busy() {
    // One stream allowed, eight asked for: seven get 503, the test still measures.
    let responder = Responder::start(&["--max-streams", "1"]);
    let run = agent(
        &[
            "probe",
            "--responder",
            &responder.url(),
            "--direction",
            "down",
            "--max-duration",
            "1",
            "--json",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let r = record_of(&run);
    let d = r.download.expect("one stream carried data");
    assert_eq!(d.streams, 1);
    assert!(
        r.flags.contains(&sonde_proto::Flag::StreamsFailed),
        "{:?}",
        r.flags
    );
}

#[test]
fn check_config_accepts_the_example_and_lists_every_problem() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/agent.example.toml");
    let run = agent(
        &["check-config", "--config", example, "--no-interfaces"],
        Duration::from_secs(10),
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(run.stdout().contains("2 access(es)"), "{}", run.stdout());
    // On this box eth1 and wwan0 may not exist: each missing one is named.
    let dir = std::env::temp_dir().join(format!("sonde-agentconf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let bad = dir.join("agent.toml");
    let text = std::fs::read_to_string(example)
        .expect("example")
        .replace("interface = \"eth1\"", "interface = \"nosuchif0\"")
        .replace("kind = \"4g\"", "kind = \"5g\"")
        .replace("every = \"1h\"", "every = \"5s\"");
    std::fs::write(&bad, text).expect("write");
    let run = agent(
        &[
            "check-config",
            "--config",
            bad.to_str().expect("utf-8 path"),
        ],
        Duration::from_secs(10),
    );
    assert_eq!(run.code(), 64, "{}", run.stderr());
    let err = run.stderr();
    for field in ["access[0].interface", "access[1].kind", "access[1].every"] {
        assert!(err.contains(field), "{field} named in: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
