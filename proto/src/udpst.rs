//! The five PDUs of the UDP Speed Test Protocol (RFC 9946), which carries the IP-layer
//! capacity method of RFC 9097 / TR-471 and which the Broadband Forum's OB-UDPST speaks:
//! Setup Request/Response, Null Request, Test Activation Request/Response, Load, and
//! Status Feedback. Protocol version 20, fixed layouts, network byte order; the Test
//! Activation and Status layouts of versions 11 to 19 in [`legacy`], decoded by their
//! length into the same structs.
//!
//! Every decoder checks the PDU's length and identifier and never panics; decoding then
//! encoding gives back the same bytes, reserved fields included (tested against a
//! recorded OB-UDPST 9.0.0 exchange). Sans-IO: times are passed in as
//! seconds/nanoseconds pairs, as they travel.

/// Protocol version this code speaks.
pub const PROTOCOL_VERSION: u16 = 20;
/// Oldest version an OB-UDPST server still accepts, and the oldest this code speaks
/// (its activation and status PDUs have the layouts of [`legacy`]).
pub const PROTOCOL_MIN: u16 = 11;

pub mod legacy;
use legacy::{ACTIVATION_CHECKSUM_AT, ACTIVATION_SHARED, STATUS_CHECKSUM_AT};
pub use legacy::{CURRENT_LAYOUT, LEGACY_ACTIVATION_LEN, LEGACY_STATUS_LEN};
/// The control port servers listen on by default.
pub const DEFAULT_PORT: u16 = 24601;

/// PDU identifier of Setup Request/Response.
pub const SETUP_ID: u16 = 0xACE1;
/// PDU identifier of Null Request.
pub const NULL_ID: u16 = 0xDEAD;
/// PDU identifier of Test Activation Request/Response.
pub const ACTIVATION_ID: u16 = 0xACE2;
/// PDU identifier of Load.
pub const LOAD_ID: u16 = 0xBEEF;
/// PDU identifier of Status Feedback.
pub const STATUS_ID: u16 = 0xFEED;

/// Length of a Setup Request/Response.
pub const SETUP_LEN: usize = 56;
/// Length of a Null Request.
pub const NULL_LEN: usize = 48;
/// Length of a Test Activation Request/Response.
pub const ACTIVATION_LEN: usize = 104;
/// Length of a Load PDU's header (its payload follows, padding to `udp_payload`).
pub const LOAD_HEADER_LEN: usize = 32;
/// Length of a Status Feedback PDU.
pub const STATUS_LEN: usize = 204;
/// Largest datagram either side sends (a jumbo load PDU).
pub const MAX_DATAGRAM: usize = 9000;

/// IP and UDP header bytes over IPv4 a rate at the IP layer counts per datagram.
pub const IPV4_UDP_OVERHEAD: u64 = 28;
/// The same over IPv6.
pub const IPV6_UDP_OVERHEAD: u64 = 48;

/// "No delay value" in the delay fields of a Status PDU.
pub const NO_DELAY: u32 = u32::MAX;

/// Command request of a Setup PDU: a request.
pub const SETUP_REQUEST: u8 = 1;
/// Command request of a Setup PDU: a response.
pub const SETUP_RESPONSE: u8 = 2;
/// Setup Response code: the protocol version is not the server's (it answers with
/// its own in the version field).
pub const SETUP_BAD_VERSION: u8 = 2;
/// Setup Response code: the server could not allocate a connection (it runs as many
/// as it takes); a busy server, worth asking again shortly.
pub const SETUP_BUSY: u8 = 13;
/// Upstream bit of a Setup PDU's `max_bandwidth`.
pub const UPSTREAM_BANDWIDTH_BIT: u16 = 0x8000;
/// Setup modifier: jumbo datagram sizes allowed.
pub const SETUP_JUMBO: u8 = 0x01;
/// Setup modifier: sizes for a traditional 1500-byte MTU.
pub const SETUP_TRADITIONAL_MTU: u8 = 0x02;

/// Command request of an Activation PDU: an upstream test.
pub const ACTIVATE_UPSTREAM: u8 = 1;
/// Command request of an Activation PDU: a downstream test.
pub const ACTIVATE_DOWNSTREAM: u8 = 2;
/// Activation response: accepted.
pub const ACTIVATION_ACK: u8 = 1;
/// Activation response: bad or invalid test parameters.
pub const ACTIVATION_BAD_PARAM: u8 = 2;
/// Activation `sr_index`: let the server search from its first row.
pub const SR_INDEX_AUTO: u16 = u16::MAX;
/// Activation modifier: `sr_index` is a starting row, not a fixed one.
pub const ACTIVATION_SR_INDEX_IS_START: u8 = 0x01;
/// Activation modifier: randomised payload.
pub const ACTIVATION_RANDOM_PAYLOAD: u8 = 0x02;

/// Bit of a sending-rate payload field: the size is a random one up to the rest.
pub const RATE_RANDOM_BIT: u32 = 0x8000_0000;

/// A Load or Status PDU's test action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestAction {
    /// The test runs.
    Test = 0,
    /// Stop, as the server marks it locally (never seen on the wire from OB-UDPST).
    Stop1 = 1,
    /// Stop, exchanged: the server announces it, the client confirms it.
    Stop2 = 2,
}

impl TestAction {
    fn from_u8(b: u8) -> Result<Self, UdpstError> {
        match b {
            0 => Ok(TestAction::Test),
            1 => Ok(TestAction::Stop1),
            2 => Ok(TestAction::Stop2),
            other => Err(UdpstError::Field("test action", u32::from(other))),
        }
    }
}

