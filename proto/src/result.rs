//! The result record, schema version 1: one measurement of one access against one
//! responder. Written by the agent, stored by the collector, exported to the regulator.
//!
//! Compatibility rules: fields are only ever added, each new one optional or defaulted;
//! unknown fields are ignored on read; unknown enum values read as `Unknown`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Version of this record's schema. Readers accept any record whose major shape is 1.
pub const SCHEMA_VERSION: u32 = 1;

/// One measurement: identity, run, figures, judgement and versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRecord {
    /// Schema version of this record ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// Unique id, a UUIDv7 made on the agent (time-ordered).
    pub id: Uuid,
    /// The agent that measured.
    pub agent: AgentInfo,
    /// Where the agent sits. Empty for a one-shot probe run by hand.
    #[serde(default)]
    pub site: Site,
    /// The access that was measured.
    pub access: Access,
    /// How and when the measurement ran.
    pub run: Run,
    /// Download figures, when the download direction ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download: Option<Throughput>,
    /// Upload figures, when the upload direction ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<Throughput>,
    /// Idle latency, jitter and loss from the UDP probe train before any load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_latency: Option<LatencyStats>,
    /// Radio context of a Wi-Fi or 4G access, read just before the test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub radio: Option<Radio>,
    /// IP-layer capacity by RFC 9097 over UDPST, when the engine was `udpst`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Capacity>,
    /// Responsiveness under working conditions (RPM), when it was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responsiveness: Option<Responsiveness>,
    /// Conditions that make the figures less than a clean measurement of the access.
    #[serde(default)]
    pub flags: Vec<Flag>,
    /// Comparison with the access's target.
    pub verdict: Verdict,
    /// Whether the measurement completed, and if not, why.
    pub status: Status,
    /// Version of docs/METHODOLOGY.md the figures follow.
    pub methodology_version: String,
}

/// The measuring agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// Agent id; taken from its certificate once enrolled, `None` for a one-shot probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Agent software version (semver).
    pub version: String,
}

/// Location of the agent's box.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Site {
    /// Quartier (district) id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quartier: Option<String>,
    /// Building id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub building: Option<String>,
    /// WGS84 latitude in degrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    /// WGS84 longitude in degrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
}

crate::named! {
    /// Kind of access network.
    pub enum AccessKind {
        /// Fibre to the home.
        Ftth = "ftth",
        /// 4G / LTE mobile access.
        FourG = "4g",
        /// In-building Wi-Fi.
        Wifi = "wifi",
        /// Anything else (Ethernet LAN, loopback, unknown).
        Other = "other",
    }
}

/// The access measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// Configured access name (e.g. `fibre`); `None` for a one-shot probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Access kind.
    pub kind: AccessKind,
    /// Interface every socket was bound to, when one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Negotiated link speed of that interface in bit/s, when the kernel reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_speed_bps: Option<u64>,
    /// MTU of that interface in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

crate::named! {
    /// Measuring engine.
    pub enum Engine {
        /// sonde's own HTTP/1.1 + UDP echo engine against `sonde-responder`.
        SondeHttp = "sonde-http",
        /// A stock iperf3 server.
        Iperf3 = "iperf3",
        /// A UDP Speed Test Protocol server (RFC 9946; OB-UDPST or `sonde-responder`).
        Udpst = "udpst",
        /// A network-quality server (draft-ietf-ippm-responsiveness): responsiveness
        /// only, no throughput figure.
        Nq = "nq",
    }
}

crate::named! {
    /// A throughput direction.
    pub enum Direction {
        /// Responder to agent.
        Down = "down",
        /// Agent to responder.
        Up = "up",
    }
}

