//! The conformance suite every store backend passes: what the collector relies on,
//! checked through the role traits only. A backend's tests call [`run_all`] with a
//! maker of empty stores; each check also stands alone.
//!
//! It includes the hand-worked report example ([`report`]): the same dataset gives the
//! same figures on every backend, because every backend stores the one report row
//! mapping and scans it the same way.

pub mod example;
pub mod method4;
pub mod report;

use crate::rows::ReportRow;
use crate::{
    Batch, Delivery, EnrolError, Fact, Inserted, NewToken, ReportScope, ReportSink, ResultQuery,
    ScheduledAccess, Site, Store,
};
use chrono::{TimeZone, Utc};
use sonde_proto::*;

/// One check: its name and what it runs on a fresh store.
pub type Check = (&'static str, fn(&dyn Store));

/// Runs every check, each on a fresh store from `fresh`.
pub fn run_all<S: Store>(fresh: impl Fn() -> S) {
    let checks: &[Check] = &[
        (
            "a_resent_batch_is_stored_once",
            a_resent_batch_is_stored_once,
        ),
        (
            "pages_cover_every_result_once_in_time_order_with_filters",
            pages_cover_every_result_once_in_time_order_with_filters,
        ),
        (
            "one_result_is_read_back_by_its_id",
            one_result_is_read_back_by_its_id,
        ),
        (
            "a_token_enrols_one_agent_once_before_it_expires",
            a_token_enrols_one_agent_once_before_it_expires,
        ),
        (
            "an_access_keeps_its_first_and_latest_start_and_the_latest_interval",
            an_access_keeps_its_first_and_latest_start_and_the_latest_interval,
        ),
        (
            "records_are_kept_verbatim_with_the_delivery_beside_them",
            records_are_kept_verbatim_with_the_delivery_beside_them,
        ),
        (
            "report_rows_are_the_one_mapping_of_each_record",
            report_rows_are_the_one_mapping_of_each_record,
        ),
        (
            "revocation_is_kept_and_unknown_agents_are_said_so",
            revocation_is_kept_and_unknown_agents_are_said_so,
        ),
        (
            "a_maintenance_lease_has_one_holder_at_a_time",
            a_maintenance_lease_has_one_holder_at_a_time,
        ),
        (
            "the_latest_result_of_each_access_and_known_sites",
            the_latest_result_of_each_access_and_known_sites,
        ),
        (
            "plan_versions_grow_and_are_kept_as_applied",
            plan_versions_grow_and_are_kept_as_applied,
        ),
        (
            "the_boxs_position_stands_in_for_a_token_without_one",
            the_boxs_position_stands_in_for_a_token_without_one,
        ),
        (
            "one_commit_applies_an_agents_batches_in_order",
            one_commit_applies_an_agents_batches_in_order,
        ),
        (
            "every_stored_result_is_a_leaf_of_the_log_once",
            every_stored_result_is_a_leaf_of_the_log_once,
        ),
        (
            "an_agents_first_key_stays_and_its_chain_head_only_moves_forward",
            an_agents_first_key_stays_and_its_chain_head_only_moves_forward,
        ),
        (
            "every_figure_of_the_worked_example",
            report::every_figure_of_the_worked_example,
        ),
        (
            "the_scope_narrows_to_a_quartier_or_a_building",
            report::the_scope_narrows_to_a_quartier_or_a_building,
        ),
        (
            "an_empty_period_or_scope_is_a_report_saying_no_data",
            report::an_empty_period_or_scope_is_a_report_saying_no_data,
        ),
        (
            "peak_hours_follow_paris_time_across_both_daylight_saving_changes",
            report::peak_hours_follow_paris_time_across_both_daylight_saving_changes,
        ),
        (
            "peak_hours_are_read_per_result_in_half_hour_zones",
            report::peak_hours_are_read_per_result_in_half_hour_zones,
        ),
        (
            "a_removed_target_is_no_longer_judged",
            report::a_removed_target_is_no_longer_judged,
        ),
        (
            "time_buckets_are_the_hours_of_the_local_clock",
            report::time_buckets_are_the_hours_of_the_local_clock,
        ),
        (
            "nothing_disappears_from_a_headline",
            report::nothing_disappears_from_a_headline,
        ),
        (
            "arcep_shares_count_single_connection_tests_only",
            report::arcep_shares_count_single_connection_tests_only,
        ),
        (
            "a_udpst_access_is_judged_on_its_capacity_and_reports_it",
            report::a_udpst_access_is_judged_on_its_capacity_and_reports_it,
        ),
        (
            "every_figure_of_the_methodology_4_example",
            method4::every_figure_of_the_methodology_4_example,
        ),
        (
            "a_report_read_in_parts_is_the_report_read_in_one",
            method4::a_report_read_in_parts_is_the_report_read_in_one,
        ),
        (
            "retention_deletes_raw_results_but_reports_keep_their_figures",
            report::retention_deletes_raw_results_but_reports_keep_their_figures,
        ),
    ];
    for (name, check) in checks {
        eprintln!("conformance: {name}");
        check(&fresh());
    }
}

/// A scope over all time and every site.
pub fn everything() -> ReportScope {
    ReportScope {
        quartier: None,
        building: None,
        from: Utc.timestamp_opt(0, 0).single().unwrap_or_default(),
        to: Utc
            .timestamp_opt(4_000_000_000, 0)
            .single()
            .unwrap_or_default(),
    }
}

/// What a scan fed, owned.
#[derive(Debug, Default)]
pub struct Rows {
    /// The accesses.
    pub accesses: Vec<ScheduledAccess>,
    /// Each fact as a row, with its id.
    pub facts: Vec<(ReportRow, Option<String>)>,
    /// Each fact's handle, in the same order.
    pub handles: Vec<Option<i64>>,
}

impl ReportSink for Rows {
    fn accesses(&mut self, accesses: Vec<ScheduledAccess>) {
        self.accesses = accesses;
    }

    fn fact(&mut self, f: &Fact<'_>) -> Result<(), String> {
        let row = ReportRow {
            id: f.id.unwrap_or_default().into(),
            agent_id: f.agent_id.into(),
            access: f.access.into(),
            quartier: f.quartier.into(),
            building: f.building.into(),
            kind: AccessKind::from_name(f.kind).as_str(),
            interval_s: None,
            started_at_ns: f.started_at_ns,
            outcome: Outcome::from_name(f.outcome).as_str(),
            reason: f.reason.map(|r| FailureReason::from_name(r).as_str()),
            flags: f.flags.into(),
            down_bps: f.down_bps,
            up_bps: f.up_bps,
            cap_down_bps: f.cap_down_bps,
            cap_up_bps: f.cap_up_bps,
            down_goodput_bps: f.down_goodput_bps,
            target_down_bps: f.target_down_bps,
            verdict_down: VerdictOutcome::from_name(f.verdict_down.unwrap_or("")).as_str(),
            idle_s: f.idle_s,
            loaded_s: f.loaded_s,
            probes_sent: f.probes_sent,
            probes_received: f.probes_received,
            version: f.version.into(),
            streams: f.streams,
            rpm_down: f.rpm_down,
            rpm_up: f.rpm_up,
        };
        self.facts.push((row, f.id.map(str::to_string)));
        self.handles.push(f.handle);
        Ok(())
    }
}

/// A small result of `agent`, started `i` minutes after a fixed instant.
pub fn record(i: u32, agent: &str) -> ResultRecord {
    let started = Utc
        .timestamp_opt(1_800_000_000 + i64::from(i) * 60, 0)
        .single()
        .unwrap_or_default();
    ResultRecord {
        schema_version: SCHEMA_VERSION,
        id: uuid::Uuid::now_v7(),
        agent: AgentInfo {
            id: Some(agent.into()),
            version: "0.1.0".into(),
        },
        site: sonde_proto::Site::default(),
        access: Access {
            name: Some("fibre".into()),
            kind: AccessKind::Ftth,
            interface: None,
            link_speed_bps: None,
            mtu: None,
        },
        run: Run {
            started_at: started,
            ended_at: started,
            engine: Engine::SondeHttp,
            responder: ResponderRef {
                url: "http://r".into(),
                version: None,
                address: None,
            },
            directions: vec![Direction::Down],
            streams: 8,
            max_duration_s: 10.0,
            interval_s: None,
            cross_traffic_bytes: None,
            cpu_busy_ratio: None,
            clock_synchronised: None,
        },
        download: None,
        upload: None,
        idle_latency: None,
        radio: None,
        capacity: None,
        responsiveness: None,
        flags: vec![],
        verdict: Verdict {
            target_down_bps: Some(1e9),
            target_up_bps: None,
            tolerance: 0.02,
            down: VerdictOutcome::Inconclusive,
            up: VerdictOutcome::NoTarget,
        },
        status: Status {
            outcome: Outcome::Ok,
            reason: None,
            message: None,
        },
        methodology_version: METHODOLOGY_VERSION.into(),
    }
}
/// A delivery by `agent` of q1/b1.
pub fn delivery(agent: &str) -> Delivery {
    Delivery {
        agent_id: agent.into(),
        quartier: Some("q1".into()),
        building: Some("b1".into()),
    }
}
fn token(hash: &str, expires_in_s: i64) -> NewToken {
    let now = Utc::now();
    NewToken {
        hash: hash.into(),
        quartier: "q9".into(),
        building: "b9".into(),
        latitude: Some(48.8),
        longitude: None,
        created_at: now,
        expires_at: now + chrono::Duration::seconds(expires_in_s),
    }
}
/// A token enrols one agent, once, before it expires; an upload's health shows.
pub fn a_token_enrols_one_agent_once_before_it_expires(s: &dyn Store) {
    s.create_token(&token("h1", 3600)).expect("token");
    s.create_token(&token("h2", -1)).expect("expired token");
    assert!(
        s.create_token(&token("h1", 10)).is_err(),
        "hashes are unique"
    );
    let now = Utc::now();
    assert_eq!(s.enrolment("agent-1").expect("lookup"), None);
    let name = |id: &'static str| move |_: &Site| id.to_string();
    let (id, site) = s.enrol("h1", now, &name("agent-1")).expect("enrol");
    assert_eq!((id.as_str(), site.building.as_str()), ("agent-1", "b9"));
    assert_eq!(s.enrolment("agent-1").expect("lookup"), Some(site));
    assert!(matches!(
        s.enrol("h1", now, &name("agent-2")),
        Err(EnrolError::Used(_))
    ));
    assert!(matches!(
        s.enrol("h2", now, &name("agent-3")),
        Err(EnrolError::Expired(_))
    ));
    assert!(matches!(
        s.enrol("nope", now, &name("agent-4")),
        Err(EnrolError::Unknown)
    ));
    let agents = s.agents().expect("agents");
    assert_eq!(agents.len(), 1, "refused enrolments leave no agent");
    assert_eq!(agents[0].latitude, Some(48.8));
    assert!(agents[0].enrolled_at.is_some());
    // Health from an upload shows in the agent's row.
    let health = sonde_proto::wire::Health {
        spool_depth: 3,
        version: "9.9.9".into(),
        ..Default::default()
    };
    s.insert_batches(
        &[Batch {
            delivery: Delivery {
                agent_id: "agent-1".into(),
                quartier: Some("q9".into()),
                building: Some("b9".into()),
            },
            records: vec![record(1, "agent-1")],
            raw: Vec::new(),
            health: Some(health),
            signed: None,
        }],
        now,
    )
    .expect("insert");
    let agents = s.agents().expect("agents");
    assert_eq!(
        agents[0].health.as_ref().map(|h| h["spool_depth"].clone()),
        Some(3.into())
    );
    assert_eq!(agents[0].version.as_deref(), Some("9.9.9"));
}
/// The position a box sends with its health is the agent's when its token gave none,
/// and follows the box; a token's position is kept whatever the box says.
pub fn the_boxs_position_stands_in_for_a_token_without_one(s: &dyn Store) {
    let now = Utc::now();
    let with = NewToken {
        longitude: Some(2.3),
        ..token("with", 3600)
    };
    let without = NewToken {
        latitude: None,
        ..token("without", 3600)
    };
    s.create_token(&with).expect("token");
    s.create_token(&without).expect("token");
    let name = |id: &'static str| move |_: &Site| id.to_string();
    s.enrol("with", now, &name("a-token")).expect("enrol");
    s.enrol("without", now, &name("a-box")).expect("enrol");
    let upload = |agent: &str, latitude: f64, longitude: f64| {
        let health = sonde_proto::wire::Health {
            position: Some(sonde_proto::wire::Position {
                latitude,
                longitude,
            }),
            ..Default::default()
        };
        let batch = Batch {
            health: Some(health),
            ..Batch::of(delivery(agent), Vec::new(), None)
        };
        s.insert_batches(&[batch], now).expect("insert");
    };
    let position = |agent: &str| {
        let agents = s.agents().expect("agents");
        let a = agents.iter().find(|a| a.id == agent).expect("agent");
        (a.latitude, a.longitude)
    };
    assert_eq!(position("a-box"), (None, None));
    upload("a-box", 45.0, 4.8);
    upload("a-token", 45.0, 4.8);
    assert_eq!(position("a-box"), (Some(45.0), Some(4.8)));
    assert_eq!(position("a-token"), (Some(48.8), Some(2.3)), "the token's");
    // The box is corrected; an out-of-range position is ignored.
    upload("a-box", 45.5, 4.9);
    upload("a-box", 95.0, 4.9);
    assert_eq!(position("a-box"), (Some(45.5), Some(4.9)));
}
/// Several batches of one agent in one group commit leave its row as if they had been
/// committed one after the other: the latest version, health and position win.
pub fn one_commit_applies_an_agents_batches_in_order(s: &dyn Store) {
    let now = Utc::now();
    let batch = |agent: &str, version: &str, at: Option<(f64, f64)>, i: u32| {
        let health = sonde_proto::wire::Health {
            version: version.into(),
            position: at.map(|(latitude, longitude)| sonde_proto::wire::Position {
                latitude,
                longitude,
            }),
            ..Default::default()
        };
        Batch {
            health: Some(health),
            ..Batch::of(delivery(agent), vec![record(i, agent)], None)
        }
    };
    let batches = [
        batch("a1", "1.0.0", Some((45.0, 4.8)), 1),
        batch("a2", "5.0.0", None, 2),
        batch("a1", "1.1.0", None, 3),
        batch("a1", "1.2.0", Some((45.5, 4.9)), 4),
    ];
    let done = s.insert_batches(&batches, now).expect("insert");
    assert_eq!(done.iter().map(|d| d.new).sum::<usize>(), 4);
    let agents = s.agents().expect("agents");
    let a1 = agents.iter().find(|a| a.id == "a1").expect("a1");
    assert_eq!(a1.version.as_deref(), Some("1.2.0"));
    assert_eq!((a1.latitude, a1.longitude), (Some(45.5), Some(4.9)));
    assert_eq!(a1.results, 3);
    let a2 = agents.iter().find(|a| a.id == "a2").expect("a2");
    assert_eq!(a2.version.as_deref(), Some("5.0.0"));
    assert_eq!((a2.latitude, a2.longitude), (None, None));
}

/// A re-sent batch is stored once.
pub fn a_resent_batch_is_stored_once(s: &dyn Store) {
    let batch: Vec<_> = (0..10).map(|i| record(i, "a1")).collect();
    let now = Utc::now();
    assert_eq!(
        s.insert(&delivery("a1"), &batch, now).expect("insert"),
        Inserted {
            new: 10,
            duplicates: 0,
            fresh: vec![true; 10]
        }
    );
    assert_eq!(
        s.insert(&delivery("a1"), &batch[3..], now).expect("again"),
        Inserted {
            new: 0,
            duplicates: 7,
            fresh: vec![false; 7]
        }
    );
    let page = s
        .results(&ResultQuery {
            limit: 100,
            ..Default::default()
        })
        .expect("page");
    assert_eq!(page.results.len(), 10);
    let agents = s.agents().expect("agents");
    assert_eq!(agents.len(), 1);
    assert_eq!(
        (agents[0].results, agents[0].quartier.as_deref()),
        (10, Some("q1"))
    );
}
/// Pages cover every result once, in time order, with the filters applied.
pub fn pages_cover_every_result_once_in_time_order_with_filters(s: &dyn Store) {
    let now = Utc::now();
    let a: Vec<_> = (0..25).map(|i| record(i, "a1")).collect();
    let b: Vec<_> = (0..7).map(|i| record(i, "a2")).collect();
    s.insert(&delivery("a1"), &a, now).expect("a1");
    s.insert(&delivery("a2"), &b, now).expect("a2");
    let mut seen = Vec::new();
    let mut q = ResultQuery {
        limit: 4,
        agent: Some("a1".into()),
        ..Default::default()
    };
    for _ in 0..20 {
        let page = s.results(&q).expect("page");
        seen.extend(
            page.results
                .iter()
                .map(|v| v.to_json()["id"].as_str().unwrap_or("").to_string()),
        );
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    let want: Vec<String> = a.iter().map(|r| r.id.to_string()).collect();
    assert_eq!(seen, want, "every a1 result once, in start order");
    // Time window: minutes 5..10 of both agents.
    let from = Utc.timestamp_opt(1_800_000_000 + 5 * 60, 0).single();
    let to = Utc.timestamp_opt(1_800_000_000 + 10 * 60, 0).single();
    let page = s
        .results(&ResultQuery {
            from,
            to,
            limit: 100,
            ..Default::default()
        })
        .expect("window");
    assert_eq!(page.results.len(), 5 + 2);
    assert!(s
        .results(&ResultQuery {
            limit: 0,
            ..Default::default()
        })
        .is_err());
    assert!(s
        .results(&ResultQuery {
            limit: 5,
            cursor: Some("junk".into()),
            ..Default::default()
        })
        .is_err());
}
/// One result is read back by its id, with its delivery; an unknown id is none.
pub fn one_result_is_read_back_by_its_id(s: &dyn Store) {
    let now = Utc::now();
    let a: Vec<_> = (0..3).map(|i| record(i, "a1")).collect();
    s.insert(&delivery("a1"), &a, now).expect("a1");
    let id = a[1].id.to_string();
    let got = s.result(&id).expect("read").expect("found");
    assert_eq!(got.record, a[1].to_json());
    assert_eq!(got.agent_id, "a1");
    assert_eq!(got.quartier.as_deref(), Some("q1"));
    assert_eq!(got.to_json()["id"].as_str(), Some(id.as_str()));
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_eq!(s.result(&unknown).expect("read"), None);
}
/// An access keeps its first and latest start and the interval of its latest result,
/// whatever order its results arrive in.
pub fn an_access_keeps_its_first_and_latest_start_and_the_latest_interval(s: &dyn Store) {
    let with = |i: u32, interval: f64| {
        let mut r = record(i, "a1");
        r.access.name = Some("fibre".into());
        r.run.interval_s = Some(interval);
        r
    };
    // Out of order within one transaction, then an older one in a later one.
    s.insert(
        &delivery("a1"),
        &[with(5, 600.0), with(9, 900.0), with(7, 700.0)],
        Utc::now(),
    )
    .expect("insert");
    s.insert(&delivery("a1"), &[with(2, 200.0)], Utc::now())
        .expect("insert");
    let mut rows = Rows::default();
    s.report_scan(&everything(), false, &mut rows)
        .expect("scan");
    assert_eq!(rows.accesses.len(), 1);
    let a = &rows.accesses[0];
    assert_eq!(a.first_at, record(2, "a1").run.started_at);
    assert_eq!(
        a.interval_s,
        Some(900.0),
        "the interval of the latest result"
    );
    assert_eq!(rows.facts.len(), 4);
}

/// Every stored result is appended to the transparency log once (a resent one is
/// not), as its verbatim bytes; roots and proofs read back from the stored hashes check
/// against the leaves; checkpoints are kept, the latest answered.
pub fn every_stored_result_is_a_leaf_of_the_log_once(s: &dyn Store) {
    use crate::log;
    assert_eq!(s.log_size().expect("size"), 0);
    assert_eq!(s.latest_checkpoint().expect("none"), None);
    let batch: Vec<_> = (0..7).map(|i| record(i, "a1")).collect();
    s.insert(&delivery("a1"), &batch, Utc::now())
        .expect("insert");
    s.insert(&delivery("a1"), &batch[2..], Utc::now())
        .expect("resent");
    assert_eq!(
        s.log_size().expect("size"),
        7,
        "a resent result is no new leaf"
    );
    let read = |i: &[u64]| s.log_hashes(i);
    let root = log::root(7, &read).expect("root");
    for r in &batch {
        let (index, bytes) = s
            .log_leaf(&r.id.to_string())
            .expect("leaf")
            .expect("in the log");
        assert_eq!(bytes, r.to_json(), "the stored bytes");
        let proof = log::inclusion(index, 7, &read).expect("proof");
        assert!(log::check_inclusion(
            &proof,
            7,
            root,
            index,
            log::leaf_hash(bytes.as_bytes())
        ));
    }
    let old = log::root(3, &read).expect("old root");
    let proof = log::consistency(3, 7, &read).expect("consistency");
    assert!(log::check_consistency(&proof, 3, old, 7, root));
    let mut leaves = Vec::new();
    s.log_leaves_in(&everything(), &mut |l| {
        leaves.push((l.id.to_string(), l.leaf, l.bytes.len()));
        Ok(())
    })
    .expect("leaves");
    assert_eq!(leaves.len(), 7);
    assert!(leaves.windows(2).all(|w| w[0].1 < w[1].1), "in leaf order");
    let mut elsewhere = 0;
    let other = ReportScope {
        quartier: Some("no-such-quartier".into()),
        ..everything()
    };
    s.log_leaves_in(&other, &mut |_| {
        elsewhere += 1;
        Ok(())
    })
    .expect("leaves");
    assert_eq!(elsewhere, 0, "the scope is applied");
    assert_eq!(s.log_count_in(&everything(), 7).expect("count"), 7);
    assert_eq!(s.log_count_in(&everything(), 3).expect("count"), 3);
    assert_eq!(s.log_count_in(&other, 7).expect("count"), 0);
    assert!(s.log_hashes(&[1_000_000]).is_err(), "a hash not stored");
    assert_eq!(s.log_leaf("no-such-result").expect("read"), None);
    s.keep_checkpoint(3, "three", Utc::now()).expect("keep");
    s.keep_checkpoint(7, "seven", Utc::now()).expect("keep");
    s.keep_checkpoint(7, "seven again", Utc::now())
        .expect("ignored");
    assert_eq!(
        s.latest_checkpoint().expect("latest"),
        Some((7, "seven".into()))
    );
}

/// The first signing key recorded for an agent stays until a rotation replaces it; a
/// signed batch stores each record's envelope, its rotations, and moves the agent's
/// chain head forward, never back.
pub fn an_agents_first_key_stays_and_its_chain_head_only_moves_forward(s: &dyn Store) {
    use sonde_proto::wire::Envelope;
    let now = Utc::now();
    assert_eq!(
        s.register_signing_key("a1", "ed25519 aa", now)
            .expect("first"),
        "ed25519 aa"
    );
    assert_eq!(
        s.register_signing_key("a1", "ed25519 bb", now)
            .expect("second"),
        "ed25519 aa"
    );
    assert_eq!(
        s.signing_keys().expect("keys"),
        vec![("a1".to_string(), "ed25519 aa".to_string())]
    );
    assert_eq!(s.chain_head("a1").expect("head"), None);
    let envelope = |seq| Envelope {
        seq,
        prev: Envelope::GENESIS.into(),
        sig: "00".into(),
    };
    let signed_batch = |ids: std::ops::Range<u32>, head: u64| {
        let records: Vec<_> = ids.clone().map(|i| record(i, "a1")).collect();
        let mut b = Batch::of(delivery("a1"), records, None);
        b.signed = Some(crate::Signed {
            envelopes: ids.map(|i| envelope(u64::from(i) + 1)).collect(),
            head: (head, format!("h{head}")),
            gaps: vec![(2, 3)],
            rotations: Vec::new(),
            key: "ed25519 aa".into(),
        });
        b
    };
    s.insert_batches(&[signed_batch(0..2, 5)], now)
        .expect("insert");
    assert_eq!(s.chain_head("a1").expect("head"), Some((5, "h5".into())));
    s.insert_batches(&[signed_batch(2..3, 4)], now)
        .expect("an older head");
    assert_eq!(
        s.chain_head("a1").expect("head"),
        Some((5, "h5".into())),
        "never back"
    );
    // A key rotation the batch carried: kept, and the key in force changes.
    let rotation = sonde_proto::wire::Rotation {
        seq: 6,
        prev: "h5".into(),
        from: "ed25519 aa".into(),
        to: "ed25519 cc".into(),
        sig: "00".into(),
    };
    let mut b = signed_batch(3..4, 7);
    if let Some(signed) = b.signed.as_mut() {
        signed.rotations = vec![rotation.clone()];
        signed.key = "ed25519 cc".into();
    }
    s.insert_batches(&[b], now).expect("insert");
    assert_eq!(
        s.signing_keys().expect("keys"),
        vec![("a1".to_string(), "ed25519 cc".to_string())]
    );
    assert_eq!(
        s.key_rotations(Some("a1")).expect("rotations"),
        vec![("a1".to_string(), rotation.clone())]
    );
    assert_eq!(s.key_rotations(None).expect("rotations").len(), 1);
    assert!(s.key_rotations(Some("a2")).expect("none").is_empty());
}

/// Records are kept as their agent encoded them; identity and site come from the
/// delivery, beside them.
pub fn records_are_kept_verbatim_with_the_delivery_beside_them(s: &dyn Store) {
    let r = record(1, "spoofed-in-the-payload");
    let text = format!("{{ \"added_by_2030\": [1, 2.50],\n {}", &r.to_json()[1..]);
    let raw = sonde_proto::wire::RawRecord::from_json(text.clone()).expect("JSON");
    let batch = Batch {
        delivery: delivery("a7"),
        records: vec![r],
        raw: vec![raw],
        health: None,
        signed: None,
    };
    s.insert_batches(&[batch], Utc::now()).expect("insert");
    let page = s
        .results(&ResultQuery {
            limit: 10,
            ..Default::default()
        })
        .expect("page");
    assert_eq!(page.results.len(), 1);
    let stored = &page.results[0];
    assert_eq!(stored.record, text, "byte for byte");
    assert_eq!(stored.agent_id, "a7");
    assert_eq!(stored.building.as_deref(), Some("b1"));
    assert_eq!(stored.to_json()["agent"]["id"], "a7");
}

/// Every stored result's report row is [`ReportRow::of`] its record and delivery.
pub fn report_rows_are_the_one_mapping_of_each_record(s: &dyn Store) {
    let mut full = ResultRecord::schema_example();
    full.id = uuid::Uuid::now_v7();
    full.flags = vec![Flag::Unstable, Flag::LatencyLoss];
    full.status.reason = Some(FailureReason::StreamError);
    // The RPM figures are report columns too.
    full.responsiveness = ResultRecord::responsiveness_example().responsiveness;
    assert!(ReportRow::of(&delivery("a1"), &full).rpm_up.is_some());
    let mut failed = record(3, "a1");
    failed.status.outcome = Outcome::Failed;
    failed.status.reason = Some(FailureReason::Busy);
    let mut udpst = ResultRecord::capacity_example();
    udpst.id = uuid::Uuid::now_v7();
    udpst.run.started_at += chrono::Duration::seconds(1);
    let records = vec![full, failed, udpst];
    s.insert(&delivery("a1"), &records, Utc::now())
        .expect("insert");
    let mut rows = Rows::default();
    s.report_scan(&everything(), true, &mut rows).expect("scan");
    assert_eq!(rows.facts.len(), 3);
    for r in &records {
        let want = ReportRow::of(&delivery("a1"), r);
        let (got, id) = rows
            .facts
            .iter()
            .find(|(row, _)| row.started_at_ns == want.started_at_ns)
            .expect("a row per record");
        assert_eq!(id.as_deref(), Some(r.id.to_string().as_str()));
        // Its handle finds its id again, and only with its own start.
        let i = rows
            .facts
            .iter()
            .position(|(row, _)| row.started_at_ns == want.started_at_ns)
            .expect("its row");
        let handle = rows.handles[i].expect("a handle");
        let (at, other) = (want.started_at_ns, want.started_at_ns + 1);
        let ids = s.result_ids(&[(handle, at), (handle, other)]).expect("ids");
        assert_eq!(ids, [Some(r.id.to_string()), None]);
        assert_eq!(
            *got,
            ReportRow {
                interval_s: None,
                ..want
            }
        );
    }
}

/// A lease is held by one holder until it runs out; its holder renews it; jobs are
/// leased apart.
pub fn a_maintenance_lease_has_one_holder_at_a_time(s: &dyn Store) {
    let t0 = Utc.timestamp_opt(1_800_000_000, 0).single().expect("time");
    let at = |secs: i64| t0 + chrono::Duration::seconds(secs);
    let lease = |holder: &str, now: i64, until: i64| {
        s.lease("retention", holder, at(now), at(until))
            .expect("lease")
    };
    assert!(lease("a", 0, 10), "free: taken");
    assert!(!lease("b", 1, 11), "held by a");
    assert!(lease("a", 2, 12), "renewed by its holder");
    assert!(!lease("b", 11, 21), "a's renewal runs to 12");
    assert!(lease("b", 12, 22), "run out: taken over");
    assert!(!lease("a", 13, 23), "now b's");
    assert!(
        s.lease("checkpoint", "a", at(13), at(23)).expect("lease"),
        "another job is leased apart"
    );
}

/// A revocation is kept with its first date; an unknown agent is said so.
pub fn revocation_is_kept_and_unknown_agents_are_said_so(s: &dyn Store) {
    s.insert(&delivery("a1"), &[record(1, "a1")], Utc::now())
        .expect("insert");
    assert_eq!(s.revoked_at("a1").expect("lookup"), None);
    let first = Utc::now();
    assert!(s.revoke("a1", first).expect("revoke"));
    assert!(s
        .revoke("a1", first + chrono::Duration::hours(1))
        .expect("again"));
    let at = s.revoked_at("a1").expect("lookup").expect("revoked");
    assert!((at - first).num_milliseconds().abs() < 1);
    assert!(!s.revoke("nobody", first).expect("unknown"));
    let all = s.revoked().expect("revoked");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].0, "a1");
    let agents = s.agents().expect("agents");
    assert!(agents[0].revoked_at.is_some());
}