/// The setup response codes (`cmdResponse`), with what each means for a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupAnswer {
    /// Accepted: the test port is in the response.
    Ack,
    /// A rejection, with its code.
    Refused(u8),
}

impl SetupAnswer {
    /// The code on the wire.
    pub fn code(self) -> u8 {
        match self {
            SetupAnswer::Ack => 1,
            SetupAnswer::Refused(c) => c,
        }
    }

    /// What a refusal means, in the server's terms.
    pub fn reason(code: u8) -> &'static str {
        match code {
            0 => "no response code",
            1 => "accepted",
            2 => "protocol version not accepted",
            3 => "jumbo datagram setting does not match the server's",
            4 => "authentication not configured on the server",
            5 => "authentication required by the server",
            6 => "authentication mode does not match the server's",
            7 => "authentication failed at the server",
            8 => "authentication time outside the server's window",
            9 => "the server requires a maximum bandwidth",
            10 => "the requested bandwidth exceeds the server's capacity",
            11 => "traditional MTU setting does not match the server's",
            12 => "multi-connection parameters rejected",
            13 => "the server could not allocate a connection",
            _ => "unknown response code",
        }
    }
}

/// Why a datagram is not the PDU it was read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UdpstError {
    /// Too short or too long for the PDU its identifier names.
    #[error("{0} of {1} bytes, expected {2}")]
    Length(&'static str, usize, usize),
    /// An identifier of no PDU.
    #[error("unknown UDPST PDU identifier {0:#06x}")]
    Id(u16),
    /// A field outside its range.
    #[error("UDPST {0} {1} is out of range")]
    Field(&'static str, u32),
    /// A nonzero header checksum that does not verify.
    #[error("UDPST {0} header checksum does not verify")]
    Checksum(&'static str),
}

/// The integrity fields that close every control PDU (RFC 9946 authentication).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Auth {
    /// 0 unauthenticated, 1 authenticated control, 2 control and status.
    pub mode: u8,
    /// Seconds since the Unix epoch, when authenticated.
    pub unix_time: u32,
    /// HMAC-SHA256 over the PDU with this field zeroed.
    pub digest: [u8; 32],
    /// Key identifier in the shared key table.
    pub key_id: u8,
    /// Alignment byte, kept as read.
    pub reserved: u8,
    /// Internet checksum of the header; 0 when unused.
    pub checksum: u16,
}

/// Transmission parameters of one sending-rate row: up to two timers, each sending a
/// burst of datagrams of one size, the second also an add-on datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SendingRate {
    /// Interval of the first timer, µs (0: unused).
    pub tx_interval1_us: u32,
    /// UDP payload of the first timer's datagrams (with [`RATE_RANDOM_BIT`]).
    pub udp_payload1: u32,
    /// Datagrams per first-timer interval.
    pub burst_size1: u32,
    /// Interval of the second timer, µs (0: unused).
    pub tx_interval2_us: u32,
    /// UDP payload of the second timer's datagrams.
    pub udp_payload2: u32,
    /// Datagrams per second-timer interval.
    pub burst_size2: u32,
    /// UDP payload of one more datagram per second-timer interval (0: none).
    pub udp_addon2: u32,
}

impl SendingRate {
    /// The UDP payload bytes per second this row sends (random sizes at their maximum).
    pub fn payload_bps(&self) -> f64 {
        let per = |interval: u32, bytes: f64| {
            if interval == 0 {
                0.0
            } else {
                bytes * 8.0 * 1e6 / f64::from(interval)
            }
        };
        let size = |v: u32| f64::from(v & !RATE_RANDOM_BIT);
        per(
            self.tx_interval1_us,
            size(self.udp_payload1) * f64::from(self.burst_size1),
        ) + per(
            self.tx_interval2_us,
            size(self.udp_payload2) * f64::from(self.burst_size2) + size(self.udp_addon2),
        )
    }
}

/// Setup Request (client → server control port) and Setup Response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// Protocol version.
    pub version: u16,
    /// Index of this connection among the client's connections.
    pub mc_index: u8,
    /// The client's number of connections.
    pub mc_count: u8,
    /// Random nonzero identifier shared by the client's connections.
    pub mc_ident: u16,
    /// [`SETUP_REQUEST`] or [`SETUP_RESPONSE`].
    pub request: u8,
    /// 0 in a request; see [`SetupAnswer::reason`] in a response.
    pub response: u8,
    /// Required bandwidth, Mb/s, with [`UPSTREAM_BANDWIDTH_BIT`] (0: none).
    pub max_bandwidth: u16,
    /// The server's test port, in a response.
    pub test_port: u16,
    /// [`SETUP_JUMBO`], [`SETUP_TRADITIONAL_MTU`].
    pub modifiers: u8,
    /// Integrity fields.
    pub auth: Auth,
}

/// Null Request: sent by the server from its test port to open the way through NATs
/// and firewalls toward the client before the activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Null {
    /// Protocol version.
    pub version: u16,
    /// 1: a null request.
    pub request: u8,
    /// 0.
    pub response: u8,
    /// Alignment byte.
    pub reserved: u8,
    /// Integrity fields.
    pub auth: Auth,
}