/// How and when the measurement ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Start (UTC), taken when the first probe packet or connection started.
    pub started_at: DateTime<Utc>,
    /// End (UTC), taken after the last figure was known.
    pub ended_at: DateTime<Utc>,
    /// Engine used.
    pub engine: Engine,
    /// The responder measured against.
    pub responder: ResponderRef,
    /// Directions requested, in the order they ran.
    pub directions: Vec<Direction>,
    /// Parallel TCP streams requested per direction.
    pub streams: u32,
    /// Cap on each direction's duration, in seconds.
    pub max_duration_s: f64,
    /// The access's schedule: seconds between runs, when the run was scheduled (absent
    /// for a one-shot probe). Reports count tests scheduled from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_s: Option<f64>,
    /// Bytes the interface carried during the test beyond the test's own (the
    /// household's traffic), when the agent could read its counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_traffic_bytes: Option<u64>,
    /// Busy share of the box's CPU during the test (0 to 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_busy_ratio: Option<f64>,
    /// Whether the box's clock was synchronised to a time source (NTP) when the test
    /// ran; `false`: `started_at` and `ended_at` may be off (a box without a battery
    /// clock boots at a wrong time until NTP steps it). Absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_synchronised: Option<bool>,
}

/// The responder a measurement ran against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponderRef {
    /// The URL the agent was given.
    pub url: String,
    /// The responder's software version, from its info document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The socket address actually connected to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

crate::named! {
    /// Where a throughput figure was measured.
    pub enum MeasuredAt {
        /// Bytes counted by the agent as the application read them (download).
        Agent = "agent",
        /// Bytes counted by the responder as the application read them (upload).
        Responder = "responder",
    }
}

crate::named! {
    /// Which count of bytes a throughput figure was computed from.
    pub enum Counting {
        /// Bytes as the application read them.
        Application = "application",
        /// Data segments arriving at the receiver's TCP layer × MSS (TCP_INFO), free of
        /// head-of-line re-timing; used only when it agrees with the application's bytes.
        TcpSegments = "tcp_segments",
    }
}

crate::named! {
    /// Why a throughput direction stopped.
    pub enum StopReason {
        /// The rate was stable by the stop rule.
        Stable = "stable",
        /// The direction reached its duration cap without becoming stable.
        MaxDuration = "max_duration",
        /// The direction ran out of its byte allowance.
        ByteBudget = "byte_budget",
        /// Every stream failed.
        Error = "error",
    }
}

/// IP-layer capacity by RFC 9097 / TR-471 over the UDP Speed Test Protocol: the
/// method's parameters and each direction's figures (docs/METHODOLOGY.md §10).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    /// UDPST protocol version spoken.
    pub protocol_version: u16,
    /// Test duration asked per direction, s.
    pub test_s: f64,
    /// Sub-interval, s.
    pub sub_interval_s: f64,
    /// Status feedback (trial) interval, s.
    pub trial_s: f64,
    /// Rate adjustment algorithm the server ran (`B` or `C`).
    pub rate_algorithm: String,
    /// Parallel connections.
    pub connections: u32,
    /// Downstream figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<CapacityFigures>,
    /// Upstream figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up: Option<CapacityFigures>,
}

/// One direction of a capacity test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityFigures {
    /// Maximum IP-layer capacity: the highest sub-interval rate, bit/s.
    pub max_ip_capacity_bps: f64,
    /// The sub-interval (from 1) that had it.
    pub max_at: u32,
    /// Loss ratio in that sub-interval.
    pub loss_ratio_at_max: f64,
    /// Round-trip variation range in that sub-interval, s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_range_at_max_s: Option<f64>,
    /// One-way delay variation range in that sub-interval, s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pdv_range_at_max_s: Option<f64>,
    /// Smallest round trip seen, s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_min_s: Option<f64>,
    /// Loss ratio over the whole test.
    pub loss_ratio: f64,
    /// Each sub-interval's IP-layer rate, bit/s.
    pub sub_interval_rates_bps: Vec<f64>,
}

