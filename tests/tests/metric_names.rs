//! The agent's `/metrics` and the collector's describe every series they share the
//! same way: one `# HELP` and `# TYPE` each, from `sonde_proto::metrics`. Both pages
//! are rendered from the same result and compared line for line.

use sonde_agent::daemon::metrics::{render, Snapshot};
use sonde_agent::daemon::Status;
use sonde_collector::fleet::Fleet;
use sonde_proto::wire::Health;
use sonde_proto::ResultRecord;
use sonde_store::Delivery;
use std::collections::BTreeMap;

/// `name → (help, type)` of a page in the text format.
fn descriptors(page: &str) -> BTreeMap<String, (String, String)> {
    let mut out: BTreeMap<String, (String, String)> = BTreeMap::new();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.entry(name.into()).or_default().0 = help.into();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            out.entry(name.into()).or_default().1 = kind.into();
        }
    }
    out
}

#[test]
fn the_agent_and_the_collector_describe_shared_series_identically() {
    let mut r = ResultRecord::schema_example();
    r.access.name = Some("mobile".into());
    r.radio = Some(sonde_proto::Radio {
        wifi: Some(sonde_proto::WifiRadio {
            signal_dbm: Some(-60.0),
            ..Default::default()
        }),
        lte: None,
        unavailable: None,
    });
    let agent_page = render(&Snapshot {
        status: Status {
            agent_id: Some("a1".into()),
            version: "0.1.0".into(),
            spool_depth: 3,
            failures_total: [("timeout".to_string(), 2)].into(),
            ..Status::default()
        },
        latest: [("mobile".to_string(), r.clone())].into(),
        tests: [(("mobile".to_string(), "ok".to_string()), 1)].into(),
    });
    let fleet = Fleet::new(std::time::Duration::from_secs(86_400));
    let delivery = Delivery {
        agent_id: "a1".into(),
        quartier: Some("q".into()),
        building: Some("b".into()),
    };
    fleet.result(&delivery, &r, true);
    let health = Health {
        spool_depth: 3,
        failures_total: [("timeout".to_string(), 2)].into(),
        version: "0.1.0".into(),
        ..Health::default()
    };
    fleet.health(&delivery, Some(&health), chrono::Utc::now());
    let mut collector_page = String::new();
    fleet.render(&mut collector_page);

    let agent = descriptors(&agent_page);
    let collector = descriptors(&collector_page);
    let shared: Vec<&String> = agent
        .keys()
        .filter(|k| collector.contains_key(*k))
        .collect();
    assert!(shared.len() >= 12, "shared series: {shared:?}");
    for name in shared {
        assert_eq!(agent[name], collector[name], "{name}");
    }
    // And every description is the table's.
    for (name, (help, kind)) in agent.iter().chain(&collector) {
        let m = sonde_proto::metrics::ALL
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name} is not in sonde_proto::metrics"));
        assert_eq!((help.as_str(), kind.as_str()), (m.help, m.kind.as_str()));
    }
}
