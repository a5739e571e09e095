//! The agent⇄collector wire protocol, sans-IO: length-prefixed frames carrying JSON
//! messages, read by a bounded incremental decoder. Bytes go in through
//! [`FrameDecoder::push`], frames come out of [`FrameDecoder::poll`]; no socket, no
//! clock. Every frame starts with a magic and a version, so anything else is refused
//! with a reason after at most [`HEADER_LEN`] bytes, and a frame longer than the bound
//! is refused from its header, before its payload is buffered.
//!
//! ```text
//! frame = magic "SNDW" | version u8 | kind u8 | length u32 BE | payload (JSON)
//! ```
//!
//! Extension rules, so that a newer side never breaks an older one:
//! - a frame of a kind this side does not know is skipped by its length, without
//!   buffering its payload, and reported as [`Message::Unknown`] for the caller to
//!   count; the stream goes on;
//! - a message's unknown JSON fields are ignored and new fields are optional;
//! - the version byte changes only when the framing itself changes; this side reads
//!   [`MIN_VERSION`]`..=`[`VERSION`] and writes [`VERSION`];
//! - results travel as their author's bytes ([`RawRecord`]), never re-encoded.

use crate::{DecodeError, ResultRecord};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Magic at the start of every frame.
pub const MAGIC: [u8; 4] = *b"SNDW";
/// Version of the framing this side writes, and the newest it reads.
pub const VERSION: u8 = 1;
/// Oldest framing version this side reads.
pub const MIN_VERSION: u8 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 10;
/// Default bound on a payload: a batch of ~1000 results.
pub const DEFAULT_MAX_PAYLOAD: usize = 4 * 1024 * 1024;
/// ALPN of the uplink's QUIC connections (agent and collector).
pub const ALPN: &[u8] = b"sonde/1";

/// QUIC application close code: the collector holds its maximum of such connections.
pub const CLOSE_BUSY: u32 = 1;
/// QUIC application close code: a connection without a certificate did not enrol in
/// time.
pub const CLOSE_ENROL_TIMEOUT: u32 = 2;
/// QUIC application close code: the agent was revoked (the reason follows).
pub const CLOSE_REVOKED: u32 = 3;
/// QUIC application close code: the collector cannot take this agent's uploads now
/// (its store does not answer; the reason follows). Retry later, or elsewhere.
pub const CLOSE_UNAVAILABLE: u32 = 4;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Agent → collector: results and health.
    Upload = 1,
    /// Collector → agent: ids committed.
    Ack = 2,
    /// Collector → agent: refused, with a reason.
    Reject = 3,
    /// Agent → collector, before it has a certificate: a token and a CSR.
    Enroll = 4,
    /// Collector → agent: the signed certificate and the CA to pin.
    Enrolled = 5,
    /// Collector → agent, unasked: the plan in force for the agent's building.
    Plan = 6,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Upload),
            2 => Some(Kind::Ack),
            3 => Some(Kind::Reject),
            4 => Some(Kind::Enroll),
            5 => Some(Kind::Enrolled),
            6 => Some(Kind::Plan),
            _ => None,
        }
    }
}

/// The agent's health, carried by every upload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Results waiting in the spool, this batch included.
    pub spool_depth: u64,
    /// Results evicted from a full spool since the agent's first start.
    pub evictions_total: u64,
    /// Last upload the collector acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<DateTime<Utc>>,
    /// Scheduled runs that did not run.
    pub missed_runs_total: u64,
    /// Failed measurements by failure reason.
    #[serde(default)]
    pub failures_total: BTreeMap<String, u64>,
    /// Agent version.
    pub version: String,
    /// Seconds since the agent started.
    pub uptime_s: u64,
    /// Data budget use this month, per budgeted access.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub budgets: BTreeMap<String, BudgetUse>,
    /// The building's position as configured on the box (`[site]` of agent.toml);
    /// the collector uses it when the enrolment token gave none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// Whether the agent's spool refuses writes (its disk is full): its results are
    /// held in memory, bounded, and sent straight up.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub spool_full: bool,
    /// Results held in memory because the spool could not take them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub held_results: u64,
    /// The plan the agent runs, its capabilities and its per-schedule counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Box<crate::plan::PlanState>>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A WGS84 position, degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// Latitude, -90..=90.
    pub latitude: f64,
    /// Longitude, -180..=180.
    pub longitude: f64,
}