/// Throughput of one direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Direction measured.
    pub direction: Direction,
    /// Side that counted the bytes.
    pub measured_at: MeasuredAt,
    /// Which count the figure was computed from (absent: application bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counting: Option<Counting>,
    /// Parallel TCP streams that carried data.
    pub streams: u32,
    /// TCP goodput (application payload) over the measured window, bit/s.
    pub goodput_bps: f64,
    /// IP-layer rate derived from the goodput: `goodput_bps * ip_overhead_ratio`.
    pub ip_rate_bps: f64,
    /// IP packet size divided by TCP payload per packet on this path.
    pub ip_overhead_ratio: f64,
    /// TCP payload bytes per full segment (MSS) observed on the data connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mss_bytes: Option<u32>,
    /// All payload bytes moved in this direction, warm-up included.
    pub bytes_total: u64,
    /// Payload bytes inside the measured window.
    pub bytes_measured: u64,
    /// Wall time of the whole direction, seconds.
    pub duration_s: f64,
    /// Length of the measured window (after trimming), seconds.
    pub measured_duration_s: f64,
    /// Warm-up trimmed from the start, seconds.
    pub warmup_trimmed_s: f64,
    /// Summary of the 100 ms samples inside the measured window.
    pub samples: SampleSummary,
    /// Why the direction stopped.
    pub stop_reason: StopReason,
    /// TCP retransmitted segments on the agent's side of the data connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retransmits: Option<u64>,
    /// Latency sampled by UDP echo while this direction was loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loaded_latency: Option<LatencyStats>,
    /// The direction over time, for its picture (absent in records made before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<Series>,
}

/// One direction over time, from its start: what a test's picture draws. Rates are
/// whole bit/s and times are rounded to the microsecond, to keep the record small.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Bin width, seconds (0.1).
    pub interval_s: f64,
    /// Each bin's rate by the count the figure was taken from (`counting`), bit/s.
    pub rates_bps: Vec<u64>,
    /// Each stream's bins by the bytes its application moved, bit/s; absent when the
    /// record would grow too large (many streams over a long direction).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stream_rates_bps: Vec<Vec<u64>>,
    /// Loaded-latency echoes received: `[sent at, round trip]`, seconds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rtt_s: Vec<[f64; 2]>,
    /// Send times of the loaded-latency probes lost, seconds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lost_at_s: Vec<f64>,
}

/// Summary of per-interval rate samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleSummary {
    /// Nominal sampling interval, seconds (0.1).
    pub interval_s: f64,
    /// Samples taken over the whole direction.
    pub count: u32,
    /// Samples inside the measured window.
    pub used: u32,
    /// 10th percentile of the used samples' rates, bit/s.
    pub p10_bps: f64,
    /// Median of the used samples' rates, bit/s.
    pub p50_bps: f64,
    /// 90th percentile of the used samples' rates, bit/s.
    pub p90_bps: f64,
}

/// Responsiveness under working conditions (draft-ietf-ippm-responsiveness):
/// round trips per minute while the path is loaded, each direction on its own
/// (docs/METHODOLOGY.md §11).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Responsiveness {
    /// The method and its version, `draft-ietf-ippm-responsiveness-09`.
    pub method: String,
    /// The network-quality configuration measured against (`/.well-known/nq`).
    pub config_url: String,
    /// Under download load, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<RpmFigures>,
    /// Under upload load, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up: Option<RpmFigures>,
}

impl Responsiveness {
    /// The figures under load in direction `d`, when that direction ran.
    pub fn of(&self, d: Direction) -> Option<&RpmFigures> {
        match d {
            Direction::Up => self.up.as_ref(),
            _ => self.down.as_ref(),
        }
    }
}

crate::named! {
    /// How far a responsiveness test got towards stable working conditions.
    pub enum RpmConfidence {
        /// Goodput and responsiveness were both stable before the time limit.
        High = "high",
        /// One of the two was stable.
        Medium = "medium",
        /// Neither was: the figure is the last interval's.
        Low = "low",
    }
}

crate::named! {
    /// The draft's grades of an RPM figure.
    pub enum RpmGrade {
        /// Under 300 RPM.
        Poor = "poor",
        /// 300 to 1,000.
        Fair = "fair",
        /// 1,000 to 6,000.
        Good = "good",
        /// Over 6,000.
        Excellent = "excellent",
    }
}

