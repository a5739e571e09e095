//! `sonde-collector plan apply`, `plan show` and `plan diff`.

use super::common::{load_config, open_configured};
use sonde_collector::plans::{self, Applied, InForce};
use sonde_proto::plan::PlanFile;
use sonde_store::Store;
use std::path::Path;

/// Reads and checks a plan file, or reports every problem and exits 64.
fn read_plan(file: &Path) -> PlanFile {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => sonde_cli::usage_error(format!("{}: cannot read: {e}", file.display())),
    };
    match plans::parse(&text, &file.display().to_string()) {
        Ok(p) => p,
        Err(problems) => {
            for p in &problems {
                eprintln!("error: {p}");
            }
            eprintln!(
                "error: {} problem(s) in {}; nothing applied",
                problems.len(),
                file.display()
            );
            std::process::exit(sonde_cli::EXIT_USAGE);
        }
    }
}

/// Applies a plan file.
pub fn apply(config: &Path, file: &Path, check_only: bool) -> i32 {
    let plan = read_plan(file);
    let buildings: usize = plan.groups.iter().map(|g| g.buildings.len()).sum();
    if check_only {
        println!(
            "{}: valid ({} group(s), {} named building(s))",
            file.display(),
            plan.groups.len(),
            buildings
        );
        return 0;
    }
    let config = load_config(config);
    let Some(store) = open_configured(&config) else {
        return 1;
    };
    let store = &*store;
    match plans::apply(store, &plan, chrono::Utc::now()) {
        Ok(Applied::New(v)) => {
            println!(
                "plan version {v} in force ({} group(s)); connected agents get it within seconds, the others when they connect",
                plan.groups.len()
            );
            0
        }
        Ok(Applied::Unchanged(v)) => {
            println!("unchanged: version {v} is this plan already");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// The version asked for, or the latest; exits 64 when there is none.
fn version(store: &dyn Store, asked: Option<u64>) -> Result<InForce, i32> {
    let found = match asked {
        Some(v) => store.plan(v),
        None => store.plan_version().and_then(|v| match v {
            Some(v) => store.plan(v),
            None => Ok(None),
        }),
    };
    match found {
        Ok(Some(stored)) => InForce::of(&stored).ok_or_else(|| {
            eprintln!(
                "error: plan version {} was written by a newer collector",
                stored.version
            );
            1
        }),
        Ok(None) => match asked {
            Some(v) => sonde_cli::usage_error(format!(
                "there is no plan version {v} (see plan show --history)"
            )),
            None => sonde_cli::usage_error(
                "no plan was ever applied here; agents run their agent.toml (see plan apply)",
            ),
        },
        Err(e) => {
            eprintln!("error: {e}");
            Err(1)
        }
    }
}

/// Prints a version, a building's group of it, or the history.
pub fn show(
    config: &Path,
    asked: Option<u64>,
    site: Option<(String, String)>,
    history: bool,
    json: bool,
) -> i32 {
    let config = load_config(config);
    let Some(store) = open_configured(&config) else {
        return 1;
    };
    let store = &*store;
    if history {
        return print_history(store, json);
    }
    let p = match version(store, asked) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let text = match &site {
        Some((q, b)) => match p.plan.for_site(p.version, p.applied_at, q, b) {
            Some(pushed) if json => serde_json::to_string_pretty(&pushed).unwrap_or_default(),
            Some(pushed) => toml::to_string(&pushed).unwrap_or_default(),
            None => {
                println!(
                    "version {}: no group covers {q}/{b}; its agent runs its agent.toml",
                    p.version
                );
                return 0;
            }
        },
        None if json => serde_json::to_string_pretty(&p.plan).unwrap_or_default(),
        None => toml::to_string(&p.plan).unwrap_or_default(),
    };
    if !json {
        println!(
            "# plan version {}, in force since {}",
            p.version,
            p.applied_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
    println!("{}", text.trim_end());
    0
}

fn print_history(store: &dyn Store, json: bool) -> i32 {
    match store.plans() {
        Ok(all) if json => {
            let rows: Vec<_> = all
                .iter()
                .map(|v| serde_json::json!({"version": v.version, "applied_at": v.applied_at}))
                .collect();
            println!("{}", serde_json::Value::Array(rows));
            0
        }
        Ok(all) => {
            println!("{:>7}  {:<25}  groups", "version", "in force from");
            for v in &all {
                let groups = InForce::of(v).map_or(0, |p| p.plan.groups.len());
                println!(
                    "{:>7}  {:<25}  {groups}",
                    v.version,
                    v.applied_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                );
            }
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// Prints what changes from one plan to another.
pub fn diff(config: &Path, file: Option<&Path>, from: Option<u64>, to: Option<u64>) -> i32 {
    let new_file = file.map(read_plan);
    if new_file.is_none() && to.is_none() {
        sonde_cli::usage_error("plan diff needs --file FILE or --to N");
    }
    let config = load_config(config);
    let Some(store) = open_configured(&config) else {
        return 1;
    };
    let store = &*store;
    let old = match (from, store.plan_version()) {
        (None, Ok(None)) => PlanFile::default(),
        (asked, _) => match version(store, asked) {
            Ok(p) => p.plan,
            Err(code) => return code,
        },
    };
    let new = match new_file {
        Some(p) => p,
        None => match version(store, to) {
            Ok(p) => p.plan,
            Err(code) => return code,
        },
    };
    let lines = plans::diff(&old, &new);
    if lines.is_empty() {
        println!("no change");
    }
    for l in lines {
        println!("{l}");
    }
    0
}
