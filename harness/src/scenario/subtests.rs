//! KTAP and TAP in a program's standard output (Documentation/dev-tools/ktap.rst, TAP 13 as
//! kselftest_harness.h and ktap_helpers.sh print it): every top-level result line becomes a
//! sub-result. Line-based and tolerant: diagnostics (`# ...`), nested (indented) blocks and other
//! output may come between results; what does not add up (a plan another count, numbers out of
//! order, `Bail out!`) is a problem to report, never a failure of its own.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    #[serde(rename = "ok")]
    Ok,
    #[serde(rename = "not ok")]
    NotOk,
    #[serde(rename = "skip")]
    Skip,
    /// `ok ... # XFAIL`: failed as the test expects (kselftest); counts as passing.
    #[serde(rename = "xfail")]
    Xfail,
    /// `not ok ... # TODO`: a known failure (TAP); not a failure of the run.
    #[serde(rename = "todo")]
    Todo,
}

impl Verdict {
    pub fn failed(self) -> bool {
        self == Verdict::NotOk
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subtest {
    pub name: String,
    pub result: Verdict,
    /// The directive's text: `# SKIP <reason>`, `# XFAIL <reason>`, `# TODO <reason>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The sub-results of one program run.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Parsed {
    pub cases: Vec<Subtest>,
    /// What did not add up, with the line number in the output.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

impl Parsed {
    pub fn count(&self, v: Verdict) -> usize {
        self.cases.iter().filter(|c| c.result == v).count()
    }

    pub fn failed(&self) -> impl Iterator<Item = (usize, &Subtest)> {
        self.cases
            .iter()
            .enumerate()
            .filter(|(_, c)| c.result.failed())
            .map(|(i, c)| (i + 1, c))
    }

    /// `not ok N name` for each failed case.
    pub fn not_oks(&self) -> Vec<String> {
        self.failed()
            .map(|(n, c)| format!("not ok {n} {}", c.name))
            .collect()
    }

    /// Every case skipped (and at least one).
    pub fn all_skipped(&self) -> bool {
        !self.cases.is_empty() && self.cases.iter().all(|c| c.result == Verdict::Skip)
    }

    /// `15 subtests: 14 ok, 1 skip`.
    pub fn counts(&self) -> String {
        let mut parts = vec![];
        for (v, name) in [
            (Verdict::Ok, "ok"),
            (Verdict::NotOk, "not ok"),
            (Verdict::Skip, "skip"),
            (Verdict::Xfail, "xfail"),
            (Verdict::Todo, "todo"),
        ] {
            let n = self.count(v);
            if n > 0 || v == Verdict::Ok {
                parts.push(format!("{n} {name}"));
            }
        }
        format!("{} subtests: {}", self.cases.len(), parts.join(", "))
    }
}

/// The sub-results in `out`, or None when it is not KTAP or TAP: it has neither a version line
/// (`KTAP version 1`, `TAP version 13`) nor a plan (`1..N`) at the start of a line.
pub fn parse(out: &str) -> Option<Parsed> {
    let mut seen_header = false;
    let mut plan: Option<(u64, usize)> = None;
    let mut parsed = Parsed::default();
    let mut last_number = 0u64;
    let mut bailed = false;
    for (i, raw) in out.lines().enumerate() {
        let at = i + 1;
        // Only the top level: a nested block is indented (KTAP) and its results are summed up
        // by the line that follows it.
        if raw.starts_with([' ', '\t']) {
            continue;
        }
        let line = raw.trim_end();
        if line.starts_with("KTAP version ") || line.starts_with("TAP version ") {
            seen_header = true;
            continue;
        }
        if let Some(n) = plan_count(line) {
            if plan.is_some() {
                parsed
                    .problems
                    .push(format!("line {at}: a second plan `{line}`"));
            } else {
                plan = Some((n, at));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("Bail out!") {
            parsed.problems.push(format!("line {at}: Bail out!{rest}"));
            bailed = true;
            continue;
        }
        let Some((case, number)) = result_line(line) else {
            continue;
        };
        match number {
            Some(n) if n != last_number + 1 => parsed
                .problems
                .push(format!("line {at}: test {n} follows test {last_number}")),
            _ => {}
        }
        last_number = number.unwrap_or(last_number + 1);
        parsed.cases.push(case);
    }
    if !seen_header && plan.is_none() {
        return None;
    }
    if let Some((n, at)) = plan
        && n as usize != parsed.cases.len()
        && !bailed
    {
        parsed.problems.push(format!(
            "the plan (line {at}) announces {n} tests, the output has {}",
            parsed.cases.len()
        ));
    }
    Some(parsed)
}

/// `1..N`, with an optional `# reason` (a plan of `1..0 # SKIP why` skips everything).
fn plan_count(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("1..")?;
    let digits = rest.split(|c: char| !c.is_ascii_digit()).next()?;
    let tail = rest[digits.len()..].trim_start();
    if digits.is_empty() || !(tail.is_empty() || tail.starts_with('#')) {
        return None;
    }
    digits.parse().ok()
}

/// `ok 3 name # SKIP reason`, `not ok 4 - name`, `ok` (unnumbered, unnamed).
fn result_line(line: &str) -> Option<(Subtest, Option<u64>)> {
    let (passed, rest) = if let Some(r) = line.strip_prefix("not ok") {
        (false, r)
    } else if let Some(r) = line.strip_prefix("ok") {
        (true, r)
    } else {
        return None;
    };
    if !(rest.is_empty() || rest.starts_with(' ')) {
        return None; // `okay`, `nothing`
    }
    let rest = rest.trim_start();
    let digits = rest
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap_or("");
    let number = digits.parse::<u64>().ok();
    let rest = rest[digits.len()..].trim_start();
    let rest = rest.strip_prefix("- ").unwrap_or(rest);
    // The directive is after the first ` # ` (or a `#` that starts the description).
    let (description, directive) = match rest.find(" # ").map(|i| (i, 3)).or_else(|| {
        rest.starts_with("# ")
            .then_some((0, 2))
            .or_else(|| rest.starts_with('#').then_some((0, 1)))
    }) {
        Some((i, skip)) => (rest[..i].trim(), Some(rest[i + skip..].trim())),
        None => (rest.trim(), None),
    };
    let name = if description.is_empty() {
        number.map_or_else(|| "(unnamed)".to_string(), |n| n.to_string())
    } else {
        description.to_string()
    };
    let word = |d: &str, w: &str| {
        d.len() >= w.len()
            && d[..w.len()].eq_ignore_ascii_case(w)
            && d[w.len()..]
                .chars()
                .next()
                .is_none_or(|c| !c.is_alphanumeric())
    };
    let reason_of = |d: &str, w: &str| {
        let r = d[w.len()..].trim_start_matches([':', ' ']).trim();
        (!r.is_empty()).then(|| r.to_string())
    };
    let (result, reason) = match directive {
        Some(d) if word(d, "SKIP") => (Verdict::Skip, reason_of(d, "SKIP")),
        Some(d) if passed && word(d, "XFAIL") => (Verdict::Xfail, reason_of(d, "XFAIL")),
        Some(d) if !passed && word(d, "TODO") => (Verdict::Todo, reason_of(d, "TODO")),
        _ if passed => (Verdict::Ok, None),
        _ => (Verdict::NotOk, None),
    };
    Some((
        Subtest {
            name,
            result,
            reason,
        },
        number,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(name: &str, result: Verdict, reason: Option<&str>) -> Subtest {
        Subtest {
            name: name.into(),
            result,
            reason: reason.map(str::to_string),
        }
    }

    #[test]
    fn kselftest_harness_output_with_diagnostics_between() {
        let out = "TAP version 13\n1..3\n# Starting 3 tests from 1 test cases.\n\
                   #  RUN           dev.open ...\n#            OK  dev.open\nok 1 dev.open\n\
                   some stray output\nnot ok 2 dev.preserve\n\
                   ok 3 dev.hugetlb # SKIP no hugetlb pages\n# Totals: pass:1 fail:1 skip:1\n";
        let p = parse(out).unwrap();
        assert_eq!(
            p.cases,
            [
                case("dev.open", Verdict::Ok, None),
                case("dev.preserve", Verdict::NotOk, None),
                case("dev.hugetlb", Verdict::Skip, Some("no hugetlb pages")),
            ]
        );
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        assert_eq!(
            p.failed()
                .map(|(n, c)| (n, c.name.as_str()))
                .collect::<Vec<_>>(),
            [(2, "dev.preserve")]
        );
        assert_eq!(p.counts(), "3 subtests: 1 ok, 1 not ok, 1 skip");
    }

    #[test]
    fn ktap_with_nested_blocks_takes_the_top_level() {
        let out = "KTAP version 1\n1..2\n    KTAP version 1\n    # Subtest: inner\n    1..1\n    \
                   not ok 1 deep\nnot ok 1 inner\nok 2 - dashed name # XFAIL known\n";
        let p = parse(out).unwrap();
        assert_eq!(
            p.cases,
            [
                case("inner", Verdict::NotOk, None),
                case("dashed name", Verdict::Xfail, Some("known")),
            ]
        );
    }

    #[test]
    fn directives_todo_and_unnamed_results() {
        let p = parse("TAP version 13\nnot ok 1 # TODO later\nok\nok 3 #skip: why\n").unwrap();
        assert_eq!(
            p.cases,
            [
                case("1", Verdict::Todo, Some("later")),
                case("(unnamed)", Verdict::Ok, None),
                case("3", Verdict::Skip, Some("why")),
            ]
        );
        assert!(p.failed().next().is_none());
        // `# SKIPPED` is not the SKIP directive; `okay` is not a result.
        let p = parse("1..1\nok 1 a # SKIPPED\nokay 2 b\n").unwrap();
        assert_eq!(p.cases, [case("a", Verdict::Ok, None)]);
    }

    #[test]
    fn what_does_not_add_up_is_a_problem_not_a_failure() {
        let p = parse("TAP version 13\n1..3\nok 1 a\nok 3 c\n").unwrap();
        assert_eq!(
            p.problems,
            [
                "line 4: test 3 follows test 1",
                "the plan (line 2) announces 3 tests, the output has 2"
            ]
        );
        let p = parse("1..3\nok 1 a\nBail out! no device\n").unwrap();
        assert_eq!(p.problems, ["line 3: Bail out! no device"]);
        let p = parse("1..0 # SKIP nothing to do\n").unwrap();
        assert!(p.cases.is_empty() && p.problems.is_empty());
    }

    #[test]
    fn plain_output_is_not_tap() {
        assert_eq!(parse("hello\nok then\n"), None);
        assert_eq!(parse(""), None);
        assert_eq!(parse("1..x\n10..2\n"), None);
    }

    #[test]
    fn every_skip_is_all_skipped_and_none_is_not() {
        let p = parse("1..2\nok 1 a # SKIP x\nok 2 b # SKIP y\n").unwrap();
        assert!(p.all_skipped());
        assert!(!parse("1..0\n").unwrap().all_skipped());
    }
}
