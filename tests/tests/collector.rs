//! `sonde-collector import` on a real SQLite file: results as `probe --json` prints
//! them are stored once, bad lines are reported by number and reason, and nothing valid
//! is lost because of them.

use sonde_e2e::{agent, bin, run_bounded, Responder};
use std::process::Command;
use std::time::Duration;

#[test]
fn import_stores_valid_lines_once_and_names_every_rejected_line() {
    let dir = std::env::temp_dir().join(format!("sonde-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    // Two real records from a real probe.
    let responder = Responder::start(&[]);
    let mut lines = Vec::new();
    for _ in 0..2 {
        let run = agent(
            &[
                "probe",
                "--responder",
                &responder.url(),
                "--direction",
                "down",
                "--max-duration",
                "1",
                "--idle-probes",
                "5",
                "--json",
            ],
            Duration::from_secs(60),
        );
        assert_eq!(run.code(), 0, "{}", run.stderr());
        lines.push(run.stdout().trim().to_string());
    }
    let good = lines.join("\n");
    let file = dir.join("results.jsonl");
    let content = format!(
        "{}\n{}\nnot json at all\n{{\"schema_version\": 2}}\n\n{}\n",
        lines[0],
        lines[1],
        "x".repeat(70_000)
    );
    std::fs::write(&file, content).expect("write");
    let db = dir.join("c.sqlite");
    let import = |path: &std::path::Path| {
        let mut cmd = Command::new(bin("sonde-collector"));
        cmd.args(["import", "--file"])
            .arg(path)
            .arg("--db")
            .arg(&db);
        run_bounded(cmd, Duration::from_secs(30))
    };
    let run = import(&file);
    assert_eq!(run.code(), 65, "some lines were rejected: {}", run.stderr());
    assert!(
        run.stdout()
            .contains("imported 2 new results, 0 already stored, 3 lines rejected"),
        "{}",
        run.stdout()
    );
    let err = run.stderr();
    for n in [3, 4, 6] {
        assert!(
            err.contains(&format!("results.jsonl:{n}: rejected")),
            "line {n}: {err}"
        );
    }
    assert!(err.contains("unsupported schema_version 2"), "{err}");
    assert!(err.contains("bound"), "oversize line named: {err}");
    // Importing the good lines again stores nothing twice.
    let again = dir.join("again.jsonl");
    std::fs::write(&again, good).expect("write");
    let run = import(&again);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(
        run.stdout()
            .contains("imported 0 new results, 2 already stored, 0 lines rejected"),
        "{}",
        run.stdout()
    );
    // A missing file is a clear error.
    let run = import(&dir.join("missing.jsonl"));
    assert_eq!(run.code(), 66);
    assert!(run.stderr().contains("missing.jsonl"));
    let _ = std::fs::remove_dir_all(&dir);
}
