//! Line plots as inline SVG (no scripts, no external resources), for `report.html`.
//!
//! Points with a non-finite x or y break a line (the next finite point starts a new segment);
//! a point alone in its segment is drawn as a dot, so a single-point series is visible. A plot
//! without any finite point renders an empty frame saying "no data". Axis ranges are padded
//! when all values are equal.

use std::fmt::Write as _;

/// One named line.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub name: String,
    /// (x, y); non-finite values are gaps.
    pub points: Vec<(f64, f64)>,
}

/// A highlighted point (e.g. the best eval).
#[derive(Debug, Clone)]
pub struct Marker {
    pub x: f64,
    pub y: f64,
    pub label: String,
}

/// A plot.
#[derive(Debug, Clone, Default)]
pub struct Plot {
    /// Element id (`plot-<id>` on the figure).
    pub id: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub markers: Vec<Marker>,
    /// Labels for x positions (e.g. partition dates), instead of numeric ticks.
    pub x_labels: Vec<(f64, String)>,
}

const W: f64 = 640.0;
const H: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 46.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// XML-escape text.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn finite(p: &(f64, f64)) -> bool {
    p.0.is_finite() && p.1.is_finite()
}

/// The (min, max) of finite values, padded when equal.
fn range(vals: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return None;
    }
    if hi - lo <= f64::EPSILON * hi.abs().max(lo.abs()) {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return Some((lo - pad, hi + pad));
    }
    Some((lo, hi))
}

/// "Nice" tick positions (1, 2, 5 × 10^k steps) covering [lo, hi].
pub fn ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) {
        return vec![lo];
    }
    let raw = span / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// A tick label: short, without trailing zeros.