/// One direction's responsiveness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpmFigures {
    /// Round trips per minute under working conditions: the mean of the foreign and
    /// the self responsiveness.
    pub rpm: f64,
    /// The draft's grade of `rpm`.
    pub grade: RpmGrade,
    /// How far the test got towards stability.
    pub confidence: RpmConfidence,
    /// Aggregate goodput of the load-generating connections (moving average), bit/s.
    pub goodput_bps: f64,
    /// Load-generating connections open at the end.
    pub connections: u32,
    /// Wall time of the direction, seconds.
    pub duration_s: f64,
    /// Payload bytes the load carried.
    pub bytes: u64,
    /// Foreign probes (on new connections) in the final window: count and the trimmed
    /// means of their TCP handshake, TLS handshake (per round trip) and HTTP GET times,
    /// seconds.
    pub foreign: ForeignProbes,
    /// Self probes (on the load-generating connections) in the final window.
    pub self_probes: SelfProbes,
}

/// Foreign probes of a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForeignProbes {
    /// Probes in the window.
    pub count: u32,
    /// Foreign responsiveness: 60 over the mean of the three times below, RPM.
    pub rpm: f64,
    /// Trimmed mean TCP handshake time, seconds.
    pub tcp_s: f64,
    /// Trimmed mean TLS handshake time per TLS round trip, seconds.
    pub tls_s: f64,
    /// Trimmed mean HTTP GET time (request sent to last byte), seconds.
    pub http_s: f64,
}

/// Self probes of a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelfProbes {
    /// Probes in the window.
    pub count: u32,
    /// Responsiveness on the load-generating connections: 60 over the time below, RPM.
    pub rpm: f64,
    /// Trimmed mean HTTP GET time, seconds.
    pub http_s: f64,
}

/// Round-trip latency, jitter and loss from a train of UDP echo probes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    /// Probes sent.
    pub sent: u32,
    /// Probes whose echo came back within the loss timeout.
    pub received: u32,
    /// `1 - received / sent` (0 when nothing was sent).
    pub loss_ratio: f64,
    /// Median round-trip time, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median_s: Option<f64>,
    /// 90th percentile round-trip time, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90_s: Option<f64>,
    /// Smallest round-trip time, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_s: Option<f64>,
    /// Mean absolute difference between consecutive round-trip times, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_s: Option<f64>,
    /// Loss timeout applied, seconds.
    pub loss_timeout_s: f64,
}

/// Radio context of the access. Never carries a subscriber identity (IMEI, IMSI,
/// phone number).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Radio {
    /// Wi-Fi link, for a Wi-Fi access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wifi: Option<WifiRadio>,
    /// Cellular link, for a 4G access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lte: Option<LteRadio>,
    /// Why the context is missing or incomplete (e.g. ModemManager not answering).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

/// Wi-Fi link of the interface (nl80211 station information).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WifiRadio {
    /// Access point's BSSID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bssid: Option<String>,
    /// Network name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssid: Option<String>,
    /// Channel centre frequency, MHz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_mhz: Option<u32>,
    /// Channel number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<u32>,
    /// Received signal strength, dBm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_dbm: Option<f64>,
    /// Transmit bitrate of the last frames, bit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_bitrate_bps: Option<u64>,
    /// Receive bitrate of the last frames, bit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_bitrate_bps: Option<u64>,
}

/// Cellular link of the modem (ModemManager).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LteRadio {
    /// Access technology (`lte`, `5gnr`, `umts`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub technology: Option<String>,
    /// Serving operator, MCC-MNC (e.g. `208-01`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// Band (e.g. `B3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub band: Option<String>,
    /// Reference signal received power, dBm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsrp_dbm: Option<f64>,
    /// Reference signal received quality, dB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsrq_db: Option<f64>,
    /// Signal to interference plus noise ratio, dB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sinr_db: Option<f64>,
    /// Received signal strength indicator, dBm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rssi_dbm: Option<f64>,
    /// Serving cell id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell_id: Option<String>,
}

