//! luo-harness: boots LUO-capable kernels under QEMU, drives /dev/liveupdate through a guest agent
//! across kexec, and reports what the kernel did.
//!
//! Data path: [`plan`] (every kernel, program and image, before any VM) -> [`vm`] (QEMU,
//! virtiofsd, QMP: processes) -> [`guest`] (the agent protocol) -> [`scenario`] (steps, checks,
//! reports, snapshots) -> [`run`] (scenarios in parallel) -> [`render`] (human, JSON, KTAP, JUnit).
//! The library never prints: it emits [`events`], and the command line shows them. [`outcome`]
//! says how anything ended and which exit code that is.

pub mod bench;
pub mod bisect;
pub mod compare;
pub mod coverage;
pub mod delta;
pub mod events;
pub mod findings;
pub mod fuzz;
pub mod guest;
pub mod matrix;
pub mod measure;
pub mod outcome;
pub mod plan;
pub mod profile;
pub mod render;
pub mod result;
pub mod run;
pub mod scenario;
pub mod timeline;
pub mod vm;

pub use guest::{Guest, GuestError, KexecTarget};
pub use plan::{Plan, PlanRequest};
pub use vm::{Vm, VmConfig};

#[cfg(test)]
mod module_graph {
    //! The library's modules form a graph without cycles: each names only those under it on the
    //! data path. Read from the sources' `crate::` paths (comments left out).
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// Top-level module -> the top-level modules it names.
    fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
        let mut files = Vec::new();
        sources(src, &mut files);
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for f in files {
            let rel = f.strip_prefix(src).unwrap();
            let top = rel.iter().next().unwrap().to_string_lossy();
            let top = top.trim_end_matches(".rs").to_string();
            if ["lib", "main", "cli"].contains(&top.as_str()) {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap();
            let names = g.entry(top.clone()).or_default();
            for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for (i, _) in line.match_indices("crate::") {
                    let rest = &line[i + "crate::".len()..];
                    let m: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !m.is_empty() && m != top {
                        names.insert(m);
                    }
                }
            }
        }
        g
    }

    /// The first cycle found, as the path that closes it.
    fn cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
        fn visit(
            g: &BTreeMap<String, BTreeSet<String>>,
            n: &str,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(at) = path.iter().position(|p| p == n) {
                let mut c = path[at..].to_vec();
                c.push(n.to_string());
                return Some(c);
            }
            if !done.insert(n.to_string()) {
                return None;
            }
            path.push(n.to_string());
            for m in g.get(n).into_iter().flatten() {
                if let Some(c) = visit(g, m, path, done) {
                    return Some(c);
                }
            }
            path.pop();
            None
        }
        let mut done = BTreeSet::new();
        g.keys()
            .find_map(|n| visit(g, n, &mut Vec::new(), &mut done))
    }

    #[test]
    fn a_cycle_is_found_where_there_is_one() {
        let g = BTreeMap::from([
            ("a".to_string(), BTreeSet::from(["b".to_string()])),
            ("b".to_string(), BTreeSet::from(["c".to_string()])),
            ("c".to_string(), BTreeSet::from(["a".to_string()])),
        ]);
        assert_eq!(cycle(&g).unwrap(), ["a", "b", "c", "a"]);
        let acyclic = BTreeMap::from([("a".to_string(), BTreeSet::from(["b".to_string()]))]);
        assert_eq!(cycle(&acyclic), None);
    }

    #[test]
    fn no_two_modules_need_each_other() {
        let root = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        let g = graph(&root.join("src"));
        assert!(g.len() > 10, "read the library's modules: {g:?}");
        assert!(g["run"].contains("scenario"), "{:?}", g["run"]);
        if let Some(c) = cycle(&g) {
            panic!("modules that need each other: {}", c.join(" -> "));
        }
    }
}
