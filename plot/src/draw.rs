//! SVG primitives on a frame: a panel's pixel box and its data ranges.

use std::fmt::Write as _;

/// A panel: its box in px and the data it spans (time from 0, values from 0).
pub(crate) struct Frame {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    t_max: f64,
    v_ticks: Vec<f64>,
}

impl Frame {
    /// A panel at `(x, y, w, h)` spanning 0..`t_max` seconds and 0..`v_max` (rounded
    /// up to a tick).
    pub(crate) fn new((x, y, w, h): (f64, f64, f64, f64), t_max: f64, v_max: f64) -> Frame {
        Frame {
            x,
            y,
            w,
            h,
            t_max: if t_max > 0.0 { t_max } else { 1.0 },
            v_ticks: ticks(v_max, 5),
        }
    }

    fn v_max(&self) -> f64 {
        self.v_ticks.last().copied().unwrap_or(1.0)
    }

    /// The px abscissa of time `t`, clamped to the panel.
    fn px(&self, t: f64) -> f64 {
        self.x + (t / self.t_max).clamp(0.0, 1.0) * self.w
    }

    /// The px ordinate of value `v`, clamped to the panel.
    fn py(&self, v: f64) -> f64 {
        self.y + self.h - (v / self.v_max()).clamp(0.0, 1.0) * self.h
    }
}

/// Where a horizontal line's label goes.
#[derive(Clone, Copy)]
pub(crate) enum Side {
    Left,
    Right,
}

/// An SVG document being written.
pub(crate) struct Svg {
    out: String,
}

impl Svg {
    pub(crate) fn new(w: f64, h: f64) -> Svg {
        let mut out = String::new();
        let _ = write!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{h:.0}\" \
             viewBox=\"0 0 {w:.0} {h:.0}\" font-family=\"sans-serif\">\
             <rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>"
        );
        Svg { out }
    }

    pub(crate) fn finish(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }

    /// Text at `(x, y)`, anchored `start`, `middle` or `end`.
    pub(crate) fn text(&mut self, x: f64, y: f64, anchor: &str, size: f64, s: &str) {
        let _ = write!(
            self.out,
            "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"{anchor}\" font-size=\"{size}\">{}</text>",
            esc(s)
        );
    }

    /// The panel's frame, the value axis on round ticks labelled by `label`, and the
    /// time axis in seconds.
    pub(crate) fn axes(&mut self, f: &Frame, label: fn(f64) -> String, unit: &str) {
        let _ = write!(
            self.out,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" stroke=\"#888\"/>",
            f.x, f.y, f.w, f.h
        );
        for v in f.v_ticks.clone() {
            let y = f.py(v);
            self.line((f.x, y), (f.x + f.w, y), "#ddd", 1.0, None);
            self.text(f.x - 6.0, y + 4.0, "end", 10.0, &label(v));
        }
        for t in ticks(f.t_max, 10) {
            if t > f.t_max + 1e-9 {
                break;
            }
            let x = f.px(t);
            self.line((x, f.y + f.h), (x, f.y + f.h + 4.0), "#888", 1.0, None);
            let t = (t * 1e3).round() / 1e3;
            self.text(x, f.y + f.h + 16.0, "middle", 10.0, &format!("{t} {unit}"));
        }
    }

    fn line(&mut self, a: (f64, f64), b: (f64, f64), colour: &str, width: f64, dash: Option<&str>) {
        let dash = dash
            .map(|d| format!(" stroke-dasharray=\"{d}\""))
            .unwrap_or_default();
        let _ = write!(
            self.out,
            "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{colour}\" stroke-width=\"{width}\"{dash}/>",
            a.0, a.1, b.0, b.1
        );
    }

    /// A band over times `t0..t1`, the panel's height.
    pub(crate) fn rect(&mut self, f: &Frame, (t0, t1): (f64, f64), colour: &str) {
        let (x0, x1) = (f.px(t0), f.px(t1));
        let _ = write!(
            self.out,
            "<rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\"/>",
            f.y,
            (x1 - x0).max(0.0),
            f.h
        );
    }

    /// Bins of width `step` from time 0 as a step line.
    pub(crate) fn steps(
        &mut self,
        f: &Frame,
        step: f64,
        values: impl Iterator<Item = f64>,
        colour: &str,
        width: f64,
    ) {
        let mut d = String::new();
        for (i, v) in values.enumerate() {
            let (x0, x1, y) = (f.px(i as f64 * step), f.px((i + 1) as f64 * step), f.py(v));
            let _ = write!(
                d,
                "{}{x0:.1},{y:.1} L{x1:.1},{y:.1} ",
                if i == 0 { "M" } else { "L" }
            );
        }
        if !d.is_empty() {
            let _ = write!(
                self.out,
                "<path d=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"{width}\"/>",
                d.trim_end()
            );
        }
    }

    /// A horizontal line at value `v`, labelled above it at the right end (`Side::Right`)
    /// or below it at the left (`Side::Left`), so two close lines keep legible labels.
    pub(crate) fn hline(&mut self, f: &Frame, v: f64, style: (&str, &str), label: (&str, Side)) {
        let (colour, dash) = style;
        let y = f.py(v);
        self.line((f.x, y), (f.x + f.w, y), colour, 1.5, Some(dash));
        let (x, y, anchor) = match label.1 {
            Side::Right => (f.x + f.w - 4.0, y - 4.0, "end"),
            Side::Left => (f.x + 4.0, y + 12.0, "start"),
        };
        let _ = write!(
            self.out,
            "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"{anchor}\" font-size=\"10\" fill=\"{colour}\">{}</text>",
            esc(label.0)
        );
    }

    /// A labelled vertical line at time `t`.
    pub(crate) fn vline(&mut self, f: &Frame, t: f64, colour: &str, label: &str) {
        let x = f.px(t);
        self.line((x, f.y), (x, f.y + f.h), colour, 1.5, Some("2 2"));
        // In the right half the label goes left of the line, inside the panel.
        if x > f.x + f.w / 2.0 {
            self.text(x - 4.0, f.y + 12.0, "end", 10.0, label);
        } else {
            self.text(x + 4.0, f.y + 12.0, "start", 10.0, label);
        }
    }

    /// A dot per `[time, value]`.
    pub(crate) fn dots(&mut self, f: &Frame, points: &[[f64; 2]], colour: &str) {
        for [t, v] in points {
            let _ = write!(
                self.out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\" fill=\"{colour}\"/>",
                f.px(*t),
                f.py(*v)
            );
        }
    }

    /// A cross at the top of the panel at each time (a lost probe).
    pub(crate) fn crosses(&mut self, f: &Frame, times: &[f64], colour: &str) {
        for t in times {
            let (x, y) = (f.px(*t), f.y + 6.0);
            self.line((x - 3.0, y - 3.0), (x + 3.0, y + 3.0), colour, 1.5, None);
            self.line((x - 3.0, y + 3.0), (x + 3.0, y - 3.0), colour, 1.5, None);
        }
    }
}

/// Round ticks from 0 covering `max`: steps of 1, 2, 2.5 or 5 × 10ⁿ, about `n` of
/// them; the last tick is at or above `max`.
pub fn ticks(max: f64, n: usize) -> Vec<f64> {
    if !max.is_finite() || max <= 0.0 {
        return vec![0.0, 1.0];
    }
    let raw = max / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let count = (max / step - 1e-9).ceil().max(1.0) as usize;
    (0..=count).map(|i| i as f64 * step).collect()
}

/// Text made safe for XML and HTML, in content and in attributes.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
