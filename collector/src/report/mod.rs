//! Compliance reports (docs/METHODOLOGY.md §7): the figures are `sonde_method::report`'s
//! (pure); here they are read from the store, written in each format ([`render`]) and
//! signed ([`sign`]).

pub mod proof;
pub mod recompute;
pub mod render;
pub mod sign;

pub use sonde_method::report::*;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sonde_store::{Store, StoreError};
use std::path::{Path, PathBuf};

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The period is empty or reversed.
    #[error("--from {from} is not before --to {to}")]
    Period {
        /// Start asked.
        from: DateTime<Utc>,
        /// End asked.
        to: DateTime<Utc>,
    },
    /// No agent, token or result names this quartier.
    #[error("unknown quartier {0:?}: no agent, token or result names it")]
    UnknownQuartier(String),
    /// No agent, token or result names this building.
    #[error("unknown building {0:?}: no agent, token or result names it in this scope")]
    UnknownBuilding(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A report file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Signing failed.
    #[error("{0}")]
    Sign(#[from] sign::SignError),
    /// The page could not be made (a PDF without Chromium).
    #[error("{0}")]
    Render(String),
}

impl From<proof::ProofError> for ReportError {
    fn from(e: proof::ProofError) -> Self {
        match e {
            proof::ProofError::Store(e) => ReportError::Store(e),
            proof::ProofError::Io { path, source } => ReportError::Io { path, source },
        }
    }
}

/// The files of a written report.
#[derive(Debug)]
pub struct Written {
    /// The report, then the raw results for CSV.
    pub files: Vec<PathBuf>,
    /// The signed manifest.
    pub manifest: PathBuf,
    /// Its signature.
    pub signature: PathBuf,
    /// What the report says.
    pub report: Report,
    /// The log's proof of its results (none while the log is empty).
    pub proofs: Option<proof::Written>,
}

/// How a report is presented: its format, the language of its pages, its issuer.
#[derive(Debug, Clone)]
pub struct Presentation {
    /// The format.
    pub format: render::Format,
    /// The language of HTML and PDF pages.
    pub lang: render::Lang,
    /// Who issues it (`[report] issuer`).
    pub issuer: Option<String>,
}

/// Writes who issues `report` and which key signs it into its header (both signed
/// with it, in the manifest).
pub fn stamp(report: &mut Report, key: &sign::ReportKey, issuer: Option<&str>) {
    report.header.issuer = issuer.map(str::to_string);
    report.header.report_key_id = Some(key.key_id());
}

/// Makes the report, writes it to `out` (and, for CSV, the raw results beside it as
/// `STEM.results.csv`), then its manifest and signature (`STEM.manifest.json`,
/// `STEM.manifest.sig`).
pub fn write(
    store: &dyn Store,
    key: &sign::ReportKey,
    request: &Request,
    how: &Presentation,
    out: &Path,
) -> Result<Written, ReportError> {
    let format = how.format;
    let (mut report, accesses, planned, sealed) = build_sealed(store, key, request)?;
    stamp(&mut report, key, how.issuer.as_deref());
    report.header.checkpoint = sealed.as_ref().map(proof::Sealed::name);
    // Beside `out` ("" for the current directory, so paths print as given).
    let dir = out.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".into());
    let stem = name
        .rsplit_once('.')
        .map_or(name.as_str(), |(b, _)| b)
        .to_string();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ReportError::Io { path, source }
    };
    let body = render::render(&report, format, how.lang).map_err(ReportError::Render)?;
    std::fs::write(out, body).map_err(io(out))?;
    let mut files = vec![out.to_path_buf()];
    if format == render::Format::Csv {
        let raw = dir.join(format!("{stem}.results.csv"));
        let f = std::fs::File::create(&raw).map_err(io(&raw))?;
        let mut w = std::io::BufWriter::new(f);
        render::write_raw_csv(store, &request.scope, request.time_zone, &mut w)?;
        use std::io::Write as _;
        w.flush().map_err(io(&raw))?;
        files.push(raw);
    }
    let mut info = render::manifest_info(&report);
    let mut proofs = None;
    if let Some(sealed) = &sealed {
        let p = proof::write(store, sealed, &request.scope, &dir, &stem)?;
        let inputs = recompute::Inputs::of(&report, format, how.lang, accesses, planned);
        let path = dir.join(format!("{stem}{}", recompute::INPUTS_SUFFIX));
        let text = serde_json::to_vec_pretty(&inputs).unwrap_or_default();
        std::fs::write(&path, text).map_err(io(&path))?;
        files.extend(p.files.iter().cloned());
        files.push(path);
        info["log"] = serde_json::json!({
            "checkpoint": sealed.name(),
            "results_proven": p.results,
        });
        proofs = Some(p);
    }
    let (manifest, signature) = sign::sign_files(key, info, &files, &dir, &stem)?;
    Ok(Written {
        files,
        manifest,
        signature,
        report,
        proofs,
    })
}

/// A report built on a checkpoint: the report, its accesses and plan, the checkpoint.
type Sealed = (
    Report,
    Vec<ScheduledAccess>,
    Vec<PlannedAccess>,
    Option<proof::Sealed>,
);

