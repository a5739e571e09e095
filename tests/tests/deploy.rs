//! The container deployment as files: every Dockerfile is multi-stage and runs its
//! binary as a non-root user; the compose file validates with `docker-compose config`
//! (no engine runs here), and everything it builds or mounts exists in the repository.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

#[test]
fn each_binary_has_a_multi_stage_non_root_dockerfile() {
    for bin in ["agent", "collector", "responder"] {
        let path = repo().join(format!("deploy/docker/Dockerfile.{bin}"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let stages = text.lines().filter(|l| l.starts_with("FROM ")).count();
        assert_eq!(stages, 2, "{}: build and runtime stages", path.display());
        let user = text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("USER "))
            .unwrap_or_else(|| panic!("{}: no USER", path.display()));
        assert!(
            user != "root" && user != "0",
            "{}: runs as {user}",
            path.display()
        );
        assert!(
            text.contains(&format!("-p sonde-{bin}")),
            "{}",
            path.display()
        );
        assert!(
            text.contains("--locked"),
            "{}: reproducible build",
            path.display()
        );
    }
}

#[cfg_attr(
    not(sonde_compose),
    ignore = "needs docker-compose (apt-get install docker-compose; .ci/run does)"
)]
#[test]
fn the_compose_file_validates_and_what_it_uses_exists() {
    let dir = repo().join("deploy/docker");
    let out = Command::new("docker-compose")
        .args(["-f", "compose.yaml", "config"])
        .current_dir(&dir)
        .output()
        .expect("docker-compose");
    assert!(
        out.status.success(),
        "docker-compose config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resolved = String::from_utf8_lossy(&out.stdout).into_owned();
    for service in [
        "collector:",
        "responder:",
        "prometheus:",
        "victoriametrics:",
        "grafana:",
    ] {
        assert!(resolved.contains(service), "{service} missing:\n{resolved}");
    }
    // Every relative path the file names (build files, mounted files and folders).
    let text = std::fs::read_to_string(dir.join("compose.yaml")).expect("compose.yaml");
    for line in text.lines().map(str::trim) {
        let path = line
            .strip_prefix("- ")
            .and_then(|l| l.split(':').next())
            .filter(|p| p.starts_with("./") || p.starts_with("../"))
            .or_else(|| line.strip_prefix("dockerfile: ").map(|p| p.trim()));
        if let Some(p) = path {
            let full = if line.starts_with("dockerfile:") {
                repo().join(p)
            } else {
                dir.join(p)
            };
            assert!(
                full.exists(),
                "compose.yaml names {p}, which does not exist"
            );
        }
    }
    // A broken file is refused (the check means something).
    let bad = std::env::temp_dir().join(format!("sonde-bad-compose-{}.yaml", std::process::id()));
    std::fs::write(&bad, "services:\n  x:\n    ports: 12\n").expect("write");
    let out = Command::new("docker-compose")
        .arg("-f")
        .arg(&bad)
        .arg("config")
        .output()
        .expect("docker-compose");
    assert!(
        !out.status.success(),
        "an invalid compose file must be refused"
    );
    let _ = std::fs::remove_file(&bad);
}

#[cfg_attr(
    not(sonde_compose),
    ignore = "needs docker-compose (apt-get install docker-compose; .ci/run does)"
)]
#[test]
fn the_postgres_overlay_puts_the_store_in_postgres_and_needs_its_password() {
    let dir = repo().join("deploy/docker");
    let config = |password: Option<&str>| {
        let mut cmd = Command::new("docker-compose");
        cmd.args([
            "-f",
            "compose.yaml",
            "-f",
            "compose.postgres.yaml",
            "config",
        ])
        .current_dir(&dir)
        .env_remove("SONDE_PG_PASSWORD");
        if let Some(p) = password {
            cmd.env("SONDE_PG_PASSWORD", p);
        }
        cmd.output().expect("docker-compose")
    };
    let out = config(Some("s3cret"));
    let resolved = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "docker-compose config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(resolved.contains("postgres:15"), "{resolved}");
    assert!(
        resolved.contains("SONDE_STORE_URL: postgres://sonde:s3cret@postgres:5432/sonde"),
        "{resolved}"
    );
    let out = config(None);
    assert!(
        !out.status.success(),
        "without SONDE_PG_PASSWORD the overlay must be refused"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SONDE_PG_PASSWORD"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
