//! The matrix as a table per scenario, and as an SVG grid.

use super::{Cell, Matrix};

fn axis_label(m: &Matrix, i: usize) -> String {
    let a = &m.kernels[i];
    let version = a
        .source
        .rsplit_once('=')
        .map_or(a.source.as_str(), |(_, v)| v);
    format!("{} ({version})", a.spec)
}

/// Rows `from`, columns `to`; after each table, the details of the cells that did not pass.
pub fn table(m: &Matrix) -> String {
    let n = m.kernels.len();
    let labels: Vec<String> = (0..n).map(|i| axis_label(m, i)).collect();
    let mut s = String::new();
    for g in &m.scenarios {
        let words: Vec<Vec<String>> = g
            .cells
            .iter()
            .map(|r| r.iter().map(Cell::word).collect())
            .collect();
        let first = labels
            .iter()
            .map(|l| l.len() + 5)
            .max()
            .unwrap_or(10)
            .max(g.scenario.len());
        let width = labels
            .iter()
            .map(|l| l.len() + 3)
            .chain(words.iter().flatten().map(String::len))
            .max()
            .unwrap_or(8);
        s.push_str(&format!("{:<first$}", g.scenario));
        for l in &labels {
            s.push_str(&format!("  {:<width$}", format!("to {l}")));
        }
        s = s.trim_end().to_string();
        s.push('\n');
        for (i, row) in words.iter().enumerate() {
            let mut line = format!("{:<first$}", format!("from {}", labels[i]));
            for w in row {
                line.push_str(&format!("  {w:<width$}"));
            }
            s.push_str(line.trim_end());
            s.push('\n');
        }
        for (i, row) in g.cells.iter().enumerate() {
            for (j, c) in row.iter().enumerate() {
                let detail = match c {
                    Cell::Fail { step } => step.clone(),
                    Cell::StateLost { detail } | Cell::Incompatible { detail } => detail.clone(),
                    Cell::Kernel { reason } | Cell::Error { reason } | Cell::Skip { reason } => {
                        reason.clone()
                    }
                    Cell::Pass | Cell::NotApplicable => continue,
                };
                s.push_str(&format!(
                    "  {} -> {}: {}\n",
                    m.kernels[i].spec, m.kernels[j].spec, detail
                ));
            }
        }
        s.push('\n');
    }
    s
}

fn color(c: &Cell) -> &'static str {
    match c {
        Cell::Pass => "#8fd18f",
        Cell::NotApplicable | Cell::Skip { .. } => "#dddddd",
        Cell::StateLost { .. } | Cell::Incompatible { .. } => "#f0a040",
        Cell::Fail { .. } | Cell::Kernel { .. } => "#e06060",
        Cell::Error { .. } => "#b0b0ff",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One grid per scenario, rows `from`, columns `to`, each cell coloured and worded.
pub fn svg(m: &Matrix) -> String {
    let n = m.kernels.len();
    let (cell, label) = (120.0, 190.0);
    let grid_h = 40.0 + cell * 0.5 * n as f64 + 30.0;
    let height = 20.0 + grid_h * m.scenarios.len() as f64;
    let width = label + cell * n as f64 + 20.0;
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' font-family='sans-serif' font-size='11'>\n<rect width='100%' height='100%' fill='white'/>\n"
    );
    for (k, g) in m.scenarios.iter().enumerate() {
        let y0 = 20.0 + grid_h * k as f64;
        s += &format!(
            "<text x='10' y='{y0}' font-size='13' font-weight='bold'>{}</text>\n",
            esc(&g.scenario)
        );
        for j in 0..n {
            s += &format!(
                "<text x='{}' y='{}' text-anchor='middle'>to {}</text>\n",
                label + cell * (j as f64 + 0.5),
                y0 + 22.0,
                esc(&m.kernels[j].spec)
            );
        }
        for (i, row) in g.cells.iter().enumerate() {
            let y = y0 + 30.0 + cell * 0.5 * i as f64;
            s += &format!(
                "<text x='10' y='{}'>from {}</text>\n",
                y + cell * 0.3,
                esc(&m.kernels[i].spec)
            );
            for (j, c) in row.iter().enumerate() {
                let x = label + cell * j as f64;
                s += &format!(
                    "<rect x='{x}' y='{y}' width='{}' height='{}' fill='{}' stroke='white'/>\n<text x='{}' y='{}' text-anchor='middle'>{}</text>\n",
                    cell - 2.0,
                    cell * 0.5 - 2.0,
                    color(c),
                    x + cell / 2.0,
                    y + cell * 0.3,
                    esc(&c.word())
                );
            }
        }
    }
    s += "</svg>\n";
    s
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    fn m() -> Matrix {
        Matrix {
            kernels: vec![
                Axis {
                    spec: "debian:7.2".into(),
                    source: "debian:linux-source-7.2=7.2.13-1".into(),
                    release: "7.2.13".into(),
                },
                Axis {
                    spec: "debian:7.3".into(),
                    source: "debian:linux-source-7.3=7.3.4-1~bpo13+1".into(),
                    release: "7.3.4".into(),
                },
            ],
            scenarios: vec![ScenarioGrid {
                scenario: "memfd-roundtrip".into(),
                cells: vec![
                    vec![
                        Cell::Pass,
                        Cell::StateLost {
                            detail: "boot 1: state lost: no KHO data found".into(),
                        },
                    ],
                    vec![
                        Cell::Fail {
                            step: "L15 verify: first differing byte at offset 0".into(),
                        },
                        Cell::Pass,
                    ],
                ],
            }],
        }
    }

    #[test]
    fn a_table_per_scenario_from_rows_to_columns_with_the_details_after() {
        insta::assert_snapshot!(table(&m()), @r"
        memfd-roundtrip                    to debian:7.2 (7.2.13-1)         to debian:7.3 (7.3.4-1~bpo13+1)
        from debian:7.2 (7.2.13-1)         pass                             STATE LOST
        from debian:7.3 (7.3.4-1~bpo13+1)  FAIL L15 verify                  pass
          debian:7.2 -> debian:7.3: boot 1: state lost: no KHO data found
          debian:7.3 -> debian:7.2: L15 verify: first differing byte at offset 0
        ");
    }

    #[test]
    fn the_svg_has_a_cell_per_pair_with_its_word() {
        let s = svg(&m());
        assert_eq!(s.matches("<rect x=").count(), 4);
        assert!(s.contains(">STATE LOST<") && s.contains(">FAIL L15 verify<"));
    }
}
