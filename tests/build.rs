//! Detects whether the tests are built as root, so tests that need root (network
//! namespaces, SO_BINDTODEVICE) are reported as ignored, with the reason, elsewhere;
//! and whether Prometheus' `prometheus` and `promtool` are installed (Debian package
//! `prometheus`, which `.ci/run` installs), likewise; and Chromium (`chromium`), for
//! rendering the HTML report; docker-compose, for validating the compose file; and
//! dbus-daemon, for the ModemManager look-alike; iperf3, the reference client and the
//! stock server of the iperf3 engine; and ethtool, which turns GRO on for netlab's
//! gigabit profiles with a round-trip time; Cloudflare's mach (cf-mach), the
//! reference RPM client; VictoriaMetrics (`victoria-metrics`), the long-term store
//! Prometheus writes to; and PostgreSQL (`postgresql`), the shared store.

/// Where `.ci/run` installs cf-mach's binary.
const MACH_DIR: &str = "/var/cache/sonde-tools/cf-mach/bin";

fn main() {
    println!("cargo::rustc-check-cfg=cfg(sonde_root)");
    println!("cargo::rustc-check-cfg=cfg(sonde_prometheus)");
    println!("cargo::rustc-check-cfg=cfg(sonde_chromium)");
    println!("cargo::rustc-check-cfg=cfg(sonde_compose)");
    println!("cargo::rustc-check-cfg=cfg(sonde_dbus)");
    println!("cargo::rustc-check-cfg=cfg(sonde_packaging)");
    println!("cargo::rustc-check-cfg=cfg(sonde_iperf3)");
    println!("cargo::rustc-check-cfg=cfg(sonde_ethtool)");
    println!("cargo::rustc-check-cfg=cfg(sonde_udpst)");
    println!("cargo::rustc-check-cfg=cfg(sonde_udpst_auth)");
    println!("cargo::rustc-check-cfg=cfg(sonde_mach)");
    println!("cargo::rustc-check-cfg=cfg(sonde_victoria)");
    println!("cargo::rustc-check-cfg=cfg(sonde_postgres)");
    // Cloudflare's mach (cf-mach), the reference RPM client: built by .ci/run into
    // /var/cache/sonde-tools, or named by SONDE_MACH.
    println!("cargo::rerun-if-env-changed=SONDE_MACH");
    println!("cargo::rerun-if-changed={MACH_DIR}");
    let mach = std::env::var_os("SONDE_MACH")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(MACH_DIR).join("mach"));
    if mach.is_file() {
        println!("cargo::rustc-cfg=sonde_mach");
    }
    println!("cargo::rerun-if-env-changed=PATH");
    // A tool installed or removed later changes its directory: detect again then.
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path).filter(|d| d.is_dir()) {
            println!("cargo::rerun-if-changed={}", dir.display());
        }
    }
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
            .unwrap_or(false)
    };
    if on_path("prometheus") && on_path("promtool") {
        println!("cargo::rustc-cfg=sonde_prometheus");
    }
    // PostgreSQL's programs: Debian keeps them off the PATH, in /usr/lib/postgresql.
    println!("cargo::rerun-if-changed=/usr/lib/postgresql");
    let debian_pg = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.path().join("bin/initdb").is_file());
    if debian_pg || on_path("initdb") {
        println!("cargo::rustc-cfg=sonde_postgres");
    }
    if on_path("victoria-metrics") {
        println!("cargo::rustc-cfg=sonde_victoria");
    }
    if on_path("chromium") {
        println!("cargo::rustc-cfg=sonde_chromium");
    }
    if on_path("docker-compose") {
        println!("cargo::rustc-cfg=sonde_compose");
    }
    if on_path("iperf3") {
        println!("cargo::rustc-cfg=sonde_iperf3");
    }
    if on_path("ethtool") || std::path::Path::new("/usr/sbin/ethtool").is_file() {
        println!("cargo::rustc-cfg=sonde_ethtool");
    }
    if on_path("dbus-daemon") {
        println!("cargo::rustc-cfg=sonde_dbus");
    }
    if on_path("help2man") && on_path("dpkg-deb") && on_path("systemd-analyze") {
        println!("cargo::rustc-cfg=sonde_packaging");
    }
    if on_path("cmake") && (on_path("cc") || on_path("gcc")) {
        match build_obudpst() {
            Ok(bin) => {
                println!("cargo::rustc-cfg=sonde_udpst");
                println!("cargo::rustc-env=SONDE_UDPST_BIN={}", bin.display());
                // Authentication is compiled in only with OpenSSL's headers (libssl-dev).
                let cache = bin.with_file_name("CMakeCache.txt");
                if std::fs::read_to_string(cache)
                    .is_ok_and(|c| c.contains("_OPENSSL_FOUND:INTERNAL=1"))
                {
                    println!("cargo::rustc-cfg=sonde_udpst_auth");
                }
            }
            Err(e) => println!("cargo::warning=OB-UDPST not built, its tests are ignored: {e}"),
        }
    }
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=USER");
    println!("cargo::rerun-if-env-changed=SUDO_USER");
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false);
    if root {
        println!("cargo::rustc-cfg=sonde_root");
    }
}

/// Builds OB-UDPST, the Broadband Forum's UDPST client and server, from
/// `../shared/peers/obudpst` (beside the workspace; read-only in CI) into this build's
/// output folder: the reference the UDPST engine is tested against.
fn build_obudpst() -> Result<std::path::PathBuf, String> {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?;
    let source = std::path::Path::new(&manifest).join("../../shared/peers/obudpst");
    if !source.join("CMakeLists.txt").is_file() {
        return Err(format!("no sources at {}", source.display()));
    }
    println!(
        "cargo::rerun-if-changed={}",
        source.join("udpst.c").display()
    );
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").map_err(|e| e.to_string())?)
        .join("obudpst");
    let run = |cmd: &mut std::process::Command| -> Result<(), String> {
        let o = cmd.output().map_err(|e| e.to_string())?;
        if o.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("failed")
                .to_string())
        }
    };
    run(std::process::Command::new("cmake")
        .arg("-S")
        .arg(&source)
        .arg("-B")
        .arg(&out))?;
    run(std::process::Command::new("make")
        .arg("-C")
        .arg(&out)
        .arg("-j2"))?;
    let bin = out.join("udpst");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err("make gave no udpst binary".into())
    }
}
