//! The Prometheus metrics sonde exports: one descriptor (name, type, help) per metric,
//! used by the agent's `/metrics` and the collector's alike, so the same series never
//! reads two ways. Names are a contract (docs/OPERATIONS.md, the dashboards and rules);
//! units are base units (bytes, seconds), counters end in `_total`.

/// A metric's Prometheus type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// A value that goes up and down.
    Gauge,
    /// A count that only goes up (restarts from zero).
    Counter,
    /// A histogram of observations.
    Histogram,
}

impl MetricType {
    /// The `# TYPE` word.
    pub const fn as_str(self) -> &'static str {
        match self {
            MetricType::Gauge => "gauge",
            MetricType::Counter => "counter",
            MetricType::Histogram => "histogram",
        }
    }
}

/// A metric's name, type and help text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// Its name.
    pub name: &'static str,
    /// Its type.
    pub kind: MetricType,
    /// Its `# HELP` text.
    pub help: &'static str,
}

impl Metric {
    /// The `# HELP` and `# TYPE` lines, as the text format writes them.
    pub fn header(&self) -> String {
        format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n",
            name = self.name,
            help = self.help,
            kind = self.kind.as_str()
        )
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        kind: MetricType::Gauge,
        help,
    }
}

const fn counter(name: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        kind: MetricType::Counter,
        help,
    }
}

// Per access (both the agent and the collector).

/// Latest IP-layer throughput, bytes per second.
pub const THROUGHPUT: Metric = gauge(
    "sonde_throughput_bytes_per_second",
    "Latest IP-layer throughput of the access in this direction, in bytes per second (x8 for bit/s; METHODOLOGY.md §1).",
);
/// Latest RFC 9097 IP-layer capacity, bytes per second.
pub const IP_CAPACITY: Metric = gauge(
    "sonde_ip_capacity_bytes_per_second",
    "Latest maximum IP-layer capacity (RFC 9097, over UDPST) of the access in this direction, in bytes per second (x8 for bit/s; METHODOLOGY.md §10).",
);
/// Latest responsiveness, round trips per minute.
pub const RESPONSIVENESS: Metric = gauge(
    "sonde_responsiveness_rpm",
    "Latest responsiveness under working conditions (RPM, draft-ietf-ippm-responsiveness-09) of the access under load in this direction (METHODOLOGY.md §11).",
);
/// IP-layer target, bytes per second.
pub const TARGET: Metric = gauge(
    "sonde_target_bytes_per_second",
    "IP-layer target of the access in this direction, in bytes per second (x8 for bit/s).",
);
/// Whether the latest result met the target.
pub const TARGET_MET: Metric = gauge(
    "sonde_target_met",
    "1 when the latest result met the target (within the tolerance), 0 when it did not.",
);
/// Latest median round-trip time, idle or loaded.
pub const LATENCY: Metric = gauge(
    "sonde_latency_seconds",
    "Latest median round-trip time: idle (direction=\"none\") or loaded during a direction.",
);
/// Latest idle jitter.
pub const JITTER: Metric = gauge(
    "sonde_jitter_seconds",
    "Latest idle jitter (mean absolute difference of consecutive RTTs).",
);
/// Latest idle loss ratio.
pub const LOSS: Metric = gauge(
    "sonde_packet_loss_ratio",
    "Latest idle UDP probe loss ratio.",
);
/// Start of the latest result.
pub const RESULT_TIMESTAMP: Metric = gauge(
    "sonde_result_timestamp_seconds",
    "Start time of the latest result of the access (Unix seconds).",
);
/// Wi-Fi signal.
pub const WIFI_SIGNAL: Metric = gauge(
    "sonde_wifi_signal_dbm",
    "Wi-Fi signal of the latest result, dBm (nl80211).",
);
/// 4G RSRP.
pub const LTE_RSRP: Metric = gauge(
    "sonde_lte_rsrp_dbm",
    "4G RSRP of the latest result, dBm (ModemManager).",
);
/// 4G RSRQ.
pub const LTE_RSRQ: Metric = gauge(
    "sonde_lte_rsrq_db",
    "4G RSRQ of the latest result, dB (ModemManager).",
);
/// 4G SINR.
pub const LTE_SINR: Metric = gauge(
    "sonde_lte_sinr_db",
    "4G SINR of the latest result, dB (ModemManager).",
);
/// Results by outcome.
pub const TESTS: Metric = counter("sonde_tests_total", "Results, by access and outcome.");
/// An access and its kind.
pub const ACCESS_INFO: Metric = gauge(
    "sonde_access_info",
    "1 for each access, with its kind (ftth, 4g, wifi, other).",
);

// Per agent (both: the agent of itself, the collector of each agent).

