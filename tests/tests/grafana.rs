//! The Grafana provisioning folder and the dashboards it loads, checked the way Grafana
//! reads them: provisioning YAML (apiVersion 1, a Prometheus data source whose uid every
//! panel names, a file provider whose folder OPERATIONS.md fills), and dashboard JSON
//! (unique uid, title, panels with a known type and a grid position, the quartier,
//! building and access variables). No Grafana runs here (it is not packaged by Debian);
//! what each PromQL expression returns is checked against a real Prometheus in
//! `prometheus.rs`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn yaml(path: &Path) -> Yaml {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut docs = YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{}: not valid YAML: {e}", path.display()));
    assert_eq!(docs.len(), 1, "{}: one document", path.display());
    docs.remove(0)
}

fn dashboards() -> Vec<(PathBuf, serde_json::Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo().join("dashboards")).expect("dashboards/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).expect("read");
            let d = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not valid JSON: {e}", path.display()));
            out.push((path, d));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Panel types a stock Grafana (10 or later) ships with.
const CORE_PANELS: &[&str] = &[
    "timeseries",
    "state-timeline",
    "stat",
    "piechart",
    "table",
    "bargauge",
    "geomap",
    "gauge",
    "text",
    "barchart",
];

/// Problems Grafana would have with one dashboard, given the data source uid.
fn dashboard_problems(name: &str, d: &serde_json::Value, datasource: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let uid = d["uid"].as_str().unwrap_or("");
    if uid.is_empty() || uid.len() > 40 {
        problems.push(format!("{name}: uid {uid:?} must be 1 to 40 characters"));
    }
    if d["title"].as_str().unwrap_or("").is_empty() {
        problems.push(format!("{name}: no title"));
    }
    if d["schemaVersion"].as_u64().is_none() {
        problems.push(format!("{name}: no schemaVersion"));
    }
    let vars: BTreeSet<&str> = d["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for v in ["quartier", "building", "access"] {
        if !vars.contains(v) {
            problems.push(format!("{name}: no ${v} variable"));
        }
    }
    let panels = d["panels"].as_array().cloned().unwrap_or_default();
    if panels.is_empty() {
        problems.push(format!("{name}: no panels"));
    }
    let mut ids = BTreeSet::new();
    for p in &panels {
        let title = p["title"].as_str().unwrap_or("?");
        let ty = p["type"].as_str().unwrap_or("");
        if !CORE_PANELS.contains(&ty) {
            problems.push(format!(
                "{name}: panel {title:?} has type {ty:?}, not a core panel"
            ));
        }
        if !ids.insert(p["id"].as_u64()) || p["id"].as_u64().is_none() {
            problems.push(format!(
                "{name}: panel {title:?} has a missing or repeated id"
            ));
        }
        let g = &p["gridPos"];
        let fits = ["h", "w", "x", "y"].iter().all(|k| g[k].as_u64().is_some())
            && g["x"].as_u64().unwrap_or(0) + g["w"].as_u64().unwrap_or(0) <= 24;
        if !fits {
            problems.push(format!(
                "{name}: panel {title:?} has no grid position within 24 columns"
            ));
        }
        let sources = std::iter::once(&p["datasource"]).chain(
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| &t["datasource"]),
        );
        for s in sources {
            if s["uid"].as_str() != Some(datasource) {
                problems.push(format!(
                    "{name}: panel {title:?} names data source {}, not the provisioned {datasource:?}",
                    s["uid"]
                ));
            }
        }
    }
    problems
}

#[test]
fn provisioning_folder_loads_a_prometheus_source_and_every_dashboard() {
    let root = repo().join("deploy/grafana/provisioning");
    let ds = yaml(&root.join("datasources/sonde.yaml"));
    assert_eq!(ds["apiVersion"].as_i64(), Some(1), "datasources apiVersion");
    let sources = ds["datasources"].as_vec().expect("datasources list");
    assert_eq!(sources.len(), 1);
    let source = &sources[0];
    assert_eq!(source["type"].as_str(), Some("prometheus"));
    assert_eq!(source["access"].as_str(), Some("proxy"));
    let uid = source["uid"].as_str().expect("data source uid");
    // The data source points at the Prometheus that deploy/prometheus.yml documents.
    let url = source["url"].as_str().expect("url");
    let prometheus =
        std::fs::read_to_string(repo().join("deploy/prometheus.yml")).expect("prometheus.yml");
    let listen = url.trim_start_matches("http://");
    assert!(
        prometheus.contains(&format!("--web.listen-address={listen}")),
        "datasource url {url} is not where deploy/prometheus.yml says Prometheus listens"
    );

    let dp = yaml(&root.join("dashboards/sonde.yaml"));
    assert_eq!(dp["apiVersion"].as_i64(), Some(1), "dashboards apiVersion");
    let providers = dp["providers"].as_vec().expect("providers list");
    assert_eq!(providers.len(), 1);
    assert_eq!(providers[0]["type"].as_str(), Some("file"));
    let path = providers[0]["options"]["path"]
        .as_str()
        .expect("provider path");
    assert!(
        path.starts_with('/'),
        "Grafana needs an absolute provider path"
    );
    // OPERATIONS.md copies the dashboards to exactly that folder.
    let ops = std::fs::read_to_string(repo().join("docs/OPERATIONS.md")).expect("OPERATIONS.md");
    assert!(
        ops.contains(&format!("cp dashboards/*.json {path}/")),
        "OPERATIONS.md does not copy the dashboards to the provider's folder {path}"
    );

    let all = dashboards();
    let names: BTreeSet<String> = all
        .iter()
        .map(|(p, _)| {
            p.file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    for want in ["overview", "building", "fleet", "collector"] {
        assert!(names.contains(want), "dashboards/{want}.json missing");
    }
    let mut uids = BTreeSet::new();
    let mut problems = Vec::new();
    for (p, d) in &all {
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        problems.extend(dashboard_problems(&name, d, uid));
        if !uids.insert(d["uid"].as_str().unwrap_or("").to_string()) {
            problems.push(format!("{name}: uid shared with another dashboard"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn a_dashboard_naming_another_data_source_or_an_unknown_panel_is_caught() {
    let (_, good) = dashboards().into_iter().next().expect("a dashboard");
    assert!(dashboard_problems("good", &good, "sonde-prometheus").is_empty());

    let mut bad = good.clone();
    bad["panels"][0]["datasource"]["uid"] = "someone-else".into();
    bad["panels"][0]["type"] = "grafana-worldmap-panel".into();
    bad["templating"]["list"] = serde_json::json!([]);
    let problems = dashboard_problems("bad", &bad, "sonde-prometheus");
    let text = problems.join("\n");
    assert!(text.contains("someone-else"), "{text}");
    assert!(text.contains("grafana-worldmap-panel"), "{text}");
    assert!(text.contains("no $quartier variable"), "{text}");
}
