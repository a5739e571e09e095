//! A throwaway PostgreSQL server, for tests and benchmarks: a new cluster in a folder
//! of its own (Debian's `postgresql` package provides the programs), on a free
//! loopback port and a Unix socket in that folder, trusting local connections, stopped
//! when dropped. As root it runs as the `postgres` user (PostgreSQL refuses to run as
//! root).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running throwaway server.
#[derive(Debug)]
pub struct Server {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// The user the server runs as, when not this process's.
    runas: Option<&'static str>,
}

/// Where PostgreSQL's programs are: Debian's newest `/usr/lib/postgresql/N/bin`, or
/// `initdb` on the `PATH`. `None`: not installed.
pub fn programs() -> Option<PathBuf> {
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").is_file())
        .collect();
    debian.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
    });
    if let Some(b) = debian.pop() {
        return Some(b);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
}

fn is_root() -> bool {
    // The effective uid, as the kernel reports it for this process.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

impl Server {
    /// Creates and starts a cluster under `dir` (a new folder); a one-line reason when
    /// it cannot.
    pub fn start(dir: &Path) -> Result<Server, String> {
        let bin = programs().ok_or("PostgreSQL is not installed (Debian package postgresql)")?;
        let data = dir.join("pgdata");
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let runas = is_root().then_some("postgres");
        if let Some(user) = runas {
            let ok = Command::new("chown")
                .args([&format!("{user}:"), &dir.display().to_string()])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                return Err(format!("cannot give {} to {user}", dir.display()));
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let server = Server {
            bin,
            data,
            port,
            runas,
        };
        server.run(
            "initdb",
            &[
                "-D",
                &server.data.display().to_string(),
                "-U",
                "sonde",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
            ],
            dir,
        )?;
        server.run_server()?;
        Ok(server)
    }

    /// `pg_ctl start` on the cluster, waiting until it accepts connections.
    fn run_server(&self) -> Result<(), String> {
        let dir = self.data.parent().unwrap_or(&self.data);
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            dir.display()
        );
        let log = dir.join("postgres.log").display().to_string();
        let data = self.data.display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-o", &options, "-w", "start"],
            dir,
        )
    }

    /// Starts the server again after [`Server::kill`], on the same port and data (it
    /// recovers from its write-ahead log, as after a crash).
    pub fn restart(&self) -> Result<(), String> {
        self.run_server()
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match self.runas {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    fn run(&self, program: &str, args: &[&str], dir: &Path) -> Result<(), String> {
        let out = self
            .command(program)
            .args(args)
            .current_dir(dir)
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "{program} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db` (user `sonde`, no password: the cluster trusts local
    /// connections).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://sonde@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name`; its URL.
    pub fn create_database(&self, name: &str) -> Result<String, String> {
        let url = self.url("postgres");
        crate::run_outside_tokio(|| {
            let mut c = postgres::Client::connect(&url, postgres::NoTls)
                .map_err(|e| format!("connect: {e}"))?;
            c.batch_execute(&format!("CREATE DATABASE \"{name}\""))
                .map_err(|e| format!("create database {name}: {e}"))
        })?;
        Ok(self.url(name))
    }

    /// Stops the server at once (as a crash would: what was committed survives).
    pub fn kill(&self) {
        let data = self.data.display().to_string();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "stop"])
            .output();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
