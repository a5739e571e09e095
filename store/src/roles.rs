//! The store's roles: what the collector asks of a store, cut by who asks. Ingest
//! writes ([`ResultWriter`]); enrolment and revocation keep identities
//! ([`Enrolments`]); the API reads ([`ResultReader`]); reports scan ([`ReportSource`]);
//! operators maintain ([`Maintenance`]); plans are kept by version ([`Plans`]); the
//! transparency log proves what was stored ([`TransparencyLog`]); agents' keys and
//! chains are kept ([`Chains`]). A backend implements all eight; [`Store`] is
//! their sum. A write returns only once committed (durably): callers acknowledge
//! result ids after that, never before. Reads never wait for the writer.

use crate::types::*;
use crate::StoreError;
use chrono::{DateTime, Utc};
use sonde_method::report::{ReportScope, ReportSink};
use sonde_proto::ResultRecord;

/// Commits results.
pub trait ResultWriter: Send + Sync {
    /// Stores several agents' batches in one transaction (group commit) and returns
    /// after it is committed (durably), with one [`Inserted`] per batch. Results
    /// already stored (same id) are left untouched and counted as duplicates. On error
    /// nothing of any batch is stored.
    fn insert_batches(
        &self,
        batches: &[Batch],
        now: DateTime<Utc>,
    ) -> Result<Vec<Inserted>, StoreError>;

    /// Stores one batch; see [`ResultWriter::insert_batches`].
    fn insert(
        &self,
        delivery: &Delivery,
        records: &[ResultRecord],
        now: DateTime<Utc>,
    ) -> Result<Inserted, StoreError> {
        let batch = Batch::of(delivery.clone(), records.to_vec(), None);
        Ok(self
            .insert_batches(std::slice::from_ref(&batch), now)?
            .pop()
            .unwrap_or_default())
    }
}

/// Tokens, enrolments and revocations.
pub trait Enrolments: Send + Sync {
    /// Stores a new enrolment token.
    fn create_token(&self, token: &NewToken) -> Result<(), StoreError>;

    /// Uses the token whose secret hashes to `hash`, atomically: a token enrols one
    /// agent, once, before it expires. The agent's id is `name(site)`. Returns the id
    /// and the site.
    fn enrol(
        &self,
        hash: &str,
        now: DateTime<Utc>,
        name: &dyn Fn(&Site) -> String,
    ) -> Result<(String, Site), EnrolError>;

    /// The site of an enrolled agent; `None` when the collector never enrolled it.
    fn enrolment(&self, agent_id: &str) -> Result<Option<Site>, StoreError>;

