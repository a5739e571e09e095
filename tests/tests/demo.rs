//! The README's first command, `bash deploy/local-demo.sh`, as a new user runs it
//! (with this build's binaries and free ports): within 3 minutes the collector's
//! `/api/v1/results` holds results from the local agent, enrolled by itself and running
//! the plan its collector pushed; Ctrl-C
//! (SIGINT to the process group, as a terminal sends it) stops every part.

use sonde_e2e::pipeline::{free_port, scratch};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn get(port: u16, path: &str) -> Option<serde_json::Value> {
    let (_, body) = sonde_e2e::http_get(&format!("127.0.0.1:{port}"), path)?;
    serde_json::from_str(&body).ok()
}

#[test]
fn the_local_deployment_delivers_results_within_three_minutes_and_stops_on_ctrl_c() {
    let dir = scratch("demo");
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let bin_dir = sonde_e2e::bin("sonde-agent")
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let http = free_port();
    let mut demo = Command::new("bash")
        .arg("deploy/local-demo.sh")
        .current_dir(root)
        .env("SONDE_DEMO_BUILD", "none")
        .env("SONDE_DEMO_BIN", &bin_dir)
        .env("SONDE_DEMO_DIR", &dir)
        .env("SONDE_DEMO_HTTP_PORT", http.to_string())
        .env("SONDE_DEMO_QUIC_PORT", free_port().to_string())
        .env("SONDE_DEMO_RESPONDER_PORT", free_port().to_string())
        .env("SONDE_DEMO_UDP_PORT", free_port().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("start the demo");
    let pgid = demo.id();
    let kill_group = |sig: &str| {
        let _ = Command::new("kill")
            .args([sig, "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status();
    };
    let started = Instant::now();
    let mut first = None;
    while started.elapsed() < Duration::from_secs(180) {
        if let Ok(Some(status)) = demo.try_wait() {
            kill_group("-KILL");
            let out = demo.wait_with_output().expect("output");
            panic!(
                "the demo exited early ({status}):\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if let Some(page) = get(http, "/api/v1/results?limit=10") {
            if let Some(r) = page["results"].as_array().and_then(|a| a.first()) {
                first = Some(r.clone());
                break;
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let Some(first) = first else {
        kill_group("-KILL");
        panic!(
            "no result within 3 minutes; agent log:\n{}",
            std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default()
        );
    };
    eprintln!("first result after {:?}", started.elapsed());
    assert_eq!(first["site"]["building"], "local");
    assert_eq!(first["access"]["name"], "loopback");
    assert_eq!(first["status"]["outcome"], "ok", "{first}");
    let agents = get(http, "/api/v1/agents").expect("agents");
    assert_eq!(agents["agents"][0]["id"], first["agent"]["id"]);
    // The access measured is the plan's, pushed by the collector (agent.toml only
    // holds an hourly bootstrap access).
    assert_eq!(
        agents["agents"][0]["health"]["plan"]["version"], 1,
        "{agents}"
    );
    assert!(agents["agents"][0]["enrolled_at"].is_string());

    kill_group("-INT");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Ok(Some(s)) = demo.try_wait() {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    kill_group("-KILL");
    let out = demo.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(status.is_some(), "Ctrl-C did not stop the demo in 20 s");
    assert!(stdout.contains("sonde is running"), "{stdout}");
    assert!(stdout.contains(&format!("http://127.0.0.1:{http}/api/v1/results")));
    assert!(stdout.contains("stopped."), "{stdout}");
    // Every part is gone: nothing answers any more and no process of the group is left.
    assert!(
        get(http, "/healthz").is_none(),
        "the collector still answers"
    );
    let left = Command::new("pgrep")
        .args(["-g", &pgid.to_string()])
        .output()
        .expect("pgrep");
    assert!(
        left.stdout.is_empty(),
        "processes left: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The demo with `var` set to a port this test holds: its one-line error.
fn demo_with_taken(var: &str, port: u16) -> (i32, String) {
    let dir = scratch("demo-port");
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let bin_dir = sonde_e2e::bin("sonde-agent")
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let mut cmd = Command::new("bash");
    cmd.arg("deploy/local-demo.sh")
        .current_dir(root)
        .env("SONDE_DEMO_BUILD", "none")
        .env("SONDE_DEMO_BIN", &bin_dir)
        .env("SONDE_DEMO_DIR", &dir);
    for v in [
        "SONDE_DEMO_HTTP_PORT",
        "SONDE_DEMO_QUIC_PORT",
        "SONDE_DEMO_RESPONDER_PORT",
        "SONDE_DEMO_UDP_PORT",
    ] {
        cmd.env(v, free_port().to_string());
    }
    cmd.env(var, port.to_string());
    let run = sonde_e2e::run_bounded(cmd, Duration::from_secs(30));
    let _ = std::fs::remove_dir_all(&dir);
    (run.code(), run.stderr())
}

#[test]
fn a_port_in_use_is_named_with_the_variable_that_moves_it() {
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("tcp");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let (tcp_port, udp_port) = (
        tcp.local_addr().expect("addr").port(),
        udp.local_addr().expect("addr").port(),
    );
    for (var, port, what) in [
        ("SONDE_DEMO_HTTP_PORT", tcp_port, "collector's HTTP API"),
        ("SONDE_DEMO_RESPONDER_PORT", tcp_port, "responder's HTTP"),
        ("SONDE_DEMO_QUIC_PORT", udp_port, "collector's QUIC ingest"),
        ("SONDE_DEMO_UDP_PORT", udp_port, "responder's UDP echo"),
    ] {
        let (code, err) = demo_with_taken(var, port);
        assert_eq!(code, 1, "{var}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{var}: {err}");
        assert!(err.contains(&format!("port {port}/")), "{var}: {err}");
        assert!(err.contains(what), "{var}: {err}");
        assert!(err.contains(&format!("{var}=")), "{var}: {err}");
    }
}
