//! `sonde-collector report`, `report verify` and `report key`.

use super::common::{key_source, load_config, open_configured, open_seal_key};
use super::ReportArgs;
use sonde_collector::config;
use sonde_collector::report::{self, sign::ReportKey};
use sonde_store::Store;
use std::path::{Path, PathBuf};

/// Writes a signed report.
pub fn write(args: ReportArgs) -> i32 {
    let (Some(from), Some(to), Some(format)) = (args.from.clone(), args.to.clone(), args.format)
    else {
        sonde_cli::usage_error("report needs --from DATE --to DATE --format csv|json|html|pdf");
    };
    let config = load_config(&args.config.path);
    let tz = match &args.time_zone {
        Some(t) => t.parse::<chrono_tz::Tz>().unwrap_or_else(|_| {
            sonde_cli::usage_error(format!(
                "--time-zone {t:?} is not an IANA time zone (e.g. Europe/Paris)"
            ))
        }),
        None => config.time_zone,
    };
    let (from_t, to_t) =
        report::parse_period(&from, &to, tz).unwrap_or_else(|e| sonde_cli::usage_error(e));
    if config.store_url.is_none() && !config.store_path.exists() {
        eprintln!(
            "error: no store at {} (has this collector run?)",
            config.store_path.display()
        );
        return 1;
    }
    let Some(store) = open_configured(&config) else {
        return 1;
    };
    let store = &*store;
    let Some(key) = report_key(&config, store) else {
        return 1;
    };
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(report::file_name(
            from_t,
            to_t,
            tz,
            args.quartier.as_deref(),
            args.building.as_deref(),
            format,
        ))
    });
    let request = report::Request {
        scope: sonde_store::ReportScope {
            quartier: args.quartier,
            building: args.building,
            from: from_t,
            to: to_t,
        },
        time_zone: tz,
        generated_at: chrono::Utc::now(),
    };
    let how = report::Presentation {
        format,
        lang: args
            .lang
            .unwrap_or_else(|| report::render::Lang::for_zone(tz)),
        issuer: config.issuer.clone(),
    };
    write_checked(store, &key, &request, &how, &out)
}