/// Test Activation Request (client → server test port) and Response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activation {
    /// Protocol version.
    pub version: u16,
    /// [`ACTIVATE_UPSTREAM`] or [`ACTIVATE_DOWNSTREAM`].
    pub request: u8,
    /// 0 in a request; [`ACTIVATION_ACK`] or [`ACTIVATION_BAD_PARAM`] in a response.
    pub response: u8,
    /// Low delay-variation threshold, ms.
    pub low_thresh_ms: u16,
    /// Upper delay-variation threshold, ms.
    pub upper_thresh_ms: u16,
    /// Status feedback (trial) interval, ms.
    pub trial_ms: u16,
    /// Test duration, s.
    pub test_s: u16,
    /// Alignment byte.
    pub reserved1: u8,
    /// DSCP and ECN byte of the test traffic.
    pub dscp_ecn: u8,
    /// Sending-rate row: fixed, a start ([`ACTIVATION_SR_INDEX_IS_START`]) or
    /// [`SR_INDEX_AUTO`].
    pub sr_index: u16,
    /// Delay variation by one-way delay instead of round trip.
    pub use_one_way_delay: u8,
    /// Rows skipped per step above the high-speed threshold.
    pub high_speed_delta: u8,
    /// Congestion count before slow adjustment.
    pub slow_adjust_thresh: u16,
    /// Sequence errors per trial that count as congestion.
    pub seq_err_thresh: u16,
    /// Ignore reordered and duplicated datagrams.
    pub ignore_ooo_dup: u8,
    /// [`ACTIVATION_SR_INDEX_IS_START`], [`ACTIVATION_RANDOM_PAYLOAD`].
    pub modifiers: u8,
    /// Rate adjustment algorithm: 0 is B, 1 is C.
    pub rate_algo: u8,
    /// ECN CE threshold (a reserved byte in older versions).
    pub ecn_ce_thresh: u8,
    /// The upstream sender's first row, in a response to an upstream request.
    pub rate: SendingRate,
    /// Sub-interval, ms.
    pub sub_interval_ms: u16,
    /// Alignment field, kept as read.
    pub reserved3: u16,
    /// Sending-rate adjustment suppression count (a reserved field in older versions).
    pub rate_adjust_suppress: u16,
    /// Alignment byte.
    pub reserved5: u8,
    /// Integrity fields.
    pub auth: Auth,
}

/// A Load PDU's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Test action.
    pub action: TestAction,
    /// The sender no longer receives the peer's traffic.
    pub rx_stopped: bool,
    /// Sequence number, from 1.
    pub seq: u32,
    /// UDP payload length the sender meant (the datagram may have been cut).
    pub udp_payload: u16,
    /// Status PDUs the sender saw missing.
    pub status_seq_err: u16,
    /// Send time of the last Status PDU the sender received (s, ns).
    pub status_time: (u32, u32),
    /// Send time of this PDU (s, ns).
    pub sent: (u32, u32),
    /// Time between receiving that Status PDU and sending this one, ms.
    pub rtt_response_delay_ms: u16,
    /// Internet checksum of the header; 0 when unused.
    pub checksum: u16,
}

/// Received-traffic statistics of one sub-interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubInterval {
    /// Datagrams received.
    pub rx_datagrams: u32,
    /// UDP payload bytes received.
    pub rx_bytes: u64,
    /// Measured duration, µs.
    pub delta_us: u32,
    /// Datagrams lost.
    pub loss: u32,
    /// Datagrams out of order.
    pub ooo: u32,
    /// Datagrams duplicated.
    pub dup: u32,
    /// Delay variation minimum, ms.
    pub delay_var_min: u32,
    /// Delay variation maximum, ms.
    pub delay_var_max: u32,
    /// Delay variation sum, ms.
    pub delay_var_sum: u32,
    /// Delay variation samples.
    pub delay_var_count: u32,
    /// Round-trip variation minimum, ms.
    pub rtt_var_min: u32,
    /// Round-trip variation maximum, ms.
    pub rtt_var_max: u32,
    /// Time since the test began, ms.
    pub accum_ms: u32,
}

/// A Status Feedback PDU: the receiver's report every trial interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Test action.
    pub action: TestAction,
    /// The sender no longer receives the peer's traffic.
    pub rx_stopped: bool,
    /// Sequence number, from 1.
    pub seq: u32,
    /// From the server: the row the client's upstream sender uses now; zero from a
    /// client.
    pub rate: SendingRate,
    /// Number of the last completed sub-interval (0: none yet).
    pub sub_interval_seq: u32,
    /// That sub-interval's statistics.
    pub sub_interval: SubInterval,
    /// Datagrams lost in this trial.
    pub loss: u32,
    /// Reordered in this trial.
    pub ooo: u32,
    /// Duplicated in this trial.
    pub dup: u32,
    /// Minimum one-way clock difference seen, ms.
    pub clock_delta_min: u32,
    /// Delay variation minimum in this trial, ms ([`NO_DELAY`]: none).
    pub delay_var_min: u32,
    /// Delay variation maximum, ms.
    pub delay_var_max: u32,
    /// Delay variation sum, ms.
    pub delay_var_sum: u32,
    /// Delay variation samples.
    pub delay_var_count: u32,
    /// Minimum round trip seen, ms ([`NO_DELAY`]: none).
    pub rtt_min: u32,
    /// Last round-trip variation sample, ms ([`NO_DELAY`]: none).
    pub rtt_var_sample: u32,
    /// A minimum changed in this trial.
    pub delay_min_updated: u8,
    /// Alignment fields, kept as read.
    pub reserved1: u8,
    /// Alignment field (a checksum in older versions).
    pub reserved2: u16,
    /// Duration of this trial, µs.
    pub trial_us: u32,
    /// Datagrams received in this trial.
    pub trial_datagrams: u32,
    /// UDP payload bytes received in this trial.
    pub trial_bytes: u32,
    /// Send time of this PDU (s, ns).
    pub sent: (u32, u32),
    /// The closing 44 bytes: authentication mode, ECN CE counts, checksum (version
    /// 20 reuses the authentication fields for ECN), kept verbatim.
    pub tail: [u8; 44],
}

