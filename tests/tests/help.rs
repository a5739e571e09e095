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
