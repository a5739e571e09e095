//! Compliance reports against a fixed synthetic dataset whose every figure is worked
//! out by hand below (docs/METHODOLOGY.md §7 gives the definitions).

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Europe::Paris;
use sonde_collector::report::{self, AccessReport, Report, Request, Rollup};
use sonde_collector::store::sqlite::SqliteStore;
use sonde_collector::store::{Delivery, ReportScope, Store};
use sonde_proto::{
    AccessKind, FailureReason, Flag, LatencyStats, Outcome, ResultRecord, VerdictOutcome,
};

/// One result's figures; `None` leaves the direction out.
#[derive(Clone, Copy, Default)]
struct Spec {
    /// Local (Europe/Paris) start.
    local: (i32, u32, u32, u32, u32),
    failed: Option<FailureReason>,
    flag: Option<Flag>,
    down: Option<f64>,
    goodput: Option<f64>,
    up: Option<f64>,
    met: bool,
    idle: f64,
    loaded: f64,
    received: u32,
}

fn at(local: (i32, u32, u32, u32, u32)) -> DateTime<Utc> {
    let (y, m, d, h, min) = local;
    Paris
        .with_ymd_and_hms(y, m, d, h, min, 0)
        .single()
        .expect("unambiguous local time")
        .with_timezone(&Utc)
}

fn record(kind: AccessKind, access: &str, interval_s: f64, version: &str, s: Spec) -> ResultRecord {
    let mut r = ResultRecord::schema_example();
    r.id = uuid::Uuid::now_v7();
    r.agent.version = version.into();
    r.access.kind = kind;
    r.access.name = Some(access.into());
    r.run.started_at = at(s.local);
    r.run.ended_at = r.run.started_at + chrono::Duration::seconds(20);
    r.run.interval_s = Some(interval_s);
    r.flags = s.flag.into_iter().collect();
    let target = if kind == AccessKind::Ftth { 1e9 } else { 150e6 };
    r.verdict.target_down_bps = Some(target);
    r.verdict.down = if s.down.is_none() {
        VerdictOutcome::Inconclusive
    } else if s.met {
        VerdictOutcome::Met
    } else {
        VerdictOutcome::NotMet
    };
    r.idle_latency = Some(LatencyStats {
        sent: 50,
        received: s.received,
        loss_ratio: 1.0 - f64::from(s.received) / 50.0,
        median_s: Some(s.idle),
        p90_s: None,
        min_s: None,
        jitter_s: None,
        loss_timeout_s: 2.0,
    });
    match s.down {
        Some(d) => {
            let dl = r.download.as_mut().expect("example has a download");
            dl.ip_rate_bps = d;
            dl.goodput_bps = s.goodput.unwrap_or(d * 0.95);
            dl.loaded_latency = Some(LatencyStats {
                median_s: Some(s.loaded),
                ..r.idle_latency.clone().expect("idle")
            });
        }
        None => r.download = None,
    }
    match s.up {
        Some(u) => {
            r.upload
                .as_mut()
                .expect("example has an upload")
                .ip_rate_bps = u
        }
        None => r.upload = None,
    }
    r.status.outcome = Outcome::Ok;
    r.status.reason = None;
    if let Some(reason) = s.failed {
        r.status.outcome = Outcome::Failed;
        r.status.reason = Some(reason);
        r.download = None;
        r.upload = None;
        r.idle_latency = None;
        r.verdict.down = VerdictOutcome::Inconclusive;
    }
    r
}

fn put(store: &SqliteStore, agent: &str, q: &str, b: &str, records: Vec<ResultRecord>) {
    let d = Delivery {
        agent_id: agent.into(),
        quartier: Some(q.into()),
        building: Some(b.into()),
    };
    store.insert(&d, &records, Utc::now()).expect("insert");
}

fn ok(local: (i32, u32, u32, u32, u32), down: f64, up: Option<f64>, met: bool) -> Spec {
    Spec {
        local,
        down: Some(down),
        up,
        met,
        received: 50,
        ..Default::default()
    }
}

