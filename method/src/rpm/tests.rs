use super::*;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// Probes every 100 ms from `from` to `to`: foreign ones with handshakes of `rtt` and a
/// GET of `rtt`, self ones of `loaded`.
fn probes((from, to): (u64, u64), rtt: u64, loaded: u64) -> (Vec<ForeignProbe>, Vec<SelfProbe>) {
    let times = (from..to).step_by(100).map(ms);
    let f = times
        .clone()
        .map(|at| ForeignProbe {
            at,
            tcp: ms(rtt),
            tls: ms(rtt),
            http: ms(rtt),
        })
        .collect();
    let s = times
        .map(|at| SelfProbe {
            at,
            http: ms(loaded),
        })
        .collect();
    (f, s)
}

#[test]
fn rpm_is_the_mean_of_the_foreign_and_the_self_responsiveness() {
    // Foreign: 20 ms each phase → 3000 RPM; self: 100 ms → 600 RPM; the mean 1800.
    let (f, s) = probes((0, 1000), 20, 100);
    let w = responsiveness(&f, &s, (ms(0), ms(1000)), 0.95).expect("window");
    assert!((w.rpm - 1800.0).abs() < 1e-6, "{}", w.rpm);
    assert!((w.foreign.rpm - 3000.0).abs() < 1e-6);
    assert!((w.self_probes.rpm - 600.0).abs() < 1e-6);
    assert_eq!(w.foreign.count, 10);
    assert!((w.self_probes.http_s - 0.1).abs() < 1e-9);
    // No self probe: no figure.
    assert!(responsiveness(&f, &[], (ms(0), ms(1000)), 0.95).is_none());
    // Probes outside the window are not counted.
    assert!(responsiveness(&f, &s, (ms(1000), ms(2000)), 0.95).is_none());
}

#[test]
fn the_trimmed_mean_leaves_out_the_values_above_the_percentile() {
    let mut v: Vec<f64> = (1..=20).map(f64::from).collect();
    // 95 % of 20 is 19: the largest value is left out.
    assert_eq!(trimmed_mean(&mut v, 0.95), Some(10.0));
    let mut one = vec![7.0];
    assert_eq!(trimmed_mean(&mut one, 0.95), Some(7.0));
    assert_eq!(trimmed_mean(&mut [], 0.95), None);
    let mut outlier = vec![
        10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0,
        10.0, 10.0, 10.0, 10.0, 900.0,
    ];
    assert_eq!(trimmed_mean(&mut outlier, 0.95), Some(10.0));
}

#[test]
fn load_grows_until_goodput_is_stable_then_responsiveness_ends_the_test() {
    let rule = Rule::draft();
    let mut wc = WorkingConditions::new(rule);
    // Goodput ramps over 4 s, then holds at 100 Mb/s; probes steady from the start.
    let rate = |i: u64| if i < 4 { 25e6 * (i + 1) as f64 } else { 100e6 };
    let mut bytes = 0u64;
    let mut steps = Vec::new();
    let mut connections = 1;
    for i in 0..20u64 {
        bytes += (rate(i) / 8.0) as u64;
        let (f, s) = probes((0, (i + 1) * 1000), 20, 100);
        let step = wc.interval(bytes, (&f, &s), ms((i + 1) * 1000), connections);
        if step == Step::AddConnection {
            connections += 1;
        }
        steps.push(step);
        if step == Step::Done {
            break;
        }
    }
    // A connection is added at every interval until the test ends.
    assert!(
        steps[..steps.len() - 1]
            .iter()
            .all(|s| *s == Step::AddConnection),
        "{steps:?}"
    );
    assert_eq!(steps.last(), Some(&Step::Done), "{steps:?}");
    assert!(steps.len() < 20, "stable before the limit: {steps:?}");
    let out = wc.outcome().expect("outcome");
    assert_eq!(out.confidence, RpmConfidence::High);
    assert!((out.window.rpm - 1800.0).abs() < 1e-6);
    assert!((out.goodput_bps - 100e6).abs() < 1.0, "{}", out.goodput_bps);
}

#[test]
fn an_unstable_test_reports_its_last_window_with_low_confidence() {
    let rule = Rule::draft();
    let mut wc = WorkingConditions::new(rule);
    let mut bytes = 0u64;
    for i in 0..20u64 {
        // Goodput grows 10 Mb/s every interval: its moving average never settles.
        bytes += (i + 1) * 1_250_000;
        let loaded = 50 + 40 * (i % 3);
        let (f, s) = probes((i * 1000, (i + 1) * 1000), 20, loaded);
        let step = wc.interval(bytes, (&f, &s), ms((i + 1) * 1000), 16);
        assert_ne!(step, Step::Done);
        assert_ne!(step, Step::AddConnection, "16 is the most");
    }
    let out = wc.outcome().expect("outcome");
    assert_eq!(out.confidence, RpmConfidence::Low);
    // The last window: the mean of 3000 RPM and 60 s over the mean self time of its
    // four intervals.
    let loaded: f64 = (16..20).map(|i| (50 + 40 * (i % 3)) as f64).sum::<f64>() / 4.0;
    let expected = (3000.0 + 60_000.0 / loaded) / 2.0;
    assert!(
        (out.window.rpm - expected).abs() < 1e-6,
        "{} vs {expected}",
        out.window.rpm
    );
}

#[test]
fn grades_follow_the_draft() {
    assert_eq!(grade(299.0), RpmGrade::Poor);
    assert_eq!(grade(300.0), RpmGrade::Fair);
    assert_eq!(grade(999.0), RpmGrade::Fair);
    assert_eq!(grade(1000.0), RpmGrade::Good);
    assert_eq!(grade(6000.0), RpmGrade::Good);
    assert_eq!(grade(6001.0), RpmGrade::Excellent);
}
