//! How an access is judged (docs/METHODOLOGY.md §7.3, version 4): per target
//! sub-period, on the all-hours and the peak-hour median, and only with a minimum
//! sample of scheduled tests spread over days and weeknights.

use super::time::LocalTime;
use crate::verdict::TOLERANCE;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sonde_proto::stats::quantile_select;

/// The least a verdict stands on: valid **scheduled** tests (manual probes do not
/// count), on enough local days, with enough of them in peak hours on enough
/// weeknights, so one evening or one good day cannot decide (§7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MinSample {
    /// Valid scheduled tests.
    pub tests: u64,
    /// Distinct local days holding one.
    pub days: u64,
    /// Of them in peak hours.
    pub peak_tests: u64,
    /// Distinct weeknights holding a peak-hour one.
    pub peak_days: u64,
}

/// Methodology 4's minimum sample: 10 valid scheduled tests on 3 days, 5 of them in
/// peak hours on 3 weeknights.
pub const MIN_SAMPLE: MinSample = MinSample {
    tests: 10,
    days: 3,
    peak_tests: 5,
    peak_days: 3,
};

/// What a sub-period's valid scheduled tests amount to, counted as they come (in time
/// order, so a new day is one unlike the last).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// Valid scheduled tests.
    pub tests: u64,
    /// Distinct local days.
    pub days: u64,
    /// Of them in peak hours.
    pub peak_tests: u64,
    /// Distinct weeknights with a peak-hour one.
    pub peak_days: u64,
    #[serde(skip)]
    last_day: Option<NaiveDate>,
    #[serde(skip)]
    last_peak_day: Option<NaiveDate>,
}

impl Sample {
    fn add(&mut self, day: NaiveDate, peak: bool) {
        self.tests += 1;
        if self.last_day != Some(day) {
            self.days += 1;
            self.last_day = Some(day);
        }
        if peak {
            self.peak_tests += 1;
            if self.last_peak_day != Some(day) {
                self.peak_days += 1;
                self.last_peak_day = Some(day);
            }
        }
    }

    /// Whether it reaches `min`.
    pub fn suffices(&self, min: &MinSample) -> bool {
        self.tests >= min.tests
            && self.days >= min.days
            && self.peak_tests >= min.peak_tests
            && self.peak_days >= min.peak_days
    }
}

/// A stretch of the period with one download target (§7.3): judged on its own tests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetPeriod {
    /// The target of its tests, bit/s (`None`: no target, not judged).
    pub target_down_bps: Option<f64>,
    /// From its first valid test (the first sub-period: from the access's span start).
    pub from: DateTime<Utc>,
    /// To the next sub-period's first valid test, or the end of the span.
    pub to: DateTime<Utc>,
    /// Valid tests, scheduled and manual.
    pub valid: u64,
    /// Its valid scheduled tests, against the minimum sample.
    pub sample: Sample,
    /// Whether `sample` reaches the minimum: the sub-period can be judged.
    pub sufficient: bool,
    /// Median download of its valid tests, bit/s.
    pub download_median_bps: Option<f64>,
    /// Median download of its valid peak-hour tests, bit/s.
    pub peak_download_median_bps: Option<f64>,
    /// Both medians reach the target (within the tolerance); `None` when not judged.
    pub compliant: Option<bool>,
}

/// The sub-period being read.
#[derive(Debug)]
pub(super) struct Segment {
    target: Option<f64>,
    from: DateTime<Utc>,
    down: Vec<f64>,
    peak: Vec<f64>,
    valid: u64,
    sample: Sample,
}

impl Segment {
    pub(super) fn new(target: Option<f64>, from: DateTime<Utc>) -> Self {
        Segment {
            target,
            from,
            down: Vec::new(),
            peak: Vec::new(),
            valid: 0,
            sample: Sample::default(),
        }
    }

    pub(super) fn target(&self) -> Option<f64> {
        self.target
    }

    /// Adds a valid test started at `t`.
    pub(super) fn add(&mut self, at: LocalTime, down: Option<f64>, scheduled: bool) {
        let peak = at.peak();
        self.valid += 1;
        if let Some(d) = down {
            self.down.push(d);
            if peak {
                self.peak.push(d);
            }
        }
        if scheduled {
            self.sample.add(at.day(), peak);
        }
    }

    /// The sub-period, ended at `to`.
    pub(super) fn close(mut self, to: DateTime<Utc>) -> TargetPeriod {
        let median = |v: &mut Vec<f64>| quantile_select(v, 0.5);
        let (down, peak) = (median(&mut self.down), median(&mut self.peak));
        let sufficient = self.sample.suffices(&MIN_SAMPLE);
        let reaches = |m: Option<f64>, t: f64| m.is_some_and(|m| m >= t * (1.0 - TOLERANCE));
        let compliant = match self.target {
            Some(t) if sufficient => Some(reaches(down, t) && reaches(peak, t)),
            _ => None,
        };
        TargetPeriod {
            target_down_bps: self.target,
            from: self.from,
            to,
            valid: self.valid,
            sample: self.sample,
            sufficient,
            download_median_bps: down,
            peak_download_median_bps: peak,
            compliant,
        }
    }
}
