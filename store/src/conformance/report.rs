//! The hand-worked report example ([`super::example`]) against a backend: every figure
//! a report prints, from the rows the backend scans, equals the one computed by hand.

use super::example::*;
use crate::Store;
use chrono::{TimeZone, Utc};
use chrono_tz::Europe::Paris;
use sonde_method::report;
use sonde_proto::{AccessKind, ResultRecord, VerdictOutcome};

/// Every figure of the worked example, each computed by hand beside it.
pub fn every_figure_of_the_worked_example(store: &dyn Store) {
    load(store);
    let r = build(store, &request("2026-11-02", "2026-11-02", None, None));
    // The local day 2026-11-02 (UTC+1).
    assert_eq!(
        r.header.from,
        Utc.with_ymd_and_hms(2026, 11, 1, 23, 0, 0)
            .single()
            .expect("time")
    );
    assert_eq!(
        r.header.to,
        Utc.with_ymd_and_hms(2026, 11, 2, 23, 0, 0)
            .single()
            .expect("time")
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
    // Its pictures: the worst valid test is the 0.90 Gb/s one (19:30), the typical
    // one the median, 0.99 Gb/s (21:30); the flagged 0.5 Gb/s test is not valid.
    let started = |id: &Option<String>| {
        let id = id.as_deref().expect("an id");
        let stored = store.result(id).expect("read").expect("stored");
        sonde_proto::ResultRecord::from_json(stored.record.as_bytes())
            .expect("record")
            .run
            .started_at
    };
    assert_eq!(started(&a.worst_result_id), at((2026, 11, 2, 19, 30)));
    assert_eq!(started(&a.typical_result_id), at((2026, 11, 2, 21, 30)));
    assert_eq!(a.rpm_down_median, None, "no test measured RPM");
    // 0.99 Gb/s ≥ 1 Gb/s × (1 − 2 %), but 5 valid tests on one day are below the
    // minimum sample (10 tests on 3 days, 5 at peak on 3 weeknights): not judged.
    assert_eq!(a.compliant, None);
    assert_eq!(a.standing, report::Standing::InsufficientData);
    assert_eq!(a.targets.len(), 1);
    let sample = a.targets[0].sample;
    assert_eq!(
        (
            sample.tests,
            sample.days,
            sample.peak_tests,
            sample.peak_days
        ),
        (5, 1, 2, 1)
    );
    assert!(!a.targets[0].sufficient);
    assert_eq!(a.targets[0].compliant, None);
    eq(a.download_ratio_median, 0.99);
    assert_eq!(a.coverage.manual, 0);
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
    assert_eq!(b.compliant, None, "4 tests: insufficient data");
    assert_eq!(b.standing, report::Standing::InsufficientData);
    // Goodputs 152, 19, 4.75, 147 Mb/s against 3, 8 and 30 Mb/s.
    let t = b.arcep_thresholds.expect("4G thresholds");
    assert_eq!(t.tests, 4, "all four are single-connection tests");
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
    assert_eq!(q1f.compliant_ratio, None, "no access judged");
    let q1m = rollup(&r.quartiers, Some("q1"), "4g");
    assert_eq!(q1m.compliant_ratio, None);
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
    assert_eq!(f.compliant_ratio, None);
    assert_eq!(f.standings.count(report::Standing::InsufficientData), 1);
    assert_eq!(f.standings.count(report::Standing::NoResult), 1);
    eq(f.download_median_ratio.median, 0.99);
    eq(f.peak_download_median_bps, 0.945e9);
    eq(f.consistent_80_80_bps, 0.918e9);
    eq(f.loss_ratio, 3.0 / 250.0);
    let m = rollup(&r.total, None, "4g");
    eq(m.download_median_bps.median, 87.5e6);
    eq(m.loss_ratio, 0.025);
}

/// The scope narrows to a quartier or a building.
pub fn the_scope_narrows_to_a_quartier_or_a_building(store: &dyn Store) {
    load(store);
    let r = build(
        store,
        &request("2026-11-02", "2026-11-02", Some("q1"), None),
    );
    let agents: Vec<&str> = r.accesses.iter().map(|a| a.agent.as_str()).collect();
    assert_eq!(agents, ["a1", "a2"]);
    assert_eq!(r.data.results, 12);
    let r = build(
        store,
        &request("2026-11-02", "2026-11-02", None, Some("b2")),
    );
    assert_eq!(r.accesses.len(), 1);
    assert_eq!(r.accesses[0].agent, "a2");
    assert_eq!(r.data.results, 4);
}

/// An empty period or scope is a report saying no data.
pub fn an_empty_period_or_scope_is_a_report_saying_no_data(store: &dyn Store) {
    load(store);
    // Before any access existed: nothing scheduled, nothing stored.
    let r = build(store, &request("2026-10-01", "2026-10-31", None, None));
    assert!(r.data.no_data);
    assert_eq!(r.data.results, 0);
    assert!(r.accesses.is_empty());
    // A known quartier whose only agent was silent: no data, but its schedule shows.
    let r = build(
        store,
        &request("2026-11-02", "2026-11-02", Some("q2"), None),
    );
    assert!(r.data.no_data);
    assert_eq!(r.accesses[0].coverage.scheduled, 8);
}

/// Peak hours follow Paris time across both daylight-saving changes, on weeknights
/// only; local days have 23 and 25 hours.
pub fn peak_hours_follow_paris_time_across_both_daylight_saving_changes(s: &dyn Store) {
    let utc = |m, d, h, min| {
        Utc.with_ymd_and_hms(2026, m, d, h, min, 0)
            .single()
            .expect("time")
    };
    put(
        s,
        "a4",
        "q3",
        "b4",
        vec![
            // 17:30 UTC is 18:30 in Paris on Friday 27 March (UTC+1): not peak.
            mobile_at(utc(3, 27, 17, 30), 10e6),
            // The same 17:30 UTC is 19:30 on Sunday 29 March (UTC+2, summer time from
            // that day): a weekend evening, not peak.
            mobile_at(utc(3, 29, 17, 30), 1e6),
            // …and 19:30 on Monday 30 March: peak.
            mobile_at(utc(3, 30, 17, 30), 100e6),
            // 21:30 UTC is 23:30 on Friday 23 October (UTC+2): not peak.
            mobile_at(utc(10, 23, 21, 30), 20e6),
            // The same 21:30 UTC is 22:30 on Monday 26 October (UTC+1, winter time
            // since the 25th): peak.
            mobile_at(utc(10, 26, 21, 30), 200e6),
        ],
    );
    let r = build(s, &request("2026-03-27", "2026-10-26", None, None));
    assert_eq!(r.data.results, 5);
    // A fixed UTC+1 reading would have taken 10 and 200 instead; UTC, 20 alone; every
    // evening, 1 too.
    eq(r.accesses[0].peak_download_median_bps, 150e6);
    // Days are local days: 29 March has 23 hours, 25 October 25.
    let (f, t) = report::parse_period("2026-03-29", "2026-03-29", Paris).expect("period");
    assert_eq!((t - f).num_hours(), 23);
    let (f, t) = report::parse_period("2026-10-25", "2026-10-25", Paris).expect("period");
    assert_eq!((t - f).num_hours(), 25);
}

/// Peak hours are read per result, in zones whose offset is not whole hours: in
/// Asia/Kolkata (UTC+5:30) 13:15 UTC is 18:45 and 13:45 UTC is 19:15, one UTC hour.
pub fn peak_hours_are_read_per_result_in_half_hour_zones(s: &dyn Store) {
    let utc = |h, min| {
        Utc.with_ymd_and_hms(2026, 11, 2, h, min, 0)
            .single()
            .expect("time")
    };
    put(
        s,
        "a5",
        "q5",
        "b5",
        vec![
            mobile_at(utc(13, 15), 10e6),
            mobile_at(utc(13, 45), 100e6),
            // 17:45 UTC is 23:15 in Kolkata: past the peak.
            mobile_at(utc(17, 45), 20e6),
        ],
    );
    let kolkata = chrono_tz::Asia::Kolkata;
    let (from, to) = report::parse_period("2026-11-02", "2026-11-02", kolkata).expect("period");
    let req = report::Request {
        scope: report::ReportScope {
            quartier: None,
            building: None,
            from,
            to,
        },
        time_zone: kolkata,
        generated_at: at((2026, 11, 29, 10, 0)),
    };
    let r = build(s, &req);
    assert_eq!(r.data.results, 3);
    // Only 19:15 is in [19:00, 23:00). An hourly lookup read 18:30 for both of the
    // first two (the offset at 13:00 UTC) and 22:30 for the third: 20 Mb/s.
    eq(r.accesses[0].peak_download_median_bps, 100e6);
}

/// A target removed from an access is no longer its target: the latest test's target
/// (none) is the access's, and the access is not judged against the old one.
pub fn a_removed_target_is_no_longer_judged(s: &dyn Store) {
    let mut early = record(
        AccessKind::Wifi,
        "wifi",
        3600.0,
        "0.1.0",
        ok((2026, 11, 2, 10, 0), 200e6, None, true),
    );
    early.verdict.target_down_bps = Some(100e6);
    let mut late = record(
        AccessKind::Wifi,
        "wifi",
        3600.0,
        "0.1.0",
        ok((2026, 11, 2, 11, 0), 210e6, None, true),
    );
    late.verdict.target_down_bps = None;
    late.verdict.down = sonde_proto::VerdictOutcome::Inconclusive;
    put(s, "a6", "q6", "b6", vec![early, late]);
    let r = build(s, &request("2026-11-02", "2026-11-02", None, None));
    let a = access(&r, "a6");
    assert_eq!(a.target_down_bps, None, "the trial target was removed");
    assert_eq!(a.compliant, None);
}

/// Time buckets are the hours of the local clock (§7.2, version 4), compared to the
/// nanosecond: 10:59:59.9 and 11:00:00.3 are two buckets, though 0.4 s apart, and
/// 10:00:00.7 shares the first; the last bucket is the one holding the span's end.
pub fn time_buckets_are_the_hours_of_the_local_clock(s: &dyn Store) {
    let spec = |local: (i32, u32, u32, u32, u32), ms: i64| {
        let mut r = record(
            AccessKind::Ftth,
            "fibre",
            3600.0,
            "0.1.0",
            ok(local, 1e9, None, true),
        );
        r.run.started_at = at(local) + chrono::Duration::milliseconds(ms);
        r
    };
    put(
        s,
        "a7",
        "q7",
        "b7",
        vec![
            spec((2026, 11, 2, 10, 0), 700),
            spec((2026, 11, 2, 10, 59), 59_900),
            spec((2026, 11, 2, 11, 0), 300),
        ],
    );
    let r = build(s, &request("2026-11-02", "2026-11-02", None, None));
    let c = access(&r, "a7").coverage;
    // The life runs from 10:00:00.7 to 24:00: the hours 10:00 to 23:00, 14 buckets
    // (the first one partial); 10:00 and 11:00 hold valid tests. Buckets counted from
    // the first result would have put the last two tests in one.
    assert_eq!((c.buckets_covered, c.buckets), (2, 14));
    // Made at 15:20 the same day, the life ends then: 10:00 to 15:00, 6 buckets.
    let mut req = request("2026-11-02", "2026-11-02", None, None);
    req.generated_at = at((2026, 11, 2, 15, 20));
    let r = build(s, &req);
    let c = access(&r, "a7").coverage;
    assert_eq!((c.buckets_covered, c.buckets), (2, 6));
}

/// No access leaves a headline: one that cannot be judged says why, and counts of
/// tests that were not valid come by reason.
pub fn nothing_disappears_from_a_headline(s: &dyn Store) {
    let ftth = |spec| record(AccessKind::Ftth, "fibre", 3600.0, "0.1.0", spec);
    let day = |h| (2026, 11, 2, h, 0);
    // a10 in b8: judged (three days of tests), compliant.
    put(s, "a10", "q8", "b8", judged_ftth(3, 1e9));
    // a8 in b8: three tests, all limited by the box's network card.
    let nic = |h| {
        ftth(Spec {
            flag: Some(sonde_proto::Flag::NicLimited),
            ..ok(day(h), 0.94e9, None, false)
        })
    };
    put(s, "a8", "q8", "b8", vec![nic(10), nic(11), nic(12)]);
    // a11 in b10: every test skipped, the line was busy; one timed out.
    let skipped = |h| {
        ftth(Spec {
            local: day(h),
            failed: Some(sonde_proto::FailureReason::Busy),
            ..Default::default()
        })
    };
    let timeout = ftth(Spec {
        local: day(13),
        failed: Some(sonde_proto::FailureReason::Timeout),
        ..Default::default()
    });
    put(s, "a11", "q8", "b10", vec![skipped(10), skipped(11)]);
    // a9 in b9: it reported the day before, then fell silent.
    put(
        s,
        "a9",
        "q8",
        "b9",
        vec![ftth(ok((2026, 11, 1, 10, 0), 1e9, None, true))],
    );
    // a12 in b10: tests ran and one failed.
    put(s, "a12", "q8", "b10", vec![timeout]);
    let r = build(s, &request("2026-11-02", "2026-11-04", None, None));
    let standing = |agent| access(&r, agent).standing;
    assert_eq!(standing("a10"), report::Standing::Compliant);
    assert_eq!(standing("a8"), report::Standing::NoValidTest);
    assert_eq!(standing("a11"), report::Standing::NoTestRun);
    assert_eq!(standing("a9"), report::Standing::NoResult);
    assert_eq!(standing("a12"), report::Standing::NoValidTest);
    assert_eq!(access(&r, "a8").not_valid.summary(), "nic_limited=3");
    assert_eq!(access(&r, "a11").not_valid.summary(), "busy=2");
    assert_eq!(access(&r, "a12").not_valid.summary(), "timeout=1");
    // The headline of q8's FTTH: 5 accesses in 3 buildings, 1 compliant, 4 not
    // demonstrated (2 no valid test, 1 no test run, 1 no result). Only 1 was judged.
    let q = rollup(&r.quartiers, Some("q8"), "ftth");
    assert_eq!((q.accesses, q.buildings), (5, 3));
    let st = &q.standings;
    assert_eq!(st.count(report::Standing::Compliant), 1);
    assert_eq!(st.count(report::Standing::NoValidTest), 2);
    assert_eq!(st.count(report::Standing::NoTestRun), 1);
    assert_eq!(st.count(report::Standing::NoResult), 1);
    assert_eq!(
        st.accesses.values().sum::<u64>(),
        5,
        "every access counted once"
    );
    eq(q.compliant_ratio, 1.0);
    assert_eq!(q.not_valid.summary(), "busy=2;timeout=1;nic_limited=3");
}

/// ARCEP's 3/8/30 Mb/s shares come from single-connection tests only, as ARCEP's
/// campaigns measure; a 4G access without such a test has no shares, and says so.
pub fn arcep_shares_count_single_connection_tests_only(s: &dyn Store) {
    let lte = |streams: u32, h: u32, goodput: f64| {
        let mut r = record(
            AccessKind::FourG,
            "mobile",
            3600.0,
            "0.1.0",
            Spec {
                goodput: Some(goodput),
                ..ok((2026, 11, 2, h, 0), goodput * 1.05, None, true)
            },
        );
        r.run.streams = streams;
        r
    };
    // a13: one single-connection test at 5 Mb/s, two 8-stream ones at 2 and 50 Mb/s.
    put(
        s,
        "a13",
        "q9",
        "b11",
        vec![lte(1, 10, 5e6), lte(8, 11, 2e6), lte(8, 12, 50e6)],
    );
    // a14: 8-stream tests only.
    put(s, "a14", "q9", "b12", vec![lte(8, 10, 50e6)]);
    let r = build(s, &request("2026-11-02", "2026-11-02", None, None));
    let t = access(&r, "a13").arcep_thresholds.expect("4G");
    assert_eq!(t.tests, 1);
    // Counting every test would give 2/3, 1/3 and 1/3.
    eq(t.mbps_3, 1.0);
    eq(t.mbps_8, 0.0);
    eq(t.mbps_30, 0.0);
    let t = access(&r, "a14").arcep_thresholds.expect("4G");
    assert_eq!((t.tests, t.mbps_3, t.mbps_30), (0, None, None));
    // The quartier pools its single-connection tests: one.
    let q = rollup(&r.quartiers, Some("q9"), "4g");
    assert_eq!(q.arcep_thresholds.expect("4G").tests, 1);
}

/// A UDPST test's MaxIPLayerCapacity is its IP-layer rate, judged like a TCP one, and
/// each access's capacity is reported beside its TCP figures (METHODOLOGY §3, §7.3).
pub fn a_udpst_access_is_judged_on_its_capacity_and_reports_it(s: &dyn Store) {
    let test = |d: u32, h: u32, udpst: bool| {
        let mut r = record(
            AccessKind::FourG,
            "mobile",
            3600.0,
            "0.1.0",
            ok((2026, 11, d, h, 0), 120e6, None, false),
        );
        if udpst {
            let c = ResultRecord::capacity_example();
            r.run.engine = c.run.engine;
            r.download = None;
            r.upload = None;
            r.capacity = c.capacity;
            r.verdict.down = VerdictOutcome::Met;
        }
        r
    };
    // a17: UDPST only, 12 scheduled tests on 3 weekdays, 9 in peak hours.
    let days = [2, 3, 4]
        .iter()
        .flat_map(|&d| [10, 19, 20, 21].map(|h| (d, h)));
    put(
        s,
        "a17",
        "q11",
        "b17",
        days.map(|(d, h)| test(d, h, true)).collect(),
    );
    // a18: TCP at 120 Mb/s, and one UDPST test.
    put(
        s,
        "a18",
        "q11",
        "b18",
        vec![test(2, 10, false), test(2, 11, false), test(2, 19, true)],
    );
    let r = build(s, &request("2026-11-02", "2026-11-04", Some("q11"), None));
    let a = access(&r, "a17");
    assert_eq!(a.capacity_tests, 12);
    eq(a.capacity_down_bps.median, 148.3e6);
    eq(a.capacity_up_bps.median, 49.4e6);
    eq(a.download_bps.median, 148.3e6);
    eq(a.target_met_ratio, 1.0);
    assert_eq!(
        a.compliant,
        Some(true),
        "148.3 Mb/s is within 2 % of 150: {:?}",
        a.standing
    );
    let b = access(&r, "a18");
    assert_eq!(b.capacity_tests, 1);
    eq(b.capacity_down_bps.median, 148.3e6);
    eq(b.download_bps.median, 120e6);
    // Type 7 (§4) over 120, 120, 148.3: h = 1.8.
    eq(b.download_bps.p90, 120e6 + 0.8 * (148.3e6 - 120e6));
    eq(b.target_met_ratio, 1.0 / 3.0);
}

/// Retention deletes raw results; reports keep their figures.
pub fn retention_deletes_raw_results_but_reports_keep_their_figures(store: &dyn Store) {
    load(store);
    let req = request("2026-11-02", "2026-11-02", None, None);
    let before = build(store, &req);
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
        .results(&crate::ResultQuery {
            limit: 10,
            ..Default::default()
        })
        .expect("page");
    assert!(page.results.is_empty());
    let after = build(store, &req);
    // The figures stay; the pictures went with their records (no link to nothing).
    assert!(before.accesses[0].worst_result_id.is_some());
    let unlinked: Vec<_> = before
        .accesses
        .iter()
        .cloned()
        .map(|mut a| {
            a.worst_result_id = None;
            a.typical_result_id = None;
            a
        })
        .collect();
    assert_eq!(unlinked, after.accesses);
    assert_eq!(before.quartiers, after.quartiers);
}
