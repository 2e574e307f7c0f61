//! Guidance on a gcov kernel: the arcs of the profiled code (kernel/liveupdate/, mm/memfd_luo.c)
//! that programs have reached, and the corpus: every program that reached an arc none before it
//! did, kept as a scenario (with its operations beside it, so a later run starts from it) and
//! mutated into new programs, so the fuzzer goes on from the states that reach new code.

use super::model::Op;
use crate::coverage::gcda::{self, GcdaError};
use crate::result::ScenarioResult;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum GuideError {
    #[error("gcov data of {path} from the guest: {source}")]
    Gcda {
        path: String,
        #[source]
        source: GcdaError,
    },
    #[error("gcov data of {path} from the guest is not hex: {source}")]
    Hex {
        path: String,
        #[source]
        source: hex::FromHexError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a corpus entry's operations: {source}")]
    Entry {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Why an entry is in the corpus, at the top of its file.
const KEPT_BECAUSE: &str = "# Kept by luo-harness fuzz: it reached code of kernel/liveupdate or \
                            mm/memfd_luo.c\n# that no program before it had. A seed of later \
                            runs (fuzz --corpus).\n";

/// Which arcs any program has run, per .gcda file.
#[derive(Debug, Default)]
pub struct Arcs {
    hit: BTreeMap<String, Vec<bool>>,
}

impl Arcs {
    /// Adds the counters of a program's boots; returns how many arcs no program had run before.
    pub fn add(&mut self, r: &ScenarioResult) -> Result<usize, GuideError> {
        let mut new = 0;
        for boot in &r.gcov {
            for f in &boot.files {
                let bytes = hex::decode(&f.hex).map_err(|source| GuideError::Hex {
                    path: f.path.clone(),
                    source,
                })?;
                let counts = gcda::arc_counters(&bytes).map_err(|source| GuideError::Gcda {
                    path: f.path.clone(),
                    source,
                })?;
                let hit = self.hit.entry(f.path.clone()).or_default();
                if hit.len() < counts.len() {
                    hit.resize(counts.len(), false);
                }
                for (h, c) in hit.iter_mut().zip(&counts) {
                    if *c > 0 && !*h {
                        *h = true;
                        new += 1;
                    }
                }
            }
        }
        Ok(new)
    }

    /// (arcs run, arcs known) over every file seen.
    pub fn reached(&self) -> (usize, usize) {
        self.hit.values().fold((0, 0), |(r, k), v| {
            (r + v.iter().filter(|h| **h).count(), k + v.len())
        })
    }
}

/// The programs that reached new arcs, in a directory of scenarios.
pub struct Corpus {
    dir: PathBuf,
    pub programs: Vec<Vec<Op>>,
    /// Their runs, whose gcov data together is everything the run reached.
    pub results: Vec<ScenarioResult>,
}

impl Corpus {
    pub fn new(dir: &Path) -> Corpus {
        Corpus {
            dir: dir.to_path_buf(),
            programs: Vec::new(),
            results: Vec::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The programs of an earlier run's corpus in `dir` (each `<name>.ops.json`), by name.
    pub fn seeds(dir: &Path) -> Result<Vec<(String, Vec<Op>)>, GuideError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| GuideError::Io { path, source }
        };
        let entries = match std::fs::read_dir(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            r => r.map_err(io(dir))?,
        };
        let mut seeds = Vec::new();
        for e in entries {
            let path = e.map_err(io(dir))?.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".ops.json"))
            else {
                continue;
            };
            let text = std::fs::read_to_string(&path).map_err(io(&path))?;
            let ops = serde_json::from_str(&text).map_err(|source| GuideError::Entry {
                path: path.clone(),
                source,
            })?;
            seeds.push((name.to_string(), ops));
        }
        seeds.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(seeds)
    }

    /// Keeps a program that reached new arcs; writes it unless it came from this directory.
    /// Returns whether the corpus grew. Names come from program seeds, and a later run with the
    /// same `--seed` draws the same seeds: an entry of an earlier run that holds `name` is never
    /// overwritten (the program is kept as `name-2`, `-3`...), and a program the directory
    /// already holds, which can reach an arc again by timing, is not kept twice.
    pub fn keep(
        &mut self,
        name: &str,
        ops: &[Op],
        scenario: &str,
        r: ScenarioResult,
        write: bool,
    ) -> Result<bool, GuideError> {
        if write {
            let io = |path: PathBuf| move |source| GuideError::Io { path, source };
            std::fs::create_dir_all(&self.dir).map_err(io(self.dir.clone()))?;
            let json_text = serde_json::to_string(ops).expect("operations serialise") + "\n";
            let mut entry = name.to_string();
            for n in 2.. {
                let json = self.dir.join(format!("{entry}.ops.json"));
                match std::fs::read_to_string(&json) {
                    Ok(held) if held == json_text => {
                        self.results.push(r);
                        return Ok(false);
                    }
                    Ok(_) => entry = format!("{name}-{n}"),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) => return Err(io(json)(e)),
                }
            }
            let yaml = self.dir.join(format!("{entry}.yaml"));
            let text = format!("{KEPT_BECAUSE}{scenario}");
            std::fs::write(&yaml, text).map_err(io(yaml.clone()))?;
            let json = self.dir.join(format!("{entry}.ops.json"));
            std::fs::write(&json, json_text).map_err(io(json.clone()))?;
        }
        self.programs.push(ops.to_vec());
        self.results.push(r);
        Ok(write)
    }

    /// The entry a program seed mutates, or None to generate afresh (half of the programs, so
    /// the fuzzer keeps looking where the corpus has not been).
    pub fn pick(&self, pseed: u64) -> Option<&[Op]> {
        if self.programs.is_empty() || pseed & 1 == 0 {
            return None;
        }
        let i = (pseed >> 1) % self.programs.len() as u64;
        Some(&self.programs[i as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::program::{self, Shape};

    #[test]
    fn entries_read_back_as_the_programs_written() {
        let dir = tempfile::tempdir().unwrap();
        let ops = program::generate(
            3,
            Shape {
                max_ops: 20,
                max_kexecs: 2,
            },
        );
        let mut c = Corpus::new(dir.path());
        let r = ScenarioResult::new("p.yaml".into(), "p".into(), crate::outcome::Outcome::Pass);
        c.keep("fuzz-3", &ops, "steps: []\n", r, true).unwrap();
        let seeds = Corpus::seeds(dir.path()).unwrap();
        assert_eq!(seeds, vec![("fuzz-3".to_string(), ops)]);
        assert!(dir.path().join("fuzz-3.yaml").is_file());
        assert!(Corpus::seeds(&dir.path().join("none")).unwrap().is_empty());
        std::fs::write(
            dir.path().join("bad.ops.json"),
            "[{\"seal\":{\"fd\":\"m1\",\"seals\":[\"glue\"]}}]",
        )
        .unwrap();
        let e = Corpus::seeds(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("bad.ops.json") && e.contains("no seal \"glue\""),
            "{e}"
        );
    }

    /// The flake this prevents: a second run with the same seed kept a mutant under a name an
    /// entry of the first run held, so the corpus said 10 programs and the directory held 9.
    #[test]
    fn a_later_run_never_overwrites_an_entry_and_never_keeps_one_twice() {
        let dir = tempfile::tempdir().unwrap();
        let shape = Shape {
            max_ops: 20,
            max_kexecs: 2,
        };
        let (first, other) = (program::generate(3, shape), program::generate(4, shape));
        assert_ne!(first, other);
        let r = || ScenarioResult::new("p.yaml".into(), "p".into(), crate::outcome::Outcome::Pass);
        let mut earlier = Corpus::new(dir.path());
        assert!(
            earlier
                .keep("fuzz-7", &first, "steps: []\n", r(), true)
                .unwrap()
        );
        let mut later = Corpus::new(dir.path());
        assert!(
            !later
                .keep("fuzz-7", &first, "steps: []\n", r(), true)
                .unwrap()
        );
        assert!(
            later
                .keep("fuzz-7", &other, "steps: []\n", r(), true)
                .unwrap()
        );
        assert!(
            !later
                .keep("fuzz-7", &other, "steps: []\n", r(), true)
                .unwrap()
        );
        let seeds = Corpus::seeds(dir.path()).unwrap();
        assert_eq!(
            seeds,
            vec![
                ("fuzz-7".to_string(), first),
                ("fuzz-7-2".to_string(), other)
            ]
        );
        assert!(dir.path().join("fuzz-7-2.yaml").is_file());
        assert_eq!(later.programs.len(), 1);
    }

    #[test]
    fn half_the_programs_mutate_an_entry_once_there_is_one() {
        let mut c = Corpus::new(Path::new("/nonexistent"));
        assert!((0..10).all(|s| c.pick(s).is_none()));
        c.programs.push(vec![Op::Kexec]);
        assert!(c.pick(2).is_none());
        assert_eq!(c.pick(3), Some(&[Op::Kexec][..]));
    }
}
