//! `sonde-collector report` as the regulator uses it: results delivered by a real agent
//! over QUIC to a real collector, then the report command, its signature, `report
//! verify` catching a one-byte change, bad arguments, `GET /api/v1/reports`, and the HTML
//! rendered in headless Chromium (console clean, screenshot and PDF kept).

use base64::Engine as _;
use sonde_e2e::pipeline::{
    record, scratch, seed_spool, verify_report as verify, Agent, AgentSetup, Collector,
};
use sonde_e2e::run_bounded;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A collector holding 40 results of one agent from the last 40 hours; the period that
/// covers them, as RFC 3339 instants.
fn collector_with_results(dir: &Path) -> (Collector, String, String) {
    let mut collector = Collector::configure(dir);
    collector.start();
    let adir = dir.join("agent");
    collector.enroll("b-report", &adir.join("state"));
    seed_spool(&adir.join("state"), 40, |i| {
        let mut r = record(i as i64 * 60);
        r.run.interval_s = Some(3600.0);
        // Some tests measured responsiveness too (a report column, §7.3).
        if i % 4 == 0 {
            r.responsiveness = sonde_proto::ResultRecord::responsiveness_example().responsiveness;
        }
        r
    });
    let agent = Agent::start(&adir, &collector, &AgentSetup::uploader(1000, 20));
    let deadline = Instant::now() + Duration::from_secs(90);
    while collector.all_results().len() < 40 {
        assert!(
            Instant::now() < deadline,
            "the agent's results did not arrive"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(agent);
    let now = chrono::Utc::now();
    let from = (now - chrono::Duration::hours(48)).to_rfc3339();
    let to = (now + chrono::Duration::hours(1)).to_rfc3339();
    (collector, from, to)
}

#[test]
fn a_signed_report_verifies_and_a_one_byte_change_is_named() {
    let dir = scratch("report-cli");
    let (collector, from, to) = collector_with_results(&dir);
    let out = dir.join("out");
    std::fs::create_dir_all(&out).expect("out dir");

    let csv = out.join("r.csv");
    let run = collector.report(&from, &to, "csv", &csv, &[]);
    let raw = out.join("r.results.csv");
    let manifest = out.join("r.manifest.json");
    for f in [&csv, &raw, &manifest, &out.join("r.manifest.sig")] {
        assert!(
            f.exists(),
            "{} missing; stdout: {}",
            f.display(),
            run.stdout()
        );
    }
    // Every stored result is in the raw file, with its id.
    let raw_text = std::fs::read_to_string(&raw).expect("raw");
    assert_eq!(raw_text.lines().count(), 41, "header + 40 results");
    let ids: Vec<String> = collector
        .all_results()
        .iter()
        .map(|r| r["id"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(ids.iter().all(|id| raw_text.contains(id.as_str())));
    let summary = std::fs::read_to_string(&csv).expect("summary");
    assert!(
        summary.starts_with("level,quartier,building,agent,access,kind"),
        "{summary}"
    );
    assert!(summary.contains("access,q-test,b-report,"), "{summary}");

    // The public key, exported for a verifier without access to the collector.
    let run = collector.cli(&["report", "key"]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let key = out.join("report-key.pub");
    std::fs::write(&key, run.stdout()).expect("key");
    let ok = verify(&csv, &key);
    assert_eq!(ok.code(), 0, "{}{}", ok.stdout(), ok.stderr());
    assert!(
        ok.stdout().contains("valid: signed by the given key"),
        "{}",
        ok.stdout()
    );

    // Without a trusted key the signature proves nothing (anyone can sign with a key
    // of their own): untrusted, exit 2, never "valid"; a key pinned in the
    // environment is a trusted key.
    let mut bare = std::process::Command::new(sonde_e2e::bin("sonde-collector"));
    bare.args(["report", "verify"])
        .arg(&csv)
        .env_remove("SONDE_REPORT_KEY");
    let untrusted = sonde_e2e::run_bounded(bare, std::time::Duration::from_secs(60));
    assert_eq!(untrusted.code(), 2, "{}", untrusted.stdout());
    assert!(
        untrusted.stdout().contains("untrusted:"),
        "{}",
        untrusted.stdout()
    );
    assert!(
        !untrusted.stdout().contains("valid:"),
        "{}",
        untrusted.stdout()
    );
    let mut pinned = std::process::Command::new(sonde_e2e::bin("sonde-collector"));
    pinned
        .args(["report", "verify"])
        .arg(&csv)
        .env("SONDE_REPORT_KEY", &key);
    let pinned = sonde_e2e::run_bounded(pinned, std::time::Duration::from_secs(60));
    assert_eq!(pinned.code(), 0, "{}", pinned.stdout());
    // A report signed by another collector, checked against ours: invalid.
    std::fs::create_dir_all(out.join("other")).expect("other dir");
    let mut other = Collector::configure(&out.join("other"));
    other.start();
    other.stop();
    let forged = out.join("forged.json");
    let run = other.cli(&[
        "report",
        "--from",
        &from,
        "--to",
        &to,
        "--format",
        "json",
        "--out",
        forged.to_str().expect("utf-8"),
    ]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(verify(&forged, &key).code(), 1);

    // One byte changed in the raw results: refused, naming the file; restored: valid.
    let original = std::fs::read(&raw).expect("raw bytes");
    let mut changed = original.clone();
    let at = changed.len() / 2;
    changed[at] = if changed[at] == b'1' { b'2' } else { b'1' };
    std::fs::write(&raw, &changed).expect("change");
    let bad = verify(&csv, &key);
    assert_eq!(bad.code(), 1);
    assert!(bad.stderr().contains("r.results.csv"), "{}", bad.stderr());
    assert_eq!(bad.stderr().trim().lines().count(), 1, "{}", bad.stderr());
    std::fs::write(&raw, &original).expect("restore");
    assert_eq!(verify(&manifest, &key).code(), 0);

    // JSON and HTML reports of the same period.
    for format in ["json", "html"] {
        let file = out.join(format!("r2.{format}"));
        let run = collector.cli(&[
            "report",
            "--from",
            &from,
            "--to",
            &to,
            "--quartier",
            "q-test",
            "--format",
            format,
            "--out",
            file.to_str().expect("utf-8"),
        ]);
        assert_eq!(run.code(), 0, "{}", run.stderr());
        assert_eq!(verify(&file, &key).code(), 0);
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("r2.json")).expect("json"))
            .expect("valid JSON");
    assert_eq!(json["data"]["results"], 40);
    assert_eq!(
        json["header"]["methodology_version"],
        sonde_proto::METHODOLOGY_VERSION
    );
    assert_eq!(json["accesses"][0]["coverage"]["run"], 40);

    // An empty period is a report that says so.
    let empty = out.join("empty.json");
    let run = collector.cli(&[
        "report",
        "--from",
        "2020-01-01",
        "--to",
        "2020-01-31",
        "--format",
        "json",
        "--out",
        empty.to_str().expect("utf-8"),
    ]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(run.stderr().contains("no data"), "{}", run.stderr());
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&empty).expect("json")).expect("valid JSON");
    assert_eq!(json["data"]["no_data"], true);
}

#[test]
fn bad_arguments_are_one_line_with_exit_64_and_http_serves_the_same_signed_report() {
    let dir = scratch("report-args");
    let (collector, from, to) = collector_with_results(&dir);
    for (args, names) in [
        (
            vec!["--from", "2026-13-01", "--to", "2026-12-31"],
            "2026-13-01",
        ),
        (vec!["--from", "2026-11-03", "--to", "2026-11-02"], "--from"),
        (vec!["--from", "2026-11-01", "--to", "soon"], "soon"),
        (
            vec![
                "--from",
                "2026-11-01",
                "--to",
                "2026-11-02",
                "--quartier",
                "nowhere",
            ],
            "nowhere",
        ),
    ] {
        let mut all = vec!["report"];
        all.extend(&args);
        all.extend(["--format", "json", "--out", "/nonexistent/never.json"]);
        let run = collector.cli(&all);
        assert_eq!(run.code(), 64, "{args:?}: {}", run.stderr());
        let err = run.stderr();
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(names), "{args:?}: {err}");
    }

    // GET /api/v1/reports: the report in the body, its manifest and signature in
    // headers; saved side by side they verify like the CLI's.
    let q = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let path = format!(
        "/api/v1/reports?from={}&to={}&quartier=q-test&format=json",
        q(&from),
        q(&to)
    );
    let (code, headers, body) =
        sonde_e2e::http_get_with_headers(&collector.http, &path).expect("HTTP answers");
    assert_eq!(code, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON report");
    assert_eq!(json["data"]["results"], 40);
    let name = headers["content-disposition"]
        .split("filename=\"")
        .nth(1)
        .and_then(|s| s.strip_suffix('"'))
        .expect("file name")
        .to_string();
    let saved = dir.join("http");
    std::fs::create_dir_all(&saved).expect("dir");
    std::fs::write(saved.join(&name), &body).expect("body");
    let stem = name.rsplit_once('.').map(|(s, _)| s).expect("stem");
    let manifest = base64::engine::general_purpose::STANDARD
        .decode(&headers["x-sonde-manifest"])
        .expect("base64 manifest");
    std::fs::write(saved.join(format!("{stem}.manifest.json")), manifest).expect("manifest");
    std::fs::write(
        saved.join(format!("{stem}.manifest.sig")),
        format!("{}\n", headers["x-sonde-manifest-signature"]),
    )
    .expect("sig");
    let run = collector.cli(&["report", "key"]);
    let key = saved.join("key.pub");
    std::fs::write(&key, run.stdout()).expect("key");
    let ok = verify(&saved.join(&name), &key);
    assert_eq!(ok.code(), 0, "{}{}", ok.stdout(), ok.stderr());
    // The access's worst and typical tests are named, and the HTML report links their
    // pictures, which the collector serves; the RPM medians have their column.
    let access = &json["accesses"][0];
    let worst = access["worst_result_id"].as_str().expect("a worst test");
    assert!(access["typical_result_id"].is_string(), "{access}");
    let example = sonde_proto::ResultRecord::responsiveness_example();
    let rpm = example.responsiveness.as_ref().expect("rpm");
    assert_eq!(
        access["rpm_down_median"].as_f64(),
        rpm.down.as_ref().map(|d| d.rpm)
    );
    let (code, body) =
        sonde_e2e::http_get(&collector.http, &path.replace("format=json", "format=html"))
            .expect("HTTP answers");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(" (RPM)</th>"), "no responsiveness column");
    let href = format!("/api/v1/results/{worst}/plot.svg");
    assert!(
        body.contains(&format!("<a href=\"{href}\">")),
        "no link to {href}"
    );
    let (code, headers, svg) =
        sonde_e2e::http_get_with_headers(&collector.http, &href).expect("HTTP answers");
    assert_eq!(code, 200, "{svg}");
    assert!(
        headers["content-type"].starts_with("image/svg+xml"),
        "{headers:?}"
    );
    assert!(svg.contains(&worst[..8]), "the picture names its test");
    // Bad parameters are a 400 with the reason.
    let (code, body) = sonde_e2e::http_get(
        &collector.http,
        "/api/v1/reports?from=2026-13-01&to=2026-12-01",
    )
    .expect("HTTP answers");
    assert_eq!(code, 400);
    assert!(body.contains("2026-13-01"), "{body}");
    let (code, body) = sonde_e2e::http_get(
        &collector.http,
        "/api/v1/reports?from=2026-11-01&to=2026-11-02&quartier=nowhere",
    )
    .expect("HTTP answers");
    assert_eq!(code, 400);
    assert!(body.contains("nowhere"), "{body}");
}

/// A collector (not started) whose store holds the two worked examples of the
/// conformance suite: 2 November 2026 (quartiers q1, q2) and the fortnight of 2 to 15
/// November (quartier m: a peak-hour failure, a target change, thin and manual
/// samples, a planned access that never reported).
fn collector_with_worked_examples(dir: &Path) -> Collector {
    let collector = Collector::configure_with(
        dir,
        "",
        "[report]\nissuer = \"Ville de Paris, direction du numérique\"",
    );
    std::fs::create_dir_all(collector.data_dir()).expect("data dir");
    let store =
        sonde_store_sqlite::SqliteStore::open(&collector.data_dir().join("collector.sqlite"))
            .expect("store");
    sonde_store::conformance::example::load(&store);
    sonde_store::conformance::method4::load(&store);
    collector
}

#[cfg_attr(
    not(sonde_chromium),
    ignore = "needs chromium (apt-get install chromium; .ci/run does)"
)]
#[test]
fn the_report_pages_render_in_french_and_english_and_print_to_pdf() {
    let dir = scratch("report-pages");
    let collector = collector_with_worked_examples(&dir);
    let run = collector.cli(&["report", "key"]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let key = dir.join("report-key.pub");
    std::fs::write(&key, run.stdout()).expect("key");
    let out = sonde_e2e::browser::artifacts();
    let words = [
        (
            "en",
            [
                "Summary",
                "Peak hours",
                "Annex: methodology",
                "1.10\u{a0}Gb/s",
            ],
        ),
        (
            "fr",
            [
                "Synthèse",
                "Heures de pointe",
                "Annexe : méthodologie",
                "1,10\u{a0}Gbit/s",
            ],
        ),
    ];
    for (lang, expected) in words {
        let page = dir.join(format!("report-{lang}.html"));
        collector.report("2026-11-02", "2026-11-15", "html", &page, &["--lang", lang]);
        let html = std::fs::read_to_string(&page).expect("html");
        assert!(html.contains(&format!("<html lang=\"{lang}\">")), "{lang}");
        assert!(
            html.contains("Ville de Paris, direction du numérique"),
            "{lang}: issuer"
        );
        for w in expected {
            assert!(html.contains(w), "{lang}: {w:?} missing");
        }
        // Self-contained: nothing fetched from elsewhere.
        for external in [
            "src=\"http",
            "href=\"http",
            "<link",
            "<script",
            "@import",
            "url(",
        ] {
            assert!(!html.contains(external), "external asset {external:?}");
        }
        assert!(
            html.find("<svg") < html.find("<table"),
            "charts before tables"
        );
        // Every access with a figure has its bar, none left out of the chart: one
        // label per access in the chart's SVG.
        let chart = &html[html.find("<svg").expect("svg")..html.find("</svg>").expect("svg")];
        for b in [
            "b1 · fibre",
            "b2 · mobile",
            "b3 · fibre",
            "b4 · fibre",
            "b5 · fibre",
        ] {
            assert!(chart.contains(b), "{lang}: {b} not drawn");
        }
        // The target change of b2 has its own table; the period is in local days.
        assert!(
            html.contains(if lang == "fr" {
                "du 2 novembre 2026 au 15 novembre 2026 inclus"
            } else {
                "from 2 November 2026 to 15 November 2026 inclusive"
            }),
            "{lang}: local period"
        );
        let shot = out.join(format!("report-{lang}.png"));
        let printed = out.join(format!("report-{lang}.print.pdf"));
        let _ = std::fs::remove_file(&shot);
        let _ = std::fs::remove_file(&printed);
        let errors = sonde_e2e::browser::chromium(&page, &shot, Some(&printed));
        assert!(errors.is_empty(), "{lang}: console errors: {errors:#?}");
        let png = std::fs::read(&shot).expect("screenshot");
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "a real screenshot"
        );

        // The PDF the collector prints itself, signed like any report.
        let pdf = out.join(format!("report-{lang}.pdf"));
        collector.report("2026-11-02", "2026-11-15", "pdf", &pdf, &["--lang", lang]);
        let bytes = std::fs::read(&pdf).expect("pdf");
        assert!(
            bytes.starts_with(b"%PDF") && bytes.len() > 20_000,
            "{lang}: a PDF"
        );
        let ok = verify(&pdf, &key);
        assert_eq!(ok.code(), 0, "{}{}", ok.stdout(), ok.stderr());
        eprintln!(
            "{lang}: screenshot {}, PDF {}",
            shot.display(),
            pdf.display()
        );
    }
    // French is the default for a zone in France.
    let page = dir.join("report-default.html");
    collector.report("2026-11-02", "2026-11-15", "html", &page, &[]);
    let html = std::fs::read_to_string(&page).expect("html");
    assert!(html.contains("<html lang=\"fr\">"));
    let page = dir.join("report-kolkata.html");
    collector.report(
        "2026-11-02",
        "2026-11-15",
        "html",
        &page,
        &["--time-zone", "Asia/Kolkata"],
    );
    let html = std::fs::read_to_string(&page).expect("html");
    assert!(html.contains("<html lang=\"en\">"));

    // The console check itself catches an error (so a clean run means something).
    let broken = dir.join("broken.html");
    std::fs::write(
        &broken,
        "<!DOCTYPE html><html><body><p>x</p><script>console.error('boom')</script></body></html>",
    )
    .expect("write");
    let errors = sonde_e2e::browser::chromium(
        &broken,
        &dir.join("broken.png"),
        Some(&dir.join("broken.pdf")),
    );
    assert!(!errors.is_empty(), "a console.error must be caught");
}

/// A PDF asked of a collector without Chromium: one line saying what to install, exit
/// 1, and no report file, manifest or signature left behind.
#[test]
fn a_pdf_without_chromium_says_what_to_install_and_writes_nothing() {
    let dir = scratch("report-no-chromium");
    let collector = collector_with_worked_examples(&dir);
    let out = dir.join("r.pdf");
    let mut cmd = Command::new(sonde_e2e::bin("sonde-collector"));
    cmd.args(["report", "--from", "2026-11-02", "--to", "2026-11-15"])
        .args(["--format", "pdf", "--out"])
        .arg(&out)
        .arg("--config")
        .arg(dir.join("collector.toml"))
        .env("PATH", dir.join("no-such-bin"))
        .env_remove("SONDE_CHROMIUM");
    let run = run_bounded(cmd, Duration::from_secs(60));
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(
        run.stderr().contains("needs Chromium")
            && run.stderr().contains("apt-get install chromium"),
        "{}",
        run.stderr()
    );
    for f in ["r.pdf", "r.manifest.json", "r.manifest.sig"] {
        assert!(!dir.join(f).exists(), "{f} left behind");
    }
    drop(collector);
}
