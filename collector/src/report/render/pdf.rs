//! The HTML page printed to PDF by headless Chromium (Debian's `chromium`): the same
//! page, A4, no browser header or footer. The browser runs in a scratch directory of
//! its own and is stopped if it takes longer than [`PRINT_TIMEOUT`].

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The longest a print may take.
pub const PRINT_TIMEOUT: Duration = Duration::from_secs(120);

/// Browsers tried, in order; `SONDE_CHROMIUM` names another.
const BROWSERS: &[&str] = &["chromium", "chromium-browser", "google-chrome"];

/// The browser to print with.
fn browser() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("SONDE_CHROMIUM") {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for b in BROWSERS {
            let candidate = dir.join(b);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(
        "a PDF report needs Chromium to print it (Debian: apt-get install chromium; or set \
         SONDE_CHROMIUM); --format html gives the same page to print by hand"
            .into(),
    )
}

/// `html` printed to PDF.
pub fn print(html: &str) -> Result<Vec<u8>, String> {
    let chromium = browser()?;
    let dir = tempfile::tempdir().map_err(|e| format!("a scratch directory for Chromium: {e}"))?;
    let page = dir.path().join("report.html");
    let out = dir.path().join("report.pdf");
    std::fs::write(&page, html).map_err(|e| format!("{}: {e}", page.display()))?;
    let mut child = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-pdf-header-footer",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg(format!("--print-to-pdf={}", out.display()))
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", chromium.display()))?;
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > PRINT_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "Chromium did not print the report within {} s",
                    PRINT_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("waiting for Chromium: {e}")),
        }
    };
    let pdf = std::fs::read(&out).unwrap_or_default();
    if !status.success() || !pdf.starts_with(b"%PDF") {
        return Err(format!(
            "Chromium ({}) printed no PDF ({status})",
            chromium.display()
        ));
    }
    Ok(pdf)
}
