//! The collector's side of reports, on the store conformance suite's hand-worked
//! example (`sonde_store::conformance::example`, whose every figure the suite checks
//! on each backend): scopes refused by name, the HTML of an empty report, and the raw
//! results export after retention.

use chrono_tz::Europe::Paris;
use sonde_collector::report;
use sonde_store::conformance::example::{self, at, request};
use sonde_store::prelude::*;
use sonde_store_sqlite::SqliteStore;

fn dataset() -> SqliteStore {
    let s = SqliteStore::in_memory().expect("store");
    example::load(&s);
    s
}

#[test]
fn the_collector_reports_the_worked_example_as_the_suite_computed_it() {
    let store = dataset();
    let req = request("2026-11-02", "2026-11-02", None, None);
    let r = report::build(&store, &req).expect("report");
    assert_eq!(r, example::build(&store, &req));
    example::eq(example::access(&r, "a1").download_bps.median, 0.99e9);
}

#[test]
fn an_empty_report_says_so_on_the_page() {
    let store = dataset();
    let r =
        report::build(&store, &request("2026-10-01", "2026-10-31", None, None)).expect("report");
    assert!(r.data.no_data);
    let page = |lang| {
        let bytes = report::render::render(&r, report::render::Format::Html, lang).expect("html");
        String::from_utf8(bytes).expect("utf-8")
    };
    let html = page(report::render::Lang::En);
    assert!(html.contains("No data."), "{html}");
    let html = page(report::render::Lang::Fr);
    assert!(html.contains("Aucune donnée."), "{html}");
    assert!(html.contains("<html lang=\"fr\">"), "{html}");
}

#[test]
fn unknown_scopes_and_reversed_periods_are_refused_naming_them() {
    let store = dataset();
    let err = report::build(
        &store,
        &request("2026-11-02", "2026-11-02", Some("q9"), None),
    )
    .expect_err("unknown quartier");
    assert!(err.to_string().contains("\"q9\""), "{err}");
    let err = report::build(
        &store,
        &request("2026-11-02", "2026-11-02", Some("q2"), Some("b1")),
    )
    .expect_err("b1 is not in q2");
    assert!(err.to_string().contains("\"b1\""), "{err}");
    for (from, to) in [
        ("2026-11-03", "2026-11-02"),
        ("2026-13-01", "2026-11-02"),
        ("yesterday", "2026-11-02"),
    ] {
        let e = report::parse_period(from, to, Paris).expect_err("refused");
        assert!(!e.contains('\n'), "one line: {e}");
    }
    assert!(report::parse_period("2026-11-02", "2026-11-02", Paris).is_ok());
}

#[test]
fn the_raw_export_lists_results_whose_records_retention_deleted() {
    let store = dataset();
    let req = request("2026-11-02", "2026-11-02", None, None);
    while store.prune(at((2026, 11, 3, 0, 0)), 5).expect("prune") == 5 {}
    let mut raw = Vec::new();
    let rows = report::render::write_raw_csv(&store, &req.scope, Paris, &mut raw).expect("raw");
    assert_eq!(rows, 12);
}

/// A plan for q1/b1: `fibre` hourly (the example's agent a1 reports it every 3 h) and
/// a 4G access `mobile` no agent ever reported.
const PLAN: &str = r#"
[[group]]
quartier = "q1"
buildings = ["b1"]

[[group.access]]
name = "fibre"
kind = "ftth"
interface = "eth0"
responders = ["http://r.example"]
every = "1h"
jitter = "5m"

[[group.access]]
name = "mobile"
kind = "4g"
interface = "wwan0"
responders = ["http://r.example"]
every = "2h"
jitter = "5m"
"#;

