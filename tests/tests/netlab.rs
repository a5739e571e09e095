//! End-to-end tests on emulated links (netlab): accuracy on a shaped link, latency on
//! a delayed one, a gigabit 40 ms link's round trip and rate, loss within binomial
//! bounds, interface binding with two links, and
//! teardown of everything on drop, panic, timeout and SIGINT. They need root and are
//! compiled as ignored, with the reason, when not built as root.

use sonde_e2e::bin;
use sonde_netlab::emulate::PathSpec;
use sonde_netlab::topology::{list_namespaces, Spec, Topology};
use sonde_netlab::LinkSpec;
use sonde_proto::ResultRecord;
use std::process::Command;
use std::time::{Duration, Instant};

fn topo(links: Vec<LinkSpec>) -> (Topology, String) {
    let mut t = Topology::create(&Spec {
        links,
        collector: false,
    })
    .expect("topology");
    let url = t.start_responder().expect("responder");
    (t, url)
}

fn probe(t: &Topology, args: &[&str]) -> ResultRecord {
    let mut cmd = t.command_in(&t.agent_ns, bin("sonde-agent"));
    cmd.arg("probe").args(args).arg("--json");
    let run = sonde_e2e::run_bounded(cmd, Duration::from_secs(90));
    assert_eq!(run.code(), 0, "probe {args:?}: {}", run.stderr());
    ResultRecord::from_json(run.stdout().trim().as_bytes()).expect("one record")
}

/// The tests of this file that move traffic run one at a time.
use sonde_e2e::measuring_alone as alone;

fn ours(id: &str) -> Vec<String> {
    list_namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&format!("{id}-")))
        .collect()
}

#[test]
#[cfg_attr(not(sonde_root), ignore = "needs root: builds network namespaces")]
fn shaped_100_mbit_link_is_measured_within_10_percent_both_ways() {
    let _alone = alone();
    let link = LinkSpec::shaped(100_000_000, 100_000_000);
    let ceiling = link.ceiling_bps(true).expect("shaped");
    let (t, url) = topo(vec![link]);
    let r = probe(&t, &["--responder", &url, "--max-duration", "6"]);
    for th in [r.download.expect("download"), r.upload.expect("upload")] {
        let err = th.goodput_bps / ceiling - 1.0;
        assert!(
            err.abs() < 0.10,
            "{:?} {} vs ceiling {ceiling}: {err:+.3}",
            th.direction,
            th.goodput_bps
        );
    }
}

#[test]
#[cfg_attr(not(sonde_root), ignore = "needs root: builds network namespaces")]
fn forty_ms_profile_has_forty_ms_idle_latency() {
    let _alone = alone();
    let link = sonde_netlab::builtin("4g-150", None).expect("profile");
    let (t, url) = topo(vec![link]);
    // The delay is the userspace emulator's, which a burst of CPU steal lengthens.
    sonde_e2e::in_one_of(3, |_| {
        let r = probe(
            &t,
            &[
                "--responder",
                &url,
                "--direction",
                "down",
                "--max-duration",
                "2",
            ],
        );
        let idle = r.idle_latency.expect("idle latency");
        let median = idle.median_s.expect("echoes came back");
        assert_eq!(idle.received, idle.sent);
        within_40_ms(median)
    });
}

/// Whether an idle median is the profiles' 40 ms round trip, ± 3 ms.
fn within_40_ms(median: f64) -> Result<(), String> {
    if (median - 0.040).abs() <= 0.003 {
        Ok(())
    } else {
        Err(format!("idle median {median} s"))
    }
}

