//! `sonde-rpm-bench`: responsiveness side by side. On netlab's rpm-shallow and
//! rpm-bufferbloat profiles (the same 100/20 Mb/s line, 20 ms, behind a 10 ms and a
//! 500 ms queue), sonde's agent and Cloudflare's `mach` (cf-mach, draft -09) measure
//! RPM against sonde's responder, in turn, RUNS times each: RPM down and up, the bytes
//! the agent's interface carried and the seconds each run took. A benchmark, not a
//! test: it prints figures and asserts nothing. Needs root, and mach built
//! (`cargo install cf-mach --locked --root /var/cache/sonde-tools/cf-mach`, or
//! `SONDE_MACH=PATH`).
//!
//! Usage: cargo build --release --workspace && sudo ./target/release/sonde-rpm-bench [--runs N] [--json]

use sonde_e2e::rpm::{self, Measured};

/// sonde's RPM and mach's on a shallow and a deep queue.
#[derive(Debug, clap::Parser)]
#[command(name = "sonde-rpm-bench", version)]
struct Args {
    /// Runs of each client on each profile.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=20))]
    runs: u32,
    /// One JSON document instead of the table.
    #[arg(long)]
    json: bool,
}

fn main() {
    let args: Args = clap::Parser::parse();
    let Some(mach) = rpm::mach() else {
        eprintln!("error: mach is not built: cargo install cf-mach --locked --root /var/cache/sonde-tools/cf-mach (or SONDE_MACH=PATH)");
        std::process::exit(69);
    };
    if !sonde_e2e::is_root() {
        eprintln!("error: needs root (network namespaces)");
        std::process::exit(77);
    }
    let mut rows = Vec::new();
    for profile in sonde_netlab::profile::RPM_PROFILES {
        for run in 1..=args.runs {
            let t = rpm::topology(profile);
            let ours = rpm::sonde(&t);
            let theirs = rpm::mach_rpm(&t, &mach);
            eprintln!("{profile} run {run}: sonde {ours:?}, mach {theirs:?}");
            rows.push((profile, run, ours, theirs));
        }
    }
    if args.json {
        let doc: Vec<_> = rows
            .iter()
            .map(|(p, run, s, m)| serde_json::json!({"profile": p, "run": run, "sonde": row(s), "mach": row(m)}))
            .collect();
        println!("{}", serde_json::json!({ "runs": doc }));
        return;
    }
    println!("RPM each way, the loaded (self-probe) round trip each way in ms, the bytes the agent's interface carried and the wall time; × is sonde ÷ mach.");
    println!(
        "{:<16} {:>3}  {:>9} {:>9} {:>13} {:>7} {:>5}  {:>9} {:>9} {:>13} {:>7} {:>5}  {:>5} {:>5}",
        "profile",
        "run",
        "sonde dn",
        "sonde up",
        "self ms",
        "MB",
        "s",
        "mach dn",
        "mach up",
        "self ms",
        "MB",
        "s",
        "dn ×",
        "up ×"
    );
    for (p, run, s, m) in &rows {
        println!(
            "{p:<16} {run:>3}  {:>9.0} {:>9.0} {:>13} {:>7.1} {:>5.1}  {:>9.0} {:>9.0} {:>13} {:>7.1} {:>5.1}  {:>5.2} {:>5.2}",
            s.down, s.up, pair(s.self_ms), s.bytes as f64 / 1e6, s.seconds,
            m.down, m.up, pair(m.self_ms), m.bytes as f64 / 1e6, m.seconds,
            s.down / m.down, s.up / m.up
        );
    }
}

/// Two milliseconds figures, `down/up`.
fn pair((d, u): (f64, f64)) -> String {
    format!("{d:.0}/{u:.0}")
}

fn row(m: &Measured) -> serde_json::Value {
    serde_json::json!({"rpm_down": m.down, "rpm_up": m.up, "self_ms_down": m.self_ms.0, "self_ms_up": m.self_ms.1, "bytes": m.bytes, "seconds": m.seconds})
}