pub fn tick_label(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if v.abs() >= 1e5 || v.abs() < 1e-3 {
        let e = format!("{v:.2e}");
        return match e.split_once('e') {
            Some((m, x)) => format!("{}e{x}", m.trim_end_matches('0').trim_end_matches('.')),
            None => e,
        };
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// Whether the plot has a finite point.
pub fn has_data(p: &Plot) -> bool {
    p.series.iter().any(|s| s.points.iter().any(finite))
}

/// The plot as an `<svg>` element.
pub fn render(p: &Plot) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="plot-svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="{}">"#,
        esc(&p.title)
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="18" text-anchor="middle" class="title">{}</text>"#,
        W / 2.0,
        esc(&p.title)
    );
    let xr = range(
        p.series
            .iter()
            .flat_map(|s| s.points.iter().filter(|q| finite(q)).map(|q| q.0))
            .chain(p.markers.iter().map(|m| m.x)),
    );
    // y padded by 5 % so lines do not run along the frame.
    let yr = range(
        p.series
            .iter()
            .flat_map(|s| s.points.iter().filter(|q| finite(q)).map(|q| q.1))
            .chain(p.markers.iter().map(|m| m.y)),
    )
    .map(|(a, b)| (a - 0.05 * (b - a), b + 0.05 * (b - a)));
    let (Some((x0, x1)), Some((y0, y1)), true) = (xr, yr, has_data(p)) else {
        let _ = write!(
            s,
            r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="#bbb"/><text x="{}" y="{}" text-anchor="middle" class="empty">no data</text></svg>"##,
            W - LEFT - RIGHT,
            H - TOP - BOTTOM,
            W / 2.0,
            H / 2.0
        );
        return s;
    };
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
    let sy = |y: f64| TOP + ph - (y - y0) / (y1 - y0) * ph;
    // Frame, grid and ticks.
    let _ = write!(
        s,
        r##"<rect class="frame" x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>"##
    );
    for t in ticks(y0, y1, 5) {
        let y = sy(t);
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.2}" y2="{y:.2}" stroke="#eee"/><text x="{}" y="{:.2}" text-anchor="end" class="tick">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            y + 4.0,
            esc(&tick_label(t))
        );
    }
    let xticks: Vec<(f64, String)> = if p.x_labels.is_empty() {
        ticks(x0, x1, 6)
            .into_iter()
            .map(|t| (t, tick_label(t)))
            .collect()
    } else {
        let every = p.x_labels.len().div_ceil(8).max(1);
        p.x_labels.iter().step_by(every).cloned().collect()
    };
    for (t, label) in xticks {
        let x = sx(t);
        if !(LEFT - 0.5..=LEFT + pw + 0.5).contains(&x) {
            continue;
        }
        let _ = write!(
            s,
            r##"<line x1="{x:.2}" x2="{x:.2}" y1="{}" y2="{}" stroke="#888"/><text x="{x:.2}" y="{}" text-anchor="middle" class="tick">{}</text>"##,
            TOP + ph,
            TOP + ph + 4.0,
            TOP + ph + 16.0,
            esc(&label)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle" class="axis">{}</text>"#,
        LEFT + pw / 2.0,
        H - 8.0,
        esc(&p.x_label)
    );
    let _ = write!(
        s,
        r#"<text transform="translate(14 {}) rotate(-90)" text-anchor="middle" class="axis">{}</text>"#,
        TOP + ph / 2.0,
        esc(&p.y_label)
    );
    // Series.
    for (i, ser) in p.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut d = String::new();
        let mut dots: Vec<(f64, f64)> = Vec::new();
        let mut seg: Vec<(f64, f64)> = Vec::new();
        let flush = |seg: &mut Vec<(f64, f64)>, d: &mut String, dots: &mut Vec<(f64, f64)>| {
            match seg.len() {
                0 => {}
                1 => dots.push(seg[0]),
                _ => {
                    for (j, (x, y)) in seg.iter().enumerate() {
                        let _ = write!(
                            d,
                            "{}{:.2},{:.2} ",
                            if j == 0 { "M" } else { "L" },
                            sx(*x),
                            sy(*y)
                        );
                    }
                }
            }
            seg.clear();
        };
        for q in &ser.points {
            if finite(q) {
                seg.push(*q);
            } else {
                flush(&mut seg, &mut d, &mut dots);
            }
        }
        flush(&mut seg, &mut d, &mut dots);
        let _ = write!(s, r#"<g class="series" data-name="{}">"#, esc(&ser.name));
        if !d.is_empty() {
            let _ = write!(
                s,
                r#"<path class="line" d="{}" fill="none" stroke="{color}" stroke-width="1.8"/>"#,
                d.trim_end()
            );
        }
        let many = ser.points.iter().filter(|q| finite(q)).count() > 40;
        let all: Vec<(f64, f64)> = if many {
            dots
        } else {
            ser.points.iter().copied().filter(finite).collect()
        };
        for (x, y) in all {
            let _ = write!(
                s,
                r#"<circle class="dot" cx="{:.2}" cy="{:.2}" r="2.6" fill="{color}"/>"#,
                sx(x),
                sy(y)
            );
        }
        s.push_str("</g>");
        // Legend entry.
        if p.series.len() > 1 {
            let lx = LEFT + 8.0 + (i % 4) as f64 * 140.0;
            let ly = TOP + 12.0 + (i / 4) as f64 * 14.0;
            let _ = write!(
                s,
                r#"<g class="legend"><rect x="{lx}" y="{}" width="10" height="3" fill="{color}"/><text x="{}" y="{}" class="tick">{}</text></g>"#,
                ly - 4.0,
                lx + 14.0,
                ly,
                esc(&ser.name)
            );
        }
    }
    for m in &p.markers {
        if !(m.x.is_finite() && m.y.is_finite()) {
            continue;
        }
        let (x, y) = (sx(m.x), sy(m.y));
        let _ = write!(
            s,
            r##"<g class="marker"><circle cx="{x:.2}" cy="{y:.2}" r="6" fill="none" stroke="#d62728" stroke-width="2"/><text x="{x:.2}" y="{:.2}" text-anchor="middle" class="mark">{}</text></g>"##,
            (y - 10.0).max(TOP + 10.0),
            esc(&m.label)
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ticks() {
        assert_eq!(
            ticks(0.0, 1.0, 5),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        assert_eq!(
            ticks(0.0, 100.0, 5),
            vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
        );
        assert_eq!(tick_label(0.25), "0.25");
        assert_eq!(tick_label(2e-5), "2e-5");
        assert_eq!(tick_label(8.5e-4), "8.5e-4");
    }

    #[test]
    fn gaps_single_points_and_empty() {
        let p = Plot {
            id: "x".into(),
            title: "t <&>".into(),
            series: vec![Series {
                name: "a".into(),
                points: vec![(1.0, 1.0), (2.0, 2.0), (3.0, f64::NAN), (4.0, 3.0)],
            }],
            ..Plot::default()
        };
        let s = render(&p);
        assert!(s.contains("t &lt;&amp;&gt;"));
        // One 2-point segment; the isolated last point is a dot (all points are dots here).
        assert_eq!(s.matches("<path class=\"line\"").count(), 1);
        assert_eq!(s.matches("<circle class=\"dot\"").count(), 3);
        let one = Plot {
            series: vec![Series {
                name: "a".into(),
                points: vec![(5.0, 0.5)],
            }],
            ..Plot::default()
        };
        let s = render(&one);
        assert!(
            !s.contains("class=\"line\"") && s.contains("class=\"dot\""),
            "{s}"
        );
        assert!(!s.contains("NaN") && !s.contains("inf"));
        let empty = Plot {
            series: vec![Series {
                name: "a".into(),
                points: vec![(1.0, f64::NAN)],
            }],
            ..Plot::default()
        };
        assert!(render(&empty).contains("no data"));
    }
}
