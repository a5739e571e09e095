//! The worked example of methodology version 4 (docs/METHODOLOGY.md §7): two weeks of
//! one quartier, each figure computed by hand beside it. It covers the peak-hour
//! verdict (item 6 of the report review), targets changing within the period and
//! roll-ups as ratios (7), the minimum sample and manual probes (9), clock-hour
//! buckets (10), a planned access that never reported (11) and a closed period that
//! later results leave unchanged (5). Headlines that lose no access (8) and ARCEP's
//! single-connection shares (12) have their own checks in [`super::report`].

use super::example::*;
use crate::Store;
use sonde_method::report::{self, planned, Builder, Report, Request, Standing};
use sonde_proto::plan::PlanFile;
use sonde_proto::{AccessKind, ResultRecord};

/// Tests of `access` on the November days `days`, at the local hours of `plan_of(day)`,
/// each with the download and target `plan_of` gives; `interval_s` `None` makes them
/// manual probes.
fn tests(
    kind: AccessKind,
    access: &str,
    interval_s: Option<f64>,
    days: std::ops::RangeInclusive<u32>,
    plan_of: impl Fn(u32) -> Vec<(u32, f64, f64)>,
) -> Vec<ResultRecord> {
    let mut out = Vec::new();
    for d in days {
        for (h, down, target) in plan_of(d) {
            let spec = ok((2026, 11, d, h, 0), down, None, down >= target);
            let mut r = record(kind, access, interval_s.unwrap_or(0.0), "0.1.0", spec);
            r.run.interval_s = interval_s;
            r.verdict.target_down_bps = Some(target);
            out.push(r);
        }
    }
    out
}

const FIBRE: f64 = 1e9;

/// The plan: `fibre` every 3 h in buildings b5 and b6 of quartier m.
fn plan() -> PlanFile {
    serde_json::from_str(
        r#"{"group":[{"quartier":"m","buildings":["b5","b6"],"access":[{"name":"fibre",
            "kind":"ftth","interface":"eth0","responders":["http://r"],"every":"3h"}]}]}"#,
    )
    .expect("plan")
}

/// Loads the two weeks: Monday 2 to Sunday 15 November 2026, Paris.
pub fn load(s: &dyn Store) {
    let ftth = AccessKind::Ftth;
    // e1: 1.1 Gb/s at 01:00, 07:00, 10:00, 13:00; 0.72 Gb/s every evening at 20:00.
    let e1 = tests(ftth, "fibre", Some(10_800.0), 2..=15, |_| {
        let mut v: Vec<_> = [1, 7, 10, 13].map(|h| (h, 1.1e9, FIBRE)).to_vec();
        v.push((20, 0.72e9, FIBRE));
        v
    });
    put(s, "e1", "m", "b1", e1);
    // e2: 4G at 01:00, 07:00, 13:00, 20:00; the target goes from 150 to 300 Mb/s on
    // Monday 9 November, the rate from 160 to 200 Mb/s.
    let e2 = tests(AccessKind::FourG, "mobile", Some(21_600.0), 2..=15, |d| {
        let (down, target) = if d < 9 {
            (160e6, 150e6)
        } else {
            (200e6, 300e6)
        };
        [1, 7, 13, 20].map(|h| (h, down, target)).to_vec()
    });
    put(s, "e2", "m", "b2", e2);
    // e3: two days only.
    let five = |down: f64| move |_| [1, 7, 10, 13, 20].map(|h| (h, down, FIBRE)).to_vec();
    put(
        s,
        "e3",
        "m",
        "b3",
        tests(ftth, "fibre", Some(10_800.0), 2..=3, five(1.1e9)),
    );
    // e4: a technician's manual probe every evening at 20:00.
    let e4 = tests(ftth, "fibre", None, 2..=15, |_| vec![(20, 1.1e9, FIBRE)]);
    put(s, "e4", "m", "b4", e4);
    // e5: 1.05 Gb/s at 01:00, 07:00, 10:00, 13:00, 20:00; planned.
    put(
        s,
        "e5",
        "m",
        "b5",
        tests(ftth, "fibre", Some(10_800.0), 2..=15, five(1.05e9)),
    );
}