impl Status {
    /// The authentication mode byte of the tail.
    pub fn auth_mode(&self) -> u8 {
        self.tail[3]
    }

    /// CE-marked datagrams in this trial.
    pub fn trial_ce(&self) -> u32 {
        be32(&self.tail[16..20])
    }

    /// CE-marked datagrams in the reported sub-interval.
    pub fn sub_interval_ce(&self) -> u32 {
        be32(&self.tail[20..24])
    }

    /// The receiver saw ECN bleached (ECT marks cleared on the path).
    pub fn ecn_bleached(&self) -> bool {
        self.tail[25] & 0x01 != 0
    }

    /// A tail with `mode`, counts and flags, and no checksum.
    pub fn tail_with(mode: u8, trial_ce: u32, sub_interval_ce: u32, bleached: bool) -> [u8; 44] {
        let mut t = [0u8; 44];
        t[3] = mode;
        t[16..20].copy_from_slice(&trial_ce.to_be_bytes());
        t[20..24].copy_from_slice(&sub_interval_ce.to_be_bytes());
        t[25] = u8::from(bleached);
        t
    }
}

/// Any PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pdu {
    /// Setup Request or Response.
    Setup(Setup),
    /// Null Request.
    Null(Null),
    /// Test Activation Request or Response.
    Activation(Activation),
    /// Load (header only; the payload is padding).
    Load(Load),
    /// Status Feedback.
    Status(Status),
}

impl Pdu {
    /// Parses a datagram by its identifier. A nonzero header checksum must verify.
    pub fn decode(buf: &[u8]) -> Result<Pdu, UdpstError> {
        let id = match buf.get(..2) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]),
            None => return Err(UdpstError::Length("datagram", buf.len(), 2)),
        };
        match id {
            SETUP_ID => Setup::decode(buf).map(Pdu::Setup),
            NULL_ID => Null::decode(buf).map(Pdu::Null),
            ACTIVATION_ID => Activation::decode(buf).map(Pdu::Activation),
            LOAD_ID => Load::decode(buf).map(Pdu::Load),
            STATUS_ID => Status::decode(buf).map(Pdu::Status),
            other => Err(UdpstError::Id(other)),
        }
    }
}

/// The Internet checksum (RFC 1071) of `bytes`: 0 over a header whose checksum field is
/// right. Byte order does not change a one's-complement sum, so it works on the wire
/// bytes as OB-UDPST's works on host-order words.
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut words = bytes.chunks_exact(2);
    for w in &mut words {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Fills the checksum field at `at` (2 bytes, zero before) so that the header verifies.
pub fn seal_checksum(header: &mut [u8], at: usize) {
    header[at..at + 2].copy_from_slice(&[0, 0]);
    let c = checksum(header);
    header[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A reader over a buffer whose length was checked before.
struct Rd<'a>(&'a [u8], usize);

impl Rd<'_> {
    fn u8(&mut self) -> u8 {
        self.1 += 1;
        self.0[self.1 - 1]
    }
    fn u16(&mut self) -> u16 {
        self.1 += 2;
        be16(&self.0[self.1 - 2..])
    }
    fn u32(&mut self) -> u32 {
        self.1 += 4;
        be32(&self.0[self.1 - 4..])
    }
    fn u64(&mut self) -> u64 {
        (u64::from(self.u32()) << 32) | u64::from(self.u32())
    }
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&self.0[self.1..self.1 + N]);
        self.1 += N;
        out
    }
    fn auth(&mut self) -> Auth {
        Auth {
            mode: self.u8(),
            unix_time: self.u32(),
            digest: self.bytes(),
            key_id: self.u8(),
            reserved: self.u8(),
            checksum: self.u16(),
        }
    }
    fn rate(&mut self) -> SendingRate {
        SendingRate {
            tx_interval1_us: self.u32(),
            udp_payload1: self.u32(),
            burst_size1: self.u32(),
            tx_interval2_us: self.u32(),
            udp_payload2: self.u32(),
            burst_size2: self.u32(),
            udp_addon2: self.u32(),
        }
    }
}

/// A writer into a vector.
struct Wr(Vec<u8>);

impl Wr {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn auth(&mut self, a: &Auth) -> &mut Self {
        self.u8(a.mode).u32(a.unix_time);
        self.0.extend_from_slice(&a.digest);
        self.u8(a.key_id).u8(a.reserved).u16(a.checksum)
    }
    fn rate(&mut self, r: &SendingRate) -> &mut Self {
        self.u32(r.tx_interval1_us)
            .u32(r.udp_payload1)
            .u32(r.burst_size1)
            .u32(r.tx_interval2_us)
            .u32(r.udp_payload2)
            .u32(r.burst_size2)
            .u32(r.udp_addon2)
    }
}

/// Checks a control or status PDU's length, identifier and checksum.
fn framed<'a>(
    buf: &'a [u8],
    what: &'static str,
    id: u16,
    len: usize,
    checksum_at: usize,
) -> Result<Rd<'a>, UdpstError> {
    if buf.len() != len {
        return Err(UdpstError::Length(what, buf.len(), len));
    }
    if be16(buf) != id {
        return Err(UdpstError::Id(be16(buf)));
    }
    if be16(&buf[checksum_at..]) != 0 && checksum(buf) != 0 {
        return Err(UdpstError::Checksum(what));
    }
    Ok(Rd(buf, 2))
}

