//! `sonde-agent status`: what the daemon is doing, from its status file and spool.

use sonde_agent::daemon;
use std::time::Duration;

pub fn command(state_dir: &std::path::Path, json: bool) {
    let status = match daemon::read_status(state_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    if json {
        println!("{}", serde_json::to_string(&status).unwrap_or_default());
    } else {
        print_status(&status);
    }
    std::process::exit(if status.running { 0 } else { 3 });
}

fn ago(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    match t {
        Some(t) => {
            let s = (chrono::Utc::now() - t).num_seconds().max(0);
            format!(
                "{} ({} ago)",
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                humantime::format_duration(Duration::from_secs(s as u64))
            )
        }
        None => "never".into(),
    }
}

fn print_status(s: &daemon::Status) {
    let state = if s.running {
        format!(
            "running, pid {}, up {}",
            s.pid,
            humantime::format_duration(Duration::from_secs(s.uptime_s))
        )
    } else {
        "not running".to_string()
    };
    println!(
        "sonde-agent {} {}  ({state})",
        s.version,
        s.agent_id.as_deref().unwrap_or("(not enrolled)")
    );
    println!(
        "  collector   {}  {}",
        s.collector,
        if s.connected {
            "connected"
        } else {
            "not connected"
        }
    );
    println!("  last upload {}", ago(s.last_success));
    print_plan(s);
    println!(
        "  spool       {} result(s) waiting, {} evicted",
        s.spool_depth, s.evictions_total
    );
    print_held(s);
    println!(
        "  runs        {} measured, {} uploaded since start, {} missed",
        s.results_total, s.uploaded_total, s.missed_runs_total
    );
    if s.clock_steps_total > 0 {
        println!(
            "  clock       stepped {} time(s); the schedule followed",
            s.clock_steps_total
        );
    }
    let map = |m: &std::collections::BTreeMap<String, u64>| {
        if m.is_empty() {
            "none".to_string()
        } else {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    println!("  failures    {}", map(&s.failures_total));
    println!("  uplink errs {}", map(&s.uplink_errors_total));
    for (access, b) in &s.budgets {
        println!(
            "  budget      {access}: {:.1} of {:.1} MB used in {} ({:.0} %)",
            b.used_bytes as f64 / 1e6,
            b.budget_bytes as f64 / 1e6,
            b.month,
            100.0 * b.used_bytes as f64 / (b.budget_bytes.max(1)) as f64
        );
    }
    if let Some(n) = &s.next_run {
        println!(
            "  next run    {} at {}",
            n.access,
            n.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
    if let Some(e) = &s.last_error {
        println!("  last error  {e}");
    }
}

/// The plan the box runs, a plan it refused, and its suppressed runs.
fn print_plan(s: &daemon::Status) {
    let source = match s.plan.version {
        0 => "its agent.toml (no plan received)".to_string(),
        v if s.connected => format!("version {v}, from the collector"),
        v => format!("version {v}, kept on disk (the collector is not connected)"),
    };
    println!("  plan        {source}");
    if let Some(r) = &s.plan.refused {
        println!(
            "  plan        version {} refused: {}",
            r.version,
            r.problems.join("; ")
        );
    }
    let suppressed: u64 = s.plan.schedules.values().map(|c| c.suppressions).sum();
    if suppressed > 0 {
        println!("  suppressed  {suppressed} run(s) in the plan's suppression windows");
    }
}

/// Results held in memory (the spool refusing writes), when there are or were any.
fn print_held(s: &daemon::Status) {
    if s.spool_full || s.held_results > 0 || s.held_dropped_total > 0 {
        println!(
            "  memory      {} result(s) held{}, {} dropped at the bound",
            s.held_results,
            if s.spool_full {
                " (the spool refuses writes: disk full?)"
            } else {
                ""
            },
            s.held_dropped_total
        );
    }
}
