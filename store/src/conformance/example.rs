//! The worked example's dataset: three accesses in two quartiers over 2 November 2026
//! (Paris time), every result chosen so each report figure can be computed by hand
//! (see [`super::report`]).

use crate::{Delivery, Store};
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Europe::Paris;
use sonde_method::report::{self, AccessReport, Builder, Report, ReportScope, Request, Rollup};
use sonde_proto::{
    AccessKind, FailureReason, Flag, LatencyStats, Outcome, ResultRecord, VerdictOutcome,
};

/// One result's figures; `None` leaves the direction out.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spec {
    /// Local (Europe/Paris) start.
    pub local: (i32, u32, u32, u32, u32),
    /// A failure reason: the test failed (or was skipped).
    pub failed: Option<FailureReason>,
    /// A validity flag.
    pub flag: Option<Flag>,
    /// Download IP-layer rate, bit/s.
    pub down: Option<f64>,
    /// Download goodput, bit/s (95 % of the rate by default).
    pub goodput: Option<f64>,
    /// Upload IP-layer rate, bit/s.
    pub up: Option<f64>,
    /// Whether the verdict says met.
    pub met: bool,
    /// Idle latency median, seconds.
    pub idle: f64,
    /// Loaded latency median, seconds.
    pub loaded: f64,
    /// Idle probes received of 50.
    pub received: u32,
}

/// The UTC instant of a Paris local time.
pub fn at(local: (i32, u32, u32, u32, u32)) -> DateTime<Utc> {
    let (y, m, d, h, min) = local;
    Paris
        .with_ymd_and_hms(y, m, d, h, min, 0)
        .single()
        .expect("unambiguous local time")
        .with_timezone(&Utc)
}

/// A result of `access` (kind, schedule, agent version) with the figures of `s`.
pub fn record(
    kind: AccessKind,
    access: &str,
    interval_s: f64,
    version: &str,
    s: Spec,
) -> ResultRecord {
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

/// An hourly 4G result started at the UTC instant `utc`, downloading `down` bit/s.
pub fn mobile_at(utc: DateTime<Utc>, down: f64) -> ResultRecord {
    let mut r = record(
        AccessKind::FourG,
        "mobile",
        3600.0,
        "0.1.0",
        ok((2026, 1, 1, 0, 0), down, None, true),
    );
    r.run.started_at = utc;
    r
}

/// Hourly FTTH tests of `down` bit/s at 10:00, 20:00, 21:00 and 22:00 on each of the
/// `days` days from Monday 2 November 2026: with three days, 12 valid scheduled tests
/// on 3 days, 9 at peak on 3 weeknights, past the minimum sample.
pub fn judged_ftth(days: u32, down: f64) -> Vec<ResultRecord> {
    (0..days)
        .flat_map(|d| [10, 20, 21, 22].map(move |h| (2 + d, h)))
        .map(|(d, h)| {
            record(
                AccessKind::Ftth,
                "fibre",
                3600.0,
                "0.1.0",
                ok((2026, 11, d, h, 0), down, None, true),
            )
        })
        .collect()
}

/// Stores `records` as delivered by `agent` of `q`/`b`.
pub fn put(store: &dyn Store, agent: &str, q: &str, b: &str, records: Vec<ResultRecord>) {
    let d = Delivery {
        agent_id: agent.into(),
        quartier: Some(q.into()),
        building: Some(b.into()),
    };
    store.insert(&d, &records, Utc::now()).expect("insert");
}

/// A valid result with these rates.
pub fn ok(local: (i32, u32, u32, u32, u32), down: f64, up: Option<f64>, met: bool) -> Spec {
    Spec {
        local,
        down: Some(down),
        up,
        met,
        received: 50,
        ..Default::default()
    }
}

/// Loads the dataset of the worked example into `s`.
pub fn load(s: &dyn Store) {
    let day = |h, m| (2026, 11, 2, h, m);
    // a1: q1/b1, FTTH every 3 h. A result the day before (outside the period, and
    // far off) only dates the access.
    let ftth = |spec| record(AccessKind::Ftth, "fibre", 10_800.0, "0.1.0", spec);
    put(
        s,
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
    // a2: q1/b2, 4G every 6 h, agent 0.2.0, one connection per test (as ARCEP).
    let lte = |spec| {
        let mut r = record(AccessKind::FourG, "mobile", 21_600.0, "0.2.0", spec);
        r.run.streams = 1;
        r
    };
    put(
        s,
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
        s,
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
}

/// A report request over local days `from`..=`to` in Paris.
pub fn request(from: &str, to: &str, quartier: Option<&str>, building: Option<&str>) -> Request {
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

/// `got` is `want` to 1e-12 (relative).
#[track_caller]
pub fn eq(got: Option<f64>, want: f64) {
    let g = got.unwrap_or_else(|| panic!("no figure, expected {want}"));
    assert!(
        (g - want).abs() <= want.abs() * 1e-12,
        "got {g}, expected {want}"
    );
}

/// The report of `agent`'s access.
pub fn access<'a>(r: &'a Report, agent: &str) -> &'a AccessReport {
    r.accesses
        .iter()
        .find(|a| a.agent == agent)
        .expect("access")
}

/// The roll-up of `quartier` (or the scope) and `kind`.
pub fn rollup<'a>(rows: &'a [Rollup], quartier: Option<&str>, kind: &str) -> &'a Rollup {
    rows.iter()
        .find(|r| r.quartier.as_deref() == quartier && r.kind == kind)
        .expect("roll-up")
}

/// The report of `request` from `store`'s scan.
pub fn build(store: &dyn Store, request: &Request) -> Report {
    let mut builder = Builder::new(request);
    store
        .report_scan(&request.scope, false, &mut builder)
        .expect("report scan");
    let mut report = builder.finish();
    crate::resolve_pictures(store, &mut report).expect("pictures");
    report
}
