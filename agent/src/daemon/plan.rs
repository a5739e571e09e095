//! The plan the box runs: its `agent.toml`'s accesses until its controller (the
//! collector it enrolled with) pushes a plan; then the plan's, kept on disk
//! ([`PLAN_FILE`]) so that a restart without the controller runs it still.
//!
//! A plan that does not check on this box (an interface it lacks, a field this
//! version does not know) is refused with every problem, said in the health, and the
//! previous accesses keep running. Plans come only over the agent's own QUIC
//! connection, whose collector it pinned at enrolment: nobody else can send one.

use super::shared::{stopped, Running, Shared};
use crate::config::{self, Access, Config, Interfaces};
use sonde_proto::plan::{AgentPlan, Capabilities, RefusedPlan};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// The last plan received, in the state directory.
pub const PLAN_FILE: &str = "plan.json";

/// Checks `plan` as this box will run it (its interfaces included).
pub fn check(plan: &AgentPlan) -> Result<Vec<Access>, Vec<String>> {
    config::check_plan_accesses(&plan.access, Interfaces::MustExist)
}

/// What the box starts with: the plan kept in `state_dir` when there is one and it
/// still checks, else `agent.toml`'s accesses (blocking file work).
pub fn load(state_dir: &Path, config: &Config) -> Running {
    let path = state_dir.join(PLAN_FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Running::local(config),
        Err(e) => {
            tracing::error!(error = %e, path = %path.display(), "cannot read the last plan; running agent.toml's accesses");
            return Running::local(config);
        }
    };
    let kept = serde_json::from_slice::<AgentPlan>(&text)
        .map_err(|e| vec![e.to_string()])
        .and_then(|p| check(&p).map(|a| (p, a)));
    match kept {
        Ok((plan, accesses)) => {
            tracing::info!(version = plan.version, "running the last plan received");
            Running {
                accesses: Arc::new(accesses),
                plan: Some(plan),
            }
        }
        Err(problems) => {
            tracing::error!(path = %path.display(), problems = %problems.join("; "), "the last plan does not check; running agent.toml's accesses");
            Running::local(config)
        }
    }
}

/// What the box can do, said with its plan state.
pub fn capabilities() -> Capabilities {
    let interfaces = crate::net::netif::names();
    Capabilities {
        methods: sonde_method::access::SCHEMES
            .iter()
            .map(|(s, _)| s.to_string())
            .collect(),
        interfaces,
        version: env!("CARGO_PKG_VERSION").into(),
    }
}

/// Takes the plans the link receives until `stop`.
pub async fn receive(
    shared: Arc<Shared>,
    mut plans: mpsc::UnboundedReceiver<AgentPlan>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            p = plans.recv() => match p {
                Some(p) => adopt(&shared, p).await,
                None => return,
            },
            _ = stopped(&mut stop) => return,
        }
    }
}

/// Runs `plan` if it checks (kept on disk first), else says why not; either way the
/// collector hears at once in a heartbeat.
pub async fn adopt(shared: &Shared, plan: AgentPlan) {
    let version = plan.version;
    let current = shared.running().version();
    if version != current {
        match check(&plan) {
            Ok(accesses) => run(shared, plan, accesses).await,
            Err(problems) => {
                tracing::error!(version, problems = %problems.join("; "), "plan refused; the previous accesses keep running");
                shared.board.update(|s| {
                    s.plan.refused = Some(RefusedPlan { version, problems });
                    s.last_error = Some(format!("plan {version} refused"));
                });
            }
        }
    }
    shared.health_now.store(true, Ordering::Relaxed);
    shared.wake.notify_one();
}

async fn run(shared: &Shared, plan: AgentPlan, accesses: Vec<Access>) {
    let version = plan.version;
    let json = serde_json::to_vec_pretty(&plan).unwrap_or_default();
    let path = shared.state_dir.join(PLAN_FILE);
    let kept = sonde_cli::blocking::run(move || {
        crate::state::files::write_atomic(&path, &json, 0o600).map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    if let Err(e) = &kept {
        // Run it all the same; a restart before it is kept runs the previous one.
        tracing::error!(error = %e, version, "cannot keep the plan on disk; running it from memory");
    }
    let names: Vec<&str> = accesses.iter().map(|a| a.name.as_str()).collect();
    tracing::info!(version, accesses = %names.join(","), "running a new plan");
    shared.set_running(Running {
        accesses: Arc::new(accesses),
        plan: Some(plan),
    });
    shared.board.update(|s| {
        s.plan.version = version;
        s.plan.refused = None;
        if let Err(e) = kept {
            s.last_error = Some(format!("plan {version} not kept on disk: {e}"));
        }
    });
    shared.replan.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENT_TOML: &str = r#"
[site]
quartier = "q"
building = "b"
latitude = 48.8
longitude = 2.3

[collector]
address = "collector.example:4433"
state_dir = "/nonexistent"

[[access]]
name = "bootstrap"
kind = "ftth"
interface = "lo"
responders = ["http://r.example"]
every = "1h"
jitter = "1m"
"#;

    fn plan_json(interface: &str) -> String {
        format!(
            r#"{{"version": 4, "effective_at": "2026-12-01T00:00:00Z",
               "access": [{{"name": "planned", "kind": "4g", "interface": "{interface}",
                            "responders": ["http://r.example"], "every": "30m", "jitter": "1m"}}]}}"#
        )
    }

    #[test]
    fn a_box_starts_on_its_last_plan_and_falls_back_to_agent_toml_when_it_cannot() {
        let config = config::check(
            toml::from_str(AGENT_TOML).expect("parses"),
            Interfaces::Ignore,
        )
        .expect("valid");
        let dir = std::env::temp_dir().join(format!("sonde-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let names = |r: &Running| {
            r.accesses
                .iter()
                .map(|a| a.name.clone())
                .collect::<Vec<_>>()
        };
        // No plan yet: agent.toml.
        let r = load(&dir, &config);
        assert_eq!((r.version(), names(&r)), (0, vec!["bootstrap".to_string()]));
        // The last plan, kept: run it, its interface pattern resolved on this box.
        std::fs::write(dir.join(PLAN_FILE), plan_json("l?")).expect("write");
        let r = load(&dir, &config);
        assert_eq!((r.version(), names(&r)), (4, vec!["planned".to_string()]));
        assert_eq!(r.accesses[0].interface, "lo");
        // A plan this box can no longer run, or a torn file: agent.toml, nothing else.
        for bad in [plan_json("nosuchif0"), "{\"version\": 4, \"acc".to_string()] {
            std::fs::write(dir.join(PLAN_FILE), bad).expect("write");
            let r = load(&dir, &config);
            assert_eq!((r.version(), names(&r)), (0, vec!["bootstrap".to_string()]));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
