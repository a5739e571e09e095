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
    println!(
        "  spool       {} result(s) waiting, {} evicted",
        s.spool_depth, s.evictions_total
    );
    println!(
        "  runs        {} measured, {} uploaded since start, {} missed",
        s.results_total, s.uploaded_total, s.missed_runs_total
    );
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
