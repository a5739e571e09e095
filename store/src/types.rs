//! What the store keeps and answers, whatever the backend: deliveries and batches,
//! tokens and sites, pages of results, agents.

use crate::StoreError;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sonde_proto::wire::{Health, RawRecord};
use sonde_proto::ResultRecord;
use uuid::Uuid;

/// Who delivered a batch: taken from the agent's certificate and enrolment record at
/// ingest, never from the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Agent id.
    pub agent_id: String,
    /// The agent's quartier, from its enrolment.
    pub quartier: Option<String>,
    /// The agent's building, from its enrolment.
    pub building: Option<String>,
}

/// One agent's upload: committed with others in one transaction.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Who delivered it.
    pub delivery: Delivery,
    /// The results, oldest first, as read for their columns.
    pub records: Vec<ResultRecord>,
    /// Each record's bytes as its agent encoded them: what the store keeps, verbatim.
    pub raw: Vec<RawRecord>,
    /// The agent's health carried by the upload.
    pub health: Option<Health>,
    /// The agent's signatures of the records, checked (none: an unsigned upload).
    pub signed: Option<Signed>,
}

/// A stored result as the transparency log holds it, for a report's proofs.
#[derive(Debug, Clone, Copy)]
pub struct LogLeaf<'a> {
    /// The result's id.
    pub id: &'a str,
    /// Its leaf.
    pub leaf: u64,
    /// Its stored bytes.
    pub bytes: &'a str,
    /// The agent that delivered it.
    pub agent_id: &'a str,
    /// Its quartier and building ('' when none), as stored with it.
    pub site: (&'a str, &'a str),
    /// Its agent's envelope (JSON), when it was signed.
    pub envelope: Option<&'a str>,
}

/// What an agent's checked signatures add to a batch (docs/METHODOLOGY.md §7.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// One per record, in order.
    pub envelopes: Vec<sonde_proto::wire::Envelope>,
    /// The agent's chain head after the batch: its place and its statement's SHA-256.
    pub head: (u64, String),
    /// Places of the chain found missing: (first, last), each range inclusive.
    pub gaps: Vec<(u64, u64)>,
    /// Key rotations the batch carried, checked, new ones only, oldest first.
    pub rotations: Vec<sonde_proto::wire::Rotation>,
    /// The agent's key after them.
    pub key: String,
}

/// One version of the collector's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanVersion {
    /// Its number, from 1.
    pub version: u64,
    /// When it took effect.
    pub applied_at: DateTime<Utc>,
    /// The plan, as checked and applied (JSON of `sonde_proto::plan::PlanFile`).
    pub document: String,
}

/// A token to store (`token create`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewToken {
    /// SHA-256 of the secret, hex.
    pub hash: String,
    /// Quartier the enrolled agent belongs to.
    pub quartier: String,
    /// Building the enrolled agent sits in.
    pub building: String,
    /// WGS84 latitude of the building, when given.
    pub latitude: Option<f64>,
    /// WGS84 longitude of the building, when given.
    pub longitude: Option<f64>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// After this the token is refused.
    pub expires_at: DateTime<Utc>,
}

/// The site an enrolment gave an agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    /// Quartier.
    pub quartier: String,
    /// Building.
    pub building: String,
    /// WGS84 latitude of the building, from the token.
    pub latitude: Option<f64>,
    /// WGS84 longitude of the building, from the token.
    pub longitude: Option<f64>,
}

/// Why an enrolment was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    /// No such token.
    #[error("unknown token")]
    Unknown,
    /// The token expired.
    #[error("the token expired at {0}")]
    Expired(DateTime<Utc>),
    /// The token was used already.
    #[error("the token was used at {0}")]
    Used(DateTime<Utc>),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a committed batch did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Inserted {
    /// New results stored.
    pub new: usize,
    /// Results whose id was already stored (a re-sent batch): left as they were.
    pub duplicates: usize,
    /// For each record of the batch, in order: whether it was new.
    pub fresh: Vec<bool>,
}

/// A page request over results, ordered by start time then id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResultQuery {
    /// Results that started at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Results that started before this time.
    pub to: Option<DateTime<Utc>>,
    /// Only this agent's results.
    pub agent: Option<String>,
    /// Page size (1..=1000).
    pub limit: usize,
    /// Opaque cursor from the previous page.
    pub cursor: Option<String>,
}

/// A stored result: its record's bytes as the agent sent them, and the identity and
/// site the collector gave its delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResult {
    /// The record, verbatim.
    pub record: String,
    /// The agent that delivered it (from its certificate).
    pub agent_id: String,
    /// Its quartier (from its enrolment).
    pub quartier: Option<String>,
    /// Its building (from its enrolment).
    pub building: Option<String>,
    /// When the collector committed it (absent from stores that do not say).
    pub received_at: Option<DateTime<Utc>>,
}

/// A result that started this long after it was received was measured under a wrong
/// wall clock (a box booted without a battery clock, before NTP): the API flags it
/// `future_dated`. Results arriving long after they started are normal (a spool
/// drained after an outage) and are not flagged.
pub const FUTURE_DATED: chrono::Duration = chrono::Duration::minutes(10);

/// A record's top level, each member kept as its bytes.
type Shallow = std::collections::BTreeMap<String, Box<serde_json::value::RawValue>>;

