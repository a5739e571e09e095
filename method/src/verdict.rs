//! The verdict rule of docs/METHODOLOGY.md ("Verdict"): the IP-layer rate of each
//! direction against the access's target, with a tolerance, and the case of a local
//! port that cannot carry the target. Pure code.

use sonde_proto::{AccessKind, Flag, ResultRecord, Verdict, VerdictOutcome};

/// Relative tolerance below the target: the accuracy sonde demonstrates against known
/// link ceilings (docs/METHODOLOGY.md, "Verdict").
pub const TOLERANCE: f64 = 0.02;

/// Ethernet bytes on the wire beyond the IP packet: header 14, FCS 4, preamble and
/// start delimiter 8, inter-frame gap 12.
const ETHERNET_OVERHEAD: f64 = 38.0;

/// Default IP-layer targets `(down, up)` of an access kind, bit/s: the programme's
/// promises (FTTH more than 1 Gb/s, 4G more than 150 Mb/s down). Wi-Fi is judged on
/// signal and a configured rate, so has no default rate target.
pub fn default_targets(kind: AccessKind) -> (Option<f64>, Option<f64>) {
    match kind {
        AccessKind::Ftth => (Some(1e9), None),
        AccessKind::FourG => (Some(150e6), None),
        _ => (None, None),
    }
}

/// Highest IP-layer rate a port of `link_speed_bps` can carry with `mtu`-byte packets.
pub fn port_ip_capacity(link_speed_bps: u64, mtu: Option<u32>) -> f64 {
    let mtu = f64::from(mtu.unwrap_or(1500));
    link_speed_bps as f64 * mtu / (mtu + ETHERNET_OVERHEAD)
}

/// The IP-layer rate each direction of `r` is judged on, `(down, up)` in bit/s: the
/// TCP figure's `ip_rate_bps`, or for a UDPST test its MaxIPLayerCapacity
/// (`capacity.*.max_ip_capacity_bps`, docs/METHODOLOGY.md §10). A record holds one
/// or the other, as its engine measures; the TCP figure would win were both there.
pub fn ip_rates(r: &ResultRecord) -> (Option<f64>, Option<f64>) {
    let cap = r.capacity.as_ref();
    let down = r.download.as_ref().map(|t| t.ip_rate_bps).or_else(|| {
        cap.and_then(|c| c.down.as_ref())
            .map(|f| f.max_ip_capacity_bps)
    });
    let up = r.upload.as_ref().map(|t| t.ip_rate_bps).or_else(|| {
        cap.and_then(|c| c.up.as_ref())
            .map(|f| f.max_ip_capacity_bps)
    });
    (down, up)
}

fn judge_one(
    target: Option<f64>,
    measured: Option<f64>,
    port_capacity: Option<f64>,
) -> VerdictOutcome {
    let Some(target) = target else {
        return VerdictOutcome::NoTarget;
    };
    let Some(ip_rate_bps) = measured else {
        return VerdictOutcome::Inconclusive;
    };
    let threshold = target * (1.0 - TOLERANCE);
    if ip_rate_bps >= threshold {
        VerdictOutcome::Met
    } else if port_capacity.is_some_and(|cap| cap < threshold) {
        VerdictOutcome::PortLimited
    } else {
        VerdictOutcome::NotMet
    }
}

