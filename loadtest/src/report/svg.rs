//! Line plots as standalone SVG documents, written by hand: a frame, "nice" ticks on both
//! axes with labels, axis titles, one polyline per series and a legend.
//!
//! The plots are small and few (a latency distribution per result, apps synced over time),
//! so a plotting library would bring far more than is used.

use std::fmt::Write as _;

/// Width of the whole image, px.
const WIDTH: f64 = 720.0;
/// Height of the whole image, px.
const HEIGHT: f64 = 420.0;
/// Space left of the plot area (tick labels and the y title), px.
const LEFT: f64 = 80.0;
/// Space right of the plot area, px.
const RIGHT: f64 = 20.0;
/// Space above the plot area (the title), px.
const TOP: f64 = 40.0;
/// Space below the plot area (tick labels and the x title), px.
const BOTTOM: f64 = 60.0;
/// Points drawn per series at most; longer series are thinned evenly (first and last kept).
pub const MAX_POINTS: usize = 2000;
/// Line colours of the series, in order.
const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

/// One line of a plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Shown in the legend.
    pub name: String,
    /// `(x, y)` points in drawing order; non-finite points are left out.
    pub points: Vec<(f64, f64)>,
}

/// A plot of one or more lines over shared axes.
#[derive(Debug, Clone, PartialEq)]
pub struct LinePlot {
    /// The title above the plot.
    pub title: String,
    /// The x axis title (with its unit).
    pub x_label: String,
    /// The y axis title (with its unit).
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// The y axis range when fixed (e.g. `0..1` for a distribution), else from the data.
    pub y_range: Option<(f64, f64)>,
}

/// A scale from data values to pixels, with the ticks to label.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// The smallest value shown.
    pub min: f64,
    /// The largest value shown.
    pub max: f64,
    /// Values at which ticks are drawn, ascending, within `min..=max`.
    pub ticks: Vec<f64>,
}

/// A "nice" step (1, 2 or 5 times a power of ten) that splits `span` into about `target`
/// parts.
pub fn nice_step(span: f64, target: usize) -> f64 {
    if !span.is_finite() || span <= 0.0 {
        return 1.0;
    }
    let rough = span / target.max(1) as f64;
    let pow = 10f64.powf(rough.log10().floor());
    let frac = rough / pow;
    let nice = if frac <= 1.0 {
        1.0
    } else if frac <= 2.0 {
        2.0
    } else if frac <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * pow
}

impl Axis {
    /// An axis covering `lo..=hi`, widened outwards to whole steps, with about five ticks.
    pub fn covering(lo: f64, hi: f64) -> Self {
        let (mut lo, mut hi) = if lo.is_finite() && hi.is_finite() && lo <= hi {
            (lo, hi)
        } else {
            (0.0, 1.0)
        };
        if hi - lo < 1e-12 {
            // One value: show it in the middle of a unit-wide range.
            let pad = if lo.abs() > 1e-12 {
                lo.abs() * 0.5
            } else {
                1.0
            };
            lo -= pad;
            hi += pad;
        }
        let step = nice_step(hi - lo, 5);
        let min = (lo / step).floor() * step;
        let max = (hi / step).ceil() * step;
        let count = ((max - min) / step).round() as usize;
        let ticks = (0..=count).map(|i| min + step * i as f64).collect();
        Self { min, max, ticks }
    }

    /// Where `v` falls between `from` (at `min`) and `to` (at `max`).
    fn map(&self, v: f64, from: f64, to: f64) -> f64 {
        let span = (self.max - self.min).max(1e-12);
        from + (v - self.min) / span * (to - from)
    }
}

