//! The Debian packages on this machine: built from the workspace, installed with
//! `dpkg -i`, each binary run as its systemd unit would run it (same user, same
//! capabilities, same paths and arguments, read from the installed unit), the agent
//! enrolled and its first result seen at the collector; then an upgrade to a higher
//! version that keeps edited configuration and state, and a purge that leaves nothing.
//! The units pass `systemd-analyze verify`, and the agent's exposure score stays at
//! 3.0 or below.
//!
//! Needs root (it installs packages and creates system users), help2man, dpkg-deb and
//! systemd-analyze: ignored otherwise, naming what is missing. It
//! refuses to run over sonde packages it did not install itself.

use sonde_e2e::pipeline::{free_port, scratch};
use sonde_e2e::{bin, http_get, run_bounded};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PACKAGES: [&str; 3] = ["sonde-agent", "sonde-responder", "sonde-collector"];
/// Versions this test builds; anything else installed is not its to purge.
const V1: &str = "0.0.1+installtest1";
const V2: &str = "0.0.1+installtest2";

fn sh(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let run = run_bounded(
        std::mem::replace(cmd, Command::new("true")),
        Duration::from_secs(600),
    );
    assert_eq!(run.code(), 0, "{shown}: {}{}", run.stdout(), run.stderr());
    run.stdout()
}

fn installed_version(pkg: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status} ${Version}", pkg])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.starts_with("install ok installed")
        .then(|| text.rsplit(' ').next().unwrap_or_default().to_string())
}

fn build(version: &str, out: &Path) -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let debug = bin("sonde-agent");
    let bins = debug.parent().expect("target dir");
    let mut cmd = Command::new("bash");
    cmd.arg(root.join("deploy/debian/build-debs.sh"))
        .args(["--no-build", "--version", version, "--out"])
        .arg(out)
        .arg("--binaries")
        .arg(bins)
        .current_dir(&root);
    sh(&mut cmd).lines().map(PathBuf::from).collect()
}

/// `Key=value` lines of an installed unit, in order.
fn unit(name: &str) -> Vec<(String, String)> {
    std::fs::read_to_string(format!("/lib/systemd/system/{name}.service"))
        .expect("installed unit")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn value<'a>(unit: &'a [(String, String)], key: &str) -> Option<&'a str> {
    unit.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// A command line of the unit, `${VAR}` taken from its EnvironmentFile, run as the
/// unit's user with the unit's ambient capabilities.
fn as_unit(unit: &[(String, String)], line: &str) -> Command {
    let mut env = std::collections::HashMap::new();
    if let Some(file) = value(unit, "EnvironmentFile") {
        for l in std::fs::read_to_string(file)
            .expect("environment file")
            .lines()
        {
            if let Some((k, v)) = l.split_once('=').filter(|_| !l.starts_with('#')) {
                env.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
    }
    // As systemd: `${VAR}` is one word, `$VAR` its value split on spaces (none when
    // unset or empty).
    let words: Vec<String> = line
        .split_whitespace()
        .flat_map(|w| {
            if let Some(name) = w.strip_prefix("${").and_then(|w| w.strip_suffix('}')) {
                vec![env.get(name).cloned().unwrap_or_default()]
            } else if let Some(name) = w.strip_prefix('$') {
                env.get(name)
                    .map(|v| v.split_whitespace().map(str::to_string).collect())
                    .unwrap_or_default()
            } else {
                vec![w.to_string()]
            }
        })
        .collect();
    let user = value(unit, "User").expect("User=");
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={user}"))
        .arg(format!("--regid={user}"))
        .arg("--init-groups");
    if let Some(caps) = value(unit, "AmbientCapabilities") {
        let caps: Vec<String> = caps
            .split_whitespace()
            .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_ascii_lowercase()))
            .collect();
        cmd.arg(format!("--inh-caps={}", caps.join(",")))
            .arg(format!("--ambient-caps={}", caps.join(",")));
    }
    cmd.arg("--").args(&words);
    cmd
}

