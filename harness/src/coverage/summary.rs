//! The per-file figures of a tracefile: lines, functions and branches hit out of all, the functions
//! no scenario reached; as a table for people and as JSON that two runs can be diffed by (sorted,
//! no times, no paths of this machine).

use lcov::Report;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    pub hit: u64,
    pub total: u64,
}

impl Count {
    fn add(&mut self, other: Count) {
        self.hit += other.hit;
        self.total += other.total;
    }

    /// `312/350  89.1%`, or `-` when there is nothing to count.
    pub fn cell(&self) -> String {
        match self.total {
            0 => "-".into(),
            t => format!(
                "{}/{} {:5.1}%",
                self.hit,
                t,
                100.0 * self.hit as f64 / t as f64
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileCoverage {
    /// Relative to the kernel tree.
    pub file: String,
    pub lines: Count,
    pub functions: Count,
    pub branches: Count,
    /// Functions that never ran, in source order.
    pub unreached: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelSummary {
    pub kernel: String,
    pub files: Vec<FileCoverage>,
    pub total: FileCoverage,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub kernels: Vec<KernelSummary>,
}

/// The figures of `report`, whose sources lie under `sources`, for each of `profiled` (a profiled
/// file no boot ran at all is there with nothing hit).
pub fn of(kernel: &str, report: &Report, sources: &Path, profiled: &[String]) -> KernelSummary {
    let mut files = Vec::new();
    for rel in profiled {
        let path = sources.join(rel);
        let mut f = FileCoverage {
            file: rel.clone(),
            lines: Count::default(),
            functions: Count::default(),
            branches: Count::default(),
            unreached: vec![],
        };
        for (key, v) in &report.sections {
            if key.source_file != path {
                continue;
            }
            f.lines.add(Count {
                hit: v.lines.values().filter(|l| l.count > 0).count() as u64,
                total: v.lines.len() as u64,
            });
            f.functions.add(Count {
                hit: v.functions.values().filter(|x| x.count > 0).count() as u64,
                total: v.functions.len() as u64,
            });
            f.branches.add(Count {
                hit: v
                    .branches
                    .values()
                    .filter(|b| b.taken.is_some_and(|t| t > 0))
                    .count() as u64,
                total: v.branches.len() as u64,
            });
            let mut unreached: Vec<(Option<u32>, String)> = v
                .functions
                .iter()
                .filter(|(_, x)| x.count == 0)
                .map(|(k, x)| (x.start_line, k.name.clone()))
                .collect();
            unreached.sort();
            f.unreached.extend(unreached.into_iter().map(|(_, n)| n));
        }
        files.push(f);
    }
    let mut total = FileCoverage {
        file: "total".into(),
        lines: Count::default(),
        functions: Count::default(),
        branches: Count::default(),
        unreached: vec![],
    };
    for f in &files {
        total.lines.add(f.lines);
        total.functions.add(f.functions);
        total.branches.add(f.branches);
    }
    KernelSummary {
        kernel: kernel.to_string(),
        files,
        total,
    }
}

impl KernelSummary {
    /// The per-file table and, under it, the functions no scenario reached.
    pub fn table(&self) -> String {
        let w = self
            .files
            .iter()
            .map(|f| f.file.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut s = format!(
            "{}\n{:<w$}  {:>19}  {:>19}  {:>19}\n",
            self.kernel, "file", "lines", "functions", "branches"
        );
        for f in self.files.iter().chain(std::iter::once(&self.total)) {
            s.push_str(&format!(
                "{:<w$}  {:>19}  {:>19}  {:>19}\n",
                f.file,
                f.lines.cell(),
                f.functions.cell(),
                f.branches.cell()
            ));
        }
        let unreached: Vec<&FileCoverage> = self
            .files
            .iter()
            .filter(|f| !f.unreached.is_empty())
            .collect();
        if !unreached.is_empty() {
            s.push_str("functions no scenario reached:\n");
            for f in unreached {
                s.push_str(&format!("  {}: {}\n", f.file, f.unreached.join(", ")));
            }
        }
        s.push_str(
            "not counted: what runs inside reboot(KEXEC) (liveupdate_reboot() and what it calls) runs\n\
             after the last read of the counters, and the kexec discards them (docs/coverage.md)\n",
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_per_file_and_the_functions_never_reached() {
        let input = "TN:\nSF:/o/src/k/luo_session.c\nFN:20,luo_b\nFN:10,luo_a\nFNDA:3,luo_a\nFNDA:0,luo_b\n\
            BRDA:11,0,0,2\nBRDA:11,0,1,-\nDA:11,3\nDA:12,0\nDA:21,0\nend_of_record\n";
        let report = Report::from_reader(lcov::Reader::new(input.as_bytes())).unwrap();
        let s = of(
            "debian:7.3 stock gcov",
            &report,
            Path::new("/o/src"),
            &["k/luo_session.c".into(), "k/luo_core.c".into()],
        );
        let f = &s.files[0];
        assert_eq!(
            (f.lines, f.functions, f.branches),
            (
                Count { hit: 1, total: 3 },
                Count { hit: 1, total: 2 },
                Count { hit: 1, total: 2 }
            )
        );
        assert_eq!(f.unreached, ["luo_b"]);
        assert_eq!(
            s.files[1].lines,
            Count::default(),
            "a file no boot ran is listed"
        );
        assert_eq!(s.total.lines, Count { hit: 1, total: 3 });
        let t = s.table();
        let row = |name: &str| {
            t.lines()
                .find(|l| l.starts_with(name))
                .unwrap_or("")
                .to_string()
        };
        assert!(
            row("k/luo_session.c")
                .ends_with("1/3  33.3%           1/2  50.0%           1/2  50.0%"),
            "{t}"
        );
        assert!(row("k/luo_core.c").trim_end().ends_with('-'), "{t}");
        assert!(t.contains("  k/luo_session.c: luo_b"), "{t}");
    }
}
