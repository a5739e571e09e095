//! The README's examples run as written, with this build's binaries, free ports and a
//! real responder substituted, and leave nothing in the clone.

use sonde_e2e::pipeline::free_port;
use sonde_e2e::{bin, run_bounded, Responder};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The first ```sh block after the heading `title`.
fn block(title: &str) -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    let after = &readme[readme.find(title).unwrap_or_else(|| panic!("no {title}"))..];
    let start = after.find("```sh\n").expect("a sh block") + 6;
    let end = after[start..].find("```").expect("end of block");
    after[start..start + end].to_string()
}

/// Files in the clone that git does not know and does not ignore.
fn untracked() -> Vec<String> {
    let out = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=all"])
        .current_dir(root())
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.starts_with("??"))
            .map(str::to_string)
            .collect(),
        _ => Vec::new(), // not a git clone (a source tarball): nothing to compare
    }
}

#[test]
fn importing_results_works_as_written_and_leaves_nothing_in_the_clone() {
    let responder = Responder::start(&[]);
    let http = free_port();
    let bins = bin("sonde-agent")
        .parent()
        .expect("bin dir")
        .display()
        .to_string();
    let script = block("## Importing results")
        .replace("./target/release", &bins)
        .replace("http://127.0.0.1:8080", &responder.url())
        .replace("127.0.0.1:9090", &format!("127.0.0.1:{http}"));
    // The QUIC port too (the README's collector takes the default, maybe in use
    // here), and a shorter probe.
    let quic = free_port();
    let script = script
        .replace(
            "\\n' > \"$work/collector.toml\"",
            &format!("\\n[quic]\\nlisten = \"127.0.0.1:{quic}\"\\n' > \"$work/collector.toml\""),
        )
        .replace(" --json ", " --max-duration 2 --json ");
    assert!(script.contains(&quic.to_string()), "{script}");
    let script = format!("set -e\n{script}\nkill %1\nwait\nrm -rf \"$work\"\n");
    let before = untracked();
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &script]).current_dir(root());
    let run = run_bounded(cmd, Duration::from_secs(120));
    assert_eq!(run.code(), 0, "{script}\n{}{}", run.stdout(), run.stderr());
    let last = run.stdout().lines().last().unwrap_or_default().to_string();
    let page: serde_json::Value = serde_json::from_str(&last).unwrap_or_else(|e| {
        panic!("{e}: {}", run.stdout());
    });
    assert_eq!(page["results"].as_array().map(Vec::len), Some(1), "{page}");
    assert_eq!(untracked(), before, "the example left files in the clone");
}