#[test]
fn a_closed_period_keeps_its_figures_when_later_data_arrives_once_plans_say_what_was_scheduled() {
    let store = dataset();
    let req = request("2026-11-02", "2026-11-02", None, None);
    // Without a plan, "scheduled" follows the interval of the access's last result in
    // the period: a result of a later period, at another cadence, changes nothing
    // (methodology 3 took the latest result's, and the figure moved).
    let inferred = report::build(&store, &req).expect("report");
    assert!(!example::access(&inferred, "a1").coverage.planned);
    let later = |interval_s: f64| {
        let spec = example::ok((2026, 11, 20, 12, 0), 0.9e9, None, true);
        example::record(
            sonde_proto::AccessKind::Ftth,
            "fibre",
            interval_s,
            "0.1.0",
            spec,
        )
    };
    example::put(&store, "a1", "q1", "b1", vec![later(1800.0)]);
    let changed = report::build(&store, &req).expect("report");
    assert_eq!(
        example::access(&changed, "a1").coverage,
        example::access(&inferred, "a1").coverage
    );

    // With the plan in force since October, the period's schedule is the plan's:
    // 24 hourly runs of fibre, 12 of mobile, which reported nothing and is listed.
    let plan = sonde_collector::plans::parse(PLAN, "plan.toml").expect("plan");
    sonde_collector::plans::apply(&store, &plan, example::at((2026, 10, 1, 0, 0))).expect("apply");
    let planned = report::build(&store, &req).expect("report");
    let fibre = example::access(&planned, "a1");
    assert!(fibre.coverage.planned);
    assert_eq!(fibre.coverage.scheduled, 24);
    let mobile = planned
        .accesses
        .iter()
        .find(|a| a.access == "mobile")
        .expect("the planned access that never reported is in the report");
    assert_eq!((mobile.coverage.scheduled, mobile.coverage.run), (12, 0));
    assert_eq!(mobile.standing, sonde_method::report::Standing::NoResult);
    let html = html_en(&planned);
    assert!(
        html.contains("Scheduled: what the plans in force called for"),
        "{html}"
    );
    let inferred_elsewhere = planned
        .accesses
        .iter()
        .find(|a| !a.coverage.planned)
        .expect("b2");
    assert!(
        html.contains(&format!(
            "<td>{}* / ",
            inferred_elsewhere.coverage.scheduled
        )),
        "{html}"
    );
    // Later data, at yet another cadence, and a plan applied after the period: the
    // closed period's report is the same, figure for figure.
    example::put(&store, "a1", "q1", "b1", vec![later(600.0)]);
    let faster = PLAN.replace(
        "every = \"1h\"\njitter = \"5m\"",
        "every = \"10m\"\njitter = \"1m\"",
    );
    let faster = sonde_collector::plans::parse(&faster, "plan.toml").expect("plan");
    sonde_collector::plans::apply(&store, &faster, example::at((2026, 11, 10, 0, 0)))
        .expect("apply");
    let again = report::build(&store, &req).expect("report");
    assert_eq!(again, planned);
}

/// Every access with a figure is drawn: 65 accesses make three chart pages of at most
/// 30 bars, on one axis of round ticks, and the table lists all 65.
#[test]
fn every_access_is_drawn_in_pages_on_round_ticks() {
    let s = SqliteStore::in_memory().expect("store");
    for i in 0..65 {
        let r = example::record(
            sonde_proto::AccessKind::Ftth,
            "fibre",
            3600.0,
            "0.1.0",
            example::ok(
                (2026, 11, 2, 10, 0),
                0.9e9 + f64::from(i) * 1e6,
                None,
                false,
            ),
        );
        example::put(
            &s,
            &format!("a{i}"),
            "q",
            &format!("building-{i:02}"),
            vec![r],
        );
    }
    let r = report::build(&s, &request("2026-11-02", "2026-11-02", None, None)).expect("report");
    let html = html_en(&r);
    let charts: Vec<&str> = html
        .split("<svg")
        .skip(1)
        .filter(|c| c.contains("aria-label=\"Download per access\""))
        .collect();
    assert_eq!(charts.len(), 3, "65 accesses in pages of 30");
    for i in 0..65 {
        let label = format!("q · building-{i:02} · fibre (FTTH)");
        let drawn = charts.iter().filter(|c| c.contains(&label)).count();
        assert_eq!(drawn, 1, "{label} drawn once");
    }
    assert!(html.contains("Accesses 61–65 of 65"), "page captions");
    // The largest value is the 1 Gb/s target: ticks every 200 Mb/s up to 1.00 Gb/s,
    // the same on every page.
    for c in &charts {
        for tick in ["200.0\u{a0}Mb/s", "400.0\u{a0}Mb/s", "1.00\u{a0}Gb/s"] {
            assert!(c.contains(tick), "{tick} missing");
        }
    }
}

