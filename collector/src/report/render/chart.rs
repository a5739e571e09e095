//! The report's SVG charts: every access drawn (in pages of [`CHART_PAGE`] rows), axes
//! on round ticks, labels sized to fit.

use super::words::{esc, Lang};
use sonde_method::report::{AccessReport, Rollup};
use std::fmt::Write as _;

/// Accesses per chart page: a long scope gets several charts, none left out.
pub const CHART_PAGE: usize = 30;
/// Width of a label character at the charts' 11 px font, generously (px).
const CHAR_W: f64 = 6.6;

pub use sonde_plot::ticks;

/// The width a label takes (px).
fn label_w(s: &str) -> f64 {
    s.chars().count() as f64 * CHAR_W
}

/// An access's label in the charts.
fn access_label(a: &AccessReport, lang: Lang) -> String {
    format!(
        "{} · {} · {} ({})",
        a.quartier,
        a.building,
        a.access,
        lang.kind(&a.kind)
    )
}

/// The download charts: one per page of accesses with a figure, each bar from P10 to
/// P90 with the median and the target, all on one round axis.
pub fn download_charts(accesses: &[AccessReport], lang: Lang) -> String {
    let rows: Vec<&AccessReport> = accesses
        .iter()
        .filter(|a| a.download_bps.median.is_some())
        .collect();
    if rows.is_empty() {
        return format!(
            "<p>{}</p>",
            lang.w(
                "No valid download figure in this period.",
                "Aucun débit descendant valide sur cette période."
            )
        );
    }
    let max = rows
        .iter()
        .flat_map(|a| [a.download_bps.p90, a.target_down_bps])
        .flatten()
        .fold(0.0f64, f64::max);
    let axis = ticks(max, 5);
    let left = rows
        .iter()
        .map(|a| label_w(&access_label(a, lang)))
        .fold(120.0f64, f64::max)
        + 12.0;
    let pages = rows.chunks(CHART_PAGE).count();
    let mut s = String::new();
    for (i, page) in rows.chunks(CHART_PAGE).enumerate() {
        if pages > 1 {
            let _ = write!(
                s,
                "<p class=\"meta\">{} {}–{} {} {}</p>",
                lang.w("Accesses", "Accès"),
                i * CHART_PAGE + 1,
                i * CHART_PAGE + page.len(),
                lang.w("of", "sur"),
                rows.len()
            );
        }
        s.push_str(&download_page(page, &axis, left, lang));
    }
    let without = accesses.len() - rows.len();
    if without > 0 {
        let _ = write!(
            s,
            "<p class=\"meta\">{} {}</p>",
            lang.count(without as u64),
            match (lang, without) {
                (Lang::En, 1) => "access has no valid download, so no bar; the table says why.",
                (Lang::En, _) => "accesses have no valid download, so no bar; the table says why.",
                (Lang::Fr, 1) => "accès n'a aucun débit descendant valide, donc pas de barre ; le tableau dit pourquoi.",
                (Lang::Fr, _) => "accès n'ont aucun débit descendant valide, donc pas de barre ; le tableau dit pourquoi.",
            }
        );
    }
    s
}

fn download_page(rows: &[&AccessReport], axis: &[f64], left: f64, lang: Lang) -> String {
    let max = axis.last().copied().unwrap_or(1.0);
    let last_label = lang.rate(Some(max));
    let (width, row_h) = (600.0, 22.0);
    let right = label_w(&last_label) / 2.0 + 10.0;
    let height = 44.0 + row_h * rows.len() as f64;
    let x = |v: f64| left + width * v / max;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart\" role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {w:.0} {height:.0}\" width=\"{w:.0}\" xmlns=\"http://www.w3.org/2000/svg\">",
        lang.w("Download per access", "Débit descendant par accès"),
        w = left + width + right
    );
    for v in axis {
        let _ = write!(
            s,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"10\" y2=\"{1:.1}\" stroke=\"#ddd\"/><text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3}</text>",
            x(*v),
            height - 24.0,
            height - 8.0,
            esc(&lang.rate(Some(*v)))
        );
    }
    for (i, a) in rows.iter().enumerate() {
        bar(&mut s, a, 18.0 + row_h * i as f64, left, &x, lang);
    }
    s.push_str("</svg>");
    s
}

