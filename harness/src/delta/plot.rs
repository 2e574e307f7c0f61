//! The distributions behind the delta's table as an SVG: one strip per figure and session count,
//! every run of the base and of the patched kernel as a dot, relative to the base's median, and
//! the interval of the change as a bar.

use super::DeltaReport;
use crate::measure::metric;

const BASE: &str = "#1f77b4";
const PATCHED: &str = "#d62728";

pub fn svg(d: &DeltaReport) -> String {
    let (w, strip, left, right) = (760.0, 34.0, 230.0, 20.0);
    let top = 40.0;
    let h = top + strip * d.rows.len() as f64 + 40.0;
    // Relative deviations of every dot, to fix a common scale.
    let mut strips = Vec::new();
    for r in &d.rows {
        let Some(c) = &r.change else { continue };
        let Ok(m) = metric::find(&r.metric) else {
            continue;
        };
        let scale = c.base_median.abs();
        if scale == 0.0 || !scale.is_finite() {
            continue;
        }
        let rel = |label: &str| {
            metric::values(m, &d.samples, label, r.sessions)
                .into_iter()
                .map(|v| (v - c.base_median) / scale * 100.0)
                .collect::<Vec<_>>()
        };
        let interval = c.relative_interval.map(|(a, b)| (a * 100.0, b * 100.0));
        strips.push((r, rel("base"), rel("patched"), interval));
    }
    let extent = strips
        .iter()
        .flat_map(|(_, b, p, _)| b.iter().chain(p))
        .fold(1.0_f64, |a, v| a.max(v.abs()))
        * 1.1;
    let x = |pct: f64| {
        left + (pct.clamp(-extent, extent) + extent) / (2.0 * extent) * (w - left - right)
    };
    let mut s = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">
<text x="10" y="18" font-size="13">{} against {}: each run, % from the base's median</text>
<text x="10" y="32" fill="{BASE}">base</text><text x="45" y="32" fill="{PATCHED}">patched</text>
<line x1="{zx}" y1="{top}" x2="{zx}" y2="{bottom}" stroke="#999"/>
"##,
        esc(&format!("{} ({})", d.patched.spec, d.patched.variant)),
        esc(&format!("{} ({})", d.base.spec, d.base.variant)),
        zx = x(0.0),
        bottom = h - 30.0
    );
    for (i, (r, b, p, interval)) in strips.iter().enumerate() {
        let y = top + strip * i as f64 + strip / 2.0;
        s.push_str(&format!(
            "<text x=\"10\" y=\"{:.1}\">{} {}</text>\n",
            y + 4.0,
            esc(&r.metric),
            r.at()
        ));
        if let Some((lo, hi)) = interval {
            s.push_str(&format!(
                "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{PATCHED}\" stroke-width=\"6\" stroke-opacity=\"0.25\"/>\n",
                x(*lo),
                x(*hi)
            ));
        }
        for (vals, color, dy) in [(b, BASE, -5.0), (p, PATCHED, 5.0)] {
            for v in vals {
                s.push_str(&format!(
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{color}\" fill-opacity=\"0.7\"/>\n",
                    x(*v),
                    y + dy
                ));
            }
        }
    }
    for t in [-extent, -extent / 2.0, 0.0, extent / 2.0, extent] {
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{t:+.0}%</text>\n",
            x(t),
            h - 14.0
        ));
    }
    s.push_str("</svg>\n");
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