/// The dataset of the worked example.
fn dataset() -> SqliteStore {
    let s = SqliteStore::in_memory().expect("store");
    let day = |h, m| (2026, 11, 2, h, m);
    // a1: q1/b1, FTTH every 3 h. A result the day before (outside the period, and
    // far off) only dates the access.
    let ftth = |spec| record(AccessKind::Ftth, "fibre", 10_800.0, "0.1.0", spec);
    put(
        &s,
        "a1",
        "q1",
        "b1",
        vec![
            ftth(ok((2026, 11, 1, 12, 0), 5e9, None, true)),
            ftth(Spec {
                idle: 0.004,
                loaded: 0.010,
                ..ok(day(0, 30), 1.10e9, Some(5.0e8), true)
            }),
            ftth(Spec {
                idle: 0.005,
                loaded: 0.012,
                received: 49,
                ..ok(day(3, 30), 0.95e9, Some(4.0e8), false)
            }),
            ftth(Spec {
                idle: 0.006,
                loaded: 0.014,
                ..ok(day(6, 30), 1.00e9, Some(6.0e8), true)
            }),
            ftth(Spec {
                local: day(9, 30),
                failed: Some(FailureReason::Timeout),
                ..Default::default()
            }),
            ftth(Spec {
                local: day(12, 30),
                failed: Some(FailureReason::Busy),
                ..Default::default()
            }),
            ftth(Spec {
                idle: 0.007,
                loaded: 0.020,
                received: 48,
                ..ok(day(19, 30), 0.90e9, Some(3.0e8), false)
            }),
            ftth(Spec {
                idle: 0.005,
                loaded: 0.018,
                ..ok(day(21, 30), 0.99e9, Some(5.5e8), true)
            }),
            ftth(Spec {
                flag: Some(Flag::CrossTraffic),
                idle: 0.009,
                loaded: 0.030,
                ..ok(day(22, 30), 0.5e9, Some(1e8), false)
            }),
        ],
    );
    // a2: q1/b2, 4G every 6 h, agent 0.2.0.
    let lte = |spec| record(AccessKind::FourG, "mobile", 21_600.0, "0.2.0", spec);
    put(
        &s,
        "a2",
        "q1",
        "b2",
        vec![
            lte(Spec {
                goodput: Some(152e6),
                idle: 0.030,
                loaded: 0.080,
                ..ok(day(1, 0), 160e6, None, true)
            }),
            lte(Spec {
                goodput: Some(19e6),
                idle: 0.040,
                loaded: 0.120,
                received: 45,
                ..ok(day(7, 0), 20e6, None, false)
            }),
            lte(Spec {
                goodput: Some(4.75e6),
                idle: 0.050,
                loaded: 0.200,
                ..ok(day(13, 0), 5e6, None, false)
            }),
            lte(Spec {
                goodput: Some(147e6),
                idle: 0.035,
                loaded: 0.090,
                ..ok(day(20, 0), 155e6, None, true)
            }),
        ],
    );
    // a3: q2/b3, FTTH every 3 h, silent for the whole period.
    put(
        &s,
        "a3",
        "q2",
        "b3",
        vec![record(
            AccessKind::Ftth,
            "fibre",
            10_800.0,
            "0.1.0",
            ok((2026, 11, 1, 10, 0), 1.2e9, None, true),
        )],
    );
    s
}

fn request(from: &str, to: &str, quartier: Option<&str>, building: Option<&str>) -> Request {
    let (from, to) = report::parse_period(from, to, Paris).expect("period");
    Request {
        scope: ReportScope {
            quartier: quartier.map(str::to_string),
            building: building.map(str::to_string),
            from,
            to,
        },
        time_zone: Paris,
        generated_at: at((2026, 11, 29, 10, 0)),
    }
}

#[track_caller]
fn eq(got: Option<f64>, want: f64) {
    let g = got.unwrap_or_else(|| panic!("no figure, expected {want}"));
    assert!(
        (g - want).abs() <= want.abs() * 1e-12,
        "got {g}, expected {want}"
    );
}