#[test]
#[cfg_attr(
    not(all(sonde_root, sonde_ethtool)),
    ignore = "needs root (network namespaces) and ethtool (Debian package ethtool)"
)]
fn gigabit_forty_ms_profile_keeps_its_round_trip_and_its_rate() {
    let _alone = alone();
    // Rate, queue and delay all in the emulator, which moves GSO super-packets: the
    // round trip stays 40 ms, and no second carries more than the rate allows.
    let link = sonde_netlab::builtin("ftth-1g-40ms", None).expect("profile");
    let (down_ceiling, up_ceiling) = (
        link.ceiling_bps(true).expect("rate"),
        link.ceiling_bps(false).expect("rate"),
    );
    assert!((down_ceiling - 1e9 * 1448.0 / 1514.0).abs() < 1.0);
    let (t, url) = topo(vec![link]);
    // A gigabit through the userspace emulator takes most of a core: a burst of CPU
    // steal lengthens its delay and cuts its rate.
    sonde_e2e::in_one_of(3, |_| {
        let r = probe(&t, &["--responder", &url, "--max-duration", "4"]);
        let idle = r.idle_latency.expect("idle latency");
        within_40_ms(idle.median_s.expect("echoes came back"))?;
        // An upper bound is the emulator's rate at work; the lower one only says that
        // super-packets cross it both ways (a broken offload carries nothing). The
        // emulator is a process: stalled by CPU steal, it delivers late packets
        // together and a second may carry a little more than the rate. A sonde bias
        // would be above it on every attempt; the kernel-shaped links keep a hard bound.
        for (th, ceiling) in [
            (r.download.expect("download"), down_ceiling),
            (r.upload.expect("upload"), up_ceiling),
        ] {
            if th.goodput_bps > ceiling * 1.01 {
                return Err(format!(
                    "{:?} {} above the ceiling {ceiling}",
                    th.direction, th.goodput_bps
                ));
            }
            if th.goodput_bps <= ceiling * 0.5 {
                return Err(format!(
                    "{:?} {} under half the ceiling {ceiling}",
                    th.direction, th.goodput_bps
                ));
            }
        }
        Ok(())
    });
}

#[test]
#[cfg_attr(not(sonde_root), ignore = "needs root: builds network namespaces")]
fn two_percent_loss_is_seen_within_binomial_bounds() {
    let _alone = alone();
    // 2 % loss towards the agent only, so a round trip is lost with p = 0.02.
    let link = LinkSpec {
        down: PathSpec {
            loss: 0.02,
            ..PathSpec::default()
        },
        ..LinkSpec::shaped(100_000_000, 100_000_000)
    };
    let (t, url) = topo(vec![link]);
    let n = 2000u32;
    let r = probe(
        &t,
        &[
            "--responder",
            &url,
            "--direction",
            "down",
            "--max-duration",
            "1",
            "--idle-probes",
            &n.to_string(),
            "--idle-interval",
            "2",
        ],
    );
    let idle = r.idle_latency.expect("idle latency");
    assert_eq!(idle.sent, n);
    let lost = f64::from(idle.sent - idle.received);
    let (mean, sd) = (f64::from(n) * 0.02, (f64::from(n) * 0.02 * 0.98).sqrt());
    assert!(
        (lost - mean).abs() <= 4.0 * sd,
        "lost {lost} of {n}: outside {mean} ± 4×{sd:.1}"
    );
    assert!((idle.loss_ratio - lost / f64::from(n)).abs() < 1e-9);
}

#[test]
#[cfg_attr(not(sonde_root), ignore = "needs root: builds network namespaces")]
fn interface_binding_takes_the_right_link() {
    // lab0: 100 Mb/s (default route), lab1: 20 Mb/s.
    let fast = LinkSpec::shaped(100_000_000, 100_000_000);
    let slow = LinkSpec::shaped(20_000_000, 20_000_000);
    let (fast_c, slow_c) = (
        fast.ceiling_bps(true).unwrap_or(0.0),
        slow.ceiling_bps(true).unwrap_or(0.0),
    );
    let (t, url) = topo(vec![fast, slow]);
    for (iface, ceiling) in [("lab1", slow_c), ("lab0", fast_c)] {
        let r = probe(
            &t,
            &[
                "--responder",
                &url,
                "--interface",
                iface,
                "--direction",
                "down",
                "--max-duration",
                "4",
            ],
        );
        let d = r.download.expect("download");
        let err = d.goodput_bps / ceiling - 1.0;
        assert!(
            err.abs() < 0.10,
            "--interface {iface}: {} vs {ceiling} ({err:+.3})",
            d.goodput_bps
        );
        assert_eq!(r.access.interface.as_deref(), Some(iface));
    }
}

