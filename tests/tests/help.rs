//! `--help` teaches: every command of every binary says what it does, in its own words.

use sonde_e2e::{bin, run_bounded};
use std::process::Command;
use std::time::Duration;

fn help(binary: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(bin(binary));
    cmd.args(args).arg("--help");
    let run = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(run.code(), 0, "{binary} {args:?} --help: {}", run.stderr());
    run.stdout()
}

/// `(command, description)` of the "Commands:" section.
fn commands(text: &str) -> Vec<(String, String)> {
    text.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| {
            let l = l.trim();
            let (name, desc) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            (name.to_string(), desc.trim().to_string())
        })
        .filter(|(name, _)| name != "help")
        .collect()
}

#[test]
fn every_command_describes_itself() {
    for binary in ["sonde-agent", "sonde-collector"] {
        let cmds = commands(&help(binary, &[]));
        assert!(cmds.len() >= 3, "{binary}: {cmds:?}");
        let mut seen = std::collections::HashSet::new();
        for (name, desc) in &cmds {
            assert!(!desc.is_empty(), "{binary} {name} has no description");
            assert!(
                seen.insert(desc.clone()),
                "{binary} {name} repeats another's description"
            );
            // Each command's own page starts with its own description.
            let page = help(binary, &[name]);
            assert!(
                page.starts_with(desc.trim_end_matches('.')),
                "{binary} {name}: {page}"
            );
        }
    }
    // The agent's daemon and its config check are not mixed up (they were).
    assert!(help("sonde-agent", &["run"]).starts_with("Run the agent"));
    assert!(help("sonde-agent", &["check-config"]).starts_with("Check a configuration file"));
    assert!(help("sonde-responder", &[]).contains("Example:"));
}

#[test]
fn discover_prints_a_skeleton_that_check_config_accepts_on_this_box() {
    let mut cmd = Command::new(bin("sonde-agent"));
    cmd.arg("discover");
    let run = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let text = run.stdout();
    assert!(
        text.contains("#   lo "),
        "every interface is listed:\n{text}"
    );
    let path = std::env::temp_dir().join(format!("sonde-discover-{}.toml", std::process::id()));
    std::fs::write(&path, &text).expect("write");
    let mut check = Command::new(bin("sonde-agent"));
    check.args(["check-config", "--config"]).arg(&path);
    let checked = run_bounded(check, Duration::from_secs(30));
    assert_eq!(checked.code(), 0, "{}\n{text}", checked.stderr());
    let _ = std::fs::remove_file(&path);
}

/// Every `(binary, subcommand path)` whose help page the tests read.
fn pages() -> Vec<(&'static str, Vec<String>)> {
    let mut pages = Vec::new();
    for binary in ["sonde-agent", "sonde-collector", "sonde-netlab"] {
        pages.push((binary, Vec::new()));
        for (name, _) in commands(&help(binary, &[])) {
            let sub = commands(&help(binary, &[&name]));
            pages.push((binary, vec![name.clone()]));
            for (inner, _) in sub {
                pages.push((binary, vec![name.clone(), inner]));
            }
        }
    }
    pages.push(("sonde-responder", Vec::new()));
    pages
}

#[test]
fn examples_stand_one_per_line() {
    for (binary, path) in pages() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let page = help(binary, &args);
        for line in page.lines() {
            let calls = line.matches(&format!("{binary} ")).count();
            assert!(
                calls <= 1,
                "{binary} {path:?}: several commands run together on one line:\n{line}"
            );
        }
    }
    let serve = help("sonde-collector", &["serve"]);
    for endpoint in [
        "/healthz",
        "/metrics",
        "/api/v1/results",
        "/api/v1/agents",
        "/api/v1/reports",
    ] {
        assert!(serve.contains(endpoint), "serve --help omits {endpoint}");
    }
}

#[test]
fn every_binary_says_its_version() {
    let binaries = [
        "sonde-agent",
        "sonde-collector",
        "sonde-responder",
        "sonde-netlab",
        "sonde-bench",
        "sonde-ingest-bench",
        "sonde-metrics-bench",
        "sonde-report-bench",
        "sonde-log-bench",
    ];
    for binary in binaries {
        let mut cmd = Command::new(bin(binary));
        cmd.arg("--version");
        let run = run_bounded(cmd, Duration::from_secs(30));
        assert_eq!(run.code(), 0, "{binary} --version: {}", run.stderr());
        assert_eq!(
            run.stdout().trim(),
            format!("{binary} {}", env!("CARGO_PKG_VERSION")),
            "{binary}"
        );
    }
}