impl Setup {
    /// A Setup Request of connection `index` of `count` in the test `ident`, protocol
    /// version 20, no bandwidth asked, traditional sizes, no authentication.
    pub fn request(ident: u16, index: u8, count: u8) -> Setup {
        Setup {
            version: PROTOCOL_VERSION,
            mc_index: index,
            mc_count: count,
            mc_ident: ident,
            request: SETUP_REQUEST,
            response: 0,
            max_bandwidth: 0,
            test_port: 0,
            modifiers: 0,
            auth: Auth::default(),
        }
    }

    /// Parses a Setup Request or Response.
    pub fn decode(buf: &[u8]) -> Result<Self, UdpstError> {
        let mut r = framed(buf, "setup PDU", SETUP_ID, SETUP_LEN, 54)?;
        Ok(Setup {
            version: r.u16(),
            mc_index: r.u8(),
            mc_count: r.u8(),
            mc_ident: r.u16(),
            request: r.u8(),
            response: r.u8(),
            max_bandwidth: r.u16(),
            test_port: r.u16(),
            modifiers: r.u8(),
            auth: r.auth(),
        })
    }

    /// The PDU's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Wr(Vec::with_capacity(SETUP_LEN));
        w.u16(SETUP_ID)
            .u16(self.version)
            .u8(self.mc_index)
            .u8(self.mc_count)
            .u16(self.mc_ident)
            .u8(self.request)
            .u8(self.response)
            .u16(self.max_bandwidth)
            .u16(self.test_port)
            .u8(self.modifiers)
            .auth(&self.auth);
        w.0
    }
}

impl Null {
    /// Parses a Null Request.
    pub fn decode(buf: &[u8]) -> Result<Self, UdpstError> {
        let mut r = framed(buf, "null PDU", NULL_ID, NULL_LEN, 46)?;
        Ok(Null {
            version: r.u16(),
            request: r.u8(),
            response: r.u8(),
            reserved: r.u8(),
            auth: r.auth(),
        })
    }

    /// The PDU's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Wr(Vec::with_capacity(NULL_LEN));
        w.u16(NULL_ID)
            .u16(self.version)
            .u8(self.request)
            .u8(self.response)
            .u8(self.reserved)
            .auth(&self.auth);
        w.0
    }
}

impl Activation {
    /// Parses a Test Activation Request or Response (of version 20, or of versions
    /// 11 to 19 by its length).
    pub fn decode(buf: &[u8]) -> Result<Self, UdpstError> {
        if buf.len() == LEGACY_ACTIVATION_LEN {
            return Self::decode_legacy(buf);
        }
        let mut r = framed(
            buf,
            "test activation PDU",
            ACTIVATION_ID,
            ACTIVATION_LEN,
            102,
        )?;
        Ok(Activation {
            version: r.u16(),
            request: r.u8(),
            response: r.u8(),
            low_thresh_ms: r.u16(),
            upper_thresh_ms: r.u16(),
            trial_ms: r.u16(),
            test_s: r.u16(),
            reserved1: r.u8(),
            dscp_ecn: r.u8(),
            sr_index: r.u16(),
            use_one_way_delay: r.u8(),
            high_speed_delta: r.u8(),
            slow_adjust_thresh: r.u16(),
            seq_err_thresh: r.u16(),
            ignore_ooo_dup: r.u8(),
            modifiers: r.u8(),
            rate_algo: r.u8(),
            ecn_ce_thresh: r.u8(),
            rate: r.rate(),
            sub_interval_ms: r.u16(),
            reserved3: r.u16(),
            rate_adjust_suppress: r.u16(),
            reserved5: r.u8(),
            auth: r.auth(),
        })
    }

    /// The PDU's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Wr(Vec::with_capacity(ACTIVATION_LEN));
        w.u16(ACTIVATION_ID)
            .u16(self.version)
            .u8(self.request)
            .u8(self.response)
            .u16(self.low_thresh_ms)
            .u16(self.upper_thresh_ms)
            .u16(self.trial_ms)
            .u16(self.test_s)
            .u8(self.reserved1)
            .u8(self.dscp_ecn)
            .u16(self.sr_index)
            .u8(self.use_one_way_delay)
            .u8(self.high_speed_delta)
            .u16(self.slow_adjust_thresh)
            .u16(self.seq_err_thresh)
            .u8(self.ignore_ooo_dup)
            .u8(self.modifiers)
            .u8(self.rate_algo)
            .u8(self.ecn_ce_thresh)
            .rate(&self.rate)
            .u16(self.sub_interval_ms)
            .u16(self.reserved3)
            .u16(self.rate_adjust_suppress)
            .u8(self.reserved5)
            .auth(&self.auth);
        w.0
    }
}

/// The sub-interval of a legacy activation's `reserved1` (whole seconds), ms; at most
/// what the field of version 20 holds.
fn legacy_sub_interval_ms(seconds: u8) -> u16 {
    u16::from(seconds).saturating_mul(1000)
}

impl Activation {
    /// Parses a Test Activation PDU of versions 11 to 19; its sub-interval (whole
    /// seconds) is read into `sub_interval_ms`.
    fn decode_legacy(buf: &[u8]) -> Result<Self, UdpstError> {
        framed(
            buf,
            "test activation PDU",
            ACTIVATION_ID,
            LEGACY_ACTIVATION_LEN,
            ACTIVATION_CHECKSUM_AT,
        )?;
        let mut current = [0u8; ACTIVATION_LEN];
        current[..ACTIVATION_SHARED].copy_from_slice(&buf[..ACTIVATION_SHARED]);
        let mut a = Activation::decode(&current)?;
        a.sub_interval_ms = legacy_sub_interval_ms(a.reserved1);
        Ok(a)
    }

