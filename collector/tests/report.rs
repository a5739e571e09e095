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
    let html =
        String::from_utf8(report::render::render(&r, report::render::Format::Html)).expect("utf-8");
    assert!(html.contains("No data."), "{html}");
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