impl Position {
    /// The position if both coordinates are finite and in range.
    pub fn checked(self) -> Option<Position> {
        ((-90.0..=90.0).contains(&self.latitude) && (-180.0..=180.0).contains(&self.longitude))
            .then_some(self)
    }
}

/// An access's monthly data budget and what its tests used of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetUse {
    /// `YYYY-MM` (UTC).
    pub month: String,
    /// Bytes the access's tests used this month.
    pub used_bytes: u64,
    /// The month's budget, bytes.
    pub budget_bytes: u64,
}

/// Agent → collector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upload {
    /// Agent-chosen id of this batch, echoed by the answer.
    pub batch: u64,
    /// The agent's health.
    pub health: Health,
    /// Results, oldest first, each as the agent encoded it when it measured.
    pub results: Vec<RawRecord>,
    /// The agent's signatures of those results (absent from agents that do not sign).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signatures: Option<Signatures>,
}

/// An agent's signatures of the results of one upload (docs/METHODOLOGY.md §7.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signatures {
    /// The agent's public signing key, `ed25519 <64 hex digits>`.
    pub key: String,
    /// One per result, in the same order.
    pub envelopes: Vec<Envelope>,
    /// The agent's key rotations not yet acknowledged, oldest first: each takes its
    /// place in the chain, signed by the key it retires. `key` is the key after the
    /// last of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rotations: Vec<Rotation>,
}

/// An agent's change of signing key: a statement chained like a result, signed by the
/// key it retires (docs/METHODOLOGY.md §7.6). The places after it are signed by `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    /// Its place in the agent's chain.
    pub seq: u64,
    /// SHA-256 (hex) of the previous statement.
    pub prev: String,
    /// The key retired, `ed25519 <hex>`.
    pub from: String,
    /// The key that signs from the next place on, `ed25519 <hex>`.
    pub to: String,
    /// Ed25519 signature of [`Rotation::statement`] by `from`, hex.
    pub sig: String,
}

impl Rotation {
    /// The bytes signed: `sonde-key/1`, then place, previous statement's SHA-256, the
    /// retired key and the new one, each on its own line. The next statement's `prev`
    /// is the SHA-256 of these bytes.
    pub fn statement(seq: u64, prev: &str, from: &str, to: &str) -> String {
        format!("sonde-key/1\n{seq}\n{prev}\n{from}\n{to}\n")
    }
}

/// An agent's signature of one result: the result's place in the agent's hash chain
/// and an Ed25519 signature of [`Envelope::statement`], which binds that place to the
/// record's exact bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The result's number in the agent's chain, from 1, without gaps.
    pub seq: u64,
    /// SHA-256 (hex) of the previous result's statement; [`Envelope::GENESIS`] for
    /// the first.
    pub prev: String,
    /// Ed25519 signature of the statement, hex.
    pub sig: String,
}

impl Envelope {
    /// `prev` of a chain's first result.
    pub const GENESIS: &'static str =
        "0000000000000000000000000000000000000000000000000000000000000000";

    /// The bytes signed for result `seq` after `prev`, whose record's bytes have the
    /// RFC 6962 leaf hash `leaf_hash` (SHA-256 of 0x00 and the bytes, hex: the hash
    /// the collector's transparency log holds, so a report's inclusion proof and the
    /// agent's signature name the same bytes): `sonde-result/1`, then each on its own
    /// line. The next result's `prev` is the SHA-256 of these bytes.
    pub fn statement(seq: u64, prev: &str, leaf_hash: &str) -> String {
        format!("sonde-result/1\n{seq}\n{prev}\n{leaf_hash}\n")
    }
}

/// Collector → agent: these ids are committed and may leave the spool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The batch answered.
    pub batch: u64,
    /// Ids committed (new or already stored).
    pub committed: Vec<Uuid>,
}