    /// The PDU's bytes in the layout of protocol `version`: [`Activation::encode`]
    /// from version 20, the 60-byte layout of [`legacy`] before it (the sub-interval
    /// in whole seconds, no authentication, no checksum).
    pub fn encode_for(&self, version: u16) -> Vec<u8> {
        if version >= CURRENT_LAYOUT {
            return self.encode();
        }
        let mut a = *self;
        // Seconds, unless the field already says this sub-interval (as read).
        if legacy_sub_interval_ms(self.reserved1) != self.sub_interval_ms {
            a.reserved1 = u8::try_from(self.sub_interval_ms / 1000).unwrap_or(u8::MAX);
        }
        let mut bytes = a.encode();
        bytes.truncate(ACTIVATION_SHARED);
        bytes.resize(LEGACY_ACTIVATION_LEN, 0);
        bytes
    }
}

impl Load {
    /// Parses a Load PDU's header; the datagram may be longer (its payload).
    pub fn decode(buf: &[u8]) -> Result<Self, UdpstError> {
        if buf.len() < LOAD_HEADER_LEN || buf.len() > MAX_DATAGRAM {
            return Err(UdpstError::Length("load PDU", buf.len(), LOAD_HEADER_LEN));
        }
        let head = &buf[..LOAD_HEADER_LEN];
        let mut r = framed(head, "load PDU", LOAD_ID, LOAD_HEADER_LEN, 30)?;
        let action = TestAction::from_u8(r.u8())?;
        let rx_stopped = match r.u8() {
            0 => false,
            1 => true,
            other => return Err(UdpstError::Field("rx stopped", u32::from(other))),
        };
        Ok(Load {
            action,
            rx_stopped,
            seq: r.u32(),
            udp_payload: r.u16(),
            status_seq_err: r.u16(),
            status_time: (r.u32(), r.u32()),
            sent: (r.u32(), r.u32()),
            rtt_response_delay_ms: r.u16(),
            checksum: r.u16(),
        })
    }

    /// Writes the header into `buf[..LOAD_HEADER_LEN]`; the rest is the payload.
    /// Returns `None` when `buf` is shorter than the header.
    pub fn encode_into(&self, buf: &mut [u8]) -> Option<()> {
        let out = buf.get_mut(..LOAD_HEADER_LEN)?;
        let mut w = Wr(Vec::with_capacity(LOAD_HEADER_LEN));
        w.u16(LOAD_ID)
            .u8(self.action as u8)
            .u8(u8::from(self.rx_stopped))
            .u32(self.seq)
            .u16(self.udp_payload)
            .u16(self.status_seq_err)
            .u32(self.status_time.0)
            .u32(self.status_time.1)
            .u32(self.sent.0)
            .u32(self.sent.1)
            .u16(self.rtt_response_delay_ms)
            .u16(self.checksum);
        out.copy_from_slice(&w.0);
        Some(())
    }
}

impl Status {
    /// Parses a Status Feedback PDU of protocol version 20 (or of versions 11 to 19,
    /// by its length).
    pub fn decode(buf: &[u8]) -> Result<Self, UdpstError> {
        if buf.len() == LEGACY_STATUS_LEN {
            return Self::decode_legacy(buf);
        }
        let mut r = framed(buf, "status PDU", STATUS_ID, STATUS_LEN, 186)?;
        let action = TestAction::from_u8(r.u8())?;
        let rx_stopped = match r.u8() {
            0 => false,
            1 => true,
            other => return Err(UdpstError::Field("rx stopped", u32::from(other))),
        };
        Ok(Status {
            action,
            rx_stopped,
            seq: r.u32(),
            rate: r.rate(),
            sub_interval_seq: r.u32(),
            sub_interval: SubInterval {
                rx_datagrams: r.u32(),
                rx_bytes: r.u64(),
                delta_us: r.u32(),
                loss: r.u32(),
                ooo: r.u32(),
                dup: r.u32(),
                delay_var_min: r.u32(),
                delay_var_max: r.u32(),
                delay_var_sum: r.u32(),
                delay_var_count: r.u32(),
                rtt_var_min: r.u32(),
                rtt_var_max: r.u32(),
                accum_ms: r.u32(),
            },
            loss: r.u32(),
            ooo: r.u32(),
            dup: r.u32(),
            clock_delta_min: r.u32(),
            delay_var_min: r.u32(),
            delay_var_max: r.u32(),
            delay_var_sum: r.u32(),
            delay_var_count: r.u32(),
            rtt_min: r.u32(),
            rtt_var_sample: r.u32(),
            delay_min_updated: r.u8(),
            reserved1: r.u8(),
            reserved2: r.u16(),
            trial_us: r.u32(),
            trial_datagrams: r.u32(),
            trial_bytes: r.u32(),
            sent: (r.u32(), r.u32()),
            tail: r.bytes(),
        })
    }

