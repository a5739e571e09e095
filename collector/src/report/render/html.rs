//! The report as one self-contained HTML page, in French or English: headline per
//! kind, charts, tables with every access, what each "—" means, and the methodology's
//! report sections as an annex. It prints to PDF as it is (A4, tables split across
//! pages with their heads repeated).

use super::chart::{compliance_chart, download_charts};
use super::words::{esc, Lang};
use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use sonde_method::report::{AccessReport, Report, Rollup, Standing, Thresholds};
use std::fmt::Write as _;

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2em auto;max-width:1180px;color:#1b1b1b;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc;padding-bottom:.2em}
.meta{color:#555;font-size:.9em}dl.head{display:grid;grid-template-columns:max-content 1fr;gap:.1em 1em;font-size:.9em;color:#333}dl.head dt{font-weight:600}dl.head dd{margin:0}
table{border-collapse:collapse;width:100%;font-size:.8em;margin:.6em 0}
th,td{border:1px solid #ccc;padding:.25em .4em;text-align:right;vertical-align:top}
th{background:#f2f2f2}td.l,th.l{text-align:left}
.ok{color:#116329;font-weight:600}.ko{color:#a40e26;font-weight:600}.nd{color:#57606a;font-style:italic}
.cards{display:flex;flex-wrap:wrap;gap:1em}
.card{border:1px solid #ccc;border-radius:6px;padding:.6em 1em;min-width:15em;flex:1}
.card b{font-size:1.3em}
.nodata{border:1px solid #d4a72c;background:#fff8c5;padding:.8em;border-radius:6px}
svg{max-width:100%;height:auto}svg text{font-family:inherit;font-size:11px}
.annex{font-size:.85em}.annex table{font-size:.95em}.annex td,.annex th{text-align:left}
.wide{overflow-x:auto}
@page{size:A4 landscape;margin:10mm}
@media print{body{margin:0;max-width:none;font-size:9pt}table{font-size:6.8pt}.wide{overflow:visible}h2{break-after:avoid}.annex{break-before:page}.annex table{font-size:7.5pt}.chart,.card,tr{break-inside:avoid}thead{display:table-header-group}}
";

/// The methodology, compiled in: its report sections are the annex.
const METHODOLOGY: &str = include_str!("../../../../docs/METHODOLOGY.md");

fn standing_label(s: Standing, lang: Lang) -> &'static str {
    match s {
        Standing::Compliant => lang.w("reaches its target", "atteint son objectif"),
        Standing::NotCompliant => lang.w("below its target", "sous son objectif"),
        Standing::NoTarget => lang.w("no target", "sans objectif"),
        Standing::NoResult => lang.w("no result", "aucun résultat"),
        Standing::NoTestRun => lang.w("no test run", "aucun test effectué"),
        Standing::NoValidTest => lang.w("no valid test", "aucun test valide"),
        Standing::InsufficientData => lang.w("insufficient data", "données insuffisantes"),
    }
}

/// Whether `t` is midnight in `tz`.
fn midnight(t: DateTime<Utc>, tz: Tz) -> bool {
    let l = t.with_timezone(&tz);
    l.hour() == 0 && l.minute() == 0 && l.second() == 0 && l.nanosecond() == 0
}

/// The period in the sites' local time: whole days when it is days.
fn period(report: &Report, tz: Tz, lang: Lang) -> String {
    let h = &report.header;
    if midnight(h.from, tz) && midnight(h.to, tz) {
        let last = h.to - chrono::Duration::nanoseconds(1);
        format!(
            "{} {} {} {} {} ({})",
            lang.w("from", "du"),
            lang.date(h.from, tz),
            lang.w("to", "au"),
            lang.date(last, tz),
            lang.w("inclusive", "inclus"),
            esc(tz.name())
        )
    } else {
        format!(
            "{} {} {} {} {} ({})",
            lang.w("from", "du"),
            lang.datetime(h.from, tz),
            lang.w("to", "au"),
            lang.datetime(h.to, tz),
            lang.w("excluded", "exclu"),
            esc(tz.name())
        )
    }
}

/// The report's identity: scope, period, peak hours, versions, issuer, key, checkpoint.
fn head(report: &Report, tz: Tz, lang: Lang) -> String {
    let mut s = String::from("<dl class=\"head\">");
    for (k, v) in what(report, tz, lang)
        .into_iter()
        .chain(provenance(report, tz, lang))
    {
        let _ = write!(s, "<dt>{k}</dt><dd>{v}</dd>");
    }
    s.push_str("</dl>");
    s
}

/// What the report covers: scope, period, peak hours, minimum sample.
fn what(report: &Report, tz: Tz, lang: Lang) -> Vec<(&'static str, String)> {
    let h = &report.header;
    let scope = match (&h.quartier, &h.building) {
        (Some(q), Some(b)) => format!(
            "{} {q}, {} {b}",
            lang.w("quartier", "quartier"),
            lang.w("building", "immeuble")
        ),
        (Some(q), None) => format!("{} {q}", lang.w("quartier", "quartier")),
        (None, Some(b)) => format!("{} {b}", lang.w("building", "immeuble")),
        (None, None) => lang.w("all quartiers", "tous les quartiers").into(),
    };
    let ms = h.min_sample;
    let rows = [
        (lang.w("Scope", "Périmètre"), esc(&scope)),
        (lang.w("Period", "Période"), period(report, tz, lang)),
        (
            lang.w("Peak hours", "Heures de pointe"),
            lang.w(
                "19:00–23:00 local time, Monday to Friday",
                "19 h – 23 h heure locale, du lundi au vendredi",
            )
            .to_string(),
        ),
        (
            lang.w("Minimum sample", "Échantillon minimal"),
            format!(
                "{} {} {} {}, {} {} {} {}",
                ms.tests,
                lang.w("scheduled valid tests on", "tests programmés valides sur"),
                ms.days,
                lang.w("days", "jours"),
                ms.peak_tests,
                lang.w("of them at peak on", "dont en heure de pointe sur"),
                ms.peak_days,
                lang.w("weeknights", "soirs de semaine"),
            ),
        ),
    ];
    rows.into()
}

/// Where it comes from: methodology, issuer, maker, signing key, log checkpoint.
fn provenance(report: &Report, tz: Tz, lang: Lang) -> Vec<(&'static str, String)> {
    let h = &report.header;
    let rows = [
        (
            lang.w("Methodology", "Méthodologie"),
            format!(
                "{} {} ({} {})",
                lang.w("version", "version"),
                esc(&h.methodology_version),
                lang.w("report format", "format de rapport"),
                h.report_format
            ),
        ),
        (
            lang.w("Issued by", "Émis par"),
            esc(h.issuer.as_deref().unwrap_or(lang.w(
                "(no issuer configured: [report] issuer)",
                "(aucun émetteur configuré : [report] issuer)",
            ))),
        ),
        (
            lang.w("Generated", "Produit le"),
            format!(
                "{} {} {}",
                lang.datetime(h.generated_at, tz),
                lang.w("by", "par"),
                esc(&h.generator)
            ),
        ),
        (
            lang.w("Signing key", "Clé de signature"),
            h.report_key_id
                .as_deref()
                .map(esc)
                .unwrap_or_else(|| "—".into()),
        ),
        (
            lang.w("Log checkpoint", "Point de contrôle du journal"),
            h.checkpoint.as_deref().map(esc).unwrap_or_else(|| {
                lang.w(
                    "none: this collector keeps no transparency log yet",
                    "aucun : ce collecteur ne tient pas encore de journal de transparence",
                )
                .into()
            }),
        ),
    ];
    rows.into()
}

/// The whole page.
pub fn html(report: &Report, lang: Lang) -> String {
    let tz: Tz = report.header.time_zone.parse().unwrap_or(chrono_tz::UTC);
    let title = lang.w(
        "Broadband compliance report",
        "Rapport de conformité du haut débit",
    );
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html><html lang=\"{code}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>sonde — {title} — {period}</title><style>{STYLE}</style></head><body>\
         <h1>{title}</h1>{head}",
        code = lang.code(),
        period = period(report, tz, lang),
        head = head(report, tz, lang),
    );
    s.push_str(&summary(report, tz, lang));
    let _ = write!(
        s,
        "<h2>{}</h2><p class=\"meta\">{}</p>",
        lang.w("Download per building access", "Débit descendant par accès d'immeuble"),
        lang.w(
            "Bar: P10 to P90 of the valid tests' IP-layer download; thick mark: median; dashed: target. Green: reaches its target; red: below it; grey: not judged.",
            "Barre : P10 à P90 du débit descendant IP des tests valides ; trait épais : médiane ; pointillés : objectif. Vert : atteint son objectif ; rouge : en dessous ; gris : non jugé."
        )
    );
    s.push_str(&download_charts(&report.accesses, lang));
    let _ = write!(
        s,
        "<h2>{}</h2>",
        lang.w("Compliance per quartier", "Conformité par quartier")
    );
    s.push_str(&compliance_chart(&report.quartiers, lang));
    let _ = write!(s, "<h2>{}</h2>", lang.w("Quartiers", "Quartiers"));
    s.push_str(&rollup_table(&report.quartiers, lang));
    let _ = write!(
        s,
        "<h2>{}</h2>",
        lang.w("Whole scope", "Ensemble du périmètre")
    );
    s.push_str(&rollup_table(&report.total, lang));
    let _ = write!(
        s,
        "<h2>{}</h2>",
        lang.w("Building accesses", "Accès des immeubles")
    );
    s.push_str(&access_table(&report.accesses, lang));
    s.push_str(&sub_periods(&report.accesses, tz, lang));
    s.push_str(&definitions(lang));
    s.push_str(&annex(lang));
    s.push_str("</body></html>\n");
    s
}

/// The headline of one access kind: every access counted, by standing.
fn kind_card(s: &mut String, r: &Rollup, lang: Lang) {
    let st = &r.standings;
    let nd_kinds = [
        Standing::InsufficientData,
        Standing::NoValidTest,
        Standing::NoTestRun,
        Standing::NoResult,
    ];
    let why: Vec<String> = nd_kinds
        .into_iter()
        .filter(|x| st.count(*x) > 0)
        .map(|x| format!("{} {}", st.count(x), standing_label(x, lang)))
        .collect();
    let nd: u64 = nd_kinds.into_iter().map(|x| st.count(x)).sum();
    let c = &r.coverage;
    let _ = write!(
        s,
        "<div class=\"card\"><div>{kind}</div><b>{compliant} {of} {n}</b> {reach}, {below} {below_w}, \
         {nd} {nd_w}{why}, {nt} {nt_w}{semi}{in_w} {b} {b_w}<br>\
         {met} {met_w} · {ratio_w} {ratio}<br>\
         {run} {of} {scheduled} {run_w} ({manual} {manual_w}), {valid} {valid_w}, {covered} {covered_w}</div>",
        kind = lang.kind(&r.kind),
        compliant = st.count(Standing::Compliant),
        of = lang.w("of", "sur"),
        n = r.accesses,
        reach = lang.w("accesses reach their target", "accès atteignent leur objectif"),
        below = st.count(Standing::NotCompliant),
        below_w = lang.w("below it", "en dessous"),
        nd_w = lang.w("not demonstrated", "non démontrés"),
        why = if why.is_empty() { String::new() } else { format!(" ({})", why.join(", ")) },
        nt = st.count(Standing::NoTarget),
        nt_w = lang.w("without a target", "sans objectif"),
        semi = lang.w("; ", "\u{202f}; "),
        in_w = lang.w("in", "dans"),
        b = r.buildings,
        b_w = if r.buildings == 1 { lang.w("building", "immeuble") } else { lang.w("buildings", "immeubles") },
        met = lang.pct(r.target_met_ratio),
        met_w = lang.w("of valid tests meet it", "des tests valides l'atteignent"),
        ratio_w = lang.w("median of accesses", "médiane des accès"),
        ratio = lang.ratio(r.download_median_ratio.median),
        run = lang.count(c.run),
        scheduled = lang.count(c.scheduled),
        run_w = lang.w("scheduled tests run", "tests programmés effectués"),
        manual = lang.count(c.manual),
        manual_w = lang.w("manual probes", "mesures manuelles"),
        valid = lang.count(c.valid),
        valid_w = lang.w("valid", "valides"),
        covered = lang.pct(c.time_covered_ratio),
        covered_w = lang.w("of the time covered", "du temps couvert"),
    );
}

/// The summary: no data said as such, a card per kind, what the data held.
fn summary(report: &Report, tz: Tz, lang: Lang) -> String {
    let mut s = format!("<h2>{}</h2>", lang.w("Summary", "Synthèse"));
    if report.data.no_data {
        let _ = write!(
            s,
            "<p class=\"nodata\"><b>{}</b> {}",
            lang.w("No data.", "Aucune donnée."),
            lang.w(
                "No result of this scope was stored for this period.",
                "Aucun résultat de ce périmètre n'a été enregistré pour cette période."
            )
        );
        let scheduled: u64 = report.total.iter().map(|r| r.coverage.scheduled).sum();
        if scheduled > 0 {
            let _ = write!(
                s,
                " {} {} {}",
                lang.w("The schedules called for", "Les programmes prévoyaient"),
                lang.count(scheduled),
                lang.w(
                    "tests: none reached the collector.",
                    "tests : aucun n'a atteint le collecteur."
                )
            );
        }
        s.push_str("</p>");
    }
    s.push_str("<div class=\"cards\">");
    for r in &report.total {
        kind_card(&mut s, r, lang);
    }
    s.push_str("</div>");
    let d = &report.data;
    let _ = write!(
        s,
        "<p class=\"meta\">{} {}{}; {} {}.</p>",
        lang.count(d.results),
        lang.w("results", "résultats"),
        match (d.first_result, d.last_result) {
            (Some(a), Some(b)) => format!(
                ", {} {} {} {}",
                lang.w("from", "du"),
                lang.datetime(a, tz),
                lang.w("to", "au"),
                lang.datetime(b, tz)
            ),
            _ => String::new(),
        },
        lang.w("agent versions", "versions d'agent"),
        if d.agent_versions.is_empty() {
            lang.w("none", "aucune").to_string()
        } else {
            esc(&d.agent_versions.join(", "))
        }
    );
    s
}

fn arcep_cell(t: Option<Thresholds>, lang: Lang) -> String {
    match t {
        None => "—".into(),
        Some(t) if t.tests == 0 => lang
            .w("no single-connection test", "aucun test à une connexion")
            .into(),
        Some(t) => format!(
            "{} / {} / {} ({} {})",
            lang.pct(t.mbps_3),
            lang.pct(t.mbps_8),
            lang.pct(t.mbps_30),
            lang.count(t.tests),
            lang.w("tests", "tests")
        ),
    }
}

fn rollup_table(rows: &[Rollup], lang: Lang) -> String {
    let heads = [
        lang.w("quartier", "quartier"),
        lang.w("access", "accès"),
        lang.w("buildings", "immeubles"),
        lang.w("accesses", "accès"),
        lang.w(
            "scheduled / run (manual) / valid",
            "programmés / effectués (manuels) / valides",
        ),
        lang.w("time covered", "temps couvert"),
        lang.w(
            "download ÷ target, median of accesses (P10–P90)",
            "débit ÷ objectif, médiane des accès (P10–P90)",
        ),
        lang.w("peak ÷ target", "pointe ÷ objectif"),
        lang.w("80/80 ÷ target", "80/80 ÷ objectif"),
        lang.w(
            "download median of accesses",
            "médiane des débits des accès",
        ),
        lang.w("tests meeting target", "tests atteignant l'objectif"),
        lang.w(
            "accesses compliant (of judged)",
            "accès conformes (parmi les jugés)",
        ),
        lang.w("3 / 8 / 30 Mb/s", "3 / 8 / 30 Mbit/s"),
        lang.w("idle / loaded latency", "latence à vide / en charge"),
        lang.w("loss", "pertes"),
    ];
    let mut s = table_head(&heads, 2);
    for r in rows {
        let c = &r.coverage;
        let q = r
            .quartier
            .as_deref()
            .map(esc)
            .unwrap_or_else(|| lang.w("all", "tous").into());
        let cells = [
            q,
            lang.kind(&r.kind),
            lang.count(r.buildings),
            lang.count(r.accesses),
            format!(
                "{} / {} ({}) / {}",
                lang.count(c.scheduled),
                lang.count(c.run),
                lang.count(c.manual),
                lang.count(c.valid)
            ),
            lang.pct(c.time_covered_ratio),
            match r.download_median_ratio.median {
                None => "—".into(),
                m => format!(
                    "{} ({}–{})",
                    lang.ratio(m),
                    lang.ratio(r.download_median_ratio.p10),
                    lang.ratio(r.download_median_ratio.p90)
                ),
            },
            lang.ratio(r.peak_download_ratio_median),
            lang.ratio(r.consistent_80_80_ratio),
            lang.rate(r.download_median_bps.median),
            lang.pct(r.target_met_ratio),
            lang.pct(r.compliant_ratio),
            arcep_cell(r.arcep_thresholds, lang),
            format!(
                "{} / {}",
                lang.ms(r.idle_latency_median_s),
                lang.ms(r.loaded_latency_median_s)
            ),
            lang.pct(r.loss_ratio),
        ];
        table_row(&mut s, &cells, 2);
    }
    s.push_str("</tbody></table></div>");
    s.push_str(&dash_legend(lang));
    s
}

/// A table's head; the first `left` columns are text.
fn table_head(heads: &[&str], left: usize) -> String {
    let mut s = String::from("<div class=\"wide\"><table><thead><tr>");
    for (i, h) in heads.iter().enumerate() {
        let class = if i < left { " class=\"l\"" } else { "" };
        let _ = write!(s, "<th{class}>{h}</th>");
    }
    s.push_str("</tr></thead><tbody>");
    s
}

/// A row of already escaped cells; the first `left` are text.
fn table_row(s: &mut String, cells: &[String], left: usize) {
    s.push_str("<tr>");
    for (i, c) in cells.iter().enumerate() {
        let class = if i < left { " class=\"l\"" } else { "" };
        let _ = write!(s, "<td{class}>{c}</td>");
    }
    s.push_str("</tr>");
}

/// A verdict as the tables show it: yes, no, or why there is none (`standing`).
fn verdict_cell(standing: Standing, lang: Lang) -> String {
    match standing {
        Standing::Compliant => format!("<span class=\"ok\">{}</span>", lang.w("yes", "oui")),
        Standing::NotCompliant => format!("<span class=\"ko\">{}</span>", lang.w("no", "non")),
        other => format!("<span class=\"nd\">{}</span>", standing_label(other, lang)),
    }
}

/// A column of the access table: its head, and its cell for an access.
struct Column {
    head: &'static str,
    cell: Box<dyn Fn(&AccessReport) -> String>,
}

fn column(head: &'static str, cell: impl Fn(&AccessReport) -> String + 'static) -> Column {
    Column {
        head,
        cell: Box::new(cell),
    }
}

/// The access table's columns, in order: the optional ones (RFC 9097 capacity,
/// responsiveness) only when some access has such tests.
fn access_columns(rows: &[AccessReport], lang: Lang) -> Vec<Column> {
    let any_planned = rows.iter().any(|a| a.coverage.planned);
    let mut columns = coverage_columns(any_planned, lang);
    // The RFC 9097 capacity beside the TCP figures.
    if rows.iter().any(|a| a.capacity_tests > 0) {
        let head = lang.w(
            "IP capacity down / up, RFC 9097 (tests)",
            "capacité IP desc. / mont., RFC 9097 (tests)",
        );
        columns.push(column(head, move |a| capacity_cell(a, lang)));
    }
    columns.extend(verdict_columns(lang));
    // Responsiveness beside the latency.
    if rows
        .iter()
        .any(|a| a.rpm_down_median.is_some() || a.rpm_up_median.is_some())
    {
        let head = lang.w(
            "responsiveness down / up (RPM)",
            "réactivité desc. / mont. (RPM)",
        );
        columns.push(column(head, move |a| rpm_cell(a, lang)));
    }
    columns.extend([
        column(lang.w("loss", "pertes"), move |a| lang.pct(a.loss_ratio)),
        column(lang.w("not valid, why", "non valides, pourquoi"), |a| {
            let why = a.not_valid.summary().replace(';', ", ").replace('=', " ×");
            if why.is_empty() {
                "—".to_string()
            } else {
                esc(&why)
            }
        }),
        column(
            lang.w("pictures: worst, typical", "images : pire, typique"),
            move |a| pictures_cell(a, lang),
        ),
    ]);
    columns
}

/// Which access, what was run of what was called for, and its throughput.
fn coverage_columns(any_planned: bool, lang: Lang) -> Vec<Column> {
    vec![
        column(lang.w("quartier", "quartier"), |a| esc(&a.quartier)),
        column(lang.w("building", "immeuble"), |a| esc(&a.building)),
        column(lang.w("access", "accès"), move |a| {
            format!("{} ({})", esc(&a.access), lang.kind(&a.kind))
        }),
        column(
            lang.w(
                "scheduled / run (manual) / valid",
                "programmés / effectués (manuels) / valides",
            ),
            move |a| {
                let c = &a.coverage;
                let scheduled = if any_planned && !c.planned {
                    format!("{}*", lang.count(c.scheduled))
                } else {
                    lang.count(c.scheduled)
                };
                format!(
                    "{scheduled} / {} ({}) / {}",
                    lang.count(c.run),
                    lang.count(c.manual),
                    lang.count(c.valid)
                )
            },
        ),
        column(lang.w("time covered", "temps couvert"), move |a| {
            lang.pct(a.coverage.time_covered_ratio)
        }),
        column(
            lang.w("download P10 / median / P90", "débit P10 / médiane / P90"),
            move |a| {
                let d = &a.download_bps;
                format!(
                    "{} / {} / {}",
                    lang.rate(d.p10),
                    lang.rate(d.median),
                    lang.rate(d.p90)
                )
            },
        ),
        column(
            lang.w("upload median", "débit montant médian"),
            move |a| lang.rate(a.upload_bps.median),
        ),
    ]
}

/// The target, the figures judged against it, the verdict, and the latency.
fn verdict_columns(lang: Lang) -> Vec<Column> {
    vec![
        column(lang.w("target", "objectif"), move |a| {
            lang.rate(a.target_down_bps)
        }),
        column(
            lang.w("median ÷ target", "médiane ÷ objectif"),
            move |a| lang.ratio(a.download_ratio_median),
        ),
        column(lang.w("peak median", "médiane en pointe"), move |a| {
            lang.rate(a.peak_download_median_bps)
        }),
        column(lang.w("80/80", "80/80"), move |a| {
            format!(
                "{} ({})",
                lang.rate(a.consistent_80_80_bps),
                lang.ratio(a.consistent_80_80_ratio)
            )
        }),
        column(
            lang.w("tests meeting target", "tests atteignant l'objectif"),
            move |a| lang.pct(a.target_met_ratio),
        ),
        column(lang.w("reaches target", "atteint l'objectif"), move |a| {
            verdict_cell(a.standing, lang)
        }),
        column(lang.w("3 / 8 / 30 Mb/s", "3 / 8 / 30 Mbit/s"), move |a| {
            arcep_cell(a.arcep_thresholds, lang)
        }),
        column(
            lang.w("idle / loaded latency", "latence à vide / en charge"),
            move |a| {
                format!(
                    "{} / {}",
                    lang.ms(a.idle_latency_median_s),
                    lang.ms(a.loaded_latency_median_s)
                )
            },
        ),
    ]
}

fn access_table(rows: &[AccessReport], lang: Lang) -> String {
    let columns = access_columns(rows, lang);
    let heads: Vec<&str> = columns.iter().map(|c| c.head).collect();
    let mut s = table_head(&heads, 3);
    let any_planned = rows.iter().any(|a| a.coverage.planned);
    for a in rows {
        let cells: Vec<String> = columns.iter().map(|c| (c.cell)(a)).collect();
        table_row(&mut s, &cells, 3);
    }
    s.push_str("</tbody></table></div>");
    s.push_str(&dash_legend(lang));
    let _ = write!(
        s,
        "<p class=\"meta\">{}</p>",
        if any_planned {
            lang.w(
                "Scheduled: what the plans in force called for (METHODOLOGY §7.2), except counts marked * (no plan named the access: inferred from the interval of its latest result).",
                "Programmés : ce que prévoyaient les plans en vigueur (METHODOLOGY §7.2), sauf les nombres marqués * (aucun plan ne nommait l'accès : déduit de l'intervalle de son dernier résultat).",
            )
        } else {
            lang.w(
                "Scheduled: inferred from the interval of each access's latest result (no plan named these accesses; METHODOLOGY §7.2).",
                "Programmés : déduit de l'intervalle du dernier résultat de chaque accès (aucun plan ne nommait ces accès ; METHODOLOGY §7.2).",
            )
        }
    );
    s
}

/// An access's median RPM each way (METHODOLOGY §11), "—" without any.
fn rpm_cell(a: &AccessReport, lang: Lang) -> String {
    let rpm = |v: Option<f64>| v.map_or("—".to_string(), |x| lang.count(x.round() as u64));
    format!("{} / {}", rpm(a.rpm_down_median), rpm(a.rpm_up_median))
}

/// Links to the pictures of the access's worst and typical valid tests, as the
/// collector serves them (`/api/v1/results/{id}/plot.svg`, METHODOLOGY §1.7); "—"
/// when their records are gone or there was no valid test.
fn pictures_cell(a: &AccessReport, lang: Lang) -> String {
    let link = |id: &Option<String>, label: &str| {
        id.as_deref().map(|id| {
            format!(
                "<a href=\"/api/v1/results/{}/plot.svg\">{label}</a>",
                esc(id)
            )
        })
    };
    let links: Vec<String> = [
        link(&a.worst_result_id, lang.w("worst", "pire")),
        link(&a.typical_result_id, lang.w("typical", "typique")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if links.is_empty() {
        "—".into()
    } else {
        links.join(" · ")
    }
}

/// An access's median MaxIPLayerCapacity each way and its UDPST tests (METHODOLOGY
/// §10), "—" without any.
fn capacity_cell(a: &AccessReport, lang: Lang) -> String {
    if a.capacity_tests == 0 {
        return "—".into();
    }
    format!(
        "{} / {} ({})",
        lang.rate(a.capacity_down_bps.median),
        lang.rate(a.capacity_up_bps.median),
        lang.count(a.capacity_tests)
    )
}

/// Accesses whose target changed in the period: each stretch and its verdict.
fn sub_periods(rows: &[AccessReport], tz: Tz, lang: Lang) -> String {
    let changed: Vec<&AccessReport> = rows.iter().filter(|a| a.targets.len() > 1).collect();
    if changed.is_empty() {
        return String::new();
    }
    let mut s = format!(
        "<h2>{}</h2><p class=\"meta\">{}</p>",
        lang.w("Targets that changed in the period", "Objectifs modifiés dans la période"),
        lang.w(
            "Each stretch is judged on its own tests against its own target (METHODOLOGY §7.3).",
            "Chaque tranche est jugée sur ses propres tests, contre son propre objectif (METHODOLOGY §7.3)."
        )
    );
    let heads = [
        lang.w("building · access", "immeuble · accès"),
        lang.w("from", "du"),
        lang.w("to", "au"),
        lang.w("target", "objectif"),
        lang.w(
            "valid tests (scheduled, days, at peak, weeknights)",
            "tests valides (programmés, jours, en pointe, soirs)",
        ),
        lang.w("median", "médiane"),
        lang.w("peak median", "médiane en pointe"),
        lang.w("reaches target", "atteint l'objectif"),
    ];
    let mut t = table_head(&heads, 3);
    for a in changed {
        for p in &a.targets {
            let verdict = verdict_cell(
                match p.compliant {
                    Some(true) => Standing::Compliant,
                    Some(false) => Standing::NotCompliant,
                    None if p.target_down_bps.is_none() => Standing::NoTarget,
                    None => Standing::InsufficientData,
                },
                lang,
            );
            let sm = p.sample;
            let cells = [
                esc(&format!("{} · {}", a.building, a.access)),
                lang.datetime(p.from, tz),
                lang.datetime(p.to, tz),
                lang.rate(p.target_down_bps),
                format!(
                    "{} ({}, {}, {}, {})",
                    p.valid, sm.tests, sm.days, sm.peak_tests, sm.peak_days
                ),
                lang.rate(p.download_median_bps),
                lang.rate(p.peak_download_median_bps),
                verdict,
            ];
            table_row(&mut t, &cells, 3);
        }
    }
    t.push_str("</tbody></table></div>");
    s.push_str(&t);
    s
}

/// What a "—" in the tables means: said under each table.
fn dash_legend(lang: Lang) -> String {
    format!(
        "<p class=\"meta\">{}</p>",
        lang.w(
            "—: no figure. A rate, a latency or a share needs at least one valid test (the last column of the access table says why tests were not valid); a target, a ratio to it, a share of tests meeting it and a verdict need a target; a peak figure needs a valid test on a weeknight between 19:00 and 23:00; 3 / 8 / 30 Mb/s is given for 4G accesses only, from their single-connection tests (as ARCEP measures); \"not valid, why\" shows — when every test that ran was valid.",
            "— : pas de valeur. Un débit, une latence ou une part demande au moins un test valide (la dernière colonne du tableau des accès dit pourquoi des tests ne sont pas valides) ; un objectif, un rapport à l'objectif, une part de tests l'atteignant et un verdict demandent un objectif ; une valeur en pointe demande un test valide un soir de semaine entre 19 h et 23 h ; 3 / 8 / 30 Mbit/s ne concerne que les accès 4G, à partir de leurs tests à une seule connexion (comme le mesure l'ARCEP) ; « non valides, pourquoi » montre — quand tous les tests effectués étaient valides."
        )
    )
}

fn definitions(lang: Lang) -> String {
    format!(
        "<h2>{}</h2><p class=\"meta\">{}</p>",
        lang.w("Definitions", "Définitions"),
        lang.w(
            "Every figure is defined in sonde's docs/METHODOLOGY.md (§7 for this report, in the annex) at the version stated above. Rates are IP-layer bit/s; ARCEP's thresholds are compared with the TCP goodput. An access reaches its target when, in each stretch with a target and the minimum sample, both its median and its peak-hour median reach the target less 2 %. Roll-ups weigh each building access the same and compare rates as ratios to each access's target. The raw results behind this report come with its CSV form; its integrity is checked with <code>sonde-collector report verify</code>.",
            "Chaque valeur est définie dans docs/METHODOLOGY.md de sonde (§7 pour ce rapport, en annexe) à la version indiquée plus haut. Les débits sont au niveau IP, en bit/s ; les seuils de l'ARCEP sont comparés au débit utile TCP. Un accès atteint son objectif quand, dans chaque tranche ayant un objectif et l'échantillon minimal, sa médiane et sa médiane en heures de pointe atteignent l'objectif à 2 % près. Les agrégats donnent le même poids à chaque accès d'immeuble et comparent les débits en rapport à l'objectif de chaque accès. Les résultats bruts de ce rapport accompagnent sa forme CSV ; son intégrité se vérifie avec <code>sonde-collector report verify</code>."
        )
    )
}

/// The sections of METHODOLOGY.md from the heading starting `from` to the next one at
/// the same level starting `to`.
fn section<'a>(md: &'a str, from: &str, to: &str) -> &'a str {
    let start = md.find(from).unwrap_or(md.len());
    let rest = &md[start..];
    let end = rest[from.len().min(rest.len())..]
        .find(to)
        .map_or(rest.len(), |i| i + from.len());
    &rest[..end]
}

/// The methodology's verdict, percentile and report sections, as an annex.
fn annex(lang: Lang) -> String {
    let md: String = [
        section(METHODOLOGY, "\n## 3. ", "\n## 4. "),
        section(METHODOLOGY, "\n## 4. ", "\n## 5. "),
        section(METHODOLOGY, "\n## 7. ", "\n## 8. "),
    ]
    .concat();
    let mut body = String::new();
    let parser = pulldown_cmark::Parser::new_ext(&md, pulldown_cmark::Options::ENABLE_TABLES);
    pulldown_cmark::html::push_html(&mut body, parser);
    format!(
        "<section class=\"annex\"><h2>{}</h2><p class=\"meta\">{}</p>{body}</section>",
        lang.w("Annex: methodology", "Annexe : méthodologie"),
        lang.w(
            "Sections 3, 4 and 7 of docs/METHODOLOGY.md, as compiled into the collector that made this report.",
            "Sections 3, 4 et 7 de docs/METHODOLOGY.md, telles que compilées dans le collecteur qui a produit ce rapport (texte de référence en anglais)."
        )
    )
}