crate::named! {
    /// A validity flag: a condition that makes a figure less than a clean measurement of
    /// the access itself.
    pub enum Flag {
        /// The interface's link speed cannot carry the target (e.g. a 1 GbE port against a
        /// "more than 1 Gb/s" promise).
        NicLimited = "nic_limited",
        /// The responder reported that it was the limit.
        ServerLimited = "server_limited",
        /// The agent's CPU was saturated during the test.
        CpuLimited = "cpu_limited",
        /// Other traffic crossed the interface during the test.
        CrossTraffic = "cross_traffic",
        /// A direction never became stable; its figure is the trimmed mean up to the cap.
        Unstable = "unstable",
        /// Some of the requested streams failed.
        StreamsFailed = "streams_failed",
        /// The idle latency train lost probes.
        LatencyLoss = "latency_loss",
        /// Another test ran on the responder in the same direction at the same time:
        /// the two shared its bottleneck.
        ServerContended = "server_contended",
    }
}

crate::named! {
    /// Outcome of the comparison with the target.
    pub enum VerdictOutcome {
        /// The IP-layer rate meets the target within the tolerance.
        Met = "met",
        /// The IP-layer rate is below the target beyond the tolerance.
        NotMet = "not_met",
        /// Not met, but the agent's own port cannot carry the target: the access was not
        /// shown to fail.
        PortLimited = "port_limited",
        /// The access has no target for this direction.
        NoTarget = "no_target",
        /// No valid figure to compare (the direction did not run or failed).
        Inconclusive = "inconclusive",
    }
}

/// Comparison of the download IP-layer rate (and upload, when it has a target) with the
/// access's targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Download target, IP-layer bit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_down_bps: Option<f64>,
    /// Upload target, IP-layer bit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_up_bps: Option<f64>,
    /// Relative tolerance applied below the target (0.02 = 2 %).
    pub tolerance: f64,
    /// Outcome for download.
    pub down: VerdictOutcome,
    /// Outcome for upload.
    pub up: VerdictOutcome,
}

crate::named! {
    /// Overall status of the measurement.
    pub enum Outcome {
        /// Every requested part ran and produced figures.
        Ok = "ok",
        /// Some figures are missing; see the reason.
        Partial = "partial",
        /// No usable figure.
        Failed = "failed",
    }
}

crate::named! {
    /// Machine-readable failure reasons. Stable names: dashboards count by them.
    pub enum FailureReason {
        /// The responder's name did not resolve.
        Dns = "dns",
        /// The responder refused the connection.
        Refused = "refused",
        /// The responder did not answer in time.
        Timeout = "timeout",
        /// The responder answered with an error or an unexpected document.
        ResponderError = "responder_error",
        /// The responder was at its limit of concurrent tests.
        ResponderBusy = "responder_busy",
        /// The interface could not be used.
        Interface = "interface",
        /// A throughput stream failed mid-test.
        StreamError = "stream_error",
        /// The UDP echo port did not answer.
        EchoUnreachable = "echo_unreachable",
        /// The line was busy with other traffic.
        Busy = "busy",
        /// The data budget did not allow the test.
        Budget = "budget",
        /// Anything else.
        Other = "other",
    }
}