#[test]
#[cfg_attr(not(sonde_root), ignore = "needs root: builds network namespaces")]
fn topology_is_removed_on_drop_and_on_panic() {
    let link = sonde_netlab::builtin("wifi-300", None).expect("profile");
    let (t, _) = topo(vec![link.clone()]);
    let id = t.id.clone();
    assert_eq!(ours(&id).len(), 3, "agent, link and responder namespaces");
    drop(t);
    assert!(ours(&id).is_empty(), "left behind: {:?}", ours(&id));

    let id = std::panic::catch_unwind(|| {
        let (t, _) = topo(vec![link]);
        let id = t.id.clone();
        std::panic::panic_any(id);
    })
    .expect_err("the closure panics")
    .downcast::<String>()
    .expect("panic payload is the id");
    assert!(
        ours(&id).is_empty(),
        "left behind after panic: {:?}",
        ours(&id)
    );
}

fn netlab_namespaces_of(pid: u32) -> Vec<String> {
    list_namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&format!("snl{pid}x")))
        .collect()
}

#[test]
#[cfg_attr(not(sonde_root), ignore = "needs root: builds network namespaces")]
fn netlab_run_tears_down_on_sigint_and_on_timeout() {
    // SIGINT while the command runs.
    let mut child = Command::new(bin("sonde-netlab"))
        .args(["run", "--profile", "4g-150", "--", "sleep", "30"])
        .spawn()
        .expect("spawn sonde-netlab");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    while netlab_namespaces_of(pid).len() < 3 {
        assert!(Instant::now() < deadline, "topology never appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
    let status = child.wait().expect("wait");
    assert!(
        !status.success(),
        "interrupted run reports failure: {status:?}"
    );
    assert!(
        netlab_namespaces_of(pid).is_empty(),
        "left: {:?}",
        netlab_namespaces_of(pid)
    );

    // A command that hangs is killed at the timeout, and the topology still goes.
    let started = Instant::now();
    let mut child = Command::new(bin("sonde-netlab"))
        .args([
            "run",
            "--profile",
            "ftth-1g",
            "--timeout",
            "2",
            "--",
            "sleep",
            "60",
        ])
        .spawn()
        .expect("spawn sonde-netlab");
    let pid = child.id();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "the timeout did not fire"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(124), "{status:?}");
    assert!(
        netlab_namespaces_of(pid).is_empty(),
        "left: {:?}",
        netlab_namespaces_of(pid)
    );
}

#[test]
#[cfg_attr(not(sonde_root), ignore = "needs root: builds network namespaces")]
fn netlab_run_passes_the_responder_and_the_exit_code() {
    let mut cmd = Command::new(bin("sonde-netlab"));
    cmd.args([
        "run",
        "--profile",
        "ftth-1g",
        "--",
        "sh",
        "-c",
        "test -n \"$SONDE_RESPONDER\" && exit 7",
    ]);
    let run = sonde_e2e::run_bounded(cmd, Duration::from_secs(60));
    assert_eq!(run.code(), 7, "{}", run.stderr());
}

#[test]
#[cfg_attr(not(sonde_root), ignore = "needs root: builds network namespaces")]
fn the_example_of_netlab_run_help_works_as_written() {
    let mut help = Command::new(bin("sonde-netlab"));
    help.args(["run", "--help"]);
    let help = sonde_e2e::run_bounded(help, Duration::from_secs(20)).stdout();
    let example = help
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("sonde-netlab run "))
        .unwrap_or_else(|| panic!("no example in:\n{help}"));
    // As a user would paste it in a shell (sonde-netlab named by its path: netlab
    // finds the sonde-agent built beside it itself).
    let example = example.replacen(
        "sonde-netlab",
        &bin("sonde-netlab").display().to_string(),
        1,
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &format!("{example} --max-duration 3")]);
    let run = sonde_e2e::run_bounded(cmd, Duration::from_secs(120));
    assert_eq!(run.code(), 0, "{example}\n{}{}", run.stdout(), run.stderr());
    assert!(run.stdout().contains("download"), "{}", run.stdout());
}

