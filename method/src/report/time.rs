//! The report's clock (docs/METHODOLOGY.md §7.1, §7.2): the period asked for, peak
//! hours, local days and the time-covered buckets, all read in the sites' zone at each
//! result's own instant.

use chrono::{DateTime, Datelike, NaiveDate, Offset, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;

/// Peak hours, local time of the site: [19:00, 23:00), on weeknights.
pub const PEAK_HOURS: (u32, u32) = (19, 23);
/// Peak hours' days: Monday to Friday evenings, as the FCC MBA defines them.
pub const PEAK_DAYS: &str = "Mon-Fri";
/// Shortest bucket of the time-covered figure, seconds.
pub const COVER_BUCKET_S: i64 = 3600;

/// A result's start read on the sites' clock: what peak hours, local days and buckets
/// need, computed once per result.
#[derive(Debug, Clone, Copy)]
pub struct LocalTime {
    /// The local date and time.
    pub local: chrono::NaiveDateTime,
}

impl LocalTime {
    /// Whether it is in peak hours (§7.1).
    pub fn peak(&self) -> bool {
        let weeknight = !matches!(self.local.weekday(), Weekday::Sat | Weekday::Sun);
        weeknight && (PEAK_HOURS.0..PEAK_HOURS.1).contains(&self.local.hour())
    }

    /// Its local day.
    pub fn day(&self) -> NaiveDate {
        self.local.date()
    }

    /// Its time-covered bucket of `hours` ([`clock_bucket`]).
    pub fn bucket(&self, hours: i64) -> i64 {
        let day = i64::from(self.local.date().num_days_from_ce());
        day * slots_per_day(hours) + i64::from(self.local.hour()) / hours
    }
}

/// Reads instants on a zone's clock, remembering the offset of the last UTC day whose
/// two ends had the same one (no change of offset that day), so results of one day
/// cost one lookup in the zone's rules, not one each.
#[derive(Debug, Clone)]
pub struct LocalClock {
    tz: Tz,
    /// (UTC day, its offset in seconds) when the offset held all that day.
    day: Option<(i64, i32)>,
}

const DAY_NS: i64 = 86_400 * 1_000_000_000;

impl LocalClock {
    /// A clock in `tz`.
    pub fn new(tz: Tz) -> Self {
        LocalClock { tz, day: None }
    }

    fn offset_at(&self, ns: i64) -> i32 {
        let t = DateTime::from_timestamp_nanos(ns);
        self.tz
            .offset_from_utc_datetime(&t.naive_utc())
            .fix()
            .local_minus_utc()
    }

    /// `t_ns` (Unix ns) on the clock.
    pub fn read(&mut self, t_ns: i64) -> LocalTime {
        let day = t_ns.div_euclid(DAY_NS);
        let offset = match self.day {
            Some((d, off)) if d == day => off,
            _ => {
                let (a, b) = (
                    self.offset_at(day * DAY_NS),
                    self.offset_at((day + 1) * DAY_NS - 1),
                );
                if a == b {
                    self.day = Some((day, a));
                    a
                } else {
                    self.offset_at(t_ns)
                }
            }
        };
        let utc = DateTime::from_timestamp_nanos(t_ns).naive_utc();
        LocalTime {
            local: utc + chrono::Duration::seconds(i64::from(offset)),
        }
    }
}

/// Whether `t` falls in peak hours (§7.1): 19:00 to 23:00 local time in `tz`, Monday to
/// Friday, read for each result (the zone's offset at that instant, so +5:30 zones
/// change hour at :30 UTC): the figures and the results file both use it.
pub fn is_peak_hour(tz: Tz, t: DateTime<Utc>) -> bool {
    local_time(tz, t).peak()
}

/// The local calendar day of `t` in `tz`.
pub fn local_day(tz: Tz, t: DateTime<Utc>) -> NaiveDate {
    tz.from_utc_datetime(&t.naive_utc()).date_naive()
}

/// Hours of the time-covered buckets of an access: one, or its interval rounded up to
/// whole hours when longer.
pub fn bucket_hours(interval_s: Option<f64>) -> i64 {
    interval_s
        .map_or(1, |i| {
            ((i.max(0.0).ceil() as i64) + COVER_BUCKET_S - 1).div_euclid(COVER_BUCKET_S)
        })
        .max(1)
}

/// Slots of `hours` in a local day: the last one is shorter when `hours` does not
/// divide 24.
fn slots_per_day(hours: i64) -> i64 {
    (24 + hours - 1) / hours
}

/// The bucket holding the instant `t_ns` (Unix ns): the slot of the zone's clock it
/// falls in, local days being cut at 00:00, `hours`:00, 2×`hours`:00… A slot lasts what
/// the clock makes it: the one holding the repeated hour at the end of summer time is
/// an hour longer, the one holding the skipped hour an hour shorter.
pub fn clock_bucket(tz: Tz, t_ns: i64, hours: i64) -> i64 {
    local_time(tz, DateTime::from_timestamp_nanos(t_ns)).bucket(hours)
}

/// `t` on `tz`'s clock, in one lookup.
fn local_time(tz: Tz, t: DateTime<Utc>) -> LocalTime {
    LocalTime {
        local: tz.from_utc_datetime(&t.naive_utc()).naive_local(),
    }
}

/// Buckets of `[start_ns, end_ns)`: every slot it touches, the first and last partial
/// ones included, and none the clock skips (one-hour slots on the night summer time
/// starts).
pub fn buckets_between(tz: Tz, start_ns: i64, end_ns: i64, hours: i64) -> u64 {
    if end_ns <= start_ns {
        return 0;
    }
    let (first, last) = (
        clock_bucket(tz, start_ns, hours),
        clock_bucket(tz, end_ns - 1, hours),
    );
    let mut n = last - first + 1;
    if hours == 1 {
        let day = |ns: i64| local_day(tz, DateTime::from_timestamp_nanos(ns));
        let mut d = day(start_ns);
        while d <= day(end_ns - 1) {
            for h in skipped_hours(tz, d) {
                let id = i64::from(d.num_days_from_ce()) * 24 + i64::from(h);
                n -= i64::from((first..=last).contains(&id));
            }
            let Some(next) = d.succ_opt() else { break };
            d = next;
        }
    }
    n.max(1) as u64
}

/// The local hours that never happen on `day` (the clock jumps over them).
fn skipped_hours(tz: Tz, day: NaiveDate) -> Vec<u32> {
    let offset = |d: NaiveDate| {
        tz.offset_from_utc_datetime(&day_start(d, tz).naive_utc())
            .fix()
    };
    let Some(next) = day.succ_opt() else {
        return Vec::new();
    };
    if offset(day).local_minus_utc() >= offset(next).local_minus_utc() {
        return Vec::new();
    }
    (0..24)
        .filter(|h| {
            let at = |m, s| {
                day.and_hms_opt(*h, m, s)
                    .map(|t| tz.from_local_datetime(&t))
            };
            matches!(at(0, 0), Some(chrono::LocalResult::None))
                && matches!(at(59, 59), Some(chrono::LocalResult::None))
        })
        .collect()
}

/// The period `[from, to)` of `--from FROM --to TO`: each is a calendar day
/// (`YYYY-MM-DD`, in `tz`; `to`'s day is included) or an RFC 3339 instant (`to`
/// excluded). Errors are one line, naming the argument.
pub fn parse_period(
    from: &str,
    to: &str,
    tz: Tz,
) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
    let parse = |name: &str, s: &str, end: bool| -> Result<DateTime<Utc>, String> {
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            let day = if end { d.succ_opt().unwrap_or(d) } else { d };
            return Ok(day_start(day, tz));
        }
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                format!("--{name} {s:?} is not a date (YYYY-MM-DD) or an RFC 3339 instant")
            })
    };
    let (f, t) = (parse("from", from, false)?, parse("to", to, true)?);
    if f >= t {
        return Err(format!(
            "--from {from} is not before --to {to} ({} ≥ {})",
            f.to_rfc3339(),
            t.to_rfc3339()
        ));
    }
    Ok((f, t))
}

