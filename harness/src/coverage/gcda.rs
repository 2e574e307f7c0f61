//! The arc counters of a .gcda file as the kernel writes it (kernel/gcov/gcc_4_7.c): what the
//! fuzzer needs to tell whether a program reached code no earlier program did, read in
//! microseconds, where geninfo (which `coverage` runs once at the end) takes a second a file.
//!
//! The format: a header (magic `gcda`, version, stamp, and since GCC 12 a checksum), then records
//! of a tag, a length and a payload; a function record (tag 0x01000000, 3 words) precedes each
//! function's counter records, of which the arc counters (tag 0x01a10000) are 64-bit counts.
//! Since GCC 12 lengths are in bytes, before in 4-byte words: which one this file uses is read
//! from its first function record, whose length is always 3 words.

const MAGIC: u32 = 0x6763_6461;
const TAG_FUNCTION: u32 = 0x0100_0000;
const TAG_ARCS: u32 = 0x01a1_0000;
const FUNCTION_WORDS: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GcdaError {
    #[error("not gcov data (magic {0:#010x})")]
    Magic(u32),
    #[error("no header this reader knows: its first record is neither a function nor empty")]
    Layout,
    #[error("a record at byte {0} runs past the end of the file")]
    Truncated(usize),
}

fn word(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Every arc counter of the file, in the order of the file (function by function).
pub fn arc_counters(b: &[u8]) -> Result<Vec<u64>, GcdaError> {
    let magic = word(b, 0).ok_or(GcdaError::Truncated(0))?;
    if magic != MAGIC {
        return Err(GcdaError::Magic(magic));
    }
    // (header bytes, bytes a length counts) of GCC 12 and later, then of older ones.
    let layout = [(16usize, 1usize), (12, 4)]
        .into_iter()
        .find(|&(header, unit)| match word(b, header) {
            None => b.len() == header,
            Some(tag) => {
                tag == TAG_FUNCTION && word(b, header + 4) == Some(FUNCTION_WORDS * 4 / unit as u32)
            }
        })
        .ok_or(GcdaError::Layout)?;
    let (mut at, unit) = layout;
    let mut arcs = Vec::new();
    while at < b.len() {
        let (tag, len) = match (word(b, at), word(b, at + 4)) {
            (Some(t), Some(l)) => (t, l as usize * unit),
            _ => return Err(GcdaError::Truncated(at)),
        };
        let payload = b
            .get(at + 8..at + 8 + len)
            .ok_or(GcdaError::Truncated(at))?;
        if tag == TAG_ARCS {
            // Each count is two words, low first.
            arcs.extend(payload.chunks_exact(8).map(|c| {
                let (lo, hi) = c.split_at(4);
                let w = |x: &[u8]| u32::from_le_bytes(x.try_into().expect("4 bytes")) as u64;
                w(lo) | w(hi) << 32
            }));
        }
        at += 8 + len;
    }
    Ok(arcs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[u32]) -> Vec<u8> {
        w.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// Two functions, the first with arcs 5 and 2^32 + 1, the second with arcs 0, 0, 7; lengths
    /// counted in `unit`s of a word's size (4: in bytes, GCC 12's; 1: in words).
    fn file(unit: u32, checksum: bool) -> Vec<u8> {
        let mut w = vec![MAGIC, 0x4232_322a, 0x1234];
        if checksum {
            w.push(0);
        }
        w.extend([
            TAG_FUNCTION,
            3 * unit,
            1,
            2,
            3,
            TAG_ARCS,
            4 * unit,
            5,
            0,
            1,
            1,
        ]);
        w.extend([
            TAG_FUNCTION,
            3 * unit,
            2,
            2,
            3,
            TAG_ARCS,
            6 * unit,
            0,
            0,
            0,
            0,
            7,
            0,
        ]);
        // Another counter kind (time profile) is skipped.
        w.extend([0x01a3_0000, 2 * unit, 9, 9]);
        words(&w)
    }

    #[test]
    fn reads_the_arcs_of_both_layouts() {
        let want = vec![5, (1u64 << 32) + 1, 0, 0, 7];
        assert_eq!(arc_counters(&file(4, true)), Ok(want.clone()));
        assert_eq!(arc_counters(&file(1, false)), Ok(want));
    }

    #[test]
    fn refuses_what_is_not_gcov_data_or_is_cut_short() {
        assert_eq!(arc_counters(b"gcno1234"), Err(GcdaError::Magic(0x6f6e6367)));
        let f = file(4, true);
        assert!(matches!(
            arc_counters(&f[..f.len() - 4]),
            Err(GcdaError::Truncated(_))
        ));
        assert_eq!(arc_counters(&words(&[MAGIC, 1, 2, 0])), Ok(vec![]));
    }
}