crate::named! {
    /// Why the collector refused a frame. Stable names: counted in metrics.
    pub enum RejectReason {
        /// Not a frame of this protocol.
        BadFrame = "bad_frame",
        /// A protocol version the collector does not speak.
        UnsupportedVersion = "unsupported_version",
        /// Larger than the bound.
        Oversize = "oversize",
        /// A frame whose JSON is not the expected message.
        BadMessage = "bad_message",
        /// The collector could not commit; retry later.
        Unavailable = "unavailable",
        /// An upload from a connection without an agent certificate, or from a
        /// certificate the collector has no enrolment record for.
        Unauthenticated = "unauthenticated",
        /// An enrolment token the collector never issued.
        TokenUnknown = "token_unknown",
        /// An enrolment token past its expiry.
        TokenExpired = "token_expired",
        /// An enrolment token already used by another enrolment.
        TokenUsed = "token_used",
        /// An enrolment whose certificate request cannot be read or verified.
        BadCsr = "bad_csr",
        /// A connection whose QUIC or TLS handshake failed (counted, never sent).
        Handshake = "handshake",
        /// A connection refused because the collector holds its maximum (counted, never
        /// sent).
        Busy = "busy",
        /// A connection without a certificate that did not enrol in time (counted,
        /// never sent: the connection is closed).
        EnrolmentTimeout = "enrolment_timeout",
        /// The agent's enrolment was revoked (`sonde-collector agent revoke`); its results
        /// stay on the box until it is enrolled again.
        Revoked = "revoked",
        /// An upload holding a result that is not a record of this collector's schema
        /// (another `schema_version`, over [`crate::MAX_RECORD_BYTES`], wrong shape):
        /// the same check `sonde-collector import` applies. Nothing of the upload is
        /// stored; the results stay on the box.
        BadRecord = "bad_record",
        /// An upload whose signatures do not check: not one per result, a malformed
        /// key, or a result whose signature does not match its bytes and place.
        /// Nothing of the upload is stored.
        BadSignature = "bad_signature",
        /// An upload signed with another key than the one recorded for the agent.
        KeyMismatch = "key_mismatch",
        /// An upload whose results do not continue the agent's chain: a place taken
        /// by another result (a replay or a fork), or a result that does not follow
        /// its predecessor.
        ChainBroken = "chain_broken",
    }
}

/// Collector → agent: refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    /// The batch refused, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u64>,
    /// Why.
    pub reason: RejectReason,
    /// One line of detail.
    pub message: String,
}

/// Agent → collector on a connection without a client certificate: asks for one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enroll {
    /// The one-time token (see [`EnrolToken`]), as printed by `token create`.
    pub token: String,
    /// PKCS#10 certificate request (PEM) for the key the agent made.
    pub csr_pem: String,
}

/// Collector → agent: the identity it was given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolled {
    /// The agent id (the certificate's common name).
    pub agent_id: String,
    /// The agent's certificate (PEM), signed by the collector's CA.
    pub cert_pem: String,
    /// The collector's CA certificate (PEM), pinned by the agent from now on.
    pub ca_pem: String,
    /// The quartier of the token.
    pub quartier: String,
    /// The building of the token.
    pub building: String,
}

/// A result record as its author encoded it (JSON text). It travels and is stored as
/// these bytes, so that a signature over them holds from the agent's spool to the
/// collector's store; readers parse it ([`RawRecord::parse`]) for what they need.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawRecord(Box<RawValue>);

impl RawRecord {
    /// The record's encoding (what the agent spools and sends).
    pub fn of(record: &ResultRecord) -> RawRecord {
        RawRecord::from_json(record.to_json())
            .unwrap_or_else(|_| unreachable!("a record always encodes as one JSON object"))
    }

    /// Bytes kept as they are, once checked to be one JSON value (not that it is a
    /// record: see [`RawRecord::parse`]).
    pub fn from_json(json: String) -> Result<RawRecord, serde_json::Error> {
        RawValue::from_string(json).map(RawRecord)
    }

    /// The bytes.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// Reads the record these bytes hold: the one check every path applies (size
    /// bound, schema version, shape).
    pub fn parse(&self) -> Result<ResultRecord, DecodeError> {
        ResultRecord::from_json(self.as_str().as_bytes())
    }
}