/// The instant a day starts in `tz` (the first one, should midnight repeat).
pub fn day_start(day: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    match tz.from_local_datetime(&midnight).earliest() {
        Some(t) => t.with_timezone(&Utc),
        // Should a zone skip midnight, the day starts an hour later.
        None => (midnight + chrono::Duration::hours(1)).and_utc(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, h, min, 0)
            .single()
            .expect("time")
    }

    #[test]
    fn peak_hours_start_at_19_local_in_zones_off_the_whole_hour() {
        // (zone, UTC instant of 19:00 local on Monday 2 November 2026)
        let cases = [
            (chrono_tz::Asia::Kolkata, utc(2, 13, 30)),      // +5:30
            (chrono_tz::Pacific::Marquesas, utc(3, 4, 30)),  // −9:30, the next UTC day
            (chrono_tz::Pacific::Chatham, utc(2, 5, 15)),    // +13:45, summer time
            (chrono_tz::Australia::Lord_Howe, utc(2, 8, 0)), // +11, summer time
            (chrono_tz::America::St_Johns, utc(2, 22, 30)),  // −3:30, winter time
            (chrono_tz::Europe::Paris, utc(2, 18, 0)),       // +1
        ];
        for (tz, seven_pm) in cases {
            let minute = chrono::Duration::minutes(1);
            assert!(!is_peak_hour(tz, seven_pm - minute), "{tz} 18:59");
            assert!(is_peak_hour(tz, seven_pm), "{tz} 19:00");
            let eleven_pm = seven_pm + chrono::Duration::hours(4);
            assert!(is_peak_hour(tz, eleven_pm - minute), "{tz} 22:59");
            assert!(!is_peak_hour(tz, eleven_pm), "{tz} 23:00");
        }
    }

    #[test]
    fn the_cached_clock_reads_every_instant_as_the_zone_does() {
        // Every 7 minutes across both 2026 changes in Paris and Lord Howe's half-hour
        // one, and Kolkata: the clock that remembers a day's offset agrees with a
        // lookup per instant.
        for tz in [
            chrono_tz::Europe::Paris,
            chrono_tz::Australia::Lord_Howe,
            chrono_tz::Asia::Kolkata,
        ] {
            let mut clock = LocalClock::new(tz);
            for (m, d) in [(3, 27), (4, 3), (10, 23)] {
                let start = Utc
                    .with_ymd_and_hms(2026, m, d, 0, 0, 0)
                    .single()
                    .expect("t");
                for i in 0..(4 * 24 * 60 / 7) {
                    let t = start + chrono::Duration::minutes(7 * i);
                    let want = tz.from_utc_datetime(&t.naive_utc()).naive_local();
                    let got = clock.read(t.timestamp_nanos_opt().expect("ns")).local;
                    assert_eq!(got, want, "{tz} {t}");
                }
            }
        }
    }

    #[test]
    fn peak_hours_are_weeknights_only() {
        let paris = chrono_tz::Europe::Paris;
        // 20:00 Paris is 19:00 UTC in November. 6 Nov is a Friday, 7 a Saturday, 8 a
        // Sunday, 9 a Monday.
        assert!(is_peak_hour(paris, utc(6, 19, 0)));
        assert!(!is_peak_hour(paris, utc(7, 19, 0)));
        assert!(!is_peak_hour(paris, utc(8, 19, 0)));
        assert!(is_peak_hour(paris, utc(9, 19, 0)));
        // The weekday is the local one: 00:30 UTC Saturday is Friday 19:00 in Montreal…
        let montreal = chrono_tz::America::Toronto;
        assert!(is_peak_hour(montreal, utc(7, 0, 30)));
        // …and Friday 19:30 in Kolkata is 14:00 UTC Friday.
        assert!(is_peak_hour(chrono_tz::Asia::Kolkata, utc(6, 14, 0)));
    }

    #[test]
    fn buckets_follow_the_local_clock_and_its_changes() {
        let ns = |t: DateTime<Utc>| t.timestamp_nanos_opt().expect("ns");
        let kolkata = chrono_tz::Asia::Kolkata;
        // 13:29 and 13:31 UTC are 18:59 and 19:01 in Kolkata: two buckets.
        assert_ne!(
            clock_bucket(kolkata, ns(utc(2, 13, 29)), 1),
            clock_bucket(kolkata, ns(utc(2, 13, 31)), 1)
        );
        assert_eq!(
            clock_bucket(kolkata, ns(utc(2, 13, 31)), 1),
            clock_bucket(kolkata, ns(utc(2, 14, 29)), 1)
        );
        // 13:45 to 15:45 UTC is 19:15 to 21:15 local: three clock hours.
        assert_eq!(
            buckets_between(kolkata, ns(utc(2, 13, 45)), ns(utc(2, 15, 45)), 1),
            3
        );
        assert_eq!(
            buckets_between(kolkata, ns(utc(2, 14, 0)), ns(utc(2, 16, 0)), 1),
            3,
            "14:00 to 16:00 UTC, 19:30 to 21:30 local, touches 19:00, 20:00 and 21:00 \
             (in whole UTC hours it would be two)"
        );
        // Paris: a local day has 24 hourly slots and 8 of three hours, the day summer
        // time ends (25 October 2026: 02:00-03:00 lasts two hours) too; the day it
        // starts (29 March 2026) the skipped hour is no slot: 23.
        let paris = chrono_tz::Europe::Paris;
        for (m, d, hourly) in [(10, 25, 24), (3, 29, 23), (11, 2, 24)] {
            let day = NaiveDate::from_ymd_opt(2026, m, d).expect("day");
            let (a, b) = (
                ns(day_start(day, paris)),
                ns(day_start(day.succ_opt().expect("day"), paris)),
            );
            assert_eq!(buckets_between(paris, a, b, 1), hourly, "{day}");
            assert_eq!(buckets_between(paris, a, b, 3), 8, "{day}");
            assert_eq!(buckets_between(paris, a, a, 1), 0);
            // Two days from there.
            let c = ns(day_start(day + chrono::Days::new(2), paris));
            assert_eq!(buckets_between(paris, a, c, 1), hourly + 24, "{day}");
        }
        // 01:30 to 03:30 local on 29 March 2026 (00:30 to 01:30 UTC): 01:00 and 03:00.
        let march = |h, min| {
            ns(Utc
                .with_ymd_and_hms(2026, 3, 29, h, min, 0)
                .single()
                .expect("time"))
        };
        assert_eq!(buckets_between(paris, march(0, 30), march(1, 30), 1), 2);
        assert_eq!(bucket_hours(Some(10_800.0)), 3);
        assert_eq!(bucket_hours(Some(3_601.0)), 2);
        assert_eq!(bucket_hours(Some(600.0)), 1);
        assert_eq!(bucket_hours(None), 1);
    }
}