/// Signs a checkpoint, then builds the report, so its header can name the checkpoint.
/// A result stored between the two would be counted but not proven: then both are
/// made again (three times at most). Only a log that grew since its checkpoint can
/// explain a difference: results whose records retention pruned are counted and cannot
/// be proven.
fn build_sealed(
    store: &dyn Store,
    key: &sign::ReportKey,
    request: &Request,
) -> Result<Sealed, ReportError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let sealed = proof::seal(store, key)?;
        let (report, accesses, planned) = build_with_inputs(store, request)?;
        let raced = match &sealed {
            Some(s) => {
                store.log_count_in(&request.scope, s.size)? != report.data.results
                    && store.log_size()? > s.size
            }
            None => false,
        };
        if !raced || attempts == 3 {
            return Ok((report, accesses, planned, sealed));
        }
    }
}

/// Default file name of a report: `sonde-report-FROM-TO[-QUARTIER][-BUILDING].EXT`,
/// with the period's first and last local days.
pub fn file_name(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    tz: Tz,
    quartier: Option<&str>,
    building: Option<&str>,
    format: render::Format,
) -> String {
    let mut name = format!(
        "sonde-report-{}-{}",
        from.with_timezone(&tz).format("%Y%m%d"),
        (to - chrono::Duration::nanoseconds(1))
            .with_timezone(&tz)
            .format("%Y%m%d")
    );
    for part in [quartier, building].into_iter().flatten() {
        name.push('-');
        name.extend(
            part.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_'),
        );
    }
    format!("{name}.{}", format.extension())
}

/// Checks the period and that the scope's quartier and building are known.
pub fn check_scope(store: &dyn Store, scope: &ReportScope) -> Result<(), ReportError> {
    if scope.from >= scope.to {
        return Err(ReportError::Period {
            from: scope.from,
            to: scope.to,
        });
    }
    if let Some(q) = &scope.quartier {
        if !store.site_known(Some(q), None)? {
            return Err(ReportError::UnknownQuartier(q.clone()));
        }
    }
    if let Some(b) = &scope.building {
        if !store.site_known(scope.quartier.as_deref(), Some(b))? {
            return Err(ReportError::UnknownBuilding(b.clone()));
        }
    }
    Ok(())
}

/// Makes the report for `request` from `store`.
pub fn build(store: &dyn Store, request: &Request) -> Result<Report, ReportError> {
    Ok(build_with_inputs(store, request)?.0)
}

/// Makes the report for `request` from `store`, with what its figures were computed
/// from beside the results: the accesses and their schedules, and what the plans
/// scheduled.
pub fn build_with_inputs(
    store: &dyn Store,
    request: &Request,
) -> Result<(Report, Vec<ScheduledAccess>, Vec<PlannedAccess>), ReportError> {
    let scope = &request.scope;
    check_scope(store, scope)?;
    let history = store.plans()?;
    let mut planned = Vec::new();
    if !history.is_empty() {
        let end = scope.to.min(request.generated_at);
        let spans = crate::plans::in_force_during(&history, scope.from, end);
        let versions: Vec<_> = spans.iter().map(|(p, a, b)| (&p.plan, *a, *b)).collect();
        let sites = plan_sites(store, scope, &spans, end)?;
        planned = sonde_method::report::planned(&versions, &sites);
    }
    // One part per core: each reads and summarises its share of the accesses.
    let parts = std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 8));
    let mut builders: Vec<Builder<'_>> = (0..parts)
        .map(|_| Builder::new(request).with_plan(planned.clone()))
        .collect();
    {
        let mut sinks: Vec<&mut (dyn ReportSink + Send)> = builders
            .iter_mut()
            .map(|b| b as &mut (dyn ReportSink + Send))
            .collect();
        store.report_scan_parts(scope, &mut sinks)?;
    }
    let mut merged = builders.into_iter();
    let first = merged.next().unwrap_or_else(|| Builder::new(request));
    let all = merged.fold(first, Builder::merge);
    let accesses = all.schedules().cloned().collect();
    let planned = all.plan().cloned().collect();
    let mut report = all.finish();
    // The ids of the tests it pictures, two an access, looked up now rather than read
    // with every row.
    sonde_store::resolve_pictures(store, &mut report)?;
    Ok((report, accesses, planned))
}

/// The buildings in `scope` whose planned accesses the report counts: those a plan
/// version names, and those of agents enrolled before `end` (for quartier-wide
/// groups). An agent enrolled later does not change a closed period.
fn plan_sites(
    store: &dyn Store,
    scope: &sonde_store::ReportScope,
    spans: &[(crate::plans::InForce, DateTime<Utc>, DateTime<Utc>)],
    end: DateTime<Utc>,
) -> Result<Vec<(String, String)>, ReportError> {
    let mut sites = std::collections::BTreeSet::new();
    for (p, _, _) in spans {
        for g in &p.plan.groups {
            for b in &g.buildings {
                sites.insert((g.quartier.clone(), b.clone()));
            }
        }
    }
    for a in store.agents()? {
        let enrolled = a.enrolled_at.unwrap_or(a.first_seen);
        if let (Some(q), Some(b), true) = (a.quartier, a.building, enrolled < end) {
            sites.insert((q, b));
        }
    }
    Ok(sites
        .into_iter()
        .filter(|(q, b)| {
            scope.quartier.as_ref().is_none_or(|s| s == q)
                && scope.building.as_ref().is_none_or(|s| s == b)
        })
        .collect())
}
