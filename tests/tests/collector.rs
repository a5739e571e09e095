//! `sonde-collector import` on a real SQLite file: results as `probe --json` prints
//! them are stored once, bad lines are reported by number and reason, and nothing valid
//! is lost because of them.

use sonde_e2e::{bin, probe_lines, run_bounded, start_logged, Responder};
use std::process::Command;
use std::time::Duration;

#[test]
fn import_stores_valid_lines_once_and_names_every_rejected_line() {
    let dir = std::env::temp_dir().join(format!("sonde-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    // Two real records from a real probe.
    let responder = Responder::start(&[]);
    let lines = probe_lines(&responder, 2);
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

fn get(addr: &str, path: &str) -> (u16, serde_json::Value) {
    let (code, body) = sonde_e2e::http_get(addr, path).expect("the API answers");
    let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
    (code, json)
}

#[test]
fn imported_results_without_an_agent_keep_their_own_site_and_access_kind() {
    // Three probes by hand, no agent id: two FTTH in paris-13/b1, one 4G in paris-19/b2.
    // They were one access `unenrolled/""`, reported as 4G in paris-19 with 3 results.
    let dir = std::env::temp_dir().join(format!("sonde-import-sites-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("collector.toml");
    std::fs::write(&config, "data_dir = \"state\"\n").expect("config");
    let responder = Responder::start(&[]);
    let sites = [
        ("paris-13", "b1", "ftth"),
        ("paris-13", "b1", "ftth"),
        ("paris-19", "b2", "4g"),
    ];
    let lines: Vec<String> = probe_lines(&responder, 3)
        .iter()
        .zip(sites)
        .map(|(line, (q, b, kind))| {
            let mut v: serde_json::Value = serde_json::from_str(line).expect("record");
            assert!(v["agent"].get("id").is_none(), "a probe has no agent id");
            v["site"] = serde_json::json!({ "quartier": q, "building": b });
            v["access"]["kind"] = serde_json::json!(kind);
            v.to_string()
        })
        .collect();
    let file = dir.join("r.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").expect("write");
    let cli = |args: &[&str]| {
        let mut cmd = Command::new(bin("sonde-collector"));
        cmd.args(args).arg("--config").arg(&config);
        run_bounded(cmd, Duration::from_secs(30))
    };
    let file_arg = file.display().to_string();
    let run = cli(&["import", "--file", &file_arg]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let out = dir.join("r.json");
    let now = chrono::Utc::now();
    let (from, to) = (
        (now - chrono::Duration::hours(1)).to_rfc3339(),
        (now + chrono::Duration::hours(1)).to_rfc3339(),
    );
    let out_arg = out.display().to_string();
    let run = cli(&[
        "report", "--from", &from, "--to", &to, "--format", "json", "--out", &out_arg,
    ]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).expect("report")).expect("JSON");
    let accesses = report["accesses"].as_array().expect("accesses");
    let seen: Vec<(String, String, String, u64)> = accesses
        .iter()
        .map(|a| {
            (
                a["quartier"].as_str().unwrap_or("").to_string(),
                a["building"].as_str().unwrap_or("").to_string(),
                a["kind"].as_str().unwrap_or("").to_string(),
                a["coverage"]["run"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let want = |q: &str, b: &str, k: &str, n: u64| (q.into(), b.into(), k.into(), n);
    assert_eq!(
        seen,
        vec![
            want("paris-13", "b1", "ftth", 2),
            want("paris-19", "b2", "4g", 1)
        ],
        "{accesses:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_pages_imported_results_and_lists_agents() {
    let dir = std::env::temp_dir().join(format!("sonde-serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("collector.toml");
    std::fs::write(
        &config,
        "data_dir = \"state\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
    )
    .expect("config");
    // Five results from a real probe, imported through the configuration's store.
    let responder = Responder::start(&[]);
    let lines = probe_lines(&responder, 5).join("\n") + "\n";
    let file = dir.join("r.jsonl");
    std::fs::write(&file, lines).expect("write");
    let mut cmd = Command::new(bin("sonde-collector"));
    cmd.args(["import", "--file"])
        .arg(&file)
        .arg("--config")
        .arg(&config);
    let run = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(run.code(), 0, "{}", run.stderr());

    let config_arg = config.display().to_string();
    let (mut child, fields) = start_logged(
        "sonde-collector",
        &["serve", "--config", &config_arg, "--log-format", "json"],
        "collector listening",
    );
    let addr = fields["http"].as_str().expect("http address").to_string();
    assert_eq!(get(&addr, "/healthz").0, 200);
    let mut ids = Vec::new();
    let mut path = "/api/v1/results?limit=2".to_string();
    for _ in 0..5 {
        let (code, page) = get(&addr, &path);
        assert_eq!(code, 200, "{page}");
        ids.extend(
            page["results"]
                .as_array()
                .expect("results")
                .iter()
                .map(|r| r["id"].clone()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/results?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(ids.len(), 5, "every result once across pages");
    let (code, agents) = get(&addr, "/api/v1/agents");
    assert_eq!(code, 200);
    assert_eq!(agents["agents"][0]["results"], 5, "{agents}");
    let (code, err) = get(&addr, "/api/v1/results?from=yesterday");
    assert_eq!(code, 400);
    assert!(
        err["error"].as_str().unwrap_or("").contains("from"),
        "{err}"
    );
    assert_eq!(get(&addr, "/api/v1/results?limit=5000").0, 400);
    assert_eq!(get(&addr, "/nothing").0, 404);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_collector_config_lists_every_problem_and_exits_64() {
    let dir = std::env::temp_dir().join(format!("sonde-badconf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("collector.toml");
    std::fs::write(
        &config,
        "data_dir = \"\"\n[http]\nlisten = \"everywhere\"\n",
    )
    .expect("config");
    let mut cmd = Command::new(bin("sonde-collector"));
    cmd.args(["serve", "--config"]).arg(&config);
    let run = run_bounded(cmd, Duration::from_secs(20));
    assert_eq!(run.code(), 64, "{}", run.stderr());
    let err = run.stderr();
    assert!(
        err.contains("data_dir") && err.contains("http.listen"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