fn access<'a>(r: &'a Report, agent: &str) -> &'a AccessReport {
    r.accesses
        .iter()
        .find(|a| a.agent == agent)
        .expect("access")
}

fn rollup<'a>(rows: &'a [Rollup], quartier: Option<&str>, kind: &str) -> &'a Rollup {
    rows.iter()
        .find(|r| r.quartier.as_deref() == quartier && r.kind == kind)
        .expect("roll-up")
}

#[test]
fn every_figure_of_the_worked_example() {
    let store = dataset();
    let r =
        report::build(&store, &request("2026-11-02", "2026-11-02", None, None)).expect("report");
    // The local day 2026-11-02 (UTC+1).
    assert_eq!(
        r.header.from,
        Utc.with_ymd_and_hms(2026, 11, 1, 23, 0, 0).unwrap()
    );
    assert_eq!(
        r.header.to,
        Utc.with_ymd_and_hms(2026, 11, 2, 23, 0, 0).unwrap()
    );
    assert_eq!(
        r.header.methodology_version,
        sonde_proto::METHODOLOGY_VERSION
    );
    assert_eq!(r.data.results, 12);
    assert!(!r.data.no_data);
    assert_eq!(r.data.agent_versions, ["0.1.0", "0.2.0"]);
    assert_eq!(r.data.first_result, Some(at((2026, 11, 2, 0, 30))));
    assert_eq!(r.data.last_result, Some(at((2026, 11, 2, 22, 30))));
    assert_eq!(r.accesses.len(), 3);

    // a1, FTTH every 3 h: 8 slots; 8 results of which one skipped (busy), one failed,
    // one flagged: run 7, valid 5, in 3-hour buckets 0, 1, 2, 6, 7 of 8.
    let a = access(&r, "a1");
    let c = a.coverage;
    assert_eq!((c.scheduled, c.run, c.valid), (8, 7, 5));
    assert_eq!((c.buckets_covered, c.buckets), (5, 8));
    eq(c.time_covered_ratio, 0.625);
    // Valid downloads sorted: 0.90, 0.95, 0.99, 1.00, 1.10 Gb/s. Type 7: P10 at rank
    // 0.4 → 0.90 + 0.4 × 0.05; P90 at rank 3.6 → 1.00 + 0.6 × 0.10.
    eq(a.download_bps.median, 0.99e9);
    eq(a.download_bps.p10, 0.92e9);
    eq(a.download_bps.p90, 1.06e9);
    // Uploads 300, 400, 500, 550, 600 Mb/s.
    eq(a.upload_bps.median, 5.0e8);
    eq(a.upload_bps.p10, 3.4e8);
    eq(a.upload_bps.p90, 5.8e8);
    eq(a.target_down_bps, 1e9);
    eq(a.target_met_ratio, 3.0 / 5.0);
    // 0.99 Gb/s ≥ 1 Gb/s × (1 − 2 %).
    assert_eq!(a.compliant, Some(true));
    assert_eq!(a.arcep_thresholds, None);
    // Peak hours (19:00–23:00 local): 19:30 (0.90) and 21:30 (0.99); 22:30 is invalid.
    eq(a.peak_download_median_bps, 0.945e9);
    // 80/80: P20 of [0.90, 0.99] at rank 0.2 → 0.90 + 0.2 × 0.09.
    eq(a.consistent_80_80_bps, 0.918e9);
    eq(a.consistent_80_80_ratio, 0.918);
    // Idle medians 4, 5, 6, 7, 5 ms; loaded 10, 12, 14, 20, 18 ms; 3 probes of 250 lost.
    eq(a.idle_latency_median_s, 0.005);
    eq(a.loaded_latency_median_s, 0.014);
    eq(a.loss_ratio, 3.0 / 250.0);

    // a2, 4G every 6 h: 4 slots, 4 valid, 4 buckets of 6 h covered.
    let b = access(&r, "a2");
    assert_eq!(
        (b.coverage.scheduled, b.coverage.run, b.coverage.valid),
        (4, 4, 4)
    );
    eq(b.coverage.time_covered_ratio, 1.0);
    // Downloads 5, 20, 155, 160 Mb/s: median (20 + 155) / 2; P10 at rank 0.3; P90 at 2.7.
    eq(b.download_bps.median, 87.5e6);
    eq(b.download_bps.p10, 9.5e6);
    eq(b.download_bps.p90, 158.5e6);
    assert_eq!(b.upload_bps.median, None);
    eq(b.target_met_ratio, 0.5);
    assert_eq!(b.compliant, Some(false));
    // Goodputs 152, 19, 4.75, 147 Mb/s against 3, 8 and 30 Mb/s.
    let t = b.arcep_thresholds.expect("4G thresholds");
    eq(t.mbps_3, 1.0);
    eq(t.mbps_8, 0.75);
    eq(t.mbps_30, 0.5);
    // Only 20:00 is a peak hour.
    eq(b.peak_download_median_bps, 155e6);
    eq(b.consistent_80_80_bps, 155e6);
    eq(b.consistent_80_80_ratio, 155.0 / 150.0);
    eq(b.idle_latency_median_s, 0.0375);
    eq(b.loaded_latency_median_s, 0.105);
    eq(b.loss_ratio, 5.0 / 200.0);

    // a3, silent: 8 tests scheduled, none run; no figure.
    let z = access(&r, "a3");
    assert_eq!(
        (z.coverage.scheduled, z.coverage.run, z.coverage.valid),
        (8, 0, 0)
    );
    eq(z.coverage.time_covered_ratio, 0.0);
    assert_eq!(z.download_bps.median, None);
    assert_eq!(z.compliant, None);

    // Roll-ups per quartier and kind.
    let q1f = rollup(&r.quartiers, Some("q1"), "ftth");
    assert_eq!((q1f.accesses, q1f.buildings), (1, 1));
    eq(q1f.download_median_bps.median, 0.99e9);
    eq(q1f.target_met_ratio, 0.6);
    eq(q1f.compliant_ratio, 1.0);
    let q1m = rollup(&r.quartiers, Some("q1"), "4g");
    eq(q1m.compliant_ratio, 0.0);
    eq(q1m.arcep_thresholds.expect("4G").mbps_8, 0.75);
    let q2f = rollup(&r.quartiers, Some("q2"), "ftth");
    assert_eq!(q2f.coverage.scheduled, 8);
    eq(q2f.coverage.time_covered_ratio, 0.0);
    assert_eq!(q2f.target_met_ratio, None);
    // The scope's FTTH: a1 and a3 summed; medians over the accesses with figures.
    let f = rollup(&r.total, None, "ftth");
    assert_eq!((f.accesses, f.buildings), (2, 2));
    assert_eq!(
        (f.coverage.scheduled, f.coverage.run, f.coverage.valid),
        (16, 7, 5)
    );
    eq(f.coverage.time_covered_ratio, 5.0 / 16.0);
    eq(f.download_median_bps.median, 0.99e9);
    eq(f.target_met_ratio, 0.6);
    eq(f.compliant_ratio, 1.0);
    eq(f.peak_download_median_bps, 0.945e9);
    eq(f.consistent_80_80_bps, 0.918e9);
    eq(f.loss_ratio, 3.0 / 250.0);
    let m = rollup(&r.total, None, "4g");
    eq(m.download_median_bps.median, 87.5e6);
    eq(m.loss_ratio, 0.025);
}