/// Results waiting in the spool.
pub const SPOOL_RESULTS: Metric = gauge(
    "sonde_agent_spool_results",
    "Results waiting in the agent's spool for the collector.",
);
/// Whether the spool refuses writes.
pub const SPOOL_FULL: Metric = gauge(
    "sonde_agent_spool_full",
    "1 while the agent's spool refuses writes (full disk): results are held in memory and sent straight up.",
);
/// Results held in memory.
pub const RESULTS_HELD: Metric = gauge(
    "sonde_agent_results_held",
    "Results the agent holds in memory because its spool could not take them.",
);
/// Wall-clock steps the agent saw.
pub const CLOCK_STEPS: Metric = counter(
    "sonde_agent_clock_steps_total",
    "Steps of the box's wall clock (NTP setting it right); each re-made the schedule.",
);
/// Evictions from a full spool.
pub const SPOOL_EVICTIONS: Metric = counter(
    "sonde_agent_spool_evictions_total",
    "Results the agent evicted from its full spool.",
);
/// Scheduled runs not made.
pub const MISSED_RUNS: Metric = counter(
    "sonde_agent_missed_runs_total",
    "Scheduled runs the agent could not make.",
);
/// Runs a plan's suppression window covered.
pub const SUPPRESSED_RUNS: Metric = counter(
    "sonde_agent_suppressed_runs_total",
    "Scheduled runs not made because a suppression window of the agent's plan covered them (maintenance, works); not missed.",
);
/// The plan an agent runs.
pub const PLAN_VERSION: Metric = gauge(
    "sonde_agent_plan_version",
    "Version of the plan the agent runs, as its last health said (0: its own agent.toml).",
);
/// Failed measurements by reason.
pub const FAILURES: Metric = counter(
    "sonde_agent_failures_total",
    "Failed measurements reported by the agent, by reason.",
);
/// The agent and its version.
pub const AGENT_INFO: Metric = gauge("sonde_agent_info", "1 for each agent, with its version.");

// The collector's view of the fleet.

/// Last delivery of each agent.
pub const AGENT_LAST_SEEN: Metric = gauge(
    "sonde_agent_last_seen_timestamp_seconds",
    "When the agent last delivered (results or health), Unix seconds.",
);
/// A building and its coordinates.
pub const BUILDING_INFO: Metric = gauge(
    "sonde_building_info",
    "1 for each building, with its coordinates (for maps).",
);

// The agent's own.

/// Results measured since start.
pub const AGENT_RESULTS: Metric =
    counter("sonde_agent_results_total", "Results measured since start.");
/// Results acknowledged since start.
pub const AGENT_UPLOADED: Metric = counter(
    "sonde_agent_uploaded_total",
    "Results the collector acknowledged since start.",
);
/// Failed uploads by reason.
pub const AGENT_UPLINK_ERRORS: Metric = counter(
    "sonde_agent_uplink_errors_total",
    "Failed uploads since start, by reason.",
);
/// Whether the agent is connected.
pub const AGENT_CONNECTED: Metric = gauge(
    "sonde_agent_collector_connected",
    "1 while a QUIC connection to the collector is open.",
);
/// Last acknowledged upload.
pub const AGENT_LAST_SUCCESS: Metric = gauge(
    "sonde_agent_last_success_timestamp_seconds",
    "When the collector last acknowledged an upload (Unix seconds).",
);
/// Uptime.
pub const AGENT_UPTIME: Metric = gauge(
    "sonde_agent_uptime_seconds",
    "Seconds since the agent started.",
);
/// Tests per responder.
pub const AGENT_RESPONDER_TESTS: Metric = counter(
    "sonde_agent_responder_tests_total",
    "Tests each responder served since start (responder: its position in the access's list).",
);
/// Budget used this month.
pub const AGENT_BUDGET_USED: Metric = gauge(
    "sonde_agent_budget_used_bytes",
    "Bytes the access's tests used this month (UTC), against its data budget.",
);
/// Monthly budget.
pub const AGENT_BUDGET: Metric = gauge(
    "sonde_agent_budget_bytes",
    "The access's monthly data budget, bytes.",
);

// The collector's own.

