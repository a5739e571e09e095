//! Network namespaces joined by veth: an agent side with one or more links, a link
//! namespace that shapes (tbf, and ifb for the upload) and optionally runs the userspace
//! emulator between two TUN devices per link, a responder side, and optionally a
//! collector side. Addresses live inside the namespaces only. Everything is torn down
//! on drop (hence on panic), and by [`clean_stale`] after a crash.

use crate::emulate::PathSpec;
use crate::profile::LinkSpec;
use anyhow::{bail, Context as _};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Prefix of every namespace netlab creates.
pub const PREFIX: &str = "snl";

/// What the topology needs that the machine may lack.
#[derive(Debug, thiserror::Error)]
pub enum Missing {
    /// Not root.
    #[error("netlab needs root (network namespaces, tc); run it as root")]
    NotRoot,
    /// A program is not installed: (program, Debian package).
    #[error("`{0}` is not installed (Debian package {1})")]
    Program(&'static str, &'static str),
    /// A kernel feature is unavailable.
    #[error("missing kernel feature: {0}")]
    Kernel(String),
}

/// Checks root and the `ip` and `tc` programs.
pub fn preflight() -> Result<(), Missing> {
    if !is_root() {
        return Err(Missing::NotRoot);
    }
    for prog in ["ip", "tc"] {
        let ok = Command::new(prog)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !ok {
            return Err(Missing::Program(
                if prog == "ip" { "ip" } else { "tc" },
                "iproute2",
            ));
        }
    }
    Ok(())
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// CPU seconds (user + system) a process has used so far, from /proc.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    proc_stat_times(&stat, 13)
}

/// CPU seconds (user + system) used by this process's waited-for children, from /proc.
pub fn children_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    proc_stat_times(&stat, 15)
}

/// Sums two consecutive tick fields of /proc/PID/stat starting at 0-based field
/// `first` (13 = utime, 15 = cutime).
fn proc_stat_times(stat: &str, first: usize) -> Option<f64> {
    // The command name is in parentheses and may contain spaces: split after it.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 2 (the state), so field k is at index k - 2.
    let a: f64 = fields.get(first - 2)?.parse().ok()?;
    let b: f64 = fields.get(first - 1)?.parse().ok()?;
    // Ticks of USER_HZ, 100 on Linux.
    Some((a + b) / 100.0)
}

/// What to build.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Agent-side links; the first carries the agent's default route.
    pub links: Vec<LinkSpec>,
    /// Also build a collector side.
    pub collector: bool,
}

/// Path of a workspace binary: next to the running executable, or one directory up
/// (test executables live in `target/<profile>/deps`).
pub fn find_bin(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the running executable")?;
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(name))
        .find(|p| p.exists())
        .with_context(|| {
            format!(
                "{name} not found near {}: run `cargo build --workspace` first",
                exe.display()
            )
        })
}

/// A built topology. Dropping it tears everything down.
#[derive(Debug)]
pub struct Topology {
    /// Unique run id (also the namespaces' prefix).
    pub id: String,
    /// Agent namespace.
    pub agent_ns: String,
    /// Link namespace (shaping, emulator).
    pub link_ns: String,
    /// Responder namespace.
    pub responder_ns: String,
    /// Collector namespace, when asked for.
    pub collector_ns: Option<String>,
    /// Agent-side interface of each link, in the agent namespace.
    pub agent_ifaces: Vec<String>,
    /// The links as built.
    pub links: Vec<LinkSpec>,
    children: Vec<Child>,
    emulators: Vec<u32>,
    torn_down: bool,
}

/// The port of the responder's network-quality (RPM) server, HTTPS.
pub const NQ_PORT: u16 = 8443;

/// The responder's address inside the topology.
pub const RESPONDER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 2);
/// The collector's address inside the topology.
pub const COLLECTOR_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 3, 2);

/// The agent's address on link `i`.
pub fn agent_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 10 + i as u8, 2)
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{:?} failed: {}",
            cmd,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn ip(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    run(Command::new("ip").arg("-n").arg(ns).args(args))
}

fn tc(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    run(Command::new("tc").arg("-n").arg(ns).args(args))
        .map_err(|e| anyhow::anyhow!(Missing::Kernel(format!("tc in {ns}: {e}"))))
}

fn sysctl(ns: &str, key: &str, value: &str) -> anyhow::Result<()> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    run(Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c"])
        .arg(format!("echo {value} > {path}")))
}