struct Running(Vec<Child>);
impl Drop for Running {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start(unit_name: &str, log: &Path) -> Child {
    let u = unit(unit_name);
    if let Some(pre) = value(&u, "ExecStartPre") {
        let mut c = as_unit(&u, pre);
        let out = sh(&mut c);
        assert!(!out.is_empty() || pre.contains("check-config"), "{out}");
    }
    let mut cmd = as_unit(&u, value(&u, "ExecStart").expect("ExecStart="));
    cmd.stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log"));
    cmd.spawn().expect("start as the unit")
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen in {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn results(http: &str) -> usize {
    http_get(http, "/api/v1/results?limit=1000")
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .and_then(|v| v["results"].as_array().map(Vec::len))
        .unwrap_or(0)
}

fn sha(path: &str) -> String {
    sh(Command::new("sha256sum").arg(path))
}

#[cfg_attr(
    not(sonde_root),
    ignore = "needs root: installs packages and creates system users"
)]
#[cfg_attr(
    all(sonde_root, not(sonde_packaging)),
    ignore = "needs help2man, dpkg-deb and systemd-analyze (apt-get install help2man dpkg-dev systemd; .ci/run does)"
)]
#[test]
fn packages_install_run_upgrade_and_purge_cleanly() {
    for pkg in PACKAGES {
        if let Some(v) = installed_version(pkg) {
            assert!(
                v.contains("+installtest"),
                "{pkg} {v} is installed; this test installs and purges sonde packages, remove it first"
            );
        }
    }
    let _ = Command::new("dpkg").arg("--purge").args(PACKAGES).output();
    let dir = scratch("install");
    let v1 = build(V1, &dir.join("v1"));
    let v2 = build(V2, &dir.join("v2"));
    assert_eq!(v1.len(), 3, "{v1:?}");

    // The collector's host, then OPERATIONS.md's first agent command, as written.
    let agent_deb = v1
        .iter()
        .find(|p| p.to_string_lossy().contains("sonde-agent_"))
        .expect("agent deb");
    sh(Command::new("dpkg")
        .arg("-i")
        .args(v1.iter().filter(|p| *p != agent_deb)));
    sh(Command::new("dpkg").arg("-i").arg(agent_deb));
    for pkg in PACKAGES {
        assert_eq!(installed_version(pkg).as_deref(), Some(V1));
        assert!(Path::new(&format!("/usr/bin/{pkg}")).exists());
        assert!(Path::new(&format!("/usr/share/man/man1/{pkg}.1.gz")).exists());
    }
    for user in ["sonde", "sonde-collector", "sonde-responder"] {
        sh(Command::new("getent").args(["passwd", user]));
    }
    let meta = std::fs::metadata("/var/lib/sonde").expect("agent state dir");
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    // Running dpkg's configure step again changes nothing and fails nothing.
    sh(Command::new("dpkg-reconfigure").arg("sonde-agent"));

    // The units: verified, and the agent's exposure within bounds.
    for pkg in PACKAGES {
        let out = Command::new("systemd-analyze")
            .args(["verify", &format!("/lib/systemd/system/{pkg}.service")])
            .output()
            .expect("systemd-analyze");
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        let ours: Vec<&str> = text.lines().filter(|l| l.contains(pkg)).collect();
        assert!(out.status.success() && ours.is_empty(), "{pkg}: {text}");
        let score = sh(Command::new("systemd-analyze").args([
            "security",
            "--offline=true",
            &format!("/lib/systemd/system/{pkg}.service"),
        ]));
        let exposure: f64 = score
            .lines()
            .last()
            .and_then(|l| l.split("service:").nth(1))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{pkg}: no exposure score in {score}"));
        eprintln!("{pkg}: exposure {exposure}");
        if pkg == "sonde-agent" {
            assert!(exposure <= 3.0, "sonde-agent exposure {exposure} > 3.0");
        }
    }

    // The operator edits the configurations (free ports here), as on a real box.
    let (http, quic, tcp, udp) = (free_port(), free_port(), free_port(), free_port());
    let udpst = free_port();
    std::fs::write(
        "/etc/sonde/collector.toml",
        format!(
            "# edited by the operator\ndata_dir = \"/var/lib/sonde-collector\"\n[http]\nlisten = \"127.0.0.1:{http}\"\n\
             [quic]\nlisten = \"127.0.0.1:{quic}\"\nnames = [\"localhost\"]\n"
        ),
    )
    .expect("collector config");
    std::fs::write(
        "/etc/sonde/responder.conf",
        format!(
            "# edited by the operator\nSONDE_RESPONDER_LISTEN=127.0.0.1:{tcp}\nSONDE_RESPONDER_UDP=127.0.0.1:{udp}\n\
             SONDE_RESPONDER_MAX_STREAMS=16\nSONDE_RESPONDER_OPTIONS=--udpst 127.0.0.1:{udpst} --udpst-max-tests 2\n"
        ),
    )
    .expect("responder config");
    std::fs::write(
        "/etc/sonde/agent.toml",
        format!(
            "# edited by the operator\n[site]\nquartier = \"q-install\"\nbuilding = \"b-install\"\nlatitude = 48.8\nlongitude = 2.3\n\
             [collector]\naddress = \"localhost:{quic}\"\nstate_dir = \"/var/lib/sonde\"\nretry_max = \"2s\"\n\
             [busy]\nthreshold = \"off\"\ncpu_percent = 100\n\
             [[access]]\nname = \"loop\"\nkind = \"ftth\"\ninterface = \"lo\"\n\
             responders = [\"http://127.0.0.1:{tcp}\"]\nevery = \"10s\"\njitter = \"1s\"\nmax_duration = 1\n"
        ),
    )
    .expect("agent config");

    let http_addr = format!("127.0.0.1:{http}");
    let mut running = Running(vec![
        start("sonde-collector", &dir.join("collector.log")),
        start("sonde-responder", &dir.join("responder.log")),
    ]);
    wait_for("the collector's /healthz", Duration::from_secs(30), || {
        http_get(&http_addr, "/healthz").is_some_and(|(c, _)| c == 200)
    });
    // The unit passes the options of responder.conf: its UDPST server is up.
    wait_for(
        "the responder's UDPST port",
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(dir.join("responder.log"))
                .is_ok_and(|l| l.contains(&format!("udpst=127.0.0.1:{udpst}")))
        },
    );
    let collector = unit("sonde-collector");
    let token = sh(&mut as_unit(
        &collector,
        "/usr/bin/sonde-collector token create --building b-install --quartier q-install --config /etc/sonde/collector.toml",
    ));
    // OPERATIONS.md's second and third commands, as written.
    sh(Command::new("runuser").args([
        "-u",
        "sonde",
        "--",
        "sonde-agent",
        "enroll",
        "--collector",
        &format!("localhost:{quic}"),
        "--token",
        token.trim(),
        "--state-dir",
        "/var/lib/sonde",
    ]));
    let enable = Command::new("systemctl")
        .args(["enable", "--now", "sonde-agent"])
        .output()
        .expect("systemctl");
    assert!(
        Path::new("/etc/systemd/system/multi-user.target.wants/sonde-agent.service").exists(),
        "enabled: {}",
        String::from_utf8_lossy(&enable.stderr)
    );
    if Path::new("/run/systemd/system").exists() {
        // systemd runs here: it started the unit.
        assert!(
            enable.status.success(),
            "{}",
            String::from_utf8_lossy(&enable.stderr)
        );
    } else {
        // No systemd running (containers, CI): what the unit would run, as it would.
        running.0.push(start("sonde-agent", &dir.join("agent.log")));
    }
    wait_for(
        "the agent's first result at the collector",
        Duration::from_secs(90),
        || results(&http_addr) >= 1,
    );
    let key = std::fs::metadata("/var/lib/sonde/agent.key.pem").expect("agent key");
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        key.uid(),
        std::fs::metadata("/var/lib/sonde").expect("dir").uid()
    );
    drop(running);

    // Upgrade: edited configuration and state survive.
    let configs = [
        "/etc/sonde/agent.toml",
        "/etc/sonde/collector.toml",
        "/etc/sonde/responder.conf",
    ];
    let before: Vec<String> = configs.iter().map(|c| sha(c)).collect();
    let identity = sha("/var/lib/sonde/identity.json");
    let stored = {
        let running = Running(vec![start("sonde-collector", &dir.join("c2.log"))]);
        wait_for("healthz", Duration::from_secs(30), || {
            http_get(&http_addr, "/healthz").is_some_and(|(c, _)| c == 200)
        });
        let n = results(&http_addr);
        drop(running);
        n
    };
    sh(Command::new("dpkg").arg("-i").args(&v2));
    for pkg in PACKAGES {
        assert_eq!(installed_version(pkg).as_deref(), Some(V2));
    }
    let after: Vec<String> = configs.iter().map(|c| sha(c)).collect();
    assert_eq!(before, after, "edited configuration kept");
    assert_eq!(
        identity,
        sha("/var/lib/sonde/identity.json"),
        "agent identity kept"
    );
    let running = Running(vec![start("sonde-collector", &dir.join("c3.log"))]);
    wait_for("healthz after upgrade", Duration::from_secs(30), || {
        http_get(&http_addr, "/healthz").is_some_and(|(c, _)| c == 200)
    });
    assert!(
        results(&http_addr) >= stored,
        "results kept across the upgrade"
    );
    drop(running);

    // Purge: nothing left.
    sh(Command::new("dpkg").arg("--purge").args(PACKAGES));
    let left: Vec<String> = [
        "/etc/sonde",
        "/var/lib/sonde",
        "/var/lib/sonde-collector",
        "/var/lib/sonde-responder",
        "/usr/bin/sonde-agent",
        "/usr/bin/sonde-collector",
        "/usr/bin/sonde-responder",
        "/lib/systemd/system/sonde-agent.service",
        "/lib/systemd/system/sonde-collector.service",
        "/lib/systemd/system/sonde-responder.service",
        "/usr/share/doc/sonde-agent",
        "/usr/share/man/man1/sonde-agent.1.gz",
        "/etc/systemd/system/multi-user.target.wants/sonde-agent.service",
    ]
    .iter()
    .filter(|p| Path::new(p).exists())
    .map(|p| p.to_string())
    .collect();
    assert!(left.is_empty(), "left after purge: {left:?}");
    for user in ["sonde", "sonde-collector", "sonde-responder"] {
        let gone = Command::new("getent")
            .args(["passwd", user])
            .output()
            .expect("getent");
        assert!(!gone.status.success(), "user {user} left after purge");
    }
}