/// Refusals by reason.
pub const COLLECTOR_REJECTS: Metric = counter(
    "sonde_collector_rejects_total",
    "Frames, enrolments and connections refused, by reason.",
);
/// Results committed, new or re-sent.
pub const COLLECTOR_RESULTS: Metric = counter(
    "sonde_collector_results_total",
    "Results committed, by whether they were new or re-sent.",
);
/// Uploads acknowledged.
pub const COLLECTOR_UPLOADS: Metric = counter(
    "sonde_collector_uploads_total",
    "Agent uploads committed and acknowledged.",
);
/// Transactions committed.
pub const COLLECTOR_COMMITS: Metric = counter(
    "sonde_collector_commits_total",
    "Store transactions committed (each may hold several uploads).",
);
/// Transactions failed.
pub const COLLECTOR_COMMIT_FAILURES: Metric = counter(
    "sonde_collector_commit_failures_total",
    "Store transactions that failed (nothing acknowledged).",
);
/// Time to commit a group.
pub const COLLECTOR_COMMIT_SECONDS: Metric = Metric {
    name: "sonde_collector_commit_seconds",
    kind: MetricType::Histogram,
    help: "Time to commit a group of uploads durably (fsync included).",
};
/// Frames of unknown kinds.
pub const COLLECTOR_FRAMES_SKIPPED: Metric = counter(
    "sonde_collector_frames_skipped_total",
    "Frames of kinds this collector does not know (from newer agents), skipped by their length.",
);
/// Agents enrolled.
pub const COLLECTOR_ENROLMENTS: Metric =
    counter("sonde_collector_enrolments_total", "Agents enrolled.");
/// Connections held.
pub const COLLECTOR_CONNECTIONS: Metric = gauge(
    "sonde_collector_agent_connections",
    "Agent QUIC connections held now.",
);

/// Results dated in the future on arrival.
pub const COLLECTOR_FUTURE_DATED: Metric = counter(
    "sonde_collector_results_future_dated_total",
    "Results that started more than 10 minutes after they arrived (a box's wrong clock); stored, and flagged future_dated by the API.",
);
/// Results agents' chains show missing.
pub const COLLECTOR_RESULTS_MISSING: Metric = counter(
    "sonde_collector_results_missing_total",
    "Results an agent signed that never arrived: gaps in agents' chains of signed results (evicted from a full spool, or lost).",
);
/// The plan in force.
pub const COLLECTOR_PLAN_VERSION: Metric = gauge(
    "sonde_collector_plan_version",
    "Version of the plan in force, pushed to the agents (0: none applied).",
);
/// Plan frames sent.
pub const COLLECTOR_PLANS_PUSHED: Metric = counter(
    "sonde_collector_plans_pushed_total",
    "Plans pushed to agents (on connect and on change).",
);
/// HTTP connections the collector refused or cut.
pub const COLLECTOR_HTTP_REFUSED: Metric = counter(
    "sonde_collector_http_refused_total",
    "HTTP connections refused (address over its share) or cut (evicted when full, idle), by reason.",
);

/// Every metric sonde exports.
pub const ALL: &[Metric] = &[
    THROUGHPUT,
    IP_CAPACITY,
    RESPONSIVENESS,
    TARGET,
    TARGET_MET,
    LATENCY,
    JITTER,
    LOSS,
    RESULT_TIMESTAMP,
    WIFI_SIGNAL,
    LTE_RSRP,
    LTE_RSRQ,
    LTE_SINR,
    TESTS,
    ACCESS_INFO,
    SPOOL_RESULTS,
    SPOOL_FULL,
    RESULTS_HELD,
    CLOCK_STEPS,
    SPOOL_EVICTIONS,
    MISSED_RUNS,
    FAILURES,
    AGENT_INFO,
    AGENT_LAST_SEEN,
    BUILDING_INFO,
    AGENT_RESULTS,
    AGENT_UPLOADED,
    AGENT_UPLINK_ERRORS,
    AGENT_CONNECTED,
    AGENT_LAST_SUCCESS,
    AGENT_UPTIME,
    AGENT_RESPONDER_TESTS,
    AGENT_BUDGET_USED,
    AGENT_BUDGET,
    COLLECTOR_REJECTS,
    COLLECTOR_RESULTS,
    COLLECTOR_UPLOADS,
    COLLECTOR_COMMITS,
    COLLECTOR_COMMIT_FAILURES,
    COLLECTOR_COMMIT_SECONDS,
    COLLECTOR_FRAMES_SKIPPED,
    COLLECTOR_ENROLMENTS,
    COLLECTOR_CONNECTIONS,
    COLLECTOR_HTTP_REFUSED,
    COLLECTOR_FUTURE_DATED,
    COLLECTOR_RESULTS_MISSING,
    SUPPRESSED_RUNS,
    PLAN_VERSION,
    COLLECTOR_PLAN_VERSION,
    COLLECTOR_PLANS_PUSHED,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_follow_the_conventions() {
        let mut seen = std::collections::HashSet::new();
        for m in ALL {
            assert!(seen.insert(m.name), "{} twice", m.name);
            assert!(m.name.starts_with("sonde_"), "{}", m.name);
            assert_eq!(
                m.kind == MetricType::Counter,
                m.name.ends_with("_total"),
                "{}: counters, and only counters, end in _total",
                m.name
            );
            assert!(
                !m.help.contains('\n') && m.help.ends_with('.'),
                "{}",
                m.name
            );
        }
    }
}