/// The report of the two weeks, the plan in force throughout.
fn report_of(s: &dyn Store) -> Report {
    let req: Request = request("2026-11-02", "2026-11-15", Some("m"), None);
    let plan = plan();
    let sites = vec![
        ("m".to_string(), "b5".to_string()),
        ("m".to_string(), "b6".to_string()),
    ];
    let scheduled = planned(&[(&plan, req.scope.from, req.scope.to)], &sites);
    let mut builder = Builder::new(&req).with_plan(scheduled);
    s.report_scan(&req.scope, false, &mut builder)
        .expect("report scan");
    builder.finish()
}

fn by_building<'a>(r: &'a Report, b: &str) -> &'a report::AccessReport {
    r.accesses.iter().find(|a| a.building == b).expect("access")
}

/// Every figure of methodology 4's worked example.
pub fn every_figure_of_the_methodology_4_example(s: &dyn Store) {
    load(s);
    let r = report_of(s);
    assert_eq!(r.header.min_sample, report::MIN_SAMPLE);
    assert_eq!(r.header.peak_hours, "19:00-23:00 Mon-Fri");
    assert_eq!(r.accesses.len(), 6, "e1 to e5 and b6's planned access");
    peak_hours_decide(&r);
    a_target_change_cuts_the_period(&r);
    thin_or_manual_samples_are_not_judged(&r);
    plans_fix_the_count(&r);
    rollups_compare_ratios(&r);
    // A closed period does not move: later results with another schedule change no
    // figure, of the planned access nor of those no plan names (their schedule is
    // their last one in the period).
    let late = |access| {
        tests(AccessKind::Ftth, access, Some(600.0), 20..=20, |_| {
            vec![(10, 0.5e9, FIBRE)]
        })
    };
    put(s, "e5", "m", "b5", late("fibre"));
    put(s, "e1", "m", "b1", late("fibre"));
    put(s, "e3", "m", "b3", late("fibre"));
    let again = report_of(s);
    assert_eq!(again.accesses, r.accesses);
    assert_eq!(again.quartiers, r.quartiers);
}

/// Item 6: e1 reaches 1 Gb/s all day (median 1.1 Gb/s over 70 tests) but 0.72 Gb/s
/// every evening: not compliant, on its peak-hour median.
fn peak_hours_decide(r: &Report) {
    let e1 = by_building(r, "b1");
    eq(e1.download_bps.median, 1.1e9);
    // Peak hours: the 20:00 tests of the 10 weeknights; the two weekends' are not.
    eq(e1.peak_download_median_bps, 0.72e9);
    eq(e1.consistent_80_80_bps, 0.72e9);
    eq(e1.consistent_80_80_ratio, 0.72);
    eq(e1.download_ratio_median, 1.1);
    assert_eq!(e1.targets.len(), 1);
    let t = &e1.targets[0];
    let sample = t.sample;
    assert_eq!(
        (
            sample.tests,
            sample.days,
            sample.peak_tests,
            sample.peak_days
        ),
        (70, 14, 10, 10)
    );
    assert!(t.sufficient);
    assert_eq!(t.compliant, Some(false));
    assert_eq!(e1.compliant, Some(false));
    assert_eq!(e1.standing, Standing::NotCompliant);
    // 56 of 70 tests met the target.
    eq(e1.target_met_ratio, 0.8);
    // Coverage: life from its first test (2 Nov 01:00) to 16 Nov 00:00, 335 h:
    // ⌊335 / 3⌋ = 111 scheduled. Buckets: 3-hour slots of the local clock, 8 a day
    // over 14 days, 01:00 being in the first: 112; 5 a day hold a test.
    let c = e1.coverage;
    assert_eq!((c.scheduled, c.run, c.valid, c.manual), (111, 70, 70, 0));
    assert_eq!((c.buckets_covered, c.buckets), (70, 112));
    assert!(!c.planned);
}