    /// The PDU's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let s = &self.sub_interval;
        let mut w = Wr(Vec::with_capacity(STATUS_LEN));
        w.u16(STATUS_ID)
            .u8(self.action as u8)
            .u8(u8::from(self.rx_stopped))
            .u32(self.seq)
            .rate(&self.rate)
            .u32(self.sub_interval_seq)
            .u32(s.rx_datagrams)
            .u64(s.rx_bytes)
            .u32(s.delta_us)
            .u32(s.loss)
            .u32(s.ooo)
            .u32(s.dup)
            .u32(s.delay_var_min)
            .u32(s.delay_var_max)
            .u32(s.delay_var_sum)
            .u32(s.delay_var_count)
            .u32(s.rtt_var_min)
            .u32(s.rtt_var_max)
            .u32(s.accum_ms)
            .u32(self.loss)
            .u32(self.ooo)
            .u32(self.dup)
            .u32(self.clock_delta_min)
            .u32(self.delay_var_min)
            .u32(self.delay_var_max)
            .u32(self.delay_var_sum)
            .u32(self.delay_var_count)
            .u32(self.rtt_min)
            .u32(self.rtt_var_sample)
            .u8(self.delay_min_updated)
            .u8(self.reserved1)
            .u16(self.reserved2)
            .u32(self.trial_us)
            .u32(self.trial_datagrams)
            .u32(self.trial_bytes)
            .u32(self.sent.0)
            .u32(self.sent.1);
        w.0.extend_from_slice(&self.tail);
        w.0
    }
}

impl Status {
    /// Parses a Status Feedback PDU of versions 11 to 19 (its tail reads as zeros).
    fn decode_legacy(buf: &[u8]) -> Result<Self, UdpstError> {
        framed(
            buf,
            "status PDU",
            STATUS_ID,
            LEGACY_STATUS_LEN,
            STATUS_CHECKSUM_AT,
        )?;
        let mut current = [0u8; STATUS_LEN];
        legacy::status_to_current(buf, &mut current);
        Status::decode(&current)
    }

    /// The PDU's bytes in the layout of protocol `version`: [`Status::encode`] from
    /// version 20, the 168-byte layout of [`legacy`] before it (no tail).
    pub fn encode_for(&self, version: u16) -> Vec<u8> {
        let bytes = self.encode();
        if version >= CURRENT_LAYOUT {
            return bytes;
        }
        legacy::status_from_current(&bytes)
    }
}

