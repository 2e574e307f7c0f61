use super::*;
use crate::measure::stats::Verdict;

/// Hand-made samples: `extra_slab` bytes more per session on the patched side, a little noise
/// everywhere else.
fn samples(runs: u32, extra_slab: i64) -> Vec<Sample> {
    let mut v = Vec::new();
    for rep in 0..runs {
        for (label, extra) in [("base", 0), ("patched", extra_slab)] {
            let jitter = ((rep * 7919 + label.len() as u32 * 104729) % 13) as f64;
            v.push(Sample {
                label: label.into(),
                sessions: 1,
                rep,
                slab_bytes: 768 + extra,
                sunreclaim_bytes: 768 + extra,
                memfree_drop_bytes: 4096 + extra,
                grown_caches: Default::default(),
                // Less than a page: these samples stand for many sessions, one at a time.
                slab_slack_bytes: 512,
                create_ns: 20_000 + jitter as u64 * 100,
                blackout_host_ms: 540.0 + jitter,
                old_kernel_ms: Some(120.0 + jitter / 2.0),
                new_kernel_ms: 390.0 + jitter,
                retrieve_finish_ns: 30_000 + jitter as u64 * 50,
                retrieve_ns: Some(20_000 + jitter as u64 * 30),
                finish_ns: Some(10_000 + jitter as u64 * 20),
                files: 100,
                files_slab_bytes: 100 * 160 + jitter as i64 * 64,
                files_memfree_drop_bytes: 100 * 4300 + jitter as i64 * 256,
                files_grown_caches: Default::default(),
                files_slab_slack_bytes: 4096,
                preserve_ns: 100 * 9_000 + jitter as u64 * 1000,
                retrieve_files_ns: 100 * 7_000 + jitter as u64 * 1000,
            });
        }
    }
    v
}

fn info(spec: &str) -> KernelInfo {
    KernelInfo {
        spec: spec.into(),
        source: "debian:linux-source-7.3=7.3.4-1~bpo13+1 with a long tail to force wrapping".into(),
        variant: "test-fat-session".into(),
        release: Some("7.3.4".into()),
        bzimage: "/x/bzImage".into(),
    }
}

fn report(extra_slab: i64) -> DeltaReport {
    let level = Level {
        confidence: 0.95,
        comparisons: figures(1, 100),
    };
    let samples = samples(12, extra_slab);
    DeltaReport {
        base: info("debian:7.3"),
        patched: info("debian:7.3 --variant test-fat-session"),
        same_build: extra_slab == 0,
        machine: "AMD EPYC 7B13 64-Core Processor with a very long model name, 2 cores".into(),
        accel: "tcg".into(),
        runs: 12,
        sessions: vec![1],
        files: 100,
        level,
        method: METHOD.into(),
        rows: rows(&samples, &[1], 100, level),
        caches: caches(&samples, &[1], 100),
        behaviour: vec![Behaviour {
            scenario: "memfd-roundtrip".into(),
            base_outcome: "pass".into(),
            patched_outcome: "fail".into(),
            diff: "--- base\n+++ patched\n@@ -1 +1 @@\n-steps: [L12 create_session a: ok, a very long step line that goes on and on past the margin]\n+steps: []\n".into(),
        }],
        samples,
        prepare_s: 1.0,
        scenarios_s: 2.0,
        measure_s: 3.0,
    }
}

#[test]
fn a_kilobyte_more_per_session_is_worse_on_the_memory_figures_only() {
    let d = report(1024);
    for r in &d.rows {
        let v = r.change.as_ref().unwrap().verdict;
        let memory = r.metric.ends_with("bytes_per_session");
        assert_eq!(v == Verdict::Worse, memory, "{}: {v:?}", r.metric);
    }
    let gate: Vec<_> = d
        .worse_than(0.05)
        .iter()
        .map(|r| r.metric.clone())
        .collect();
    assert_eq!(
        gate,
        ["slab_bytes_per_session", "memfree_bytes_per_session"]
    );
    assert_eq!(
        d.worse_than(1.0).len(),
        1,
        "only the slab grew by more than 100%"
    );
}

#[test]
fn the_same_figures_on_both_sides_are_no_change_everywhere() {
    let d = report(0);
    assert!(
        d.rows
            .iter()
            .all(|r| r.change.as_ref().unwrap().verdict == Verdict::NoChange)
    );
    assert!(d.worse_than(0.0).is_empty());
    assert!(table(&d).contains("the same build on both sides"));
}

#[test]
fn every_line_of_the_email_fits_72_columns_and_names_what_a_reader_needs() {
    let text = email(&report(1024));
    for l in text.lines() {
        assert!(
            l.chars().count() <= render::EMAIL_COLUMNS,
            "{} columns: {l}",
            l.len()
        );
    }
    for needed in [
        "debian:linux-source-7.3=7.3.4-1~bpo13+1",
        "release 7.3.4",
        "QEMU accelerator tcg",
        "12 a kernel",
        "Mann-Whitney",
        "slab B/sess",
        "preserve us/f",
        "F = 100 one-page memfds",
        "WORSE",
        "memfd-roundtrip: base pass, patched fail",
        "+steps: []",
        "-steps: [L12 create_session a: ok, a very long step line that goes on",
    ] {
        assert!(text.contains(needed), "{needed:?} missing from:\n{text}");
    }
}

#[test]
fn the_plot_has_a_dot_per_run_and_a_strip_per_figure() {
    let d = report(1024);
    let s = svg(&d);
    assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
    let figures_with_values = d.rows.len();
    assert_eq!(s.matches("<circle").count(), figures_with_values * 24);
    let per_file = d.rows.iter().filter(|r| r.files > 0).count();
    assert_eq!(per_file, 4);
    assert_eq!(
        s.matches(" N=1</text>").count(),
        figures_with_values - per_file
    );
    assert_eq!(s.matches(" F=100</text>").count(), per_file);
}

#[test]
fn too_few_runs_are_refused_with_the_minimum() {
    let k = KernelChoice {
        spec: crate::plan::default_spec(),
        build: Default::default(),
    };
    let mut o = DeltaOptions {
        base: k.clone(),
        patched: k,
        scenarios: vec![],
        sessions: vec![1, 1000],
        files: 100,
        runs: 5,
        confidence: 0.95,
        accel: AccelChoice::Tcg,
    };
    let e = o.check().unwrap_err().to_string();
    assert!(
        e.contains("--runs 5 is too few") && e.contains("fewer than 6 runs"),
        "{e}"
    );
    o.runs = 6;
    assert!(o.check().is_ok());
}
