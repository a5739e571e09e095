//! Recomputing a report's figures from the results it proves (docs/METHODOLOGY.md
//! §7.6). Beside the results, a report's figures stand on what the collector states:
//! the period and scope, the accesses it knew with their schedules, and what the plans
//! scheduled. `STEM.inputs.json` carries those, signed in the manifest; `report verify`
//! feeds them and every proven result (read from its signed bytes, as the store read it
//! at ingest) to the same summary the collector ran, renders the result in the report's
//! format and compares it with the report, byte for byte.

use super::render::{self, Format, Lang};
use super::{Builder, PlannedAccess, Report, ReportSink as _, Request, ScheduledAccess};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sonde_store::rows::ReportRow;
use sonde_store::ReportScope;
use std::collections::HashMap;
use std::path::Path;

/// Suffix of the inputs' file name.
pub const INPUTS_SUFFIX: &str = ".inputs.json";

/// What a report's figures stand on besides its results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inputs {
    /// Start of the period (included).
    pub from: DateTime<Utc>,
    /// End of the period (excluded).
    pub to: DateTime<Utc>,
    /// Quartier asked for.
    pub quartier: Option<String>,
    /// Building asked for.
    pub building: Option<String>,
    /// Time zone of peak hours (IANA).
    pub time_zone: String,
    /// When the report was made.
    pub generated_at: DateTime<Utc>,
    /// Its issuer.
    pub issuer: Option<String>,
    /// The report key's id.
    pub report_key_id: Option<String>,
    /// The checkpoint it was built on.
    pub checkpoint: Option<String>,
    /// Its format (`csv`, `json`, `html`, `pdf`).
    pub format: String,
    /// The language of its pages.
    pub lang: String,
    /// The accesses known, with their schedules.
    pub accesses: Vec<ScheduledAccess>,
    /// What the plans in force scheduled.
    pub planned: Vec<PlannedAccess>,
}

impl Inputs {
    /// The inputs of `report`, presented as `format` in `lang`.
    pub fn of(
        report: &Report,
        format: Format,
        lang: Lang,
        accesses: Vec<ScheduledAccess>,
        planned: Vec<PlannedAccess>,
    ) -> Inputs {
        let h = &report.header;
        Inputs {
            from: h.from,
            to: h.to,
            quartier: h.quartier.clone(),
            building: h.building.clone(),
            time_zone: h.time_zone.clone(),
            generated_at: h.generated_at,
            issuer: h.issuer.clone(),
            report_key_id: h.report_key_id.clone(),
            checkpoint: h.checkpoint.clone(),
            format: format.extension().to_string(),
            lang: lang_name(lang),
            accesses,
            planned,
        }
    }

    /// Reads `STEM.inputs.json`.
    pub fn read(path: &Path) -> Result<Inputs, String> {
        let name = path.display();
        let text = std::fs::read(path).map_err(|e| format!("{name}: {e}"))?;
        serde_json::from_slice(&text).map_err(|e| format!("{name}: not a report's inputs: {e}"))
    }
}

/// A language's name as `--lang` takes it.
fn lang_name(lang: Lang) -> String {
    clap::ValueEnum::to_possible_value(&lang)
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

/// The report that `rows` (every proven result, in any order) give with `inputs`.
pub fn recompute(inputs: &Inputs, rows: Vec<ReportRow>) -> Result<Report, String> {
    let time_zone = inputs
        .time_zone
        .parse::<chrono_tz::Tz>()
        .map_err(|_| format!("time zone {:?} is not an IANA zone", inputs.time_zone))?;
    let request = Request {
        scope: ReportScope {
            quartier: inputs.quartier.clone(),
            building: inputs.building.clone(),
            from: inputs.from,
            to: inputs.to,
        },
        time_zone,
        generated_at: inputs.generated_at,
    };
    // Reports read a result's site and kind from its access (its latest), as the scan
    // does; results of accesses the report does not list are outside its scope.
    let order: HashMap<(&str, &str), (usize, &ScheduledAccess)> = inputs
        .accesses
        .iter()
        .enumerate()
        .map(|(i, a)| ((a.agent_id.as_str(), a.access.as_str()), (i, a)))
        .collect();
    let (from, to) = (nanos(inputs.from), nanos(inputs.to));
    let mut kept: Vec<(usize, ReportRow)> = rows
        .into_iter()
        .filter(|r| r.started_at_ns >= from && r.started_at_ns < to)
        .filter_map(|mut r| {
            let (i, a) = order.get(&(r.agent_id.as_str(), r.access.as_str()))?;
            r.quartier.clone_from(&a.quartier);
            r.building.clone_from(&a.building);
            Some((*i, r))
        })
        .collect();
    kept.sort_by_key(|(i, r)| (*i, r.started_at_ns));
    let mut b = Builder::new(&request).with_plan(inputs.planned.clone());
    b.accesses(inputs.accesses.clone());
    for (i, r) in &kept {
        let mut f = r.fact(Some(&r.id));
        f.kind = &inputs.accesses[*i].kind;
        b.fact(&f)?;
    }
    let mut report = b.finish();
    report.header.issuer.clone_from(&inputs.issuer);
    report
        .header
        .report_key_id
        .clone_from(&inputs.report_key_id);
    report.header.checkpoint.clone_from(&inputs.checkpoint);
    Ok(report)
}

/// Compares `recomputed` with the report file `file` it should be, rendered as the
/// inputs say; a PDF (printed by Chromium, not reproducible byte for byte) is compared
/// by its header and data summary, as its signed manifest repeats them (`manifest`).
/// Says what was compared, or where the report and its results part.
pub fn compare(
    inputs: &Inputs,
    recomputed: &Report,
    file: &Path,
    manifest: &serde_json::Value,
) -> Result<&'static str, String> {
    let name = file.display();
    let format: Format = inputs.format.parse()?;
    let lang: Lang = clap::ValueEnum::from_str(&inputs.lang, true)
        .map_err(|_| format!("language {:?} is not one sonde writes", inputs.lang))?;
    if format == Format::Pdf {
        let ours = render::manifest_info(recomputed);
        for part in ["header", "data"] {
            if manifest["report"][part] != ours[part] {
                return Err(format!(
                    "{name}: the report's {part} is {}, its results give {}",
                    manifest["report"][part], ours[part]
                ));
            }
        }
        return Ok("its header and data summary (a PDF is not re-printed: write the report as html or json to compare every figure)");
    }
    let ours = render::render(recomputed, format, lang)?;
    let theirs = std::fs::read(file).map_err(|e| format!("{name}: {e}"))?;
    if ours == theirs {
        return Ok("every figure, byte for byte");
    }
    let (ours, theirs) = (
        String::from_utf8_lossy(&ours),
        String::from_utf8_lossy(&theirs),
    );
    let longest = theirs.lines().count().max(ours.lines().count()) + 1;
    let (n, (a, b)) = theirs
        .lines()
        .chain(std::iter::repeat(""))
        .zip(ours.lines().chain(std::iter::repeat("")))
        .take(longest)
        .enumerate()
        .find(|(_, (a, b))| a != b)
        .unwrap_or((longest - 1, ("(the end)", "(the end)")));
    let clip = |s: &str| s.chars().take(160).collect::<String>();
    Err(format!(
        "{name}:{}: the report says {:?}, its proven results give {:?}",
        n + 1,
        clip(a),
        clip(b)
    ))
}

/// Unix nanoseconds of `t`.
fn nanos(t: DateTime<Utc>) -> i64 {
    sonde_store::rows::nanos(t)
}
