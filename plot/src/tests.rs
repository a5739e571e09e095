use super::*;

/// A real record: `sonde-agent probe --access 4g --streams 4 --json` on netlab's
/// 4g-150 link (150/50 Mb/s, 40 ms), 2026-12-03.
fn recorded() -> ResultRecord {
    serde_json::from_str(include_str!("../testdata/4g-150.json")).expect("record")
}

/// The picture parsed as XML: every problem a browser would refuse is an error here.
fn parse(svg: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(svg).expect("well-formed SVG")
}

fn texts(doc: &roxmltree::Document<'_>) -> Vec<String> {
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(str::to_string))
        .collect()
}

#[test]
fn a_recorded_test_draws_both_directions_with_their_streams_figure_and_stop() {
    let r = recorded();
    let svg = svg(&r, Axes::default());
    let doc = parse(&svg);
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    // One step line per stream and one for the direction, in each direction.
    let paths = doc.descendants().filter(|n| n.has_tag_name("path")).count();
    let streams: usize = [&r.download, &r.upload]
        .into_iter()
        .flatten()
        .map(|t| t.series.as_ref().expect("series").stream_rates_bps.len() + 1)
        .sum();
    assert_eq!(paths, streams, "{svg}");
    // A dot per echo received under load.
    let dots = doc
        .descendants()
        .filter(|n| n.has_tag_name("circle"))
        .count();
    let echoes: usize = [&r.download, &r.upload]
        .into_iter()
        .flatten()
        .map(|t| t.series.as_ref().expect("series").rtt_s.len())
        .sum();
    assert_eq!(dots, echoes);
    let words = texts(&doc).join("\n");
    // The latency title says both what the figure counts (the measured window) and
    // what the panel draws (every probe).
    let down = r.download.as_ref().expect("download");
    let series = down.series.as_ref().expect("series");
    let drawn = format!(
        "drawn: {} echoes, {} lost",
        series.rtt_s.len(),
        series.lost_at_s.len()
    );
    assert!(words.contains(&drawn), "{drawn:?} not in\n{words}");
    assert!(words.contains("window median"), "{words}");
    for w in [
        "probe · access (4g)",
        "methodology 4",
        &r.id.to_string(),
        "Download · 149 Mb/s · 4 stream(s) · measured at the agent · stop: stable",
        "Upload · 49.5 Mb/s",
        "target 150 Mb/s",
        "figure 149 Mb/s",
        "stop (stable)",
        "idle median 41 ms",
    ] {
        assert!(words.contains(w), "{w:?} not in\n{words}");
    }
}

#[test]
fn fixed_axes_set_the_top_ticks_and_the_time_span() {
    let r = recorded();
    let fitted = texts(&parse(&svg(&r, Axes::default()))).join("\n");
    assert!(fitted.contains("200 Mb/s"), "{fitted}");
    assert!(!fitted.contains("400 Mb/s"));
    let fixed = svg(
        &r,
        Axes {
            max_rate_bps: Some(400e6),
            max_rtt_s: Some(0.5),
            max_time_s: Some(20.0),
        },
    );
    let fixed = texts(&parse(&fixed)).join("\n");
    for w in ["400 Mb/s", "500 ms", "20 s"] {
        assert!(fixed.contains(w), "{w:?} not in\n{fixed}");
    }
    // A bin above a fixed top is drawn at the top, not outside the panel.
    assert!(!fixed.contains("y=\"-"));
}

#[test]
fn hostile_names_are_escaped_and_old_records_still_draw() {
    let mut r = recorded();
    r.access.name = Some("<script>alert(1)</script> & \"x\"".into());
    // A record made before series were kept.
    for t in [&mut r.download, &mut r.upload].into_iter().flatten() {
        t.series = None;
    }
    let svg = svg(&r, Axes::default());
    let doc = parse(&svg);
    assert!(!doc.descendants().any(|n| n.has_tag_name("script")));
    assert!(texts(&doc)
        .join("\n")
        .contains("<script>alert(1)</script> & \"x\""));
    assert_eq!(
        doc.descendants().filter(|n| n.has_tag_name("path")).count(),
        0
    );
}

#[test]
fn a_failed_test_says_why_instead_of_drawing_panels() {
    let mut r = recorded();
    r.download = None;
    r.upload = None;
    r.status.message = Some("connection refused".into());
    let svg = svg(&r, Axes::default());
    let words = texts(&parse(&svg)).join("\n");
    assert!(words.contains("No figure: connection refused"), "{words}");
}

#[test]
fn rates_read_well() {
    assert_eq!(rate(0.0), "0");
    assert_eq!(rate(1.1e9), "1.10 Gb/s");
    assert_eq!(rate(149.4e6), "149 Mb/s");
    assert_eq!(rate(49.5e6), "49.5 Mb/s");
}

#[test]
fn ticks_are_round_and_cover_the_maximum() {
    assert_eq!(ticks(1.1e9, 5), vec![0.0, 2.5e8, 5e8, 7.5e8, 1e9, 1.25e9]);
    assert_eq!(ticks(160e6, 5), vec![0.0, 50e6, 100e6, 150e6, 200e6]);
    assert_eq!(ticks(1e9, 5), vec![0.0, 2e8, 4e8, 6e8, 8e8, 1e9]);
    assert_eq!(ticks(0.0, 5), vec![0.0, 1.0]);
    for max in [3.3e6, 47.8e6, 955e6, 2.4e9, 9.99e9] {
        let t = ticks(max, 5);
        assert!(*t.last().expect("ticks") >= max, "{max}: {t:?}");
        assert!(t.len() <= 8, "{max}: {t:?}");
        let step = t[1];
        let mantissa = step / 10f64.powf(step.log10().floor());
        assert!(
            [1.0, 2.0, 2.5, 5.0]
                .iter()
                .any(|m| (m - mantissa).abs() < 1e-9),
            "{max}: step {step}"
        );
    }
}