impl SubInterval {
    /// The IP-layer rate of this sub-interval, bit/s: payload plus `overhead` bytes per
    /// datagram ([`IPV4_UDP_OVERHEAD`] or [`IPV6_UDP_OVERHEAD`]) over its measured time.
    pub fn ip_rate_bps(&self, overhead: u64) -> f64 {
        if self.delta_us == 0 {
            return 0.0;
        }
        let bytes = self.rx_bytes + u64::from(self.rx_datagrams) * overhead;
        bytes as f64 * 8.0 * 1e6 / f64::from(self.delta_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The recorded OB-UDPST 9.0.0 exchange: (test, direction, PDU, length, bytes).
    fn transcript() -> Vec<(String, String, String, usize, Vec<u8>)> {
        include_str!("../testdata/udpst-obudpst-9.0.0.txt")
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                let bytes = (0..f[4].len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&f[4][i..i + 2], 16).expect("hex"))
                    .collect();
                let len = f[3].parse().expect("length");
                (f[0].into(), f[1].into(), f[2].into(), len, bytes)
            })
            .collect()
    }

    fn encode(pdu: &Pdu) -> Vec<u8> {
        match pdu {
            Pdu::Setup(p) => p.encode(),
            Pdu::Null(p) => p.encode(),
            Pdu::Activation(p) => p.encode(),
            Pdu::Status(p) => p.encode(),
            Pdu::Load(p) => {
                let mut b = vec![0u8; LOAD_HEADER_LEN];
                p.encode_into(&mut b).expect("room");
                b
            }
        }
    }

    #[test]
    fn every_pdu_of_a_real_obudpst_exchange_decodes_and_encodes_to_the_same_bytes() {
        let t = transcript();
        assert_eq!(t.len(), 23);
        for (test, dir, name, len, bytes) in &t {
            let pdu = Pdu::decode(bytes).unwrap_or_else(|e| panic!("{test} {dir} {name}: {e}"));
            let kind = match pdu {
                Pdu::Setup(_) => "setup",
                Pdu::Null(_) => "null",
                Pdu::Activation(_) => "activation",
                Pdu::Load(_) => "load",
                Pdu::Status(_) => "status",
            };
            assert!(name.starts_with(kind), "{test} {dir} {name} read as {kind}");
            assert_eq!(&encode(&pdu), bytes, "{test} {dir} {name}");
            if let Pdu::Load(l) = pdu {
                assert_eq!(usize::from(l.udp_payload), *len, "{test} {dir} {name}");
                assert_eq!(l.action == TestAction::Stop2, name.ends_with("-stop"));
            }
        }
    }

    #[test]
    fn the_recorded_fields_are_the_ones_the_client_and_server_meant() {
        let t = transcript();
        let pdu = |test: &str, dir: &str, name: &str| {
            let (.., b) = t
                .iter()
                .find(|(a, d, n, ..)| a == test && d == dir && n == name)
                .expect("recorded");
            Pdu::decode(b).expect("decodes")
        };
        let Pdu::Setup(req) = pdu("ds", "c>s", "setup") else {
            panic!()
        };
        assert_eq!(
            (req.version, req.request, req.response),
            (20, SETUP_REQUEST, 0)
        );
        assert_eq!((req.mc_index, req.mc_count), (0, 1));
        assert_ne!(req.mc_ident, 0);
        let Pdu::Setup(resp) = pdu("ds", "s>c", "setup") else {
            panic!()
        };
        assert_eq!(
            (resp.request, resp.response),
            (SETUP_RESPONSE, SetupAnswer::Ack.code())
        );
        assert_eq!(resp.mc_ident, req.mc_ident);
        assert_eq!(resp.test_port, 45810);
        let Pdu::Activation(a) = pdu("ds", "c>s", "activation") else {
            panic!()
        };
        assert_eq!(a.request, ACTIVATE_DOWNSTREAM);
        assert_eq!(
            (a.low_thresh_ms, a.upper_thresh_ms, a.trial_ms, a.test_s),
            (30, 90, 50, 5)
        );
        assert_eq!(
            (a.sr_index, a.high_speed_delta, a.slow_adjust_thresh),
            (SR_INDEX_AUTO, 10, 3)
        );
        assert_eq!(
            (a.seq_err_thresh, a.ignore_ooo_dup, a.sub_interval_ms),
            (10, 1, 1000)
        );
        // The upstream sender starts at row 0: one add-on datagram of a random size up
        // to 1222 bytes every 50 ms.
        let Pdu::Activation(a) = pdu("us", "s>c", "activation") else {
            panic!()
        };
        assert_eq!((a.request, a.response), (ACTIVATE_UPSTREAM, ACTIVATION_ACK));
        assert_eq!(a.rate.tx_interval2_us, 50_000);
        assert_eq!(a.rate.udp_addon2, RATE_RANDOM_BIT | 1222);
        assert!((a.rate.payload_bps() - 1222.0 * 8.0 * 20.0).abs() < 1e-6);
        // The client's closing status names the last sub-interval it measured.
        let Pdu::Status(s) = pdu("ds", "c>s", "status-stop") else {
            panic!()
        };
        assert_eq!(s.action, TestAction::Stop2);
        assert_eq!(s.sub_interval_seq, 5);
        assert_eq!(s.sub_interval.accum_ms / 1000, 5);
        assert!(s.sub_interval.ip_rate_bps(IPV4_UDP_OVERHEAD) > 1e8);
        let Pdu::Load(l) = pdu("ds", "s>c", "load") else {
            panic!()
        };
        assert_eq!(
            (l.seq, l.action, l.rx_stopped),
            (1, TestAction::Test, false)
        );
    }

    #[test]
    fn a_sub_interval_rate_counts_ip_and_udp_headers() {
        // 1000 datagrams of 1472 payload bytes in 0.1 s: 1500-byte IP packets.
        let s = SubInterval {
            rx_datagrams: 1000,
            rx_bytes: 1_472_000,
            delta_us: 100_000,
            ..SubInterval::default()
        };
        assert!((s.ip_rate_bps(IPV4_UDP_OVERHEAD) - 120e6).abs() < 1e-3);
        assert_eq!(SubInterval::default().ip_rate_bps(28), 0.0);
    }

    #[test]
    fn bad_datagrams_are_named_and_refused() {
        let t = transcript();
        let setup = &t[0].4;
        assert_eq!(Pdu::decode(&[]), Err(UdpstError::Length("datagram", 0, 2)));
        assert_eq!(Pdu::decode(&[0x12, 0x34, 0]), Err(UdpstError::Id(0x1234)));
        assert_eq!(
            Pdu::decode(&setup[..55]),
            Err(UdpstError::Length("setup PDU", 55, SETUP_LEN))
        );
        let mut load = vec![0u8; 100];
        load[..2].copy_from_slice(&LOAD_ID.to_be_bytes());
        load[2] = 3;
        assert_eq!(Pdu::decode(&load), Err(UdpstError::Field("test action", 3)));
        load[2] = 0;
        load[3] = 2;
        assert_eq!(Pdu::decode(&load), Err(UdpstError::Field("rx stopped", 2)));
        assert!(Pdu::decode(&vec![0xbe; MAX_DATAGRAM + 1]).is_err());
        // A sealed checksum verifies; one flipped bit does not.
        let mut sealed = setup.clone();
        seal_checksum(&mut sealed, 54);
        assert_ne!(&sealed[54..], &[0, 0]);
        assert!(Setup::decode(&sealed).is_ok());
        sealed[9] ^= 1;
        assert_eq!(
            Setup::decode(&sealed),
            Err(UdpstError::Checksum("setup PDU"))
        );
    }

    #[test]
    fn the_checksum_is_the_internet_checksum() {
        // RFC 1071's example: the sum of these words is ddf2, its complement 220d.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0x220d
        );
        assert_eq!(checksum(&[0xff]), 0x00ff);
    }

    proptest! {
        #[test]
        fn no_datagram_panics_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..400), id in 0usize..6) {
            let mut b = bytes;
            if b.len() >= 2 {
                let ids = [SETUP_ID, NULL_ID, ACTIVATION_ID, LOAD_ID, STATUS_ID, 0];
                b[..2].copy_from_slice(&ids[id].to_be_bytes());
            }
            let _ = Pdu::decode(&b);
        }

        #[test]
        fn a_decoded_pdu_encodes_to_its_bytes(fill in proptest::collection::vec(any::<u8>(), STATUS_LEN), which in 0usize..4) {
            let (id, len, at) = [(SETUP_ID, SETUP_LEN, 54), (NULL_ID, NULL_LEN, 46), (ACTIVATION_ID, ACTIVATION_LEN, 102), (STATUS_ID, STATUS_LEN, 186)][which];
            let mut b = fill[..len].to_vec();
            b[..2].copy_from_slice(&id.to_be_bytes());
            if id == STATUS_ID {
                b[2] %= 3;
                b[3] %= 2;
            }
            seal_checksum(&mut b, at);
            let pdu = Pdu::decode(&b).expect("decodes");
            prop_assert_eq!(encode(&pdu), b);
        }
    }
}