/// An access with UDPST tests gets its RFC 9097 capacity beside its TCP figures, in
/// the HTML table (a column shown only then) and in the summary CSV.
#[test]
fn capacity_shows_beside_the_tcp_figures_only_where_measured() {
    let store = dataset();
    let req = request("2026-11-02", "2026-11-02", None, None);
    let before = report::build(&store, &req).expect("report");
    assert!(
        !html_en(&before).contains("IP capacity down / up"),
        "no UDPST test, no column"
    );
    let mut udpst = example::record(
        sonde_proto::AccessKind::Ftth,
        "fibre",
        3600.0,
        "0.1.0",
        example::ok((2026, 11, 2, 23, 30), 1.0, None, true),
    );
    let c = sonde_proto::ResultRecord::capacity_example();
    udpst.run.engine = c.run.engine;
    udpst.capacity = c.capacity;
    udpst.download = None;
    udpst.upload = None;
    example::put(&store, "a1", "q1", "b1", vec![udpst]);
    let after = report::build(&store, &req).expect("report");
    let a1 = example::access(&after, "a1");
    assert_eq!(a1.capacity_tests, 1);
    let page = html_en(&after);
    assert!(
        page.contains("IP capacity down / up, RFC 9097 (tests)"),
        "{page}"
    );
    assert!(
        page.contains("148.3\u{a0}Mb/s / 49.4\u{a0}Mb/s (1)"),
        "{page}"
    );
    let csv = String::from_utf8(
        report::render::render(
            &after,
            report::render::Format::Csv,
            report::render::Lang::En,
        )
        .expect("csv"),
    )
    .expect("utf-8");
    let mut rows = csv::Reader::from_reader(csv.as_bytes());
    let head = rows.headers().expect("head").clone();
    let col = |name: &str| head.iter().position(|h| h == name).expect(name);
    let row = rows
        .records()
        .map(|r| r.expect("row"))
        .find(|r| r.get(3) == Some("a1"))
        .expect("a1's row");
    assert_eq!(&row[col("capacity_tests")], "1");
    assert_eq!(&row[col("capacity_down_median_bps")], "148300000");
}

/// `r` as an HTML page in English.
fn html_en(r: &sonde_method::report::Report) -> String {
    let bytes = report::render::render(r, report::render::Format::Html, report::render::Lang::En)
        .expect("html");
    String::from_utf8(bytes).expect("utf-8")
}

/// The cell under `head` in the HTML access table's row holding `row` (cells and
/// heads as text, tags left out).
fn html_cell(page: &str, head: &str, row: &str) -> String {
    let text = |html: &str| {
        let mut out = String::new();
        let mut in_tag = false;
        for ch in html.chars() {
            match ch {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => out.push(c),
                _ => {}
            }
        }
        out
    };
    // The access table comes in pages: the row's, whichever it is.
    for table in page
        .split("<table>")
        .filter(|t| t.contains(&format!(">{head}</th>")))
    {
        let (thead, tbody) = table.split_once("</thead>").expect("a head");
        let column = thead
            .split("</th>")
            .position(|h| text(h) == head)
            .expect("the column");
        if let Some(tr) = tbody.split("</tr>").find(|r| text(r).contains(row)) {
            return text(tr.split("</td>").nth(column).expect("the cell"));
        }
    }
    panic!("no row with {row:?} in a table with a column {head:?}")
}

/// With both optional columns shown (RFC 9097 capacity and responsiveness), each
/// access's figures sit under their own heads, and the columns after them under
/// theirs.
#[test]
fn optional_columns_line_up_with_their_heads() {
    let store = dataset();
    let req = request("2026-11-02", "2026-11-02", None, None);
    let put = |agent: &str, building: &str, engine: sonde_proto::ResultRecord| {
        let mut r = example::record(
            sonde_proto::AccessKind::Ftth,
            "fibre",
            3600.0,
            "0.1.0",
            example::ok((2026, 11, 2, 23, 30), 1.0, None, true),
        );
        r.run.engine = engine.run.engine;
        r.capacity = engine.capacity;
        r.responsiveness = engine.responsiveness;
        r.download = None;
        r.upload = None;
        example::put(&store, agent, "q1", building, vec![r]);
    };
    // Buildings of their own: a row is found by its building.
    put(
        "a-cap",
        "b-cap",
        sonde_proto::ResultRecord::capacity_example(),
    );
    put(
        "a-rpm",
        "b-rpm",
        sonde_proto::ResultRecord::responsiveness_example(),
    );
    let report = report::build(&store, &req).expect("report");
    let page = html_en(&report);
    let capacity = "IP capacity down / up, RFC 9097 (tests)";
    let rpm = "responsiveness down / up (RPM)";
    assert_eq!(
        html_cell(&page, capacity, "b-cap"),
        "148.3\u{a0}Mb/s / 49.4\u{a0}Mb/s (1)"
    );
    assert_eq!(html_cell(&page, rpm, "b-rpm"), "820 / 310");
    assert_eq!(html_cell(&page, rpm, "b-cap"), "— / —");
    assert_eq!(html_cell(&page, capacity, "b-rpm"), "—");
    assert_eq!(html_cell(&page, "building", "b-cap"), "b-cap");
    assert_eq!(html_cell(&page, "quartier", "b-rpm"), "q1");
    let pictures = "pictures: worst, typical";
    assert_eq!(html_cell(&page, pictures, "b-cap"), "worst · typical");
    assert_eq!(
        html_cell(&page, pictures, "b-rpm"),
        "—",
        "no throughput test"
    );
}
