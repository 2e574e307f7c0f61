//! A short fuzz run of the parsers (the long one is ci/fuzz-scenarios MINUTES): scenario parsing
//! and validation, and the agent-line splitter and protocol decoder, over generated and mutated
//! inputs; and every input the fuzzer ever kept in harness/tests/fuzz-corpus/, replayed.

#[path = "support/fuzz.rs"]
mod fuzz;

use proptest::prelude::*;
use std::sync::Arc;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Inputs that break something are kept in fuzz-corpus/ by hand or by the long run, named
        // for what they are; proptest's own regression files would be a second, opaque corpus.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

#[test]
fn scenario_inputs_never_panic_and_every_rejection_is_located() {
    let seeds = Arc::new(fuzz::scenario_seeds());
    let mut runner = proptest::test_runner::TestRunner::new(config(3000));
    runner
        .run(&fuzz::scenario_input(seeds), |input| {
            let mut tally = fuzz::Tally::default();
            fuzz::check_scenario(&input, &mut tally).map_err(|e| {
                TestCaseError::fail(format!("{e}\ninput:\n{}", String::from_utf8_lossy(&input)))
            })
        })
        .unwrap();
}

#[test]
fn agent_lines_split_decode_and_round_trip() {
    let seeds = Arc::new(fuzz::protocol_seeds());
    let mut runner = proptest::test_runner::TestRunner::new(config(3000));
    runner
        .run(&fuzz::protocol_input(seeds), |(input, chunks)| {
            fuzz::check_protocol(&input, &chunks).map_err(|e| {
                TestCaseError::fail(format!("{e}\ninput: {:?}", String::from_utf8_lossy(&input)))
            })
        })
        .unwrap();
}

/// The seeds themselves: every file in scenarios/ parses as its name says (valid, or rejected with
/// a location), and every real agent line round-trips.
#[test]
fn seeds_and_kept_inputs_hold() {
    let mut tally = fuzz::Tally::default();
    for seed in fuzz::scenario_seeds() {
        fuzz::check_scenario(&seed, &mut tally)
            .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&seed)));
    }
    assert!(tally.accepted >= 14 && tally.rejected >= 25, "{tally:?}");
    let lines = fuzz::protocol_seeds();
    let all: Vec<u8> = lines
        .iter()
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect();
    for chunks in [vec![1], vec![7, 3], vec![64], vec![all.len()]] {
        // Real lines are longer than the fuzz splitter's limit only for a few replies; those end
        // the comparison, the rest must come back exactly.
        fuzz::check_protocol(&all, &chunks).unwrap();
    }
    for l in &lines {
        fuzz::check_protocol(format!("{l}\n").as_bytes(), &[5]).unwrap();
    }
    let kept = std::fs::read_dir(fuzz::corpus_dir("protocol"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "bin"));
    for e in kept {
        let input = std::fs::read(e.path()).unwrap();
        for chunks in [vec![1], vec![13], vec![4096]] {
            fuzz::check_protocol(&input, &chunks)
                .unwrap_or_else(|err| panic!("{}: {err}", e.path().display()));
        }
    }
}

/// Program output as kselftest prints it, cut and shuffled: result lines with and without numbers
/// and directives, plans, diagnostics, nested blocks and noise.
fn tap_output() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("TAP version 13".to_string()),
        Just("KTAP version 1".to_string()),
        (0u64..40).prop_map(|n| format!("1..{n}")),
        (
            any::<bool>(),
            proptest::option::of(0u64..40),
            "[a-z_.]{0,12}",
            0usize..6
        )
            .prop_map(|(ok, n, name, d)| {
                let directive = [
                    "",
                    " # SKIP why",
                    " # XFAIL",
                    " # TODO later",
                    " # skip",
                    " #",
                ][d];
                let n = n.map(|n| format!(" {n}")).unwrap_or_default();
                format!("{}ok{n} {name}{directive}", if ok { "" } else { "not " })
            }),
        "# [ -~]{0,30}",
        "    (not )?ok [0-9] [a-z]{1,5}",
        Just("Bail out! gone".to_string()),
        "[ -~]{0,40}",
        "\\PC{0,20}",
    ];
    proptest::collection::vec(line, 0..40).prop_map(|v| v.join("\n"))
}

#[test]
fn program_output_parses_without_panics_and_every_case_is_a_result_line() {
    use luo_harness::scenario::subtests::{Verdict, parse};
    let mut runner = proptest::test_runner::TestRunner::new(config(3000));
    runner
        .run(&tap_output(), |out| {
            let top_level_results = out
                .lines()
                .filter(|l| l.starts_with("ok") || l.starts_with("not ok"))
                .filter(|l| {
                    let rest = l.trim_start_matches("not ").trim_start_matches("ok");
                    rest.is_empty() || rest.starts_with(' ')
                })
                .count();
            match parse(&out) {
                None => prop_assert!(
                    !out.lines()
                        .any(|l| l.starts_with("TAP version ") || l.starts_with("KTAP version ")),
                    "a version line makes it TAP"
                ),
                Some(p) => {
                    prop_assert_eq!(p.cases.len(), top_level_results);
                    let counted: usize = [
                        Verdict::Ok,
                        Verdict::NotOk,
                        Verdict::Skip,
                        Verdict::Xfail,
                        Verdict::Todo,
                    ]
                    .iter()
                    .map(|v| p.count(*v))
                    .sum();
                    prop_assert_eq!(counted, p.cases.len());
                    prop_assert!(
                        p.failed()
                            .all(|(n, c)| n >= 1 && c.result == Verdict::NotOk)
                    );
                }
            }
            Ok(())
        })
        .unwrap();
}
