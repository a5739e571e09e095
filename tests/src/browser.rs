//! Headless Chromium for the tests that look at what sonde draws (report pages, test
//! pictures): a screenshot, a PDF print, and every console message the page caused.

use crate::run_bounded;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Where test artifacts are kept: target/test-artifacts.
pub fn artifacts() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&d).expect("artifacts dir");
    d
}

/// Loads `page` in headless Chromium: a screenshot into `shot`, a PDF print into
/// `pdf` when asked, and the page's console messages.
pub fn chromium(page: &Path, shot: &Path, pdf: Option<&Path>) -> Vec<String> {
    let profile = page.with_extension("profile");
    let url = format!("file://{}", page.display());
    let base = |cmd: &mut Command| {
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--enable-logging=stderr", "--v=0", "--log-level=0"]);
    };
    let mut cmd = Command::new("chromium");
    base(&mut cmd);
    cmd.arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1280,1800")
        .arg(&url);
    let run = run_bounded(cmd, Duration::from_secs(120));
    assert!(shot.exists(), "no screenshot: {}", run.stderr());
    let mut logs = run.stderr();
    if let Some(pdf) = pdf {
        let mut cmd = Command::new("chromium");
        base(&mut cmd);
        cmd.arg(format!("--print-to-pdf={}", pdf.display()))
            .arg("--no-pdf-header-footer")
            .arg(&url);
        let printed = run_bounded(cmd, Duration::from_secs(120));
        assert!(pdf.exists(), "no PDF: {}", printed.stderr());
        logs.push_str(&printed.stderr());
    }
    logs.lines()
        // Chromium logs every console message as `INFO:CONSOLE:LINE] "text", source: URL`
        // without its level. The pages have no script, so any message at all (a
        // failed load, a blocked resource, an error) is a finding.
        .filter(|l| l.contains(":CONSOLE") || l.contains("Failed to load resource"))
        .map(str::to_string)
        .collect()
}
