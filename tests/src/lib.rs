//! Helpers for sonde's end-to-end tests: locating the workspace's binaries, starting a
//! real responder on loopback (port 0) and running the agent with a time bound.
//! Every process started here is killed when its handle drops.

pub mod attack;
pub mod browser;
pub mod disk;
pub mod fleet;
pub mod pipeline;
pub mod rpm;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use sonde_netlab::topology::{children_cpu_seconds, cpu_seconds, is_root};

/// A guard that makes the tests of one test binary which measure (a rate, a latency, a
/// loss ratio) run one at a time: a transfer beside them takes the CPU they measure with
/// (CI once saw iperf3 read 8 % low at 1 Gb/s while an unshaped loopback test ran).
pub fn measuring_alone() -> std::sync::MutexGuard<'static, ()> {
    static LINE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LINE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs a timing-sensitive check up to `attempts` times and returns as soon as one
/// attempt holds; panics with every attempt's reason when none does.
///
/// This machine is shared: the host steals 5–20 % of its CPU in bursts, and a burst
/// during one measurement moves a rate or a userspace-emulated delay by 10 % (CI read
/// iperf3 at 898 Mb/s, sonde at 790 Mb/s 7 s later, iperf3 at 900 Mb/s 7 s after that,
/// and the same code agreed within 2 % on the next run). A figure that is wrong by
/// design is wrong in every attempt and still fails; each attempt's outcome is printed.
pub fn in_one_of(attempts: u32, mut check: impl FnMut(u32) -> Result<(), String>) {
    let mut reasons = Vec::new();
    for attempt in 1..=attempts {
        match check(attempt) {
            Ok(()) => {
                println!("attempt {attempt} of {attempts} holds");
                return;
            }
            Err(reason) => {
                println!("attempt {attempt} of {attempts} does not hold: {reason}");
                reasons.push(format!("attempt {attempt}: {reason}"));
            }
        }
    }
    panic!("no attempt held:\n{}", reasons.join("\n"));
}

/// Path of a workspace binary, next to the test executable's target directory.
///
/// `cargo test` builds the binaries of the package under test only: build the
/// workspace first (the README's test command does).
pub fn bin(name: &str) -> PathBuf {
    sonde_netlab::find_bin(name).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Starts a workspace binary that logs JSON to stderr and waits (10 s at most) for
/// its log line whose message is `message`; returns the child and that line's fields.
/// The child's later logs are drained so it never blocks on a full pipe.
pub fn start_logged(name: &str, args: &[&str], message: &str) -> (Child, serde_json::Value) {
    start_logged_under(&[], name, args, message)
}

/// Like [`start_logged`], run under `prefix` (e.g. `prlimit --nofile=1024`).
pub fn start_logged_under(
    prefix: &[&str],
    name: &str,
    args: &[&str],
    message: &str,
) -> (Child, serde_json::Value) {
    let mut child = prefixed(prefix, bin(name))
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
    let stderr = child.stderr.take().expect("piped stderr");
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(10);
    // What it said that is not a log line (an error before its logs began), to
    // explain an early exit.
    let mut said = String::new();
    let fields = loop {
        assert!(Instant::now() < deadline, "{name} did not start in 10 s");
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("{name} exited before {message:?}:\n{said}"))
            .expect("read log");
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            said.push_str(&line);
            said.push('\n');
            continue;
        };
        if v["fields"]["message"] == message {
            break v["fields"].clone();
        }
    };
    // Later logs are drained; errors and panics are passed on, to explain a failure.
    let who = name.to_string();
    std::thread::spawn(move || {
        for line in lines.by_ref().map_while(Result::ok) {
            if line.contains("\"ERROR\"") || line.contains("panicked") {
                eprintln!("[{who}] {line}");
            }
        }
    });
    (child, fields)
}

/// A running `sonde-responder`.
#[derive(Debug)]
pub struct Responder {
    child: Child,
    /// HTTP address it listens on.
    pub http: SocketAddr,
    /// UDP echo port, when started with one.
    pub udp_port: Option<u16>,
    /// Network-quality (HTTPS) port, when started with `--nq`.
    pub nq_port: Option<u16>,
}

impl Responder {
    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts a responder on 127.0.0.1 port 0 (HTTP and UDP) with extra arguments.
    pub fn start(extra: &[&str]) -> Responder {
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--udp",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ];
        args.extend_from_slice(extra);
        Self::start_with(&args)
    }