    /// Revokes an agent: its next connections are refused. `false` for an unknown agent.
    /// Revoking twice keeps the first date.
    fn revoke(&self, agent_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// When the agent was revoked, if it was.
    fn revoked_at(&self, agent_id: &str) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Every revoked agent, with when: what a running collector watches, so that a
    /// revocation made by `agent revoke` (another process) reaches its open
    /// connections.
    fn revoked(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError>;
}

/// What the API and the metrics read.
pub trait ResultReader: Send + Sync {
    /// A page of results.
    fn results(&self, query: &ResultQuery) -> Result<ResultPage, StoreError>;

    /// One stored result by its id (a UUID), when the store holds it.
    fn result(&self, id: &str) -> Result<Option<StoredResult>, StoreError>;

    /// Every agent that delivered a result.
    fn agents(&self) -> Result<Vec<AgentRow>, StoreError>;

    /// The latest result of every agent's every access, with who delivered it: what
    /// the metrics are rebuilt from when the collector starts.
    fn latest_results(&self) -> Result<Vec<(Delivery, ResultRecord)>, StoreError>;

    /// Whether any agent, token or result names this quartier (and building).
    fn site_known(
        &self,
        quartier: Option<&str>,
        building: Option<&str>,
    ) -> Result<bool, StoreError>;
}

/// What reports read.
pub trait ReportSource: Send + Sync {
    /// Feeds a report's accesses and results to `sink` from one consistent snapshot,
    /// without holding up ingest. `with_ids` adds each result's id (slower).
    fn report_scan(
        &self,
        scope: &ReportScope,
        with_ids: bool,
        sink: &mut dyn ReportSink,
    ) -> Result<(), StoreError>;

    /// Like [`ReportSource::report_scan`] without ids, the accesses shared out among `sinks`
    /// (the i-th access of the scan to `sinks[i % n]`, its results with it), each part
    /// read on a thread of its own where the backend can, all from one consistent
    /// snapshot. The default reads in one pass.
    fn report_scan_parts(
        &self,
        scope: &ReportScope,
        sinks: &mut [&mut (dyn ReportSink + Send)],
    ) -> Result<(), StoreError> {
        split_scan(self, scope, sinks)
    }

    /// The ids of the results whose rows a scan gave as `(handle, started_at_ns)`
    /// ([`crate::Fact::handle`]), in order; `None` for a result whose record is gone
    /// (retention), even when its row's key was reused since.
    fn result_ids(&self, rows: &[(i64, i64)]) -> Result<Vec<Option<String>>, StoreError>;
}

/// Fills in the ids of the tests a report pictures (each access's worst and typical,
/// METHODOLOGY §7.3) from the handles its scan gave.
pub fn resolve_pictures<S: ReportSource + ?Sized>(
    source: &S,
    report: &mut sonde_method::report::Report,
) -> Result<(), StoreError> {
    let wanted = report.picture_handles();
    let ids = source.result_ids(&wanted)?;
    report.set_pictures(&wanted, &ids);
    Ok(())
}

/// [`ReportSource::report_scan_parts`] in one pass of [`ReportSource::report_scan`].
pub fn split_scan<S: ReportSource + ?Sized>(
    source: &S,
    scope: &ReportScope,
    sinks: &mut [&mut (dyn ReportSink + Send)],
) -> Result<(), StoreError> {
    let mut split = Split {
        sinks,
        owner: std::collections::HashMap::new(),
        last: None,
    };
    source.report_scan(scope, false, &mut split)
}

/// Routes a scan's accesses and their results among several sinks.
struct Split<'a, 'b> {
    sinks: &'a mut [&'b mut (dyn ReportSink + Send)],
    owner: std::collections::HashMap<(String, String), usize>,
    /// The access of the last row and its part.
    last: Option<(String, String, usize)>,
}

impl ReportSink for Split<'_, '_> {
    fn accesses(&mut self, accesses: Vec<crate::ScheduledAccess>) {
        let n = self.sinks.len().max(1);
        let mut parts: Vec<Vec<crate::ScheduledAccess>> = vec![Vec::new(); n];
        for (i, a) in accesses.into_iter().enumerate() {
            self.owner
                .insert((a.agent_id.clone(), a.access.clone()), i % n);
            parts[i % n].push(a);
        }
        for (sink, part) in self.sinks.iter_mut().zip(parts) {
            sink.accesses(part);
        }
    }