impl PartialEq for RawRecord {
    fn eq(&self, other: &RawRecord) -> bool {
        self.as_str() == other.as_str()
    }
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Message {
    /// See [`Upload`].
    Upload(Upload),
    /// See [`Ack`].
    Ack(Ack),
    /// See [`Reject`].
    Reject(Reject),
    /// See [`Enroll`].
    Enroll(Enroll),
    /// See [`Enrolled`].
    Enrolled(Enrolled),
    /// See [`AgentPlan`](crate::plan::AgentPlan).
    Plan(crate::plan::AgentPlan),
    /// A frame of a kind this side does not know (from a newer version): its payload
    /// is skipped; the caller counts it and reads on.
    Unknown {
        /// The kind byte.
        kind: u8,
        /// Payload bytes skipped.
        len: usize,
    },
}

/// Why bytes are not a frame. Each maps to a [`RejectReason`].
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Wrong magic.
    #[error("not a sonde frame (bad magic)")]
    BadMagic,
    /// A framing version outside [`MIN_VERSION`]`..=`[`VERSION`].
    #[error("frame version {0} is not supported (this side reads {MIN_VERSION} to {VERSION})")]
    Version(u8),
    /// Over the bound.
    #[error("frame of {len} bytes exceeds the {max}-byte bound")]
    TooLarge {
        /// Announced payload length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The payload is not the message its kind announces.
    #[error("frame payload is not a valid {kind:?} message: {source}")]
    Json {
        /// The kind announced.
        kind: Kind,
        /// The parse error.
        source: serde_json::Error,
    },
}

impl WireError {
    /// The reason to report and count.
    pub fn reason(&self) -> RejectReason {
        match self {
            WireError::BadMagic => RejectReason::BadFrame,
            WireError::Version(_) => RejectReason::UnsupportedVersion,
            WireError::TooLarge { .. } => RejectReason::Oversize,
            WireError::Json { .. } => RejectReason::BadMessage,
        }
    }
}

/// Encodes a message as one frame. [`Message::Unknown`] encodes as an empty frame of
/// its kind (what a test from the future sends).
pub fn encode(message: &Message) -> Vec<u8> {
    let (kind, payload) = match message {
        Message::Upload(m) => (Kind::Upload as u8, serde_json::to_vec(m)),
        Message::Ack(m) => (Kind::Ack as u8, serde_json::to_vec(m)),
        Message::Reject(m) => (Kind::Reject as u8, serde_json::to_vec(m)),
        Message::Enroll(m) => (Kind::Enroll as u8, serde_json::to_vec(m)),
        Message::Enrolled(m) => (Kind::Enrolled as u8, serde_json::to_vec(m)),
        Message::Plan(m) => (Kind::Plan as u8, serde_json::to_vec(m)),
        Message::Unknown { kind, .. } => (*kind, Ok(Vec::new())),
    };
    // These types hold only strings, numbers and string-keyed maps: they always encode.
    frame(kind, &payload.unwrap_or_default())
}

/// One frame of `kind` around `payload`, as it goes on the wire.
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Incremental, bounded frame decoder.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    max_payload: usize,
    failed: bool,
    /// Payload bytes of an unknown frame still to drop as they arrive.
    skipping: usize,
}

impl FrameDecoder {
    /// A decoder refusing payloads above `max_payload` bytes.
    pub fn new(max_payload: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            max_payload,
            failed: false,
            skipping: 0,
        }
    }

    /// Appends received bytes. After an error the decoder ignores further input: the
    /// stream cannot be resynchronised and must be closed.
    pub fn push(&mut self, mut bytes: &[u8]) {
        if self.failed {
            return;
        }
        let skipped = self.skipping.min(bytes.len());
        self.skipping -= skipped;
        bytes = &bytes[skipped..];
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered, never more than a header plus the bound plus one push.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message, `Ok(None)` when more bytes are needed.
    pub fn poll(&mut self) -> Result<Option<Message>, WireError> {
        match self.next() {
            Err(e) => {
                self.failed = true;
                self.buf.clear();
                Err(e)
            }
            ok => ok,
        }
    }

    fn next(&mut self) -> Result<Option<Message>, WireError> {
        // Check what is there as early as possible: magic byte by byte, then version.
        let have = self.buf.len().min(MAGIC.len());
        if self.buf[..have] != MAGIC[..have] {
            return Err(WireError::BadMagic);
        }
        if self.buf.len() > 4 && !(MIN_VERSION..=VERSION).contains(&self.buf[4]) {
            return Err(WireError::Version(self.buf[4]));
        }
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[6], self.buf[7], self.buf[8], self.buf[9]]) as usize;
        if len > self.max_payload {
            return Err(WireError::TooLarge {
                len,
                max: self.max_payload,
            });
        }
        let Some(kind) = Kind::from_u8(self.buf[5]) else {
            // From a newer version: drop the payload, as much as is here now and the
            // rest as it arrives.
            let kind = self.buf[5];
            let here = (self.buf.len() - HEADER_LEN).min(len);
            self.buf.drain(..HEADER_LEN + here);
            self.skipping = len - here;
            return Ok(Some(Message::Unknown { kind, len }));
        };
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let payload = &self.buf[HEADER_LEN..HEADER_LEN + len];
        let json = |source| WireError::Json { kind, source };
        let message = match kind {
            Kind::Upload => Message::Upload(serde_json::from_slice(payload).map_err(json)?),
            Kind::Ack => Message::Ack(serde_json::from_slice(payload).map_err(json)?),
            Kind::Reject => Message::Reject(serde_json::from_slice(payload).map_err(json)?),
            Kind::Enroll => Message::Enroll(serde_json::from_slice(payload).map_err(json)?),
            Kind::Enrolled => Message::Enrolled(serde_json::from_slice(payload).map_err(json)?),
            Kind::Plan => Message::Plan(serde_json::from_slice(payload).map_err(json)?),
        };
        self.buf.drain(..HEADER_LEN + len);
        Ok(Some(message))
    }
}