impl StoredResult {
    /// The record as the API shows it: the agent's record with the identity and site
    /// the collector established in place of whatever the payload said. A stored row
    /// that no longer parses is shown as its text rather than dropped.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// The record's top level with `agent` and `site` replaced; only those two small
    /// members are parsed, the others stay as stored.
    fn overlaid(&self) -> Option<Shallow> {
        use serde_json::{Map, Value};
        let mut top: Shallow = serde_json::from_str(&self.record).ok()?;
        let member = |top: &Shallow, key: &str| -> Map<String, Value> {
            top.get(key)
                .and_then(|raw| serde_json::from_str(raw.get()).ok())
                .unwrap_or_default()
        };
        let mut agent = member(&top, "agent");
        agent.insert("id".into(), self.agent_id.clone().into());
        let mut site = member(&top, "site");
        for (key, value) in [("quartier", &self.quartier), ("building", &self.building)] {
            match value {
                Some(v) => site.insert(key.into(), v.clone().into()),
                None => site.remove(key),
            };
        }
        for (key, value) in [("agent", agent), ("site", site)] {
            let raw = serde_json::value::to_raw_value(&value).ok()?;
            top.insert(key.into(), raw);
        }
        if let Some(received) = self.received_at {
            let started = member(&top, "run")
                .get("started_at")
                .and_then(|v| serde_json::from_value::<DateTime<Utc>>(v.clone()).ok());
            top.insert(
                "received_at".into(),
                serde_json::value::to_raw_value(&received).ok()?,
            );
            if started.is_some_and(|s| s > received + FUTURE_DATED) {
                top.insert(
                    "collector_flags".into(),
                    serde_json::value::to_raw_value(&["future_dated"]).ok()?,
                );
            }
        }
        Some(top)
    }
}

impl Serialize for StoredResult {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.overlaid() {
            Some(top) => top.serialize(s),
            None => s.serialize_str(&self.record),
        }
    }
}

/// One page of results.
#[derive(Debug, Clone, Serialize)]
pub struct ResultPage {
    /// The results.
    pub results: Vec<StoredResult>,
    /// Cursor of the next page, when there may be one.
    pub next_cursor: Option<String>,
}

/// An agent as the store knows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentRow {
    /// Agent id.
    pub id: String,
    /// Quartier.
    pub quartier: Option<String>,
    /// Building.
    pub building: Option<String>,
    /// Agent version of its latest result.
    pub version: Option<String>,
    /// First delivery (RFC 3339).
    pub first_seen: DateTime<Utc>,
    /// Latest delivery (RFC 3339).
    pub last_seen: DateTime<Utc>,
    /// Results stored.
    pub results: u64,
    /// When it enrolled (absent for agents known only from imports).
    pub enrolled_at: Option<DateTime<Utc>>,
    /// WGS84 latitude of its building, from its token.
    pub latitude: Option<f64>,
    /// WGS84 longitude of its building, from its token.
    pub longitude: Option<f64>,
    /// The health sent with its latest upload.
    pub health: Option<serde_json::Value>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Encodes the position after a result as an opaque page cursor.
pub fn encode_cursor(started_at_ns: i64, id: &Uuid) -> String {
    format!("{started_at_ns}_{}", id.simple())
}

/// Decodes a cursor made by [`encode_cursor`].
pub fn decode_cursor(cursor: &str) -> Result<(i64, Uuid), StoreError> {
    let bad = || StoreError::Query(format!("cursor {cursor:?} is not one this collector made"));
    let (t, id) = cursor.split_once('_').ok_or_else(bad)?;
    Ok((
        t.parse().map_err(|_| bad())?,
        Uuid::try_parse(id).map_err(|_| bad())?,
    ))
}

/// Largest page a backend serves.
pub const MAX_PAGE: usize = 1000;

impl ResultQuery {
    /// Checks the page size (1..=[`MAX_PAGE`]) and reads the cursor: the (start,
    /// id) the page begins after (before everything without a cursor).
    pub fn after(&self) -> Result<(i64, String), StoreError> {
        if self.limit == 0 || self.limit > MAX_PAGE {
            return Err(StoreError::Query(format!(
                "limit={} is outside 1..={MAX_PAGE}",
                self.limit
            )));
        }
        Ok(match &self.cursor {
            Some(c) => {
                let (t, id) = decode_cursor(c)?;
                (t, id.to_string())
            }
            None => (i64::MIN, String::new()),
        })
    }
}

impl Batch {
    /// A batch of `records` as their agent encoded them (the store keeps these bytes).
    pub fn of(delivery: Delivery, records: Vec<ResultRecord>, health: Option<Health>) -> Batch {
        Batch {
            raw: records.iter().map(RawRecord::of).collect(),
            delivery,
            records,
            health,
            signed: None,
        }
    }
}

/// Room on the disk a store writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes an unprivileged writer can still use.
    pub free_bytes: u64,
    /// Size of the file system.
    pub total_bytes: u64,
}

impl Space {
    /// Free space below which the store counts as full: 64 MiB, or 5 % of a file
    /// system smaller than 1.25 GiB. Below it a burst of backfill can fail to commit.
    pub fn reserve(&self) -> u64 {
        (64 << 20).min(self.total_bytes / 20)
    }

    /// Whether free space is below [`Space::reserve`].
    pub fn low(&self) -> bool {
        self.free_bytes < self.reserve()
    }
}
