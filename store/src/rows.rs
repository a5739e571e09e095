//! The one mapping from a stored result to the row reports read (docs/METHODOLOGY.md
//! §7). Every backend stores [`ReportRow::of`] beside the record, so a signed report's
//! figures never depend on which backend kept the results.

use crate::types::Delivery;
use sonde_method::report::Fact;
use sonde_proto::ResultRecord;

/// A result as reports read it, with the access it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRow {
    /// The result's id.
    pub id: String,
    /// Agent id (from the delivery, never the payload).
    pub agent_id: String,
    /// Access name (`""` when the record has none).
    pub access: String,
    /// Quartier (from the delivery; `""` when none).
    pub quartier: String,
    /// Building (from the delivery; `""` when none).
    pub building: String,
    /// Access kind.
    pub kind: &'static str,
    /// Seconds between the access's scheduled runs, from the record.
    pub interval_s: Option<f64>,
    /// `run.started_at`, Unix nanoseconds.
    pub started_at_ns: i64,
    /// `status.outcome`.
    pub outcome: &'static str,
    /// `status.reason`.
    pub reason: Option<&'static str>,
    /// `flags`, comma-separated wire names.
    pub flags: String,
    /// The download IP-layer rate the verdict is on (`sonde_method::verdict::ip_rates`):
    /// `download.ip_rate_bps`, or a UDPST test's MaxIPLayerCapacity.
    pub down_bps: Option<f64>,
    /// The upload IP-layer rate, likewise.
    pub up_bps: Option<f64>,
    /// `capacity.down.max_ip_capacity_bps`.
    pub cap_down_bps: Option<f64>,
    /// `capacity.up.max_ip_capacity_bps`.
    pub cap_up_bps: Option<f64>,
    /// `download.goodput_bps`.
    pub down_goodput_bps: Option<f64>,
    /// `verdict.target_down_bps`.
    pub target_down_bps: Option<f64>,
    /// `verdict.down`.
    pub verdict_down: &'static str,
    /// `idle_latency.median_s`.
    pub idle_s: Option<f64>,
    /// `download.loaded_latency.median_s`.
    pub loaded_s: Option<f64>,
    /// `idle_latency.sent`.
    pub probes_sent: Option<i64>,
    /// `idle_latency.received`.
    pub probes_received: Option<i64>,
    /// `agent.version`.
    pub version: String,
    /// `run.streams`.
    pub streams: Option<i64>,
    /// `responsiveness.down.rpm`.
    pub rpm_down: Option<f64>,
    /// `responsiveness.up.rpm`.
    pub rpm_up: Option<f64>,
}

/// Unix nanoseconds of `t` (the far future past what an `i64` holds).
pub fn nanos(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

impl ReportRow {
    /// The row of `record`, delivered by `delivery`.
    pub fn of(delivery: &Delivery, r: &ResultRecord) -> ReportRow {
        let idle = r.idle_latency.as_ref();
        let down = r.download.as_ref();
        let (down_bps, up_bps) = sonde_method::verdict::ip_rates(r);
        let cap = r.capacity.as_ref();
        ReportRow {
            id: r.id.to_string(),
            agent_id: delivery.agent_id.clone(),
            access: r.access.name.clone().unwrap_or_default(),
            quartier: delivery.quartier.clone().unwrap_or_default(),
            building: delivery.building.clone().unwrap_or_default(),
            kind: r.access.kind.as_str(),
            interval_s: r.run.interval_s,
            started_at_ns: nanos(r.run.started_at),
            outcome: r.status.outcome.as_str(),
            reason: r.status.reason.map(|x| x.as_str()),
            flags: flags_text(&r.flags),
            down_bps,
            up_bps,
            cap_down_bps: cap
                .and_then(|c| c.down.as_ref())
                .map(|f| f.max_ip_capacity_bps),
            cap_up_bps: cap
                .and_then(|c| c.up.as_ref())
                .map(|f| f.max_ip_capacity_bps),
            down_goodput_bps: down.map(|d| d.goodput_bps),
            target_down_bps: r.verdict.target_down_bps,
            verdict_down: r.verdict.down.as_str(),
            idle_s: idle.and_then(|l| l.median_s),
            loaded_s: down
                .and_then(|d| d.loaded_latency.as_ref())
                .and_then(|l| l.median_s),
            probes_sent: idle.map(|l| i64::from(l.sent)),
            probes_received: idle.map(|l| i64::from(l.received)),
            version: r.agent.version.clone(),
            streams: Some(i64::from(r.run.streams)),
            rpm_down: r
                .responsiveness
                .as_ref()
                .and_then(|x| x.down.as_ref())
                .map(|d| d.rpm),
            rpm_up: r
                .responsiveness
                .as_ref()
                .and_then(|x| x.up.as_ref())
                .map(|d| d.rpm),
        }
    }

    /// The row as a report reads it; `id` when the scan asks for ids.
    pub fn fact<'a>(&'a self, id: Option<&'a str>) -> Fact<'a> {
        Fact {
            quartier: &self.quartier,
            building: &self.building,
            agent_id: &self.agent_id,
            access: &self.access,
            kind: self.kind,
            started_at_ns: self.started_at_ns,
            outcome: self.outcome,
            reason: self.reason,
            flags: &self.flags,
            down_bps: self.down_bps,
            up_bps: self.up_bps,
            cap_down_bps: self.cap_down_bps,
            cap_up_bps: self.cap_up_bps,
            down_goodput_bps: self.down_goodput_bps,
            target_down_bps: self.target_down_bps,
            verdict_down: Some(self.verdict_down),
            idle_s: self.idle_s,
            loaded_s: self.loaded_s,
            probes_sent: self.probes_sent,
            probes_received: self.probes_received,
            version: &self.version,
            streams: self.streams,
            interval_s: self.interval_s,
            rpm_down: self.rpm_down,
            rpm_up: self.rpm_up,
            id,
            handle: None,
        }
    }
}

/// Flags as report rows keep them: wire names, comma-separated.
pub fn flags_text(flags: &[sonde_proto::Flag]) -> String {
    flags
        .iter()
        .map(|f| f.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_takes_identity_from_the_delivery_and_figures_from_the_record() {
        let mut r = ResultRecord::schema_example();
        r.agent.id = Some("spoofed".into());
        r.flags = vec![sonde_proto::Flag::Unstable, sonde_proto::Flag::CrossTraffic];
        let d = Delivery {
            agent_id: "a1".into(),
            quartier: Some("q".into()),
            building: None,
        };
        let row = ReportRow::of(&d, &r);
        assert_eq!(
            (
                row.agent_id.as_str(),
                row.quartier.as_str(),
                row.building.as_str()
            ),
            ("a1", "q", "")
        );
        assert_eq!(row.flags, "unstable,cross_traffic");
        assert_eq!(row.down_bps, r.download.as_ref().map(|t| t.ip_rate_bps));
        assert_eq!(row.kind, r.access.kind.as_str());
        let fact = row.fact(Some("x"));
        assert_eq!(fact.verdict_down, Some(r.verdict.down.as_str()));
        assert_eq!(fact.id, Some("x"));
    }
}