/// Writes the report of a checked request and says what was written.
fn write_checked(
    store: &dyn Store,
    key: &ReportKey,
    request: &report::Request,
    how: &report::Presentation,
    out: &Path,
) -> i32 {
    if let Err(e) = report::check_scope(store, &request.scope) {
        sonde_cli::usage_error(e);
    }
    let s = &request.scope;
    eprintln!(
        "reporting {} to {} ({})…",
        s.from.to_rfc3339(),
        s.to.to_rfc3339(),
        request.time_zone.name()
    );
    if how.format == report::render::Format::Pdf {
        eprintln!("printing the PDF with Chromium…");
    }
    match report::write(store, key, request, how, out) {
        Ok(w) => {
            if w.report.data.no_data {
                eprintln!("no data: no result of this scope was stored for this period");
            }
            for f in w.files.iter().chain([&w.manifest, &w.signature]) {
                println!("{}", f.display());
            }
            eprintln!(
                "{} results, {} building accesses; signed with report key {}",
                w.report.data.results,
                w.report.accesses.len(),
                key.key_id()
            );
            match &w.proofs {
                Some(p) if !p.contradicted.is_empty() => {
                    eprintln!(
                        "error: {} results are not what the transparency log holds (edited in the store after they were stored), e.g. {}; `report verify` names them",
                        p.contradicted.len(),
                        p.contradicted[0]
                    );
                    1
                }
                _ => 0,
            }
        }
        Err(
            e @ (report::ReportError::UnknownQuartier(_)
            | report::ReportError::UnknownBuilding(_)
            | report::ReportError::Period { .. }),
        ) => sonde_cli::usage_error(e),
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// Checks a report's signature and digests.
pub fn verify(file: &Path, key: Option<&Path>) -> i32 {
    use sonde_collector::report::sign;
    let public = match key {
        Some(k) => match std::fs::read_to_string(k)
            .map_err(|e| format!("{}: {e}", k.display()))
            .and_then(|t| sign::parse_public(&t).map_err(|e| format!("{}: {e}", k.display())))
        {
            Ok(p) => Some(p),
            Err(e) => sonde_cli::usage_error(e),
        },
        None => None,
    };
    match sign::verify(file, public.as_deref()) {
        Ok(v) => {
            for f in &v.files {
                println!("ok {} ({} bytes, sha256 {})", f.name, f.bytes, f.sha256);
            }
            if let Some(public) = public.as_deref() {
                if let Err(e) = check_proofs(&v, public) {
                    println!("invalid: {e}");
                    return 1;
                }
                println!("valid: signed by the given key {}", v.key_id);
                0
            } else {
                println!(
                    "untrusted: the files match a manifest signed by key {}, but no trusted key was given; pass --key with the collector's public key (`sonde-collector report key` prints it)",
                    v.key_id
                );
                2
            }
        }
        Err(e) => {
            eprintln!("invalid: {e}");
            1
        }
    }
}

/// Checks the log's proof of the report's results, when the report carries one, and
/// that its figures recompute from them.
fn check_proofs(v: &sonde_collector::report::sign::Verified, public: &[u8]) -> Result<(), String> {
    use sonde_collector::report::{proof, recompute};
    let dir = v.manifest.parent().unwrap_or(Path::new("."));
    let named = |suffix: &str| {
        v.files
            .iter()
            .find(|f| f.name.ends_with(suffix))
            .map(|f| dir.join(&f.name))
    };
    let (Some(checkpoint), Some(proofs)) =
        (named(proof::CHECKPOINT_SUFFIX), named(proof::PROOFS_SUFFIX))
    else {
        println!("no log proof in this report (made before the transparency log, or over an empty store)");
        return Ok(());
    };
    let raw = named(".results.csv");
    let agents = named(proof::AGENTS_SUFFIX);
    let tree = named(proof::TREE_SUFFIX);
    let files = proof::Files {
        checkpoint: &checkpoint,
        proofs: &proofs,
        tree: tree.as_deref(),
        agents: agents.as_deref(),
        raw: raw.as_deref(),
    };
    let c = proof::check(files, public)?;
    println!(
        "ok log: {} results in the checkpoint of {} leaves (root {}), signed by the given key",
        c.results, c.size, c.root
    );
    println!(
        "ok agents: {} results signed by {} agents, each signature and chain checked; {} stored unsigned",
        c.signed,
        c.agents,
        c.results - c.signed
    );
    print_warnings(&c);
    let Some(inputs) = named(recompute::INPUTS_SUFFIX) else {
        println!(
            "figures not recomputed: this report carries no inputs (made by an older collector)"
        );
        return Ok(());
    };
    let inputs = recompute::Inputs::read(&inputs)?;
    let report = v
        .files
        .first()
        .map(|f| dir.join(&f.name))
        .ok_or("the manifest lists no file")?;
    let manifest: serde_json::Value = std::fs::read(&v.manifest)
        .ok()
        .and_then(|t| serde_json::from_slice(&t).ok())
        .ok_or_else(|| format!("{}: not JSON", v.manifest.display()))?;
    let recomputed = recompute::recompute(&inputs, c.rows)?;
    let how = recompute::compare(&inputs, &recomputed, &report, &manifest)
        .map_err(|e| format!("figures do not recompute from the proven results: {e}"))?;
    println!(
        "ok figures: {} recomputed from the {} proven results: {how}",
        report.display(),
        recomputed.data.results
    );
    Ok(())
}

/// The gaps in agents' chains and the unsigned results of agents that sign: not
/// failures (results are lost, boxes run out of disk), but a reader must see them.
fn print_warnings(c: &sonde_collector::report::proof::Checked) {
    let missing: u64 = c.gaps.iter().map(|g| g.places.1 - g.places.0 + 1).sum();
    for g in c.gaps.iter().take(10) {
        println!("gap: {g}");
    }
    if !c.gaps.is_empty() {
        println!(
            "warning: {missing} results missing from agents' chains in {} gap{}{}: lost, deleted, or outside this report's scope",
            c.gaps.len(),
            if c.gaps.len() == 1 { "" } else { "s" },
            if c.gaps.len() > 10 { " (the first 10 above)" } else { "" }
        );
    }
    for (id, agent) in c.unsigned.iter().take(10) {
        println!("unsigned: result {id} of agent {agent}, an agent that signs");
    }
    if !c.unsigned.is_empty() {
        println!(
            "warning: {} results stored unsigned from agents that sign{}: held in memory on a full disk, or added by the collector",
            c.unsigned.len(),
            if c.unsigned.len() > 10 { " (the first 10 above)" } else { "" }
        );
    }
}

/// The report key: sealed in `store` when the configuration has a seal key, else
/// the data directory's file; reports why not on one line.
fn report_key(config: &config::Checked, store: &dyn Store) -> Option<ReportKey> {
    let seal = open_seal_key(config, store).ok()?;
    key_source(config, store, seal.as_ref())
        .report_key()
        .map_err(|e| eprintln!("error: {e}"))
        .ok()
}

/// Prints the public report key.
pub fn key(config: &Path) -> i32 {
    let config = load_config(config);
    let key = if config.seal_key.is_some() {
        let Some(store) = open_configured(&config) else {
            return 1;
        };
        report_key(&config, &*store)
    } else {
        ReportKey::load_or_create(&config.data_dir)
            .map_err(|e| eprintln!("error: the report key: {e}"))
            .ok()
    };
    match key {
        Some(k) => {
            println!("{}", k.public_text());
            eprintln!("key id {}", k.key_id());
            0
        }
        None => 1,
    }
}
