//! One kernel's counters to its tracefile and HTML: the counters of each boot beside the notes
//! gcc wrote at build time, geninfo over all of them, the result cut down to the profiled files
//! and merged (the `lcov` crate), genhtml on it.

use super::{CoverageError, Group, KernelCoverage, io, summary};
use lcov::{Reader, Record, Report};
use std::path::{Path, PathBuf};
use std::process::Command;

pub(super) fn kernel(
    group: &Group<'_>,
    slug: &str,
    out: &Path,
    html: &Path,
) -> Result<KernelCoverage, CoverageError> {
    let notes = group
        .kernel
        .gcov
        .as_ref()
        .expect("a group is made of gcov kernels");
    let data = out.join("gcda").join(slug);
    if data.exists() {
        std::fs::remove_dir_all(&data).map_err(io(&data))?;
    }
    let mut dirs = Vec::new();
    for (scenario, boot, files) in &group.boots {
        let dir = data.join(scenario).join(format!("boot-{boot}"));
        for f in files.iter() {
            let Some(rel) = profiled_object(&notes.files, &f.path) else {
                continue;
            };
            let bytes = hex::decode(&f.hex).map_err(|e| CoverageError::Tracefile {
                path: PathBuf::from(&f.path),
                why: format!("the guest sent gcov data that is not hex: {e}"),
            })?;
            let gcda = dir.join(rel.with_extension("gcda"));
            let gcno = rel.with_extension("gcno");
            std::fs::create_dir_all(gcda.parent().unwrap()).map_err(io(&gcda))?;
            std::fs::write(&gcda, bytes).map_err(io(&gcda))?;
            let from = notes.dir.join(&gcno);
            std::fs::copy(&from, dir.join(&gcno)).map_err(io(&from))?;
        }
        dirs.push(dir);
    }
    let raw = data.join("geninfo.info");
    let mut geninfo = Command::new("geninfo");
    geninfo
        .args([
            "--quiet",
            "--rc",
            "lcov_branch_coverage=1",
            "--gcov-tool",
            "gcov",
        ])
        .arg("--output-filename")
        .arg(&raw)
        .args(&dirs);
    run(geninfo)?;
    let sources = out.join("src").join(slug);
    let report = merged(&raw, &notes.files, &notes.dir, &sources)?;
    let tracefile = out.join(format!("{slug}.info"));
    let text: String = report
        .clone()
        .into_records()
        .map(|r| format!("{r}\n"))
        .collect();
    std::fs::write(&tracefile, text).map_err(io(&tracefile))?;
    if html.exists() {
        std::fs::remove_dir_all(html).map_err(io(html))?;
    }
    let mut genhtml = Command::new("genhtml");
    genhtml
        .args(["--quiet", "--branch-coverage", "--legend"])
        .arg("--title")
        .arg(format!("kernel/liveupdate: {}", group.kernel.label()))
        .arg("--prefix")
        .arg(&sources)
        .arg("--output-directory")
        .arg(html)
        .arg(&tracefile);
    run(genhtml)?;
    Ok(KernelCoverage {
        kernel: group.kernel.label(),
        tracefile,
        html: html.join("index.html"),
        summary: summary::of(&group.kernel.label(), &report, &sources, &notes.files),
    })
}

/// The profiled file whose counters `gcda` (a path under /sys/kernel/debug/gcov) holds, as a
/// path in the tree.
fn profiled_object(profiled: &[String], gcda: &str) -> Option<PathBuf> {
    profiled.iter().map(PathBuf::from).find(|f| {
        let want = f.with_extension("gcda");
        gcda.ends_with(&format!("/{}", want.display()))
    })
}

