//! The store as the collector's async code holds it: every call checks that it does
//! not run on an async worker ([`sonde_cli::blocking::check`], debug builds), since a
//! store call blocks (SQLite, or a round trip to a database server). Callers run store
//! calls on the blocking pool or the commit thread.

use chrono::{DateTime, Utc};
use sonde_cli::blocking::check;
use sonde_proto::ResultRecord;
use sonde_store::{
    AgentRow, Batch, Chains, Delivery, EnrolError, Enrolments, Inserted, Maintenance, NewToken,
    PlanVersion, Plans, ReportScope, ReportSink, ReportSource, ResultPage, ResultQuery,
    ResultReader, ResultWriter, SealedKeys, Site, Store, StoreError, StoredResult, TransparencyLog,
};
use std::sync::Arc;

/// A store whose every call is checked to be off the async workers.
#[derive(Clone)]
pub struct OffWorkers(pub Arc<dyn Store>);

impl std::fmt::Debug for OffWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OffWorkers")
    }
}

impl ResultWriter for OffWorkers {
    fn insert_batches(
        &self,
        batches: &[Batch],
        now: DateTime<Utc>,
    ) -> Result<Vec<Inserted>, StoreError> {
        check("a store commit");
        self.0.insert_batches(batches, now)
    }
}

impl SealedKeys for OffWorkers {
    fn sealed_key(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check("reading a sealed key");
        self.0.sealed_key(name)
    }

    fn keep_sealed_key(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        check("keeping a sealed key");
        self.0.keep_sealed_key(name, sealed)
    }

    fn replace_sealed_key(&self, name: &str, sealed: &[u8]) -> Result<(), StoreError> {
        check("replacing a sealed key");
        self.0.replace_sealed_key(name, sealed)
    }
}

impl Chains for OffWorkers {
    fn register_signing_key(
        &self,
        agent_id: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        check("registering a signing key");
        self.0.register_signing_key(agent_id, key, now)
    }

    fn signing_keys(&self) -> Result<Vec<(String, String)>, StoreError> {
        check("reading signing keys");
        self.0.signing_keys()
    }

    fn chain_head(&self, agent_id: &str) -> Result<Option<(u64, String)>, StoreError> {
        check("reading a chain head");
        self.0.chain_head(agent_id)
    }

    fn key_rotations(
        &self,
        agent_id: Option<&str>,
    ) -> Result<Vec<(String, sonde_proto::wire::Rotation)>, StoreError> {
        check("reading key rotations");
        self.0.key_rotations(agent_id)
    }
}

impl Enrolments for OffWorkers {
    fn create_token(&self, token: &NewToken) -> Result<(), StoreError> {
        check("storing a token");
        self.0.create_token(token)
    }

    fn enrol(
        &self,
        hash: &str,
        now: DateTime<Utc>,
        name: &dyn Fn(&Site) -> String,
    ) -> Result<(String, Site), EnrolError> {
        check("an enrolment");
        self.0.enrol(hash, now, name)
    }

    fn enrolment(&self, agent_id: &str) -> Result<Option<Site>, StoreError> {
        check("an enrolment lookup");
        self.0.enrolment(agent_id)
    }

    fn revoke(&self, agent_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        check("a revocation");
        self.0.revoke(agent_id, now)
    }

    fn revoked_at(&self, agent_id: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        check("a revocation lookup");
        self.0.revoked_at(agent_id)
    }

    fn revoked(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        check("reading revocations");
        self.0.revoked()
    }
}

impl TransparencyLog for OffWorkers {
    fn log_size(&self) -> Result<u64, StoreError> {
        check("reading the log's size");
        self.0.log_size()
    }

    fn log_hashes(&self, indexes: &[u64]) -> Result<Vec<sonde_store::log::Hash>, StoreError> {
        check("reading the log's hashes");
        self.0.log_hashes(indexes)
    }

    fn log_leaf(&self, result_id: &str) -> Result<Option<(u64, String)>, StoreError> {
        check("reading a log leaf");
        self.0.log_leaf(result_id)
    }

    fn log_leaves_in(
        &self,
        scope: &ReportScope,
        each: &mut dyn FnMut(&sonde_store::LogLeaf<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        check("reading log leaves");
        self.0.log_leaves_in(scope, each)
    }

    fn log_count_in(&self, scope: &ReportScope, size: u64) -> Result<u64, StoreError> {
        check("counting log leaves");
        self.0.log_count_in(scope, size)
    }

    fn keep_checkpoint(&self, size: u64, note: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        check("keeping a checkpoint");
        self.0.keep_checkpoint(size, note, at)
    }

    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        check("reading the latest checkpoint");
        self.0.latest_checkpoint()
    }
}

impl Plans for OffWorkers {
    fn apply_plan(&self, document: &str, at: DateTime<Utc>) -> Result<u64, StoreError> {
        check("applying a plan");
        self.0.apply_plan(document, at)
    }

    fn plan_version(&self) -> Result<Option<u64>, StoreError> {
        check("reading the plan version");
        self.0.plan_version()
    }

    fn plan(&self, version: u64) -> Result<Option<PlanVersion>, StoreError> {
        check("reading a plan");
        self.0.plan(version)
    }

    fn plans(&self) -> Result<Vec<PlanVersion>, StoreError> {
        check("reading the plans");
        self.0.plans()
    }
}

impl ResultReader for OffWorkers {
    fn results(&self, query: &ResultQuery) -> Result<ResultPage, StoreError> {
        check("reading results");
        self.0.results(query)
    }

    fn result(&self, id: &str) -> Result<Option<StoredResult>, StoreError> {
        check("reading a result");
        self.0.result(id)
    }

    fn agents(&self) -> Result<Vec<AgentRow>, StoreError> {
        check("reading agents");
        self.0.agents()
    }

    fn latest_results(&self) -> Result<Vec<(Delivery, ResultRecord)>, StoreError> {
        check("reading the latest results");
        self.0.latest_results()
    }

    fn site_known(
        &self,
        quartier: Option<&str>,
        building: Option<&str>,
    ) -> Result<bool, StoreError> {
        check("a site lookup");
        self.0.site_known(quartier, building)
    }
}

impl ReportSource for OffWorkers {
    fn report_scan(
        &self,
        scope: &ReportScope,
        with_ids: bool,
        sink: &mut dyn ReportSink,
    ) -> Result<(), StoreError> {
        check("a report scan");
        self.0.report_scan(scope, with_ids, sink)
    }

    fn result_ids(&self, rows: &[(i64, i64)]) -> Result<Vec<Option<String>>, StoreError> {
        check("a report's picture lookup");
        self.0.result_ids(rows)
    }
}

impl Maintenance for OffWorkers {
    fn prune(&self, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        check("retention");
        self.0.prune(before, limit)
    }

    fn backup(&self, path: &std::path::Path) -> Result<(), StoreError> {
        check("a backup");
        self.0.backup(path)
    }

    fn health(&self) -> Result<(), sonde_store::StoreError> {
        check("a health check");
        self.0.health()
    }

    fn space(&self) -> Option<sonde_store::Space> {
        check("a disk space check");
        self.0.space()
    }

    fn lease(
        &self,
        job: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        check("a lease");
        self.0.lease(job, holder, now, until)
    }
}