#[test]
#[cfg_attr(not(sonde_root), ignore = "needs root to drop to an unprivileged user")]
fn netlab_without_root_says_so_and_exits_2() {
    // setpriv (util-linux) runs netlab as nobody.
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin("sonde-netlab"))
        .args(["run", "--profile", "ftth-1g", "--", "true"]);
    let run = sonde_e2e::run_bounded(cmd, Duration::from_secs(20));
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert!(run.stderr().contains("root"), "{}", run.stderr());
    assert_eq!(run.stderr().trim().lines().count(), 1, "{}", run.stderr());
}

#[test]
fn netlab_usage_errors_exit_64_naming_the_culprit() {
    let dir = std::env::temp_dir().join(format!("netlab-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bad_trace = dir.join("bad.trace");
    std::fs::write(&bad_trace, "1\n2\nthree\n4\n").expect("write");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "run".into(),
                "--profile".into(),
                "5g-mmwave".into(),
                "--".into(),
                "true".into(),
            ],
            "5g-mmwave",
        ),
        (
            vec![
                "run".into(),
                "--profile".into(),
                "lte-trace".into(),
                "--trace".into(),
                bad_trace.display().to_string(),
                "--".into(),
                "true".into(),
            ],
            "line 3",
        ),
        (
            vec!["accuracy".into(), "--profile".into(), "nope".into()],
            "nope",
        ),
        (
            vec!["run".into(), "--profile".into(), "ftth-1g".into()],
            "CMD",
        ),
    ];
    for (args, culprit) in cases {
        let mut cmd = Command::new(bin("sonde-netlab"));
        cmd.args(&args);
        let run = sonde_e2e::run_bounded(cmd, Duration::from_secs(20));
        assert_eq!(run.code(), 64, "{args:?}: {}", run.stderr());
        assert!(
            run.stderr().contains(culprit),
            "{args:?} should name {culprit}: {}",
            run.stderr()
        );
        assert_eq!(run.stderr().trim().lines().count(), 1, "{}", run.stderr());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[cfg_attr(not(sonde_root), ignore = "needs root: builds network namespaces")]
fn a_saturated_line_defers_the_test_then_skips_it_as_busy_and_coverage_shows_it() {
    use sonde_netlab::topology::RESPONDER_IP;
    let mut t = Topology::create(&Spec {
        links: vec![LinkSpec::shaped(20_000_000, 20_000_000)],
        collector: false,
    })
    .expect("topology");
    // The collector runs beside the agent, on the agent namespace's loopback: the
    // access interface carries only the test and the household's flow.
    const COLLECTOR_IP: &str = "127.0.0.1";
    let url = t.start_responder().expect("responder");
    t.start_iperf3().expect("iperf3 -s");
    let dir = sonde_e2e::pipeline::scratch("netlab-busy");
    let config = dir.join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"state\"\n[http]\nlisten = \"{COLLECTOR_IP}:9090\"\n\
             [quic]\nlisten = \"{COLLECTOR_IP}:4433\"\nnames = [\"{COLLECTOR_IP}\"]\n"
        ),
    )
    .expect("collector config");
    let mut serve = Command::new(bin("sonde-collector"));
    serve.arg("serve").arg("--config").arg(&config);
    let ans = t.agent_ns.clone();
    let up = Command::new("ip")
        .args(["-n", &ans, "link", "set", "lo", "up"])
        .status()
        .expect("ip");
    assert!(up.success(), "loopback up in {ans}");
    t.spawn_in(&ans, serve).expect("collector");
    let collector = |args: &[&str]| {
        let mut cmd = Command::new(bin("sonde-collector"));
        cmd.args(args).arg("--config").arg(&config);
        sonde_e2e::run_bounded(cmd, Duration::from_secs(60))
    };
    let token = collector(&[
        "token",
        "create",
        "--building",
        "b-busy",
        "--quartier",
        "q-busy",
    ]);
    assert_eq!(token.code(), 0, "{}", token.stderr());
    let state = dir.join("agent");
    // The collector may still be starting: enrol until it answers (30 s at most).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut enroll = t.command_in(&t.agent_ns, bin("sonde-agent"));
        enroll
            .args([
                "enroll",
                "--collector",
                &format!("{COLLECTOR_IP}:4433"),
                "--token",
            ])
            .arg(token.stdout().trim())
            .arg("--state-dir")
            .arg(&state);
        let run = sonde_e2e::run_bounded(enroll, Duration::from_secs(30));
        if run.code() == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "enroll: {}", run.stderr());
        std::thread::sleep(Duration::from_millis(500));
    }
    // The household saturates the line before the first test is due.
    let mut flow = Command::new("iperf3");
    flow.args(["-c", &RESPONDER_IP.to_string(), "-p", "5201", "-t", "300"]);
    let flow_pid = t.spawn_in(&t.agent_ns.clone(), flow).expect("second flow");
    let agent_config = dir.join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            "[site]\nquartier = \"q-busy\"\nbuilding = \"b-busy\"\nlatitude = 48.8\nlongitude = 2.3\n\
             [collector]\naddress = \"{COLLECTOR_IP}:4433\"\nstate_dir = \"{}\"\nretry_max = \"2s\"\n\
             [busy]\nrecheck = \"1s\"\nchecks = 2\ncpu_percent = 100\n\
             [[access]]\nname = \"fibre\"\nkind = \"ftth\"\ninterface = \"{}\"\n\
             responders = [\"{url}\"]\nevery = \"10s\"\njitter = \"1s\"\nmax_duration = 3\n",
            state.display(),
            t.agent_ifaces[0]
        ),
    )
    .expect("agent config");
    let mut run = Command::new(bin("sonde-agent"));
    run.arg("run").arg("--config").arg(&agent_config);
    t.spawn_in(&t.agent_ns.clone(), run).expect("agent");
    let status = |f: &dyn Fn(&serde_json::Value) -> bool, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let s = sonde_e2e::pipeline::status(&state);
            if f(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "{what}: {s}");
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    let s = status(
        &|s| s["failures_total"]["busy"].as_u64().unwrap_or(0) >= 1,
        "a test skipped as busy",
    );
    assert_eq!(
        s["results_total"], 1,
        "the skip is the only result so far: {s}"
    );
    // The household stops: the next test runs.
    let _ = Command::new("kill").arg(flow_pid.to_string()).status();
    status(
        &|s| s["results_total"].as_u64().unwrap_or(0) >= 2 && s["spool_depth"] == 0,
        "a test after the line went quiet, uploaded",
    );
    // Coverage: the skipped test was scheduled, not run.
    let out = dir.join("report.json");
    let now = chrono::Utc::now();
    let report = collector(&[
        "report",
        "--from",
        &(now - chrono::Duration::hours(1)).to_rfc3339(),
        "--to",
        &(now + chrono::Duration::minutes(1)).to_rfc3339(),
        "--format",
        "json",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(report.code(), 0, "{}", report.stderr());
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).expect("report")).expect("JSON");
    let c = &r["accesses"][0]["coverage"];
    let (scheduled, run) = (
        c["scheduled"].as_u64().unwrap_or(0),
        c["run"].as_u64().unwrap_or(0),
    );
    assert!(run >= 1 && scheduled > run, "coverage {c}");
}