/// tbf with a burst of 2 ms (at least 64 KiB) and a queue of 50 ms (at least 256 KiB).
fn tbf_args(rate_bps: u64) -> Vec<String> {
    let bytes_per_s = rate_bps / 8;
    let burst = (bytes_per_s / 500).max(64 * 1024);
    let limit = (bytes_per_s / 20).max(256 * 1024);
    vec![
        "rate".into(),
        format!("{rate_bps}bit"),
        "burst".into(),
        burst.to_string(),
        "limit".into(),
        limit.to_string(),
    ]
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Topology {
    /// Builds the topology. On any error, what was built is torn down.
    pub fn create(spec: &Spec) -> anyhow::Result<Topology> {
        preflight()?;
        if spec.links.is_empty() || spec.links.len() > 4 {
            bail!("a topology has 1 to 4 agent-side links");
        }
        let id = format!(
            "{PREFIX}{}x{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut topo = Topology {
            agent_ns: format!("{id}-a"),
            link_ns: format!("{id}-l"),
            responder_ns: format!("{id}-r"),
            collector_ns: spec.collector.then(|| format!("{id}-c")),
            agent_ifaces: (0..spec.links.len()).map(|i| format!("lab{i}")).collect(),
            links: spec.links.clone(),
            id,
            children: Vec::new(),
            emulators: Vec::new(),
            torn_down: false,
        };
        match topo.build(spec) {
            Ok(()) => Ok(topo),
            Err(e) => {
                topo.teardown();
                Err(e)
            }
        }
    }

    fn namespaces(&self) -> Vec<String> {
        let mut v = vec![
            self.agent_ns.clone(),
            self.link_ns.clone(),
            self.responder_ns.clone(),
        ];
        v.extend(self.collector_ns.clone());
        v
    }

    fn build(&mut self, spec: &Spec) -> anyhow::Result<()> {
        for ns in self.namespaces() {
            run(Command::new("ip").args(["netns", "add", &ns]))?;
            ip(&ns, &["link", "set", "lo", "up"])?;
        }
        let l = self.link_ns.clone();
        sysctl(&l, "net.ipv4.ip_forward", "1")?;
        sysctl(&l, "net.ipv4.conf.all.rp_filter", "0")?;
        sysctl(&l, "net.ipv4.conf.default.rp_filter", "0")?;
        // Sides: (namespace, subnet octet, link-side interface name).
        let mut sides = vec![(self.responder_ns.clone(), 2u8, "r0")];
        if let Some(c) = &self.collector_ns {
            sides.push((c.clone(), 3u8, "c0"));
        }
        for (ns, octet, name) in &sides {
            ip(
                &l,
                &[
                    "link", "add", name, "type", "veth", "peer", "name", "lab", "netns", ns,
                ],
            )?;
            ip(
                &l,
                &["addr", "add", &format!("10.77.{octet}.1/24"), "dev", name],
            )?;
            ip(&l, &["link", "set", name, "up"])?;
            ip(
                ns,
                &["addr", "add", &format!("10.77.{octet}.2/24"), "dev", "lab"],
            )?;
            ip(ns, &["link", "set", "lab", "up"])?;
            ip(
                ns,
                &[
                    "route",
                    "add",
                    "default",
                    "via",
                    &format!("10.77.{octet}.1"),
                ],
            )?;
        }
        for (i, link) in spec.links.iter().enumerate() {
            self.build_link(i, link)?;
        }
        Ok(())
    }

    fn build_link(&mut self, i: usize, link: &LinkSpec) -> anyhow::Result<()> {
        let (a, l) = (self.agent_ns.clone(), self.link_ns.clone());
        let agent_if = format!("lab{i}");
        let link_if = format!("a{i}");
        let net = 10 + i;
        ip(
            &l,
            &[
                "link", "add", &link_if, "type", "veth", "peer", "name", &agent_if, "netns", &a,
            ],
        )?;
        ip(
            &l,
            &["addr", "add", &format!("10.77.{net}.1/24"), "dev", &link_if],
        )?;
        ip(&l, &["link", "set", &link_if, "up"])?;
        ip(
            &a,
            &[
                "addr",
                "add",
                &format!("10.77.{net}.2/24"),
                "dev",
                &agent_if,
            ],
        )?;
        ip(&a, &["link", "set", &agent_if, "up"])?;
        let metric = (100 + i).to_string();
        ip(
            &a,
            &[
                "route",
                "add",
                "default",
                "via",
                &format!("10.77.{net}.1"),
                "dev",
                &agent_if,
                "metric",
                &metric,
            ],
        )?;

        if let Some(rate) = link.down_bps {
            let mut args = vec!["qdisc", "add", "dev", &link_if, "root", "tbf"];
            let tbf = tbf_args(rate);
            args.extend(tbf.iter().map(String::as_str));
            tc(&l, &args)?;
        }
        if let Some(rate) = link.up_bps {
            // Upload is shaped on the link's ingress, redirected through an ifb device.
            let ifb = format!("ifb{i}");
            ip(&l, &["link", "add", &ifb, "type", "ifb"])
                .map_err(|e| Missing::Kernel(format!("ifb devices: {e}")))?;
            ip(&l, &["link", "set", &ifb, "up"])?;
            tc(
                &l,
                &[
                    "qdisc", "add", "dev", &link_if, "handle", "ffff:", "ingress",
                ],
            )?;
            tc(
                &l,
                &[
                    "filter", "add", "dev", &link_if, "parent", "ffff:", "protocol", "all", "u32",
                    "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev",
                    &ifb,
                ],
            )?;
            let mut args = vec!["qdisc", "add", "dev", &ifb, "root", "tbf"];
            let tbf = tbf_args(rate);
            args.extend(tbf.iter().map(String::as_str));
            tc(&l, &args)?;
        }
        if link.needs_emulator() {
            self.start_emulator(i, link)?;
        }
        Ok(())
    }

    /// Routes link `i` through two TUN devices and starts the emulator between them.
    fn start_emulator(&mut self, i: usize, link: &LinkSpec) -> anyhow::Result<()> {
        if !Path::new("/dev/net/tun").exists() {
            return Err(Missing::Kernel("/dev/net/tun (TUN devices)".into()).into());
        }
        let (ta, tr) = self.tun_devices(i)?;
        self.route_through(i, &ta, &tr)?;
        if link.offload {
            // GRO on the veths that feed the TUN devices: TCP arrives there as GSO
            // super-packets, which the emulator moves whole (one read and one write
            // for up to 64 KB) and counts segment by segment.
            for dev in [format!("a{i}"), "r0".to_string()] {
                run(Command::new("ip")
                    .args(["netns", "exec", &self.link_ns, "ethtool", "-K", &dev])
                    .args(["gro", "on"]))
                .map_err(|e| {
                    if Command::new("ethtool").arg("--version").output().is_err() {
                        anyhow::anyhow!(Missing::Program("ethtool", "ethtool"))
                    } else {
                        e.context(format!("turning GRO on for {dev}"))
                    }
                })?;
            }
        }
        self.spawn_emulator(i, link, &ta, &tr)
    }

    /// Link `i`'s two TUN devices in the link namespace: toward the agent, toward the
    /// responder.
    fn tun_devices(&self, i: usize) -> anyhow::Result<(String, String)> {
        let l = self.link_ns.clone();
        let (ta, tr) = (format!("ta{i}"), format!("tr{i}"));
        for (dev, addr) in [
            (&ta, format!("10.77.{}.1/32", 200 + i)),
            (&tr, format!("10.77.{}.2/32", 200 + i)),
        ] {
            ip(&l, &["tuntap", "add", "dev", dev, "mode", "tun"])
                .map_err(|e| Missing::Kernel(format!("TUN devices: {e}")))?;
            ip(&l, &["link", "set", dev, "mtu", "1500", "up"])?;
            ip(&l, &["addr", "add", &addr, "dev", dev])?;
            sysctl(&l, &format!("net.ipv4.conf.{dev}.rp_filter"), "0")?;
            // TUN devices need a queue long enough for the bursts of fast links.
            ip(&l, &["link", "set", dev, "txqueuelen", "10000"])?;
        }
        Ok((ta, tr))
    }

    /// Policy routing in the link namespace: what arrives from agent link `i` goes out
    /// through `ta`, what goes to it comes back through `tr`.
    fn route_through(&self, i: usize, ta: &str, tr: &str) -> anyhow::Result<()> {
        let l = self.link_ns.clone();
        let (up_table, down_table) = ((100 + i).to_string(), (200 + i).to_string());
        let agent_net = format!("10.77.{}.0/24", 10 + i);
        ip(
            &l,
            &["rule", "add", "iif", &format!("a{i}"), "lookup", &up_table],
        )?;
        ip(
            &l,
            &["route", "add", "default", "dev", ta, "table", &up_table],
        )?;
        ip(
            &l,
            &[
                "rule",
                "add",
                "iif",
                "r0",
                "to",
                &agent_net,
                "lookup",
                &down_table,
            ],
        )?;
        ip(
            &l,
            &["route", "add", "default", "dev", tr, "table", &down_table],
        )?;
        if self.collector_ns.is_some() {
            ip(
                &l,
                &[
                    "rule",
                    "add",
                    "iif",
                    "c0",
                    "to",
                    &agent_net,
                    "lookup",
                    &down_table,
                ],
            )?;
        }

        Ok(())
    }

    /// Starts the emulator process between link `i`'s TUN devices, with `link`'s spec.
    fn spawn_emulator(
        &mut self,
        i: usize,
        link: &LinkSpec,
        ta: &str,
        tr: &str,
    ) -> anyhow::Result<()> {
        let l = self.link_ns.clone();
        let spec_file = std::env::temp_dir().join(format!("{}-emu{i}.json", self.id));
        let spec = serde_json::json!({
            "up": path_json(&link.up),
            "down": path_json(&link.down),
            "offload": link.offload,
        });
        std::fs::write(&spec_file, spec.to_string()).context("writing the emulator spec")?;
        let exe = find_bin("sonde-netlab")?;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &l])
            .arg(exe)
            .args([
                "emulate",
                "--agent-tun",
                ta,
                "--responder-tun",
                tr,
                "--spec",
            ])
            .arg(&spec_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the link emulator")?;
        let ready = wait_for_line(&mut child, "ready", Duration::from_secs(10));
        let _ = std::fs::remove_file(&spec_file);
        self.emulators.push(child.id());
        self.children.push(child);
        ready.context("the link emulator did not start")
    }

    /// CPU seconds the link emulators have used so far (0 without one).
    pub fn emulator_cpu_seconds(&self) -> f64 {
        self.emulators.iter().filter_map(|p| cpu_seconds(*p)).sum()
    }

    /// A command run inside namespace `ns`.
    pub fn command_in(&self, ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(program);
        cmd
    }

    /// Starts a long-running process in `ns`; it is killed at teardown.
    pub fn spawn_in(&mut self, ns: &str, cmd: Command) -> anyhow::Result<u32> {
        let mut wrapped = self.command_in(ns, cmd.get_program());
        wrapped.args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => wrapped.env(k, v),
                None => wrapped.env_remove(k),
            };
        }
        let child = wrapped
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {:?} in {ns}", cmd.get_program()))?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    /// Starts `sonde-responder` (HTTP 8080, UDP echo 8081, UDPST 24601, the
    /// network-quality server on HTTPS 8443 with a self-signed certificate written to
    /// [`Topology::nq_ca`]) in the responder namespace and waits until it answers.
    /// Returns its base URL.
    pub fn start_responder(&mut self) -> anyhow::Result<String> {
        let mut cmd = Command::new(find_bin("sonde-responder")?);
        cmd.args(["--listen", "0.0.0.0:8080", "--udp", "0.0.0.0:8081"])
            .args(["--udpst", "0.0.0.0:24601"])
            .args(["--nq", &format!("{RESPONDER_IP}:{NQ_PORT}")])
            .arg("--nq-self-signed-out")
            .arg(self.nq_ca())
            .env("RUST_LOG", "warn");
        let ns = self.responder_ns.clone();
        self.spawn_in(&ns, cmd)?;
        self.wait_port(&ns, 8080)?;
        self.wait_port(&ns, NQ_PORT)?;
        Ok(format!("http://{RESPONDER_IP}:8080"))
    }

    /// Where the responder's network-quality certificate is written (PEM), for
    /// clients to trust.
    pub fn nq_ca(&self) -> PathBuf {
        std::env::temp_dir().join(format!("{}-nq.pem", self.id))
    }

    /// The responder's network-quality configuration URL.
    pub fn nq_url(&self) -> String {
        format!("https://{RESPONDER_IP}:{NQ_PORT}/.well-known/nq")
    }

    /// Starts `iperf3 -s -J` on port 5201 in the responder namespace, when installed
    /// (JSON, so that a client's `--get-server-output` gets the receiver's intervals
    /// of an upload as JSON).
    pub fn start_iperf3(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new("iperf3");
        cmd.args(["-s", "-J", "-p", "5201"]);
        let ns = self.responder_ns.clone();
        self.spawn_in(&ns, cmd)?;
        self.wait_port(&ns, 5201)
    }

    fn wait_port(&self, ns: &str, port: u16) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let out = self
                .command_in(ns, "ss")
                .args(["-Hltn", &format!("sport = :{port}")])
                .output();
            if let Ok(o) = out {
                if !o.stdout.is_empty() {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("nothing listens on port {port} in {ns} after 10 s")
    }

    /// Kills every process started here, then deletes the namespaces. Idempotent.
    pub fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.nq_ca());
        for ns in self.namespaces() {
            delete_namespace(&ns);
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn path_json(p: &PathSpec) -> serde_json::Value {
    serde_json::json!({
        "delay_ns": p.delay.as_nanos() as u64,
        "jitter_ns": p.jitter.as_nanos() as u64,
        "loss": p.loss,
        "queue_bytes": p.queue_bytes,
        "rate_bps": p.rate_bps,
        "overhead_bytes": p.overhead_bytes,
        "trace_ms": p.trace.as_ref().map(|(t, _)| t.offsets_ms.clone()),
        "trace_scale": p.trace.as_ref().map(|(_, s)| *s),
    })
}

/// Reads a [`PathSpec`] written by the topology for the emulator.
pub fn path_from_json(v: &serde_json::Value) -> anyhow::Result<PathSpec> {
    let ns = |k: &str| v[k].as_u64().with_context(|| format!("emulator spec: {k}"));
    let trace = match v["trace_ms"].as_array() {
        None => None,
        Some(list) => {
            let offsets_ms = list
                .iter()
                .map(|x| x.as_u64().context("trace offset"))
                .collect::<anyhow::Result<Vec<u64>>>()?;
            Some((
                crate::emulate::Trace { offsets_ms },
                v["trace_scale"].as_f64().unwrap_or(1.0),
            ))
        }
    };
    Ok(PathSpec {
        delay: Duration::from_nanos(ns("delay_ns")?),
        jitter: Duration::from_nanos(ns("jitter_ns")?),
        loss: v["loss"].as_f64().unwrap_or(0.0),
        trace,
        rate_bps: v["rate_bps"].as_u64(),
        overhead_bytes: v["overhead_bytes"].as_u64().unwrap_or(14),
        queue_bytes: ns("queue_bytes")? as usize,
    })
}

fn wait_for_line(child: &mut Child, want: &str, timeout: Duration) -> anyhow::Result<()> {
    use std::io::{BufRead, BufReader};
    let stdout = child.stdout.take().context("emulator stdout")?;
    let wanted = want.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let mut sent = false;
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if !sent && line.trim() == wanted {
                let _ = tx.send(());
                sent = true;
            }
        }
    });
    rx.recv_timeout(timeout)
        .map_err(|_| anyhow::anyhow!("no {want:?} line within {timeout:?}"))
}

