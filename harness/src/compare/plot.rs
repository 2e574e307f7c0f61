//! A dependency-free SVG plot of `compare` results: bytes per session and blackout time against
//! the number of sessions (log scale), one line per design.

use super::summary::Point;
use std::collections::BTreeMap;

const COLORS: &[&str] = &["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"];

fn panel(points: &[&Point], x0: f64, title: &str, y: &dyn Fn(&Point) -> f64, unit: &str) -> String {
    let (w, h, pad) = (420.0, 300.0, 50.0);
    let mut series: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for p in points {
        series
            .entry(&p.variant)
            .or_default()
            .push(((p.sessions.max(1) as f64).log10(), y(p)));
    }
    let xs: Vec<f64> = series.values().flatten().map(|p| p.0).collect();
    let ys: Vec<f64> = series
        .values()
        .flatten()
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .collect();
    let (xmin, xmax) = (
        xs.iter().cloned().fold(f64::INFINITY, f64::min),
        xs.iter()
            .cloned()
            .fold(f64::NEG_INFINITY, f64::max)
            .max(1.0),
    );
    let ymax = ys.iter().cloned().fold(0.0, f64::max).max(1.0) * 1.1;
    let sx = |x: f64| x0 + pad + (x - xmin) / (xmax - xmin).max(1e-9) * (w - 2.0 * pad);
    let sy = |v: f64| h - pad - v / ymax * (h - 2.0 * pad);
    let mut s = format!(
        "<text x='{}' y='20' font-size='14' text-anchor='middle'>{title}</text>\n",
        x0 + w / 2.0
    );
    s += &format!(
        "<line x1='{}' y1='{}' x2='{}' y2='{}' stroke='black'/>\n",
        sx(xmin),
        sy(0.0),
        sx(xmax),
        sy(0.0)
    );
    s += &format!(
        "<line x1='{}' y1='{}' x2='{}' y2='{}' stroke='black'/>\n",
        sx(xmin),
        sy(0.0),
        sx(xmin),
        sy(ymax)
    );
    for k in 0..=4 {
        let v = ymax * k as f64 / 4.0;
        s += &format!(
            "<text x='{}' y='{}' font-size='10' text-anchor='end'>{v:.0}</text>\n",
            sx(xmin) - 4.0,
            sy(v) + 3.0
        );
    }
    let mut e = xmin.floor() as i32;
    while e as f64 <= xmax {
        s += &format!(
            "<text x='{}' y='{}' font-size='10' text-anchor='middle'>{}</text>\n",
            sx(e as f64),
            sy(0.0) + 14.0,
            10u64.pow(e as u32)
        );
        e += 1;
    }
    s += &format!(
        "<text x='{}' y='{}' font-size='11' text-anchor='middle'>sessions (log)</text>\n",
        x0 + w / 2.0,
        h - 10.0
    );
    s += &format!(
        "<text x='{}' y='{}' font-size='11' transform='rotate(-90 {} {})'>{unit}</text>\n",
        x0 + 12.0,
        h / 2.0,
        x0 + 12.0,
        h / 2.0
    );
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let path: Vec<String> = pts
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|(x, v)| format!("{:.1},{:.1}", sx(*x), sy(*v)))
            .collect();
        s += &format!(
            "<polyline fill='none' stroke='{c}' stroke-width='2' points='{}'/>\n",
            path.join(" ")
        );
        for (x, v) in pts.iter().filter(|p| p.1.is_finite()) {
            s += &format!(
                "<circle cx='{:.1}' cy='{:.1}' r='3' fill='{c}'/>\n",
                sx(*x),
                sy(*v)
            );
        }
        s += &format!(
            "<text x='{}' y='{}' font-size='11' fill='{c}'>{name}</text>\n",
            x0 + w - 110.0,
            40.0 + 14.0 * i as f64
        );
    }
    s
}

pub fn svg(points: &[Point]) -> String {
    let mut s = String::from(
        "<svg xmlns='http://www.w3.org/2000/svg' width='860' height='300' font-family='sans-serif'>\n<rect width='100%' height='100%' fill='white'/>\n",
    );
    // Below 100 sessions the slab growth is whole pages shared by whatever else allocated: noise.
    let counted: Vec<&Point> = points.iter().filter(|p| p.sessions >= 100).collect();
    let all: Vec<&Point> = points.iter().collect();
    s += &panel(
        &counted,
        0.0,
        "kernel memory per session (Slab, N >= 100)",
        &|p| p.slab_bytes_per_session,
        "bytes / session",
    );
    s += &panel(
        &all,
        430.0,
        "kexec blackout (host: reboot call to new hello)",
        &|p| p.blackout_host_ms,
        "ms",
    );
    s += "</svg>\n";
    s
}