/// Item 7: e2's target doubles on 9 November: two sub-periods, each judged on its own
/// tests; one falls short, so the access does.
fn a_target_change_cuts_the_period(r: &Report) {
    let e2 = by_building(r, "b2");
    assert_eq!(e2.targets.len(), 2);
    let (a, b) = (&e2.targets[0], &e2.targets[1]);
    assert_eq!(a.target_down_bps, Some(150e6));
    assert_eq!(
        a.from,
        at((2026, 11, 2, 1, 0)),
        "from the access's first test"
    );
    assert_eq!(
        a.to,
        at((2026, 11, 9, 1, 0)),
        "to the next target's first test"
    );
    assert_eq!((a.valid, a.sample.tests, a.sample.days), (28, 28, 7));
    assert_eq!((a.sample.peak_tests, a.sample.peak_days), (5, 5));
    eq(a.download_median_bps, 160e6);
    assert_eq!(a.compliant, Some(true));
    assert_eq!(b.target_down_bps, Some(300e6));
    assert_eq!(b.to, at((2026, 11, 16, 0, 0)));
    eq(b.download_median_bps, 200e6);
    eq(b.peak_download_median_bps, 200e6);
    assert_eq!(b.compliant, Some(false));
    assert_eq!(e2.standing, Standing::NotCompliant);
    assert_eq!(e2.target_down_bps, Some(300e6), "the latest");
    // 28 tests at 160 Mb/s and 28 at 200: the all-period median, 180 Mb/s, is above
    // either target's 98 %… of 150 only. Ratios are per test, to its own target:
    // 28 × 160/150 and 28 × 200/300, median their mean.
    eq(e2.download_bps.median, 180e6);
    eq(
        e2.download_ratio_median,
        (160.0 / 150.0 + 200.0 / 300.0) / 2.0,
    );
    eq(
        e2.peak_download_ratio_median,
        (160.0 / 150.0 + 200.0 / 300.0) / 2.0,
    );
    // 80/80: the P20 of 10 peak ratios (5 of each), rank 1.8: 200/300.
    eq(e2.consistent_80_80_ratio, 200.0 / 300.0);
    eq(e2.consistent_80_80_bps, 160e6);
    // 6-hour slots, 4 a day, all held: 56 of 56; 55 slots of 6 h in 335 h, but 56 tests
    // recorded.
    let c = e2.coverage;
    assert_eq!((c.scheduled, c.buckets_covered, c.buckets), (56, 56, 56));
}

/// Item 9: e3 tested on two days (10 tests, 2 at peak), e4 only by hand: neither is
/// judged; e4's probes count as manual.
fn thin_or_manual_samples_are_not_judged(r: &Report) {
    let e3 = by_building(r, "b3");
    assert_eq!(e3.standing, Standing::InsufficientData);
    assert_eq!(e3.compliant, None);
    let s3 = e3.targets[0].sample;
    assert_eq!(
        (s3.tests, s3.days, s3.peak_tests, s3.peak_days),
        (10, 2, 2, 2)
    );
    eq(e3.download_bps.median, 1.1e9);
    let e4 = by_building(r, "b4");
    assert_eq!(e4.standing, Standing::InsufficientData);
    let c = e4.coverage;
    assert_eq!((c.run, c.valid, c.manual), (14, 14, 14));
    assert_eq!(e4.targets[0].sample.tests, 0, "manual probes are no sample");
    // No schedule known: as many scheduled as recorded.
    assert_eq!(c.scheduled, 14);
    // Hourly buckets from 2 Nov 20:00: 4 that day, 24 on each of the 13 others.
    assert_eq!((c.buckets_covered, c.buckets), (14, 316));
    // Its figures still show, from its valid tests.
    eq(e4.peak_download_median_bps, 1.1e9);
}

