//! The picture of a test: `sonde-agent probe --plot` against a real responder on
//! loopback, the same result imported into a real collector and drawn again at
//! `/api/v1/results/{id}/plot.svg`; both parsed as XML and rendered in headless
//! Chromium (no console message, screenshots kept in target/test-artifacts).

use sonde_e2e::browser::{artifacts, chromium};
use sonde_e2e::pipeline::{scratch, Collector};
use sonde_e2e::{agent, http_get_with_headers, Responder};
use std::time::Duration;

/// The `d` of every path (the bins drawn) and the text of every label.
fn drawn(svg: &str) -> (Vec<String>, Vec<String>) {
    let doc = roxmltree::Document::parse(svg).expect("well-formed SVG");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let paths = doc
        .descendants()
        .filter(|n| n.has_tag_name("path"))
        .filter_map(|n| n.attribute("d").map(str::to_string))
        .collect();
    let texts = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(str::to_string))
        .collect();
    (paths, texts)
}

#[test]
fn probe_and_collector_draw_the_same_picture_of_a_test() {
    let dir = scratch("plot");
    let responder = Responder::start(&[]);
    let picture = dir.join("probe.svg");
    let run = agent(
        &[
            "probe",
            "--responder",
            &responder.url(),
            "--access",
            "ftth",
            "--streams",
            "2",
            "--max-duration",
            "2",
            "--json",
            "--plot",
            &picture.display().to_string(),
            "--plot-max-rate",
            "100000",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let line = run.stdout();
    let record: serde_json::Value = serde_json::from_str(line.trim()).expect("record");
    let id = record["id"].as_str().expect("id").to_string();
    let series = &record["download"]["series"];
    assert_eq!(series["interval_s"], 0.1);
    assert_eq!(series["stream_rates_bps"].as_array().map(Vec::len), Some(2));
    assert!(series["rates_bps"]
        .as_array()
        .is_some_and(|r| r.len() >= 10));

    let svg = std::fs::read_to_string(&picture).expect("the picture");
    let (paths, texts) = drawn(&svg);
    assert_eq!(paths.len(), 6, "two streams and the sum, each direction");
    let words = texts.join("\n");
    for w in ["probe · access (ftth)", "target 1.00 Gb/s", "100 Gb/s", &id] {
        assert!(words.contains(w), "{w:?} not in\n{words}");
    }

    // The same result in a collector: the same bins, under the collector's identity.
    let mut collector = Collector::configure(&dir);
    let file = dir.join("r.jsonl");
    std::fs::write(&file, line.trim().to_string() + "\n").expect("write");
    let imported = collector.cli(&["import", "--file", &file.display().to_string()]);
    assert_eq!(imported.code(), 0, "{}", imported.stderr());
    collector.start();
    let path = format!("/api/v1/results/{id}/plot.svg?max_rate_mbps=100000");
    let (code, headers, served) = http_get_with_headers(&collector.http, &path).expect("API");
    assert_eq!(code, 200, "{served}");
    assert_eq!(
        headers.get("content-type").map(String::as_str),
        Some("image/svg+xml")
    );
    let (served_paths, served_texts) = drawn(&served);
    assert_eq!(served_paths, paths, "the same bins drawn");
    assert!(
        !served_texts[0].starts_with("probe ·"),
        "{}",
        served_texts[0]
    );

    // Bad requests get a reason.
    for (path, want, reason) in [
        ("/api/v1/results/nope/plot.svg", 400, "not a result id"),
        (
            "/api/v1/results/01937b7a-0000-7000-8000-000000000000/plot.svg",
            404,
            "no result",
        ),
        (
            &format!("/api/v1/results/{id}/plot.svg?max_rtt_ms=-3"),
            400,
            "max_rtt_ms",
        ),
    ] {
        let (code, _, body) = http_get_with_headers(&collector.http, path).expect("API");
        assert_eq!(code, want, "{path}: {body}");
        assert!(body.contains(reason), "{path}: {body}");
    }
    render(&dir, &[("plot-probe", &svg), ("plot-collector", &served)]);
}

#[test]
fn a_picture_that_cannot_be_written_loses_no_figure() {
    let responder = Responder::start(&[]);
    let run = agent(
        &[
            "probe",
            "--responder",
            &responder.url(),
            "--direction",
            "down",
            "--max-duration",
            "1",
            "--json",
            "--plot",
            "/nonexistent/dir/test.svg",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code(), 73, "{}", run.stderr());
    assert!(
        run.stderr()
            .contains("cannot write the picture to /nonexistent/dir/test.svg"),
        "{}",
        run.stderr()
    );
    let record: serde_json::Value = serde_json::from_str(run.stdout().trim()).expect("record");
    assert!(record["download"]["ip_rate_bps"]
        .as_f64()
        .is_some_and(|r| r > 0.0));
    // Fixing an axis without a picture is a usage error.
    let run = agent(
        &[
            "probe",
            "--responder",
            &responder.url(),
            "--plot-max-rate",
            "100",
        ],
        Duration::from_secs(10),
    );
    assert_eq!(run.code(), 64, "{}", run.stderr());
    assert!(run.stderr().contains("--plot <FILE>"), "{}", run.stderr());
}

/// Renders each picture in headless Chromium when it is installed: no console message,
/// a screenshot kept.
fn render(dir: &std::path::Path, pictures: &[(&str, &str)]) {
    if !cfg!(sonde_chromium) {
        eprintln!("chromium is not installed: the pictures were parsed, not rendered");
        return;
    }
    for (name, svg) in pictures {
        let page = dir.join(format!("{name}.svg"));
        std::fs::write(&page, svg).expect("write");
        let shot = artifacts().join(format!("{name}.png"));
        let _ = std::fs::remove_file(&shot);
        let errors = chromium(&page, &shot, None);
        assert!(errors.is_empty(), "{name}: console: {errors:#?}");
        let png = std::fs::read(&shot).expect("screenshot");
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{name}");
        eprintln!("{name}: {}", shot.display());
    }
}
