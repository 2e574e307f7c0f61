//! Delta debugging of a failing program: drop ever smaller chunks of operations (a kexec is an
//! operation like any other), keep a candidate when it still fails the same way, then make the
//! files small, batches short and kexecs plain. A candidate is first replayed through the model, which leaves out what no longer
//! applies (a preserve whose memfd was dropped) and predicts afresh what the rest must answer.

use super::model::Op;
use super::program;

/// What makes two failures "the same way": the reason without its line number, handles, numbers
/// and bracketed values (`L7 preserve: expected EBUSY, got 0` and `L3 preserve: ...` are one
/// failure; so are `expected seals [grow shrink], got [shrink]` and `... [grow], got []`).
pub fn signature(reason: &str) -> String {
    let mut out = String::new();
    let mut in_list = false;
    for word in reason.split_whitespace() {
        if in_list || word.starts_with('[') {
            if !in_list {
                out.push_str("[] ");
            }
            in_list = !word.trim_end_matches([',', '.', ';']).ends_with(']');
            continue;
        }
        let w = word.trim_matches(|c: char| ",.:;()[]{}".contains(c));
        let is_line =
            w.starts_with('L') && w.len() > 1 && w[1..].chars().all(|c| c.is_ascii_digit());
        let has_digit = w.chars().any(|c| c.is_ascii_digit());
        let errno = w.starts_with('E')
            && w.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if is_line {
            continue;
        }
        if has_digit && !errno {
            out.push_str("# ");
        } else {
            out.push_str(word);
            out.push(' ');
        }
    }
    out.trim_end().to_string()
}

/// Files shrunk to these sizes, largest first, while the failure stays (and batches to 32 and
/// 1 sessions or files).
const SMALL_SIZES: &[u64] = &[4096, 1];

/// The smallest program found that still `fails` (which runs it).
pub async fn shrink(ops: &[Op], mut fails: impl AsyncFnMut(&[Op]) -> bool) -> Vec<Op> {
    let (_, mut cur) = program::scenario(ops, "");
    let mut chunk = cur.len().div_ceil(2).max(1);
    loop {
        let mut i = 0;
        let mut progress = false;
        while i < cur.len() {
            let end = (i + chunk).min(cur.len());
            let candidate: Vec<Op> = cur[..i].iter().chain(&cur[end..]).cloned().collect();
            let (_, kept) = program::scenario(&candidate, "");
            if kept.len() < cur.len() && fails(&kept).await {
                cur = kept;
                progress = true;
            } else {
                i += chunk;
            }
        }
        if !progress {
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2).max(1);
        }
    }
    for i in 0..cur.len() {
        for &small in SMALL_SIZES {
            let mut candidate = cur.clone();
            match &mut candidate[i] {
                Op::CreateMemfd { size, .. } | Op::Truncate { size, .. } if *size > small => {
                    *size = small
                }
                // A batch as small as the failure lets it be (one block's worth, or one).
                Op::ManySessions { count, .. } | Op::ManyFiles { count, .. }
                    if *count > small.min(32) as u32 =>
                {
                    *count = small.min(32) as u32
                }
                Op::KexecWith { .. } => candidate[i] = Op::Kexec,
                _ => continue,
            }
            let (_, kept) = program::scenario(&candidate, "");
            if kept.len() == cur.len() && fails(&kept).await {
                cur = kept;
            }
        }
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_failure_at_another_line_with_other_handles_has_one_signature() {
        let a =
            signature("FAIL: L7 preserve: expected EBUSY, got 0 from ioctl(PRESERVE_FD) on s12");
        let b =
            signature("FAIL: L31 preserve: expected EBUSY, got 0 from ioctl(PRESERVE_FD) on s3");
        assert_eq!(a, b);
        let c = signature("FAIL: L7 preserve: expected EEXIST, got EBUSY from ioctl(PRESERVE_FD)");
        assert_ne!(a, c);
        assert!(c.contains("EEXIST") && c.contains("EBUSY"), "{c}");
        assert_eq!(
            signature("FAIL: L15 observe: f6: expected seals [grow shrink], got [shrink]"),
            signature("FAIL: L9 observe: f2: expected seals [grow], got []")
        );
        assert_ne!(
            signature("FAIL: L9 observe: f2: expected seals [grow], got []"),
            signature("FAIL: L9 observe: f2: expected size 1, got 0")
        );
    }

    fn m(h: &str, size: u64) -> Op {
        Op::CreateMemfd {
            handle: h.into(),
            size,
            seed: 1,
        }
    }

    /// Pure logic: "fails" stands for a kernel that loses a file preserved after another file of
    /// the same session was truncated... here simply: any program with a preserve of m2 into a
    /// session and a kexec fails.
    #[tokio::test]
    async fn shrinking_keeps_what_the_failure_needs_and_makes_files_small() {
        let mut ops = vec![
            Op::CreateSession {
                name: "a".into(),
                handle: "s1".into(),
            },
            m("m1", 65536),
            m("m2", 1 << 20),
            Op::Write {
                fd: "m1".into(),
                seed: 4,
            },
            Op::Preserve {
                session: "s1".into(),
                fd: "m1".into(),
                token: 1,
            },
            Op::Preserve {
                session: "s1".into(),
                fd: "m2".into(),
                token: 2,
            },
            Op::GetName {
                session: "s1".into(),
            },
        ];
        ops.push(Op::Kexec);
        ops.push(Op::RetrieveSession {
            name: "a".into(),
            handle: "r3".into(),
        });
        let mut runs = 0;
        let small = shrink(&ops, async |p: &[Op]| {
            runs += 1;
            p.iter()
                .any(|o| matches!(o, Op::Preserve { fd, .. } if fd == "m2"))
                && p.contains(&Op::Kexec)
        })
        .await;
        assert_eq!(
            small,
            vec![
                Op::CreateSession {
                    name: "a".into(),
                    handle: "s1".into()
                },
                m("m2", 1),
                Op::Preserve {
                    session: "s1".into(),
                    fd: "m2".into(),
                    token: 2
                },
                Op::Kexec,
            ]
        );
        assert!(runs < 40, "{runs} runs");
    }
}