/// Items 5 and 11: the plan, not the results, counts e5's and b6's tests: 3-hourly over
/// 14 days, 112 each; b6 never reported and stands as such.
fn plans_fix_the_count(r: &Report) {
    let e5 = by_building(r, "b5");
    assert_eq!(e5.standing, Standing::Compliant);
    assert_eq!(e5.compliant, Some(true));
    let c = e5.coverage;
    assert!(c.planned);
    assert_eq!((c.scheduled, c.run, c.valid), (112, 70, 70));
    assert_eq!((c.buckets_covered, c.buckets), (70, 112));
    let b6 = by_building(r, "b6");
    assert_eq!(b6.standing, Standing::NoResult);
    assert!(b6.coverage.planned);
    assert_eq!((b6.coverage.scheduled, b6.coverage.run), (112, 0));
    assert_eq!(b6.kind, "ftth");
}

/// Item 7, roll-ups: FTTH across accesses in ratios to each one's target; every access
/// counted by standing.
fn rollups_compare_ratios(r: &Report) {
    let f = rollup(&r.quartiers, Some("m"), "ftth");
    assert_eq!((f.accesses, f.buildings), (5, 5));
    let st = &f.standings;
    assert_eq!(st.count(Standing::Compliant), 1);
    assert_eq!(st.count(Standing::NotCompliant), 1);
    assert_eq!(st.count(Standing::InsufficientData), 2);
    assert_eq!(st.count(Standing::NoResult), 1);
    // Judged: e1 and e5, one compliant.
    eq(f.compliant_ratio, 0.5);
    // Accesses' ratio medians 1.1 (e1, e3, e4) and 1.05 (e5): sorted 1.05, 1.1, 1.1,
    // 1.1; P10 at rank 0.3.
    eq(f.download_median_ratio.median, 1.1);
    eq(f.download_median_ratio.p10, 1.05 + 0.3 * 0.05);
    // Peak ratios 0.72, 1.05, 1.1, 1.1: median (1.05 + 1.1) / 2; 80/80 ratios the
    // same, P20 at rank 0.6: 0.72 + 0.6 × 0.33.
    eq(f.peak_download_ratio_median, 1.075);
    eq(f.consistent_80_80_ratio, 0.72 + 0.6 * 0.33);
    // Scheduled: 111 (e1) + 111 (e3, silent after two days) + 14 (e4) + 112 + 112.
    assert_eq!(f.coverage.scheduled, 460);
    assert_eq!(f.coverage.manual, 14);
    let m = rollup(&r.quartiers, Some("m"), "4g");
    assert_eq!(m.compliant_ratio, Some(0.0));
}

/// A report read in parts (one per core, [`crate::ReportSource::report_scan_parts`])
/// and merged is the report read in one pass, figure for figure.
pub fn a_report_read_in_parts_is_the_report_read_in_one(s: &dyn Store) {
    super::example::load(s);
    load(s);
    for (quartier, from, to) in [
        (None, "2026-11-02", "2026-11-15"),
        (Some("m"), "2026-11-09", "2026-11-15"),
        (None, "2026-10-01", "2026-10-31"),
    ] {
        let req = request(from, to, quartier, None);
        let whole = build(s, &req);
        for n in [2, 3, 7] {
            let mut builders: Vec<Builder<'_>> = (0..n).map(|_| Builder::new(&req)).collect();
            {
                let mut sinks: Vec<&mut (dyn crate::ReportSink + Send)> = builders
                    .iter_mut()
                    .map(|b| b as &mut (dyn crate::ReportSink + Send))
                    .collect();
                s.report_scan_parts(&req.scope, &mut sinks)
                    .expect("scan in parts");
            }
            let mut parts = builders.into_iter();
            let first = parts.next().expect("a part");
            let mut merged = parts.fold(first, Builder::merge).finish();
            crate::resolve_pictures(s, &mut merged).expect("pictures");
            assert_eq!(merged, whole, "{n} parts, {quartier:?} {from}..{to}");
        }
    }
}