    fn fact(&mut self, fact: &crate::Fact<'_>) -> Result<(), String> {
        // Rows come access by access: look the owner up once per access, not per row.
        let same = self
            .last
            .as_ref()
            .is_some_and(|(a, b, _)| a == fact.agent_id && b == fact.access);
        if !same {
            let key = (fact.agent_id.to_string(), fact.access.to_string());
            let i = self.owner.get(&key).copied().unwrap_or(0);
            self.last = Some((key.0, key.1, i));
        }
        let i = self.last.as_ref().map_or(0, |(_, _, i)| *i);
        match self.sinks.get_mut(i) {
            Some(sink) => sink.fact(fact),
            None => Ok(()),
        }
    }
}

/// What operators run: retention, backups, health.
pub trait Maintenance: Send + Sync {
    /// Deletes the raw results (records) started before `before`, at most `limit` of
    /// them, oldest first; returns how many. Report rows are kept: reports over old
    /// periods keep their figures.
    fn prune(&self, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError>;

    /// Writes a consistent copy of the whole store to `path` (a new file) while
    /// ingest goes on: it holds every result committed before the copy began.
    fn backup(&self, path: &std::path::Path) -> Result<(), StoreError>;

    /// Whether the store answers; why not, in one line.
    fn health(&self) -> Result<(), StoreError>;

    /// Room left where the store writes (`None`: the backend cannot tell, e.g. a
    /// remote database).
    fn space(&self) -> Option<Space>;

    /// Takes, or renews, the lease on `job` for `holder` until `until`, unless another
    /// holder's lease runs past `now`; whether `holder` holds it. Several collectors on
    /// one store run each maintenance job (retention, log checkpoints) under one, so
    /// one of them at a time does it.
    fn lease(
        &self,
        job: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

/// The plans a collector pushes: every version kept, never changed, so what was in
/// force at any time can be read back.
pub trait Plans: Send + Sync {
    /// Keeps `document` (a checked plan, JSON) as the next version, in force from
    /// `at`; returns its version (1 for the first). Versions only grow.
    fn apply_plan(&self, document: &str, at: DateTime<Utc>) -> Result<u64, StoreError>;

    /// The latest version, if any plan was ever applied: what a running collector
    /// polls to notice a plan applied by another process.
    fn plan_version(&self) -> Result<Option<u64>, StoreError>;

    /// One version, with its document.
    fn plan(&self, version: u64) -> Result<Option<PlanVersion>, StoreError>;

    /// Every version, oldest first, with its document.
    fn plans(&self) -> Result<Vec<PlanVersion>, StoreError>;
}

/// The transparency log of stored results ([`crate::log`]): the backend appends each
/// newly stored result as a leaf (its verbatim bytes) in the transaction that stores
/// it, and keeps the tree's hashes and the signed checkpoints; it never changes them.
pub trait TransparencyLog: Send + Sync {
    /// Leaves in the log.
    fn log_size(&self) -> Result<u64, StoreError>;

    /// The tree's stored hashes at these indexes (tlog's stored hash indexes), in the
    /// order asked; an index not stored yet is an error.
    fn log_hashes(&self, indexes: &[u64]) -> Result<Vec<crate::log::Hash>, StoreError>;

    /// The leaf of the result with id `result_id`: its index and its bytes (`None`:
    /// no such result, or pruned).
    fn log_leaf(&self, result_id: &str) -> Result<Option<(u64, String)>, StoreError>;

    /// Feeds `each` the leaf of every stored result of `scope` (started in its period,
    /// in its quartier and building when named), in leaf order. A pruned result has no
    /// bytes and is skipped.
    fn log_leaves_in(
        &self,
        scope: &ReportScope,
        each: &mut dyn FnMut(&LogLeaf<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// How many stored results of `scope` are among the first `size` leaves.
    fn log_count_in(&self, scope: &ReportScope, size: u64) -> Result<u64, StoreError>;

    /// Keeps a signed checkpoint of the first `size` leaves (a second one of the same
    /// size is ignored).
    fn keep_checkpoint(&self, size: u64, note: &str, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// The latest kept checkpoint: its size and its signed note.
    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError>;
}

/// Agents' signing keys and the heads of their chains of signed results
/// (docs/METHODOLOGY.md §7.6); the collector's ingest checks against them.
pub trait Chains: Send + Sync {
    /// Records `key` (`ed25519 <hex>`) as the agent's signing key unless one is
    /// recorded already; returns the agent's key (the first one recorded).
    fn register_signing_key(
        &self,
        agent_id: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError>;

    /// Every agent's signing key: (agent id, `ed25519 <hex>`), what a report ships.
    fn signing_keys(&self) -> Result<Vec<(String, String)>, StoreError>;

    /// The head of the agent's chain of signed results: its highest place stored and
    /// the SHA-256 (hex) of that result's statement.
    fn chain_head(&self, agent_id: &str) -> Result<Option<(u64, String)>, StoreError>;

    /// Key rotations stored, of one agent or of all, by agent then place.
    fn key_rotations(
        &self,
        agent_id: Option<&str>,
    ) -> Result<Vec<(String, sonde_proto::wire::Rotation)>, StoreError>;
}

/// Key material several collectors share (the CA, the report key), kept sealed: the
/// store holds opaque bytes under a name and never sees a key. Only a store several
/// collectors can share keeps them; the others refuse.
pub trait SealedKeys: Send + Sync {
    /// The sealed bytes kept under `name`, if any.
    fn sealed_key(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let _ = name;
        Err(no_sealed_keys())
    }

    /// Keeps `sealed` under `name` unless something is kept there already; returns
    /// what is kept there now (another collector's, when it was first).
    fn keep_sealed_key(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        let _ = (name, sealed);
        Err(no_sealed_keys())
    }

    /// Replaces what is kept under `name` (a rotation).
    fn replace_sealed_key(&self, name: &str, sealed: &[u8]) -> Result<(), StoreError> {
        let _ = (name, sealed);
        Err(no_sealed_keys())
    }
}

fn no_sealed_keys() -> StoreError {
    StoreError::Query(
        "this store keeps no shared keys: sealed keys need a PostgreSQL store ([store] url)".into(),
    )
}

/// Every role: what a backend is.
pub trait Store:
    ResultWriter
    + Enrolments
    + ResultReader
    + ReportSource
    + Maintenance
    + Plans
    + TransparencyLog
    + Chains
    + SealedKeys
{
}

impl<
        T: ResultWriter
            + Enrolments
            + ResultReader
            + ReportSource
            + Maintenance
            + Plans
            + TransparencyLog
            + Chains
            + SealedKeys,
    > Store for T
{
}