/// Judges both directions' IP-layer rates (`down`, `up`, bit/s; [`ip_rates`] of a
/// record) against `targets` (`(down, up)`, bit/s at the IP layer; usually
/// [`default_targets`] of the access kind, or the access's configured ones), adding
/// `nic_limited` to `flags` when the port cannot carry a target.
pub fn judge(
    targets: (Option<f64>, Option<f64>),
    link_speed_bps: Option<u64>,
    mtu: Option<u32>,
    down: Option<f64>,
    up: Option<f64>,
    flags: &mut Vec<Flag>,
) -> Verdict {
    let (target_down, target_up) = targets;
    let capacity = link_speed_bps.map(|s| port_ip_capacity(s, mtu));
    let below =
        |t: Option<f64>| matches!((t, capacity), (Some(t), Some(c)) if c < t * (1.0 - TOLERANCE));
    if (below(target_down) || below(target_up)) && !flags.contains(&Flag::NicLimited) {
        flags.push(Flag::NicLimited);
    }
    Verdict {
        target_down_bps: target_down,
        target_up_bps: target_up,
        tolerance: TOLERANCE,
        down: judge_one(target_down, down, capacity),
        up: judge_one(target_up, up, capacity),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_udpst_record_is_judged_on_its_max_ip_capacity() {
        let mut r = ResultRecord::schema_example();
        let tcp = r.download.as_ref().map(|t| t.ip_rate_bps);
        assert!(tcp.is_some());
        assert_eq!(ip_rates(&r).0, tcp, "a TCP record: its IP rate");
        r.download = None;
        r.upload = None;
        assert_eq!(ip_rates(&r), (None, None));
        r.capacity = ResultRecord::capacity_example().capacity;
        assert_eq!(ip_rates(&r), (Some(148.3e6), Some(49.4e6)));
        let (down, up) = ip_rates(&r);
        let v = judge(
            default_targets(AccessKind::FourG),
            None,
            None,
            down,
            up,
            &mut vec![],
        );
        assert_eq!(
            (v.down, v.up),
            (VerdictOutcome::Met, VerdictOutcome::NoTarget),
            "148.3 Mb/s is within 2 % of 150"
        );
        if let Some(d) = r.capacity.as_mut().and_then(|c| c.down.as_mut()) {
            d.max_ip_capacity_bps = 140e6;
        }
        let v = judge(
            (Some(150e6), None),
            None,
            None,
            ip_rates(&r).0,
            None,
            &mut vec![],
        );
        assert_eq!(v.down, VerdictOutcome::NotMet);
    }

    #[test]
    fn ftth_met_within_tolerance_and_not_met_below() {
        let mut flags = vec![];
        let v = judge(
            default_targets(AccessKind::Ftth),
            Some(2_500_000_000),
            None,
            Some(1.9e9),
            None,
            &mut flags,
        );
        assert_eq!(
            (v.down, v.up),
            (VerdictOutcome::Met, VerdictOutcome::NoTarget)
        );
        let v = judge(
            default_targets(AccessKind::Ftth),
            None,
            None,
            Some(0.985e9),
            None,
            &mut flags,
        );
        assert_eq!(v.down, VerdictOutcome::Met, "within the 2 % tolerance");
        let v = judge(
            default_targets(AccessKind::Ftth),
            None,
            None,
            Some(0.97e9),
            None,
            &mut flags,
        );
        assert_eq!(v.down, VerdictOutcome::NotMet);
        assert!(flags.is_empty());
    }

    #[test]
    fn gigabit_port_against_a_gigabit_promise_is_port_limited_not_failed() {
        // 1 GbE carries at most 1e9 * 1500 / 1538 = 975 Mb/s of IP.
        assert!((port_ip_capacity(1_000_000_000, None) - 975.29e6).abs() < 0.01e6);
        let mut flags = vec![];
        let v = judge(
            default_targets(AccessKind::Ftth),
            Some(1_000_000_000),
            Some(1500),
            Some(0.975e9),
            None,
            &mut flags,
        );
        assert_eq!(v.down, VerdictOutcome::PortLimited);
        assert_eq!(flags, vec![Flag::NicLimited]);
    }

    #[test]
    fn four_g_target_and_missing_figures() {
        let mut flags = vec![];
        let v = judge(
            default_targets(AccessKind::FourG),
            Some(1_000_000_000),
            None,
            Some(160e6),
            None,
            &mut flags,
        );
        assert_eq!(v.down, VerdictOutcome::Met);
        assert!(flags.is_empty(), "1 GbE is plenty for 150 Mb/s");
        let v = judge(
            default_targets(AccessKind::FourG),
            None,
            None,
            None,
            None,
            &mut flags,
        );
        assert_eq!(v.down, VerdictOutcome::Inconclusive);
        let v = judge(
            default_targets(AccessKind::Other),
            None,
            None,
            Some(1.0),
            None,
            &mut flags,
        );
        assert_eq!(v.down, VerdictOutcome::NoTarget);
    }
}