/// The latest result of each access (the metrics' rebuild) and the sites known.
pub fn the_latest_result_of_each_access_and_known_sites(s: &dyn Store) {
    let mut mobile = record(4, "a1");
    mobile.access.name = Some("mobile".into());
    let rs = vec![record(1, "a1"), record(3, "a1"), record(2, "a1"), mobile];
    s.insert(&delivery("a1"), &rs, Utc::now()).expect("insert");
    let mut latest = s.latest_results().expect("latest");
    latest.sort_by_key(|(_, r)| r.run.started_at);
    let ids: Vec<_> = latest.iter().map(|(_, r)| r.id).collect();
    assert_eq!(ids, vec![rs[1].id, rs[3].id]);
    assert_eq!(latest[0].0, delivery("a1"));
    assert!(s.site_known(Some("q1"), None).expect("q1"));
    assert!(s.site_known(Some("q1"), Some("b1")).expect("b1"));
    assert!(!s.site_known(Some("q2"), None).expect("q2"));
    assert!(!s.site_known(None, Some("b9")).expect("b9"));
    s.create_token(&token("h", 60)).expect("token");
    assert!(s.site_known(None, Some("b9")).expect("a token names b9"));
}

/// Plans: versions from 1, each kept with its time and its document, unchanged.
pub fn plan_versions_grow_and_are_kept_as_applied(s: &dyn Store) {
    assert_eq!(s.plan_version().expect("version"), None);
    assert_eq!(s.plans().expect("plans"), vec![]);
    let t0 = chrono::DateTime::from_timestamp(1_790_000_000, 123_456_789).expect("time");
    let t1 = t0 + chrono::Duration::hours(2);
    assert_eq!(s.apply_plan(r#"{"group":[]}"#, t0).expect("apply"), 1);
    assert_eq!(
        s.apply_plan(r#"{"group":[{"quartier":"q"}]}"#, t1)
            .expect("apply"),
        2
    );
    assert_eq!(s.plan_version().expect("version"), Some(2));
    let all = s.plans().expect("plans");
    assert_eq!(all.len(), 2);
    assert_eq!((all[0].version, all[0].applied_at), (1, t0));
    assert_eq!(all[1].document, r#"{"group":[{"quartier":"q"}]}"#);
    assert_eq!(s.plan(1).expect("one"), Some(all[0].clone()));
    assert_eq!(s.plan(3).expect("none"), None);
}