/// Whether the measurement completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Overall outcome.
    pub outcome: Outcome,
    /// Reason, when the outcome is not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<FailureReason>,
    /// Human-readable detail, one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Errors reading a record.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The input exceeds the size bound.
    #[error("record is {len} bytes, more than the {max}-byte bound")]
    TooLarge {
        /// Size of the input.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// Not a JSON record of this schema.
    #[error("not a result record: {0}")]
    Json(#[from] serde_json::Error),
    /// The record's schema version is not one this reader knows.
    #[error("unsupported schema_version {0} (this reader knows 1)")]
    Version(u32),
}

/// Largest encoded record accepted, in bytes. A real record is about 3 kB.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

impl ResultRecord {
    /// The example record of `proto/SCHEMA.md` (a probe of a 4G link), for tests and
    /// documentation. Callers that store several should give each a fresh `id`.
    pub fn schema_example() -> ResultRecord {
        const DOC: &str = include_str!("../SCHEMA.md");
        let start = DOC
            .find("```json")
            .map(|i| i + "```json".len())
            .unwrap_or(0);
        let end = DOC[start..]
            .find("```")
            .map(|i| start + i)
            .unwrap_or(DOC.len());
        // The example is checked by proto's tests; it always parses.
        ResultRecord::from_json(DOC[start..end].trim().as_bytes())
            .expect("proto/SCHEMA.md holds a valid example record")
    }

    /// The same box measuring responsiveness alone (the `nq` engine, docs/METHODOLOGY.md
    /// §11): 820 RPM under download load and 310 under upload load.
    pub fn responsiveness_example() -> ResultRecord {
        let mut r = ResultRecord::schema_example();
        r.run.engine = Engine::Nq;
        r.run.responder.url = "https://responder.example:8443/.well-known/nq".into();
        r.download = None;
        r.upload = None;
        // The figure is the mean of the foreign and the self responsiveness.
        let figures = |rpm: f64, self_s: f64| {
            let foreign_rpm = 2.0 * rpm - 60.0 / self_s;
            let foreign_s = 60.0 / foreign_rpm;
            RpmFigures {
                rpm,
                grade: if rpm < 300.0 {
                    RpmGrade::Poor
                } else {
                    RpmGrade::Fair
                },
                confidence: RpmConfidence::High,
                goodput_bps: 95e6,
                connections: 6,
                duration_s: 9.0,
                bytes: 100_000_000,
                foreign: ForeignProbes {
                    count: 40,
                    rpm: foreign_rpm,
                    tcp_s: foreign_s,
                    tls_s: foreign_s,
                    http_s: foreign_s,
                },
                self_probes: SelfProbes {
                    count: 40,
                    rpm: 60.0 / self_s,
                    http_s: self_s,
                },
            }
        };
        r.responsiveness = Some(Responsiveness {
            method: "draft-ietf-ippm-responsiveness-09".into(),
            config_url: r.run.responder.url.clone(),
            down: Some(figures(820.0, 0.1)),
            up: Some(figures(310.0, 0.4)),
        });
        r
    }

    /// The same probe measured by the `udpst` engine (docs/METHODOLOGY.md §10): no TCP
    /// figures, a `capacity` section of 148.3 Mb/s down and 49.4 up over 10 s.
    pub fn capacity_example() -> ResultRecord {
        let mut r = ResultRecord::schema_example();
        r.run.engine = Engine::Udpst;
        r.run.responder.url = "udpst://responder.example:24601".into();
        r.run.streams = 1;
        r.download = None;
        r.upload = None;
        let figures = |max: f64| CapacityFigures {
            max_ip_capacity_bps: max,
            max_at: 7,
            loss_ratio_at_max: 0.012,
            rtt_range_at_max_s: Some(0.004),
            pdv_range_at_max_s: Some(0.003),
            rtt_min_s: Some(0.021),
            loss_ratio: 0.004,
            sub_interval_rates_bps: (1..=10)
                .map(|i| {
                    if i == 7 {
                        max
                    } else {
                        max * (0.9 + f64::from(i) / 200.0)
                    }
                })
                .collect(),
        };
        r.capacity = Some(Capacity {
            protocol_version: 20,
            test_s: 10.0,
            sub_interval_s: 1.0,
            trial_s: 0.05,
            rate_algorithm: "B".into(),
            connections: 1,
            down: Some(figures(148.3e6)),
            up: Some(figures(49.4e6)),
        });
        r
    }

    /// Parses one record from JSON, with a size bound and a schema-version check.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: MAX_RECORD_BYTES,
            });
        }
        // The version is read first, so a record of another version is refused as such
        // rather than for whatever field it lacks.
        #[derive(Deserialize)]
        struct Versioned {
            schema_version: Option<u32>,
        }
        if let Ok(Versioned {
            schema_version: Some(v),
        }) = serde_json::from_slice::<Versioned>(bytes)
        {
            if v != SCHEMA_VERSION {
                return Err(DecodeError::Version(v));
            }
        }
        Ok(serde_json::from_slice(bytes)?)
    }

    /// Encodes the record as compact JSON.
    pub fn to_json(&self) -> String {
        // A record holds only strings, numbers and maps with string keys: it always encodes.
        serde_json::to_string(self).unwrap_or_default()
    }
}