/// An enrolment token: a one-time secret, and the fingerprint of the collector's CA so
/// the agent can authenticate the collector on its very first contact. Written
/// `st1.<secret: 32 hex>.<CA SHA-256, first 16 bytes: 32 hex>`.
#[derive(Clone, PartialEq, Eq)]
pub struct EnrolToken {
    /// The secret the collector stores a hash of.
    pub secret: [u8; 16],
    /// First 16 bytes of the SHA-256 of the CA certificate (DER).
    pub ca_fingerprint: [u8; 16],
}

impl std::fmt::Debug for EnrolToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret in logs.
        f.debug_struct("EnrolToken")
            .field("ca_fingerprint", &hex(&self.ca_fingerprint))
            .finish_non_exhaustive()
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes `hex` wrote, if `s` is an even number of hex digits.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

fn unhex16(s: &str) -> Option<[u8; 16]> {
    unhex(s)?.try_into().ok()
}

impl std::fmt::Display for EnrolToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "st1.{}.{}", hex(&self.secret), hex(&self.ca_fingerprint))
    }
}

impl std::str::FromStr for EnrolToken {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || "not a sonde enrolment token (st1.<32 hex>.<32 hex>)".to_string();
        let mut parts = s.trim().split('.');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("st1"), Some(secret), Some(fp), None) => Ok(EnrolToken {
                secret: unhex16(secret).ok_or_else(bad)?,
                ca_fingerprint: unhex16(fp).ok_or_else(bad)?,
            }),
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_anything_else_is_refused() {
        let bytes = [0u8, 1, 0x7f, 0xab, 0xff];
        assert_eq!(unhex(&hex(&bytes)).as_deref(), Some(&bytes[..]));
        assert_eq!(unhex("ABff").as_deref(), Some(&[0xab, 0xff][..]));
        for bad in ["a", "zz", "0g", "é0"] {
            assert_eq!(unhex(bad), None, "{bad}");
        }
        assert_eq!(unhex(""), Some(Vec::new()));
    }

    #[test]
    fn tokens_round_trip_and_malformed_ones_are_refused() {
        let t = EnrolToken {
            secret: [0xab; 16],
            ca_fingerprint: [7; 16],
        };
        let text = t.to_string();
        assert_eq!(text.parse::<EnrolToken>(), Ok(t.clone()));
        assert!(!format!("{t:?}").contains("abab"), "Debug hides the secret");
        for bad in [
            "",
            "st1",
            "st2.x.y",
            &text[..text.len() - 1],
            &format!("{text}.x"),
            &text.replace('a', "g"),
        ] {
            assert!(bad.parse::<EnrolToken>().is_err(), "{bad}");
        }
    }

    fn ack(batch: u64) -> Message {
        Message::Ack(Ack {
            batch,
            committed: vec![Uuid::from_u128(7)],
        })
    }

    #[test]
    fn frames_decode_from_any_split() {
        let mut bytes = encode(&ack(1));
        bytes.extend(encode(&ack(2)));
        for split in 0..bytes.len() {
            let mut d = FrameDecoder::new(1024);
            d.push(&bytes[..split]);
            let mut got = Vec::new();
            while let Some(m) = d.poll().expect("valid") {
                got.push(m);
            }
            d.push(&bytes[split..]);
            while let Some(m) = d.poll().expect("valid") {
                got.push(m);
            }
            assert_eq!(got, vec![ack(1), ack(2)], "split at {split}");
        }
    }

    #[test]
    fn frames_of_unknown_kinds_are_skipped_by_length_from_any_split() {
        let future = frame(200, &[b'x'; 300]);
        let mut bytes = encode(&ack(1));
        bytes.extend(&future);
        bytes.extend(encode(&ack(2)));
        for split in 0..bytes.len() {
            let mut d = FrameDecoder::new(1024);
            let mut got = Vec::new();
            for part in [&bytes[..split], &bytes[split..]] {
                d.push(part);
                while let Some(m) = d.poll().expect("valid") {
                    got.push(m);
                }
                // At most a known frame waits for its end; the unknown payload is gone.
                assert!(
                    d.buffered() < encode(&ack(2)).len(),
                    "payloads are not kept"
                );
            }
            let unknown = Message::Unknown {
                kind: 200,
                len: 300,
            };
            assert_eq!(got, vec![ack(1), unknown, ack(2)], "split at {split}");
        }
        // An unknown kind still obeys the bound.
        let mut d = FrameDecoder::new(16);
        d.push(&future[..HEADER_LEN]);
        assert!(matches!(d.poll(), Err(WireError::TooLarge { .. })));
    }

    #[test]
    fn the_supported_versions_are_read_and_others_refused() {
        for v in MIN_VERSION..=VERSION {
            let mut f = encode(&ack(1));
            f[4] = v;
            let mut d = FrameDecoder::new(1024);
            d.push(&f);
            assert_eq!(d.poll().expect("supported"), Some(ack(1)));
        }
        for v in [0, VERSION + 1, u8::MAX] {
            let mut f = encode(&ack(1));
            f[4] = v;
            let mut d = FrameDecoder::new(1024);
            d.push(&f);
            assert_eq!(
                d.poll().expect_err("unsupported").reason(),
                RejectReason::UnsupportedVersion
            );
        }
    }

    #[test]
    fn raw_records_travel_as_their_bytes() {
        // Field order and spacing of the author's encoding survive a round trip.
        let text = format!("{{\"zz_later\": 1,   \"id\": \"{}\"}}", Uuid::from_u128(9));
        let raw = RawRecord::from_json(text.clone()).expect("JSON");
        let upload = Message::Upload(Upload {
            batch: 3,
            health: Health::default(),
            results: vec![raw],
            signatures: None,
        });
        let mut d = FrameDecoder::new(1 << 20);
        d.push(&encode(&upload));
        match d.poll().expect("frame") {
            Some(Message::Upload(u)) => assert_eq!(u.results[0].as_str(), text),
            other => panic!("{other:?}"),
        }
        assert!(RawRecord::from_json("{not json".into()).is_err());
    }

    #[test]
    fn garbage_is_refused_at_the_first_wrong_byte() {
        let mut d = FrameDecoder::new(1024);
        d.push(b"G");
        assert!(matches!(d.poll(), Err(WireError::BadMagic)));
        // The decoder stays failed.
        d.push(&encode(&ack(1)));
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn versions_kinds_sizes_and_payloads_are_checked() {
        let mut frame = encode(&ack(1));
        frame[4] = 9;
        let mut d = FrameDecoder::new(1024);
        d.push(&frame[..5]);
        assert!(matches!(d.poll(), Err(WireError::Version(9))));

        // Oversize is refused from the header alone.
        let mut d = FrameDecoder::new(16);
        let frame = encode(&ack(1));
        d.push(&frame[..HEADER_LEN]);
        let e = d.poll().expect_err("too large");
        assert_eq!(e.reason(), RejectReason::Oversize);

        let mut frame = MAGIC.to_vec();
        frame.extend_from_slice(&[VERSION, Kind::Upload as u8, 0, 0, 0, 2]);
        frame.extend_from_slice(b"{}");
        let mut d = FrameDecoder::new(1024);
        d.push(&frame);
        assert_eq!(
            d.poll().expect_err("not an upload").reason(),
            RejectReason::BadMessage
        );
    }
}