/// One access's bar: P10 to P90, the median, the target.
fn bar(s: &mut String, a: &AccessReport, y: f64, left: f64, x: &dyn Fn(f64) -> f64, lang: Lang) {
    let d = a.download_bps;
    let (p10, med, p90) = (
        d.p10.unwrap_or(0.0),
        d.median.unwrap_or(0.0),
        d.p90.unwrap_or(0.0),
    );
    let colour = match a.compliant {
        Some(true) => "#1a7f37",
        Some(false) => "#cf222e",
        None => "#57606a",
    };
    let _ = write!(
        s,
        "<text x=\"{lx:.1}\" y=\"{ty:.1}\" text-anchor=\"end\">{label}</text>\
         <rect x=\"{x10:.1}\" y=\"{ry:.1}\" width=\"{bw:.1}\" height=\"10\" fill=\"{colour}\" fill-opacity=\"0.35\"/>\
         <line x1=\"{xm:.1}\" x2=\"{xm:.1}\" y1=\"{ry:.1}\" y2=\"{rb:.1}\" stroke=\"{colour}\" stroke-width=\"3\"/>",
        lx = left - 6.0,
        ty = y + 9.0,
        label = esc(&access_label(a, lang)),
        x10 = x(p10),
        ry = y,
        bw = (x(p90) - x(p10)).max(1.0),
        xm = x(med),
        rb = y + 10.0,
    );
    if let Some(t) = a.target_down_bps {
        let _ = write!(
            s,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{2:.1}\" stroke=\"#000\" stroke-dasharray=\"3,2\"/>",
            x(t),
            y - 3.0,
            y + 13.0
        );
    }
}

/// Per quartier and kind: the share of tests meeting the target and of judged
/// accesses reaching it, on a 0–100 % axis.
pub fn compliance_chart(quartiers: &[Rollup], lang: Lang) -> String {
    let rows: Vec<&Rollup> = quartiers
        .iter()
        .filter(|r| r.target_met_ratio.is_some() || r.compliant_ratio.is_some())
        .collect();
    if rows.is_empty() {
        return format!(
            "<p>{}</p>",
            lang.w(
                "No access with a target has valid tests in this period.",
                "Aucun accès avec un objectif n'a de test valide sur cette période."
            )
        );
    }
    let label = |r: &Rollup| {
        format!(
            "{} · {}",
            r.quartier.as_deref().unwrap_or(lang.w("all", "tous")),
            lang.kind(&r.kind)
        )
    };
    let left = rows
        .iter()
        .map(|r| label_w(&label(r)))
        .fold(100.0f64, f64::max)
        + 12.0;
    let (width, row_h) = (500.0, 30.0);
    let height = 44.0 + row_h * rows.len() as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart\" role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {w:.0} {height:.0}\" width=\"{w:.0}\" xmlns=\"http://www.w3.org/2000/svg\">",
        lang.w("Compliance per quartier", "Conformité par quartier"),
        w = left + width + 70.0
    );
    for i in 0..=4 {
        let xv = left + width * i as f64 / 4.0;
        let _ = write!(
            s,
            "<line x1=\"{xv:.1}\" x2=\"{xv:.1}\" y1=\"10\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{xv:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            height - 24.0,
            height - 8.0,
            esc(&lang.ratio(Some(i as f64 / 4.0)))
        );
    }
    for (i, r) in rows.iter().enumerate() {
        let y = 14.0 + row_h * i as f64;
        compliance_row(&mut s, r, &label(r), y, (left, width), lang);
    }
    let _ = write!(
        s,
        "</svg><p class=\"meta\"><span style=\"color:#0969da\">■</span> {} &nbsp; <span style=\"color:#8250df\">■</span> {}</p>",
        lang.w("tests meeting the target", "tests atteignant l'objectif"),
        lang.w(
            "accesses reaching it (of those judged)",
            "accès qui l'atteignent (parmi ceux jugés)"
        )
    );
    s
}

/// One roll-up's two bars at `y`: tests meeting the target, accesses reaching it;
/// the axis starts at `left` and is `width` long.
fn compliance_row(s: &mut String, r: &Rollup, label: &str, y: f64, axis: (f64, f64), lang: Lang) {
    let (left, width) = axis;
    let met = r.target_met_ratio.unwrap_or(0.0);
    let comp = r.compliant_ratio.unwrap_or(0.0);
    let _ = write!(
        s,
        "<text x=\"{lx:.1}\" y=\"{ty:.1}\" text-anchor=\"end\">{label}</text>\
             <rect x=\"{left:.1}\" y=\"{y:.1}\" width=\"{w1:.1}\" height=\"10\" fill=\"#0969da\"/>\
             <text x=\"{t1:.1}\" y=\"{ty1:.1}\">{p1}</text>\
             <rect x=\"{left:.1}\" y=\"{y2:.1}\" width=\"{w2:.1}\" height=\"10\" fill=\"#8250df\"/>\
             <text x=\"{t2:.1}\" y=\"{ty2:.1}\">{p2}</text>",
        lx = left - 6.0,
        ty = y + 15.0,
        label = esc(label),
        w1 = width * met,
        t1 = left + width * met + 4.0,
        ty1 = y + 9.0,
        p1 = esc(&lang.pct(r.target_met_ratio)),
        y2 = y + 12.0,
        w2 = width * comp,
        t2 = left + width * comp + 4.0,
        ty2 = y + 21.0,
        p2 = esc(&lang.pct(r.compliant_ratio)),
    );
}