    /// Starts a responder with exactly these arguments (they must include
    /// `--log-format json`), waiting for its "listening" line.
    pub fn start_with(args: &[&str]) -> Responder {
        let (child, fields) = start_logged("sonde-responder", args, "responder listening");
        let http: SocketAddr = fields["http"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("http address in the listening line");
        let port = |key: &str| {
            fields[key].as_str().and_then(|s| {
                s.trim_start_matches("Some(")
                    .trim_end_matches(')')
                    .parse()
                    .ok()
            })
        };
        let (udp_port, nq_port) = (port("udp"), port("nq"));
        Responder {
            child,
            http,
            udp_port,
            nq_port,
        }
    }

    /// Base URL of the responder.
    pub fn url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Sends SIGTERM and waits up to `patience` for the exit status.
    pub fn terminate(mut self, patience: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Result of a bounded command run.
#[derive(Debug)]
pub struct Run {
    /// What the process printed and its status.
    pub output: Output,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Run {
    /// Standard output as text.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    /// Standard error as text.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    /// Exit code (-1 when killed by a signal).
    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }
}

/// Runs a command, killing it after `timeout`.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> Run {
    let start = Instant::now();
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                return;
            }
        }
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    });
    let output = child.wait_with_output().expect("wait");
    let _ = watchdog.join();
    Run {
        output,
        elapsed: start.elapsed(),
    }
}

/// Runs `sonde-agent` with `args`, killed after `timeout`.
pub fn agent(args: &[&str], timeout: Duration) -> Run {
    let mut cmd = Command::new(bin("sonde-agent"));
    cmd.args(args);
    run_bounded(cmd, timeout)
}

/// `n` result records (JSON lines) from real download probes of `responder`.
pub fn probe_lines(responder: &Responder, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let url = responder.url();
            let args = [
                "probe",
                "--responder",
                &url,
                "--direction",
                "down",
                "--max-duration",
                "1",
                "--idle-probes",
                "3",
                "--json",
            ];
            let run = agent(&args, Duration::from_secs(60));
            assert_eq!(run.code(), 0, "{}", run.stderr());
            run.stdout().trim().to_string()
        })
        .collect()
}

/// `GET path` on `addr` (HTTP/1.1, connection closed after): status and body, chunked
/// bodies joined. `None` when nothing answers.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    http_get_with_headers(addr, path).map(|(code, _, body)| (code, body))
}

/// [`http_get`], with the response's headers (names lower-cased).
pub fn http_get_with_headers(
    addr: &str,
    path: &str,
) -> Option<(u16, std::collections::HashMap<String, String>, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let out = String::from_utf8_lossy(&out).into_owned();
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Some((code, headers, body.to_string()));
    }
    let mut rest = body;
    let mut joined = String::new();
    while let Some((len, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        joined.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    Some((code, headers, joined))
}

/// `program`, run through `prefix` (e.g. `ip netns exec NS`) when it is not empty.
pub fn prefixed(prefix: &[&str], program: impl AsRef<std::ffi::OsStr>) -> Command {
    match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// A stock `iperf3 -s` (Debian's), on a free loopback port, killed on drop.
#[derive(Debug)]
pub struct Iperf3Server {
    child: Child,
    /// Port it listens on.
    pub port: u16,
}

impl Iperf3Server {
    /// Starts `iperf3 -s -p PORT` (run through `prefix`, e.g. `ip netns exec NS`, when
    /// given) and waits until it listens (10 s at most).
    pub fn start(prefix: &[&str]) -> Iperf3Server {
        let port = pipeline::free_port();
        let mut cmd = prefixed(prefix, "iperf3");
        // -J: a client asking --get-server-output then gets the server's intervals as JSON.
        cmd.args(["-s", "-J", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("iperf3 -s (Debian package iperf3)");
        // Probing the port with a connection would start a test: ask ss instead.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = prefixed(prefix, "ss")
                .args(["-Hltn", &format!("sport = :{port}")])
                .output()
                .expect("ss");
            if !out.stdout.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "iperf3 -s not listening after 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Iperf3Server { child, port }
    }

    /// The URL the agent measures it by.
    pub fn url(&self, host: &str) -> String {
        format!("iperf3://{host}:{}", self.port)
    }

    /// Starts a client (`iperf3 -c … -t 120 -b 1M`) that holds the server, and waits
    /// until its test runs (control and data connections established, 10 s at most):
    /// from then on the server answers others `ACCESS_DENIED`. Killed on drop.
    pub fn hold(&self) -> Holder {
        let child = Command::new("iperf3")
            .args(["-c", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-t", "120", "-b", "1M"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iperf3 client");
        let holder = Holder(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new("ss")
                .args(["-Htn", "state", "established"])
                .arg(format!("( dport = :{} )", self.port))
                .output()
                .expect("ss");
            if String::from_utf8_lossy(&out.stdout).lines().count() >= 2 {
                // The server answers TEST_START a moment after the data connection.
                std::thread::sleep(Duration::from_millis(200));
                return holder;
            }
            assert!(
                Instant::now() < deadline,
                "the holding client has no test running after 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A client holding an iperf3 server, killed on drop.
#[derive(Debug)]
pub struct Holder(Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Iperf3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