/// Kills what still runs in `ns`, then deletes it.
pub fn delete_namespace(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
    let _ = Command::new("ip")
        .args(["netns", "del", ns])
        .stderr(Stdio::null())
        .status();
}

/// Namespaces of netlab that exist now.
pub fn list_namespaces() -> Vec<String> {
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .filter(|n| n.starts_with(PREFIX))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Deletes netlab namespaces whose creating process is gone (after a crash or
/// SIGKILL). Returns the names deleted.
pub fn clean_stale() -> Vec<String> {
    let mut removed = Vec::new();
    for ns in list_namespaces() {
        let pid: Option<u32> = ns[PREFIX.len()..]
            .split('x')
            .next()
            .and_then(|p| p.parse().ok());
        let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            delete_namespace(&ns);
            removed.push(ns);
        }
    }
    removed
}

/// A namespace of its own whose loopback (MTU 1500) is shaped with tbf: traffic to
/// 127.0.0.1 inside it meets a rate ceiling, as on a link, instead of the CPU's limit.
/// Deleted, with whatever runs in it, on drop.
#[derive(Debug)]
pub struct ShapedLoopback {
    /// The namespace's name.
    pub ns: String,
}

impl ShapedLoopback {
    /// Creates the namespace and shapes its loopback to `rate_bps`.
    pub fn create(rate_bps: u64) -> anyhow::Result<ShapedLoopback> {
        preflight()?;
        let lo = ShapedLoopback {
            ns: format!(
                "{PREFIX}{}x{}lo",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ),
        };
        run(Command::new("ip").args(["netns", "add", &lo.ns]))?;
        ip(&lo.ns, &["link", "set", "lo", "mtu", "1500", "up"])?;
        let mut args = vec!["qdisc", "add", "dev", "lo", "root", "tbf"];
        let tbf = tbf_args(rate_bps);
        args.extend(tbf.iter().map(String::as_str));
        tc(&lo.ns, &args)?;
        Ok(lo)
    }

    /// The command prefix that runs a program inside: `ip netns exec NS`.
    pub fn exec(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.ns]
    }
}

impl Drop for ShapedLoopback {
    fn drop(&mut self) {
        delete_namespace(&self.ns);
    }
}