/// A tick label: no trailing zeros, at most three decimals.
pub fn tick_label(v: f64) -> String {
    let v = if v.abs() < 1e-9 { 0.0 } else { v };
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// `s` with the characters XML gives meaning to escaped.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// At most `max` of `points`, evenly spread, the first and last always kept.
pub fn thin(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max || max < 2 {
        return points.to_vec();
    }
    let last = points.len() - 1;
    (0..max).map(|i| points[i * last / (max - 1)]).collect()
}

impl LinePlot {
    /// The plot as a standalone SVG document.
    pub fn render(&self) -> String {
        let series: Vec<Series> = self
            .series
            .iter()
            .map(|s| Series {
                name: s.name.clone(),
                points: thin(
                    &s.points
                        .iter()
                        .copied()
                        .filter(|(x, y)| x.is_finite() && y.is_finite())
                        .collect::<Vec<_>>(),
                    MAX_POINTS,
                ),
            })
            .collect();
        let all = series.iter().flat_map(|s| s.points.iter());
        let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in all {
            x_lo = x_lo.min(x);
            x_hi = x_hi.max(x);
            y_lo = y_lo.min(y);
            y_hi = y_hi.max(y);
        }
        if x_lo > x_hi {
            (x_lo, x_hi, y_lo, y_hi) = (0.0, 1.0, 0.0, 1.0);
        }
        let x_axis = Axis::covering(x_lo.min(0.0), x_hi);
        let y_axis = match self.y_range {
            Some((lo, hi)) => Axis::covering(lo, hi),
            None => Axis::covering(y_lo.min(0.0), y_hi),
        };
        let (px0, px1) = (LEFT, WIDTH - RIGHT);
        let (py0, py1) = (HEIGHT - BOTTOM, TOP);

        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            s,
            r##"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
            WIDTH / 2.0,
            escape(&self.title)
        );
        // Grid lines and tick labels.
        for &t in &x_axis.ticks {
            let x = x_axis.map(t, px0, px1);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{py1:.1}" x2="{x:.1}" y2="{py0:.1}" stroke="#e0e0e0"/>"##
            );
            let _ = writeln!(
                s,
                r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                py0 + 18.0,
                tick_label(t)
            );
        }
        for &t in &y_axis.ticks {
            let y = y_axis.map(t, py0, py1);
            let _ = writeln!(
                s,
                r##"<line x1="{px0:.1}" y1="{y:.1}" x2="{px1:.1}" y2="{y:.1}" stroke="#e0e0e0"/>"##
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                px0 - 8.0,
                y + 4.0,
                tick_label(t)
            );
        }
        // The frame and the axis titles.
        let _ = writeln!(
            s,
            r##"<rect x="{px0}" y="{py1}" width="{}" height="{}" fill="none" stroke="#333333"/>"##,
            px1 - px0,
            py0 - py1
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            (px0 + px1) / 2.0,
            HEIGHT - 16.0,
            escape(&self.x_label)
        );
        let (ty_x, ty_y) = (18.0, (py0 + py1) / 2.0);
        let _ = writeln!(
            s,
            r#"<text x="{ty_x}" y="{ty_y:.1}" text-anchor="middle" transform="rotate(-90 {ty_x} {ty_y:.1})">{}</text>"#,
            escape(&self.y_label)
        );
        // The lines, then the legend over them.
        for (i, ser) in series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let mut pts = String::new();
            for &(x, y) in &ser.points {
                let _ = write!(
                    pts,
                    "{:.1},{:.1} ",
                    x_axis.map(x, px0, px1),
                    y_axis.map(y, py0, py1)
                );
            }
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2"{} points="{}"/>"#,
                dash(i),
                pts.trim_end()
            );
        }
        for (i, ser) in series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let y = TOP + 16.0 + 18.0 * i as f64;
            let x = px0 + 12.0;
            let _ = writeln!(
                s,
                r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{colour}" stroke-width="3"{}/>"#,
                x + 24.0,
                dash(i)
            );
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}">{}</text>"#,
                x + 30.0,
                y + 4.0,
                escape(&ser.name)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

/// The dash pattern of series `i`: the first solid, the others dashed, so lines that
/// coincide stay visible.
fn dash(i: usize) -> &'static str {
    if i == 0 {
        ""
    } else {
        r#" stroke-dasharray="6 4""#
    }
}

/// The empirical distribution of `samples`: `(value, fraction of samples ≤ value)`, as a
/// step line, thinned to about [`MAX_POINTS`] points.
pub fn cdf(samples: &[f64]) -> Vec<(f64, f64)> {
    let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    let mut points = Vec::with_capacity(v.len() * 2);
    for (i, &x) in v.iter().enumerate() {
        points.push((x, i as f64 / n));
        points.push((x, (i + 1) as f64 / n));
    }
    thin(&points, MAX_POINTS)
}