/// geninfo's output, one section per data file, merged per source file, without what is not a
/// profiled file (the headers inlined into them), with its sources copied to `sources` and named
/// there.
fn merged(
    raw: &Path,
    profiled: &[String],
    notes: &Path,
    sources: &Path,
) -> Result<Report, CoverageError> {
    let bad = |why: String| CoverageError::Tracefile {
        path: raw.to_path_buf(),
        why,
    };
    let mut merged = Report::new();
    let mut section: Vec<Record> = Vec::new();
    for record in Reader::open_file(raw).map_err(io(raw))? {
        let record = record.map_err(|e| bad(e.to_string()))?;
        let end = matches!(record, Record::EndOfRecord);
        section.push(record);
        if !end {
            continue;
        }
        let mut records = std::mem::take(&mut section);
        let Some(rel) = records.iter_mut().find_map(|r| match r {
            Record::SourceFile { path } => {
                let rel = profiled
                    .iter()
                    .find(|f| path.ends_with(f.as_str()))?
                    .clone();
                *path = sources.join(&rel);
                Some(rel)
            }
            _ => None,
        }) else {
            continue;
        };
        for r in &mut records {
            // One test for every boot of every scenario: the counts are summed.
            if let Record::TestName { name } = r {
                name.clear();
            }
        }
        let dest = sources.join(&rel);
        if !dest.exists() {
            std::fs::create_dir_all(dest.parent().unwrap()).map_err(io(&dest))?;
            std::fs::copy(notes.join(&rel), &dest).map_err(io(&dest))?;
        }
        let part = Report::from_reader(records.into_iter().map(Ok::<_, std::io::Error>))
            .map_err(|e| bad(e.to_string()))?;
        merged.merge(part).map_err(|e| bad(e.to_string()))?;
    }
    Ok(merged)
}

fn run(mut cmd: Command) -> Result<(), CoverageError> {
    let out = cmd.output().map_err(|e| CoverageError::Tool {
        command: format!("{cmd:?}"),
        status: e.to_string(),
        output: String::new(),
    })?;
    if out.status.success() {
        return Ok(());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tail: Vec<&str> = text.lines().rev().take(30).collect();
    Err(CoverageError::Tool {
        command: format!("{cmd:?}"),
        status: out.status.to_string(),
        output: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_found_by_their_objects_path() {
        let profiled = vec![
            "kernel/liveupdate/luo_session.c".to_string(),
            "mm/memfd_luo.c".to_string(),
        ];
        let gcda = "/root/.cache/luo-harness/builds/linux-7.3-minimal-gcov/kernel/liveupdate/luo_session.gcda";
        assert_eq!(
            profiled_object(&profiled, gcda),
            Some(PathBuf::from("kernel/liveupdate/luo_session.c"))
        );
        assert_eq!(profiled_object(&profiled, "/x/kernel/gcov/base.gcda"), None);
    }

    #[test]
    fn sections_of_one_file_are_summed_and_headers_dropped() {
        let d = tempfile::tempdir().unwrap();
        let raw = d.path().join("raw.info");
        std::fs::write(
            &raw,
            "TN:boot0\nSF:/s/kernel/liveupdate/luo_session.c\nFN:10,luo_a\nFNDA:1,luo_a\nDA:11,1\nDA:12,0\nend_of_record\n\
             TN:boot0\nSF:/s/include/linux/list.h\nDA:1,5\nend_of_record\n\
             TN:boot1\nSF:/s/kernel/liveupdate/luo_session.c\nFN:10,luo_a\nFNDA:2,luo_a\nDA:11,3\nDA:12,1\nend_of_record\n",
        )
        .unwrap();
        let notes = d.path().join("notes");
        std::fs::create_dir_all(notes.join("kernel/liveupdate")).unwrap();
        std::fs::write(notes.join("kernel/liveupdate/luo_session.c"), "int x;\n").unwrap();
        let sources = d.path().join("src");
        let r = merged(
            &raw,
            &["kernel/liveupdate/luo_session.c".into()],
            &notes,
            &sources,
        )
        .unwrap();
        assert_eq!(r.sections.len(), 1);
        let (key, value) = r.sections.iter().next().unwrap();
        assert_eq!(
            key.source_file,
            sources.join("kernel/liveupdate/luo_session.c")
        );
        let counts: Vec<u64> = value.lines.values().map(|v| v.count).collect();
        assert_eq!(counts, [4, 1], "both boots' counts summed");
        assert!(sources.join("kernel/liveupdate/luo_session.c").is_file());
    }
}