#[test]
fn the_scope_narrows_to_a_quartier_or_a_building() {
    let store = dataset();
    let r = report::build(
        &store,
        &request("2026-11-02", "2026-11-02", Some("q1"), None),
    )
    .expect("q1");
    let agents: Vec<&str> = r.accesses.iter().map(|a| a.agent.as_str()).collect();
    assert_eq!(agents, ["a1", "a2"]);
    assert_eq!(r.data.results, 12);
    let r = report::build(
        &store,
        &request("2026-11-02", "2026-11-02", None, Some("b2")),
    )
    .expect("b2");
    assert_eq!(r.accesses.len(), 1);
    assert_eq!(r.accesses[0].agent, "a2");
    assert_eq!(r.data.results, 4);
}

#[test]
fn an_empty_period_or_scope_is_a_report_saying_no_data() {
    let store = dataset();
    // Before any access existed: nothing scheduled, nothing stored.
    let r =
        report::build(&store, &request("2026-10-01", "2026-10-31", None, None)).expect("report");
    assert!(r.data.no_data);
    assert_eq!(r.data.results, 0);
    assert!(r.accesses.is_empty());
    let html =
        String::from_utf8(report::render::render(&r, report::render::Format::Html)).expect("utf-8");
    assert!(html.contains("No data."), "{html}");
    // A known quartier whose only agent was silent: no data, but its schedule shows.
    let r = report::build(
        &store,
        &request("2026-11-02", "2026-11-02", Some("q2"), None),
    )
    .expect("q2");
    assert!(r.data.no_data);
    assert_eq!(r.accesses[0].coverage.scheduled, 8);
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
fn peak_hours_follow_paris_time_across_both_daylight_saving_changes() {
    let s = SqliteStore::in_memory().expect("store");
    let spec = |utc: DateTime<Utc>, down: f64| {
        let mut r = record(
            AccessKind::FourG,
            "mobile",
            3600.0,
            "0.1.0",
            ok((2026, 1, 1, 0, 0), down, None, true),
        );
        r.run.started_at = utc;
        r
    };
    let utc = |m, d, h, min| Utc.with_ymd_and_hms(2026, m, d, h, min, 0).unwrap();
    put(
        &s,
        "a4",
        "q3",
        "b4",
        vec![
            // 17:30 UTC is 18:30 in Paris on 28 March (UTC+1): not peak.
            spec(utc(3, 28, 17, 30), 10e6),
            // The same 17:30 UTC is 19:30 on 29 March (UTC+2, summer time): peak.
            spec(utc(3, 29, 17, 30), 100e6),
            // 21:30 UTC is 23:30 on 24 October (UTC+2): not peak.
            spec(utc(10, 24, 21, 30), 20e6),
            // The same 21:30 UTC is 22:30 on 25 October (UTC+1, winter time): peak.
            spec(utc(10, 25, 21, 30), 200e6),
        ],
    );
    let r = report::build(&s, &request("2026-03-28", "2026-10-25", None, None)).expect("report");
    assert_eq!(r.data.results, 4);
    // A fixed UTC+1 reading would have taken 10 and 200 instead; UTC, 20 alone.
    eq(r.accesses[0].peak_download_median_bps, 150e6);
    // Days are local days: 29 March has 23 hours, 25 October 25.
    let (f, t) = report::parse_period("2026-03-29", "2026-03-29", Paris).expect("period");
    assert_eq!((t - f).num_hours(), 23);
    let (f, t) = report::parse_period("2026-10-25", "2026-10-25", Paris).expect("period");
    assert_eq!((t - f).num_hours(), 25);
}

#[test]
fn retention_deletes_raw_results_but_reports_keep_their_figures() {
    let store = dataset();
    let req = request("2026-11-02", "2026-11-02", None, None);
    let before = report::build(&store, &req).expect("report");
    // Raw results started before 3 November go, in chunks.
    let cut = at((2026, 11, 3, 0, 0));
    let mut pruned = 0;
    loop {
        let n = store.prune(cut, 5).expect("prune");
        pruned += n;
        if n < 5 {
            break;
        }
    }
    assert_eq!(pruned, 14, "every result of the dataset is older");
    let page = store
        .results(&sonde_collector::store::ResultQuery {
            limit: 10,
            ..Default::default()
        })
        .expect("page");
    assert!(page.results.is_empty());
    let after = report::build(&store, &req).expect("report");
    assert_eq!(before.accesses, after.accesses);
    assert_eq!(before.quartiers, after.quartiers);
    // The raw export still lists the results, without the ids of deleted records.
    let mut raw = Vec::new();
    let rows = report::render::write_raw_csv(&store, &req.scope, Paris, &mut raw).expect("raw");
    assert_eq!(rows, 12);
}
